package opaque

import (
	"bytes"
	"crypto"
	"fmt"
	"sort"
	"testing"

	"github.com/cloudflare/circl/group"
	"github.com/cloudflare/circl/oprf"

	"qpchat/internal/vectors"
)

// rfc9807Vectors mirrors rfc9807-vectors.json in the opaque-test-vectors
// folder (see its README): the OPAQUE-3DH test vectors of RFC 9807.
type rfc9807Vectors struct {
	Source  string          `json:"source"`
	Vectors []rfc9807Vector `json:"vectors"`
}

type rfc9807Vector struct {
	Name          string              `json:"name"`
	Kind          string              `json:"kind"`
	Number        int                 `json:"number"`
	ConfigID      string              `json:"config_id"`
	Heading       string              `json:"rfc9807_heading"`
	Config        vectorConfig        `json:"config"`
	Inputs        vectorInputs        `json:"inputs"`
	Intermediates vectorIntermediates `json:"intermediates"`
	Outputs       vectorOutputs       `json:"outputs"`
	ExtraFromPOC  *vectorExtra        `json:"extra_intermediates_from_poc"`
}

type vectorConfig struct {
	OPRF    string      `json:"OPRF"`
	Hash    string      `json:"Hash"`
	KSF     string      `json:"KSF"`
	KDF     string      `json:"KDF"`
	MAC     string      `json:"MAC"`
	Group   string      `json:"Group"`
	Context vectors.Hex `json:"Context"`
	Nh      int         `json:"Nh"`
	Npk     int         `json:"Npk"`
	Nsk     int         `json:"Nsk"`
	Nm      int         `json:"Nm"`
	Nx      int         `json:"Nx"`
	Nok     int         `json:"Nok"`
}

// vectorInputs is the union of the real and the fake vectors' inputs.
type vectorInputs struct {
	ClientIdentity       vectors.Hex `json:"client_identity"`
	ServerIdentity       vectors.Hex `json:"server_identity"`
	OPRFSeed             vectors.Hex `json:"oprf_seed"`
	CredentialIdentifier vectors.Hex `json:"credential_identifier"`
	Password             vectors.Hex `json:"password"`
	EnvelopeNonce        vectors.Hex `json:"envelope_nonce"`
	MaskingNonce         vectors.Hex `json:"masking_nonce"`
	ServerPrivateKey     vectors.Hex `json:"server_private_key"`
	ServerPublicKey      vectors.Hex `json:"server_public_key"`
	ServerNonce          vectors.Hex `json:"server_nonce"`
	ClientNonce          vectors.Hex `json:"client_nonce"`
	ClientKeyshareSeed   vectors.Hex `json:"client_keyshare_seed"`
	ServerKeyshareSeed   vectors.Hex `json:"server_keyshare_seed"`
	BlindRegistration    vectors.Hex `json:"blind_registration"`
	BlindLogin           vectors.Hex `json:"blind_login"`
	ClientPrivateKey     vectors.Hex `json:"client_private_key"`
	ClientPublicKey      vectors.Hex `json:"client_public_key"`
	MaskingKey           vectors.Hex `json:"masking_key"`
	KE1                  vectors.Hex `json:"KE1"`
}

type vectorIntermediates struct {
	ClientPublicKey    vectors.Hex `json:"client_public_key"`
	AuthKey            vectors.Hex `json:"auth_key"`
	RandomizedPassword vectors.Hex `json:"randomized_password"`
	Envelope           vectors.Hex `json:"envelope"`
	HandshakeSecret    vectors.Hex `json:"handshake_secret"`
	ServerMACKey       vectors.Hex `json:"server_mac_key"`
	ClientMACKey       vectors.Hex `json:"client_mac_key"`
	OPRFKey            vectors.Hex `json:"oprf_key"`
}

