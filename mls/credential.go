package mls

import (
	"fmt"

	"golang.org/x/crypto/cryptobyte"
)

// CredentialType identifies the kind of a Credential (RFC 9420, Section 5.3).
// The registry is open: capabilities may list unknown types, and they
// round-trip there, but a Credential of an unknown type cannot be decoded
// because its body has no length prefix.
type CredentialType uint16

// Credential types of RFC 9420, Section 17.5.
const (
	CredentialTypeBasic CredentialType = 0x0001
	CredentialTypeX509  CredentialType = 0x0002
)

// Credential binds an identity to a signature key (RFC 9420, Section 5.3).
//
//	struct {
//	    CredentialType credential_type;
//	    select (Credential.credential_type) {
//	        case basic: opaque identity<V>;
//	        case x509:  Certificate certificates<V>;
//	    };
//	} Credential;
type Credential struct {
	Type CredentialType
	// Identity is set for CredentialTypeBasic.
	Identity []byte
	// Certificates holds each Certificate.cert_data for CredentialTypeX509,
	// leaf certificate first.
	Certificates [][]byte
}

func (c *Credential) marshal(b *cryptobyte.Builder) {
	b.AddUint16(uint16(c.Type))
	switch c.Type {
	case CredentialTypeBasic:
		writeOpaque(b, c.Identity)
	case CredentialTypeX509:
		writeVarint(b, opaqueListLen(c.Certificates))
		for _, cert := range c.Certificates {
			writeOpaque(b, cert)
		}
	default:
		b.SetError(fmt.Errorf("mls: cannot encode credential type %d", c.Type))
	}
}

func (c *Credential) unmarshal(s *cryptobyte.String) error {
	*c = Credential{}
	if !s.ReadUint16((*uint16)(&c.Type)) {
		return errDecode
	}
	switch c.Type {
	case CredentialTypeBasic:
		if !readOpaque(s, &c.Identity) {
			return errDecode
		}
	case CredentialTypeX509:
		var certs [][]byte
		err := readList(s, func(s *cryptobyte.String) error {
			var cert []byte
			if !readOpaque(s, &cert) {
				return errDecode
			}
			certs = append(certs, cert)
			return nil
		})
		if err != nil {
			return err
		}
		c.Certificates = certs
	default:
		return fmt.Errorf("%w: unknown credential type %d", errDecode, c.Type)
	}
	return nil
}

// Marshal returns the TLS encoding of c.
func (c *Credential) Marshal() ([]byte, error) { return marshalWith(c.marshal) }

// UnmarshalCredential decodes a Credential, rejecting trailing bytes.
func UnmarshalCredential(data []byte) (*Credential, error) {
	c := new(Credential)
	if err := unmarshalAll(data, c.unmarshal); err != nil {
		return nil, err
	}
	return c, nil
}
