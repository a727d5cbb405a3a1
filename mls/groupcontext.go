package mls

import (
	"golang.org/x/crypto/cryptobyte"
)

// GroupContext summarizes the state of a group in an epoch (RFC 9420,
// Section 8.1).
//
//	struct {
//	    ProtocolVersion version = mls10;
//	    CipherSuite cipher_suite;
//	    opaque group_id<V>;
//	    uint64 epoch;
//	    opaque tree_hash<V>;
//	    opaque confirmed_transcript_hash<V>;
//	    Extension extensions<V>;
//	} GroupContext;
type GroupContext struct {
	Version                 ProtocolVersion
	CipherSuite             CipherSuite
	GroupID                 []byte
	Epoch                   uint64
	TreeHash                []byte
	ConfirmedTranscriptHash []byte
	Extensions              Extensions
}

func (gc *GroupContext) marshal(b *cryptobyte.Builder) {
	b.AddUint16(uint16(gc.Version))
	b.AddUint16(uint16(gc.CipherSuite))
	writeOpaque(b, gc.GroupID)
	b.AddUint64(gc.Epoch)
	writeOpaque(b, gc.TreeHash)
	writeOpaque(b, gc.ConfirmedTranscriptHash)
	gc.Extensions.marshal(b)
}

func (gc *GroupContext) unmarshal(s *cryptobyte.String) error {
	*gc = GroupContext{}
	if !s.ReadUint16((*uint16)(&gc.Version)) ||
		!s.ReadUint16((*uint16)(&gc.CipherSuite)) ||
		!readOpaque(s, &gc.GroupID) ||
		!s.ReadUint64(&gc.Epoch) ||
		!readOpaque(s, &gc.TreeHash) ||
		!readOpaque(s, &gc.ConfirmedTranscriptHash) {
		return errDecode
	}
	return gc.Extensions.unmarshal(s)
}

// Marshal returns the TLS encoding of gc, the context of the key schedule
// (RFC 9420, Section 8).
func (gc *GroupContext) Marshal() ([]byte, error) { return marshalWith(gc.marshal) }

// UnmarshalGroupContext decodes a GroupContext, rejecting trailing bytes.
func UnmarshalGroupContext(data []byte) (*GroupContext, error) {
	gc := new(GroupContext)
	if err := unmarshalAll(data, gc.unmarshal); err != nil {
		return nil, err
	}
	return gc, nil
}
