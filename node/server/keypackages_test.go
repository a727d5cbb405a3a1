package server

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"qpchat/node/bench"
	"qpchat/node/proto"
)

func TestKeyPackagesHandedOutOnce(t *testing.T) {
	const fetchers = 16
	n := startNode(t, nil)
	alice, bob := n.register("alice"), n.register("bob")
	a1 := n.addDevice(alice)
	kps, _ := keyPackages(t, alice, a1, fetchers+1, n.clock.Now())
	pool, last := kps[:fetchers], kps[fetchers]
	size, err := a1.UploadKeyPackages(testCtx(t), testSuite, pool, last)
	must(t, "upload", err)
	if size != fetchers {
		t.Fatalf("pool size %d after upload, want %d", size, fetchers)
	}

	// 16 of bob's devices fetch at once, each on its own connection.
	devs := make([]*bench.Device, fetchers)
	for i := range devs {
		devs[i] = n.addDevice(bob)
	}
	got := make([][]bench.FetchedKeyPackage, fetchers)
	var wg sync.WaitGroup
	for i, d := range devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g, err := d.FetchKeyPackages(testCtx(t), "alice", testSuite)
			got[i] = g
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, g := range got {
		if len(g) != 1 || g[0].LastResort || !bytes.Equal(g[0].Device, a1.Pub()) {
			t.Fatalf("a fetcher got %+v, want one pool package of a1", g)
		}
		if seen[string(g[0].KeyPackage)] {
			t.Fatal("a KeyPackage was handed out twice")
		}
		seen[string(g[0].KeyPackage)] = true
	}
	for _, p := range pool {
		if !seen[string(p)] {
			t.Error("a pool package was never handed out")
		}
	}
	// The pool is empty: the last resort, again and again, never consumed.
	for range 2 {
		g, err := devs[0].FetchKeyPackages(testCtx(t), "alice", testSuite)
		must(t, "fetch from an empty pool", err)
		if len(g) != 1 || !g[0].LastResort || !bytes.Equal(g[0].KeyPackage, last) {
			t.Fatalf("fetch from an empty pool: %+v, want the last resort", g)
		}
	}
	// The owner is told that its pool ran low.
	_, q, err := a1.Fetch(testCtx(t), 0, 0)
	must(t, "fetch", err)
	if len(q.KeyPackagesLow) != 1 || q.KeyPackagesLow[0] != testSuite {
		t.Errorf("keyPackagesLow = %v, want [%#x]", q.KeyPackagesLow, testSuite)
	}
	// A new upload replaces the last resort and clears the warning.
	more, _ := keyPackages(t, alice, a1, lowPoolThreshold+1, n.clock.Now())
	_, err = a1.UploadKeyPackages(testCtx(t), testSuite, more[:lowPoolThreshold], more[lowPoolThreshold])
	must(t, "upload", err)
	if _, q, _ = a1.Fetch(testCtx(t), 0, 0); len(q.KeyPackagesLow) != 0 {
		t.Errorf("keyPackagesLow = %v after an upload, want none", q.KeyPackagesLow)
	}
}

func TestKeyPackageFetchRateLimit(t *testing.T) {
	n := startNode(t, func(c *Config) { c.Limits.KeyPackageFetchRate = 3 })
	alice, bob, carol := n.register("alice"), n.register("bob"), n.register("carol")
	a1, c1 := n.addDevice(alice), n.addDevice(carol)
	b1, b2 := n.addDevice(bob), n.addDevice(bob)
	kps, _ := keyPackages(t, alice, a1, 1, n.clock.Now())
	_, err := a1.UploadKeyPackages(testCtx(t), testSuite, nil, kps[0])
	must(t, "upload", err)
	for i := range 3 {
		_, err := b1.FetchKeyPackages(testCtx(t), "alice", testSuite)
		must(t, "fetch within the rate", err)
		_ = i
	}
	_, err = b1.FetchKeyPackages(testCtx(t), "alice", testSuite)
	wantCode(t, "fourth fetch in a minute by one caller of one target", err, proto.CodeRateLimited)
	// Other callers, and other targets, have their own budgets.
	_, err = b2.FetchKeyPackages(testCtx(t), "alice", testSuite)
	must(t, "fetch by another device", err)
	_, err = b1.FetchKeyPackages(testCtx(t), "carol", testSuite)
	must(t, "fetch of another user", err)
	_ = c1
	// A minute later the budget is back.
	n.clock.Advance(time.Minute)
	_, err = b1.FetchKeyPackages(testCtx(t), "alice", testSuite)
	must(t, "fetch a minute later", err)
}