type vectorOutputs struct {
	RegistrationRequest  vectors.Hex `json:"registration_request"`
	RegistrationResponse vectors.Hex `json:"registration_response"`
	RegistrationUpload   vectors.Hex `json:"registration_upload"`
	KE1                  vectors.Hex `json:"KE1"`
	KE2                  vectors.Hex `json:"KE2"`
	KE3                  vectors.Hex `json:"KE3"`
	ExportKey            vectors.Hex `json:"export_key"`
	SessionKey           vectors.Hex `json:"session_key"`
}

type vectorExtra struct {
	MaskingKey vectors.Hex `json:"masking_key"`
}

func loadRFC9807Vectors(t testing.TB) []rfc9807Vector {
	t.Helper()
	var v rfc9807Vectors
	vectors.Load(t, "QPCHAT_OPAQUE_VECTORS", "opaque-test-vectors", "rfc9807-vectors.json", &v)
	return v.Vectors
}

// vectorConfigOf builds the Config a vector names, failing on any name or
// size this package does not know.
func vectorConfigOf(t *testing.T, vc vectorConfig) *Config {
	t.Helper()
	suite, err := oprf.GetSuite(vc.OPRF)
	if err != nil {
		t.Fatalf("unknown OPRF %q", vc.OPRF)
	}
	hashes := map[string]crypto.Hash{"SHA256": crypto.SHA256, "SHA512": crypto.SHA512}
	h, ok := hashes[vc.Hash]
	if !ok {
		t.Fatalf("unknown Hash %q", vc.Hash)
	}
	if vc.KDF != "HKDF-"+vc.Hash || vc.MAC != "HMAC-"+vc.Hash {
		t.Fatalf("unsupported KDF %q / MAC %q with Hash %q", vc.KDF, vc.MAC, vc.Hash)
	}
	groups := map[string]Group{"ristretto255": Ristretto255, "curve25519": X25519, "P256_XMD:SHA-256_SSWU_RO_": P256}
	g, ok := groups[vc.Group]
	if !ok {
		t.Fatalf("unknown Group %q", vc.Group)
	}
	if vc.KSF != "Identity" {
		t.Fatalf("unknown KSF %q", vc.KSF)
	}
	c := &Config{OPRF: suite, Hash: h, Group: g, KSF: IdentityKSF{}, Context: vc.Context}
	s, err := c.sizes()
	if err != nil {
		t.Fatal(err)
	}
	got := [6]int{s.nh, s.npk, s.nsk, s.nh, s.nh, s.nok}
	want := [6]int{vc.Nh, vc.Npk, vc.Nsk, vc.Nm, vc.Nx, vc.Nok}
	if got != want {
		t.Fatalf("sizes (Nh, Npk, Nsk, Nm, Nx, Nok) = %v, want %v", got, want)
	}
	return c
}

// TestRFC9807Vectors checks every field of every RFC 9807 test vector:
// the real vectors run registration and login end to end with the
// vector's randomness and compare every output and intermediate; the fake
// vectors answer KE1 from the given fake record and compare KE2.
func TestRFC9807Vectors(t *testing.T) {
	all := loadRFC9807Vectors(t)
	if len(all) != 9 {
		t.Errorf("file holds %d vectors, want 9", len(all))
	}
	passed := map[string]int{}
	total := map[string]int{}
	for _, v := range all {
		total[v.ConfigID]++
		ok := t.Run(v.Name, func(t *testing.T) {
			c := vectorConfigOf(t, v.Config)
			switch v.Kind {
			case "real":
				testRealVector(t, c, v)
			case "fake":
				testFakeVector(t, c, v)
			default:
				t.Fatalf("unknown kind %q", v.Kind)
			}
		})
		if ok {
			passed[v.ConfigID]++
		}
	}
	ids := make([]string, 0, len(total))
	for id := range total {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		t.Logf("rfc9807-vectors.json, %s: %d/%d vectors passed", id, passed[id], total[id])
	}
}

// need fails the test when a field the vector kind requires is missing.
func need(t *testing.T, fields map[string][]byte) {
	t.Helper()
	for name, b := range fields {
		if b == nil {
			t.Fatalf("vector lacks %s", name)
		}
	}
}

