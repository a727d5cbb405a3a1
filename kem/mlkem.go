package kem

import (
	"fmt"
	"io"

	"github.com/cloudflare/circl/kem/mlkem/mlkem1024"
	"github.com/cloudflare/circl/kem/mlkem/mlkem512"
	"github.com/cloudflare/circl/kem/mlkem/mlkem768"
)

// ML-KEM sizes shared by the three parameter sets (FIPS 203, Section 8).
const (
	mlkemSeedSize    = 64 // d ‖ z, the ML-KEM.KeyGen_internal input
	mlkemRandomSize  = 32 // m, the ML-KEM.Encaps_internal input
	mlkemSecretSize  = 32
	mlkemDeriveLabel = "DeriveKeyPair"
)

// mlkemEncapsulator and mlkemDecapsulator are the methods this package uses
// of circl's *mlkemXXX.PublicKey and *mlkemXXX.PrivateKey, which are distinct
// types per parameter set.
type mlkemEncapsulator interface {
	Pack(buf []byte)
	EncapsulateTo(ct, ss, seed []byte)
}

type mlkemDecapsulator interface {
	DecapsulateTo(ss, ct []byte)
}

// mlkemParams is one ML-KEM parameter set from circl.
type mlkemParams struct {
	name     string
	ekSize   int // encapsulation key
	ctSize   int // ciphertext
	fromSeed func(seed []byte) (mlkemEncapsulator, mlkemDecapsulator)
	// parseEK runs FIPS 203's encapsulation-key (modulus) check, Section 7.2.
	parseEK func(b []byte) (mlkemEncapsulator, error)
}

var (
	mlkem512Params = &mlkemParams{
		name: "ML-KEM-512", ekSize: mlkem512.PublicKeySize, ctSize: mlkem512.CiphertextSize,
		fromSeed: func(seed []byte) (mlkemEncapsulator, mlkemDecapsulator) { return mlkem512.NewKeyFromSeed(seed) },
		parseEK: func(b []byte) (mlkemEncapsulator, error) {
			ek := new(mlkem512.PublicKey)
			err := ek.Unpack(b)
			clearAVXUpper()
			if err != nil {
				return nil, err
			}
			return ek, nil
		},
	}
	mlkem768Params = &mlkemParams{
		name: "ML-KEM-768", ekSize: mlkem768.PublicKeySize, ctSize: mlkem768.CiphertextSize,
		fromSeed: func(seed []byte) (mlkemEncapsulator, mlkemDecapsulator) { return mlkem768.NewKeyFromSeed(seed) },
		parseEK: func(b []byte) (mlkemEncapsulator, error) {
			ek := new(mlkem768.PublicKey)
			err := ek.Unpack(b)
			clearAVXUpper()
			if err != nil {
				return nil, err
			}
			return ek, nil
		},
	}
	mlkem1024Params = &mlkemParams{
		name: "ML-KEM-1024", ekSize: mlkem1024.PublicKeySize, ctSize: mlkem1024.CiphertextSize,
		fromSeed: func(seed []byte) (mlkemEncapsulator, mlkemDecapsulator) { return mlkem1024.NewKeyFromSeed(seed) },
		parseEK: func(b []byte) (mlkemEncapsulator, error) {
			ek := new(mlkem1024.PublicKey)
			err := ek.Unpack(b)
			clearAVXUpper()
			if err != nil {
				return nil, err
			}
			return ek, nil
		},
	}
)

// newKey expands a 64-byte seed d ‖ z (ML-KEM.KeyGen_internal, FIPS 203,
// Algorithm 16) and returns the key pair and the packed encapsulation key.
func (p *mlkemParams) newKey(seed []byte) (mlkemEncapsulator, mlkemDecapsulator, []byte) {
	ek, dk := p.fromSeed(seed)
	b := make([]byte, p.ekSize)
	ek.Pack(b)
	clearAVXUpper()
	return ek, dk, b
}

// mlkemKEM is pure ML-KEM as an HPKE KEM (draft-ietf-hpke-pq, Section 3):
//
//	private key = seed d ‖ z (64)
//	public key  = ML-KEM encapsulation key
//	enc         = ML-KEM ciphertext
//	secret      = ML-KEM shared secret (32)
//	DeriveKeyPair(ikm): seed = SHAKE256 LabeledDerive(ikm, "DeriveKeyPair", "", 64)
//	                    under suite_id "KEM" ‖ I2OSP(kem_id, 2)
//	Encap reads ML-KEM's 32-byte m (ML-KEM.Encaps_internal)
//
// These KEMs are not used by any MLS suite of qpchat; they exist so the
// draft's vectors run in full and for HPKE callers.
type mlkemKEM struct {
	id uint16
	p  *mlkemParams
}

var (
	mlkem512KEM  = &mlkemKEM{id: KEMMLKEM512, p: mlkem512Params}
	mlkem768KEM  = &mlkemKEM{id: KEMMLKEM768, p: mlkem768Params}
	mlkem1024KEM = &mlkemKEM{id: KEMMLKEM1024, p: mlkem1024Params}
)

// MLKEM512 returns ML-KEM-512, HPKE KEM id 0x0040 (draft-ietf-hpke-pq).
func MLKEM512() KEM { return mlkem512KEM }

// MLKEM768 returns ML-KEM-768, HPKE KEM id 0x0041 (draft-ietf-hpke-pq).
func MLKEM768() KEM { return mlkem768KEM }

// MLKEM1024 returns ML-KEM-1024, HPKE KEM id 0x0042 (draft-ietf-hpke-pq).
func MLKEM1024() KEM { return mlkem1024KEM }

