package kem

import (
	"bytes"
	"crypto/ecdh"
	"crypto/sha3"
	"errors"
	"fmt"
	"io"
)

// nistHybridKEM is one of the ML-KEM + NIST-curve hybrids of
// draft-ietf-hpke-pq, MLKEM768-P256 (0x0050) or MLKEM1024-P384 (0x0051),
// composed of circl's ML-KEM, crypto/ecdh and SHA3/SHAKE exactly as the
// draft's combiner and Go's crypto/hpke do:
//
//	public key  = ML-KEM encapsulation key ‖ uncompressed curve point
//	enc         = ML-KEM ciphertext ‖ ephemeral uncompressed curve point
//	private key = seed (32); SHAKE256(seed) = d ‖ z (64) ‖ scalar candidates
//	secret      = SHA3-256(ML-KEM_ss ‖ ECDH_ss ‖ ct_T ‖ pk_T ‖ label)
//
// with label "MLKEM768-P256" or "MLKEM1024-P384". A scalar candidate is
// Nscalar bytes read as a big-endian integer and must lie in [1, n−1]
// (rejection sampling); the private key uses the first valid candidate of
// the SHAKE256 stream, as crypto/hpke does. Encap reads ML-KEM's 32-byte m
// and then encapCandidates scalar candidates for the ephemeral (three
// 32-byte ones for P-256, where a random candidate is ≥ n with probability
// about 2^-32, and one 48-byte one for P-384, about 2^-194): the 128 and 80
// bytes of derandomized randomness the draft's test vectors list as ikmE.
//
// Points are validated by crypto/ecdh (on the curve, not the identity,
// uncompressed); the ML-KEM key passes FIPS 203's encapsulation-key check.
// These KEMs are not used by any MLS suite of qpchat.
type nistHybridKEM struct {
	id              uint16
	label           string
	ml              *mlkemParams
	curve           ecdh.Curve
	scalarSize      int // Nscalar
	pointSize       int // uncompressed point
	encapCandidates int
}

var (
	mlkem768P256KEM = &nistHybridKEM{
		id: KEMMLKEM768P256, label: "MLKEM768-P256", ml: mlkem768Params,
		curve: ecdh.P256(), scalarSize: 32, pointSize: 65, encapCandidates: 3,
	}
	mlkem1024P384KEM = &nistHybridKEM{
		id: KEMMLKEM1024P384, label: "MLKEM1024-P384", ml: mlkem1024Params,
		curve: ecdh.P384(), scalarSize: 48, pointSize: 97, encapCandidates: 1,
	}
)

// nistHybridSeedSize is Nsk of both hybrids, and nistHybridSecretSize
// their Nsecret (SHA3-256).
const (
	nistHybridSeedSize   = 32
	nistHybridSecretSize = 32
	// maxKeyCandidates bounds the scalar candidates a private key seed is
	// expanded to. Each is invalid with probability below 2^-32, so the
	// bound is never reached; it only keeps the loop finite.
	maxKeyCandidates = 64
)

// MLKEM768P256 returns MLKEM768-P256, HPKE KEM id 0x0050
// (draft-ietf-hpke-pq).
func MLKEM768P256() KEM { return mlkem768P256KEM }

// MLKEM1024P384 returns MLKEM1024-P384, HPKE KEM id 0x0051
// (draft-ietf-hpke-pq).
func MLKEM1024P384() KEM { return mlkem1024P384KEM }

func (k *nistHybridKEM) ID() uint16          { return k.id }
func (k *nistHybridKEM) PublicKeySize() int  { return k.ml.ekSize + k.pointSize }
func (k *nistHybridKEM) PrivateKeySize() int { return nistHybridSeedSize }
func (k *nistHybridKEM) EncSize() int        { return k.ml.ctSize + k.pointSize }
func (*nistHybridKEM) SharedSecretSize() int { return nistHybridSecretSize }
func (k *nistHybridKEM) String() string      { return k.label }

type nistHybridPublicKey struct {
	kem *nistHybridKEM
	ek  mlkemEncapsulator
	t   *ecdh.PublicKey
	enc []byte // packed from ek and t, never kept from a parser's input
}

