package server

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"qpchat/node/proto"
	"qpchat/rpc"
)

// The login rate limits under floods (issue: a burst of pipelined starts
// used to leave a debt of many minutes). Every timing here comes from the
// fake clock: loginWait is replaced, and nothing sleeps.

// tokens reads a bucket's tokens at the limiter's clock (burst if none).
func (r *rateLimiter) tokens(key string) float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.buckets[key]
	if !ok {
		return r.burst
	}
	return min(r.burst, b.tokens+float64(r.now().Sub(b.at))/float64(r.interval))
}

func TestRateLimiterFloor(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1000, 0)}
	const maxDebt = 30 * time.Second
	r := newRateLimiter(30, maxDebt, clock.Now) // a token every 2 s
	charged := 0
	for i := range 2000 {
		d, c := r.reserve("k")
		if d > maxDebt {
			t.Fatalf("start %d of a burst delayed by %v, beyond %v", i, d, maxDebt)
		}
		if c {
			charged++
		}
	}
	// The burst and the debt of 30 s (15 tokens); the rest took nothing.
	if charged != 30+15 {
		t.Errorf("%d of 2000 starts charged, want 45", charged)
	}
	if got := r.tokens("k"); got != -15 {
		t.Errorf("bucket at %v tokens after the burst, want the floor -15", got)
	}
	// The debt follows the last maxDebt only: 30 s after the flood the
	// bucket is at zero and the next start waits one token interval.
	clock.Advance(maxDebt)
	if d, c := r.reserve("k"); d != 2*time.Second || !c {
		t.Errorf("30 s after the burst: delay %v (charged %v), want 2s", d, c)
	}
	clock.Advance(time.Minute)
	if d, _ := r.reserve("k"); d != 0 {
		t.Errorf("90 s after the burst: delay %v", d)
	}
	// A refund gives the token back, never beyond the burst.
	before := r.tokens("k")
	r.reserve("k")
	r.refund("k")
	if got := r.tokens("k"); got != before {
		t.Errorf("reserve and refund left %v tokens, want %v", got, before)
	}
	for range 100 {
		r.refund("k")
	}
	if got := r.tokens("k"); got != 30 {
		t.Errorf("refunds raised the bucket to %v tokens, beyond the burst of 30", got)
	}
}

// limitHarness runs delayLogin on connections with chosen addresses,
// against a server with default limits and the fake clock.
type limitHarness struct {
	t     *testing.T
	clock *fakeClock
	srv   *Server

	mu      sync.Mutex
	delays  []time.Duration
	block   bool          // loginWait waits for its context instead of returning
	waiting chan struct{} // one value per blocked loginWait
}