func check(t *testing.T, name string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("%s = %x, want %x", name, got, want)
	}
}

func decodeBlind(t *testing.T, c *Config, b []byte) group.Scalar {
	t.Helper()
	s := c.OPRF.Group().NewScalar()
	if err := s.UnmarshalBinary(b); err != nil {
		t.Fatalf("blind %x: %v", b, err)
	}
	return s
}

func testRealVector(t *testing.T, c *Config, v rfc9807Vector) {
	in, im, out := v.Inputs, v.Intermediates, v.Outputs
	need(t, map[string][]byte{
		"oprf_seed": in.OPRFSeed, "credential_identifier": in.CredentialIdentifier, "password": in.Password,
		"envelope_nonce": in.EnvelopeNonce, "masking_nonce": in.MaskingNonce, "server_private_key": in.ServerPrivateKey,
		"server_public_key": in.ServerPublicKey, "server_nonce": in.ServerNonce, "client_nonce": in.ClientNonce,
		"client_keyshare_seed": in.ClientKeyshareSeed, "server_keyshare_seed": in.ServerKeyshareSeed,
		"blind_registration": in.BlindRegistration, "blind_login": in.BlindLogin,
		"intermediates.client_public_key": im.ClientPublicKey, "auth_key": im.AuthKey,
		"randomized_password": im.RandomizedPassword, "envelope": im.Envelope, "handshake_secret": im.HandshakeSecret,
		"server_mac_key": im.ServerMACKey, "client_mac_key": im.ClientMACKey, "oprf_key": im.OPRFKey,
		"registration_request": out.RegistrationRequest, "registration_response": out.RegistrationResponse,
		"registration_upload": out.RegistrationUpload, "outputs.KE1": out.KE1, "KE2": out.KE2, "KE3": out.KE3,
		"export_key": out.ExportKey, "session_key": out.SessionKey,
	})
	if v.ExtraFromPOC == nil || v.ExtraFromPOC.MaskingKey == nil {
		t.Fatal("vector lacks extra_intermediates_from_poc.masking_key")
	}
	if (in.ClientIdentity == nil) != (in.ServerIdentity == nil) {
		t.Fatal("vector has only one of client_identity and server_identity")
	}
	ids := Identities{Client: in.ClientIdentity, Server: in.ServerIdentity}

	// Setup.
	srv, err := c.NewServer(&ServerSetup{OPRFSeed: in.OPRFSeed, PrivateKey: in.ServerPrivateKey, PublicKey: in.ServerPublicKey})
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}

	// Registration.
	cReg, req, err := c.newClientRegistration(nil, in.Password, decodeBlind(t, c, in.BlindRegistration))
	if err != nil {
		t.Fatalf("CreateRegistrationRequest: %v", err)
	}
	check(t, "registration_request", req.Marshal(), out.RegistrationRequest)
	req, err = c.ParseRegistrationRequest(out.RegistrationRequest)
	if err != nil {
		t.Fatalf("ParseRegistrationRequest: %v", err)
	}
	var srvReg trace
	resp, err := srv.registrationResponse(req, in.CredentialIdentifier, &srvReg)
	if err != nil {
		t.Fatalf("CreateRegistrationResponse: %v", err)
	}
	check(t, "registration_response", resp.Marshal(), out.RegistrationResponse)
	check(t, "oprf_key", srvReg.oprfKey, im.OPRFKey)
	resp, err = c.ParseRegistrationResponse(out.RegistrationResponse)
	if err != nil {
		t.Fatalf("ParseRegistrationResponse: %v", err)
	}
	var cliReg trace
	record, exportKey, err := cReg.finish(bytes.NewReader(in.EnvelopeNonce), resp, IdentityKSF{}, ids, &cliReg)
	if err != nil {
		t.Fatalf("FinalizeRegistrationRequest: %v", err)
	}
	check(t, "registration_upload", record.Marshal(), out.RegistrationUpload)
	check(t, "envelope", record.Envelope.Marshal(), im.Envelope)
	check(t, "client_public_key", record.ClientPublicKey, im.ClientPublicKey)
	check(t, "registration export_key", exportKey, out.ExportKey)
	check(t, "registration auth_key", cliReg.authKey, im.AuthKey)
	check(t, "registration randomized_password", cliReg.randomizedPassword, im.RandomizedPassword)
	check(t, "registration masking_key", cliReg.maskingKey, v.ExtraFromPOC.MaskingKey)
	check(t, "registration record masking_key", record.MaskingKey, v.ExtraFromPOC.MaskingKey)
	record, err = c.ParseRegistrationRecord(out.RegistrationUpload)
	if err != nil {
		t.Fatalf("ParseRegistrationRecord: %v", err)
	}

	// Login.
	cLogin, ke1, err := c.newClientLogin(bytes.NewReader(concat(in.ClientNonce, in.ClientKeyshareSeed)), in.Password, decodeBlind(t, c, in.BlindLogin))
	if err != nil {
		t.Fatalf("GenerateKE1: %v", err)
	}
	check(t, "KE1", ke1.Marshal(), out.KE1)
	ke1, err = c.ParseKE1(out.KE1)
	if err != nil {
		t.Fatalf("ParseKE1: %v", err)
	}
	var srvLogin trace
	srvRand := bytes.NewReader(concat(in.MaskingNonce, in.ServerNonce, in.ServerKeyshareSeed))
	ke2, sLogin, err := srv.login(srvRand, ke1, record, in.CredentialIdentifier, ids, false, &srvLogin)
	if err != nil {
		t.Fatalf("GenerateKE2: %v", err)
	}
	check(t, "KE2", ke2.Marshal(), out.KE2)
	check(t, "server oprf_key", srvLogin.oprfKey, im.OPRFKey)
	check(t, "server handshake_secret", srvLogin.handshakeSecret, im.HandshakeSecret)
	check(t, "server server_mac_key", srvLogin.km2, im.ServerMACKey)
	check(t, "server client_mac_key", srvLogin.km3, im.ClientMACKey)
	ke2, err = c.ParseKE2(out.KE2)
	if err != nil {
		t.Fatalf("ParseKE2: %v", err)
	}
	var cliLogin trace
	res, err := cLogin.finish(ke2, IdentityKSF{}, ids, &cliLogin)
	if err != nil {
		t.Fatalf("GenerateKE3: %v", err)
	}
	check(t, "KE3", res.KE3.Marshal(), out.KE3)
	check(t, "client session_key", res.SessionKey, out.SessionKey)
	check(t, "login export_key", res.ExportKey, out.ExportKey)
	check(t, "login server_public_key", res.ServerPublicKey, in.ServerPublicKey)
	check(t, "login client_public_key", cliLogin.clientPublicKey, im.ClientPublicKey)
	check(t, "login auth_key", cliLogin.authKey, im.AuthKey)
	check(t, "login randomized_password", cliLogin.randomizedPassword, im.RandomizedPassword)
	check(t, "client handshake_secret", cliLogin.handshakeSecret, im.HandshakeSecret)
	check(t, "client server_mac_key", cliLogin.km2, im.ServerMACKey)
	check(t, "client client_mac_key", cliLogin.km3, im.ClientMACKey)
	ke3, err := c.ParseKE3(out.KE3)
	if err != nil {
		t.Fatalf("ParseKE3: %v", err)
	}
	sessionKey, err := sLogin.Finish(ke3)
	if err != nil {
		t.Fatalf("ServerFinish: %v", err)
	}
	check(t, "server session_key", sessionKey, out.SessionKey)

	// Every parsed message re-encodes to the vector's bytes.
	check(t, "re-encoded registration_request", req.Marshal(), out.RegistrationRequest)
	check(t, "re-encoded registration_response", resp.Marshal(), out.RegistrationResponse)
	check(t, "re-encoded registration_upload", record.Marshal(), out.RegistrationUpload)
	check(t, "re-encoded KE1", ke1.Marshal(), out.KE1)
	check(t, "re-encoded KE2", ke2.Marshal(), out.KE2)
	check(t, "re-encoded KE3", ke3.Marshal(), out.KE3)
}

