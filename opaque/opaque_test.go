package opaque

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"errors"
	"io"
	mathrand "math/rand/v2"
	"testing"

	"github.com/cloudflare/circl/oprf"
)

// testConfigs are the three configurations of the RFC 9807 vectors (with
// the cheap Argon2id as KSF) plus qpchat's test configuration.
func testConfigs() map[string]*Config {
	return map[string]*Config{
		"qpchat":       QPChatTest(),
		"ristretto255": {OPRF: oprf.SuiteRistretto255, Hash: crypto.SHA512, Group: Ristretto255, KSF: TestArgon2id, Context: []byte("ctx")},
		"x25519":       {OPRF: oprf.SuiteRistretto255, Hash: crypto.SHA512, Group: X25519, KSF: TestArgon2id},
		"p256":         {OPRF: oprf.SuiteP256, Hash: crypto.SHA256, Group: P256, KSF: TestArgon2id},
	}
}

// seeded returns a deterministic randomness source for tests.
func seeded(seed uint64) io.Reader {
	var s [32]byte
	s[0] = byte(seed)
	s[1] = byte(seed >> 8)
	return mathrand.NewChaCha8(s)
}

// wire passes a message through its encoding, as between two processes.
func wire[T any](t testing.TB, marshal func() []byte, parse func([]byte) (T, error)) T {
	t.Helper()
	v, err := parse(marshal())
	if err != nil {
		t.Fatalf("parse after marshal: %v", err)
	}
	return v
}

// registered is a server with one registered user.
type registered struct {
	cfg       *Config
	srv       *Server
	cid       []byte
	password  []byte
	record    *RegistrationRecord
	ksf       KSF
	exportKey []byte
}

func register(t testing.TB, c *Config, rnd io.Reader, password string) *registered {
	t.Helper()
	setup, err := c.GenerateServerSetup(rnd)
	if err != nil {
		t.Fatalf("GenerateServerSetup: %v", err)
	}
	setup = wire(t, setup.Marshal, c.ParseServerSetup)
	srv, err := c.NewServer(setup)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	cid := []byte("alice")
	cr, req, err := c.NewClientRegistration(rnd, []byte(password))
	if err != nil {
		t.Fatalf("NewClientRegistration: %v", err)
	}
	resp, err := srv.RegistrationResponse(wire(t, req.Marshal, c.ParseRegistrationRequest), cid)
	if err != nil {
		t.Fatalf("RegistrationResponse: %v", err)
	}
	record, exportKey, err := cr.Finish(rnd, wire(t, resp.Marshal, c.ParseRegistrationResponse), c.KSF, Identities{})
	if err != nil {
		t.Fatalf("ClientRegistration.Finish: %v", err)
	}
	ksfBytes, err := c.KSF.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	ksf, err := ParseKSF(ksfBytes)
	if err != nil {
		t.Fatalf("ParseKSF: %v", err)
	}
	return &registered{
		cfg: c, srv: srv, cid: cid, password: []byte(password),
		record: wire(t, record.Marshal, c.ParseRegistrationRecord), ksf: ksf, exportKey: exportKey,
	}
}

// login runs a login with password, passing every message through its
// encoding; it returns the client's result and error and the server's.
func (r *registered) login(t testing.TB, rnd io.Reader, password string) (*LoginResult, error, []byte, error) {
	t.Helper()
	c := r.cfg
	cl, ke1, err := c.NewClientLogin(rnd, []byte(password))
	if err != nil {
		t.Fatalf("NewClientLogin: %v", err)
	}
	ke2, sl, err := r.srv.Login(rnd, wire(t, ke1.Marshal, c.ParseKE1), r.record, r.cid, Identities{})
	if err != nil {
		t.Fatalf("Server.Login: %v", err)
	}
	res, cerr := cl.Finish(wire(t, ke2.Marshal, c.ParseKE2), r.ksf, Identities{})
	ke3 := &KE3{ClientMAC: make([]byte, c.KE3Size())} // what a client without the password can send
	if cerr == nil {
		ke3 = wire(t, res.KE3.Marshal, c.ParseKE3)
	}
	sk, serr := sl.Finish(ke3)
	return res, cerr, sk, serr
}