func newLimitHarness(t *testing.T) *limitHarness {
	h := &limitHarness{t: t, clock: &fakeClock{now: time.Unix(5000, 0)}, waiting: make(chan struct{}, 1000)}
	lim := Limits{}.withDefaults()
	h.srv = &Server{
		cfg:         Config{Limits: lim, Now: h.clock.Now},
		loginByName: newRateLimiter(lim.LoginRateName, lim.MaxLoginDelay, h.clock.Now),
		loginByAddr: newRateLimiter(lim.LoginRateAddr, lim.MaxLoginDelay, h.clock.Now),
	}
	h.srv.loginWait = func(ctx context.Context, d time.Duration) error {
		h.mu.Lock()
		h.delays = append(h.delays, d)
		block := h.block
		h.mu.Unlock()
		if block {
			h.waiting <- struct{}{}
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}
	return h
}

func (h *limitHarness) conn(ip string) *conn {
	return &conn{srv: h.srv, remote: &net.UDPAddr{IP: net.ParseIP(ip), Port: 4433},
		log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// start runs one login start (user "" for a registration) and returns the
// delay it waited (0: none).
func (h *limitHarness) start(c *conn, user string) time.Duration {
	h.t.Helper()
	h.mu.Lock()
	n := len(h.delays)
	h.mu.Unlock()
	if _, err := c.delayLogin(context.Background(), user); err != nil {
		h.t.Fatalf("start for %q from %v: %v", user, c.remote, err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.delays) == n {
		return 0
	}
	return h.delays[len(h.delays)-1]
}

// flood makes n starts for user from ip on 32 connections (the most one
// address may hold), each waiting out its delay at once, as a client that
// pipelines and keeps its connections busy does: the worst debt.
func (h *limitHarness) flood(ip, user string, n int) {
	conns := make([]*conn, 32)
	for i := range conns {
		conns[i] = h.conn(ip)
	}
	for i := range n {
		h.start(conns[i%len(conns)], user)
	}
}

// TestLoginFloodPerAddress: a flood of login starts from one address (a
// NAT, a /64) delays a neighbour behind it at most --max-login-delay
// while it goes on, and not at all a minute after it stops.
func TestLoginFloodPerAddress(t *testing.T) {
	for _, tc := range []struct{ name, attacker, neighbour string }{
		{"IPv4 NAT", "198.51.100.7", "198.51.100.7"},
		{"IPv6 /64", "2001:db8:5:6::bad", "2001:db8:5:6:1::1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newLimitHarness(t)
			max := h.srv.cfg.Limits.MaxLoginDelay
			h.flood(tc.attacker, "mallory", 2000)
			// During the flood: the neighbour shares the address's budget,
			// so waits, but no longer than the cap.
			if d := h.start(h.conn(tc.neighbour), "alice"); d > max {
				t.Errorf("during the flood: neighbour's login delayed %v, beyond %v", d, max)
			}
			// Another address is not affected at all.
			if d := h.start(h.conn("203.0.113.9"), "alice"); d != 0 {
				t.Errorf("during the flood: another address delayed %v", d)
			}
			// The flood goes on for ten more minutes at full speed: the
			// debt stays bounded by the cap.
			for range 10 {
				h.clock.Advance(time.Minute)
				h.flood(tc.attacker, "mallory", 200)
			}
			// It stops. Within a minute an honest login goes through: after
			// 30 s it waits at most one token interval (2 s), after 60 s not
			// at all.
			h.clock.Advance(30 * time.Second)
			if d := h.start(h.conn(tc.neighbour), "alice"); d > 2*time.Second {
				t.Errorf("30 s after the flood: neighbour's login delayed %v", d)
			}
			h.clock.Advance(30 * time.Second)
			if d := h.start(h.conn(tc.neighbour), "alice"); d != 0 {
				t.Errorf("60 s after the flood: neighbour's login delayed %v", d)
			}
		})
	}
}

// TestLoginFloodPerName: a flood of login starts for a victim's name from
// other addresses never delays the victim; from the victim's own address
// it is the per-address case above.
func TestLoginFloodPerName(t *testing.T) {
	h := newLimitHarness(t)
	max := h.srv.cfg.Limits.MaxLoginDelay
	// Starts for "victim" from many addresses, each at most the address
	// rate, and a heavy flood from one.
	for i := range 200 {
		h.flood(net.IPv4(192, 0, 2, byte(i)).String(), "victim", 40)
	}
	h.flood("2001:db8:66::1", "victim", 2000)
	for range 5 {
		h.clock.Advance(time.Minute)
		h.flood("2001:db8:66::1", "victim", 500)
		// While the flood goes on the victim logs in from home at once.
		if d := h.start(h.conn("203.0.113.50"), "victim"); d != 0 {
			t.Fatalf("during the flood: the victim's login delayed %v", d)
		}
	}
	// The attacker's own address is held to the per-(name, address) rate.
	if d := h.start(h.conn("2001:db8:66::2"), "victim"); d == 0 || d > max {
		t.Errorf("the flooding address's next start for the name: delay %v, want within (0, %v]", d, max)
	}
	// After it stops the attacker's address is clean within a minute too
	// (a victim behind the same NAT).
	h.clock.Advance(time.Minute)
	if d := h.start(h.conn("2001:db8:66::3"), "victim"); d != 0 {
		t.Errorf("a minute after the flood: delay %v from the flooding /64", d)
	}
}

// TestRegistrationFlood: registration starts share the per-address budget
// and its floor.
func TestRegistrationFlood(t *testing.T) {
	h := newLimitHarness(t)
	max := h.srv.cfg.Limits.MaxLoginDelay
	h.flood("198.51.100.8", "", 2000)
	if d := h.start(h.conn("198.51.100.8"), ""); d > max {
		t.Errorf("during a registration flood: delay %v beyond %v", d, max)
	}
	if d := h.start(h.conn("198.51.100.8"), "alice"); d > max {
		t.Errorf("a login from the registration flood's address: delay %v beyond %v", d, max)
	}
	h.clock.Advance(time.Minute)
	if d := h.start(h.conn("198.51.100.8"), ""); d != 0 {
		t.Errorf("a minute after a registration flood: delay %v", d)
	}
}

// TestDelayedStartCancelledOrSupersededCostsNothing: a start cancelled
// during its delay, or superseded by a later start on its connection,
// gives its tokens back.
func TestDelayedStartCancelledOrSupersededCostsNothing(t *testing.T) {
	h := newLimitHarness(t)
	const ip = "198.51.100.9"
	key, nkey := addrKey(h.conn(ip).remote), nameAddrKey("alice", addrKey(h.conn(ip).remote))
	h.flood(ip, "bob", 30) // spend the address's burst
	addrBefore, nameBefore := h.srv.loginByAddr.tokens(key), h.srv.loginByName.tokens(nkey)
	h.mu.Lock()
	h.block = true
	h.mu.Unlock()

	// Cancelled.
	c := h.conn(ip)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := c.delayLogin(ctx, "alice"); errc <- err }()
	waitDelayed(t, h)
	cancel()
	err := <-errc
	wantCode(t, "a start cancelled during its delay", err, proto.CodeRateLimited)
	if a, n := h.srv.loginByAddr.tokens(key), h.srv.loginByName.tokens(nkey); a != addrBefore || n != nameBefore {
		t.Errorf("cancelled start: tokens %v/%v, want %v/%v", a, n, addrBefore, nameBefore)
	}

	// Superseded: 100 starts pipelined on one connection leave one
	// waiting and one charged.
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	for range 100 {
		wg.Go(func() { _, err := c.delayLogin(ctx2, "alice"); errs <- err })
		waitDelayed(t, h)
	}
	for range 99 {
		wantCode(t, "a superseded start", <-errs, proto.CodeRateLimited)
	}
	if a, n := h.srv.loginByAddr.tokens(key), h.srv.loginByName.tokens(nkey); a != addrBefore-1 || n != nameBefore-1 {
		t.Errorf("100 pipelined starts: tokens %v/%v, want one charged: %v/%v", a, n, addrBefore-1, nameBefore-1)
	}
	cancel2()
	wg.Wait()
	if a := h.srv.loginByAddr.tokens(key); a != addrBefore {
		t.Errorf("after the last was cancelled: %v tokens, want %v", a, addrBefore)
	}
}

// waitDelayed waits until one more start has begun its delay.
func waitDelayed(t *testing.T, h *limitHarness) {
	t.Helper()
	select {
	case <-h.waiting:
	case <-testCtx(t).Done():
		t.Fatal("no start began its delay")
	}
}

// TestInvalidStartsCostNothing: over the wire, login starts that do not
// parse (any number of them) take no token from the address. A malformed
// registerStart is charged: its answer ("exists" or "invalid") tells
// whether the name is taken.
func TestInvalidStartsCostNothing(t *testing.T) {
	n := startNode(t, nil)
	c := n.dial()
	ctx := testCtx(t)
	rate := float64(n.srv.cfg.Limits.LoginRateAddr)
	for i := range 100 {
		f, rel := c.Node.LoginStart(ctx, func(p rpc.NodeService_loginStart_Params) error {
			if err := p.SetUser("alice"); err != nil {
				return err
			}
			return p.SetKe1([]byte{byte(i)})
		})
		_, err := f.Struct()
		rel()
		wantCode(t, "a loginStart with a malformed KE1", err, proto.CodeInvalid)
	}
	if got := n.srv.loginByAddr.tokens("127.0.0.1"); got != rate {
		t.Errorf("100 malformed login starts left the address %v tokens, want all %v", got, rate)
	}
	// An honest login right after is answered at once, with a token.
	if _, _, err := c.Login(ctx, n.cfg.OPAQUE, "alice", []byte("pw")); err == nil {
		t.Fatal("a login for an unknown user succeeded")
	}
	if got := n.srv.loginByAddr.tokens("127.0.0.1"); got != rate-1 {
		t.Errorf("one login start took %v tokens", rate-got)
	}
	for i := range 3 {
		f, rel := c.Node.RegisterStart(ctx, func(p rpc.NodeService_registerStart_Params) error {
			if err := p.SetUser("alice"); err != nil {
				return err
			}
			return p.SetRequest([]byte{byte(i)})
		})
		_, err := f.Struct()
		rel()
		wantCode(t, "a registerStart with a malformed request", err, proto.CodeInvalid)
	}
	if got := n.srv.loginByAddr.tokens("127.0.0.1"); got != rate-4 {
		t.Errorf("3 malformed registration starts took %v tokens, want 3", rate-1-got)
	}
}

// TestLoginFloodOverTheWire: a flood of pipelined login starts for a
// user's name from the user's own address (a shared NAT) delays the
// user's honest login at most --max-login-delay while the debt lasts,
// and not at all a minute later. Delays are recorded on the fake clock.
func TestLoginFloodOverTheWire(t *testing.T) {
	clock := &fakeClock{now: time.Unix(7000, 0)}
	var mu sync.Mutex
	var delays []time.Duration
	n := startNodeWith(t, func(c *Config) { c.Now = clock.Now }, func(s *Server) {
		s.loginWait = func(ctx context.Context, d time.Duration) error {
			mu.Lock()
			delays = append(delays, d)
			mu.Unlock()
			return nil
		}
	})
	n.clock = clock
	n.register("victim")
	ke1 := func() []byte {
		_, m, err := n.cfg.OPAQUE.NewClientLogin(rand.Reader, []byte("guess"))
		must(t, "KE1", err)
		return m.Marshal()
	}()
	ctx := testCtx(t)
	var wg sync.WaitGroup
	for range 2 {
		c := n.dial()
		var fs []func()
		for range 100 {
			f, rel := c.Node.LoginStart(ctx, func(p rpc.NodeService_loginStart_Params) error {
				if err := p.SetUser("victim"); err != nil {
					return err
				}
				return p.SetKe1(ke1)
			})
			fs = append(fs, func() { f.Struct(); rel() })
		}
		wg.Go(func() {
			for _, f := range fs {
				f()
			}
		})
	}
	wg.Wait()
	lastDelay := func() (time.Duration, int) {
		mu.Lock()
		defer mu.Unlock()
		if len(delays) == 0 {
			return 0, 0
		}
		return delays[len(delays)-1], len(delays)
	}
	_, flooded := lastDelay()
	if flooded == 0 {
		t.Fatal("the flood was never delayed")
	}
	c := n.dial()
	if _, _, err := c.Login(ctx, n.cfg.OPAQUE, "victim", []byte(testPassword)); err != nil {
		t.Fatalf("honest login during the debt: %v", err)
	}
	if d, k := lastDelay(); k == flooded || d > n.srv.cfg.Limits.MaxLoginDelay {
		t.Errorf("honest login during the debt: delay %v (delayed: %v), want at most %v", d, k != flooded, n.srv.cfg.Limits.MaxLoginDelay)
	}
	clock.Advance(time.Minute)
	_, before := lastDelay()
	if _, _, err := c.Login(ctx, n.cfg.OPAQUE, "victim", []byte(testPassword)); err != nil {
		t.Fatalf("honest login a minute after the flood: %v", err)
	}
	if d, k := lastDelay(); k != before {
		t.Errorf("honest login a minute after the flood was delayed %v", d)
	}
}