func TestKeyPackageUploadValidation(t *testing.T) {
	n := startNode(t, func(c *Config) { c.Limits.MaxKeyPackages = 3 })
	alice, bob := n.register("alice"), n.register("bob")
	a1, a2 := n.addDevice(alice), n.addDevice(alice)
	b1 := n.addDevice(bob)
	now := n.clock.Now()
	upload := func(d *bench.Device, kp []byte) error {
		_, err := d.UploadKeyPackages(testCtx(t), testSuite, [][]byte{kp}, nil)
		return err
	}
	// Another device's package (same user).
	other, _ := keyPackages(t, alice, a2, 1, now)
	wantCode(t, "upload of another device's KeyPackage", upload(a1, other[0]), proto.CodeNotAcceptable)
	// A package certified by another user key.
	m, _, err := bench.KeyPackage(testSuite, "alice", bob.key, a1.Key, now, 0)
	must(t, "KeyPackage", err)
	wantCode(t, "upload with a certificate from another user key", upload(a1, m), proto.CodeNotAcceptable)
	// Naming another user.
	m, _, err = bench.KeyPackage(testSuite, "bob", bob.key, a1.Key, now, 0)
	must(t, "KeyPackage", err)
	wantCode(t, "upload of a KeyPackage naming another user", upload(a1, m), proto.CodeNotAcceptable)
	// A lifetime beyond 90 days.
	m, _, err = bench.KeyPackage(testSuite, "alice", alice.key, a1.Key, now, 100*24*time.Hour)
	must(t, "KeyPackage", err)
	wantCode(t, "upload with a 100-day lifetime", upload(a1, m), proto.CodeNotAcceptable)
	// Expired at the node's clock.
	m, _, err = bench.KeyPackage(testSuite, "alice", alice.key, a1.Key, now.Add(-30*24*time.Hour), 7*24*time.Hour)
	must(t, "KeyPackage", err)
	wantCode(t, "upload of an expired KeyPackage", upload(a1, m), proto.CodeNotAcceptable)
	// Tampered: a flipped byte breaks the signature.
	good, _ := keyPackages(t, alice, a1, 1, now)
	bad := bytes.Clone(good[0])
	bad[len(bad)-5] ^= 1
	wantCode(t, "upload of a tampered KeyPackage", upload(a1, bad), proto.CodeNotAcceptable)
	// Declared under another suite; a suite devices cannot sign for.
	_, err = a1.UploadKeyPackages(testCtx(t), 0xFA01, good, nil)
	wantCode(t, "upload under another suite", err, proto.CodeNotAcceptable)
	_, err = a1.UploadKeyPackages(testCtx(t), 0x0002, good, nil)
	wantCode(t, "upload for a P-256 suite", err, proto.CodeInvalid)
	// The pool limit.
	four, _ := keyPackages(t, alice, a1, 4, now)
	_, err = a1.UploadKeyPackages(testCtx(t), testSuite, four, nil)
	wantCode(t, "upload beyond --max-keypackages", err, proto.CodeLimit)
	// Nothing of the refused uploads was stored; a valid one is.
	size, err := a1.UploadKeyPackages(testCtx(t), testSuite, good, nil)
	must(t, "valid upload", err)
	if size != 1 {
		t.Errorf("pool size %d, want 1", size)
	}
	_ = b1
}
