package kem

import (
	"crypto/sha3"
	"fmt"
	"io"

	"github.com/cloudflare/circl/dh/x25519"
	"github.com/cloudflare/circl/kem/mlkem/mlkem768"
)

// Shared parts of the two X25519 + ML-KEM-768 KEMs of this package, the
// qpchat hybrid (hybrid.go) and X-Wing (xwing.go). Only what is the same in
// both lives here: how the parsed parts are held and encoded, and how a
// 32-byte seed is expanded and read. Validation, component order of the
// encodings and the combiners stay in each KEM's file.

// x25519MLKEMOrder is the order of the two parts in a public key and in a
// SHAKE256-expanded seed.
type x25519MLKEMOrder bool

const (
	x25519First x25519MLKEMOrder = false // qpchat hybrid: X25519 ‖ ML-KEM
	mlkemFirst  x25519MLKEMOrder = true  // X-Wing: ML-KEM ‖ X25519
)

// x25519MLKEMPublicKey keeps both parts parsed (the ML-KEM key with its
// expanded matrix), so Encap to a key that is used again does not parse it
// again.
type x25519MLKEMPublicKey struct {
	x   x25519.Key
	m   *mlkem768.PublicKey
	enc []byte // the parts in the KEM's order, encoded by newX25519MLKEMPublicKey
}

// newX25519MLKEMPublicKey assembles a public key from its parts. Its encoding
// is computed from the parts, never kept from a parser's input, so Bytes
// shows what was decoded and the round-trip tests can fail.
func newX25519MLKEMPublicKey(order x25519MLKEMOrder, x *x25519.Key, m *mlkem768.PublicKey) x25519MLKEMPublicKey {
	enc := make([]byte, x25519.Size+mlkem768.PublicKeySize)
	if order == mlkemFirst {
		m.Pack(enc[:mlkem768.PublicKeySize])
		copy(enc[mlkem768.PublicKeySize:], x[:])
	} else {
		copy(enc, x[:])
		m.Pack(enc[x25519.Size:])
	}
	clearAVXUpper()
	return x25519MLKEMPublicKey{x: *x, m: m, enc: enc}
}

func (pk *x25519MLKEMPublicKey) Bytes() []byte { return append([]byte(nil), pk.enc...) }

// x25519MLKEMPrivateKey holds the seed and the two private parts expanded
// from it.
type x25519MLKEMPrivateKey struct {
	seed []byte
	x    x25519.Key // clamped by x25519.KeyGen and x25519.Shared when used
	m    *mlkem768.PrivateKey
}

func (sk *x25519MLKEMPrivateKey) Bytes() []byte { return append([]byte(nil), sk.seed...) }

// expandX25519MLKEMSeed expands a 32-byte seed with SHAKE256 to 96 bytes and
// splits them, in the given order, into the X25519 private key (32) and
// ML-KEM-768's d ‖ z (64, FIPS 203, Algorithm 16, ML-KEM.KeyGen_internal).
// It returns the private parts and the public key's parts. The caller has
// checked the seed's length.
func expandX25519MLKEMSeed(order x25519MLKEMOrder, seed []byte) (x25519MLKEMPrivateKey, *x25519.Key, *mlkem768.PublicKey) {
	var expanded [x25519.Size + mlkem768.KeySeedSize]byte
	defer clear(expanded[:])
	h := sha3.NewSHAKE256()
	h.Write(seed)
	h.Read(expanded[:])
	xs, ms := expanded[:x25519.Size], expanded[x25519.Size:]
	if order == mlkemFirst {
		ms, xs = expanded[:mlkem768.KeySeedSize], expanded[mlkem768.KeySeedSize:]
	}
	sk := x25519MLKEMPrivateKey{seed: append([]byte(nil), seed...)}
	copy(sk.x[:], xs)
	mpk, msk := mlkem768.NewKeyFromSeed(ms)
	clearAVXUpper()
	sk.m = msk
	return sk, x25519Public(&sk.x), mpk
}

// generateFromSeed reads an n-byte seed from rand and builds the private key
// from it with newPrivateKey, clearing the seed afterwards.
func generateFromSeed(rand io.Reader, n int, newPrivateKey func([]byte) (PrivateKey, error)) (PrivateKey, error) {
	seed := make([]byte, n)
	defer clear(seed)
	if _, err := io.ReadFull(rand, seed); err != nil {
		return nil, fmt.Errorf("kem: reading randomness: %w", err)
	}
	return newPrivateKey(seed)
}
