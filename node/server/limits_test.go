package server

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"qpchat/mls"
	"qpchat/node/bench"
	"qpchat/node/proto"
	"qpchat/rpc"
)

func TestRateLimiterDelaysInsteadOfRefusing(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1000, 0)}
	r := newRateLimiter(6, time.Minute, clock.Now) // one token every 10 s, burst 6
	for i := range 6 {
		if d, _ := r.reserve("alice"); d != 0 {
			t.Fatalf("start %d within the burst delayed by %v", i, d)
		}
	}
	// Beyond the burst each start waits for its own future token.
	for i, want := range []time.Duration{10 * time.Second, 20 * time.Second, 30 * time.Second} {
		if d, charged := r.reserve("alice"); d != want || !charged {
			t.Errorf("start %d beyond the burst: delay %v (charged %v), want %v", i, d, charged, want)
		}
	}
	if d, _ := r.reserve("bob"); d != 0 {
		t.Errorf("another key delayed by %v", d)
	}
	// Time refills the bucket.
	clock.Advance(2 * time.Minute)
	if d, _ := r.reserve("alice"); d != 0 {
		t.Errorf("after two minutes: delay %v", d)
	}
	// allow refuses rather than queueing.
	f := newRateLimiter(2, 0, clock.Now)
	if !f.allow("k") || !f.allow("k") || f.allow("k") {
		t.Error("allow does not stop at the burst")
	}
	clock.Advance(30 * time.Second)
	if !f.allow("k") {
		t.Error("allow refuses after a token was due")
	}
}

func TestFloodDetector(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1000, 0)}
	f := &floodDetector{above: 5, now: clock.Now}
	addr := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1}
	for i := range 5 {
		if f.verify(addr) {
			t.Fatalf("attempt %d of 5 in a second asked for Retry", i+1)
		}
	}
	if !f.verify(addr) {
		t.Error("the sixth attempt in a second did not ask for Retry")
	}
	clock.Advance(3 * time.Second)
	if f.verify(addr) {
		t.Error("Retry still required after a quiet period")
	}
	always := &floodDetector{above: -1, now: clock.Now}
	if !always.verify(addr) {
		t.Error("RetryAbove < 0 does not always ask for Retry")
	}
}

func TestAddrKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7:4000":            "192.0.2.7",
		"[2001:db8:1:2:3:4:5:6]:99": "2001:db8:1:2::/64",
		"[2001:db8:1:2:ff::1]:1":    "2001:db8:1:2::/64",
		"[::ffff:192.0.2.7]:5":      "192.0.2.7",
	} {
		a, err := net.ResolveUDPAddr("udp", in)
		if err != nil {
			t.Fatal(err)
		}
		if got := addrKey(a); got != want {
			t.Errorf("addrKey(%s) = %q, want %q", in, got, want)
		}
	}
}

func TestConnectionsPerAddress(t *testing.T) {
	n := startNode(t, func(c *Config) { c.Limits.MaxConnsPerAddr = 2 })
	a, b := n.dial(), n.dial()
	for _, c := range []*bench.Conn{a, b} {
		if _, err := pingConn(c); err != nil {
			t.Fatal(err)
		}
	}
	third := n.dial()
	_, err := pingConn(third)
	if err == nil {
		t.Fatal("a third connection from one address was served")
	}
	<-third.Done()
	if msg := third.ExplainError("node", err).Error(); !bytes.Contains([]byte(msg), []byte("busy")) {
		t.Errorf("refusal explained as %q, want busy", msg)
	}
	// Closing one makes room again.
	a.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := n.dial()
		if _, err := pingConn(c); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no connection accepted after one of two closed")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func pingConn(c *bench.Conn) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f, rel := c.Node.Ping(ctx, func(p rpc.NodeService_ping_Params) error { p.SetNonce(1); return nil })
	defer rel()
	r, err := f.Struct()
	if err != nil {
		return "", err
	}
	return r.Version()
}

func TestLoginRateLimitDelaysNotLocksOut(t *testing.T) {
	n := startNode(t, func(c *Config) {
		c.Limits.LoginRateName = 1
		c.Limits.MaxLoginDelay = 200 * time.Millisecond
	})
	n.register("alice")
	c := n.dial()
	// The first start uses the token; the next ones are delayed (by the
	// cap here) but answered, with a working login at the end.
	for range 2 {
		if _, err := c.LoginStart(testCtx(t), n.cfg.OPAQUE, "alice", []byte("wrong")); err == nil {
			t.Fatal("a wrong password was accepted")
		}
	}
	start := time.Now()
	_, _, err := c.Login(testCtx(t), n.cfg.OPAQUE, "alice", []byte(testPassword))
	if err != nil {
		t.Fatalf("login after rate-limited attempts: %v", err)
	}
	if el := time.Since(start); el < n.cfg.Limits.MaxLoginDelay {
		t.Errorf("a login start beyond the rate was answered after %v, before the delay of %v", el, n.cfg.Limits.MaxLoginDelay)
	}
}

func TestRetryAlwaysStillServes(t *testing.T) {
	n := startNode(t, func(c *Config) { c.Limits.RetryAbove = -1 })
	if _, err := pingConn(n.dial()); err != nil {
		t.Fatalf("ping through a Retry: %v", err)
	}
}

