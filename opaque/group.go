package opaque

// This file holds the AKE groups of RFC 9807, Section 6.4.1 and Section 7:
// DeriveDiffieHellmanKeyPair, DiffieHellman, and the checks every received
// public key goes through. It also holds the checks for OPRF elements
// (RFC 9497, Section 2.1: DeserializeElement), which share the code.

import (
	"bytes"
	"crypto/ecdh"
	"errors"
	"fmt"

	"github.com/cloudflare/circl/group"
	"github.com/cloudflare/circl/oprf"
)

// Group is the group of the 3DH AKE (RFC 9807, Section 6.4). The values
// are Ristretto255, P256 and X25519; the interface cannot be implemented
// outside this package.
type Group interface {
	// PublicKeySize is Npk.
	PublicKeySize() int
	// PrivateKeySize is Nsk.
	PrivateKeySize() int
	String() string

	// deriveKeyPair implements DeriveDiffieHellmanKeyPair (RFC 9807,
	// Section 6.4.1); seed is Nseed bytes.
	deriveKeyPair(seed []byte) (sk, pk []byte, err error)
	// publicKey returns the public key of sk.
	publicKey(sk []byte) ([]byte, error)
	// checkPublicKey rejects a public key of the wrong length, one that is
	// not canonically encoded, and the identity (or, for X25519, a point of
	// small order).
	checkPublicKey(pk []byte) error
	// dh implements DiffieHellman(k, B) (RFC 9807, Section 6.4.1). It
	// checks pk as checkPublicKey does.
	dh(sk, pk []byte) ([]byte, error)
}

var (
	// Ristretto255 is 3DH over ristretto255 (RFC 9496), with
	// DeriveDiffieHellmanKeyPair from the ristretto255-SHA512 OPRF suite.
	Ristretto255 Group = primeOrderGroup{name: "ristretto255", suite: oprf.SuiteRistretto255}
	// P256 is 3DH over NIST P-256 with compressed points (Npk = 33), with
	// DeriveDiffieHellmanKeyPair from the P256-SHA256 OPRF suite.
	P256 Group = primeOrderGroup{name: "P-256", suite: oprf.SuiteP256}
	// X25519 is 3DH over Curve25519 (RFC 7748); the private key is the
	// seed itself (RFC 9807, Section 7).
	X25519 Group = x25519Group{}
)

var (
	errInvalidPublicKey  = errors.New("opaque: invalid public key")
	errInvalidPrivateKey = errors.New("opaque: invalid private key")
	errInvalidElement    = errors.New("opaque: invalid group element")
)

// decodeElement implements DeserializeElement (RFC 9497, Section 2.1) with
// the checks circl leaves to the caller: the exact length, the canonical
// encoding (re-serializing gives the same bytes: for ristretto255 the
// encoding is unique, for P-256 this refuses the uncompressed and the
// one-byte identity forms) and the identity element.
func decodeElement(g group.Group, b []byte) (group.Element, error) {
	if len(b) != int(g.Params().CompressedElementLength) {
		return nil, fmt.Errorf("%w: %d bytes, want %d", errInvalidElement, len(b), g.Params().CompressedElementLength)
	}
	e := g.NewElement()
	if err := e.UnmarshalBinary(b); err != nil {
		return nil, fmt.Errorf("%w: not a point", errInvalidElement)
	}
	if e.IsIdentity() {
		return nil, fmt.Errorf("%w: identity", errInvalidElement)
	}
	re, err := e.MarshalBinaryCompress()
	if err != nil || !bytes.Equal(re, b) {
		return nil, fmt.Errorf("%w: non-canonical encoding", errInvalidElement)
	}
	return e, nil
}

// decodeScalar reads a canonical, non-zero scalar of g.
func decodeScalar(g group.Group, b []byte) (group.Scalar, error) {
	if len(b) != int(g.Params().ScalarLength) {
		return nil, errInvalidPrivateKey
	}
	s := g.NewScalar()
	if err := s.UnmarshalBinary(b); err != nil || s.IsZero() {
		return nil, errInvalidPrivateKey
	}
	return s, nil
}

// primeOrderGroup is an AKE group that is also the group of an OPRF suite,
// whose DeriveKeyPair (RFC 9497, Section 3.2.1) it uses.
type primeOrderGroup struct {
	name  string
	suite oprf.Suite
}

func (g primeOrderGroup) PublicKeySize() int {
	return int(g.suite.Group().Params().CompressedElementLength)
}
func (g primeOrderGroup) PrivateKeySize() int { return int(g.suite.Group().Params().ScalarLength) }
func (g primeOrderGroup) String() string      { return g.name }

// deriveKeyPair implements DeriveDiffieHellmanKeyPair for prime-order
// groups: DeriveKeyPair(seed, "OPAQUE-DeriveDiffieHellmanKeyPair") of
// RFC 9497, Section 3.2.1, in the OPRF base mode.
func (g primeOrderGroup) deriveKeyPair(seed []byte) (sk, pk []byte, err error) {
	key, err := oprf.DeriveKey(g.suite, oprf.BaseMode, seed, []byte(infoDeriveDHKeyPair))
	if err != nil {
		return nil, nil, fmt.Errorf("opaque: DeriveDiffieHellmanKeyPair: %v", err)
	}
	if sk, err = key.MarshalBinary(); err != nil {
		return nil, nil, fmt.Errorf("opaque: DeriveDiffieHellmanKeyPair: %v", err)
	}
	if pk, err = key.Public().MarshalBinary(); err != nil {
		return nil, nil, fmt.Errorf("opaque: DeriveDiffieHellmanKeyPair: %v", err)
	}
	return sk, pk, nil
}

