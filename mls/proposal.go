package mls

import (
	"fmt"

	"golang.org/x/crypto/cryptobyte"
)

// ProposalType identifies a proposal (RFC 9420, Section 12.1). The registry
// is open: unknown and GREASE values round-trip in capability lists, but a
// Proposal of an unknown type cannot be decoded because its body carries no
// length prefix.
type ProposalType uint16

// Proposal types of RFC 9420, Section 17.4.
const (
	ProposalTypeAdd                    ProposalType = 0x0001
	ProposalTypeUpdate                 ProposalType = 0x0002
	ProposalTypeRemove                 ProposalType = 0x0003
	ProposalTypePSK                    ProposalType = 0x0004
	ProposalTypeReInit                 ProposalType = 0x0005
	ProposalTypeExternalInit           ProposalType = 0x0006
	ProposalTypeGroupContextExtensions ProposalType = 0x0007
)

// ProposalRef identifies a proposal sent by reference: RefHash("MLS 1.0
// Proposal Reference", AuthenticatedContent) (RFC 9420, Section 5.2).
// refs.go computes it.
type ProposalRef []byte

// Proposal is a proposed change to the group (RFC 9420, Section 12.1).
// Exactly the field matching Type is set.
//
//	struct {
//	    ProposalType proposal_type;
//	    select (Proposal.proposal_type) {
//	        case add:                      Add;
//	        case update:                   Update;
//	        case remove:                   Remove;
//	        case psk:                      PreSharedKey;
//	        case reinit:                   ReInit;
//	        case external_init:            ExternalInit;
//	        case group_context_extensions: GroupContextExtensions;
//	    };
//	} Proposal;
type Proposal struct {
	Type                   ProposalType
	Add                    *AddProposal
	Update                 *UpdateProposal
	Remove                 *RemoveProposal
	PreSharedKey           *PreSharedKeyProposal
	ReInit                 *ReInitProposal
	ExternalInit           *ExternalInitProposal
	GroupContextExtensions *GroupContextExtensionsProposal
}

// AddProposal is the Add struct of RFC 9420, Section 12.1.1:
// struct { KeyPackage key_package; }.
type AddProposal struct {
	KeyPackage KeyPackage
}

// UpdateProposal is the Update struct of RFC 9420, Section 12.1.2:
// struct { LeafNode leaf_node; }.
type UpdateProposal struct {
	LeafNode LeafNode
}

// RemoveProposal is the Remove struct of RFC 9420, Section 12.1.3:
// struct { uint32 removed; }.
type RemoveProposal struct {
	Removed leafIndex
}

// PreSharedKeyProposal is the PreSharedKey struct of RFC 9420,
// Section 12.1.4: struct { PreSharedKeyID psk; }.
type PreSharedKeyProposal struct {
	PSK PreSharedKeyID
}

// ReInitProposal is the ReInit struct of RFC 9420, Section 12.1.5.
//
//	struct {
//	    opaque group_id<V>;
//	    ProtocolVersion version;
//	    CipherSuite cipher_suite;
//	    Extension extensions<V>;
//	} ReInit;
type ReInitProposal struct {
	GroupID     []byte
	Version     ProtocolVersion
	CipherSuite CipherSuite
	Extensions  Extensions
}

// ExternalInitProposal is the ExternalInit struct of RFC 9420,
// Section 12.1.6: struct { opaque kem_output<V>; }.
type ExternalInitProposal struct {
	KEMOutput []byte
}

// GroupContextExtensionsProposal is the GroupContextExtensions struct of
// RFC 9420, Section 12.1.7: struct { Extension extensions<V>; }.
type GroupContextExtensionsProposal struct {
	Extensions Extensions
}

func (p *AddProposal) marshal(b *cryptobyte.Builder)           { p.KeyPackage.marshal(b) }
func (p *AddProposal) unmarshal(s *cryptobyte.String) error    { return p.KeyPackage.unmarshal(s) }
func (p *UpdateProposal) marshal(b *cryptobyte.Builder)        { p.LeafNode.marshal(b) }
func (p *UpdateProposal) unmarshal(s *cryptobyte.String) error { return p.LeafNode.unmarshal(s) }
func (p *PreSharedKeyProposal) marshal(b *cryptobyte.Builder)  { p.PSK.marshal(b) }
func (p *PreSharedKeyProposal) unmarshal(s *cryptobyte.String) error {
	return p.PSK.unmarshal(s)
}

func (p *RemoveProposal) marshal(b *cryptobyte.Builder) { b.AddUint32(uint32(p.Removed)) }

func (p *RemoveProposal) unmarshal(s *cryptobyte.String) error {
	if !s.ReadUint32((*uint32)(&p.Removed)) {
		return errDecode
	}
	return nil
}

func (p *ReInitProposal) marshal(b *cryptobyte.Builder) {
	writeOpaque(b, p.GroupID)
	b.AddUint16(uint16(p.Version))
	b.AddUint16(uint16(p.CipherSuite))
	p.Extensions.marshal(b)
}

