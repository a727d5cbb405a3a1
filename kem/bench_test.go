package kem

import (
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/cloudflare/circl/dh/x25519"
)

// benchKEMs are compared in each benchmark: the hybrid against the classical
// DHKEM(X25519) of MLS suite 1 and against X-Wing, plus pure ML-KEM-768 and
// MLKEM768-P256 of draft-ietf-hpke-pq (in no MLS suite) for scale.
func benchKEMs() []KEM {
	return []KEM{HybridX25519MLKEM768(), DHKEMX25519(), XWing(), DHKEMP256(), MLKEM768(), MLKEM768P256()}
}

func benchName(k KEM) string { return fmt.Sprintf("kem=%04x", k.ID()) }

func BenchmarkEncap(b *testing.B) {
	for _, k := range benchKEMs() {
		b.Run(benchName(k), func(b *testing.B) {
			sk, err := k.GenerateKeyPair(rand.Reader)
			if err != nil {
				b.Fatal(err)
			}
			pk := sk.PublicKey()
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := k.Encap(rand.Reader, pk); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecap(b *testing.B) {
	for _, k := range benchKEMs() {
		b.Run(benchName(k), func(b *testing.B) {
			sk, err := k.GenerateKeyPair(rand.Reader)
			if err != nil {
				b.Fatal(err)
			}
			_, enc, err := k.Encap(rand.Reader, sk.PublicKey())
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := k.Decap(sk, enc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDeriveKeyPair(b *testing.B) {
	ikm := make([]byte, 32)
	for _, k := range benchKEMs() {
		b.Run(benchName(k), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := k.DeriveKeyPair(ikm); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkNewPublicKey measures parsing and validating a received public
// key, which MLS does for every leaf and parent key it reads.
func BenchmarkNewPublicKey(b *testing.B) {
	for _, k := range benchKEMs() {
		b.Run(benchName(k), func(b *testing.B) {
			sk, err := k.GenerateKeyPair(rand.Reader)
			if err != nil {
				b.Fatal(err)
			}
			raw := sk.PublicKey().Bytes()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := k.NewPublicKey(raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkHPKESeal100 is a single-shot HPKE Seal of 100 bytes with
// HKDF-SHA256 and AES-128-GCM (Encap included).
func BenchmarkHPKESeal100(b *testing.B) {
	pt := make([]byte, 100)
	for _, k := range benchKEMs() {
		b.Run(benchName(k), func(b *testing.B) {
			s := Suite{KEM: k, KDF: KDFHKDFSHA256, AEAD: AEADAES128GCM}
			sk, err := k.GenerateKeyPair(rand.Reader)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := s.Seal(rand.Reader, sk.PublicKey(), []byte("info"), nil, pt); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkHPKEOpen100 is the matching single-shot Open (Decap included).
func BenchmarkHPKEOpen100(b *testing.B) {
	pt := make([]byte, 100)
	for _, k := range benchKEMs() {
		b.Run(benchName(k), func(b *testing.B) {
			s := Suite{KEM: k, KDF: KDFHKDFSHA256, AEAD: AEADAES128GCM}
			sk, err := k.GenerateKeyPair(rand.Reader)
			if err != nil {
				b.Fatal(err)
			}
			enc, ct, err := s.Seal(rand.Reader, sk.PublicKey(), []byte("info"), nil, pt)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Open(sk, enc, []byte("info"), nil, ct); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkX25519 compares the X25519 used by DHKEM(X25519), the hybrid and
// X-Wing (circl's dh/x25519) with crypto/ecdh's on this machine: a key
// generation (fixed base) and a shared secret (variable base) each.
func BenchmarkX25519(b *testing.B) {
	var sk, peer x25519.Key
	rand.Read(sk[:])
	rand.Read(peer[:])
	peerPub := x25519Public(&peer)
	esk, err := ecdh.X25519().NewPrivateKey(sk[:])
	if err != nil {
		b.Fatal(err)
	}
	epeer, err := ecdh.X25519().NewPublicKey(peerPub[:])
	if err != nil {
		b.Fatal(err)
	}
	b.Run("op=keygen/impl=circl", func(b *testing.B) {
		for b.Loop() {
			x25519Public(&sk)
		}
	})
	b.Run("op=keygen/impl=ecdh", func(b *testing.B) {
		for b.Loop() {
			k, err := ecdh.X25519().NewPrivateKey(sk[:])
			if err != nil {
				b.Fatal(err)
			}
			k.PublicKey()
		}
	})
	b.Run("op=shared/impl=circl", func(b *testing.B) {
		for b.Loop() {
			if _, err := x25519Shared(&sk, peerPub); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("op=shared/impl=ecdh", func(b *testing.B) {
		for b.Loop() {
			if _, err := esk.ECDH(epeer); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkHMACAfterDecap measures HMAC-SHA256 (Go's SHA-NI code) right
// after each KEM's decapsulation, against HMAC-SHA256 alone
// (kem=none): with circl's AVX2 registers left dirty it was 20 times
// slower (avx.go).
func BenchmarkHMACAfterDecap(b *testing.B) {
	key := make([]byte, 32)
	mac := func() {
		m := hmac.New(sha256.New, key)
		m.Write(key)
		m.Sum(key[:0])
	}
	b.Run("kem=none", func(b *testing.B) {
		for b.Loop() {
			mac()
		}
	})
	for _, k := range benchKEMs() {
		b.Run(benchName(k), func(b *testing.B) {
			sk, err := k.GenerateKeyPair(rand.Reader)
			if err != nil {
				b.Fatal(err)
			}
			_, enc, err := k.Encap(rand.Reader, sk.PublicKey())
			if err != nil {
				b.Fatal(err)
			}
			var d time.Duration
			for b.Loop() {
				if _, err := k.Decap(sk, enc); err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				mac()
				d += time.Since(start)
			}
			b.ReportMetric(float64(d.Nanoseconds())/float64(b.N), "hmac-ns/op")
		})
	}
}