func newNISTHybridPublicKey(k *nistHybridKEM, ek mlkemEncapsulator, t *ecdh.PublicKey) *nistHybridPublicKey {
	enc := make([]byte, k.ml.ekSize, k.PublicKeySize())
	ek.Pack(enc)
	clearAVXUpper()
	enc = append(enc, t.Bytes()...)
	return &nistHybridPublicKey{kem: k, ek: ek, t: t, enc: enc}
}

func (pk *nistHybridPublicKey) KEM() KEM      { return pk.kem }
func (pk *nistHybridPublicKey) Bytes() []byte { return append([]byte(nil), pk.enc...) }

type nistHybridPrivateKey struct {
	kem  *nistHybridKEM
	seed []byte
	dk   mlkemDecapsulator
	t    *ecdh.PrivateKey
	pub  *nistHybridPublicKey
}

func (sk *nistHybridPrivateKey) KEM() KEM             { return sk.kem }
func (sk *nistHybridPrivateKey) Bytes() []byte        { return append([]byte(nil), sk.seed...) }
func (sk *nistHybridPrivateKey) PublicKey() PublicKey { return sk.pub }

// scalarFromCandidates reads up to max candidates of Nscalar bytes from r
// and returns the first one that is a valid scalar in [1, n−1]
// (crypto/ecdh's NewPrivateKey check, SEC 1 Section 2.3.6).
func (k *nistHybridKEM) scalarFromCandidates(r io.Reader, max int) (*ecdh.PrivateKey, error) {
	c := make([]byte, k.scalarSize)
	defer clear(c)
	for range max {
		if _, err := io.ReadFull(r, c); err != nil {
			return nil, fmt.Errorf("kem: reading randomness: %w", err)
		}
		if sk, err := k.curve.NewPrivateKey(c); err == nil {
			return sk, nil
		}
	}
	return nil, fmt.Errorf("kem: %s: none of %d scalar candidates lies in [1, n-1]", k.label, max)
}

// NewPublicKey parses a hybrid public key: FIPS 203's encapsulation-key
// check on the ML-KEM part, and crypto/ecdh's point validation (on the
// curve, uncompressed, not the identity) on the curve part.
func (k *nistHybridKEM) NewPublicKey(b []byte) (PublicKey, error) {
	if len(b) != k.PublicKeySize() {
		return nil, fmt.Errorf("kem: %s public key is %d bytes, want %d", k.label, len(b), k.PublicKeySize())
	}
	ek, err := k.ml.parseEK(b[:k.ml.ekSize])
	if err != nil {
		return nil, fmt.Errorf("kem: %s: invalid %s encapsulation key: %w", k.label, k.ml.name, err)
	}
	t, err := k.curve.NewPublicKey(b[k.ml.ekSize:])
	if err != nil {
		return nil, fmt.Errorf("kem: %s: invalid curve point", k.label)
	}
	return newNISTHybridPublicKey(k, ek, t), nil
}

// NewPrivateKey expands a 32-byte seed: SHAKE256(seed) gives the ML-KEM
// seed d ‖ z, then scalar candidates until one is valid.
func (k *nistHybridKEM) NewPrivateKey(b []byte) (PrivateKey, error) {
	if len(b) != nistHybridSeedSize {
		return nil, fmt.Errorf("kem: %s private key is %d bytes, want %d", k.label, len(b), nistHybridSeedSize)
	}
	h := sha3.NewSHAKE256()
	h.Write(b)
	var mlSeed [mlkemSeedSize]byte
	defer clear(mlSeed[:])
	h.Read(mlSeed[:])
	t, err := k.scalarFromCandidates(h, maxKeyCandidates)
	if err != nil {
		return nil, err
	}
	ek, dk, _ := k.ml.newKey(mlSeed[:])
	return &nistHybridPrivateKey{
		kem:  k,
		seed: append([]byte(nil), b...),
		dk:   dk,
		t:    t,
		pub:  newNISTHybridPublicKey(k, ek, t.PublicKey()),
	}, nil
}

// GenerateKeyPair reads the 32-byte seed from rand.
func (k *nistHybridKEM) GenerateKeyPair(rand io.Reader) (PrivateKey, error) {
	seed := make([]byte, nistHybridSeedSize)
	defer clear(seed)
	if _, err := io.ReadFull(rand, seed); err != nil {
		return nil, fmt.Errorf("kem: reading randomness: %w", err)
	}
	return k.NewPrivateKey(seed)
}

