package mls

import (
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
)

// ContentType is the kind of content a FramedContent carries (RFC 9420,
// Section 6). It is a closed enum: other values are decode errors.
type ContentType uint8

// Content types of RFC 9420, Section 6.
const (
	ContentTypeApplication ContentType = 1
	ContentTypeProposal    ContentType = 2
	ContentTypeCommit      ContentType = 3
)

func (ct ContentType) valid() bool {
	return ct >= ContentTypeApplication && ct <= ContentTypeCommit
}

// SenderType is the kind of sender of a message (RFC 9420, Section 6). It
// is a closed enum: other values are decode errors.
type SenderType uint8

// Sender types of RFC 9420, Section 6.
const (
	SenderTypeMember            SenderType = 1
	SenderTypeExternal          SenderType = 2
	SenderTypeNewMemberProposal SenderType = 3
	SenderTypeNewMemberCommit   SenderType = 4
)

// WireFormat is the format an MLSMessage is sent in (RFC 9420, Section 6).
// The IANA registry is open, but a receiver cannot parse a body it does not
// know, so unknown values are decode errors.
type WireFormat uint16

// Wire formats of RFC 9420, Section 17.2.
const (
	WireFormatPublicMessage  WireFormat = 0x0001
	WireFormatPrivateMessage WireFormat = 0x0002
	WireFormatWelcome        WireFormat = 0x0003
	WireFormatGroupInfo      WireFormat = 0x0004
	WireFormatKeyPackage     WireFormat = 0x0005
)

// Sender identifies who sent a message (RFC 9420, Section 6).
//
//	struct {
//	    SenderType sender_type;
//	    select (Sender.sender_type) {
//	        case member:              uint32 leaf_index;
//	        case external:            uint32 sender_index;
//	        case new_member_commit:
//	        case new_member_proposal: struct{};
//	    };
//	} Sender;
type Sender struct {
	Type SenderType
	// LeafIndex is set for SenderTypeMember.
	LeafIndex leafIndex
	// SenderIndex is set for SenderTypeExternal: an index into the
	// group's external_senders extension.
	SenderIndex uint32
}

func (s *Sender) marshal(b *cryptobyte.Builder) {
	b.AddUint8(uint8(s.Type))
	switch s.Type {
	case SenderTypeMember:
		b.AddUint32(uint32(s.LeafIndex))
	case SenderTypeExternal:
		b.AddUint32(s.SenderIndex)
	case SenderTypeNewMemberProposal, SenderTypeNewMemberCommit:
	default:
		b.SetError(fmt.Errorf("mls: invalid sender type %d", s.Type))
	}
}

func (s *Sender) unmarshal(str *cryptobyte.String) error {
	*s = Sender{}
	if !str.ReadUint8((*uint8)(&s.Type)) {
		return errDecode
	}
	switch s.Type {
	case SenderTypeMember:
		if !str.ReadUint32((*uint32)(&s.LeafIndex)) {
			return errDecode
		}
	case SenderTypeExternal:
		if !str.ReadUint32(&s.SenderIndex) {
			return errDecode
		}
	case SenderTypeNewMemberProposal, SenderTypeNewMemberCommit:
	default:
		return fmt.Errorf("%w: unknown sender type %d", errDecode, s.Type)
	}
	return nil
}

// marshalContentBody writes the select (content_type) part shared by
// FramedContent and PrivateMessageContent.
func marshalContentBody(b *cryptobyte.Builder, ct ContentType, app []byte, p *Proposal, c *Commit) {
	switch ct {
	case ContentTypeApplication:
		writeOpaque(b, app)
	case ContentTypeProposal:
		if p == nil {
			b.SetError(errors.New("mls: proposal content without proposal"))
			return
		}
		p.marshal(b)
	case ContentTypeCommit:
		if c == nil {
			b.SetError(errors.New("mls: commit content without commit"))
			return
		}
		c.marshal(b)
	default:
		b.SetError(fmt.Errorf("mls: invalid content type %d", ct))
	}
}

