package client

// Live is a device's long-lived connection to its node: it keeps the
// queue applied as deliveries arrive (fetchWait), sends what the user
// queues, and survives the node going away. When a call fails for want of
// a connection (no node error code, a deadline, or the node shutting
// down), Live drops the connection, dials again with exponential back-off
// and jitter, authenticates the device again and resumes from the last
// applied sequence number, which the state keeps (sync.go), so nothing is
// applied twice or skipped. Messages queued meanwhile wait in a bounded
// outbox and go out once connected again.
//
// A message whose send failed without an answer may or may not have
// reached the node. Live sends the very same ciphertext again, never a new
// one, so a receiver that got the first copy finds the second one a
// replay of a key it already used (RFC 9420, Section 9.2) and drops it
// silently, as a duplicate (seen.go), instead of showing the text twice.
//
// `qpchat client chat` drives it today; a daemon or a client that fails
// over between the nodes of a cluster uses the same API: a Dialer that
// opens an authenticated device Session, Send, Events, Flush and Close.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"qpchat/node/proto"
	"qpchat/rpc"
)

// Dialer opens a connection to a node and authenticates this device on
// it. It returns the device Session and a function that closes the
// connection.
type Dialer func(ctx context.Context) (sess Session, closeConn func(), err error)

// LiveConfig configures a Live. Zero fields take the defaults given.
type LiveConfig struct {
	// Client is the device's client (required). Live owns it until
	// Close: nothing else may use it meanwhile, except GroupName.
	Client *Client
	// Dial opens and authenticates a connection (required).
	Dial Dialer
	// Wait is how long one fetchWait waits for a delivery. Zero means 20s.
	Wait time.Duration
	// CallTimeout bounds every call to the node (a fetchWait gets Wait on
	// top), so that a node that stops answering is noticed even when the
	// transport does not notice. Zero means 15s.
	CallTimeout time.Duration
	// MinBackoff and MaxBackoff bound the pause before a reconnection
	// attempt: it starts at MinBackoff, doubles after each failed attempt
	// up to MaxBackoff, and each pause is drawn uniformly from its upper
	// half (jitter, so that many clients of a restarted node do not
	// return in step). Zero means 200ms and 10s.
	MinBackoff, MaxBackoff time.Duration
	// Outbox bounds the messages queued and not yet sent. Zero means 100.
	Outbox int
	// After returns a channel that fires after d; nil means time.After.
	// Tests pass a fake clock.
	After func(d time.Duration) <-chan time.Time
}

// LiveState is the state of a Live's connection.
type LiveState int

// States a Live reports.
const (
	LiveConnected    LiveState = iota + 1 // connected again (after LiveReconnecting)
	LiveReconnecting                      // the connection was lost; dialing again
	LiveStopped                           // stopped for good; Err says why
)

func (s LiveState) String() string {
	switch s {
	case LiveConnected:
		return "connected"
	case LiveReconnecting:
		return "reconnecting"
	case LiveStopped:
		return "stopped"
	}
	return "none"
}

// LiveEvent is what a Live reports: a new history entry, a change of the
// connection's state, or a queued message that could not be sent.
type LiveEvent struct {
	// Event is a new history entry (messages of others, joins, membership
	// changes, refused deliveries), or nil.
	Event *Event
	// State is set (non-zero) when the connection's state changes.
	State LiveState
	// Err is why the state changed, or, with Failed, why the message
	// was not sent (it is dropped from the outbox), or an error applying
	// deliveries (Live then reconnects).
	Err error
	// Failed is the queued message Err refers to, or nil.
	Failed *OutMessage
}

// OutMessage is a text queued for a group.
type OutMessage struct {
	Group string
	Text  string

	gid   []byte // the group's id, once protected
	ct    []byte // the MLSMessage sent (again, after a lost answer)
	epoch uint64 // the epoch ct was made in
	// done, if not nil, receives the outcome (nil once the node took
	// the message) instead of a Failed event: SendWait waits on it.
	// Guarded by Live.mu.
	done chan error
}

