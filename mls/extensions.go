package mls

import (
	"fmt"

	"golang.org/x/crypto/cryptobyte"
)

// ExtensionType identifies an extension (RFC 9420, Section 13). The registry
// is open: unknown and GREASE types decode and round-trip.
type ExtensionType uint16

// Extension types of RFC 9420, Section 17.3.
const (
	ExtensionTypeApplicationID        ExtensionType = 0x0001
	ExtensionTypeRatchetTree          ExtensionType = 0x0002
	ExtensionTypeRequiredCapabilities ExtensionType = 0x0003
	ExtensionTypeExternalPub          ExtensionType = 0x0004
	ExtensionTypeExternalSenders      ExtensionType = 0x0005
)

// Extension is one entry of an extension list (RFC 9420, Section 13).
//
//	struct {
//	    ExtensionType extension_type;
//	    opaque extension_data<V>;
//	} Extension;
type Extension struct {
	Type ExtensionType
	Data []byte
}

// Extensions is an Extension extensions<V> list. Decoding rejects a list
// that names a type twice (RFC 9420, Section 13: "there MUST NOT be more
// than one extension of any given type").
type Extensions []Extension

// Find returns the data of the extension of type t and whether it is present.
func (es Extensions) Find(t ExtensionType) ([]byte, bool) {
	for _, e := range es {
		if e.Type == t {
			return e.Data, true
		}
	}
	return nil, false
}

func (es Extensions) marshal(b *cryptobyte.Builder) {
	// The length is known up front: no scratch builder (writeVector).
	n := 0
	for _, e := range es {
		n += 2 + varintLen(len(e.Data)) + len(e.Data)
	}
	writeVarint(b, n)
	for _, e := range es {
		b.AddUint16(uint16(e.Type))
		writeOpaque(b, e.Data)
	}
}

func (es *Extensions) unmarshal(s *cryptobyte.String) error {
	var list Extensions
	err := readList(s, func(s *cryptobyte.String) error {
		var e Extension
		if !s.ReadUint16((*uint16)(&e.Type)) || !readOpaque(s, &e.Data) {
			return errDecode
		}
		// Lists are short in practice; the quadratic scan is bounded by
		// the input length and avoids a map allocation per list.
		for _, prev := range list {
			if prev.Type == e.Type {
				return fmt.Errorf("%w: duplicate extension type %d", errDecode, e.Type)
			}
		}
		list = append(list, e)
		return nil
	})
	if err != nil {
		return err
	}
	*es = list
	return nil
}

// RequiredCapabilities is the body of the required_capabilities extension
// (RFC 9420, Section 11.1).
//
//	struct {
//	    ExtensionType extension_types<V>;
//	    ProposalType proposal_types<V>;
//	    CredentialType credential_types<V>;
//	} RequiredCapabilities;
type RequiredCapabilities struct {
	ExtensionTypes  []ExtensionType
	ProposalTypes   []ProposalType
	CredentialTypes []CredentialType
}

func (r *RequiredCapabilities) marshal(b *cryptobyte.Builder) {
	writeUint16List(b, r.ExtensionTypes)
	writeUint16List(b, r.ProposalTypes)
	writeUint16List(b, r.CredentialTypes)
}

func (r *RequiredCapabilities) unmarshal(s *cryptobyte.String) error {
	*r = RequiredCapabilities{}
	if err := readUint16List(s, &r.ExtensionTypes); err != nil {
		return err
	}
	if err := readUint16List(s, &r.ProposalTypes); err != nil {
		return err
	}
	return readUint16List(s, &r.CredentialTypes)
}

// Marshal returns the TLS encoding of r.
func (r *RequiredCapabilities) Marshal() ([]byte, error) { return marshalWith(r.marshal) }

// UnmarshalRequiredCapabilities decodes the body of a required_capabilities
// extension, rejecting trailing bytes.
func UnmarshalRequiredCapabilities(data []byte) (*RequiredCapabilities, error) {
	r := new(RequiredCapabilities)
	if err := unmarshalAll(data, r.unmarshal); err != nil {
		return nil, err
	}
	return r, nil
}

// ExternalSender is one entry of the external_senders extension (RFC 9420,
// Section 12.1.8.1).
//
//	struct {
//	    SignaturePublicKey signature_key;
//	    Credential credential;
//	} ExternalSender;
type ExternalSender struct {
	SignatureKey []byte
	Credential   Credential
}

// ExternalSenders is the body of the external_senders extension:
// ExternalSender external_senders<V>.
type ExternalSenders []ExternalSender

func (es ExternalSenders) marshal(b *cryptobyte.Builder) {
	writeVector(b, func(b *cryptobyte.Builder) {
		for i := range es {
			writeOpaque(b, es[i].SignatureKey)
			es[i].Credential.marshal(b)
		}
	})
}

func (es *ExternalSenders) unmarshal(s *cryptobyte.String) error {
	var list ExternalSenders
	err := readList(s, func(s *cryptobyte.String) error {
		var e ExternalSender
		if !readOpaque(s, &e.SignatureKey) {
			return errDecode
		}
		if err := e.Credential.unmarshal(s); err != nil {
			return err
		}
		list = append(list, e)
		return nil
	})
	if err != nil {
		return err
	}
	*es = list
	return nil
}

// Marshal returns the TLS encoding of es.
func (es ExternalSenders) Marshal() ([]byte, error) { return marshalWith(es.marshal) }

// UnmarshalExternalSenders decodes the body of an external_senders
// extension, rejecting trailing bytes.
func UnmarshalExternalSenders(data []byte) (ExternalSenders, error) {
	var es ExternalSenders
	if err := unmarshalAll(data, es.unmarshal); err != nil {
		return nil, err
	}
	return es, nil
}

// ExternalPub is the body of the external_pub extension (RFC 9420,
// Section 12.4.3.2): struct { HPKEPublicKey external_pub; }.
type ExternalPub struct {
	ExternalPub []byte
}

func (e *ExternalPub) marshal(b *cryptobyte.Builder) { writeOpaque(b, e.ExternalPub) }

func (e *ExternalPub) unmarshal(s *cryptobyte.String) error {
	if !readOpaque(s, &e.ExternalPub) {
		return errDecode
	}
	return nil
}

// Marshal returns the TLS encoding of e.
func (e *ExternalPub) Marshal() ([]byte, error) { return marshalWith(e.marshal) }

// UnmarshalExternalPub decodes the body of an external_pub extension,
// rejecting trailing bytes.
func UnmarshalExternalPub(data []byte) (*ExternalPub, error) {
	e := new(ExternalPub)
	if err := unmarshalAll(data, e.unmarshal); err != nil {
		return nil, err
	}
	return e, nil
}

// ApplicationID is the body of the application_id extension (RFC 9420,
// Section 5.3.3): opaque application_id<V>.
type ApplicationID []byte

// Marshal returns the TLS encoding of a.
func (a ApplicationID) Marshal() ([]byte, error) {
	return marshalWith(func(b *cryptobyte.Builder) { writeOpaque(b, a) })
}

// UnmarshalApplicationID decodes the body of an application_id extension,
// rejecting trailing bytes.
func UnmarshalApplicationID(data []byte) (ApplicationID, error) {
	var a []byte
	err := unmarshalAll(data, func(s *cryptobyte.String) error {
		if !readOpaque(s, &a) {
			return errDecode
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}
