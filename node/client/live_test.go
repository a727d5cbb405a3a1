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
	n := &restartableNode{t: t, dir: t.TempDir(), listenSpec: "127.0.0.1:0"}
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