func testFakeVector(t *testing.T, c *Config, v rfc9807Vector) {
	in, out := v.Inputs, v.Outputs
	need(t, map[string][]byte{
		"client_identity": in.ClientIdentity, "server_identity": in.ServerIdentity, "oprf_seed": in.OPRFSeed,
		"credential_identifier": in.CredentialIdentifier, "masking_nonce": in.MaskingNonce,
		"client_private_key": in.ClientPrivateKey, "client_public_key": in.ClientPublicKey,
		"server_private_key": in.ServerPrivateKey, "server_public_key": in.ServerPublicKey,
		"server_nonce": in.ServerNonce, "client_keyshare_seed": in.ClientKeyshareSeed,
		"server_keyshare_seed": in.ServerKeyshareSeed, "masking_key": in.MaskingKey, "inputs.KE1": in.KE1,
		"KE2": out.KE2,
	})
	if v.ExtraFromPOC != nil {
		t.Fatal("fake vector with extra intermediates")
	}
	if fmt.Sprint(v.Intermediates) != fmt.Sprint(vectorIntermediates{}) {
		t.Fatal("fake vector with intermediates")
	}
	ids := Identities{Client: in.ClientIdentity, Server: in.ServerIdentity}

	// The fake record's key pair is consistent (client_private_key is
	// given only for completeness).
	pk, err := c.Group.publicKey(in.ClientPrivateKey)
	if err != nil {
		t.Fatalf("client_private_key: %v", err)
	}
	check(t, "public key of client_private_key", pk, in.ClientPublicKey)

	// KE1 decodes, and its key share is the one client_keyshare_seed gives.
	ke1, err := c.ParseKE1(in.KE1)
	if err != nil {
		t.Fatalf("ParseKE1: %v", err)
	}
	_, keyshare, err := c.Group.deriveKeyPair(in.ClientKeyshareSeed)
	if err != nil {
		t.Fatal(err)
	}
	check(t, "KE1 client_public_keyshare", ke1.AuthRequest.ClientPublicKeyshare, keyshare)
	check(t, "re-encoded KE1", ke1.Marshal(), in.KE1)

	srv, err := c.NewServer(&ServerSetup{OPRFSeed: in.OPRFSeed, PrivateKey: in.ServerPrivateKey, PublicKey: in.ServerPublicKey})
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	s := c.mustSizes()
	record := &RegistrationRecord{
		ClientPublicKey: in.ClientPublicKey,
		MaskingKey:      in.MaskingKey,
		Envelope:        Envelope{Nonce: make([]byte, NonceSize), AuthTag: make([]byte, s.nh)},
	}
	srvRand := bytes.NewReader(concat(in.MaskingNonce, in.ServerNonce, in.ServerKeyshareSeed))
	ke2, sLogin, err := srv.login(srvRand, ke1, record, in.CredentialIdentifier, ids, true, nil)
	if err != nil {
		t.Fatalf("GenerateKE2 with the fake record: %v", err)
	}
	check(t, "KE2", ke2.Marshal(), out.KE2)
	if len(out.KE2) != c.KE2Size() {
		t.Errorf("fake KE2 is %d bytes, want %d", len(out.KE2), c.KE2Size())
	}
	parsed, err := c.ParseKE2(out.KE2)
	if err != nil {
		t.Fatalf("ParseKE2: %v", err)
	}
	check(t, "re-encoded KE2", parsed.Marshal(), out.KE2)
	if _, err := sLogin.Finish(&KE3{ClientMAC: make([]byte, s.nh)}); err != ErrClientAuthentication {
		t.Errorf("fake login Finish = %v, want ErrClientAuthentication", err)
	}
}