// unmarshalContentBody reads what marshalContentBody writes.
func unmarshalContentBody(s *cryptobyte.String, ct ContentType, app *[]byte, p **Proposal, c **Commit) error {
	switch ct {
	case ContentTypeApplication:
		if !readOpaque(s, app) {
			return errDecode
		}
		return nil
	case ContentTypeProposal:
		*p = new(Proposal)
		return (*p).unmarshal(s)
	case ContentTypeCommit:
		*c = new(Commit)
		return (*c).unmarshal(s)
	default:
		return fmt.Errorf("%w: unknown content type %d", errDecode, ct)
	}
}

// FramedContent is the content of a handshake or application message
// before authentication (RFC 9420, Section 6).
//
//	struct {
//	    opaque group_id<V>;
//	    uint64 epoch;
//	    Sender sender;
//	    opaque authenticated_data<V>;
//	    ContentType content_type;
//	    select (FramedContent.content_type) {
//	        case application: opaque application_data<V>;
//	        case proposal:    Proposal proposal;
//	        case commit:      Commit commit;
//	    };
//	} FramedContent;
type FramedContent struct {
	GroupID           []byte
	Epoch             uint64
	Sender            Sender
	AuthenticatedData []byte
	ContentType       ContentType
	// Exactly the field matching ContentType is set.
	ApplicationData []byte
	Proposal        *Proposal
	Commit          *Commit
}

func (fc *FramedContent) marshal(b *cryptobyte.Builder) {
	fc.marshalWithBody(b, nil)
}

// marshalWithBody is marshal with the content body already encoded, when
// body is not nil: a received PrivateMessage's body is the start of its
// decrypted plaintext, which decoding has checked to be the canonical
// encoding of the decoded body, so it is not encoded again.
func (fc *FramedContent) marshalWithBody(b *cryptobyte.Builder, body []byte) {
	fc.marshalHeader(b)
	if body != nil {
		b.AddBytes(body)
		return
	}
	marshalContentBody(b, fc.ContentType, fc.ApplicationData, fc.Proposal, fc.Commit)
}

// marshalHeader writes the fields of fc before the content body.
func (fc *FramedContent) marshalHeader(b *cryptobyte.Builder) {
	writeOpaque(b, fc.GroupID)
	b.AddUint64(fc.Epoch)
	fc.Sender.marshal(b)
	writeOpaque(b, fc.AuthenticatedData)
	b.AddUint8(uint8(fc.ContentType))
}

func (fc *FramedContent) unmarshal(s *cryptobyte.String) error {
	*fc = FramedContent{}
	if !readOpaque(s, &fc.GroupID) || !s.ReadUint64(&fc.Epoch) {
		return errDecode
	}
	if err := fc.Sender.unmarshal(s); err != nil {
		return err
	}
	if !readOpaque(s, &fc.AuthenticatedData) || !s.ReadUint8((*uint8)(&fc.ContentType)) {
		return errDecode
	}
	return unmarshalContentBody(s, fc.ContentType, &fc.ApplicationData, &fc.Proposal, &fc.Commit)
}

// Marshal returns the TLS encoding of fc.
func (fc *FramedContent) Marshal() ([]byte, error) { return marshalWith(fc.marshal) }

// UnmarshalFramedContent decodes a FramedContent, rejecting trailing bytes.
func UnmarshalFramedContent(data []byte) (*FramedContent, error) {
	fc := new(FramedContent)
	if err := unmarshalAll(data, fc.unmarshal); err != nil {
		return nil, err
	}
	return fc, nil
}