func TestRoundTrip(t *testing.T) {
	for name, c := range testConfigs() {
		t.Run(name, func(t *testing.T) {
			rnd := seeded(1)
			r := register(t, c, rnd, "correct horse")
			res, cerr, sk, serr := r.login(t, rnd, "correct horse")
			if cerr != nil || serr != nil {
				t.Fatalf("login: client %v, server %v", cerr, serr)
			}
			if !bytes.Equal(res.SessionKey, sk) || len(sk) != c.Hash.Size() {
				t.Errorf("session keys differ: client %x, server %x", res.SessionKey, sk)
			}
			if !bytes.Equal(res.ExportKey, r.exportKey) {
				t.Errorf("login export key %x, registration gave %x", res.ExportKey, r.exportKey)
			}
			if !bytes.Equal(res.ServerPublicKey, r.srv.PublicKey()) {
				t.Errorf("recovered server public key %x, want %x", res.ServerPublicKey, r.srv.PublicKey())
			}
			// A second login gives a fresh session key and the same export key.
			res2, cerr, sk2, serr := r.login(t, rnd, "correct horse")
			if cerr != nil || serr != nil {
				t.Fatalf("second login: client %v, server %v", cerr, serr)
			}
			if bytes.Equal(sk2, sk) || !bytes.Equal(res2.SessionKey, sk2) || !bytes.Equal(res2.ExportKey, r.exportKey) {
				t.Error("second login: session key reused or export key changed")
			}
		})
	}
}

// TestRoundTripQPChat runs registration and login with qpchat's real
// configuration, Argon2id with 64 MiB included.
func TestRoundTripQPChat(t *testing.T) {
	if testing.Short() {
		t.Skip("64 MiB Argon2id twice; run without -short")
	}
	c := QPChat()
	r := register(t, c, rand.Reader, "correct horse")
	if r.ksf != DefaultArgon2id {
		t.Fatalf("registered KSF %v, want %v", r.ksf, DefaultArgon2id)
	}
	if err := DefaultKSFBounds.Check(r.ksf); err != nil {
		t.Fatalf("DefaultKSFBounds.Check(default) = %v", err)
	}
	res, cerr, sk, serr := r.login(t, rand.Reader, "correct horse")
	if cerr != nil || serr != nil {
		t.Fatalf("login: client %v, server %v", cerr, serr)
	}
	if !bytes.Equal(res.SessionKey, sk) || !bytes.Equal(res.ExportKey, r.exportKey) {
		t.Error("session or export keys differ")
	}
	if len(res.KE3.Marshal()) != 64 || c.KE1Size() != 96 || c.KE2Size() != 320 || c.RegistrationRecordSize() != 192 {
		t.Errorf("qpchat sizes: KE1 %d, KE2 %d, KE3 %d, record %d; want 96, 320, 64, 192",
			c.KE1Size(), c.KE2Size(), len(res.KE3.Marshal()), c.RegistrationRecordSize())
	}
}

// TestDeterministic shows that all randomness comes from the reader: two
// runs on the same seed produce the same bytes.
func TestDeterministic(t *testing.T) {
	run := func() [][]byte {
		c := QPChatTest()
		rnd := seeded(7)
		r := register(t, c, rnd, "pw")
		cl, ke1, err := c.NewClientLogin(rnd, []byte("pw"))
		if err != nil {
			t.Fatal(err)
		}
		ke2, _, err := r.srv.Login(rnd, ke1, r.record, r.cid, Identities{})
		if err != nil {
			t.Fatal(err)
		}
		res, err := cl.Finish(ke2, r.ksf, Identities{})
		if err != nil {
			t.Fatal(err)
		}
		return [][]byte{r.record.Marshal(), ke1.Marshal(), ke2.Marshal(), res.KE3.Marshal(), res.SessionKey}
	}
	a, b := run(), run()
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			t.Errorf("output %d differs between runs on the same seed", i)
		}
	}
}

