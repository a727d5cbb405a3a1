package opaque

// This file holds the client side: registration (RFC 9807, Section 5.2:
// CreateRegistrationRequest, FinalizeRegistrationRequest) and login
// (Section 6.2: GenerateKE1 and GenerateKE3, with CreateCredentialRequest
// and RecoverCredentials of Section 6.3 and the 3DH client functions of
// Section 6.4.3).

import (
	"crypto/hmac"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"

	"github.com/cloudflare/circl/group"
	"github.com/cloudflare/circl/oprf"
)

// ErrServerAuthentication is returned by ClientLogin.Finish when the
// server's MAC in KE2 is wrong (ServerAuthenticationError of RFC 9807,
// Section 6.4.3): the envelope opened, so the password was right, but the
// server does not hold the matching private key or the messages were
// altered.
var ErrServerAuthentication = errors.New("opaque: server authentication failed")

var errFinished = errors.New("opaque: state already used")

// oprfClientState is what a client keeps between Blind and Finalize.
type oprfClientState struct {
	password []byte // a copy, wiped by wipe
	blind    group.Scalar
	fin      *oprf.FinalizeData
}

func (c *Config) startOPRF(rnd io.Reader, password []byte, blind group.Scalar) (oprfClientState, []byte, error) {
	if blind == nil {
		var err error
		if blind, err = randomScalar(c.OPRF.Group(), rnd); err != nil {
			return oprfClientState{}, nil, err
		}
	}
	st := oprfClientState{password: clone(password), blind: blind}
	fin, msg, err := c.blind(st.password, blind)
	if err != nil {
		st.wipe()
		return oprfClientState{}, nil, err
	}
	st.fin = fin
	return st, msg, nil
}

func (st *oprfClientState) wipe() {
	zero(st.password)
	if st.blind != nil {
		st.blind.SetUint64(0)
	}
	st.fin = nil
}

// ClientRegistration is the client's state between its RegistrationRequest
// and the server's RegistrationResponse. It is used once.
type ClientRegistration struct {
	cfg  *Config
	oprf oprfClientState
	done bool
}

// NewClientRegistration implements CreateRegistrationRequest (RFC 9807,
// Section 5.2.1): it blinds the password with a blind drawn from rnd. The
// request goes to the server with the credential identifier.
func (c *Config) NewClientRegistration(rnd io.Reader, password []byte) (*ClientRegistration, *RegistrationRequest, error) {
	return c.newClientRegistration(rnd, password, nil)
}

func (c *Config) newClientRegistration(rnd io.Reader, password []byte, blind group.Scalar) (*ClientRegistration, *RegistrationRequest, error) {
	if _, err := c.sizes(); err != nil {
		return nil, nil, err
	}
	st, msg, err := c.startOPRF(rnd, password, blind)
	if err != nil {
		return nil, nil, err
	}
	return &ClientRegistration{cfg: c, oprf: st}, &RegistrationRequest{BlindedMessage: msg}, nil
}

// Finish implements FinalizeRegistrationRequest (RFC 9807, Section 5.2.3)
// with the key-stretching function ksf (normally the Config's KSF; the
// client uploads ksf's MarshalBinary with the record) and the envelope
// nonce drawn from rnd. It returns the record to upload and the export key
// (Nh bytes, a secret known only to the client). The state is wiped
// whether or not it succeeds.
func (cr *ClientRegistration) Finish(rnd io.Reader, resp *RegistrationResponse, ksf KSF, ids Identities) (record *RegistrationRecord, exportKey []byte, err error) {
	return cr.finish(rnd, resp, ksf, ids, nil)
}

