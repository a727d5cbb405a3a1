package client

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"qpchat/internal/testport"
	"qpchat/node/server"
	"qpchat/opaque"
	"qpchat/rpc"
)

// restartableNode is an in-process node that can be stopped and started
// again on the same address with the same data.
type restartableNode struct {
	t          testing.TB
	dir        string
	addr, fp   string
	cancel     context.CancelFunc
	done       chan error
	running    bool
	listenSpec string
}

func newRestartableNode(t testing.TB) *restartableNode {
	n := &restartableNode{t: t, dir: t.TempDir(), listenSpec: testport.UDP(t)}
	n.start()
	t.Cleanup(func() {
		if n.running {
			n.stop()
		}
	})
	return n
}

func (n *restartableNode) start() {
	n.t.Helper()
	srv, err := server.New(server.Config{Listen: n.listenSpec, DataDir: n.dir, OPAQUE: opaque.QPChatTest(),
		Limits: server.Limits{MaxConnsPerAddr: 1000, LoginRateAddr: 100000},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		n.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel, n.done, n.running = cancel, make(chan error, 1), true
	go func() { n.done <- srv.Serve(ctx) }()
	n.addr, n.listenSpec = srv.Addr().String(), srv.Addr().String()
	if n.fp != "" && n.fp != srv.Fingerprint() {
		n.t.Fatal("the node's key changed across a restart")
	}
	n.fp = srv.Fingerprint()
}

// stop shuts the node down gracefully.
func (n *restartableNode) stop() {
	n.cancel()
	<-n.done
	n.running = false
}

// liveDialer dials n and authenticates u's device, wrapping the session
// with wrap if not nil.
func liveDialer(n *restartableNode, u *realUser, wrap func(Session) Session) Dialer {
	addr, fp := n.addr, n.fp // the same after a restart
	return func(ctx context.Context) (Session, func(), error) {
		rc, err := rpc.Dial(ctx, addr, rpc.DialOptions{Fingerprint: fp, HandshakeTimeout: time.Second,
			IdleTimeout: 2 * time.Second, KeepAlive: 500 * time.Millisecond})
		if err != nil {
			return nil, nil, err
		}
		prof, err := u.st.Profile()
		if err != nil {
			rc.Close()
			return nil, nil, err
		}
		sess, err := AuthenticateDevice(ctx, &RPCEntry{C: rc}, prof)
		if err != nil {
			rc.Close()
			return nil, nil, err
		}
		if wrap != nil {
			sess = wrap(sess)
		}
		return sess, func() { rc.Close() }, nil
	}
}

// reconnectUser gives u a new connection to n (after a restart).
func reconnectUser(t *testing.T, n *restartableNode, u *realUser) {
	t.Helper()
	sess, _, err := liveDialer(n, u, nil)(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	u.c.cfg.Session = sess
}

// liveWatcher collects what a Live reports.
type liveWatcher struct {
	t  *testing.T
	ch <-chan LiveEvent
}

// waitFor reads events until one matches (a guard against hanging, not
// a measure of speed, bounds the wait).
func (w *liveWatcher) waitFor(what string, match func(LiveEvent) bool) {
	w.t.Helper()
	guard := time.After(2 * time.Minute)
	for {
		select {
		case e, ok := <-w.ch:
			if !ok {
				w.t.Fatalf("the session stopped while waiting for %s", what)
			}
			if e.Err != nil && e.State == 0 {
				w.t.Logf("session reported: %v", e.Err)
			}
			if match(e) {
				return
			}
		case <-guard:
			w.t.Fatalf("never saw %s", what)
		}
	}
}

func messageFrom(sender, text string) func(LiveEvent) bool {
	return func(e LiveEvent) bool {
		return e.Event != nil && e.Event.Kind == EventMessage && e.Event.Sender == sender && e.Event.Text == text
	}
}

func stateIs(s LiveState) func(LiveEvent) bool {
	return func(e LiveEvent) bool { return e.State == s }
}

// messagesOf returns "sender: text" of each message in evs, and fails on
// refused deliveries.
func messagesOf(t *testing.T, evs []*Event) []string {
	t.Helper()
	var out []string
	for _, e := range evs {
		switch e.Kind {
		case EventMessage:
			out = append(out, e.Sender+": "+e.Text)
		case EventRefused:
			t.Errorf("refused: %s", e.Text)
		}
	}
	return out
}

func liveGroup(t *testing.T, alice, bob *realUser) {
	t.Helper()
	ctx := context.Background()
	if _, err := alice.c.CreateGroup(ctx, "g", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.c.Invite(ctx, "g", []string{"bob"}); err != nil {
		t.Fatal(err)
	}
}

// TestLiveAcrossRestart: a Live session survives a graceful restart of
// the node; lines queued while it is down go out once it is back, and
// arrive exactly once.
func TestLiveAcrossRestart(t *testing.T) {
	n := newRestartableNode(t)
	ctx := context.Background()
	alice, bob := newRealUser(t, n.addr, n.fp, "alice"), newRealUser(t, n.addr, n.fp, "bob")
	liveGroup(t, alice, bob)
	lv, err := StartLive(ctx, LiveConfig{Client: bob.c, Dial: liveDialer(n, bob, nil), Wait: 5 * time.Second,
		CallTimeout: 5 * time.Second, MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer lv.Close()
	w := &liveWatcher{t: t, ch: lv.Events()}
	if err := alice.c.Send(ctx, "g", "before"); err != nil {
		t.Fatal(err)
	}
	w.waitFor("the message before the restart", messageFrom("alice", "before"))

	n.stop()
	w.waitFor("reconnecting", stateIs(LiveReconnecting))
	for _, s := range []string{"during 1", "during 2"} {
		if err := lv.Send("g", s); err != nil {
			t.Fatal(err)
		}
	}
	n.start()
	w.waitFor("reconnected", stateIs(LiveConnected))
	if err := lv.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	reconnectUser(t, n, alice)
	evs, err := alice.c.Recv(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(messagesOf(t, evs), "|"); got != "bob: during 1|bob: during 2" {
		t.Errorf("alice received %q", got)
	}
	// And the session still receives.
	if err := alice.c.Send(ctx, "g", "after"); err != nil {
		t.Fatal(err)
	}
	w.waitFor("the message after the restart", messageFrom("alice", "after"))
}

// lossySession forwards calls, but the first Send reaches the node and
// then fails as if the connection broke before the answer came back.
type lossySession struct {
	Session
	once *sync.Once
}

func (s *lossySession) Send(ctx context.Context, group []byte, msgs [][]byte) error {
	if err := s.Session.Send(ctx, group, msgs); err != nil {
		return err
	}
	lost := false
	s.once.Do(func() { lost = true })
	if lost {
		return errors.New("rpc: connection closed (answer lost)")
	}
	return nil
}

// TestLiveLostAnswerDeliveredOnce: a send whose answer is lost is sent
// again after reconnecting, and the receiver shows it once.
func TestLiveLostAnswerDeliveredOnce(t *testing.T) {
	n := newRestartableNode(t)
	ctx := context.Background()
	alice, bob := newRealUser(t, n.addr, n.fp, "alice"), newRealUser(t, n.addr, n.fp, "bob")
	liveGroup(t, alice, bob)
	once := &sync.Once{}
	lv, err := StartLive(ctx, LiveConfig{Client: bob.c, Dial: liveDialer(n, bob, func(s Session) Session { return &lossySession{Session: s, once: once} }),
		Wait: 5 * time.Second, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer lv.Close()
	w := &liveWatcher{t: t, ch: lv.Events()}
	if err := lv.Send("g", "exactly once"); err != nil {
		t.Fatal(err)
	}
	w.waitFor("reconnecting after the lost answer", stateIs(LiveReconnecting))
	w.waitFor("reconnected", stateIs(LiveConnected))
	if err := lv.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := lv.Send("g", "next"); err != nil {
		t.Fatal(err)
	}
	if err := lv.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	evs, err := alice.c.Recv(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(messagesOf(t, evs), "|"); got != "bob: exactly once|bob: next" {
		t.Errorf("alice received %q, want each message once", got)
	}
}

// TestResentCopyDropped: the very same MLSMessage delivered twice is
// shown once and not reported as refused; another replay still is.
func TestResentCopyDropped(t *testing.T) {
	addr, fp := startRealNode(t)
	ctx := context.Background()
	alice, bob := newRealUser(t, addr, fp, "alice"), newRealUser(t, addr, fp, "bob")
	liveGroup(t, alice, bob)
	if _, err := bob.c.Recv(ctx, 0); err != nil {
		t.Fatal(err)
	}
	g, err := alice.c.loadGroupByName(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	ct, err := alice.c.protectText(g, "twice sent")
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := alice.c.cfg.Session.Send(ctx, g.rec.ID, [][]byte{ct}); err != nil {
			t.Fatal(err)
		}
	}
	evs, err := bob.c.Recv(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(messagesOf(t, evs), "|"); got != "alice: twice sent" {
		t.Errorf("bob received %q", got)
	}
}

// failingFetch makes the first Fetch fail as a broken connection does.
type failingFetch struct {
	Session
	once *sync.Once
}

func (s *failingFetch) Fetch(ctx context.Context, after uint64, limit int, wait time.Duration) (*FetchResult, error) {
	fail := false
	s.once.Do(func() { fail = true })
	if fail {
		return nil, errors.New("rpc: connection closed")
	}
	return s.Session.Fetch(ctx, after, limit, wait)
}

// TestLiveBackoff: after a lost connection, failed dials are retried
// after pauses that double from MinBackoff up to MaxBackoff, each drawn
// from the upper half of its step; a refusal of the device stops the
// session for good. The clock is fake.
func TestLiveBackoff(t *testing.T) {
	n := newRestartableNode(t)
	ctx := context.Background()
	bob := newRealUser(t, n.addr, n.fp, "bob")
	real := liveDialer(n, bob, nil)
	var mu sync.Mutex
	var pauses []time.Duration
	dials := 0
	const failures = 6
	once := &sync.Once{}
	dial := func(ctx context.Context) (Session, func(), error) {
		mu.Lock()
		dials++
		d := dials
		mu.Unlock()
		switch {
		case d == 1:
			s, cl, err := real(ctx)
			if err != nil {
				return nil, nil, err
			}
			return &failingFetch{Session: s, once: once}, cl, nil
		case d <= 1+failures:
			return nil, nil, errors.New("dial: no answer")
		}
		return real(ctx)
	}
	fired := make(chan time.Time)
	close(fired)
	after := func(d time.Duration) <-chan time.Time {
		mu.Lock()
		pauses = append(pauses, d)
		mu.Unlock()
		return fired
	}
	minB, maxB := 100*time.Millisecond, 1600*time.Millisecond
	lv, err := StartLive(ctx, LiveConfig{Client: bob.c, Dial: dial, Wait: time.Second, MinBackoff: minB, MaxBackoff: maxB, After: after})
	if err != nil {
		t.Fatal(err)
	}
	w := &liveWatcher{t: t, ch: lv.Events()}
	w.waitFor("reconnecting", stateIs(LiveReconnecting))
	w.waitFor("reconnected", stateIs(LiveConnected))
	mu.Lock()
	got := append([]time.Duration(nil), pauses...)
	mu.Unlock()
	if len(got) != failures+1 {
		t.Fatalf("%d pauses %v for %d failed dials", len(got), got, failures)
	}
	step := minB
	for i, p := range got {
		if p < step/2 || p > step {
			t.Errorf("pause %d is %v, want within [%v, %v]", i, p, step/2, step)
		}
		step = min(2*step, maxB)
	}
	if err := lv.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}

	// A node that refuses the device (revoked) stops the session.
	once2 := &sync.Once{}
	first := true
	lv, err = StartLive(ctx, LiveConfig{Client: bob.c, After: after, Dial: func(ctx context.Context) (Session, func(), error) {
		if first {
			first = false
			s, cl, err := real(ctx)
			if err != nil {
				return nil, nil, err
			}
			return &failingFetch{Session: s, once: once2}, cl, nil
		}
		return nil, nil, errors.New("client: authenticating the device: qpchat auth-failed: the device is revoked")
	}})
	if err != nil {
		t.Fatal(err)
	}
	w = &liveWatcher{t: t, ch: lv.Events()}
	w.waitFor("stopped", stateIs(LiveStopped))
	if err := lv.Close(); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("Close after a refusal: %v", err)
	}
	if err := lv.Send("g", "x"); !errors.Is(err, ErrLiveClosed) {
		t.Errorf("Send after stop: %v", err)
	}
}

// TestLiveSendWait: SendWait answers once the node took the message,
// also when the first answer was lost (the message arrives once);
// waits while the node is down (its deadline leaves the message queued,
// and it goes out after the restart); and returns a refusal instead of
// reporting it as an event.
func TestLiveSendWait(t *testing.T) {
	n := newRestartableNode(t)
	ctx := context.Background()
	alice, bob := newRealUser(t, n.addr, n.fp, "alice"), newRealUser(t, n.addr, n.fp, "bob")
	liveGroup(t, alice, bob)
	once := &sync.Once{}
	lv, err := StartLive(ctx, LiveConfig{Client: bob.c, Dial: liveDialer(n, bob, func(s Session) Session { return &lossySession{Session: s, once: once} }),
		Wait: 5 * time.Second, CallTimeout: 5 * time.Second, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer lv.Close()
	events := make(chan LiveEvent, 1000)
	go func() {
		for e := range lv.Events() {
			events <- e
		}
	}()
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := lv.SendWait(wctx, "g", "answer lost"); err != nil {
		t.Fatalf("SendWait after a lost answer = %v", err)
	}
	if err := lv.SendWait(wctx, "no such group", "x"); err == nil {
		t.Error("SendWait to an unknown group = nil, want an error")
	}
	// No one waits any more: the refusal becomes an event.
	gone, cancelGone := context.WithCancel(ctx)
	cancelGone()
	abandoned := errors.Is(lv.SendWait(gone, "no such group either", "y"), context.Canceled)
	if err := lv.Flush(wctx); err != nil {
		t.Fatal(err)
	}

	n.stop()
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	err = lv.SendWait(short, "g", "while down")
	cancelShort()
	if !errors.Is(err, context.DeadlineExceeded) || lv.Pending() != 1 {
		t.Fatalf("SendWait while the node is down = %v with %d pending, want the deadline and 1 pending", err, lv.Pending())
	}
	n.start()
	if err := lv.Flush(wctx); err != nil {
		t.Fatal(err)
	}
	reconnectUser(t, n, alice)
	evs, err := alice.c.Recv(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(messagesOf(t, evs), "|"); got != "bob: answer lost|bob: while down" {
		t.Errorf("alice received %q", got)
	}
	failed := 0
	for len(events) > 0 {
		if e := <-events; e.Failed != nil {
			failed++
			if !abandoned || e.Failed.Group != "no such group either" {
				t.Errorf("SendWait's message to %s was reported as failed too: %v", e.Failed.Group, e.Err)
			}
		}
	}
	if abandoned && failed != 1 {
		t.Errorf("%d Failed events for a message SendWait gave up on, want 1", failed)
	}
}

// failingDevices makes the first Devices call fail as a broken
// connection does.
type failingDevices struct {
	Session
	once *sync.Once
}

func (s *failingDevices) Devices(ctx context.Context) ([]DeviceInfo, error) {
	fail := false
	s.once.Do(func() { fail = true })
	if fail {
		return nil, errors.New("rpc: connection closed")
	}
	return s.Session.Devices(ctx)
}

// TestLiveDoOnce: when the connection breaks while f runs, Do runs f
// again once reconnected, DoOnce returns the error and never repeats f.
func TestLiveDoOnce(t *testing.T) {
	n := newRestartableNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, once := range []bool{false, true} {
		bob := newRealUser(t, n.addr, n.fp, "bob"+map[bool]string{false: "1", true: "2"}[once])
		fail := &sync.Once{}
		lv, err := StartLive(ctx, LiveConfig{Client: bob.c, Dial: liveDialer(n, bob, func(s Session) Session { return &failingDevices{Session: s, once: fail} }),
			Wait: 5 * time.Second, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for range lv.Events() {
			}
		}()
		runs := 0
		f := func(ctx context.Context, c *Client) error {
			runs++
			_, err := c.Devices(ctx)
			return err
		}
		if once {
			err = lv.DoOnce(ctx, f)
		} else {
			err = lv.Do(ctx, f)
		}
		switch {
		case once && (err == nil || runs != 1):
			t.Errorf("DoOnce = %v after %d runs, want an error after 1", err, runs)
		case !once && (err != nil || runs != 2):
			t.Errorf("Do = %v after %d runs, want nil after 2", err, runs)
		}
		// The session reconnects and serves the next call.
		if err := lv.Do(ctx, f); err != nil {
			t.Errorf("Do after the lost connection = %v", err)
		}
		lv.Close()
	}
}