func (g primeOrderGroup) publicKey(sk []byte) ([]byte, error) {
	s, err := decodeScalar(g.suite.Group(), sk)
	if err != nil {
		return nil, err
	}
	defer s.SetUint64(0)
	return g.suite.Group().NewElement().MulGen(s).MarshalBinaryCompress()
}

func (g primeOrderGroup) checkPublicKey(pk []byte) error {
	if _, err := decodeElement(g.suite.Group(), pk); err != nil {
		return fmt.Errorf("%w (%v)", errInvalidPublicKey, err)
	}
	return nil
}

// dh computes SerializeElement(k·B).
func (g primeOrderGroup) dh(sk, pk []byte) ([]byte, error) {
	b, err := decodeElement(g.suite.Group(), pk)
	if err != nil {
		return nil, fmt.Errorf("%w (%v)", errInvalidPublicKey, err)
	}
	s, err := decodeScalar(g.suite.Group(), sk)
	if err != nil {
		return nil, err
	}
	defer s.SetUint64(0)
	// k is non-zero and B is not the identity in a prime-order group, so
	// k·B is not the identity either.
	return g.suite.Group().NewElement().Mul(b, s).MarshalBinaryCompress()
}

// x25519Group is Curve25519 through crypto/ecdh.
type x25519Group struct{}

func (x25519Group) PublicKeySize() int  { return 32 }
func (x25519Group) PrivateKeySize() int { return 32 }
func (x25519Group) String() string      { return "X25519" }

// deriveKeyPair implements DeriveDiffieHellmanKeyPair for Curve25519: the
// seed is the private key, and the public key is X25519(seed, 9)
// (RFC 9807, Section 7; RFC 7748 clamps the scalar when it is used).
func (g x25519Group) deriveKeyPair(seed []byte) (sk, pk []byte, err error) {
	if len(seed) != SeedSize {
		return nil, nil, errInvalidPrivateKey
	}
	pk, err = g.publicKey(seed)
	if err != nil {
		return nil, nil, err
	}
	return bytes.Clone(seed), pk, nil
}

func (x25519Group) publicKey(sk []byte) ([]byte, error) {
	k, err := ecdh.X25519().NewPrivateKey(sk)
	if err != nil {
		return nil, errInvalidPrivateKey
	}
	return k.PublicKey().Bytes(), nil
}

// lowOrderProbe is a fixed private key used to detect points of small
// order: every clamped X25519 scalar is a multiple of the cofactor 8, so
// X25519(k, u) is all zeros exactly when u is of small order (on the curve
// or its twist), and crypto/ecdh reports that as an error.
var lowOrderProbe = func() *ecdh.PrivateKey {
	k, err := ecdh.X25519().NewPrivateKey(bytes.Repeat([]byte{0x42}, 32))
	if err != nil {
		panic("opaque: internal error: X25519 probe key: " + err.Error())
	}
	return k
}()

// checkPublicKey accepts only canonical u-coordinates (u < 2^255-19, top
// bit clear), which RFC 7748 would otherwise reduce silently, and refuses
// points of small order; Curve25519 has no identity encoding, the small
// order points play its role.
func (x25519Group) checkPublicKey(pk []byte) error {
	if len(pk) != 32 {
		return fmt.Errorf("%w: %d bytes, want 32", errInvalidPublicKey, len(pk))
	}
	if !x25519Canonical(pk) {
		return fmt.Errorf("%w: non-canonical X25519 encoding", errInvalidPublicKey)
	}
	p, err := ecdh.X25519().NewPublicKey(pk)
	if err != nil {
		return errInvalidPublicKey
	}
	if _, err := lowOrderProbe.ECDH(p); err != nil {
		return fmt.Errorf("%w: X25519 point of small order", errInvalidPublicKey)
	}
	return nil
}

// x25519Canonical reports whether the little-endian u < 2^255-19 with the
// top bit clear. The input is public, so the comparison need not be
// constant time.
func x25519Canonical(u []byte) bool {
	if u[31]&0x80 != 0 {
		return false
	}
	// 2^255-19 is ed ff ff ... ff 7f; only values from it up to 2^255-1
	// (first byte ≥ 0xed, then all 0xff, last 0x7f) are non-canonical.
	if u[31] != 0x7f || u[0] < 0xed {
		return true
	}
	for _, b := range u[1:31] {
		if b != 0xff {
			return true
		}
	}
	return false
}

func (g x25519Group) dh(sk, pk []byte) ([]byte, error) {
	if len(pk) != 32 || !x25519Canonical(pk) {
		return nil, errInvalidPublicKey
	}
	p, err := ecdh.X25519().NewPublicKey(pk)
	if err != nil {
		return nil, errInvalidPublicKey
	}
	k, err := ecdh.X25519().NewPrivateKey(sk)
	if err != nil {
		return nil, errInvalidPrivateKey
	}
	// crypto/ecdh refuses an all-zero result, i.e. a point of small order.
	out, err := k.ECDH(p)
	if err != nil {
		return nil, fmt.Errorf("%w: X25519 point of small order", errInvalidPublicKey)
	}
	return out, nil
}
