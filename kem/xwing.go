package kem

import (
	"crypto/sha3"
	"errors"
	"fmt"
	"io"

	"github.com/cloudflare/circl/dh/x25519"
	"github.com/cloudflare/circl/kem/mlkem/mlkem768"
)

// X-Wing sizes (draft-connolly-cfrg-xwing-kem, Section 5).
const (
	xwingPublicKeySize  = mlkem768.PublicKeySize + 32  // 1216
	xwingEncSize        = mlkem768.CiphertextSize + 32 // 1120
	xwingPrivateKeySize = 32
	xwingSecretSize     = 32
	// xwingLabel is X-Wing's combiner label, the ASCII drawing `\.//^\`.
	xwingLabel = "\\.//^\\"
)

// xwingKEM is X-Wing (draft-connolly-cfrg-xwing-kem), HPKE KEM 0x647a as
// MLKEM768-X25519 in draft-ietf-hpke-pq. It composes circl's ML-KEM-768,
// circl's X25519 (dh/x25519) and SHA3-256 exactly as the draft's combiner
// and Go's crypto/hpke do:
//
//	public key  = ML-KEM-768 encapsulation key (1184) ‖ X25519 public key (32)
//	enc         = ML-KEM-768 ciphertext (1088) ‖ X25519 ephemeral (32)
//	private key = seed (32); SHAKE256(seed, 96) = d (32) ‖ z (32) ‖ X25519 key (32)
//	secret      = SHA3-256(ML-KEM_ss ‖ X25519_ss ‖ ct_X ‖ pk_X ‖ `\.//^\`)
//
// Like crypto/hpke (and like every other KEM of this package) it refuses an
// all-zero X25519 shared secret, and it refuses a low-order X25519 public
// key on parse. X25519 encodings are otherwise accepted as RFC 7748 allows.
type xwingKEM struct{}

var xwingInstance = &xwingKEM{}

// XWing returns X-Wing, HPKE KEM id 0x647a.
func XWing() KEM { return xwingInstance }

func (*xwingKEM) ID() uint16            { return KEMXWing }
func (*xwingKEM) PublicKeySize() int    { return xwingPublicKeySize }
func (*xwingKEM) PrivateKeySize() int   { return xwingPrivateKeySize }
func (*xwingKEM) EncSize() int          { return xwingEncSize }
func (*xwingKEM) SharedSecretSize() int { return xwingSecretSize }
func (*xwingKEM) String() string        { return "X-Wing" }

// xwingPublicKey is ML-KEM-768 encapsulation key (1184) ‖ X25519 (32), both
// parts parsed (x25519MLKEMPublicKey). Its X25519 part is kept as received
// (RFC 7748 encodings are not normalized), which the combiner hashes.
type xwingPublicKey struct{ x25519MLKEMPublicKey }

// newXWingPublicKey assembles a public key from its parts, encoded in
// X-Wing's order (ML-KEM first).
func newXWingPublicKey(m *mlkem768.PublicKey, x *x25519.Key) *xwingPublicKey {
	return &xwingPublicKey{newX25519MLKEMPublicKey(mlkemFirst, x, m)}
}

func (*xwingPublicKey) KEM() KEM { return xwingInstance }

type xwingPrivateKey struct {
	x25519MLKEMPrivateKey
	pub *xwingPublicKey
}

func (*xwingPrivateKey) KEM() KEM                { return xwingInstance }
func (sk *xwingPrivateKey) PublicKey() PublicKey { return sk.pub }

// NewPublicKey parses an X-Wing public key, running FIPS 203's
// encapsulation-key check on the ML-KEM part and refusing a low-order
// X25519 part.
func (*xwingKEM) NewPublicKey(b []byte) (PublicKey, error) {
	if len(b) != xwingPublicKeySize {
		return nil, fmt.Errorf("kem: X-Wing public key is %d bytes, want %d", len(b), xwingPublicKeySize)
	}
	m := new(mlkem768.PublicKey)
	err := m.Unpack(b[:mlkem768.PublicKeySize])
	clearAVXUpper()
	if err != nil {
		return nil, fmt.Errorf("kem: X-Wing ML-KEM-768 encapsulation key: %w", err)
	}
	x := (*x25519.Key)(b[mlkem768.PublicKeySize:])
	if isLowOrderX25519(x[:]) {
		return nil, errors.New("kem: X-Wing X25519 public key has low order")
	}
	return newXWingPublicKey(m, x), nil
}

