package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"qpchat/node/bench"
	"qpchat/node/cluster"
	"qpchat/node/cluster/clustertest"
	"qpchat/node/proto"
	"qpchat/rpc"
)

// sharedCluster starts a 3-node JetStream cluster and returns a limit
// harness per node, each a "node" whose login and KeyPackage limits are
// shared through its own NATS server, all on one fake clock.
func sharedCluster(t *testing.T) (*clustertest.Cluster, []*limitHarness, *fakeClock) {
	t.Helper()
	c := clustertest.Start(t, 3)
	clock := &fakeClock{now: time.Unix(5000, 0)}
	key := bytes.Repeat([]byte{7}, 32)
	var hs []*limitHarness
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		rs, err := cluster.OpenRateStore(ctx, c.Conns[i], cluster.DefaultRateStream, 3)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		h := newLimitHarness(t)
		h.clock = clock
		h.srv.cfg.Now = clock.Now
		sh, err := newSharedLimits(rs, key, h.srv.cfg.Limits, clock.Now)
		if err != nil {
			t.Fatal(err)
		}
		h.srv.shared = sh
		hs = append(hs, h)
	}
	return c, hs, clock
}

// TestSharedRateLimitOneBudget: login starts and KeyPackage fetches from
// one client spread over the three nodes of a cluster get the delays
// and refusals that one node alone gives them.
func TestSharedRateLimitOneBudget(t *testing.T) {
	_, hs, clock := sharedCluster(t)
	lim := hs[0].srv.cfg.Limits

	// The reference: one node with in-process buckets, same clock steps.
	ref := newLimitHarness(t)
	ref.clock.now = clock.Now()
	ref.srv.cfg.Now = ref.clock.Now

	ip := "203.0.113.9"
	refConn := ref.conn(ip)
	conns := []*conn{hs[0].conn(ip), hs[1].conn(ip), hs[2].conn(ip)}
	n := lim.LoginRateAddr + 10
	for i := range n {
		got := hs[i%3].start(conns[i%3], "alice")
		want := ref.start(refConn, "alice")
		if got != want {
			t.Errorf("start %d on node %d: delay %v, want %v (one node's)", i, i%3, got, want)
		}
		if i%7 == 6 { // time passes now and then
			clock.Advance(3 * time.Second)
			ref.clock.Advance(3 * time.Second)
		}
	}
	// KeyPackage fetches: exactly the budget is allowed, over all nodes.
	ctx := context.Background()
	allowed := 0
	for i := range lim.KeyPackageFetchRate + 9 {
		ok, err := hs[i%3].srv.shared.kpFetch.allow(ctx, "device/bob")
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			allowed++
		}
	}
	if allowed != lim.KeyPackageFetchRate {
		t.Errorf("KeyPackage fetches allowed over 3 nodes = %d, want the budget %d", allowed, lim.KeyPackageFetchRate)
	}
	// A refund on one node is a token for every node: after it and a
	// token interval, two fetches pass (on a node that was refused
	// before), and no third.
	hs[0].srv.shared.kpFetch.refund("device/bob")
	hs[0].srv.shared.wait()
	clock.Advance(time.Minute / time.Duration(lim.KeyPackageFetchRate))
	for i, want := range []bool{true, true, false} {
		if ok, err := hs[2].srv.shared.kpFetch.allow(ctx, "device/bob"); err != nil || ok != want {
			t.Errorf("fetch %d after a refund and a token interval: allowed %v, %v; want %v", i, ok, err, want)
		}
	}
}

