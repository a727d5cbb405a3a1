package mls

import (
	"fmt"

	"golang.org/x/crypto/cryptobyte"
)

// LeafNodeSource says how a LeafNode was created (RFC 9420, Section 7.2).
// It is a closed enum: other values are decode errors.
type LeafNodeSource uint8

// Leaf node sources of RFC 9420, Section 7.2.
const (
	LeafNodeSourceKeyPackage LeafNodeSource = 1
	LeafNodeSourceUpdate     LeafNodeSource = 2
	LeafNodeSourceCommit     LeafNodeSource = 3
)

// Capabilities lists what a client supports (RFC 9420, Section 7.2).
// Every list may contain unknown or GREASE values; they round-trip.
//
//	struct {
//	    ProtocolVersion versions<V>;
//	    CipherSuite cipher_suites<V>;
//	    ExtensionType extensions<V>;
//	    ProposalType proposals<V>;
//	    CredentialType credentials<V>;
//	} Capabilities;
type Capabilities struct {
	Versions     []ProtocolVersion
	CipherSuites []CipherSuite
	Extensions   []ExtensionType
	Proposals    []ProposalType
	Credentials  []CredentialType
}

func (c *Capabilities) marshal(b *cryptobyte.Builder) {
	writeUint16List(b, c.Versions)
	writeUint16List(b, c.CipherSuites)
	writeUint16List(b, c.Extensions)
	writeUint16List(b, c.Proposals)
	writeUint16List(b, c.Credentials)
}

func (c *Capabilities) unmarshal(s *cryptobyte.String) error {
	*c = Capabilities{}
	if err := readUint16List(s, &c.Versions); err != nil {
		return err
	}
	if err := readUint16List(s, &c.CipherSuites); err != nil {
		return err
	}
	if err := readUint16List(s, &c.Extensions); err != nil {
		return err
	}
	if err := readUint16List(s, &c.Proposals); err != nil {
		return err
	}
	return readUint16List(s, &c.Credentials)
}

// Lifetime bounds the validity of a KeyPackage's leaf, in seconds since the
// Unix epoch (RFC 9420, Section 7.2).
type Lifetime struct {
	NotBefore uint64
	NotAfter  uint64
}

// LeafNode is a member's leaf in the ratchet tree (RFC 9420, Section 7.2).
//
//	struct {
//	    HPKEPublicKey encryption_key;
//	    SignaturePublicKey signature_key;
//	    Credential credential;
//	    Capabilities capabilities;
//	    LeafNodeSource leaf_node_source;
//	    select (LeafNode.leaf_node_source) {
//	        case key_package: Lifetime lifetime;
//	        case update:      struct{};
//	        case commit:      opaque parent_hash<V>;
//	    };
//	    Extension extensions<V>;
//	    opaque signature<V>;
//	} LeafNode;
type LeafNode struct {
	EncryptionKey []byte
	SignatureKey  []byte
	Credential    Credential
	Capabilities  Capabilities
	Source        LeafNodeSource
	// Lifetime is set when Source is LeafNodeSourceKeyPackage.
	Lifetime Lifetime
	// ParentHash is set when Source is LeafNodeSourceCommit.
	ParentHash []byte
	Extensions Extensions
	// Signature is SignWithLabel(., "LeafNodeTBS", LeafNodeTBS).
	Signature []byte
}

// marshalContent writes every field before the signature, which is also
// the start of LeafNodeTBS.
func (l *LeafNode) marshalContent(b *cryptobyte.Builder) {
	writeOpaque(b, l.EncryptionKey)
	writeOpaque(b, l.SignatureKey)
	l.Credential.marshal(b)
	l.Capabilities.marshal(b)
	b.AddUint8(uint8(l.Source))
	switch l.Source {
	case LeafNodeSourceKeyPackage:
		b.AddUint64(l.Lifetime.NotBefore)
		b.AddUint64(l.Lifetime.NotAfter)
	case LeafNodeSourceUpdate:
	case LeafNodeSourceCommit:
		writeOpaque(b, l.ParentHash)
	default:
		b.SetError(fmt.Errorf("mls: invalid leaf node source %d", l.Source))
	}
	l.Extensions.marshal(b)
}

func (l *LeafNode) marshal(b *cryptobyte.Builder) {
	l.marshalContent(b)
	writeOpaque(b, l.Signature)
}

func (l *LeafNode) unmarshal(s *cryptobyte.String) error {
	*l = LeafNode{}
	if !readOpaque(s, &l.EncryptionKey) || !readOpaque(s, &l.SignatureKey) {
		return errDecode
	}
	if err := l.Credential.unmarshal(s); err != nil {
		return err
	}
	if err := l.Capabilities.unmarshal(s); err != nil {
		return err
	}
	if !s.ReadUint8((*uint8)(&l.Source)) {
		return errDecode
	}
	switch l.Source {
	case LeafNodeSourceKeyPackage:
		if !s.ReadUint64(&l.Lifetime.NotBefore) || !s.ReadUint64(&l.Lifetime.NotAfter) {
			return errDecode
		}
	case LeafNodeSourceUpdate:
	case LeafNodeSourceCommit:
		if !readOpaque(s, &l.ParentHash) {
			return errDecode
		}
	default:
		return fmt.Errorf("%w: unknown leaf node source %d", errDecode, l.Source)
	}
	if err := l.Extensions.unmarshal(s); err != nil {
		return err
	}
	if !readOpaque(s, &l.Signature) {
		return errDecode
	}
	return nil
}

// marshalTBS returns the LeafNodeTBS encoding that the leaf's signature
// covers (RFC 9420, Section 7.2). groupID and leaf are used only for the
// update and commit sources, which bind the leaf to its group and position.
//
//	struct {
//	    ... every LeafNode field except signature ...
//	    select (LeafNodeTBS.leaf_node_source) {
//	        case key_package: struct{};
//	        case update:      opaque group_id<V>; uint32 leaf_index;
//	        case commit:      opaque group_id<V>; uint32 leaf_index;
//	    };
//	} LeafNodeTBS;
func (l *LeafNode) marshalTBS(groupID []byte, leaf leafIndex) ([]byte, error) {
	return marshalWith(func(b *cryptobyte.Builder) {
		l.marshalContent(b)
		switch l.Source {
		case LeafNodeSourceUpdate, LeafNodeSourceCommit:
			writeOpaque(b, groupID)
			b.AddUint32(uint32(leaf))
		}
	})
}

// Marshal returns the TLS encoding of l.
func (l *LeafNode) Marshal() ([]byte, error) { return marshalWith(l.marshal) }

// UnmarshalLeafNode decodes a LeafNode, rejecting trailing bytes.
func UnmarshalLeafNode(data []byte) (*LeafNode, error) {
	l := new(LeafNode)
	if err := unmarshalAll(data, l.unmarshal); err != nil {
		return nil, err
	}
	return l, nil
}
