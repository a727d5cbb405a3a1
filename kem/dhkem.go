package kem

import (
	"bytes"
	"crypto/ecdh"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"

	"github.com/cloudflare/circl/dh/x25519"
	"github.com/cloudflare/circl/dh/x448"
)

// dhKEM is DHKEM(Group, KDF) from RFC 9180, Section 4.1. The NIST curves come
// from crypto/ecdh; X25519 and X448 from circl's dh/x25519 and dh/x448
// (constant-time; X25519 with a fixed-base table for key generation, about
// twice as fast as crypto/ecdh's X25519, see BenchmarkX25519).
type dhKEM struct {
	id      uint16
	name    string
	kdf     *kdf
	curve   ecdh.Curve // nil for X25519 and X448
	nsk     int
	npk     int
	nsecret int
	// bitmask is applied to the first candidate byte by DeriveKeyPair for
	// the NIST curves (RFC 9180, Section 7.1.3); 0 marks a Montgomery curve.
	bitmask byte
}

var (
	dhkemP256   = &dhKEM{id: KEMP256, name: "DHKEM(P-256, HKDF-SHA256)", kdf: kdfHKDFSHA256, curve: ecdh.P256(), nsk: 32, npk: 65, nsecret: 32, bitmask: 0xff}
	dhkemP384   = &dhKEM{id: KEMP384, name: "DHKEM(P-384, HKDF-SHA384)", kdf: kdfHKDFSHA384, curve: ecdh.P384(), nsk: 48, npk: 97, nsecret: 48, bitmask: 0xff}
	dhkemP521   = &dhKEM{id: KEMP521, name: "DHKEM(P-521, HKDF-SHA512)", kdf: kdfHKDFSHA512, curve: ecdh.P521(), nsk: 66, npk: 133, nsecret: 64, bitmask: 0x01}
	dhkemX25519 = &dhKEM{id: KEMX25519, name: "DHKEM(X25519, HKDF-SHA256)", kdf: kdfHKDFSHA256, nsk: x25519.Size, npk: x25519.Size, nsecret: 32}
	dhkemX448   = &dhKEM{id: KEMX448, name: "DHKEM(X448, HKDF-SHA512)", kdf: kdfHKDFSHA512, nsk: x448.Size, npk: x448.Size, nsecret: 64}
)

// DHKEMP256 returns DHKEM(P-256, HKDF-SHA256), KEM id 0x0010.
func DHKEMP256() KEM { return dhkemP256 }

// DHKEMP384 returns DHKEM(P-384, HKDF-SHA384), KEM id 0x0011.
func DHKEMP384() KEM { return dhkemP384 }

// DHKEMP521 returns DHKEM(P-521, HKDF-SHA512), KEM id 0x0012.
func DHKEMP521() KEM { return dhkemP521 }

// DHKEMX25519 returns DHKEM(X25519, HKDF-SHA256), KEM id 0x0020.
func DHKEMX25519() KEM { return dhkemX25519 }

// DHKEMX448 returns DHKEM(X448, HKDF-SHA512), KEM id 0x0021.
func DHKEMX448() KEM { return dhkemX448 }

func (k *dhKEM) ID() uint16            { return k.id }
func (k *dhKEM) PublicKeySize() int    { return k.npk }
func (k *dhKEM) PrivateKeySize() int   { return k.nsk }
func (k *dhKEM) EncSize() int          { return k.npk }
func (k *dhKEM) SharedSecretSize() int { return k.nsecret }
func (k *dhKEM) String() string        { return k.name }

type dhPublicKey struct {
	kem *dhKEM
	ec  *ecdh.PublicKey // NIST curves
	// mont is the X25519 or X448 u-coordinate as received: RFC 7748,
	// Section 5, reads any value (top bit ignored for X25519, reduced
	// modulo p), so it is kept byte for byte for the KEM context.
	mont []byte
}

func (pk *dhPublicKey) KEM() KEM { return pk.kem }

// Bytes implements SerializePublicKey (RFC 9180, Section 7.1.1): the
// uncompressed point for the NIST curves, the u-coordinate otherwise.
func (pk *dhPublicKey) Bytes() []byte {
	if pk.ec != nil {
		return pk.ec.Bytes()
	}
	return bytes.Clone(pk.mont)
}

type dhPrivateKey struct {
	kem  *dhKEM
	ec   *ecdh.PrivateKey // NIST curves
	mont []byte           // X25519, X448: the clamped scalar
	pub  *dhPublicKey
}

