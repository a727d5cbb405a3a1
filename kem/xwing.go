package kem

import (
	"fmt"
	"io"

	"github.com/cloudflare/circl/kem/xwing"
)

// xwingKEM is X-Wing (draft-connolly-cfrg-xwing-kem), HPKE KEM 0x647a as
// MLKEM768-X25519 in draft-ietf-hpke-pq, built on circl's kem/xwing.
//
// Layouts (draft-connolly-cfrg-xwing-kem, Section 5): public key = ML-KEM-768
// encapsulation key (1184) ‖ X25519 public key (32); enc = ML-KEM-768
// ciphertext (1088) ‖ X25519 ephemeral (32); private key = 32-byte seed.
// As the draft specifies, a low-order X25519 component is not refused: the
// combiner hashes the X25519 ciphertext and public key, so it cannot be
// used to re-encode a ciphertext.
type xwingKEM struct{}

var xwingInstance = &xwingKEM{}

// XWing returns X-Wing, HPKE KEM id 0x647a.
func XWing() KEM { return xwingInstance }

func (*xwingKEM) ID() uint16            { return KEMXWing }
func (*xwingKEM) PublicKeySize() int    { return xwing.PublicKeySize }
func (*xwingKEM) PrivateKeySize() int   { return xwing.SeedSize }
func (*xwingKEM) EncSize() int          { return xwing.CiphertextSize }
func (*xwingKEM) SharedSecretSize() int { return xwing.SharedKeySize }
func (*xwingKEM) String() string        { return "X-Wing" }

type xwingPublicKey struct {
	pk  *xwing.PublicKey
	raw []byte
}

func (*xwingPublicKey) KEM() KEM         { return xwingInstance }
func (pk *xwingPublicKey) Bytes() []byte { return append([]byte(nil), pk.raw...) }

type xwingPrivateKey struct {
	seed []byte
	sk   *xwing.PrivateKey
	pub  *xwingPublicKey
}

func (*xwingPrivateKey) KEM() KEM                { return xwingInstance }
func (sk *xwingPrivateKey) Bytes() []byte        { return append([]byte(nil), sk.seed...) }
func (sk *xwingPrivateKey) PublicKey() PublicKey { return sk.pub }

// NewPublicKey parses an X-Wing public key, running FIPS 203's
// encapsulation-key check on the ML-KEM part.
func (*xwingKEM) NewPublicKey(b []byte) (PublicKey, error) {
	if len(b) != xwing.PublicKeySize {
		return nil, fmt.Errorf("kem: X-Wing public key is %d bytes, want %d", len(b), xwing.PublicKeySize)
	}
	pk := new(xwing.PublicKey)
	if err := pk.Unpack(b); err != nil {
		return nil, fmt.Errorf("kem: invalid X-Wing public key: %w", err)
	}
	return &xwingPublicKey{pk: pk, raw: append([]byte(nil), b...)}, nil
}

// NewPrivateKey expands a 32-byte X-Wing seed.
func (*xwingKEM) NewPrivateKey(b []byte) (PrivateKey, error) {
	if len(b) != xwing.SeedSize {
		return nil, fmt.Errorf("kem: X-Wing private key is %d bytes, want %d", len(b), xwing.SeedSize)
	}
	sk, pk := xwing.DeriveKeyPair(b)
	raw := make([]byte, xwing.PublicKeySize)
	pk.Pack(raw)
	return &xwingPrivateKey{
		seed: append([]byte(nil), b...),
		sk:   sk,
		pub:  &xwingPublicKey{pk: pk, raw: raw},
	}, nil
}

// GenerateKeyPair reads the 32-byte seed from rand.
func (x *xwingKEM) GenerateKeyPair(rand io.Reader) (PrivateKey, error) {
	seed := make([]byte, xwing.SeedSize)
	defer clear(seed)
	if _, err := io.ReadFull(rand, seed); err != nil {
		return nil, fmt.Errorf("kem: reading randomness: %w", err)
	}
	return x.NewPrivateKey(seed)
}

// DeriveKeyPair implements DeriveKeyPair for MLKEM768-X25519 from
// draft-ietf-hpke-pq: seed = SHAKE256 LabeledDerive(ikm, "DeriveKeyPair",
// "", 32) under suite_id "KEM" ‖ I2OSP(0x647a, 2).
func (x *xwingKEM) DeriveKeyPair(ikm []byte) (PrivateKey, error) {
	seed, err := kdfSHAKE256.labeledDerive(kemSuiteID(KEMXWing), ikm, "DeriveKeyPair", nil, xwing.SeedSize)
	if err != nil {
		return nil, err
	}
	defer clear(seed)
	return x.NewPrivateKey(seed)
}

// Encap reads 64 bytes from rand: ML-KEM's 32-byte m, then the 32-byte
// X25519 ephemeral private key (the draft's eseed order).
func (*xwingKEM) Encap(rand io.Reader, pk PublicKey) (sharedSecret, enc []byte, err error) {
	p, ok := pk.(*xwingPublicKey)
	if !ok || p == nil {
		return nil, nil, fmt.Errorf("kem: public key is not an X-Wing key")
	}
	eseed := make([]byte, xwing.EncapsulationSeedSize)
	defer clear(eseed)
	if _, err := io.ReadFull(rand, eseed); err != nil {
		return nil, nil, fmt.Errorf("kem: reading randomness: %w", err)
	}
	ss := make([]byte, xwing.SharedKeySize)
	ct := make([]byte, xwing.CiphertextSize)
	p.pk.EncapsulateTo(ct, ss, eseed)
	return ss, ct, nil
}

// Decap recovers an X-Wing shared secret. A tampered ML-KEM ciphertext gives
// an unrelated secret (implicit rejection), not an error.
func (*xwingKEM) Decap(sk PrivateKey, enc []byte) ([]byte, error) {
	s, ok := sk.(*xwingPrivateKey)
	if !ok || s == nil {
		return nil, fmt.Errorf("kem: private key is not an X-Wing key")
	}
	if len(enc) != xwing.CiphertextSize {
		return nil, fmt.Errorf("kem: X-Wing enc is %d bytes, want %d", len(enc), xwing.CiphertextSize)
	}
	ss := make([]byte, xwing.SharedKeySize)
	s.sk.DecapsulateTo(ss, enc)
	return ss, nil
}