func (cr *ClientRegistration) finish(rnd io.Reader, resp *RegistrationResponse, ksf KSF, ids Identities, tr *trace) (*RegistrationRecord, []byte, error) {
	if cr.done {
		return nil, nil, errFinished
	}
	cr.done = true
	defer cr.oprf.wipe()
	c := cr.cfg
	if resp == nil {
		return nil, nil, fmt.Errorf("%w: no RegistrationResponse", ErrInvalidMessage)
	}
	if err := ids.check(); err != nil {
		return nil, nil, err
	}
	if err := c.checkRegistrationResponse(resp); err != nil {
		return nil, nil, err
	}
	oprfOutput, err := c.finalize(cr.oprf.fin, resp.EvaluatedMessage)
	if err != nil {
		return nil, nil, err
	}
	defer zero(oprfOutput)
	rwd, err := c.randomizedPassword(oprfOutput, ksf)
	if err != nil {
		return nil, nil, err
	}
	defer zero(rwd)
	env, clientPublicKey, maskingKey, exportKey, err := c.store(rnd, rwd, resp.ServerPublicKey, ids, tr)
	if err != nil {
		return nil, nil, err
	}
	if tr != nil {
		tr.randomizedPassword = clone(rwd)
		tr.clientPublicKey = clone(clientPublicKey)
	}
	return &RegistrationRecord{ClientPublicKey: clientPublicKey, MaskingKey: maskingKey, Envelope: env}, exportKey, nil
}

// ClientLogin is the client's state between KE1 and KE2. It is used once.
type ClientLogin struct {
	cfg          *Config
	oprf         oprfClientState
	clientSecret []byte // the ephemeral private key share
	ke1          []byte
	done         bool
}

// LoginResult is what a successful ClientLogin.Finish returns.
type LoginResult struct {
	// KE3 goes to the server, which answers with its own verdict.
	KE3 *KE3
	// SessionKey is the shared AKE session key (Nx bytes). The server has
	// the same key only once it has accepted KE3.
	SessionKey []byte
	// ExportKey is the export key of the registration (Nh bytes), known
	// only to the client.
	ExportKey []byte
	// ServerPublicKey is the server's long-term public key from the
	// envelope, which the MAC of KE2 proved the server holds.
	ServerPublicKey []byte
}

// NewClientLogin implements GenerateKE1 (RFC 9807, Section 6.2.1): it
// blinds the password and makes an ephemeral key share, drawing the blind,
// the client nonce and the key-share seed from rnd.
func (c *Config) NewClientLogin(rnd io.Reader, password []byte) (*ClientLogin, *KE1, error) {
	return c.newClientLogin(rnd, password, nil)
}

func (c *Config) newClientLogin(rnd io.Reader, password []byte, blind group.Scalar) (*ClientLogin, *KE1, error) {
	if _, err := c.sizes(); err != nil {
		return nil, nil, err
	}
	// CreateCredentialRequest (Section 6.3.2.1).
	st, blinded, err := c.startOPRF(rnd, password, blind)
	if err != nil {
		return nil, nil, err
	}
	// AuthClientStart (Section 6.4.3).
	nonce, err := readRandom(rnd, NonceSize)
	if err != nil {
		st.wipe()
		return nil, nil, err
	}
	seed, err := readRandom(rnd, SeedSize)
	if err != nil {
		st.wipe()
		return nil, nil, err
	}
	sk, pk, err := c.Group.deriveKeyPair(seed)
	zero(seed)
	if err != nil {
		st.wipe()
		return nil, nil, err
	}
	ke1 := &KE1{
		CredentialRequest: CredentialRequest{BlindedMessage: blinded},
		AuthRequest:       AuthRequest{ClientNonce: nonce, ClientPublicKeyshare: pk},
	}
	return &ClientLogin{cfg: c, oprf: st, clientSecret: sk, ke1: ke1.Marshal()}, ke1, nil
}

// Finish implements GenerateKE3 (RFC 9807, Section 6.2.3): it recovers the
// credentials from KE2 with the key-stretching function ksf the server sent
// (check it first with KSFBounds.Check), authenticates the server and
// returns KE3 with the session and export keys. A wrong password or an
// unknown user gives ErrEnvelopeRecovery; a bad server MAC gives
// ErrServerAuthentication. The state is wiped whether or not it succeeds.
func (cl *ClientLogin) Finish(ke2 *KE2, ksf KSF, ids Identities) (*LoginResult, error) {
	return cl.finish(ke2, ksf, ids, nil)
}