func (sk *dhPrivateKey) KEM() KEM             { return sk.kem }
func (sk *dhPrivateKey) PublicKey() PublicKey { return sk.pub }

// Bytes implements SerializePrivateKey (RFC 9180, Section 7.1.2). For X25519
// and X448 the output is clamped, as that section requires, so it may differ
// from the bytes given to NewPrivateKey while naming the same key.
func (sk *dhPrivateKey) Bytes() []byte {
	if sk.ec == nil {
		return bytes.Clone(sk.mont)
	}
	return sk.ec.Bytes()
}

// clamp applies decodeScalar25519 or decodeScalar448 (RFC 7748, Section 5)
// to b in place; RFC 9180, Section 7.1.2, serializes the clamped scalar.
func (k *dhKEM) clamp(b []byte) {
	if k.id == KEMX25519 {
		b[0] &= 248
		b[31] &= 127
		b[31] |= 64
		return
	}
	b[0] &= 252
	b[55] |= 128
}

// montPublic sets pub to the public key of the clamped scalar sk, the
// fixed-base X25519(sk, 9) or X448(sk, 5).
func (k *dhKEM) montPublic(pub, sk []byte) {
	if k.id == KEMX25519 {
		x25519.KeyGen((*x25519.Key)(pub), (*x25519.Key)(sk))
		return
	}
	x448.KeyGen((*x448.Key)(pub), (*x448.Key)(sk))
}

// montShared computes X25519(sk, pk) or X448(sk, pk) (RFC 7748, Section 5)
// and reports false for a low-order pk, whose output is all zero.
func (k *dhKEM) montShared(sk, pk []byte) ([]byte, bool) {
	out := make([]byte, k.npk)
	var ok bool
	if k.id == KEMX25519 {
		ok = x25519.Shared((*x25519.Key)(out), (*x25519.Key)(sk), (*x25519.Key)(pk))
	} else {
		ok = x448.Shared((*x448.Key)(out), (*x448.Key)(sk), (*x448.Key)(pk))
	}
	return out, ok
}

// NewPublicKey implements DeserializePublicKey (RFC 9180, Section 7.1.1).
// NIST points are checked to be on the curve; X25519 and X448 values are
// only length-checked here, and a low-order point is refused when the
// Diffie-Hellman output is all zero (RFC 9180, Section 7.1.4).
func (k *dhKEM) NewPublicKey(b []byte) (PublicKey, error) {
	if len(b) != k.npk {
		return nil, fmt.Errorf("kem: %s public key is %d bytes, want %d", k.name, len(b), k.npk)
	}
	pk := &dhPublicKey{kem: k}
	if k.curve == nil {
		pk.mont = bytes.Clone(b)
		return pk, nil
	}
	ec, err := k.curve.NewPublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("kem: invalid %s public key", k.name)
	}
	pk.ec = ec
	return pk, nil
}

// NewPrivateKey implements DeserializePrivateKey (RFC 9180, Section 7.1.2).
// NIST scalars must lie in [1, n-1]; X25519 and X448 keys are clamped.
func (k *dhKEM) NewPrivateKey(b []byte) (PrivateKey, error) {
	if len(b) != k.nsk {
		return nil, fmt.Errorf("kem: %s private key is %d bytes, want %d", k.name, len(b), k.nsk)
	}
	sk := &dhPrivateKey{kem: k}
	if k.curve == nil {
		sk.mont = bytes.Clone(b)
		k.clamp(sk.mont)
		pub := &dhPublicKey{kem: k, mont: make([]byte, k.npk)}
		k.montPublic(pub.mont, sk.mont)
		sk.pub = pub
		return sk, nil
	}
	ec, err := k.curve.NewPrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("kem: invalid %s private key", k.name)
	}
	sk.ec = ec
	sk.pub = &dhPublicKey{kem: k, ec: ec.PublicKey()}
	return sk, nil
}

// GenerateKeyPair reads Nsk bytes from rand and uses them as the private
// key. For the NIST curves a value outside [1, n-1] is drawn again (for
// P-521 after masking the first byte to the curve's 521 bits), which is
// rejection sampling as in RFC 9180, Section 7.1.3.
func (k *dhKEM) GenerateKeyPair(rand io.Reader) (PrivateKey, error) {
	b := make([]byte, k.nsk)
	defer clear(b)
	for range 256 {
		if _, err := io.ReadFull(rand, b); err != nil {
			return nil, fmt.Errorf("kem: reading randomness: %w", err)
		}
		if k.bitmask != 0 {
			b[0] &= k.bitmask
		}
		sk, err := k.NewPrivateKey(b)
		if err == nil {
			return sk, nil
		}
	}
	return nil, errors.New("kem: randomness source gave no valid private key")
}