func TestWrongPassword(t *testing.T) {
	for name, c := range testConfigs() {
		t.Run(name, func(t *testing.T) {
			rnd := seeded(2)
			r := register(t, c, rnd, "correct horse")
			res, cerr, sk, serr := r.login(t, rnd, "battery staple")
			if !errors.Is(cerr, ErrEnvelopeRecovery) || res != nil {
				t.Errorf("client Finish with wrong password = %v, want ErrEnvelopeRecovery", cerr)
			}
			if !errors.Is(serr, ErrClientAuthentication) || sk != nil {
				t.Errorf("server Finish without a valid KE3 = %v, want ErrClientAuthentication", serr)
			}
		})
	}
}

// TestWrongKSF: parameters other than the record's do not open the
// envelope, so a server cannot silently weaken them.
func TestWrongKSF(t *testing.T) {
	c := QPChatTest()
	rnd := seeded(3)
	r := register(t, c, rnd, "pw")
	r.ksf = Argon2id{Time: 2, MemoryKiB: 64, Threads: 1}
	if _, cerr, _, serr := r.login(t, rnd, "pw"); !errors.Is(cerr, ErrEnvelopeRecovery) || !errors.Is(serr, ErrClientAuthentication) {
		t.Errorf("login with other KSF parameters: client %v, server %v", cerr, serr)
	}
}

func TestUnknownUser(t *testing.T) {
	for name, c := range testConfigs() {
		t.Run(name, func(t *testing.T) {
			rnd := seeded(4)
			r := register(t, c, rnd, "pw")
			cl, ke1, err := c.NewClientLogin(rnd, []byte("pw"))
			if err != nil {
				t.Fatal(err)
			}
			real, _, err := r.srv.Login(rnd, ke1, r.record, r.cid, Identities{})
			if err != nil {
				t.Fatal(err)
			}
			fake, sl, err := r.srv.LoginUnknown(rnd, ke1, []byte("mallory"), Identities{})
			if err != nil {
				t.Fatalf("LoginUnknown: %v", err)
			}
			if len(fake.Marshal()) != len(real.Marshal()) || len(fake.Marshal()) != c.KE2Size() {
				t.Errorf("fake KE2 is %d bytes, real %d, want %d", len(fake.Marshal()), len(real.Marshal()), c.KE2Size())
			}
			fake = wire(t, fake.Marshal, c.ParseKE2)
			if _, err := cl.Finish(fake, c.KSF, Identities{}); !errors.Is(err, ErrEnvelopeRecovery) {
				t.Errorf("client Finish on a fake KE2 = %v, want ErrEnvelopeRecovery", err)
			}
			if _, err := sl.Finish(&KE3{ClientMAC: make([]byte, c.KE3Size())}); !errors.Is(err, ErrClientAuthentication) {
				t.Errorf("server Finish on a fake login = %v, want ErrClientAuthentication", err)
			}

			// Repeated attempts for one name see the same OPRF key and record;
			// another name gets another record.
			fake2, _, err := r.srv.LoginUnknown(rnd, ke1, []byte("mallory"), Identities{})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(fake.CredentialResponse.EvaluatedMessage, fake2.CredentialResponse.EvaluatedMessage) {
				t.Error("two fake logins for one name evaluate the OPRF differently")
			}
			if bytes.Equal(fake.CredentialResponse.MaskingNonce, fake2.CredentialResponse.MaskingNonce) {
				t.Error("masking nonce repeated")
			}
			rec1, err := r.srv.fakeRecord([]byte("mallory"))
			if err != nil {
				t.Fatal(err)
			}
			rec2, _ := r.srv.fakeRecord([]byte("mallory"))
			rec3, _ := r.srv.fakeRecord([]byte("trent"))
			if !bytes.Equal(rec1.Marshal(), rec2.Marshal()) {
				t.Error("fake record of one name not deterministic")
			}
			if bytes.Equal(rec1.ClientPublicKey, rec3.ClientPublicKey) || bytes.Equal(rec1.MaskingKey, rec3.MaskingKey) {
				t.Error("two names share fake record material")
			}
			if _, err := c.ParseRegistrationRecord(rec1.Marshal()); err != nil {
				t.Errorf("fake record does not parse as a record: %v", err)
			}
		})
	}
}