func TestQUICKeysPersist(t *testing.T) {
	n := startNode(t, nil)
	n.stop()
	keys := func() rpc.TransportOptions {
		s := &Server{cfg: populateConfig(n.cfg), flood: &floodDetector{}}
		must(t, "open store", s.openStore())
		defer s.closer.Close()
		o, err := s.transportOptions()
		must(t, "transport options", err)
		return o
	}
	a, b := keys(), keys()
	if *a.StatelessResetKey != *b.StatelessResetKey || *a.TokenKey != *b.TokenKey {
		t.Error("QUIC keys changed between two opens of the store")
	}
	if *a.StatelessResetKey == [32]byte{} || [32]byte(*a.StatelessResetKey) == [32]byte(*a.TokenKey) {
		t.Error("QUIC keys are zero or equal")
	}
}

func TestCallsPerConnection(t *testing.T) {
	n := startNode(t, func(c *Config) { c.Limits.MaxCallsPerConn = 2 })
	u := n.register("alice")
	d := n.addDevice(u)
	// Two fetchWaits... one per session: open a second session on the
	// same connection, so two calls are in flight, then a third is busy.
	c := n.dial()
	d1, err := c.AuthenticateDevice(testCtx(t), u.name, d.Key, c.Exporter)
	must(t, "auth", err)
	d2, err := c.AuthenticateDevice(testCtx(t), u.name, d.Key, c.Exporter)
	must(t, "auth", err)
	done := make(chan struct{}, 2)
	for _, s := range []*bench.Device{d1, d2} {
		go func() {
			s.FetchWait(testCtx(t), 0, 0, 2*time.Second)
			done <- struct{}{}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	_, err = pingConn(c)
	wantCode(t, "a third call in flight", err, proto.CodeBusy)
	<-done
	<-done
	if _, err := pingConn(c); err != nil {
		t.Errorf("ping after the calls finished: %v", err)
	}
}

func TestSessionsPerConnection(t *testing.T) {
	n := startNode(t, nil)
	u := n.register("alice")
	d := n.addDevice(u)
	c := n.dial()
	for i := range maxSessionsPerConn {
		if _, err := c.AuthenticateDevice(testCtx(t), u.name, d.Key, c.Exporter); err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
	}
	_, err := c.AuthenticateDevice(testCtx(t), u.name, d.Key, c.Exporter)
	wantCode(t, "one session too many on a connection", err, proto.CodeBusy)
	// Another connection is not affected.
	c2 := n.dial()
	if _, err := c2.AuthenticateDevice(testCtx(t), u.name, d.Key, c2.Exporter); err != nil {
		t.Errorf("a session on another connection: %v", err)
	}
}

// TestLimitErrorsNameTheirFlag: every count and size limit a call can
// hit is refused with CodeLimit and an error naming its serve flag.
func TestLimitErrorsNameTheirFlag(t *testing.T) {
	n := startNode(t, func(c *Config) {
		c.Limits.MaxDevices, c.Limits.MaxGroupSize, c.Limits.MaxKeyPackages = 2, 2, 1
		c.Limits.MaxMessageSize, c.Limits.MaxBatch = 1000, 2
	})
	ctx := testCtx(t)
	want := func(what string, err error, flag string) {
		t.Helper()
		wantCode(t, what, err, proto.CodeLimit)
		if err != nil && !strings.Contains(err.Error(), flag) {
			t.Errorf("%s: error %q does not name %s", what, err, flag)
		}
	}
	alice, bob := n.register("alice"), n.register("bob")
	a1, a2 := n.addDevice(alice), n.addDevice(alice)
	b1 := n.addDevice(bob)
	dk, err := bench.NewDeviceKey(nil)
	must(t, "device key", err)
	want("a third device", alice.conn.RegisterDevice(ctx, alice.login, alice.name, alice.key, dk), "--max-devices")

	now := n.clock.Now()
	two, _ := keyPackages(t, alice, a2, 2, now)
	_, err = a2.UploadKeyPackages(ctx, testSuite, two, nil)
	want("a pool of two (one uploaded at a time)", err, "--max-keypackages")
	_, err = a2.UploadKeyPackages(ctx, testSuite, two[:1], nil)
	must(t, "upload", err)
	_, err = a2.UploadKeyPackages(ctx, testSuite, two[1:], nil)
	want("a second package in a full pool", err, "--max-keypackages")
	publish1 := func(u *user, d *bench.Device) {
		kps, _ := keyPackages(t, u, d, 1, now)
		_, err := d.UploadKeyPackages(ctx, testSuite, nil, kps[0])
		must(t, "last resort", err)
	}
	publish1(bob, b1)

	g := newGroupID(t)
	must(t, "createGroup", a1.CreateGroup(ctx, g))
	added, refs := fetchAll(t, a1, alice, bob)
	if len(added) != 2 {
		t.Fatalf("fetched %d KeyPackages, want 2", len(added))
	}
	_, err = a1.Commit(ctx, g, bench.PrivateMessage(g, 0, mls.ContentTypeCommit, nil), added, nil, bench.Welcome(testSuite, refs))
	want("a group of three", err, "--max-group-size")
	_, err = a1.Commit(ctx, g, bench.PrivateMessage(g, 0, mls.ContentTypeCommit, nil), [][]byte{added[0], added[1], bench.Pub(dk)}, nil, bench.Welcome(testSuite, refs))
	want("three added devices in one commit", err, "--max-group-size")

	_, err = a1.Send(ctx, g, [][]byte{bench.PrivateMessage(g, 0, mls.ContentTypeApplication, make([]byte, 1000))})
	want("an oversized message", err, "--max-message-size")
	m := bench.PrivateMessage(g, 0, mls.ContentTypeApplication, nil)
	_, err = a1.Send(ctx, g, [][]byte{m, m, m})
	want("a batch of three", err, "--max-batch")
}