// DeriveKeyPair implements DeriveKeyPair from RFC 9180, Section 7.1.3.
func (k *dhKEM) DeriveKeyPair(ikm []byte) (PrivateKey, error) {
	sid := kemSuiteID(k.id)
	prk, err := k.kdf.labeledExtract(sid, nil, "dkp_prk", ikm)
	if err != nil {
		return nil, err
	}
	defer clear(prk)
	if k.bitmask == 0 {
		b, err := k.kdf.labeledExpand(sid, prk, "sk", nil, k.nsk)
		if err != nil {
			return nil, err
		}
		defer clear(b)
		return k.NewPrivateKey(b)
	}
	for counter := range 256 {
		b, err := k.kdf.labeledExpand(sid, prk, "candidate", []byte{byte(counter)}, k.nsk)
		if err != nil {
			return nil, err
		}
		b[0] &= k.bitmask
		sk, err := k.NewPrivateKey(b)
		clear(b)
		if err == nil {
			return sk, nil
		}
	}
	return nil, errors.New("kem: no valid private key in 256 candidates (DeriveKeyPairError, RFC 9180, Section 7.1.3)")
}

// dh computes DH(sk, pk) and refuses an all-zero output (RFC 9180,
// Section 7.1.4), which a low-order X25519 or X448 point gives.
func (k *dhKEM) dh(sk *dhPrivateKey, pk *dhPublicKey) ([]byte, error) {
	if sk.ec != nil {
		out, err := sk.ec.ECDH(pk.ec)
		if err != nil {
			return nil, fmt.Errorf("kem: %s: invalid Diffie-Hellman result", k.name)
		}
		return out, nil
	}
	out, ok := k.montShared(sk.mont, pk.mont)
	if !ok || subtle.ConstantTimeCompare(out, make([]byte, len(out))) == 1 {
		clear(out)
		return nil, fmt.Errorf("kem: %s: invalid Diffie-Hellman result", k.name)
	}
	return out, nil
}

// extractAndExpand implements ExtractAndExpand from RFC 9180, Section 4.1.
func (k *dhKEM) extractAndExpand(dh, kemContext []byte) ([]byte, error) {
	sid := kemSuiteID(k.id)
	prk, err := k.kdf.labeledExtract(sid, nil, "eae_prk", dh)
	if err != nil {
		return nil, err
	}
	defer clear(prk)
	return k.kdf.labeledExpand(sid, prk, "shared_secret", kemContext, k.nsecret)
}

func (k *dhKEM) publicKey(pk PublicKey) (*dhPublicKey, error) {
	p, ok := pk.(*dhPublicKey)
	if !ok || p == nil || p.kem != k {
		return nil, fmt.Errorf("kem: public key is not a %s key", k.name)
	}
	return p, nil
}

// Encap implements Encap from RFC 9180, Section 4.1; the ephemeral key is
// GenerateKeyPair(rand).
func (k *dhKEM) Encap(rand io.Reader, pk PublicKey) (sharedSecret, enc []byte, err error) {
	pkR, err := k.publicKey(pk)
	if err != nil {
		return nil, nil, err
	}
	ske, err := k.GenerateKeyPair(rand)
	if err != nil {
		return nil, nil, err
	}
	skE := ske.(*dhPrivateKey)
	dh, err := k.dh(skE, pkR)
	if err != nil {
		return nil, nil, err
	}
	defer clear(dh)
	enc = skE.pub.Bytes()
	kemContext := append(append([]byte(nil), enc...), pkR.Bytes()...)
	ss, err := k.extractAndExpand(dh, kemContext)
	if err != nil {
		return nil, nil, err
	}
	return ss, enc, nil
}

// Decap implements Decap from RFC 9180, Section 4.1.
func (k *dhKEM) Decap(sk PrivateKey, enc []byte) ([]byte, error) {
	skR, ok := sk.(*dhPrivateKey)
	if !ok || skR == nil || skR.kem != k {
		return nil, fmt.Errorf("kem: private key is not a %s key", k.name)
	}
	pke, err := k.NewPublicKey(enc)
	if err != nil {
		return nil, err
	}
	dh, err := k.dh(skR, pke.(*dhPublicKey))
	if err != nil {
		return nil, err
	}
	defer clear(dh)
	kemContext := append(append([]byte(nil), enc...), skR.pub.Bytes()...)
	return k.extractAndExpand(dh, kemContext)
}