// marshalFramedContentTBS returns the FramedContentTBS encoding that a
// message signature covers (RFC 9420, Section 6.1). groupContext must be
// set for member and new_member_commit senders and is ignored otherwise.
//
//	struct {
//	    ProtocolVersion version = mls10;
//	    WireFormat wire_format;
//	    FramedContent content;
//	    select (FramedContentTBS.content.sender.sender_type) {
//	        case member:
//	        case new_member_commit:   GroupContext context;
//	        case external:
//	        case new_member_proposal: struct{};
//	    };
//	} FramedContentTBS;
func marshalFramedContentTBS(wf WireFormat, fc *FramedContent, groupContext *GroupContext) ([]byte, error) {
	tbs, _, err := framedContentTBS(wf, fc, nil, groupContext)
	return tbs, err
}

// framedContentTBS is marshalFramedContentTBS that also returns where the
// FramedContent ends: tbs[2:end] is wire_format || content, the start of
// the ConfirmedTranscriptHashInput (RFC 9420, Section 8.2).
//
// body, when not nil, is the encoding of fc's content body (see
// FramedContent.marshalWithBody).
func framedContentTBS(wf WireFormat, fc *FramedContent, body []byte, groupContext *GroupContext) (tbs []byte, end int, err error) {
	tbs, err = marshalWith(func(b *cryptobyte.Builder) {
		b.AddUint16(uint16(ProtocolVersionMLS10))
		b.AddUint16(uint16(wf))
		fc.marshalWithBody(b, body)
		sofar, err := b.Bytes()
		if err != nil {
			return
		}
		end = len(sofar)
		switch fc.Sender.Type {
		case SenderTypeMember, SenderTypeNewMemberCommit:
			if groupContext == nil {
				b.SetError(errors.New("mls: FramedContentTBS needs the group context"))
				return
			}
			groupContext.marshal(b)
		}
	})
	return tbs, end, err
}

// marshalAuthenticatedContentTBM returns the AuthenticatedContentTBM
// encoding that the membership tag covers (RFC 9420, Section 6.2), given
// the FramedContentTBS from marshalFramedContentTBS.
//
//	struct {
//	    FramedContentTBS content_tbs;
//	    FramedContentAuthData auth;
//	} AuthenticatedContentTBM;
func marshalAuthenticatedContentTBM(contentTBS []byte, auth *FramedContentAuthData, ct ContentType) ([]byte, error) {
	return marshalWith(func(b *cryptobyte.Builder) {
		b.AddBytes(contentTBS)
		auth.marshal(b, ct)
	})
}

// FramedContentAuthData authenticates a FramedContent (RFC 9420,
// Section 6.1).
//
//	struct {
//	    opaque signature<V>;
//	    select (FramedContent.content_type) {
//	        case commit:      MAC confirmation_tag;
//	        case application:
//	        case proposal:    struct{};
//	    };
//	} FramedContentAuthData;
type FramedContentAuthData struct {
	Signature []byte
	// ConfirmationTag is set for commits.
	ConfirmationTag []byte
}

func (a *FramedContentAuthData) marshal(b *cryptobyte.Builder, ct ContentType) {
	writeOpaque(b, a.Signature)
	if ct == ContentTypeCommit {
		writeOpaque(b, a.ConfirmationTag)
	}
}

func (a *FramedContentAuthData) unmarshal(s *cryptobyte.String, ct ContentType) error {
	*a = FramedContentAuthData{}
	if !readOpaque(s, &a.Signature) {
		return errDecode
	}
	if ct == ContentTypeCommit && !readOpaque(s, &a.ConfirmationTag) {
		return errDecode
	}
	return nil
}

// AuthenticatedContent is a FramedContent with its authentication and the
// wire format it travels in (RFC 9420, Section 6.1). It is the input of
// proposal references and transcript hashes.
//
//	struct {
//	    WireFormat wire_format;
//	    FramedContent content;
//	    FramedContentAuthData auth;
//	} AuthenticatedContent;
type AuthenticatedContent struct {
	WireFormat WireFormat
	Content    FramedContent
	Auth       FramedContentAuthData

	// framed is the encoding of WireFormat and Content, kept by
	// signFramedContent and verifyContentSignature (a slice of the
	// FramedContentTBS they encode) for the transcript hash, so that a
	// large commit is not encoded again. It is valid only while
	// WireFormat and Content are unchanged; nothing changes them after
	// signing or verifying.
	framed []byte
}

