package opaque

// This file holds the protocol messages of RFC 9807, Sections 4.1.1, 5.1,
// 6.1, 6.3.1 and 6.4, their encodings (the concatenation of fixed-length
// fields) and their parsers. A parser checks the exact length and every
// group element and public key in the message (length, canonical
// encoding, not the identity); the values it returns never alias the
// input.

import (
	"bytes"
	"errors"
	"fmt"
)

// ErrInvalidMessage is returned (wrapped) by every Parse function for bytes
// that are not a valid message of the configuration.
var ErrInvalidMessage = errors.New("opaque: invalid message")

// Envelope is the envelope of RFC 9807, Section 4.1.1: Nn + Nm bytes.
type Envelope struct {
	Nonce   []byte // envelope_nonce, Nn bytes
	AuthTag []byte // auth_tag, Nm bytes
}

// RegistrationRequest is the client's first registration message
// (RFC 9807, Section 5.1): Noe bytes.
type RegistrationRequest struct {
	BlindedMessage []byte // blinded_message, a serialized OPRF element
}

// RegistrationResponse is the server's registration message (RFC 9807,
// Section 5.1): Noe + Npk bytes.
type RegistrationResponse struct {
	EvaluatedMessage []byte // evaluated_message, a serialized OPRF element
	ServerPublicKey  []byte // server_public_key, Npk bytes
}

// RegistrationRecord is what the client uploads and the server stores
// (RFC 9807, Section 5.1): Npk + Nh + Nn + Nm bytes. It holds no secret
// that lets the server log in, but its masking key keeps the envelope away
// from anyone who does not know the password; keep it confidential.
type RegistrationRecord struct {
	ClientPublicKey []byte // client_public_key, Npk bytes
	MaskingKey      []byte // masking_key, Nh bytes
	Envelope        Envelope
}

// CredentialRequest is the OPRF part of KE1 (RFC 9807, Section 6.3.1).
type CredentialRequest struct {
	BlindedMessage []byte // blinded_message, Noe bytes
}

// CredentialResponse is the OPRF and envelope part of KE2 (RFC 9807,
// Section 6.3.1).
type CredentialResponse struct {
	EvaluatedMessage []byte // evaluated_message, Noe bytes
	MaskingNonce     []byte // masking_nonce, Nn bytes
	MaskedResponse   []byte // masked_response, Npk + Nn + Nm bytes
}

// AuthRequest is the AKE part of KE1 (RFC 9807, Section 6.4).
type AuthRequest struct {
	ClientNonce          []byte // client_nonce, Nn bytes
	ClientPublicKeyshare []byte // client_public_keyshare, Npk bytes
}

// AuthResponse is the AKE part of KE2 (RFC 9807, Section 6.4).
type AuthResponse struct {
	ServerNonce          []byte // server_nonce, Nn bytes
	ServerPublicKeyshare []byte // server_public_keyshare, Npk bytes
	ServerMAC            []byte // server_mac, Nm bytes
}

// KE1 is the client's first login message (RFC 9807, Section 6.1):
// Noe + Nn + Npk bytes.
type KE1 struct {
	CredentialRequest CredentialRequest
	AuthRequest       AuthRequest
}

// KE2 is the server's login message (RFC 9807, Section 6.1):
// Noe + Nn + (Npk + Nn + Nm) + Nn + Npk + Nm bytes. A response built from a
// fake record (Server.LoginUnknown) has the same size and form.
type KE2 struct {
	CredentialResponse CredentialResponse
	AuthResponse       AuthResponse
}

// KE3 is the client's final login message (RFC 9807, Section 6.1): Nm bytes.
type KE3 struct {
	ClientMAC []byte // client_mac
}

// Marshal returns the message bytes.
func (m *RegistrationRequest) Marshal() []byte { return bytes.Clone(m.BlindedMessage) }

// Marshal returns the message bytes.
func (m *RegistrationResponse) Marshal() []byte {
	return concat(m.EvaluatedMessage, m.ServerPublicKey)
}