// TestTamperedKE2 flips every bit position class of KE2 (one byte at a
// time) and checks the client refuses each.
func TestTamperedKE2(t *testing.T) {
	c := QPChatTest()
	rnd := seeded(5)
	r := register(t, c, rnd, "pw")
	// The client's state is single-use, so each variant needs a fresh KE1;
	// the server's answer is made deterministic by a fixed reader.
	for i := range c.KE2Size() {
		cl, ke1, err := c.NewClientLogin(seeded(50), []byte("pw"))
		if err != nil {
			t.Fatal(err)
		}
		ke2, _, err := r.srv.Login(seeded(51), ke1, r.record, r.cid, Identities{})
		if err != nil {
			t.Fatal(err)
		}
		b := ke2.Marshal()
		b[i] ^= 0x01
		parsed, err := c.ParseKE2(b)
		if err != nil {
			continue // refused at parse: a bad element or key share
		}
		if _, err := cl.Finish(parsed, r.ksf, Identities{}); err == nil {
			t.Errorf("client accepted KE2 with byte %d changed", i)
		}
	}
}

// TestTamperedKE1AndKE3: a changed KE1 makes the server's MAC fail at the
// client (or the envelope not open), and a changed KE3 is refused by the
// server.
func TestTamperedKE1AndKE3(t *testing.T) {
	c := QPChatTest()
	rnd := seeded(6)
	r := register(t, c, rnd, "pw")
	for i := range c.KE1Size() {
		cl, ke1, err := c.NewClientLogin(rnd, []byte("pw"))
		if err != nil {
			t.Fatal(err)
		}
		b := ke1.Marshal()
		b[i] ^= 0x01
		parsed, err := c.ParseKE1(b)
		if err != nil {
			continue
		}
		ke2, _, err := r.srv.Login(rnd, parsed, r.record, r.cid, Identities{})
		if err != nil {
			t.Fatalf("Login on a well-formed KE1: %v", err)
		}
		if _, err := cl.Finish(ke2, r.ksf, Identities{}); err == nil {
			t.Errorf("client accepted a KE2 made for KE1 with byte %d changed", i)
		}
	}
	for i := range c.KE3Size() {
		cl, ke1, _ := c.NewClientLogin(rnd, []byte("pw"))
		ke2, sl, err := r.srv.Login(rnd, ke1, r.record, r.cid, Identities{})
		if err != nil {
			t.Fatal(err)
		}
		res, err := cl.Finish(ke2, r.ksf, Identities{})
		if err != nil {
			t.Fatal(err)
		}
		b := res.KE3.Marshal()
		b[i] ^= 0x80
		if _, err := sl.Finish(&KE3{ClientMAC: b}); !errors.Is(err, ErrClientAuthentication) {
			t.Errorf("server Finish with KE3 byte %d changed = %v", i, err)
		}
	}
	// A KE3 of the wrong length is refused at parse and by Finish.
	if _, err := c.ParseKE3(make([]byte, c.KE3Size()-1)); !errors.Is(err, ErrInvalidMessage) {
		t.Errorf("ParseKE3(short) = %v", err)
	}
	_, ke1, _ := c.NewClientLogin(rnd, []byte("pw"))
	_, sl, _ := r.srv.Login(rnd, ke1, r.record, r.cid, Identities{})
	if _, err := sl.Finish(&KE3{ClientMAC: nil}); !errors.Is(err, ErrClientAuthentication) {
		t.Errorf("Finish(empty KE3) = %v", err)
	}
}