// encodedBody returns the encoded content body (the proposal or commit)
// from framed, or nil when framed was not kept: protecting a commit
// encrypts the bytes that were signed instead of encoding a commit that
// adds thousands of members a second time.
func (ac *AuthenticatedContent) encodedBody() []byte {
	if ac.framed == nil {
		return nil
	}
	buf := getScratch()
	b := cryptobyte.NewBuilder(*buf)
	ac.Content.marshalHeader(b)
	hdr, err := b.Bytes()
	if err != nil {
		return nil
	}
	n := 2 + len(hdr) // wire_format, then the header
	putScratch(buf, hdr)
	if n > len(ac.framed) {
		return nil
	}
	return ac.framed[n:]
}

func (ac *AuthenticatedContent) marshal(b *cryptobyte.Builder) {
	b.AddUint16(uint16(ac.WireFormat))
	ac.Content.marshal(b)
	ac.Auth.marshal(b, ac.Content.ContentType)
}

func (ac *AuthenticatedContent) unmarshal(s *cryptobyte.String) error {
	*ac = AuthenticatedContent{}
	if !s.ReadUint16((*uint16)(&ac.WireFormat)) {
		return errDecode
	}
	// Only the two framed wire formats carry content (RFC 9420, Section 6).
	if ac.WireFormat != WireFormatPublicMessage && ac.WireFormat != WireFormatPrivateMessage {
		return fmt.Errorf("%w: wire format %d carries no content", errDecode, ac.WireFormat)
	}
	if err := ac.Content.unmarshal(s); err != nil {
		return err
	}
	return ac.Auth.unmarshal(s, ac.Content.ContentType)
}

// Marshal returns the TLS encoding of ac.
func (ac *AuthenticatedContent) Marshal() ([]byte, error) { return marshalWith(ac.marshal) }

// UnmarshalAuthenticatedContent decodes an AuthenticatedContent, rejecting
// trailing bytes.
func UnmarshalAuthenticatedContent(data []byte) (*AuthenticatedContent, error) {
	ac := new(AuthenticatedContent)
	if err := unmarshalAll(data, ac.unmarshal); err != nil {
		return nil, err
	}
	return ac, nil
}

// PublicMessage is a signed, unencrypted message (RFC 9420, Section 6.2).
//
//	struct {
//	    FramedContent content;
//	    FramedContentAuthData auth;
//	    select (PublicMessage.content.sender.sender_type) {
//	        case member:              MAC membership_tag;
//	        case external:
//	        case new_member_commit:
//	        case new_member_proposal: struct{};
//	    };
//	} PublicMessage;
type PublicMessage struct {
	Content FramedContent
	Auth    FramedContentAuthData
	// MembershipTag is set for member senders.
	MembershipTag []byte
}

func (pm *PublicMessage) marshal(b *cryptobyte.Builder) {
	pm.Content.marshal(b)
	pm.Auth.marshal(b, pm.Content.ContentType)
	if pm.Content.Sender.Type == SenderTypeMember {
		writeOpaque(b, pm.MembershipTag)
	}
}

func (pm *PublicMessage) unmarshal(s *cryptobyte.String) error {
	*pm = PublicMessage{}
	if err := pm.Content.unmarshal(s); err != nil {
		return err
	}
	if err := pm.Auth.unmarshal(s, pm.Content.ContentType); err != nil {
		return err
	}
	if pm.Content.Sender.Type == SenderTypeMember && !readOpaque(s, &pm.MembershipTag) {
		return errDecode
	}
	return nil
}

