package opaque

// This file holds the server side: its long-term setup (RFC 9807,
// Section 3.1), the registration response (Section 5.2.2), the login
// response KE2 (Section 6.2.2, with CreateCredentialResponse of Section 6.3
// and AuthServerRespond of Section 6.4.4), fake records for unknown users
// (Section 10.9) and ServerFinish (Section 6.2.4).

import (
	"bytes"
	"crypto/hmac"
	"errors"
	"fmt"
	"io"
)

// ErrClientAuthentication is returned by ServerLogin.Finish when KE3 does
// not carry the expected MAC (ClientAuthenticationError of RFC 9807,
// Section 6.4.4), and always for a login answered from a fake record.
var ErrClientAuthentication = errors.New("opaque: client authentication failed")

// Labels for the fake records of unknown users (RFC 9807, Section 10.9);
// qpchat's own, outside the RFC. The fake-record key is an Expand of the
// OPRF seed whose info does not end in "OprfKey", so it is independent of
// every per-user OPRF key seed (credential_identifier ‖ "OprfKey"); the
// two per-user infos end differently ("…tKey", "…gKey"), so no credential
// identifier makes one collide with the other.
const (
	infoFakeRecordKey   = "OPAQUE-qpchat-FakeRecordKey"
	labelFakeClientKey  = "FakeClientKey"
	labelFakeMaskingKey = "FakeMaskingKey"
)

// ServerSetup is the server's long-term OPAQUE state (RFC 9807,
// Section 3.1). Both secret fields must be kept confidential and stable:
// changing the OPRF seed invalidates every record.
type ServerSetup struct {
	// OPRFSeed is oprf_seed, Nh random bytes. Secret.
	OPRFSeed []byte
	// PrivateKey is server_private_key, Nsk bytes. Secret.
	PrivateKey []byte
	// PublicKey is server_public_key, Npk bytes.
	PublicKey []byte
}

// GenerateServerSetup makes a new ServerSetup from rnd: the key pair with
// DeriveDiffieHellmanKeyPair from an Nseed-byte seed, then the OPRF seed.
func (c *Config) GenerateServerSetup(rnd io.Reader) (*ServerSetup, error) {
	s, err := c.sizes()
	if err != nil {
		return nil, err
	}
	seed, err := readRandom(rnd, SeedSize)
	if err != nil {
		return nil, err
	}
	defer zero(seed)
	sk, pk, err := c.Group.deriveKeyPair(seed)
	if err != nil {
		return nil, err
	}
	oprfSeed, err := readRandom(rnd, s.nh)
	if err != nil {
		return nil, err
	}
	return &ServerSetup{OPRFSeed: oprfSeed, PrivateKey: sk, PublicKey: pk}, nil
}

// Marshal encodes the setup as OPRFSeed ‖ PrivateKey ‖ PublicKey
// (Nh + Nsk + Npk bytes). The result is secret.
func (s *ServerSetup) Marshal() []byte { return concat(s.OPRFSeed, s.PrivateKey, s.PublicKey) }

// ParseServerSetup decodes a ServerSetup and checks that the public key
// belongs to the private key.
func (c *Config) ParseServerSetup(b []byte) (*ServerSetup, error) {
	s, err := c.sizes()
	if err != nil {
		return nil, err
	}
	r, err := start("ServerSetup", b, s.nh+s.nsk+s.npk)
	if err != nil {
		return nil, err
	}
	setup := &ServerSetup{OPRFSeed: r.next(s.nh), PrivateKey: r.next(s.nsk), PublicKey: r.next(s.npk)}
	if err := c.checkServerSetup(setup); err != nil {
		return nil, err
	}
	return setup, nil
}

func (c *Config) checkServerSetup(setup *ServerSetup) error {
	s, err := c.sizes()
	if err != nil {
		return err
	}
	if setup == nil || len(setup.OPRFSeed) != s.nh {
		return fmt.Errorf("%w: ServerSetup OPRF seed length", ErrInvalidMessage)
	}
	if err := c.checkPublicKey("server_public_key", setup.PublicKey); err != nil {
		return err
	}
	pk, err := c.Group.publicKey(setup.PrivateKey)
	if err != nil {
		return fmt.Errorf("%w: server_private_key: %v", ErrInvalidMessage, err)
	}
	if !bytes.Equal(pk, setup.PublicKey) {
		return fmt.Errorf("%w: server public key does not match the private key", ErrInvalidMessage)
	}
	return nil
}

