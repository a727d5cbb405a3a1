package rpc

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"
)

type testKey struct {
	priv ed25519.PrivateKey
	fp   string
}

func newTestKey(t testing.TB) testKey {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return testKey{priv, FingerprintOfSPKI(spki)}
}

// certFor makes a certificate of k's public key committing to next,
// signed by signer (k itself for a genuine one).
func certFor(t testing.TB, k, signer testKey, next string) *x509.Certificate {
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "qpchat node"},
		NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<32, 0)}
	if next != "" {
		ext, err := SuccessorExtension(next)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.ExtraExtensions = []pkix.Extension{ext}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.priv.Public(), signer.priv)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestFollowSuccession(t *testing.T) {
	k0, k1, k2, k3, evil := newTestKey(t), newTestKey(t), newTestKey(t), newTestKey(t), newTestKey(t)
	c0 := certFor(t, k0, k0, k1.fp)
	c1 := certFor(t, k1, k1, k2.fp)
	c2 := certFor(t, k2, k2, k3.fp)
	if got, err := Successor(c0); err != nil || got != k1.fp {
		t.Fatalf("Successor = %q, %v; want %s", got, err, k1.fp)
	}
	if got, err := Successor(certFor(t, k0, k0, "")); err != nil || got != "" {
		t.Errorf("Successor of a certificate without commitment = %q, %v", got, err)
	}
	for _, tc := range []struct {
		name  string
		chain []*x509.Certificate
		next  string
		steps int // 0: refused
	}{
		{"direct successor", []*x509.Certificate{c1, c0}, k1.fp, 1},
		{"two steps", []*x509.Certificate{c2, c1, c0}, k1.fp, 2},
		{"chain in any order", []*x509.Certificate{c2, c0, c1}, k1.fp, 2},
		{"missing link", []*x509.Certificate{c2, c0}, k1.fp, 0},
		{"no commitment pinned", []*x509.Certificate{c1, c0}, "", 0},
		{"uncommitted key", []*x509.Certificate{certFor(t, evil, evil, ""), c0}, k1.fp, 0},
		// A certificate of k1's key signed by another key cannot speak
		// for k1: its commitment to evil is refused.
		{"forged link", []*x509.Certificate{certFor(t, evil, evil, ""), certFor(t, k1, evil, evil.fp)}, k1.fp, 0},
		{"back to a retired key", []*x509.Certificate{c0, c1}, k2.fp, 0},
	} {
		steps, err := followSuccession(tc.chain, tc.next)
		if tc.steps == 0 && err == nil {
			t.Errorf("%s: accepted in %d steps, want refused", tc.name, steps)
		}
		if tc.steps != 0 && (err != nil || steps != tc.steps) {
			t.Errorf("%s: %d steps, %v; want %d", tc.name, steps, err, tc.steps)
		}
	}
}

func FuzzParseSuccessor(f *testing.F) {
	ext, err := SuccessorExtension(FingerprintOfSPKI([]byte("x")))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ext.Value)
	f.Add([]byte{4, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		fp, err := parseSuccessor(b)
		if err != nil {
			return
		}
		again, err := SuccessorExtension(fp)
		if err != nil || string(again.Value) != string(b) {
			t.Fatalf("accepted %x does not re-encode the same (%x, %v)", b, again.Value, err)
		}
	})
}

func TestFilePinStoreSuccessor(t *testing.T) {
	s := NewFilePinStore(t.TempDir())
	k := newTestKey(t)
	if n, err := s.Successor("h:1"); err != nil || n != "" {
		t.Fatalf("empty store: %q, %v", n, err)
	}
	if err := s.SetSuccessor("H:1", k.fp); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Successor("h:1"); err != nil || n != k.fp {
		t.Errorf("Successor = %q, %v; want %s", n, err, k.fp)
	}
	if err := s.SetSuccessor("h:1", "md5:00"); err == nil {
		t.Error("a malformed commitment was stored")
	}
	if err := s.SetSuccessor("h:1", ""); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.Successor("h:1"); n != "" {
		t.Errorf("cleared successor = %q", n)
	}
}