// Marshal returns the record bytes.
func (m *RegistrationRecord) Marshal() []byte {
	return concat(m.ClientPublicKey, m.MaskingKey, m.Envelope.Nonce, m.Envelope.AuthTag)
}

// Marshal returns the envelope bytes.
func (e *Envelope) Marshal() []byte { return concat(e.Nonce, e.AuthTag) }

// Marshal returns the message bytes.
func (m *CredentialResponse) Marshal() []byte {
	return concat(m.EvaluatedMessage, m.MaskingNonce, m.MaskedResponse)
}

// Marshal returns the message bytes.
func (m *KE1) Marshal() []byte {
	return concat(m.CredentialRequest.BlindedMessage, m.AuthRequest.ClientNonce, m.AuthRequest.ClientPublicKeyshare)
}

// Marshal returns the message bytes.
func (m *KE2) Marshal() []byte {
	return concat(m.CredentialResponse.Marshal(),
		m.AuthResponse.ServerNonce, m.AuthResponse.ServerPublicKeyshare, m.AuthResponse.ServerMAC)
}

// Marshal returns the message bytes.
func (m *KE3) Marshal() []byte { return bytes.Clone(m.ClientMAC) }

// reader cuts fixed-length fields off a message, copying them.
type reader struct {
	b []byte
}

func (r *reader) next(n int) []byte {
	out := bytes.Clone(r.b[:n])
	r.b = r.b[n:]
	return out
}

// start checks the total length of message name before it is cut.
func start(name string, b []byte, want int) (*reader, error) {
	if len(b) != want {
		return nil, fmt.Errorf("%w: %s is %d bytes, want %d", ErrInvalidMessage, name, len(b), want)
	}
	return &reader{b: b}, nil
}

// checkOPRFElement checks a serialized OPRF element.
func (c *Config) checkOPRFElement(name string, b []byte) error {
	if _, err := decodeElement(c.OPRF.Group(), b); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrInvalidMessage, name, err)
	}
	return nil
}

// checkPublicKey checks an AKE public key.
func (c *Config) checkPublicKey(name string, b []byte) error {
	if err := c.Group.checkPublicKey(b); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrInvalidMessage, name, err)
	}
	return nil
}

// ParseRegistrationRequest decodes and checks a RegistrationRequest.
func (c *Config) ParseRegistrationRequest(b []byte) (*RegistrationRequest, error) {
	s, err := c.sizes()
	if err != nil {
		return nil, err
	}
	r, err := start("RegistrationRequest", b, s.noe)
	if err != nil {
		return nil, err
	}
	m := &RegistrationRequest{BlindedMessage: r.next(s.noe)}
	if err := c.checkOPRFElement("blinded_message", m.BlindedMessage); err != nil {
		return nil, err
	}
	return m, nil
}

// ParseRegistrationResponse decodes and checks a RegistrationResponse.
func (c *Config) ParseRegistrationResponse(b []byte) (*RegistrationResponse, error) {
	s, err := c.sizes()
	if err != nil {
		return nil, err
	}
	r, err := start("RegistrationResponse", b, s.noe+s.npk)
	if err != nil {
		return nil, err
	}
	m := &RegistrationResponse{EvaluatedMessage: r.next(s.noe), ServerPublicKey: r.next(s.npk)}
	if err := c.checkRegistrationResponse(m); err != nil {
		return nil, err
	}
	return m, nil
}

func (c *Config) checkRegistrationResponse(m *RegistrationResponse) error {
	if err := c.checkOPRFElement("evaluated_message", m.EvaluatedMessage); err != nil {
		return err
	}
	return c.checkPublicKey("server_public_key", m.ServerPublicKey)
}

// ParseRegistrationRecord decodes and checks a RegistrationRecord, as
// uploaded by a client or read back from storage.
func (c *Config) ParseRegistrationRecord(b []byte) (*RegistrationRecord, error) {
	s, err := c.sizes()
	if err != nil {
		return nil, err
	}
	r, err := start("RegistrationRecord", b, s.npk+s.nh+NonceSize+s.nh)
	if err != nil {
		return nil, err
	}
	m := &RegistrationRecord{
		ClientPublicKey: r.next(s.npk),
		MaskingKey:      r.next(s.nh),
		Envelope:        Envelope{Nonce: r.next(NonceSize), AuthTag: r.next(s.nh)},
	}
	if err := c.checkRecord(m); err != nil {
		return nil, err
	}
	return m, nil
}