func (cl *ClientLogin) finish(ke2 *KE2, ksf KSF, ids Identities, tr *trace) (*LoginResult, error) {
	if cl.done {
		return nil, errFinished
	}
	cl.done = true
	defer cl.wipe()
	c := cl.cfg
	if ke2 == nil {
		return nil, fmt.Errorf("%w: no KE2", ErrInvalidMessage)
	}
	if err := ids.check(); err != nil {
		return nil, err
	}
	if err := c.checkKE2(ke2); err != nil {
		return nil, err
	}
	cr, ar := &ke2.CredentialResponse, &ke2.AuthResponse

	// RecoverCredentials (Section 6.3.2.3).
	oprfOutput, err := c.finalize(cl.oprf.fin, cr.EvaluatedMessage)
	if err != nil {
		return nil, err
	}
	defer zero(oprfOutput)
	rwd, err := c.randomizedPassword(oprfOutput, ksf)
	if err != nil {
		return nil, err
	}
	defer zero(rwd)
	maskingKey := c.maskingKey(rwd)
	pad := c.credentialResponsePad(maskingKey, cr.MaskingNonce)
	zero(maskingKey)
	plain := xor(pad, cr.MaskedResponse)
	zero(pad)
	npk := c.Group.PublicKeySize()
	serverPublicKey := plain[:npk]
	env := Envelope{Nonce: plain[npk : npk+NonceSize], AuthTag: plain[npk+NonceSize:]}
	clientPrivateKey, cc, exportKey, err := c.recover(rwd, serverPublicKey, env, ids, tr)
	if tr != nil {
		tr.randomizedPassword = clone(rwd)
	}
	if err != nil {
		return nil, err
	}
	defer zero(clientPrivateKey)

	// AuthClientFinalize (Section 6.4.3). The server public key came out of
	// the authenticated envelope; Group.dh still checks it.
	ikm, err := c.tripleDH(
		cl.clientSecret, ar.ServerPublicKeyshare,
		cl.clientSecret, cc.serverPublicKey,
		clientPrivateKey, ar.ServerPublicKeyshare)
	if err != nil {
		zero(exportKey)
		return nil, ErrServerAuthentication
	}
	preamble := c.preamble(cc.clientIdentity, cl.ke1, cc.serverIdentity, cr.Marshal(), ar.ServerNonce, ar.ServerPublicKeyshare)
	preambleHash := c.hash(preamble)
	keys := c.deriveKeys(ikm, preambleHash, tr)
	zero(ikm)
	expectedServerMAC := c.mac(keys.km2, preambleHash)
	if !hmac.Equal(expectedServerMAC, ar.ServerMAC) {
		keys.wipe()
		zero(exportKey)
		return nil, ErrServerAuthentication
	}
	// client_mac = MAC(Km3, Hash(concat(preamble, expected_server_mac)))
	clientMAC := c.mac(keys.km3, c.hash(preamble, expectedServerMAC))
	zero(keys.km2, keys.km3)
	return &LoginResult{
		KE3:             &KE3{ClientMAC: clientMAC},
		SessionKey:      keys.sessionKey,
		ExportKey:       exportKey,
		ServerPublicKey: clone(cc.serverPublicKey),
	}, nil
}

func (cl *ClientLogin) wipe() {
	cl.oprf.wipe()
	zero(cl.clientSecret)
}

// credentialResponsePad is
// Expand(masking_key, concat(masking_nonce, "CredentialResponsePad"), Npk + Nn + Nm)
// (RFC 9807, Section 6.3.2).
func (c *Config) credentialResponsePad(maskingKey, maskingNonce []byte) []byte {
	return c.expand(maskingKey, concat(maskingNonce, []byte(labelCredentialResponsePad)),
		c.Group.PublicKeySize()+NonceSize+c.Hash.Size())
}

// xor returns a ⊕ b for slices of equal length.
func xor(a, b []byte) []byte {
	out := make([]byte, len(a))
	if subtle.XORBytes(out, a, b) != len(a) || len(a) != len(b) {
		panic("opaque: internal error: xor of unequal lengths")
	}
	return out
}