// Marshal returns the TLS encoding of pm (without the MLSMessage header).
func (pm *PublicMessage) Marshal() ([]byte, error) { return marshalWith(pm.marshal) }

// UnmarshalPublicMessage decodes a bare PublicMessage, rejecting trailing
// bytes.
func UnmarshalPublicMessage(data []byte) (*PublicMessage, error) {
	pm := new(PublicMessage)
	if err := unmarshalAll(data, pm.unmarshal); err != nil {
		return nil, err
	}
	return pm, nil
}

// PrivateMessage is an encrypted message (RFC 9420, Section 6.3).
//
//	struct {
//	    opaque group_id<V>;
//	    uint64 epoch;
//	    ContentType content_type;
//	    opaque authenticated_data<V>;
//	    opaque encrypted_sender_data<V>;
//	    opaque ciphertext<V>;
//	} PrivateMessage;
type PrivateMessage struct {
	GroupID             []byte
	Epoch               uint64
	ContentType         ContentType
	AuthenticatedData   []byte
	EncryptedSenderData []byte
	Ciphertext          []byte
}

func (pm *PrivateMessage) marshal(b *cryptobyte.Builder) {
	writeOpaque(b, pm.GroupID)
	b.AddUint64(pm.Epoch)
	if !pm.ContentType.valid() {
		b.SetError(fmt.Errorf("mls: invalid content type %d", pm.ContentType))
		return
	}
	b.AddUint8(uint8(pm.ContentType))
	writeOpaque(b, pm.AuthenticatedData)
	writeOpaque(b, pm.EncryptedSenderData)
	writeOpaque(b, pm.Ciphertext)
}

func (pm *PrivateMessage) unmarshal(s *cryptobyte.String) error {
	return pm.decode(s, false)
}

// decode reads a PrivateMessage. With shareCiphertext, Ciphertext and
// EncryptedSenderData alias the input instead of being copied: for a
// message that is decrypted and dropped while the input is still held
// (Group.ProcessMessage), so that a large commit is not copied once more.
// Every other field is copied.
func (pm *PrivateMessage) decode(s *cryptobyte.String, shareCiphertext bool) error {
	*pm = PrivateMessage{}
	if !readOpaque(s, &pm.GroupID) || !s.ReadUint64(&pm.Epoch) ||
		!s.ReadUint8((*uint8)(&pm.ContentType)) {
		return errDecode
	}
	if !pm.ContentType.valid() {
		return fmt.Errorf("%w: unknown content type %d", errDecode, pm.ContentType)
	}
	if !readOpaque(s, &pm.AuthenticatedData) {
		return errDecode
	}
	if !shareCiphertext {
		if !readOpaque(s, &pm.EncryptedSenderData) || !readOpaque(s, &pm.Ciphertext) {
			return errDecode
		}
		return nil
	}
	var sd, ct cryptobyte.String
	if !readVector(s, &sd) || !readVector(s, &ct) {
		return errDecode
	}
	pm.EncryptedSenderData = sd[:len(sd):len(sd)]
	pm.Ciphertext = ct[:len(ct):len(ct)]
	return nil
}

// Marshal returns the TLS encoding of pm (without the MLSMessage header).
func (pm *PrivateMessage) Marshal() ([]byte, error) { return marshalWith(pm.marshal) }

// UnmarshalPrivateMessage decodes a bare PrivateMessage, rejecting trailing
// bytes.
func UnmarshalPrivateMessage(data []byte) (*PrivateMessage, error) {
	pm := new(PrivateMessage)
	if err := unmarshalAll(data, pm.unmarshal); err != nil {
		return nil, err
	}
	return pm, nil
}