// TestTamperedRecord: a record whose masking key or envelope changed no
// longer lets the password in.
func TestTamperedRecord(t *testing.T) {
	c := QPChatTest()
	rnd := seeded(8)
	r := register(t, c, rnd, "pw")
	good := r.record.Marshal()
	npk := c.Group.PublicKeySize()
	for _, i := range []int{npk, npk + 10, npk + c.Hash.Size(), len(good) - 1} {
		b := bytes.Clone(good)
		b[i] ^= 0x04
		rec, err := c.ParseRegistrationRecord(b)
		if err != nil {
			t.Fatalf("record byte %d: %v", i, err)
		}
		r.record = rec
		if _, cerr, _, serr := r.login(t, rnd, "pw"); cerr == nil || serr == nil {
			t.Errorf("login succeeded with record byte %d changed", i)
		}
	}
}

func TestSingleUseStates(t *testing.T) {
	c := QPChatTest()
	rnd := seeded(9)
	r := register(t, c, rnd, "pw")
	cl, ke1, _ := c.NewClientLogin(rnd, []byte("pw"))
	ke2, sl, _ := r.srv.Login(rnd, ke1, r.record, r.cid, Identities{})
	res, err := cl.Finish(ke2, r.ksf, Identities{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Finish(ke2, r.ksf, Identities{}); err == nil {
		t.Error("ClientLogin.Finish succeeded twice")
	}
	if _, err := sl.Finish(res.KE3); err != nil {
		t.Fatal(err)
	}
	if _, err := sl.Finish(res.KE3); err == nil {
		t.Error("ServerLogin.Finish succeeded twice")
	}
	cr, req, _ := c.NewClientRegistration(rnd, []byte("pw"))
	resp, _ := r.srv.RegistrationResponse(req, r.cid)
	if _, _, err := cr.Finish(rnd, resp, c.KSF, Identities{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cr.Finish(rnd, resp, c.KSF, Identities{}); err == nil {
		t.Error("ClientRegistration.Finish succeeded twice")
	}
}

// TestIdentities: identities are bound into the envelope and the
// preamble; both sides must agree.
func TestIdentities(t *testing.T) {
	c := QPChatTest()
	rnd := seeded(10)
	ids := Identities{Client: []byte("alice"), Server: []byte("node")}
	setup, _ := c.GenerateServerSetup(rnd)
	srv, _ := c.NewServer(setup)
	cr, req, _ := c.NewClientRegistration(rnd, []byte("pw"))
	resp, _ := srv.RegistrationResponse(req, []byte("alice"))
	record, _, err := cr.Finish(rnd, resp, c.KSF, ids)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name           string
		client, server Identities
		wantClientErr  error
	}{
		{"same", ids, ids, nil},
		{"client forgets", Identities{}, ids, ErrEnvelopeRecovery},
		{"server differs", ids, Identities{Client: []byte("alice"), Server: []byte("other")}, ErrServerAuthentication},
	} {
		cl, ke1, _ := c.NewClientLogin(rnd, []byte("pw"))
		ke2, _, err := srv.Login(rnd, ke1, record, []byte("alice"), tc.server)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cl.Finish(ke2, c.KSF, tc.client); !errors.Is(err, tc.wantClientErr) && !(tc.wantClientErr == nil && err == nil) {
			t.Errorf("%s: client Finish = %v, want %v", tc.name, err, tc.wantClientErr)
		}
	}
	long := Identities{Client: make([]byte, 0x10000)}
	cl, ke1, _ := c.NewClientLogin(rnd, []byte("pw"))
	if _, _, err := srv.Login(rnd, ke1, record, []byte("alice"), long); err == nil {
		t.Error("server accepted a 65536-byte identity")
	}
	ke2, _, _ := srv.Login(rnd, ke1, record, []byte("alice"), ids)
	if _, err := cl.Finish(ke2, c.KSF, long); err == nil {
		t.Error("client accepted a 65536-byte identity")
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("no entropy") }

func TestRandomnessFailure(t *testing.T) {
	c := QPChatTest()
	if _, err := c.GenerateServerSetup(failingReader{}); err == nil {
		t.Error("GenerateServerSetup without randomness succeeded")
	}
	if _, _, err := c.NewClientRegistration(failingReader{}, []byte("pw")); err == nil {
		t.Error("NewClientRegistration without randomness succeeded")
	}
	if _, _, err := c.NewClientLogin(failingReader{}, []byte("pw")); err == nil {
		t.Error("NewClientLogin without randomness succeeded")
	}
	r := register(t, c, seeded(11), "pw")
	_, ke1, _ := c.NewClientLogin(seeded(12), []byte("pw"))
	if _, _, err := r.srv.Login(failingReader{}, ke1, r.record, r.cid, Identities{}); err == nil {
		t.Error("Login without randomness succeeded")
	}
	cr, req, _ := c.NewClientRegistration(seeded(13), []byte("pw"))
	resp, _ := r.srv.RegistrationResponse(req, r.cid)
	if _, _, err := cr.Finish(failingReader{}, resp, c.KSF, Identities{}); err == nil {
		t.Error("ClientRegistration.Finish without randomness succeeded")
	}
}

func TestIncompleteConfig(t *testing.T) {
	for _, c := range []*Config{nil, {}, {OPRF: oprf.SuiteRistretto255, Hash: crypto.SHA512, Group: Ristretto255}} {
		if _, err := c.ParseKE1(make([]byte, 96)); !errors.Is(err, errConfig) {
			t.Errorf("ParseKE1 with config %v = %v", c, err)
		}
		if _, err := c.GenerateServerSetup(rand.Reader); !errors.Is(err, errConfig) {
			t.Errorf("GenerateServerSetup with config %v = %v", c, err)
		}
		if _, _, err := c.NewClientLogin(rand.Reader, nil); !errors.Is(err, errConfig) {
			t.Errorf("NewClientLogin with config %v = %v", c, err)
		}
	}
}

func TestServerSetup(t *testing.T) {
	for name, c := range testConfigs() {
		t.Run(name, func(t *testing.T) {
			setup, err := c.GenerateServerSetup(seeded(14))
			if err != nil {
				t.Fatal(err)
			}
			b := setup.Marshal()
			got, err := c.ParseServerSetup(b)
			if err != nil {
				t.Fatalf("ParseServerSetup: %v", err)
			}
			if !bytes.Equal(got.Marshal(), b) {
				t.Error("ServerSetup does not round-trip")
			}
			other, _ := c.GenerateServerSetup(seeded(15))
			mixed := &ServerSetup{OPRFSeed: setup.OPRFSeed, PrivateKey: setup.PrivateKey, PublicKey: other.PublicKey}
			if _, err := c.NewServer(mixed); err == nil {
				t.Error("NewServer accepted a public key of another private key")
			}
			zeroKey := &ServerSetup{OPRFSeed: setup.OPRFSeed, PrivateKey: make([]byte, len(setup.PrivateKey)), PublicKey: setup.PublicKey}
			if c.Group != X25519 { // every 32-byte string is an X25519 private key
				if _, err := c.NewServer(zeroKey); err == nil {
					t.Error("NewServer accepted a zero private key")
				}
			}
			if _, err := c.ParseServerSetup(b[1:]); err == nil {
				t.Error("ParseServerSetup accepted a short input")
			}
		})
	}
}