func (p *ReInitProposal) unmarshal(s *cryptobyte.String) error {
	*p = ReInitProposal{}
	if !readOpaque(s, &p.GroupID) ||
		!s.ReadUint16((*uint16)(&p.Version)) ||
		!s.ReadUint16((*uint16)(&p.CipherSuite)) {
		return errDecode
	}
	return p.Extensions.unmarshal(s)
}

func (p *ExternalInitProposal) marshal(b *cryptobyte.Builder) { writeOpaque(b, p.KEMOutput) }

func (p *ExternalInitProposal) unmarshal(s *cryptobyte.String) error {
	if !readOpaque(s, &p.KEMOutput) {
		return errDecode
	}
	return nil
}

func (p *GroupContextExtensionsProposal) marshal(b *cryptobyte.Builder) {
	p.Extensions.marshal(b)
}

func (p *GroupContextExtensionsProposal) unmarshal(s *cryptobyte.String) error {
	return p.Extensions.unmarshal(s)
}

// body returns the codec of the variant Type selects, or nil when Type is
// unknown or the matching field is unset.
func (p *Proposal) body() codec {
	switch p.Type {
	case ProposalTypeAdd:
		if p.Add != nil {
			return p.Add
		}
	case ProposalTypeUpdate:
		if p.Update != nil {
			return p.Update
		}
	case ProposalTypeRemove:
		if p.Remove != nil {
			return p.Remove
		}
	case ProposalTypePSK:
		if p.PreSharedKey != nil {
			return p.PreSharedKey
		}
	case ProposalTypeReInit:
		if p.ReInit != nil {
			return p.ReInit
		}
	case ProposalTypeExternalInit:
		if p.ExternalInit != nil {
			return p.ExternalInit
		}
	case ProposalTypeGroupContextExtensions:
		if p.GroupContextExtensions != nil {
			return p.GroupContextExtensions
		}
	}
	return nil
}

func (p *Proposal) marshal(b *cryptobyte.Builder) {
	body := p.body()
	if body == nil {
		b.SetError(fmt.Errorf("mls: proposal of type %d has no matching body", p.Type))
		return
	}
	b.AddUint16(uint16(p.Type))
	body.marshal(b)
}

func (p *Proposal) unmarshal(s *cryptobyte.String) error {
	*p = Proposal{}
	if !s.ReadUint16((*uint16)(&p.Type)) {
		return errDecode
	}
	var body codec
	switch p.Type {
	case ProposalTypeAdd:
		p.Add = new(AddProposal)
		body = p.Add
	case ProposalTypeUpdate:
		p.Update = new(UpdateProposal)
		body = p.Update
	case ProposalTypeRemove:
		p.Remove = new(RemoveProposal)
		body = p.Remove
	case ProposalTypePSK:
		p.PreSharedKey = new(PreSharedKeyProposal)
		body = p.PreSharedKey
	case ProposalTypeReInit:
		p.ReInit = new(ReInitProposal)
		body = p.ReInit
	case ProposalTypeExternalInit:
		p.ExternalInit = new(ExternalInitProposal)
		body = p.ExternalInit
	case ProposalTypeGroupContextExtensions:
		p.GroupContextExtensions = new(GroupContextExtensionsProposal)
		body = p.GroupContextExtensions
	default:
		return fmt.Errorf("%w: unknown proposal type %d", errDecode, p.Type)
	}
	return body.unmarshal(s)
}

// Marshal returns the TLS encoding of p.
func (p *Proposal) Marshal() ([]byte, error) { return marshalWith(p.marshal) }

// UnmarshalProposal decodes a Proposal, rejecting trailing bytes.
func UnmarshalProposal(data []byte) (*Proposal, error) {
	p := new(Proposal)
	if err := unmarshalAll(data, p.unmarshal); err != nil {
		return nil, err
	}
	return p, nil
}

// ProposalOrRefType says whether a Commit carries a proposal by value or by
// reference (RFC 9420, Section 12.4). It is a closed enum.
type ProposalOrRefType uint8

// Values of ProposalOrRefType.
const (
	ProposalOrRefTypeProposal  ProposalOrRefType = 1
	ProposalOrRefTypeReference ProposalOrRefType = 2
)

// ProposalOrRef is one entry of Commit.proposals (RFC 9420, Section 12.4).
//
//	struct {
//	    ProposalOrRefType type;
//	    select (ProposalOrRef.type) {
//	        case proposal:  Proposal proposal;
//	        case reference: ProposalRef reference;
//	    };
//	} ProposalOrRef;
type ProposalOrRef struct {
	Type      ProposalOrRefType
	Proposal  *Proposal   // set for ProposalOrRefTypeProposal
	Reference ProposalRef // set for ProposalOrRefTypeReference
}