// TestSharedRateLimitFailsClosed: a node that cannot reach the cluster's
// rate-limit buckets (two of three nodes gone: no quorum) refuses login
// starts and KeyPackage fetches as unavailable (clients move to another node), within a few
// seconds, instead of answering them unlimited.
func TestSharedRateLimitFailsClosed(t *testing.T) {
	c, hs, _ := sharedCluster(t)
	h := hs[0]
	// Works while the cluster is whole.
	if d := h.start(h.conn("192.0.2.1"), "alice"); d != 0 {
		t.Fatalf("first start delayed %v", d)
	}
	c.Stop(1)
	c.Stop(2)
	start := time.Now()
	_, err := h.conn("192.0.2.2").delayLogin(context.Background(), "carol")
	if proto.CodeOf(err) != proto.CodeUnavailable {
		t.Errorf("login start without the buckets: %v; want a %s error", err, proto.CodeUnavailable)
	}
	ok, err := h.srv.shared.kpFetch.allow(context.Background(), "device/dave")
	if ok || !errors.Is(err, errRateStore) {
		t.Errorf("KeyPackage fetch without the buckets: allowed %v, %v; want refused with errRateStore", ok, err)
	}
	if el := time.Since(start); el > 4*sharedTimeout+time.Second {
		t.Errorf("refusing took %v", el)
	}
}

// memRateStore is a RateStore in memory that counts its calls.
type memRateStore struct {
	mu    sync.Mutex
	recs  map[string][]byte
	revs  map[string]uint64
	next  uint64
	calls int
}

func newMemRateStore() *memRateStore {
	return &memRateStore{recs: map[string][]byte{}, revs: map[string]uint64{}}
}

func (m *memRateStore) Get(_ context.Context, key string) ([]byte, uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	return bytes.Clone(m.recs[key]), m.revs[key], nil
}

func (m *memRateStore) Swap(_ context.Context, key string, v []byte, rev uint64) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.revs[key] != rev {
		return 0, nil
	}
	m.next++
	m.recs[key], m.revs[key] = bytes.Clone(v), m.next
	return m.next, nil
}

// TestSharedRateLimitLease: with a large budget each node takes leases;
// three nodes together never admit more than the budget, nor fewer than
// the budget less what two leases may strand, and they save round trips.
func TestSharedRateLimitLease(t *testing.T) {
	rs := newMemRateStore()
	clock := &fakeClock{now: time.Unix(5000, 0)}
	key := bytes.Repeat([]byte{1}, 32)
	const perMinute = 600
	var ls []*sharedLimiter
	ident := func(b []byte) []byte { return append(bytes.Clone(key), b...) }
	for range 3 {
		ls = append(ls, newSharedLimiter("test", rs, ident, perMinute, 0, clock.Now))
	}
	lease := ls[0].lease
	if lease != perMinute/leaseDivisor {
		t.Fatalf("lease = %d", lease)
	}
	allowed, calls := 0, 0
	for i := range 2 * perMinute {
		calls++
		ok, err := ls[(i/7)%3].allow(context.Background(), "k")
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			allowed++
		}
	}
	if allowed > perMinute || allowed < perMinute-3*(lease-1) {
		t.Errorf("allowed %d of %d calls; want %d less at most %d stranded", allowed, calls, perMinute, 3*(lease-1))
	}
	if rs.calls*4 > calls {
		t.Errorf("%d round trips for %d calls; leases and refusals should save most", rs.calls, calls)
	}
}

// TestSharedRateLimitRefusalCache: a node refused by a shared bucket
// refuses locally, without a round trip, until a token is due.
func TestSharedRateLimitRefusalCache(t *testing.T) {
	rs := newMemRateStore()
	clock := &fakeClock{now: time.Unix(5000, 0)}
	l := newSharedLimiter("test", rs, func(b []byte) []byte { return b }, 6, 0, clock.Now) // a token per 10 s
	ctx := context.Background()
	for i := range 6 {
		if ok, err := l.allow(ctx, "k"); !ok || err != nil {
			t.Fatalf("allow %d = %v, %v", i, ok, err)
		}
	}
	if ok, _ := l.allow(ctx, "k"); ok {
		t.Fatal("allowed beyond the burst")
	}
	before := rs.calls
	for range 100 {
		if ok, _ := l.allow(ctx, "k"); ok {
			t.Fatal("allowed beyond the burst")
		}
	}
	if rs.calls != before {
		t.Errorf("a flood of refused calls made %d round trips, want 0", rs.calls-before)
	}
	clock.Advance(10 * time.Second)
	if ok, err := l.allow(ctx, "k"); !ok || err != nil {
		t.Errorf("allow a token interval later = %v, %v", ok, err)
	}
}