func (k *mlkemKEM) ID() uint16          { return k.id }
func (k *mlkemKEM) PublicKeySize() int  { return k.p.ekSize }
func (k *mlkemKEM) PrivateKeySize() int { return mlkemSeedSize }
func (k *mlkemKEM) EncSize() int        { return k.p.ctSize }
func (*mlkemKEM) SharedSecretSize() int { return mlkemSecretSize }
func (k *mlkemKEM) String() string      { return k.p.name }

type mlkemPublicKey struct {
	kem *mlkemKEM
	ek  mlkemEncapsulator
	enc []byte // packed from ek, never kept from a parser's input
}

func (pk *mlkemPublicKey) KEM() KEM      { return pk.kem }
func (pk *mlkemPublicKey) Bytes() []byte { return append([]byte(nil), pk.enc...) }

type mlkemPrivateKey struct {
	kem  *mlkemKEM
	seed []byte
	dk   mlkemDecapsulator
	pub  *mlkemPublicKey
}

func (sk *mlkemPrivateKey) KEM() KEM             { return sk.kem }
func (sk *mlkemPrivateKey) Bytes() []byte        { return append([]byte(nil), sk.seed...) }
func (sk *mlkemPrivateKey) PublicKey() PublicKey { return sk.pub }

// NewPublicKey parses an encapsulation key and runs FIPS 203's
// encapsulation-key check (Section 7.2): a coefficient ≥ q is refused.
func (k *mlkemKEM) NewPublicKey(b []byte) (PublicKey, error) {
	if len(b) != k.p.ekSize {
		return nil, fmt.Errorf("kem: %s public key is %d bytes, want %d", k.p.name, len(b), k.p.ekSize)
	}
	ek, err := k.p.parseEK(b)
	if err != nil {
		return nil, fmt.Errorf("kem: invalid %s encapsulation key: %w", k.p.name, err)
	}
	enc := make([]byte, k.p.ekSize)
	ek.Pack(enc)
	clearAVXUpper()
	return &mlkemPublicKey{kem: k, ek: ek, enc: enc}, nil
}

// NewPrivateKey expands a 64-byte seed d ‖ z, the private key form of
// draft-ietf-hpke-pq (every 64-byte string is a valid seed).
func (k *mlkemKEM) NewPrivateKey(b []byte) (PrivateKey, error) {
	if len(b) != mlkemSeedSize {
		return nil, fmt.Errorf("kem: %s private key is %d bytes, want %d", k.p.name, len(b), mlkemSeedSize)
	}
	ek, dk, enc := k.p.newKey(b)
	return &mlkemPrivateKey{
		kem:  k,
		seed: append([]byte(nil), b...),
		dk:   dk,
		pub:  &mlkemPublicKey{kem: k, ek: ek, enc: enc},
	}, nil
}

// GenerateKeyPair reads the 64-byte seed from rand.
func (k *mlkemKEM) GenerateKeyPair(rand io.Reader) (PrivateKey, error) {
	seed := make([]byte, mlkemSeedSize)
	defer clear(seed)
	if _, err := io.ReadFull(rand, seed); err != nil {
		return nil, fmt.Errorf("kem: reading randomness: %w", err)
	}
	return k.NewPrivateKey(seed)
}

// DeriveKeyPair implements DeriveKeyPair for ML-KEM (draft-ietf-hpke-pq):
// the seed is SHAKE256 LabeledDerive(ikm, "DeriveKeyPair", "", 64) under
// suite_id "KEM" ‖ I2OSP(kem_id, 2).
func (k *mlkemKEM) DeriveKeyPair(ikm []byte) (PrivateKey, error) {
	seed, err := kdfSHAKE256.labeledDerive(kemSuiteID(k.id), ikm, mlkemDeriveLabel, nil, mlkemSeedSize)
	if err != nil {
		return nil, err
	}
	defer clear(seed)
	return k.NewPrivateKey(seed)
}

// Encap reads ML-KEM's 32-byte message m from rand and runs
// ML-KEM.Encaps_internal (FIPS 203, Algorithm 17), the derandomized Encap
// of draft-ietf-hpke-pq.
func (k *mlkemKEM) Encap(rand io.Reader, pk PublicKey) (sharedSecret, enc []byte, err error) {
	p, ok := pk.(*mlkemPublicKey)
	if !ok || p == nil || p.kem != k {
		return nil, nil, fmt.Errorf("kem: public key is not an %s key", k.p.name)
	}
	var m [mlkemRandomSize]byte
	defer clear(m[:])
	if _, err := io.ReadFull(rand, m[:]); err != nil {
		return nil, nil, fmt.Errorf("kem: reading randomness: %w", err)
	}
	enc = make([]byte, k.p.ctSize)
	sharedSecret = make([]byte, mlkemSecretSize)
	p.ek.EncapsulateTo(enc, sharedSecret, m[:])
	clearAVXUpper()
	return sharedSecret, enc, nil
}

// Decap runs ML-KEM.Decaps (FIPS 203, Algorithm 18). A modified ciphertext
// gives an unrelated secret (implicit rejection), not an error; a
// ciphertext of the wrong length is an error.
func (k *mlkemKEM) Decap(sk PrivateKey, enc []byte) ([]byte, error) {
	s, ok := sk.(*mlkemPrivateKey)
	if !ok || s == nil || s.kem != k {
		return nil, fmt.Errorf("kem: private key is not an %s key", k.p.name)
	}
	if len(enc) != k.p.ctSize {
		return nil, fmt.Errorf("kem: %s enc is %d bytes, want %d", k.p.name, len(enc), k.p.ctSize)
	}
	ss := make([]byte, mlkemSecretSize)
	s.dk.DecapsulateTo(ss, enc)
	clearAVXUpper()
	return ss, nil
}
