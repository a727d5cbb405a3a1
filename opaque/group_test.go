package opaque

import (
	"bytes"
	"crypto/ecdh"
	"encoding/hex"
	"errors"
	"math/big"
	"testing"
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// badEncodings returns, per configuration, byte strings of the right
// length that must be refused as an OPRF element and as an AKE public
// key: the identity, non-canonical encodings of valid points, and
// non-points.
func badElements(t *testing.T, name string, c *Config) (oprfBad, akeBad map[string][]byte) {
	t.Helper()
	switch name {
	case "qpchat", "ristretto255", "x25519":
		oprfBad = map[string][]byte{
			"identity": make([]byte, 32),
			// RFC 9496, Appendix A.2: s = p (non-canonical field element),
			// s = 1 (negative), and a non-square.
			"s = p":       mustHex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
			"negative s":  mustHex("0100000000000000000000000000000000000000000000000000000000000000"),
			"s ≥ 2^255":   mustHex("0000000000000000000000000000000000000000000000000000000000000080"),
			"not a point": mustHex("26948d35ca62e643e26a83177332e6b6afeb9d08e4268b650f1f5bbd8d81d371"),
		}
	case "p256":
		oprfBad = map[string][]byte{
			"identity (zero x)": make([]byte, 33),
			"x = p":             mustHex("02ffffffff00000001000000000000000000000000ffffffffffffffffffffffff"),
			"x + p":             p256XPlusP(t),
			"bad prefix":        append([]byte{0x05}, make([]byte, 32)...),
		}
	}
	if c.Group != X25519 {
		return oprfBad, oprfBad
	}
	base := make([]byte, 32)
	base[0] = 9
	highBit := bytes.Clone(base)
	highBit[31] |= 0x80
	one := make([]byte, 32)
	one[0] = 1
	pPlusOne := mustHex("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")
	pMinusOne := mustHex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")
	// An order-8 point (libsodium's blocklist): X25519 output all zeros.
	order8 := mustHex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")
	akeBad = map[string][]byte{
		"u = 0 (small order)":   make([]byte, 32),
		"u = 1 (small order)":   one,
		"u = p-1 (small order)": pMinusOne,
		"order 8":               order8,
		"top bit set":           highBit,
		"u = p+1":               pPlusOne,
	}
	return oprfBad, akeBad
}

// p256XPlusP finds the smallest valid x and returns 02 ‖ (x + p), which a
// decoder reducing modulo p would accept.
func p256XPlusP(t *testing.T) []byte {
	p, _ := new(big.Int).SetString("ffffffff00000001000000000000000000000000ffffffffffffffffffffffff", 16)
	for x := int64(1); x < 100; x++ {
		enc := make([]byte, 33)
		enc[0] = 2
		big.NewInt(x).FillBytes(enc[1:])
		if P256.checkPublicKey(enc) != nil {
			continue
		}
		big.NewInt(x).Add(big.NewInt(x), p).FillBytes(enc[1:])
		return enc
	}
	t.Fatal("no small valid P-256 x")
	return nil
}

func TestX25519SmallOrderListIsSmallOrder(t *testing.T) {
	// The test points are what they claim: X25519 with any key gives zero.
	k, _ := ecdh.X25519().NewPrivateKey(bytes.Repeat([]byte{7}, 32))
	for _, h := range []string{
		"0000000000000000000000000000000000000000000000000000000000000000",
		"0100000000000000000000000000000000000000000000000000000000000000",
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
	} {
		pk, _ := ecdh.X25519().NewPublicKey(mustHex(h))
		if _, err := k.ECDH(pk); err == nil {
			t.Errorf("%s is not of small order", h)
		}
	}
}

// TestRejectBadElements feeds every bad encoding to every place an
// element or key is received, on both sides: the parsers, and the
// protocol functions given hand-built structs that bypass the parsers.
func TestRejectBadElements(t *testing.T) {
	for name, c := range testConfigs() {
		t.Run(name, func(t *testing.T) {
			rnd := seeded(20)
			r := register(t, c, rnd, "pw")
			oprfBad, akeBad := badElements(t, name, c)
			cl0, ke1, _ := c.NewClientLogin(rnd, []byte("pw"))
			ke2, _, err := r.srv.Login(rnd, ke1, r.record, r.cid, Identities{})
			if err != nil {
				t.Fatal(err)
			}
			_ = cl0
			for what, bad := range oprfBad {
				// Server side: blinded element in a registration request and KE1.
				if _, err := c.ParseRegistrationRequest(bad); !errors.Is(err, ErrInvalidMessage) {
					t.Errorf("ParseRegistrationRequest(%s) = %v", what, err)
				}
				if _, err := r.srv.RegistrationResponse(&RegistrationRequest{BlindedMessage: bad}, r.cid); err == nil {
					t.Errorf("RegistrationResponse(%s) accepted", what)
				}
				k := *ke1
				k.CredentialRequest.BlindedMessage = bad
				if _, err := c.ParseKE1(k.Marshal()); !errors.Is(err, ErrInvalidMessage) {
					t.Errorf("ParseKE1(blinded %s) = %v", what, err)
				}
				if _, _, err := r.srv.Login(rnd, &k, r.record, r.cid, Identities{}); err == nil {
					t.Errorf("Login(blinded %s) accepted", what)
				}
				// Client side: evaluated element in a registration response and KE2.
				resp := &RegistrationResponse{EvaluatedMessage: bad, ServerPublicKey: r.srv.PublicKey()}
				if _, err := c.ParseRegistrationResponse(resp.Marshal()); !errors.Is(err, ErrInvalidMessage) {
					t.Errorf("ParseRegistrationResponse(evaluated %s) = %v", what, err)
				}
				cr, _, _ := c.NewClientRegistration(rnd, []byte("pw"))
				if _, _, err := cr.Finish(rnd, resp, c.KSF, Identities{}); err == nil {
					t.Errorf("ClientRegistration.Finish(evaluated %s) accepted", what)
				}
				k2 := *ke2
				k2.CredentialResponse.EvaluatedMessage = bad
				if _, err := c.ParseKE2(k2.Marshal()); !errors.Is(err, ErrInvalidMessage) {
					t.Errorf("ParseKE2(evaluated %s) = %v", what, err)
				}
				cl, _, _ := c.NewClientLogin(rnd, []byte("pw"))
				if _, err := cl.Finish(&k2, r.ksf, Identities{}); err == nil {
					t.Errorf("ClientLogin.Finish(evaluated %s) accepted", what)
				}
			}
			for what, bad := range akeBad {
				// Server side: client key share in KE1, client public key in a record.
				k := *ke1
				k.AuthRequest.ClientPublicKeyshare = bad
				if _, err := c.ParseKE1(k.Marshal()); !errors.Is(err, ErrInvalidMessage) {
					t.Errorf("ParseKE1(keyshare %s) = %v", what, err)
				}
				if _, _, err := r.srv.Login(rnd, &k, r.record, r.cid, Identities{}); err == nil {
					t.Errorf("Login(keyshare %s) accepted", what)
				}
				rec := *r.record
				rec.ClientPublicKey = bad
				if _, err := c.ParseRegistrationRecord(rec.Marshal()); !errors.Is(err, ErrInvalidMessage) {
					t.Errorf("ParseRegistrationRecord(client key %s) = %v", what, err)
				}
				if _, _, err := r.srv.Login(rnd, ke1, &rec, r.cid, Identities{}); err == nil {
					t.Errorf("Login(record key %s) accepted", what)
				}
				// Client side: server key share in KE2, server key in a
				// registration response.
				k2 := *ke2
				k2.AuthResponse.ServerPublicKeyshare = bad
				if _, err := c.ParseKE2(k2.Marshal()); !errors.Is(err, ErrInvalidMessage) {
					t.Errorf("ParseKE2(keyshare %s) = %v", what, err)
				}
				cl, _, _ := c.NewClientLogin(rnd, []byte("pw"))
				if _, err := cl.Finish(&k2, r.ksf, Identities{}); err == nil {
					t.Errorf("ClientLogin.Finish(keyshare %s) accepted", what)
				}
				resp, _ := r.srv.RegistrationResponse(&RegistrationRequest{BlindedMessage: ke1.CredentialRequest.BlindedMessage}, r.cid)
				resp.ServerPublicKey = bad
				if _, err := c.ParseRegistrationResponse(resp.Marshal()); !errors.Is(err, ErrInvalidMessage) {
					t.Errorf("ParseRegistrationResponse(server key %s) = %v", what, err)
				}
				cr, _, _ := c.NewClientRegistration(rnd, []byte("pw"))
				if _, _, err := cr.Finish(rnd, resp, c.KSF, Identities{}); err == nil {
					t.Errorf("ClientRegistration.Finish(server key %s) accepted", what)
				}
				// DH itself refuses the key, for callers inside the package.
				if _, err := c.Group.dh(r.srv.privateKey, bad); err == nil {
					t.Errorf("dh(%s) accepted", what)
				}
			}
		})
	}
}

// TestMaskedServerKeyChecked: the server public key comes out of the
// masked response; even when the envelope authenticates it (a record made
// for the identity as server key, by a registration that skipped the
// client's checks), the client refuses it before any DH.
func TestMaskedServerKeyChecked(t *testing.T) {
	c := QPChatTest()
	rnd := seeded(21)
	r := register(t, c, rnd, "pw")
	identity := make([]byte, 32)

	// Register the way a client without the response check would.
	cr, req, _ := c.NewClientRegistration(rnd, []byte("pw"))
	resp, _ := r.srv.RegistrationResponse(req, r.cid)
	out, err := c.finalize(cr.oprf.fin, resp.EvaluatedMessage)
	if err != nil {
		t.Fatal(err)
	}
	rwd, err := c.randomizedPassword(out, c.KSF)
	if err != nil {
		t.Fatal(err)
	}
	env, clientPublicKey, maskingKey, _, err := c.store(rnd, rwd, identity, Identities{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	record := &RegistrationRecord{ClientPublicKey: clientPublicKey, MaskingKey: maskingKey, Envelope: env}

	bad := &Server{cfg: c, oprfSeed: r.srv.oprfSeed, privateKey: r.srv.privateKey, publicKey: identity}
	cl, ke1, _ := c.NewClientLogin(rnd, []byte("pw"))
	ke2, _, err := bad.Login(rnd, ke1, record, r.cid, Identities{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Finish(ke2, r.ksf, Identities{}); !errors.Is(err, ErrServerAuthentication) {
		t.Errorf("client Finish with an authenticated identity server key = %v, want ErrServerAuthentication", err)
	}
}