// FuzzSharedBucket: a shared bucket record parses without panicking, to
// tokens within [floor, burst], and a record in range re-marshals to
// itself.
func FuzzSharedBucket(f *testing.F) {
	f.Add(sharedBucket{tokens: 3.5, at: time.Unix(5000, 0)}.marshal())
	f.Add(sharedBucket{tokens: -20, at: time.Unix(0, 1)}.marshal())
	f.Add([]byte("short"))
	f.Fuzz(func(t *testing.T, in []byte) {
		const floor, burst = -15, 30
		b, err := parseSharedBucket(in, floor, burst)
		if err != nil {
			if b != (sharedBucket{}) {
				t.Fatalf("error %v with a partial value %+v", err, b)
			}
			return
		}
		if b.tokens < floor || b.tokens > burst {
			t.Fatalf("tokens %v outside [%v, %v]", b.tokens, floor, burst)
		}
		if out := b.marshal(); !bytes.Equal(out, in) {
			if b2, _ := parseSharedBucket(in, -1e300, 1e300); b2.tokens == b.tokens {
				t.Fatalf("in-range record re-marshals differently: %x -> %x", in, out)
			}
		}
	})
}

// TestSharedLoginBudgetOverTheWire: three real nodes of one cluster (one
// store, one rate-limit stream), a client sending login starts for one
// name from one address round-robin to them over QUIC: the name's budget
// of 10 starts a minute is answered at once over all three nodes
// together, and every start after it is delayed, as on one node. This
// checks the wiring: every node derives the same bucket keys from the
// shared store key.
func TestSharedLoginBudgetOverTheWire(t *testing.T) {
	c := clustertest.Start(t, 3)
	clock := &fakeClock{now: time.Unix(7000, 0)}
	var mu sync.Mutex
	undelayed, delayed := 0, 0
	name := fmt.Sprintf("limits-%d", time.Now().UnixNano())
	var nodes []*node
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		rs, err := cluster.OpenRateStore(ctx, c.Conns[i], cluster.DefaultRateStream, 3)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		l := c.Log(t, i, name)
		n := startNodeWith(t, func(cfg *Config) {
			cfg.Now = clock.Now
			cfg.StoreLog, cfg.RateStore = l, rs
			cfg.StorePassphrase = []byte("cluster store pass")
		}, func(s *Server) {
			s.loginWait = func(ctx context.Context, d time.Duration) error {
				mu.Lock()
				delayed++
				mu.Unlock()
				return nil
			}
		})
		nodes = append(nodes, n)
	}
	ctx := testCtx(t)
	var conns []*bench.Conn
	for _, n := range nodes {
		conns = append(conns, n.dial())
	}
	ke1 := func() []byte {
		_, m, err := nodes[0].cfg.OPAQUE.NewClientLogin(rand.Reader, []byte("guess"))
		must(t, "KE1", err)
		return m.Marshal()
	}()
	rate := nodes[0].srv.cfg.Limits.LoginRateName
	for i := range 3 * rate {
		mu.Lock()
		before := delayed
		mu.Unlock()
		f, rel := conns[i%3].Node.LoginStart(ctx, func(p rpc.NodeService_loginStart_Params) error {
			if err := p.SetUser("mallory"); err != nil {
				return err
			}
			return p.SetKe1(ke1)
		})
		_, err := f.Struct()
		rel()
		must(t, fmt.Sprint("login start ", i, " on node ", i%3), err)
		mu.Lock()
		if delayed == before {
			undelayed++
		}
		mu.Unlock()
	}
	if undelayed != rate {
		t.Errorf("%d of %d login starts over three nodes answered at once, want the one budget of %d", undelayed, 3*rate, rate)
	}
}
