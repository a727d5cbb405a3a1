package mls

import (
	"fmt"

	"golang.org/x/crypto/cryptobyte"
)

// MLSMessage is the outer envelope of everything MLS sends (RFC 9420,
// Section 6). Exactly the field matching WireFormat is set.
//
//	struct {
//	    ProtocolVersion version = mls10;
//	    WireFormat wire_format;
//	    select (MLSMessage.wire_format) {
//	        case mls_public_message:  PublicMessage public_message;
//	        case mls_private_message: PrivateMessage private_message;
//	        case mls_welcome:         Welcome welcome;
//	        case mls_group_info:      GroupInfo group_info;
//	        case mls_key_package:     KeyPackage key_package;
//	    };
//	} MLSMessage;
//
// Version is always ProtocolVersionMLS10: decoding rejects any other
// version, since the body of a message of an unknown version cannot be
// interpreted. The zero Version encodes as mls10.
type MLSMessage struct {
	Version        ProtocolVersion
	WireFormat     WireFormat
	PublicMessage  *PublicMessage
	PrivateMessage *PrivateMessage
	Welcome        *Welcome
	GroupInfo      *GroupInfo
	KeyPackage     *KeyPackage
}

// body returns the codec of the variant WireFormat selects, or nil.
func (m *MLSMessage) body() codec {
	switch m.WireFormat {
	case WireFormatPublicMessage:
		if m.PublicMessage != nil {
			return m.PublicMessage
		}
	case WireFormatPrivateMessage:
		if m.PrivateMessage != nil {
			return m.PrivateMessage
		}
	case WireFormatWelcome:
		if m.Welcome != nil {
			return m.Welcome
		}
	case WireFormatGroupInfo:
		if m.GroupInfo != nil {
			return m.GroupInfo
		}
	case WireFormatKeyPackage:
		if m.KeyPackage != nil {
			return m.KeyPackage
		}
	}
	return nil
}

func (m *MLSMessage) marshal(b *cryptobyte.Builder) {
	if m.Version != 0 && m.Version != ProtocolVersionMLS10 {
		b.SetError(fmt.Errorf("mls: unsupported protocol version %d", m.Version))
		return
	}
	body := m.body()
	if body == nil {
		b.SetError(fmt.Errorf("mls: message of wire format %d has no matching body", m.WireFormat))
		return
	}
	b.AddUint16(uint16(ProtocolVersionMLS10))
	b.AddUint16(uint16(m.WireFormat))
	body.marshal(b)
}

func (m *MLSMessage) unmarshal(s *cryptobyte.String) error {
	*m = MLSMessage{}
	if !s.ReadUint16((*uint16)(&m.Version)) || !s.ReadUint16((*uint16)(&m.WireFormat)) {
		return errDecode
	}
	if m.Version != ProtocolVersionMLS10 {
		return fmt.Errorf("%w: unsupported protocol version %d", errDecode, m.Version)
	}
	var body codec
	switch m.WireFormat {
	case WireFormatPublicMessage:
		m.PublicMessage = new(PublicMessage)
		body = m.PublicMessage
	case WireFormatPrivateMessage:
		m.PrivateMessage = new(PrivateMessage)
		body = m.PrivateMessage
	case WireFormatWelcome:
		m.Welcome = new(Welcome)
		body = m.Welcome
	case WireFormatGroupInfo:
		m.GroupInfo = new(GroupInfo)
		body = m.GroupInfo
	case WireFormatKeyPackage:
		m.KeyPackage = new(KeyPackage)
		body = m.KeyPackage
	default:
		return fmt.Errorf("%w: unknown wire format %d", errDecode, m.WireFormat)
	}
	return body.unmarshal(s)
}

// Marshal returns the TLS encoding of m.
func (m *MLSMessage) Marshal() ([]byte, error) { return marshalWith(m.marshal) }

// UnmarshalMLSMessage decodes an MLSMessage, rejecting trailing bytes. On
// error it returns nil, never a partly filled message.
func UnmarshalMLSMessage(data []byte) (*MLSMessage, error) {
	m := new(MLSMessage)
	if err := unmarshalAll(data, m.unmarshal); err != nil {
		return nil, err
	}
	return m, nil
}