// Errors of Live.
var (
	// ErrOutboxFull: Send found the outbox full (LiveConfig.Outbox).
	ErrOutboxFull = errors.New("client: too many messages wait to be sent; try again once connected")
	// ErrLiveClosed: the Live was closed or stopped.
	ErrLiveClosed = errors.New("client: the connection to the node was closed")
	errNoConn     = errors.New("client: not connected to the node")
)

// permanentDialError says whether a failed dial should not be retried:
// the node's key is not the pinned one, or the node refuses this device
// (revoked, unknown).
func permanentDialError(err error) bool {
	var pm *rpc.PinMismatchError
	if errors.As(err, &pm) {
		return true
	}
	switch proto.CodeOf(err) {
	case proto.CodeAuth, proto.CodeForbidden, proto.CodeNotFound:
		return true
	}
	return false
}

// Live is a reconnecting session of one device; see the file comment.
type Live struct {
	cfg    LiveConfig
	c      *Client
	sess   *liveSession
	events chan LiveEvent
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	reqs   chan liveReq
	kick   chan struct{}

	mu      sync.Mutex
	outbox  []*OutMessage
	emptied chan struct{} // closed when the outbox becomes empty
	err     error         // why it stopped
}

// StartLive dials the node (once: an error is returned as it is) and
// starts the session. It installs its own Session in the client.
func StartLive(ctx context.Context, cfg LiveConfig) (*Live, error) {
	if cfg.Client == nil || cfg.Dial == nil {
		return nil, errors.New("client: StartLive needs a Client and a Dialer")
	}
	if cfg.Wait <= 0 {
		cfg.Wait = 20 * time.Second
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 15 * time.Second
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 200 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(10*time.Second, cfg.MinBackoff)
	}
	if cfg.Outbox <= 0 {
		cfg.Outbox = 100
	}
	if cfg.After == nil {
		cfg.After = time.After
	}
	if err := cfg.Client.needDeviceOnly(); err != nil {
		return nil, err
	}
	l := &Live{cfg: cfg, c: cfg.Client, sess: &liveSession{timeout: cfg.CallTimeout},
		events: make(chan LiveEvent, 64), done: make(chan struct{}), reqs: make(chan liveReq),
		kick: make(chan struct{}, 1)}
	l.c.cfg.Session = l.sess
	first, err := l.dial(ctx)
	if err != nil {
		return nil, err
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	go l.run(first)
	return l, nil
}

// Events returns the channel of what happens; it is closed once the
// session stops. The consumer must keep reading it.
func (l *Live) Events() <-chan LiveEvent { return l.events }

// Done is closed once the session stopped (Close, or an error that
// Close then returns).
func (l *Live) Done() <-chan struct{} { return l.done }

// Send queues a text for a group. It returns ErrOutboxFull when the
// outbox is full and ErrLiveClosed after Close.
func (l *Live) Send(group, text string) error {
	return l.queue(&OutMessage{Group: group, Text: text})
}

// SendWait queues a text like Send and waits until the node accepted it
// (nil), refused it (the error; no Failed event is reported), or ctx
// ends. While the node is unreachable the message waits in the outbox;
// if ctx ends first the message stays queued and is sent once
// connected, SendWait returns ctx's error, and a later refusal is
// reported as a Failed event, as for Send.
func (l *Live) SendWait(ctx context.Context, group, text string) error {
	m := &OutMessage{Group: group, Text: text, done: make(chan error, 1)}
	if err := l.queue(m); err != nil {
		return err
	}
	select {
	case err := <-m.done:
		return err
	case <-ctx.Done():
		// No one waits any more: the outcome, if it is not in yet,
		// becomes an event like that of Send.
		l.mu.Lock()
		done := m.done
		m.done = nil
		l.mu.Unlock()
		select {
		case err := <-done:
			return err
		default:
		}
		return ctx.Err()
	case <-l.done:
		select {
		case err := <-m.done:
			return err
		default:
		}
		return l.stopErr()
	}
}

// queue appends m to the outbox.
func (l *Live) queue(m *OutMessage) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.done:
		return ErrLiveClosed
	default:
	}
	if len(l.outbox) >= l.cfg.Outbox {
		return ErrOutboxFull
	}
	if len(l.outbox) == 0 {
		l.emptied = make(chan struct{})
	}
	l.outbox = append(l.outbox, m)
	select {
	case l.kick <- struct{}{}:
	default:
	}
	return nil
}

