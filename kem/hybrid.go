package kem

import (
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"

	"github.com/cloudflare/circl/dh/x25519"
	"github.com/cloudflare/circl/kem/mlkem/mlkem768"
)

// Sizes of qpchat's hybrid KEM (package README and DESIGN.md, kem/).
const (
	hybridX25519Size     = 32
	hybridPublicKeySize  = hybridX25519Size + mlkem768.PublicKeySize  // 1216
	hybridEncSize        = hybridX25519Size + mlkem768.CiphertextSize // 1120
	hybridPrivateKeySize = 32                                         // seed
	hybridSecretSize     = 32
	// hybridLabel is the HKDF info of the combiner, kept byte for byte from
	// the project's original specification.
	hybridLabel = "quicnprotochat-hybrid-v1"
)

// hybridKEM is qpchat's hybrid X25519 + ML-KEM-768 KEM, HPKE KEM id 0xFA01
// (local to qpchat). See README.md in this directory for the construction,
// its security argument and its one caveat (it is not strictly IND-CCA: a
// ciphertext can be re-encoded without changing the secret).
//
//	public key  = X25519 public key (32) ‖ ML-KEM-768 encapsulation key (1184)
//	enc         = X25519 ephemeral public key (32) ‖ ML-KEM-768 ciphertext (1088)
//	private key = seed (32); SHAKE256(seed, 96) = X25519 key (32) ‖ d (32) ‖ z (32)
//	secret      = HKDF-SHA256(salt = "", ikm = X25519_ss ‖ ML-KEM_ss,
//	                          info = "quicnprotochat-hybrid-v1", L = 32)
type hybridKEM struct{}

var hybridInstance = &hybridKEM{}

// HybridX25519MLKEM768 returns qpchat's hybrid X25519 + ML-KEM-768 KEM,
// HPKE KEM id 0xFA01 (KEMHybridX25519MLKEM768), used by the MLS suite
// MLS_128_HYBRIDX25519MLKEM768_AES128GCM_SHA256_Ed25519.
//
// Unlike DHKEM(X25519) it refuses non-canonical X25519 encodings (high bit
// set, or a value ≥ 2^255−19) and low-order X25519 points in public keys and
// ephemerals, and runs FIPS 203's encapsulation-key check on every ML-KEM key.
func HybridX25519MLKEM768() KEM { return hybridInstance }

func (*hybridKEM) ID() uint16            { return KEMHybridX25519MLKEM768 }
func (*hybridKEM) PublicKeySize() int    { return hybridPublicKeySize }
func (*hybridKEM) PrivateKeySize() int   { return hybridPrivateKeySize }
func (*hybridKEM) EncSize() int          { return hybridEncSize }
func (*hybridKEM) SharedSecretSize() int { return hybridSecretSize }
func (*hybridKEM) String() string        { return "X25519+ML-KEM-768 (qpchat hybrid)" }

// hybridPublicKey is X25519 (32) ‖ ML-KEM-768 encapsulation key (1184),
// both parts parsed (x25519MLKEMPublicKey).
type hybridPublicKey struct{ x25519MLKEMPublicKey }

// newHybridPublicKey assembles a public key from its parts, encoded in the
// hybrid's order (X25519 first).
func newHybridPublicKey(x *x25519.Key, m *mlkem768.PublicKey) *hybridPublicKey {
	return &hybridPublicKey{newX25519MLKEMPublicKey(x25519First, x, m)}
}

func (*hybridPublicKey) KEM() KEM { return hybridInstance }

type hybridPrivateKey struct {
	x25519MLKEMPrivateKey
	pub *hybridPublicKey
}

func (*hybridPrivateKey) KEM() KEM                { return hybridInstance }
func (sk *hybridPrivateKey) PublicKey() PublicKey { return sk.pub }