func (p *ProposalOrRef) marshal(b *cryptobyte.Builder) {
	b.AddUint8(uint8(p.Type))
	switch p.Type {
	case ProposalOrRefTypeProposal:
		if p.Proposal == nil {
			b.SetError(fmt.Errorf("mls: ProposalOrRef without proposal"))
			return
		}
		p.Proposal.marshal(b)
	case ProposalOrRefTypeReference:
		writeOpaque(b, p.Reference)
	default:
		b.SetError(fmt.Errorf("mls: invalid ProposalOrRef type %d", p.Type))
	}
}

func (p *ProposalOrRef) unmarshal(s *cryptobyte.String) error {
	*p = ProposalOrRef{}
	if !s.ReadUint8((*uint8)(&p.Type)) {
		return errDecode
	}
	switch p.Type {
	case ProposalOrRefTypeProposal:
		p.Proposal = new(Proposal)
		return p.Proposal.unmarshal(s)
	case ProposalOrRefTypeReference:
		if !readOpaque(s, (*[]byte)(&p.Reference)) {
			return errDecode
		}
		return nil
	default:
		return fmt.Errorf("%w: unknown ProposalOrRef type %d", errDecode, p.Type)
	}
}

// PSKType is the kind of a pre-shared key (RFC 9420, Section 8.4). It is a
// closed enum: other values are decode errors.
type PSKType uint8

// PSK types of RFC 9420, Section 8.4.
const (
	PSKTypeExternal   PSKType = 1
	PSKTypeResumption PSKType = 2
)

// ResumptionPSKUsage says why a resumption PSK is used (RFC 9420,
// Section 8.4). It is a closed enum.
type ResumptionPSKUsage uint8

// Resumption PSK usages of RFC 9420, Section 8.4.
const (
	ResumptionPSKUsageApplication ResumptionPSKUsage = 1
	ResumptionPSKUsageReInit      ResumptionPSKUsage = 2
	ResumptionPSKUsageBranch      ResumptionPSKUsage = 3
)

// PreSharedKeyID names a pre-shared key (RFC 9420, Section 8.4).
//
//	struct {
//	    PSKType psktype;
//	    select (PreSharedKeyID.psktype) {
//	        case external:
//	            opaque psk_id<V>;
//	        case resumption:
//	            ResumptionPSKUsage usage;
//	            opaque psk_group_id<V>;
//	            uint64 psk_epoch;
//	    };
//	    opaque psk_nonce<V>;
//	} PreSharedKeyID;
type PreSharedKeyID struct {
	Type PSKType
	// PSKID is set for PSKTypeExternal.
	PSKID []byte
	// Usage, PSKGroupID and PSKEpoch are set for PSKTypeResumption.
	Usage      ResumptionPSKUsage
	PSKGroupID []byte
	PSKEpoch   uint64
	PSKNonce   []byte
}

func (id *PreSharedKeyID) marshal(b *cryptobyte.Builder) {
	b.AddUint8(uint8(id.Type))
	switch id.Type {
	case PSKTypeExternal:
		writeOpaque(b, id.PSKID)
	case PSKTypeResumption:
		b.AddUint8(uint8(id.Usage))
		writeOpaque(b, id.PSKGroupID)
		b.AddUint64(id.PSKEpoch)
	default:
		b.SetError(fmt.Errorf("mls: invalid psk type %d", id.Type))
	}
	writeOpaque(b, id.PSKNonce)
}

func (id *PreSharedKeyID) unmarshal(s *cryptobyte.String) error {
	*id = PreSharedKeyID{}
	if !s.ReadUint8((*uint8)(&id.Type)) {
		return errDecode
	}
	switch id.Type {
	case PSKTypeExternal:
		if !readOpaque(s, &id.PSKID) {
			return errDecode
		}
	case PSKTypeResumption:
		if !s.ReadUint8((*uint8)(&id.Usage)) {
			return errDecode
		}
		if id.Usage < ResumptionPSKUsageApplication || id.Usage > ResumptionPSKUsageBranch {
			return fmt.Errorf("%w: unknown resumption psk usage %d", errDecode, id.Usage)
		}
		if !readOpaque(s, &id.PSKGroupID) || !s.ReadUint64(&id.PSKEpoch) {
			return errDecode
		}
	default:
		return fmt.Errorf("%w: unknown psk type %d", errDecode, id.Type)
	}
	if !readOpaque(s, &id.PSKNonce) {
		return errDecode
	}
	return nil
}

// Marshal returns the TLS encoding of id.
func (id *PreSharedKeyID) Marshal() ([]byte, error) { return marshalWith(id.marshal) }

// UnmarshalPreSharedKeyID decodes a PreSharedKeyID, rejecting trailing bytes.
func UnmarshalPreSharedKeyID(data []byte) (*PreSharedKeyID, error) {
	id := new(PreSharedKeyID)
	if err := unmarshalAll(data, id.unmarshal); err != nil {
		return nil, err
	}
	return id, nil
}