// Server answers registrations and logins with one ServerSetup. Its methods
// only read it, so one Server may serve many goroutines.
type Server struct {
	cfg        *Config
	oprfSeed   []byte
	privateKey []byte
	publicKey  []byte
	// fakeKey derives the fake records of unknown users.
	fakeKey []byte
}

// NewServer checks setup and returns a Server holding a copy of it.
func (c *Config) NewServer(setup *ServerSetup) (*Server, error) {
	if err := c.checkServerSetup(setup); err != nil {
		return nil, err
	}
	return &Server{
		cfg:        c,
		oprfSeed:   clone(setup.OPRFSeed),
		privateKey: clone(setup.PrivateKey),
		publicKey:  clone(setup.PublicKey),
		fakeKey:    c.expand(setup.OPRFSeed, []byte(infoFakeRecordKey), c.Hash.Size()),
	}, nil
}

// PublicKey returns server_public_key.
func (s *Server) PublicKey() []byte { return clone(s.publicKey) }

// RegistrationResponse implements CreateRegistrationResponse (RFC 9807,
// Section 5.2.2) for the user whose credential identifier is credentialID
// (qpchat: the normalised user name). It checks the blinded element.
func (s *Server) RegistrationResponse(req *RegistrationRequest, credentialID []byte) (*RegistrationResponse, error) {
	return s.registrationResponse(req, credentialID, nil)
}

func (s *Server) registrationResponse(req *RegistrationRequest, credentialID []byte, tr *trace) (*RegistrationResponse, error) {
	if req == nil {
		return nil, fmt.Errorf("%w: no RegistrationRequest", ErrInvalidMessage)
	}
	evaluated, err := s.evaluate(req.BlindedMessage, credentialID, tr)
	if err != nil {
		return nil, err
	}
	return &RegistrationResponse{EvaluatedMessage: evaluated, ServerPublicKey: clone(s.publicKey)}, nil
}

// evaluate derives the user's OPRF key and evaluates the blinded element.
func (s *Server) evaluate(blindedMessage, credentialID []byte, tr *trace) ([]byte, error) {
	key, err := s.cfg.oprfKey(s.oprfSeed, credentialID)
	if err != nil {
		return nil, err
	}
	if tr != nil {
		if tr.oprfKey, err = key.MarshalBinary(); err != nil {
			return nil, err
		}
	}
	return s.cfg.blindEvaluate(key, blindedMessage)
}

// ServerLogin is the server's state between KE2 and KE3. It is used once.
type ServerLogin struct {
	expectedClientMAC []byte
	sessionKey        []byte
	fake              bool
	done              bool
}

// Login implements GenerateKE2 (RFC 9807, Section 6.2.2) for a registered
// user: the record stored for credentialID. Nonces and the key-share seed
// are drawn from rnd. The caller sends KE2 together with the KSF stored with
// the record, and keeps the ServerLogin for KE3.
func (s *Server) Login(rnd io.Reader, ke1 *KE1, record *RegistrationRecord, credentialID []byte, ids Identities) (*KE2, *ServerLogin, error) {
	if record == nil {
		return nil, nil, fmt.Errorf("%w: no RegistrationRecord", ErrInvalidMessage)
	}
	return s.login(rnd, ke1, record, credentialID, ids, false, nil)
}

// LoginUnknown answers KE1 for a credential identifier without a record,
// as RFC 9807, Section 10.9 asks: it runs Login on a fake record derived
// from the OPRF seed and credentialID, so the answer has the size and form
// of a real one, and repeated attempts for the same name see the same OPRF
// key, client public key and masking key. The caller sends the Config's
// KSF with it, as for users whose record uses the current defaults. The
// returned ServerLogin refuses every KE3.
func (s *Server) LoginUnknown(rnd io.Reader, ke1 *KE1, credentialID []byte, ids Identities) (*KE2, *ServerLogin, error) {
	record, err := s.fakeRecord(credentialID)
	if err != nil {
		return nil, nil, err
	}
	return s.login(rnd, ke1, record, credentialID, ids, true, nil)
}