// Pending returns the number of queued messages not yet sent.
func (l *Live) Pending() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.outbox)
}

// Flush waits until every queued message was sent (or dropped with an
// event saying why).
func (l *Live) Flush(ctx context.Context) error {
	for {
		l.mu.Lock()
		if len(l.outbox) == 0 {
			l.mu.Unlock()
			return nil
		}
		ch := l.emptied
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-l.done:
			return l.stopErr()
		}
	}
}

// Sync applies what is queued at the node now, reporting it as events
// before it returns; it waits while the node is unreachable.
func (l *Live) Sync(ctx context.Context) error { return l.Do(ctx, nil) }

// Do runs f with the client on the session's goroutine, while connected
// and after applying what is queued, and returns its error. If the
// connection is lost meanwhile, f runs again once reconnected, so it must
// be safe to repeat. f must not keep the client.
func (l *Live) Do(ctx context.Context, f func(ctx context.Context, c *Client) error) error {
	return l.do(ctx, liveReq{f: f, reply: make(chan error, 1)})
}

// DoOnce is Do for f that must not run twice (it changes a group, say):
// if the connection is lost while f runs, DoOnce returns f's error (a
// lost connection) instead of running f again, and the session
// reconnects meanwhile.
func (l *Live) DoOnce(ctx context.Context, f func(ctx context.Context, c *Client) error) error {
	return l.do(ctx, liveReq{f: f, once: true, reply: make(chan error, 1)})
}