// NewPrivateKey expands a 32-byte X-Wing seed (draft-connolly-cfrg-xwing-kem,
// Section 5.2, expandDecapsulationKey).
func (*xwingKEM) NewPrivateKey(b []byte) (PrivateKey, error) {
	if len(b) != xwingPrivateKeySize {
		return nil, fmt.Errorf("kem: X-Wing private key is %d bytes, want %d", len(b), xwingPrivateKeySize)
	}
	parts, x, m := expandX25519MLKEMSeed(mlkemFirst, b)
	return &xwingPrivateKey{parts, newXWingPublicKey(m, x)}, nil
}

// GenerateKeyPair reads the 32-byte seed from rand.
func (k *xwingKEM) GenerateKeyPair(rand io.Reader) (PrivateKey, error) {
	return generateFromSeed(rand, xwingPrivateKeySize, k.NewPrivateKey)
}

// DeriveKeyPair implements DeriveKeyPair for MLKEM768-X25519 from
// draft-ietf-hpke-pq: seed = SHAKE256 LabeledDerive(ikm, "DeriveKeyPair",
// "", 32) under suite_id "KEM" ‖ I2OSP(0x647a, 2).
func (k *xwingKEM) DeriveKeyPair(ikm []byte) (PrivateKey, error) {
	seed, err := kdfSHAKE256.labeledDerive(kemSuiteID(KEMXWing), ikm, "DeriveKeyPair", nil, xwingPrivateKeySize)
	if err != nil {
		return nil, err
	}
	defer clear(seed)
	return k.NewPrivateKey(seed)
}

// xwingCombine is X-Wing's combiner (draft-connolly-cfrg-xwing-kem,
// Section 5.3).
func xwingCombine(mss, xss, ctX, pkX []byte) []byte {
	h := sha3.New256()
	h.Write(mss)
	h.Write(xss)
	h.Write(ctX)
	h.Write(pkX)
	h.Write([]byte(xwingLabel))
	return h.Sum(nil)
}

// Encap reads 64 bytes from rand: ML-KEM's 32-byte m, then the 32-byte
// X25519 ephemeral private key (the draft's eseed order, Section 5.4).
func (*xwingKEM) Encap(rand io.Reader, pk PublicKey) (sharedSecret, enc []byte, err error) {
	p, ok := pk.(*xwingPublicKey)
	if !ok || p == nil {
		return nil, nil, errors.New("kem: public key is not an X-Wing key")
	}
	var eseed [mlkem768.EncapsulationSeedSize + 32]byte
	defer clear(eseed[:])
	if _, err := io.ReadFull(rand, eseed[:]); err != nil {
		return nil, nil, fmt.Errorf("kem: reading randomness: %w", err)
	}
	eph := (*x25519.Key)(eseed[mlkem768.EncapsulationSeedSize:])
	xss, err := x25519Shared(eph, &p.x)
	if err != nil {
		return nil, nil, err
	}
	defer clear(xss)
	enc = make([]byte, xwingEncSize)
	var mss [mlkem768.SharedKeySize]byte
	defer clear(mss[:])
	p.m.EncapsulateTo(enc[:mlkem768.CiphertextSize], mss[:], eseed[:mlkem768.EncapsulationSeedSize])
	clearAVXUpper()
	ctX := enc[mlkem768.CiphertextSize:]
	x25519.KeyGen((*x25519.Key)(ctX), eph)
	return xwingCombine(mss[:], xss, ctX, p.x[:]), enc, nil
}

// Decap recovers an X-Wing shared secret. A modified ML-KEM ciphertext gives
// an unrelated secret (implicit rejection), not an error.
func (*xwingKEM) Decap(sk PrivateKey, enc []byte) ([]byte, error) {
	s, ok := sk.(*xwingPrivateKey)
	if !ok || s == nil {
		return nil, errors.New("kem: private key is not an X-Wing key")
	}
	if len(enc) != xwingEncSize {
		return nil, fmt.Errorf("kem: X-Wing enc is %d bytes, want %d", len(enc), xwingEncSize)
	}
	ctX := enc[mlkem768.CiphertextSize:]
	xss, err := x25519Shared(&s.x, (*x25519.Key)(ctX))
	if err != nil {
		return nil, err
	}
	defer clear(xss)
	var mss [mlkem768.SharedKeySize]byte
	defer clear(mss[:])
	s.m.DecapsulateTo(mss[:], enc[:mlkem768.CiphertextSize])
	clearAVXUpper()
	return xwingCombine(mss[:], xss, ctX, s.pub.x[:]), nil
}