// PrivateMessageContent is the plaintext of PrivateMessage.ciphertext
// (RFC 9420, Section 6.3.1). Its layout depends on the content type, which
// travels in the clear in the PrivateMessage.
//
//	struct {
//	    select (PrivateMessage.content_type) {
//	        case application: opaque application_data<V>;
//	        case proposal:    Proposal proposal;
//	        case commit:      Commit commit;
//	    };
//	    FramedContentAuthData auth;
//	    opaque padding[length_of_padding];
//	} PrivateMessageContent;
type PrivateMessageContent struct {
	// Exactly the field matching the content type is set.
	ApplicationData []byte
	Proposal        *Proposal
	Commit          *Commit
	Auth            FramedContentAuthData
	// Padding is the number of zero bytes after auth.
	Padding int
}

// Marshal returns the encoding of c for content type ct, followed by
// c.Padding zero bytes.
func (c *PrivateMessageContent) Marshal(ct ContentType) ([]byte, error) {
	if c.Padding < 0 || c.Padding > maxVarint {
		return nil, fmt.Errorf("mls: invalid padding length %d", c.Padding)
	}
	return marshalWith(func(b *cryptobyte.Builder) {
		marshalContentBody(b, ct, c.ApplicationData, c.Proposal, c.Commit)
		c.Auth.marshal(b, ct)
		b.AddBytes(make([]byte, c.Padding))
	})
}

// UnmarshalPrivateMessageContent decodes the plaintext of a PrivateMessage
// of content type ct. Everything after auth is padding and must be zero
// (RFC 9420, Section 6.3.1: a receiver MUST reject non-zero padding).
func UnmarshalPrivateMessageContent(data []byte, ct ContentType) (*PrivateMessageContent, error) {
	c, _, err := unmarshalPrivateMessageContent(data, ct)
	return c, err
}

// unmarshalPrivateMessageContent is UnmarshalPrivateMessageContent that
// also returns the length of the content body: data[:bodyLen] is its
// encoding.
func unmarshalPrivateMessageContent(data []byte, ct ContentType) (c *PrivateMessageContent, bodyLen int, err error) {
	c = new(PrivateMessageContent)
	s := cryptobyte.String(data)
	if err := unmarshalContentBody(&s, ct, &c.ApplicationData, &c.Proposal, &c.Commit); err != nil {
		return nil, 0, err
	}
	bodyLen = len(data) - len(s)
	if err := c.Auth.unmarshal(&s, ct); err != nil {
		return nil, 0, err
	}
	for _, v := range s {
		if v != 0 {
			return nil, 0, fmt.Errorf("%w: non-zero padding", errDecode)
		}
	}
	c.Padding = len(s)
	return c, bodyLen, nil
}

// SenderData identifies the sender of a PrivateMessage and the ratchet
// generation of its key (RFC 9420, Section 6.3.2).
//
//	struct {
//	    uint32 leaf_index;
//	    uint32 generation;
//	    opaque reuse_guard[4];
//	} SenderData;
type SenderData struct {
	LeafIndex  leafIndex
	Generation uint32
	ReuseGuard [4]byte
}

func (sd *SenderData) marshal(b *cryptobyte.Builder) {
	b.AddUint32(uint32(sd.LeafIndex))
	b.AddUint32(sd.Generation)
	b.AddBytes(sd.ReuseGuard[:])
}

func (sd *SenderData) unmarshal(s *cryptobyte.String) error {
	if !s.ReadUint32((*uint32)(&sd.LeafIndex)) || !s.ReadUint32(&sd.Generation) ||
		!s.CopyBytes(sd.ReuseGuard[:]) {
		return errDecode
	}
	return nil
}

// Marshal returns the TLS encoding of sd.
func (sd *SenderData) Marshal() ([]byte, error) { return marshalWith(sd.marshal) }

// UnmarshalSenderData decodes a SenderData, rejecting trailing bytes.
func UnmarshalSenderData(data []byte) (*SenderData, error) {
	sd := new(SenderData)
	if err := unmarshalAll(data, sd.unmarshal); err != nil {
		return nil, err
	}
	return sd, nil
}
