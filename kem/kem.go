// Package kem implements HPKE ([RFC 9180]) base mode over pluggable key
// encapsulation mechanisms, the DHKEMs used by the MLS ciphersuites of
// [RFC 9420] Section 17.1, X-Wing, and qpchat's hybrid X25519 + ML-KEM-768 KEM.
// It also has the other KEMs of draft-ietf-hpke-pq (pure ML-KEM-512/768/1024,
// MLKEM768-P256, MLKEM1024-P384), which no MLS suite of qpchat uses.
//
// The hybrid KEM's construction, code points (HPKE KEM id 0xFA01, local to
// qpchat; MLS suite 0xFA01 in RFC 9420's private-use range) and security
// argument are in README.md beside this file. In short: its secret stays
// confidential while either ML-KEM-768 or X25519 holds, but it is not
// strictly IND-CCA, because a ciphertext can be re-encoded (a small-order
// component added to the X25519 ephemeral) without changing the secret.
// That is harmless in MLS; HPKE ciphertext bytes must never serve as
// identifiers.
//
// [RFC 9180]: https://www.rfc-editor.org/rfc/rfc9180
// [RFC 9420]: https://www.rfc-editor.org/rfc/rfc9420
package kem

import "io"

// KEM is a key encapsulation mechanism as HPKE uses it (RFC 9180, Section 4).
// Implementations validate every key and encapsulation they receive and
// return errors, never panic, on malformed input.
type KEM interface {
	// ID is the HPKE KEM identifier (RFC 9180, Section 7.1).
	ID() uint16
	// PublicKeySize is Npk, PrivateKeySize Nsk, EncSize Nenc and
	// SharedSecretSize Nsecret.
	PublicKeySize() int
	PrivateKeySize() int
	EncSize() int
	SharedSecretSize() int
	// GenerateKeyPair reads the private key's randomness from rand, so a
	// deterministic reader gives a deterministic key.
	GenerateKeyPair(rand io.Reader) (PrivateKey, error)
	// DeriveKeyPair implements DeriveKeyPair(ikm) (RFC 9180, Section 7.1.3).
	DeriveKeyPair(ikm []byte) (PrivateKey, error)
	// NewPublicKey parses and validates SerializePublicKey output.
	NewPublicKey(b []byte) (PublicKey, error)
	// NewPrivateKey parses and validates SerializePrivateKey output.
	NewPrivateKey(b []byte) (PrivateKey, error)
	// Encap returns the shared secret and its encapsulation to pk, reading
	// its ephemeral randomness from rand.
	Encap(rand io.Reader, pk PublicKey) (sharedSecret, enc []byte, err error)
	// Decap recovers the shared secret from enc.
	Decap(sk PrivateKey, enc []byte) (sharedSecret []byte, err error)
}

// PublicKey is a KEM public key.
type PublicKey interface {
	KEM() KEM
	// Bytes is SerializePublicKey.
	Bytes() []byte
}

// PrivateKey is a KEM private key.
type PrivateKey interface {
	KEM() KEM
	// Bytes is SerializePrivateKey.
	Bytes() []byte
	PublicKey() PublicKey
}