// x25519LowOrder lists the canonical u-coordinates of the points of small
// order on Curve25519 and its twist: 0 (order 1 and 2), 1 and p−1 (order 4)
// and the two points of order 8. Curve25519 has cofactor 8 and its twist 4,
// so there are no others; X25519 with any clamped scalar gives zero exactly
// for these (TestLowOrderList checks each against crypto/ecdh and circl).
var x25519LowOrder = [][32]byte{
	{},
	{1},
	{0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4, 0x6a,
		0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49, 0xb8, 0x00},
	{0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83, 0xef, 0x5b,
		0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f, 0x11, 0x57},
	{0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
}

// x25519Reduced reports whether the 255-bit little-endian value b (top bit
// ignored) is below p = 2^255 − 19. p is ed ff … ff 7f little-endian, so b
// is not reduced iff bytes 1..30 are 0xff, byte 31 is 0x7f and byte 0 ≥ 0xed.
func x25519Reduced(b []byte) bool {
	if b[31]&0x7f != 0x7f || b[0] < 0xed {
		return true
	}
	for _, c := range b[1:31] {
		if c != 0xff {
			return true
		}
	}
	return false
}

// isLowOrderX25519 reports whether the X25519 value b (32 bytes, decoded as
// RFC 7748 does: top bit ignored, reduced mod p) is a point of small order.
// Public values only: the comparison need not be constant-time.
func isLowOrderX25519(b []byte) bool {
	var u [32]byte
	copy(u[:], b)
	u[31] &= 0x7f
	if !x25519Reduced(u[:]) {
		// u − p: the value is p + (u[0] − 0xed), below 2^255.
		u = [32]byte{u[0] - 0xed}
	}
	for _, lo := range x25519LowOrder {
		if u == lo {
			return true
		}
	}
	return false
}

// parseX25519 parses a canonical, non-low-order X25519 public value: the
// top bit clear and the little-endian value below p = 2^255 − 19 (RFC 7748,
// Section 5, lets decoders accept other encodings; this KEM does not, so
// every key and ephemeral has exactly one encoding).
func parseX25519(b []byte) (*x25519.Key, error) {
	if len(b) != hybridX25519Size {
		return nil, errors.New("kem: hybrid X25519 value has the wrong length")
	}
	if b[31]&0x80 != 0 {
		return nil, errors.New("kem: hybrid X25519 value has the high bit set")
	}
	if !x25519Reduced(b) {
		return nil, errors.New("kem: hybrid X25519 value is not reduced modulo 2^255-19")
	}
	return (*x25519.Key)(b), nil
}

// x25519Shared computes X25519(sk, pk) (RFC 7748, Section 5) with circl's
// constant-time dh/x25519, refusing the all-zero output that a low-order
// point gives: circl reports those points, and the output is checked too.
func x25519Shared(sk, pk *x25519.Key) ([]byte, error) {
	var out, zero x25519.Key
	ok := x25519.Shared(&out, sk, pk)
	if !ok || subtle.ConstantTimeCompare(out[:], zero[:]) == 1 {
		clear(out[:])
		return nil, errors.New("kem: X25519 shared secret is all zero")
	}
	return out[:], nil
}

// x25519Public returns the X25519 public key of sk (fixed-base X25519(sk, 9)).
func x25519Public(sk *x25519.Key) *x25519.Key {
	pub := new(x25519.Key)
	x25519.KeyGen(pub, sk)
	return pub
}

// NewPublicKey parses X25519 (32) ‖ ML-KEM-768 encapsulation key (1184),
// refusing a non-canonical or low-order X25519 key and an ML-KEM key that
// fails FIPS 203's encapsulation-key (modulus) check (FIPS 203, Section 7.2).
func (*hybridKEM) NewPublicKey(b []byte) (PublicKey, error) {
	if len(b) != hybridPublicKeySize {
		return nil, fmt.Errorf("kem: hybrid public key is %d bytes, want %d", len(b), hybridPublicKeySize)
	}
	x, err := parseX25519(b[:hybridX25519Size])
	if err != nil {
		return nil, err
	}
	if isLowOrderX25519(b[:hybridX25519Size]) {
		return nil, errors.New("kem: hybrid X25519 public key has low order")
	}
	m := new(mlkem768.PublicKey)
	err = m.Unpack(b[hybridX25519Size:])
	clearAVXUpper()
	if err != nil {
		return nil, fmt.Errorf("kem: hybrid ML-KEM-768 encapsulation key: %w", err)
	}
	return newHybridPublicKey(x, m), nil
}

// NewPrivateKey expands a 32-byte seed with SHAKE256 to the X25519 private
// key, then ML-KEM-768's d and z (FIPS 203, Algorithm 16, ML-KEM.KeyGen_internal).
func (*hybridKEM) NewPrivateKey(b []byte) (PrivateKey, error) {
	if len(b) != hybridPrivateKeySize {
		return nil, fmt.Errorf("kem: hybrid private key is %d bytes, want %d", len(b), hybridPrivateKeySize)
	}
	parts, x, m := expandX25519MLKEMSeed(x25519First, b)
	return &hybridPrivateKey{parts, newHybridPublicKey(x, m)}, nil
}

// GenerateKeyPair reads the 32-byte seed from rand.
func (h *hybridKEM) GenerateKeyPair(rand io.Reader) (PrivateKey, error) {
	return generateFromSeed(rand, hybridPrivateKeySize, h.NewPrivateKey)
}

// DeriveKeyPair follows RFC 9180, Section 7.1.3, with HKDF-SHA256 and
// suite_id = "KEM" ‖ I2OSP(0xFA01, 2):
// seed = LabeledExpand(LabeledExtract("", "dkp_prk", ikm), "sk", "", 32).
func (h *hybridKEM) DeriveKeyPair(ikm []byte) (PrivateKey, error) {
	sid := kemSuiteID(KEMHybridX25519MLKEM768)
	prk, err := kdfHKDFSHA256.labeledExtract(sid, nil, "dkp_prk", ikm)
	if err != nil {
		return nil, err
	}
	defer clear(prk)
	seed, err := kdfHKDFSHA256.labeledExpand(sid, prk, "sk", nil, hybridPrivateKeySize)
	if err != nil {
		return nil, err
	}
	defer clear(seed)
	return h.NewPrivateKey(seed)
}

// combine is the hybrid combiner: HKDF-SHA256 with an empty salt over
// X25519_ss ‖ ML-KEM_ss and the label as info.
func combine(xss, mss []byte) ([]byte, error) {
	ikm := make([]byte, 0, len(xss)+len(mss))
	ikm = append(append(ikm, xss...), mss...)
	defer clear(ikm)
	return hkdf.Key(sha256.New, ikm, nil, hybridLabel, hybridSecretSize)
}

// Encap reads the 32-byte X25519 ephemeral private key from rand, then
// ML-KEM-768's 32-byte message m (FIPS 203, Algorithm 17), so a fixed
// reader gives a fixed encapsulation. The recipient's X25519 key is checked
// again here (canonical, giving a non-zero secret), not only when it was
// parsed, so the rule holds on the encapsulation side whatever built pk.
func (*hybridKEM) Encap(rand io.Reader, pk PublicKey) (sharedSecret, enc []byte, err error) {
	p, ok := pk.(*hybridPublicKey)
	if !ok || p == nil {
		return nil, nil, errors.New("kem: public key is not a hybrid key")
	}
	if _, err := parseX25519(p.x[:]); err != nil {
		return nil, nil, err
	}
	var r [hybridX25519Size + mlkem768.EncapsulationSeedSize]byte
	defer clear(r[:])
	if _, err := io.ReadFull(rand, r[:]); err != nil {
		return nil, nil, fmt.Errorf("kem: reading randomness: %w", err)
	}
	eph := (*x25519.Key)(r[:hybridX25519Size])
	xss, err := x25519Shared(eph, &p.x)
	if err != nil {
		return nil, nil, err
	}
	defer clear(xss)
	enc = make([]byte, hybridEncSize)
	x25519.KeyGen((*x25519.Key)(enc[:hybridX25519Size]), eph)
	var mss [mlkem768.SharedKeySize]byte
	defer clear(mss[:])
	p.m.EncapsulateTo(enc[hybridX25519Size:], mss[:], r[hybridX25519Size:])
	clearAVXUpper()
	ss, err := combine(xss, mss[:])
	if err != nil {
		return nil, nil, err
	}
	return ss, enc, nil
}

// Decap checks enc's length and its X25519 ephemeral (canonical, giving a
// non-zero secret), then decapsulates both parts. A modified ML-KEM
// ciphertext is not detected here: ML-KEM's implicit rejection yields an
// unrelated secret, so the HPKE Open that follows fails.
func (*hybridKEM) Decap(sk PrivateKey, enc []byte) ([]byte, error) {
	s, ok := sk.(*hybridPrivateKey)
	if !ok || s == nil {
		return nil, errors.New("kem: private key is not a hybrid key")
	}
	if len(enc) != hybridEncSize {
		return nil, fmt.Errorf("kem: hybrid enc is %d bytes, want %d", len(enc), hybridEncSize)
	}
	eph, err := parseX25519(enc[:hybridX25519Size])
	if err != nil {
		return nil, err
	}
	xss, err := x25519Shared(&s.x, eph)
	if err != nil {
		return nil, err
	}
	defer clear(xss)
	var mss [mlkem768.SharedKeySize]byte
	defer clear(mss[:])
	s.m.DecapsulateTo(mss[:], enc[hybridX25519Size:])
	clearAVXUpper()
	return combine(xss, mss[:])
}