func (l *Live) do(ctx context.Context, r liveReq) error {
	select {
	case l.reqs <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-l.done:
		return l.stopErr()
	}
	select {
	case err := <-r.reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// liveReq is a call of Do.
type liveReq struct {
	f     func(ctx context.Context, c *Client) error
	once  bool // DoOnce: never run f again
	reply chan error
}

// Close stops the session, acknowledges what was applied (briefly, if
// the node answers) and closes the connection. Messages still queued
// are not sent. It returns why the session stopped, if it stopped by
// itself.
func (l *Live) Close() error {
	l.cancel()
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

func (l *Live) stopErr() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return l.err
	}
	return ErrLiveClosed
}

// emit reports an event unless the session is stopping.
func (l *Live) emit(e LiveEvent) {
	select {
	case l.events <- e:
	case <-l.ctx.Done():
	}
}

// liveConn is one connection of the session.
type liveConn struct {
	sess      Session
	closeConn func()
	lost      chan struct{}
	lostOnce  sync.Once
	lostErr   error

	ctx    context.Context // the waiter's
	cancel context.CancelFunc
	wake   chan struct{}
	resume chan struct{}
	waited chan struct{} // closed when the waiter returned
}

func (lc *liveConn) fail(err error) {
	lc.lostOnce.Do(func() { lc.lostErr = err; close(lc.lost) })
}

func (lc *liveConn) isLost() bool {
	select {
	case <-lc.lost:
		return true
	default:
		return false
	}
}

func (lc *liveConn) close() {
	if lc.cancel != nil { // serve ran
		lc.cancel()
		<-lc.waited
	}
	lc.closeConn()
}

// dial opens a connection and installs it in the session.
func (l *Live) dial(ctx context.Context) (*liveConn, error) {
	sess, closeConn, err := l.cfg.Dial(ctx)
	if err != nil {
		return nil, err
	}
	lc := &liveConn{sess: sess, closeConn: closeConn, lost: make(chan struct{}),
		wake: make(chan struct{}), resume: make(chan struct{}, 1), waited: make(chan struct{})}
	l.sess.set(lc)
	return lc, nil
}

// lostConn says whether err (from using the client) means lc is gone.
func lostConn(lc *liveConn, err error) bool {
	var ce *connError
	return errors.As(err, &ce) || lc.isLost()
}

// run is the session's goroutine: it owns the client.
func (l *Live) run(first *liveConn) {
	defer close(l.done)
	defer close(l.events)
	conn := first
	var cause error
	for l.ctx.Err() == nil {
		if conn == nil {
			if conn = l.reconnect(cause); conn == nil {
				break
			}
		}
		cause = l.serve(conn)
		if l.ctx.Err() != nil {
			break
		}
		conn.close()
		l.sess.set(nil)
		conn = nil
	}
	if conn != nil {
		// Acknowledge what was applied while the node still answers.
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		l.c.Flush(ctx)
		cancel()
		conn.close()
		l.sess.set(nil)
	}
}

// stop ends the session with err.
func (l *Live) stop(err error) {
	l.mu.Lock()
	l.err = err
	l.mu.Unlock()
	l.emit(LiveEvent{State: LiveStopped, Err: err})
	l.cancel()
}

// reconnect dials until it succeeds, with back-off and jitter. It
// returns nil when the session stops.
func (l *Live) reconnect(cause error) *liveConn {
	l.emit(LiveEvent{State: LiveReconnecting, Err: cause})
	delay := l.cfg.MinBackoff
	for {
		pause := delay/2 + rand.N(delay/2+1) // not secret: math/rand is enough
		select {
		case <-l.cfg.After(pause):
		case <-l.ctx.Done():
			return nil
		}
		ctx, cancel := context.WithTimeout(l.ctx, l.cfg.CallTimeout)
		conn, err := l.dial(ctx)
		cancel()
		if err == nil {
			l.emit(LiveEvent{State: LiveConnected})
			return conn
		}
		if l.ctx.Err() != nil {
			return nil
		}
		if permanentDialError(err) {
			l.stop(fmt.Errorf("client: reconnecting: %w", err))
			return nil
		}
		delay = min(2*delay, l.cfg.MaxBackoff)
	}
}

// serve uses one connection until it is lost or the session stops, and
// returns why it was lost.
func (l *Live) serve(conn *liveConn) error {
	conn.ctx, conn.cancel = context.WithCancel(l.ctx)
	// Catch up first: what arrived while disconnected, and pending
	// commits of an earlier run.
	if err := l.recv(conn); err != nil {
		close(conn.waited)
		return err
	}
	go l.wait(conn)
	for {
		if err := l.sendQueued(conn); err != nil {
			return err
		}
		select {
		case <-l.ctx.Done():
			return nil
		case <-conn.lost:
			return conn.lostErr
		case <-l.kick:
		case r := <-l.reqs:
			err := l.recv(conn)
			ran := false
			if err == nil && r.f != nil {
				ran = true
				err = r.f(l.ctx, l.c)
			}
			if err != nil && lostConn(conn, err) && ran && r.once {
				r.reply <- err
				return err
			}
			if err != nil && lostConn(conn, err) {
				// Run it again once reconnected.
				go func() {
					select {
					case l.reqs <- r:
					case <-l.done:
						r.reply <- ErrLiveClosed
					}
				}()
				return err
			}
			r.reply <- err
		case <-conn.wake:
			if err := l.recv(conn); err != nil {
				return err
			}
			conn.resume <- struct{}{}
		}
	}
}

// wait runs beside serve: it waits for deliveries with fetchWait and
// wakes serve when one is queued. Any failure ends the connection.
func (l *Live) wait(conn *liveConn) {
	defer close(conn.waited)
	for {
		got, err := l.c.WaitForDelivery(conn.ctx, l.cfg.Wait)
		if conn.ctx.Err() != nil {
			return
		}
		if err != nil {
			conn.fail(err)
			return
		}
		if !got {
			continue
		}
		select {
		case conn.wake <- struct{}{}:
		case <-conn.ctx.Done():
			return
		}
		select {
		case <-conn.resume:
		case <-conn.ctx.Done():
			return
		}
	}
}

// recv applies what is queued and reports the new history entries. An
// error that is not a lost connection is reported too, and ends the
// connection all the same, so that the back-off paces retries.
func (l *Live) recv(conn *liveConn) error {
	evs, err := l.c.Recv(l.ctx, 0)
	for _, e := range evs {
		l.emit(LiveEvent{Event: e})
	}
	if err != nil && !lostConn(conn, err) && l.ctx.Err() == nil {
		l.emit(LiveEvent{Err: err})
		conn.fail(err)
	}
	return err
}

// sendQueued sends the outbox in order while connected. A message the
// node refuses is dropped with an event; one sent without an answer
// stays first in the outbox, with its ciphertext, for the next
// connection.
func (l *Live) sendQueued(conn *liveConn) error {
	for first := true; ; first = false {
		l.mu.Lock()
		if len(l.outbox) == 0 {
			l.mu.Unlock()
			return nil
		}
		l.mu.Unlock()
		if first {
			// Apply what is queued first: new messages go out on the
			// newest epoch, and a resent one must still be of the
			// current epoch.
			if err := l.recv(conn); err != nil {
				return err
			}
		}
		l.mu.Lock()
		m := l.outbox[0]
		l.mu.Unlock()
		err := l.sendOne(conn, m)
		if err != nil && lostConn(conn, err) {
			return err
		}
		l.mu.Lock()
		l.outbox = l.outbox[1:]
		if len(l.outbox) == 0 {
			close(l.emptied)
		}
		waited := m.done != nil
		if waited {
			m.done <- err // buffered; under the lock, see SendWait
		}
		l.mu.Unlock()
		if !waited && err != nil {
			l.emit(LiveEvent{Err: err, Failed: m})
		}
	}
}

// sendOne sends one queued message: it protects the text once (storing
// the ratchet and the history entry first, as Send does) and sends the
// same ciphertext until the node answers.
func (l *Live) sendOne(conn *liveConn, m *OutMessage) error {
	c := l.c
	if m.ct != nil {
		// Sent before without an answer. If a commit changed the epoch
		// since, the old ciphertext cannot be read any more: make it
		// again. (Should the first copy have arrived after all, the
		// receivers then see the text twice; only a commit during the
		// outage can cause that.)
		g, err := c.loadGroup(l.ctx, m.gid)
		if err != nil {
			return err
		}
		if g.g == nil || g.g.Epoch() != m.epoch {
			m.ct = nil
		}
	}
	if m.ct == nil {
		g, err := c.loadGroupByName(l.ctx, m.Group)
		if err != nil {
			return err
		}
		ct, err := c.protectText(g, m.Text)
		if err != nil {
			return err
		}
		m.gid, m.ct, m.epoch = g.rec.ID, ct, g.g.Epoch()
	}
	err := c.cfg.Session.Send(l.ctx, m.gid, [][]byte{m.ct})
	if err != nil && !lostConn(conn, err) {
		_ = c.persist(nil, []*Event{{Kind: EventRefused, Group: m.gid, Sender: c.prof.User, Outgoing: true,
			Time: c.now().Unix(), Text: "the node refused the message above: " + err.Error()}}, nil)
		return fmt.Errorf("client: sending to %s: %w", m.Group, err)
	}
	return err
}

// protectText encrypts a text for the group and stores the ratchet state
// and the outgoing history entry in one transaction, before the message
// leaves (a key is never used twice). It returns the MLSMessage.
func (c *Client) protectText(g *group, text string) ([]byte, error) {
	if g.g == nil {
		return nil, fmt.Errorf("client: this device was removed from %s", g.rec.Name)
	}
	ev := &Event{Kind: EventMessage, Group: g.rec.ID, Sender: c.prof.User, DeviceID: devID(c.devKey), Outgoing: true,
		Time: c.now().Unix(), Epoch: g.g.Epoch(), Text: text}
	msg, err := g.g.Protect(c.cfg.Rand, (&payload{Kind: payloadText, Text: text}).marshal(), nil)
	if err != nil {
		return nil, err
	}
	if err := c.persist([]*group{g}, []*Event{ev}, nil); err != nil {
		return nil, err
	}
	return msg, nil
}

// needDeviceOnly is needDevice without a session (Live brings its own).
func (c *Client) needDeviceOnly() error {
	if c.prof.Device == nil || c.prof.User == "" {
		return ErrNoDevice
	}
	return nil
}
