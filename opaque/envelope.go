package opaque

// This file holds client credential storage and key recovery (RFC 9807,
// Section 4): the cleartext credentials, Store and Recover.

import (
	"crypto/hmac"
	"errors"
	"fmt"
	"io"
)

// ErrEnvelopeRecovery is returned by the client's ClientLogin.Finish when
// the envelope does not open: the password is wrong, the user is unknown
// (the server answered from a fake record), or the KSF parameters are not
// the ones the record was made with. These cases are indistinguishable on
// purpose.
var ErrEnvelopeRecovery = errors.New("opaque: envelope recovery failed (wrong password or unknown user)")

// Identities are the optional identities of RFC 9807, Section 4.1. A nil
// or empty identity defaults to that party's public key; at most 65535
// bytes each. qpchat leaves both unset.
type Identities struct {
	Client, Server []byte
}

func (ids Identities) check() error {
	if len(ids.Client) > 0xffff || len(ids.Server) > 0xffff {
		return fmt.Errorf("opaque: identity longer than 65535 bytes")
	}
	return nil
}

// cleartextCredentials is CleartextCredentials of RFC 9807, Section 4:
//
//	struct {
//	  uint8 server_public_key[Npk];
//	  uint8 server_identity<1..2^16-1>;
//	  uint8 client_identity<1..2^16-1>;
//	} CleartextCredentials;
type cleartextCredentials struct {
	serverPublicKey []byte
	serverIdentity  []byte
	clientIdentity  []byte
}

// newCleartextCredentials implements CreateCleartextCredentials: unset
// identities default to the public keys.
func newCleartextCredentials(serverPublicKey, clientPublicKey []byte, ids Identities) cleartextCredentials {
	cc := cleartextCredentials{serverPublicKey: serverPublicKey, serverIdentity: ids.Server, clientIdentity: ids.Client}
	if len(cc.serverIdentity) == 0 {
		cc.serverIdentity = serverPublicKey
	}
	if len(cc.clientIdentity) == 0 {
		cc.clientIdentity = clientPublicKey
	}
	return cc
}

func (cc cleartextCredentials) marshal() []byte {
	return concat(cc.serverPublicKey, lengthPrefixed16(cc.serverIdentity), lengthPrefixed16(cc.clientIdentity))
}

// lengthPrefixed16 returns I2OSP(len(b), 2) ‖ b; b is at most 65535 bytes
// (Identities.check, and public keys are short).
func lengthPrefixed16(b []byte) []byte {
	return concat([]byte{byte(len(b) >> 8), byte(len(b))}, b)
}

// envelopeKeys are the keys Store and Recover expand from the randomized
// password and the envelope nonce.
type envelopeKeys struct {
	authKey, exportKey, seed []byte
}

func (c *Config) deriveEnvelopeKeys(randomizedPassword, nonce []byte) envelopeKeys {
	nh := c.Hash.Size()
	return envelopeKeys{
		authKey:   c.expand(randomizedPassword, concat(nonce, []byte(labelAuthKey)), nh),
		exportKey: c.expand(randomizedPassword, concat(nonce, []byte(labelExportKey)), nh),
		seed:      c.expand(randomizedPassword, concat(nonce, []byte(labelPrivateKey)), SeedSize),
	}
}

// maskingKey is Expand(randomized_password, "MaskingKey", Nh).
func (c *Config) maskingKey(randomizedPassword []byte) []byte {
	return c.expand(randomizedPassword, []byte(labelMaskingKey), c.Hash.Size())
}

// store implements Store (RFC 9807, Section 4.1.2). The envelope nonce is
// read from rnd.
func (c *Config) store(rnd io.Reader, randomizedPassword, serverPublicKey []byte, ids Identities, tr *trace) (
	env Envelope, clientPublicKey, maskingKey, exportKey []byte, err error,
) {
	nonce, err := readRandom(rnd, NonceSize)
	if err != nil {
		return Envelope{}, nil, nil, nil, err
	}
	maskingKey = c.maskingKey(randomizedPassword)
	k := c.deriveEnvelopeKeys(randomizedPassword, nonce)
	defer zero(k.authKey, k.seed)

	sk, clientPublicKey, err := c.Group.deriveKeyPair(k.seed)
	zero(sk)
	if err != nil {
		return Envelope{}, nil, nil, nil, err
	}
	cc := newCleartextCredentials(serverPublicKey, clientPublicKey, ids)
	env = Envelope{Nonce: nonce, AuthTag: c.mac(k.authKey, nonce, cc.marshal())}
	if tr != nil {
		tr.authKey = clone(k.authKey)
		tr.maskingKey = clone(maskingKey)
		tr.exportKey = clone(k.exportKey)
	}
	return env, clientPublicKey, maskingKey, k.exportKey, nil
}

// recover implements Recover (RFC 9807, Section 4.1.3). Any failure,
// including a mismatched tag, is ErrEnvelopeRecovery.
func (c *Config) recover(randomizedPassword, serverPublicKey []byte, env Envelope, ids Identities, tr *trace) (
	clientPrivateKey []byte, cc cleartextCredentials, exportKey []byte, err error,
) {
	k := c.deriveEnvelopeKeys(randomizedPassword, env.Nonce)
	defer zero(k.authKey, k.seed)

	sk, clientPublicKey, err := c.Group.deriveKeyPair(k.seed)
	if err != nil {
		zero(k.exportKey)
		return nil, cleartextCredentials{}, nil, ErrEnvelopeRecovery
	}
	cc = newCleartextCredentials(serverPublicKey, clientPublicKey, ids)
	expectedTag := c.mac(k.authKey, env.Nonce, cc.marshal())
	if tr != nil {
		tr.authKey = clone(k.authKey)
		tr.exportKey = clone(k.exportKey)
		tr.clientPublicKey = clone(clientPublicKey)
	}
	if !hmac.Equal(expectedTag, env.AuthTag) {
		zero(sk, k.exportKey)
		return nil, cleartextCredentials{}, nil, ErrEnvelopeRecovery
	}
	return sk, cc, k.exportKey, nil
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }
