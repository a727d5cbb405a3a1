// Package perf measures the operations a browser user waits for — the
// login's Argon2id, joining and committing in an MLS group, encrypting
// and decrypting a message — with the same Go code natively and in the
// browser (compiled into the web client, which exposes it as
// qpchat.bench). BenchmarkWebVsNative in web/app runs both on one
// machine and reports the ratios (issue 16's performance targets).
//
// The figures are wall-clock medians of a few runs: in the browser there
// is no CPU-time clock, and WebAssembly runs on one thread there.
package perf

import (
	"crypto/rand"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"time"

	"qpchat/mls"
	"qpchat/opaque"
)

// Result holds the median time of each operation, in milliseconds.
type Result struct {
	Members   int     `json:"members"`
	Suite     string  `json:"suite"`
	Argon2id  float64 `json:"argon2idMillis"`   // opaque.DefaultArgon2id, one login's key stretching
	Build     float64 `json:"buildMillis"`      // creating the group and adding everyone in one commit
	Join      float64 `json:"joinMillis"`       // the last member joining from the Welcome
	Commit    float64 `json:"commitMillis"`     // a full-path commit by the creator (Update)
	Process   float64 `json:"processMillis"`    // that commit processed by the last member
	Encrypt   float64 `json:"encryptMillis"`    // a 100-byte message protected (PrivateMessage)
	Decrypt   float64 `json:"decryptMillis"`    // and unprotected by another member
	KeyPkgs   float64 `json:"keyPackageMillis"` // making one KeyPackage (per member set-up)
	Iters     int     `json:"iterations"`
	TotalSecs float64 `json:"totalSeconds"`
}

// Suite is qpchat's default MLS ciphersuite (X25519 + ML-KEM-768).
const Suite = mls.CipherSuiteMLS128HybridX25519MLKEM768AES128GCMSHA256Ed25519

// warmMessages are encrypted and decrypted before timedMessages are
// measured.
const warmMessages, timedMessages = 20, 300

// MaxMembers bounds Run's group size (a browser tab's memory).
const MaxMembers = 4096

// Run measures a group of n members (2 ≤ n ≤ MaxMembers), each operation
// iters times (1 ≤ iters ≤ 100), and, with argon2id, the login's key
// stretching once.
func Run(n, iters int, argon2id bool) (Result, error) {
	if n < 2 || n > MaxMembers {
		return Result{}, fmt.Errorf("perf: members %d, want 2 to %d", n, MaxMembers)
	}
	if iters < 1 || iters > 100 {
		return Result{}, fmt.Errorf("perf: iterations %d, want 1 to 100", iters)
	}
	start := time.Now()
	res := Result{Members: n, Suite: fmt.Sprintf("0x%04X", uint16(Suite)), Iters: iters}
	if argon2id {
		t := time.Now()
		if _, err := opaque.DefaultArgon2id.Stretch([]byte("a password of a browser user"), 64); err != nil {
			return Result{}, err
		}
		res.Argon2id = ms(time.Since(t))
	}

	now := time.Now()
	cfg := mls.Config{ValidateCredential: func(mls.Credential, []byte) error { return nil }}
	t := time.Now()
	kps, msgs, err := keyPackages(n, now)
	if err != nil {
		return Result{}, err
	}
	res.KeyPkgs = ms(time.Since(t)) / float64(n)

	var build, join, commit, process, enc, dec []time.Duration
	var creator, last *mls.Group
	for range iters {
		t := time.Now()
		g, err := mls.CreateGroup(rand.Reader, cfg, []byte("perf group"), kps[0], nil)
		if err != nil {
			return Result{}, err
		}
		out, err := g.Add(rand.Reader, msgs, now)
		if err != nil {
			return Result{}, err
		}
		if _, err := g.MergePending(); err != nil {
			return Result{}, err
		}
		build = append(build, time.Since(t))

		t = time.Now()
		j, err := mls.JoinFromWelcome(cfg, out.Welcome, kps[n-1], nil, now)
		if err != nil {
			return Result{}, err
		}
		join = append(join, time.Since(t))
		creator, last = g, j
	}
	for range iters {
		t := time.Now()
		out, err := creator.Commit(rand.Reader, &mls.CommitOptions{ForcePath: true}, now)
		if err != nil {
			return Result{}, err
		}
		if _, err := creator.MergePending(); err != nil {
			return Result{}, err
		}
		commit = append(commit, time.Since(t))
		t = time.Now()
		if _, err := last.ProcessMessage(out.Commit, now); err != nil {
			return Result{}, fmt.Errorf("perf: processing the commit: %w", err)
		}
		process = append(process, time.Since(t))
	}
	// The messages are measured in a steady state, as Go's benchmarks
	// measure: the set-up's garbage (every member's private KeyPackage,
	// the Welcome) is dropped and collected first, so that neither side
	// charges an earlier phase's collection to a message (natively the
	// collector runs on another core; WebAssembly has one thread); a few
	// untimed messages warm up the browser's compiler tiers; then many
	// are timed, so that the medians of these sub-millisecond operations
	// are stable. The creator encrypts them all, then the last member
	// decrypts them all, each in its own loop, as a sender's and a
	// receiver's clients do: interleaved, every encryption would start
	// inside the Promise callback that resumed the decryption before it
	// (WebCrypto's verification, mls/ed25519_js.go), which no user's
	// message does and which cost it 5-15 µs in Chromium.
	kps, msgs = nil, nil
	runtime.GC()
	text := make([]byte, 100)
	cts := make([][]byte, 0, warmMessages+timedMessages)
	for i := range warmMessages + timedMessages {
		t := time.Now()
		ct, err := creator.Protect(rand.Reader, text, nil)
		if err != nil {
			return Result{}, err
		}
		if i >= warmMessages {
			enc = append(enc, time.Since(t))
		}
		cts = append(cts, ct)
	}
	for i, ct := range cts {
		t := time.Now()
		ev, err := last.ProcessMessage(ct, now)
		if err != nil {
			return Result{}, fmt.Errorf("perf: decrypting message %d: %w", i, err)
		}
		if ev.Kind != mls.EventApplication || len(ev.Data) != len(text) {
			return Result{}, errors.New("perf: the decrypted message is not the one sent")
		}
		if i >= warmMessages {
			dec = append(dec, time.Since(t))
		}
	}
	res.Build, res.Join = median(build), median(join)
	res.Commit, res.Process = median(commit), median(process)
	res.Encrypt, res.Decrypt = median(enc), median(dec)
	res.TotalSecs = time.Since(start).Seconds()
	return res, nil
}

// keyPackages makes n members' KeyPackages and the messages of all but
// the first (the group's creator), to add them.
func keyPackages(n int, now time.Time) ([]*mls.KeyPackagePrivate, [][]byte, error) {
	kps := make([]*mls.KeyPackagePrivate, n)
	msgs := make([][]byte, 0, n-1)
	for i := range kps {
		sig, err := mls.GenerateSignatureKey(Suite, rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		cred := mls.Credential{Type: mls.CredentialTypeBasic, Identity: fmt.Appendf(nil, "member-%d", i)}
		if kps[i], err = mls.NewKeyPackage(rand.Reader, Suite, cred, sig, now, nil); err != nil {
			return nil, nil, err
		}
		if i > 0 {
			m, err := kps[i].Message()
			if err != nil {
				return nil, nil, err
			}
			msgs = append(msgs, m)
		}
	}
	return kps, msgs, nil
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

func median(ds []time.Duration) float64 {
	s := slices.Clone(ds)
	slices.Sort(s)
	return ms(s[len(s)/2])
}