// fakeRecord derives the fake record of credentialID: a client public key
// from DeriveDiffieHellmanKeyPair of a derived seed, a derived masking key
// and an all-zero envelope (RFC 9807, Section 10.9). Nobody knows a
// password that opens it.
func (s *Server) fakeRecord(credentialID []byte) (*RegistrationRecord, error) {
	c := s.cfg
	seed := c.expand(s.fakeKey, concat(credentialID, []byte(labelFakeClientKey)), SeedSize)
	defer zero(seed)
	sk, pk, err := c.Group.deriveKeyPair(seed)
	if err != nil {
		return nil, err
	}
	zero(sk)
	return &RegistrationRecord{
		ClientPublicKey: pk,
		MaskingKey:      c.expand(s.fakeKey, concat(credentialID, []byte(labelFakeMaskingKey)), c.Hash.Size()),
		Envelope:        Envelope{Nonce: make([]byte, NonceSize), AuthTag: make([]byte, c.Hash.Size())},
	}, nil
}

func (s *Server) login(rnd io.Reader, ke1 *KE1, record *RegistrationRecord, credentialID []byte, ids Identities, fake bool, tr *trace) (*KE2, *ServerLogin, error) {
	c := s.cfg
	if ke1 == nil {
		return nil, nil, fmt.Errorf("%w: no KE1", ErrInvalidMessage)
	}
	if err := ids.check(); err != nil {
		return nil, nil, err
	}
	if err := c.checkKE1(ke1); err != nil {
		return nil, nil, err
	}
	if err := c.checkRecord(record); err != nil {
		return nil, nil, err
	}

	// CreateCredentialResponse (Section 6.3.2.2).
	evaluated, err := s.evaluate(ke1.CredentialRequest.BlindedMessage, credentialID, tr)
	if err != nil {
		return nil, nil, err
	}
	maskingNonce, err := readRandom(rnd, NonceSize)
	if err != nil {
		return nil, nil, err
	}
	pad := c.credentialResponsePad(record.MaskingKey, maskingNonce)
	masked := xor(pad, concat(s.publicKey, record.Envelope.Nonce, record.Envelope.AuthTag))
	zero(pad)
	cr := CredentialResponse{EvaluatedMessage: evaluated, MaskingNonce: maskingNonce, MaskedResponse: masked}

	// AuthServerRespond (Section 6.4.4).
	serverNonce, err := readRandom(rnd, NonceSize)
	if err != nil {
		return nil, nil, err
	}
	seed, err := readRandom(rnd, SeedSize)
	if err != nil {
		return nil, nil, err
	}
	serverSecret, serverKeyshare, err := c.Group.deriveKeyPair(seed)
	zero(seed)
	if err != nil {
		return nil, nil, err
	}
	defer zero(serverSecret)
	cc := newCleartextCredentials(s.publicKey, record.ClientPublicKey, ids)
	preamble := c.preamble(cc.clientIdentity, ke1.Marshal(), cc.serverIdentity, cr.Marshal(), serverNonce, serverKeyshare)
	preambleHash := c.hash(preamble)
	clientKeyshare := ke1.AuthRequest.ClientPublicKeyshare
	ikm, err := c.tripleDH(
		serverSecret, clientKeyshare,
		s.privateKey, clientKeyshare,
		serverSecret, record.ClientPublicKey)
	if err != nil {
		return nil, nil, err
	}
	keys := c.deriveKeys(ikm, preambleHash, tr)
	zero(ikm)
	serverMAC := c.mac(keys.km2, preambleHash)
	expectedClientMAC := c.mac(keys.km3, c.hash(preamble, serverMAC))
	zero(keys.km2, keys.km3)

	ke2 := &KE2{
		CredentialResponse: cr,
		AuthResponse:       AuthResponse{ServerNonce: serverNonce, ServerPublicKeyshare: serverKeyshare, ServerMAC: serverMAC},
	}
	return ke2, &ServerLogin{expectedClientMAC: expectedClientMAC, sessionKey: keys.sessionKey, fake: fake}, nil
}

// Finish implements ServerFinish (RFC 9807, Section 6.2.4): it compares
// the client's MAC in constant time and returns the session key, or
// ErrClientAuthentication (always, for a fake record). The state is wiped
// either way.
func (sl *ServerLogin) Finish(ke3 *KE3) ([]byte, error) {
	if sl.done {
		return nil, errFinished
	}
	sl.done = true
	defer zero(sl.expectedClientMAC)
	if ke3 == nil || !hmac.Equal(ke3.ClientMAC, sl.expectedClientMAC) || sl.fake {
		zero(sl.sessionKey)
		return nil, ErrClientAuthentication
	}
	key := sl.sessionKey
	sl.sessionKey = nil
	return key, nil
}
