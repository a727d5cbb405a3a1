package opaque

// This file holds the 3DH key schedule of RFC 9807, Section 6.4: the
// preamble, DeriveKeys, and the three Diffie-Hellman values each side
// combines.

// preamble implements Preamble (RFC 9807, Section 6.4.2):
//
//	preamble = concat("OPAQUEv1-",
//	                  I2OSP(len(context), 2), context,
//	                  I2OSP(len(client_identity), 2), client_identity,
//	                  ke1,
//	                  I2OSP(len(server_identity), 2), server_identity,
//	                  credential_response,
//	                  server_nonce,
//	                  server_public_keyshare)
func (c *Config) preamble(clientIdentity, ke1, serverIdentity, credentialResponse, serverNonce, serverPublicKeyshare []byte) []byte {
	return concat([]byte(preambleVersion),
		lengthPrefixed16(c.Context),
		lengthPrefixed16(clientIdentity),
		ke1,
		lengthPrefixed16(serverIdentity),
		credentialResponse,
		serverNonce,
		serverPublicKeyshare)
}

// akeKeys are the outputs of DeriveKeys.
type akeKeys struct {
	km2, km3, sessionKey []byte
}

func (k akeKeys) wipe() { zero(k.km2, k.km3, k.sessionKey) }

// deriveKeys implements DeriveKeys (RFC 9807, Section 6.4.2):
//
//	prk = Extract("", ikm)
//	handshake_secret = Derive-Secret(prk, "HandshakeSecret", Hash(preamble))
//	session_key = Derive-Secret(prk, "SessionKey", Hash(preamble))
//	Km2 = Derive-Secret(handshake_secret, "ServerMAC", "")
//	Km3 = Derive-Secret(handshake_secret, "ClientMAC", "")
func (c *Config) deriveKeys(ikm, preambleHash []byte, tr *trace) akeKeys {
	prk := c.extract(nil, ikm)
	handshakeSecret := c.deriveSecret(prk, labelHandshakeSecret, preambleHash)
	k := akeKeys{
		sessionKey: c.deriveSecret(prk, labelSessionKey, preambleHash),
		km2:        c.deriveSecret(handshakeSecret, labelServerMAC, nil),
		km3:        c.deriveSecret(handshakeSecret, labelClientMAC, nil),
	}
	if tr != nil {
		tr.handshakeSecret = clone(handshakeSecret)
		tr.km2 = clone(k.km2)
		tr.km3 = clone(k.km3)
	}
	zero(prk, handshakeSecret)
	return k
}

// tripleDH returns ikm = concat(dh1, dh2, dh3) for three (private, public)
// pairs, in the order RFC 9807, Section 6.4.3 (AuthClientFinalize) and
// Section 6.4.4 (AuthServerRespond) give them. Every public key is checked
// by Group.dh.
func (c *Config) tripleDH(sk1, pk1, sk2, pk2, sk3, pk3 []byte) ([]byte, error) {
	dh1, err := c.Group.dh(sk1, pk1)
	if err != nil {
		return nil, err
	}
	dh2, err := c.Group.dh(sk2, pk2)
	if err != nil {
		zero(dh1)
		return nil, err
	}
	dh3, err := c.Group.dh(sk3, pk3)
	if err != nil {
		zero(dh1, dh2)
		return nil, err
	}
	ikm := concat(dh1, dh2, dh3)
	zero(dh1, dh2, dh3)
	return ikm, nil
}