// DeriveKeyPair implements DeriveKeyPair for the hybrids of
// draft-ietf-hpke-pq: seed = SHAKE256 LabeledDerive(ikm, "DeriveKeyPair",
// "", 32) under suite_id "KEM" ‖ I2OSP(kem_id, 2).
func (k *nistHybridKEM) DeriveKeyPair(ikm []byte) (PrivateKey, error) {
	seed, err := kdfSHAKE256.labeledDerive(kemSuiteID(k.id), ikm, mlkemDeriveLabel, nil, nistHybridSeedSize)
	if err != nil {
		return nil, err
	}
	defer clear(seed)
	return k.NewPrivateKey(seed)
}

// combine is the draft's combiner (the X-Wing construction with the KEM's
// label): SHA3-256(ss_PQ ‖ ss_T ‖ ct_T ‖ pk_T ‖ label).
func (k *nistHybridKEM) combine(ssPQ, ssT, ctT, pkT []byte) []byte {
	h := sha3.New256()
	h.Write(ssPQ)
	h.Write(ssT)
	h.Write(ctT)
	h.Write(pkT)
	h.Write([]byte(k.label))
	return h.Sum(nil)
}

// Encap reads 32 + encapCandidates·Nscalar bytes from rand: ML-KEM's m,
// then the ephemeral scalar candidates (128 bytes for MLKEM768-P256, 80 for
// MLKEM1024-P384). If no candidate is valid it is an error.
func (k *nistHybridKEM) Encap(rand io.Reader, pk PublicKey) (sharedSecret, enc []byte, err error) {
	p, ok := pk.(*nistHybridPublicKey)
	if !ok || p == nil || p.kem != k {
		return nil, nil, fmt.Errorf("kem: public key is not an %s key", k.label)
	}
	random := make([]byte, mlkemRandomSize+k.encapCandidates*k.scalarSize)
	defer clear(random)
	if _, err := io.ReadFull(rand, random); err != nil {
		return nil, nil, fmt.Errorf("kem: reading randomness: %w", err)
	}
	skE, err := k.scalarFromCandidates(bytes.NewReader(random[mlkemRandomSize:]), k.encapCandidates)
	if err != nil {
		return nil, nil, err
	}
	ssT, err := skE.ECDH(p.t)
	if err != nil {
		return nil, nil, fmt.Errorf("kem: %s: invalid Diffie-Hellman result", k.label)
	}
	defer clear(ssT)
	enc = make([]byte, k.ml.ctSize, k.EncSize())
	ssPQ := make([]byte, mlkemSecretSize)
	defer clear(ssPQ)
	p.ek.EncapsulateTo(enc, ssPQ, random[:mlkemRandomSize])
	clearAVXUpper()
	enc = append(enc, skE.PublicKey().Bytes()...)
	return k.combine(ssPQ, ssT, enc[k.ml.ctSize:], p.enc[k.ml.ekSize:]), enc, nil
}

// Decap recovers the shared secret. An ephemeral point that is not on the
// curve is an error; a modified ML-KEM ciphertext gives an unrelated secret
// (implicit rejection).
func (k *nistHybridKEM) Decap(sk PrivateKey, enc []byte) ([]byte, error) {
	s, ok := sk.(*nistHybridPrivateKey)
	if !ok || s == nil || s.kem != k {
		return nil, fmt.Errorf("kem: private key is not an %s key", k.label)
	}
	if len(enc) != k.EncSize() {
		return nil, fmt.Errorf("kem: %s enc is %d bytes, want %d", k.label, len(enc), k.EncSize())
	}
	ctT := enc[k.ml.ctSize:]
	pkE, err := k.curve.NewPublicKey(ctT)
	if err != nil {
		return nil, errors.New("kem: " + k.label + ": invalid ephemeral curve point")
	}
	ssT, err := s.t.ECDH(pkE)
	if err != nil {
		return nil, fmt.Errorf("kem: %s: invalid Diffie-Hellman result", k.label)
	}
	defer clear(ssT)
	ssPQ := make([]byte, mlkemSecretSize)
	defer clear(ssPQ)
	s.dk.DecapsulateTo(ssPQ, enc[:k.ml.ctSize])
	clearAVXUpper()
	return k.combine(ssPQ, ssT, ctT, s.pub.enc[k.ml.ekSize:]), nil
}
