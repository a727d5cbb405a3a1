package opaque

// This file holds the cryptographic dependencies of RFC 9807, Section 2:
// the KDF (HKDF, RFC 5869), the MAC (HMAC, RFC 2104) and Hash, plus the
// Expand-Label and Derive-Secret functions of Section 6.4.2.

import (
	"crypto/hkdf"
	"crypto/hmac"
	"hash"
)

// labelPrefix is prepended to every Expand-Label label (RFC 9807,
// Section 6.4.2).
const labelPrefix = "OPAQUE-"

// Labels of RFC 9807, Sections 4.1, 5.2, 6.3 and 6.4.
const (
	labelOprfKey               = "OprfKey"
	labelMaskingKey            = "MaskingKey"
	labelAuthKey               = "AuthKey"
	labelExportKey             = "ExportKey"
	labelPrivateKey            = "PrivateKey"
	labelCredentialResponsePad = "CredentialResponsePad"
	labelHandshakeSecret       = "HandshakeSecret"
	labelSessionKey            = "SessionKey"
	labelServerMAC             = "ServerMAC"
	labelClientMAC             = "ClientMAC"

	// infoDeriveKeyPair is the info of the OPRF key derivation
	// (RFC 9807, Section 5.2.2).
	infoDeriveKeyPair = "OPAQUE-DeriveKeyPair"
	// infoDeriveDHKeyPair is the info of DeriveDiffieHellmanKeyPair
	// (RFC 9807, Section 6.4.1).
	infoDeriveDHKeyPair = "OPAQUE-DeriveDiffieHellmanKeyPair"
	// preambleVersion starts the AKE preamble (RFC 9807, Section 6.4.2).
	preambleVersion = "OPAQUEv1-"
)

func (c *Config) newHash() hash.Hash { return c.Hash.New() }

// extract is KDF.Extract(salt, ikm).
func (c *Config) extract(salt, ikm []byte) []byte {
	prk, err := hkdf.Extract(c.newHash, ikm, salt)
	if err != nil {
		// HKDF-Extract has no failure mode for the hashes a Config allows.
		panic("opaque: internal error: HKDF-Extract: " + err.Error())
	}
	return prk
}

// expand is KDF.Expand(prk, info, n). Every n used here is at most a few
// hash lengths, far below HKDF's 255·Nh limit.
func (c *Config) expand(prk []byte, info []byte, n int) []byte {
	out, err := hkdf.Expand(c.newHash, prk, string(info), n)
	if err != nil {
		panic("opaque: internal error: HKDF-Expand: " + err.Error())
	}
	return out
}

// expandLabel implements Expand-Label from RFC 9807, Section 6.4.2:
//
//	struct {
//	  uint16 length = Length;
//	  opaque label<8..255> = "OPAQUE-" + Label;
//	  uint8 context<0..255> = Context;
//	} CustomLabel;
//
// Labels are the constants above and contexts are hash outputs or empty,
// so both fit their one-byte length prefixes.
func (c *Config) expandLabel(secret []byte, label string, context []byte, n int) []byte {
	full := labelPrefix + label
	info := make([]byte, 0, 2+1+len(full)+1+len(context))
	info = append(info, byte(n>>8), byte(n), byte(len(full)))
	info = append(info, full...)
	info = append(info, byte(len(context)))
	info = append(info, context...)
	return c.expand(secret, info, n)
}

// deriveSecret implements Derive-Secret from RFC 9807, Section 6.4.2:
// Expand-Label(Secret, Label, Transcript-Hash, Nx).
func (c *Config) deriveSecret(secret []byte, label string, transcriptHash []byte) []byte {
	return c.expandLabel(secret, label, transcriptHash, c.Hash.Size())
}

// mac is MAC(key, msg) = HMAC with the configured hash.
func (c *Config) mac(key []byte, msg ...[]byte) []byte {
	m := hmac.New(c.newHash, key)
	for _, p := range msg {
		m.Write(p)
	}
	return m.Sum(nil)
}

// hash is Hash(msg).
func (c *Config) hash(msg ...[]byte) []byte {
	h := c.newHash()
	for _, p := range msg {
		h.Write(p)
	}
	return h.Sum(nil)
}

// concat joins byte strings into a new slice.
func concat(parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := make([]byte, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// zero overwrites secrets that are no longer needed. This is best effort:
// copies inside hash states, circl's scalars and big.Int values, and on
// the stack are out of reach.
func zero(bufs ...[]byte) {
	for _, b := range bufs {
		clear(b)
	}
}

// trace records the intermediate values of one protocol run, so that the
// known-answer tests can compare them with the RFC 9807 test vectors. The
// production entry points pass nil and nothing is recorded.
type trace struct {
	oprfKey            []byte
	randomizedPassword []byte
	maskingKey         []byte
	authKey            []byte
	exportKey          []byte
	clientPublicKey    []byte
	handshakeSecret    []byte
	km2, km3           []byte
}
