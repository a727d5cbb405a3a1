package perf

import (
	"crypto/rand"
	"testing"
	"time"

	"qpchat/mls"
)

// BenchmarkPGO runs the browser client's work natively, for the
// profile-guided build of the browser client: web/default.pgo is its CPU
// profile with the purego tag, which makes the standard library, circl and
// x/crypto run the same portable Go code they run in WebAssembly (no
// assembly), so the compiler inlines the calls that are hot there. Refresh
// it (then go generate ./web/app) with
//
//	go test -tags purego ./web/perf -run XXX -bench PGO -benchtime 1x -cpuprofile web/default.pgo
func BenchmarkPGO(b *testing.B) {
	for b.Loop() {
		// Login once, groups of the sizes people chat in and a larger
		// one; then messages, what a user waits for most often.
		for i := range 4 {
			if _, err := Run(32, 20, i == 0); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := Run(512, 2, false); err != nil {
			b.Fatal(err)
		}
		if err := messages(32, 60000); err != nil {
			b.Fatal(err)
		}
	}
}

// messages has one member of an n-member group send count 100-byte
// messages to another.
func messages(n, count int) error {
	now := time.Now()
	cfg := mls.Config{ValidateCredential: func(mls.Credential, []byte) error { return nil }}
	kps, msgs, err := keyPackages(n, now)
	if err != nil {
		return err
	}
	g, err := mls.CreateGroup(rand.Reader, cfg, []byte("pgo group"), kps[0], nil)
	if err != nil {
		return err
	}
	out, err := g.Add(rand.Reader, msgs, now)
	if err != nil {
		return err
	}
	if _, err := g.MergePending(); err != nil {
		return err
	}
	r, err := mls.JoinFromWelcome(cfg, out.Welcome, kps[n-1], nil, now)
	if err != nil {
		return err
	}
	text := make([]byte, 100)
	for range count {
		ct, err := g.Protect(rand.Reader, text, nil)
		if err != nil {
			return err
		}
		if _, err := r.ProcessMessage(ct, now); err != nil {
			return err
		}
	}
	return nil
}