func (c *Config) checkRecord(m *RegistrationRecord) error {
	s := c.mustSizes()
	if len(m.MaskingKey) != s.nh || len(m.Envelope.Nonce) != NonceSize || len(m.Envelope.AuthTag) != s.nh {
		return fmt.Errorf("%w: RegistrationRecord field lengths", ErrInvalidMessage)
	}
	return c.checkPublicKey("client_public_key", m.ClientPublicKey)
}

// ParseKE1 decodes and checks KE1.
func (c *Config) ParseKE1(b []byte) (*KE1, error) {
	s, err := c.sizes()
	if err != nil {
		return nil, err
	}
	r, err := start("KE1", b, s.noe+NonceSize+s.npk)
	if err != nil {
		return nil, err
	}
	m := &KE1{
		CredentialRequest: CredentialRequest{BlindedMessage: r.next(s.noe)},
		AuthRequest:       AuthRequest{ClientNonce: r.next(NonceSize), ClientPublicKeyshare: r.next(s.npk)},
	}
	if err := c.checkKE1(m); err != nil {
		return nil, err
	}
	return m, nil
}

func (c *Config) checkKE1(m *KE1) error {
	if len(m.AuthRequest.ClientNonce) != NonceSize {
		return fmt.Errorf("%w: client_nonce is %d bytes", ErrInvalidMessage, len(m.AuthRequest.ClientNonce))
	}
	if err := c.checkOPRFElement("blinded_message", m.CredentialRequest.BlindedMessage); err != nil {
		return err
	}
	return c.checkPublicKey("client_public_keyshare", m.AuthRequest.ClientPublicKeyshare)
}

// ParseKE2 decodes and checks KE2. The server public key inside
// masked_response can only be checked after unmasking (ClientLogin.Finish).
func (c *Config) ParseKE2(b []byte) (*KE2, error) {
	s, err := c.sizes()
	if err != nil {
		return nil, err
	}
	r, err := start("KE2", b, c.KE2Size())
	if err != nil {
		return nil, err
	}
	m := &KE2{
		CredentialResponse: CredentialResponse{
			EvaluatedMessage: r.next(s.noe),
			MaskingNonce:     r.next(NonceSize),
			MaskedResponse:   r.next(s.npk + NonceSize + s.nh),
		},
		AuthResponse: AuthResponse{
			ServerNonce:          r.next(NonceSize),
			ServerPublicKeyshare: r.next(s.npk),
			ServerMAC:            r.next(s.nh),
		},
	}
	if err := c.checkKE2(m); err != nil {
		return nil, err
	}
	return m, nil
}

func (c *Config) checkKE2(m *KE2) error {
	s := c.mustSizes()
	cr, ar := &m.CredentialResponse, &m.AuthResponse
	if len(cr.MaskingNonce) != NonceSize || len(cr.MaskedResponse) != s.npk+NonceSize+s.nh ||
		len(ar.ServerNonce) != NonceSize || len(ar.ServerMAC) != s.nh {
		return fmt.Errorf("%w: KE2 field lengths", ErrInvalidMessage)
	}
	if err := c.checkOPRFElement("evaluated_message", cr.EvaluatedMessage); err != nil {
		return err
	}
	return c.checkPublicKey("server_public_keyshare", ar.ServerPublicKeyshare)
}

// ParseKE3 decodes KE3.
func (c *Config) ParseKE3(b []byte) (*KE3, error) {
	s, err := c.sizes()
	if err != nil {
		return nil, err
	}
	r, err := start("KE3", b, s.nh)
	if err != nil {
		return nil, err
	}
	return &KE3{ClientMAC: r.next(s.nh)}, nil
}
