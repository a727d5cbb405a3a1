package mls

// This file implements content authentication (RFC 9420, Section 6.1) and
// PublicMessage protection with the membership tag (Section 6.2).

import (
	"bytes"
	"crypto/hmac"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/cryptobyte"
)

// labelFramedContentTBS is the SignWithLabel label of message signatures
// (RFC 9420, Section 6.1).
const labelFramedContentTBS = "FramedContentTBS"

// errPublicMessage is the single error unprotectPublic returns when a
// membership tag or signature does not verify.
var errPublicMessage = errors.New("mls: message authentication failed")

// signatureKeyFunc returns the signature public key of the sender of fc:
// the member's leaf, the external sender, or the new member's key, as
// RFC 9420, Section 6.1 assigns it. It returns an error when the sender is
// not valid (a blank leaf, an unknown external sender index, ...).
type signatureKeyFunc func(fc *FramedContent) ([]byte, error)

// signFramedContent signs fc for wire format wf (RFC 9420, Section 6.1):
//
//	signature = SignWithLabel(., "FramedContentTBS", FramedContentTBS)
//
// groupContext is the GroupContext of the epoch the message is sent in; it
// is part of FramedContentTBS for member and new_member_commit senders. For a
// commit the caller adds the confirmation tag to the result before
// protecting it (it depends on the signature through the transcript hash).
func (s *cipherSuite) signFramedContent(rand io.Reader, key *SignaturePrivateKey, wf WireFormat, fc *FramedContent, groupContext *GroupContext) (*AuthenticatedContent, error) {
	if wf != WireFormatPublicMessage && wf != WireFormatPrivateMessage {
		return nil, fmt.Errorf("mls: wire format %d carries no framed content", wf)
	}
	if err := checkContentContext(fc, groupContext); err != nil {
		return nil, err
	}
	if key == nil || key.suite != s.id {
		return nil, errors.New("mls: signature key does not belong to the cipher suite")
	}
	buf := getScratch()
	all, signContent, framed, err := framedSignContent(*buf, wf, fc, nil, groupContext)
	if err != nil {
		return nil, err
	}
	sig, err := key.s.sign(rand, signContent)
	if err != nil {
		putScratch(buf, all)
		return nil, err
	}
	ac := &AuthenticatedContent{WireFormat: wf, Content: *fc, Auth: FramedContentAuthData{Signature: sig}}
	if fc.ContentType == ContentTypeCommit && cap(all) > maxScratch {
		// A buffer too large for the pool (a commit adding thousands
		// of members) is kept instead of copied.
		ac.framed = framed
	} else {
		ac.framed = keepFramed(fc, framed)
		putScratch(buf, all)
	}
	return ac, nil
}

// keepFramed returns a copy of the wire_format || content encoding for
// AuthenticatedContent.framed when fc is a commit (only commits enter the
// transcript hash), nil otherwise.
func keepFramed(fc *FramedContent, framed []byte) []byte {
	if fc.ContentType != ContentTypeCommit {
		return nil
	}
	return bytes.Clone(framed)
}

// framedSignContent encodes the SignContent that a content signature
// covers, SignContent("FramedContentTBS", FramedContentTBS) (RFC 9420,
// Sections 5.1.2 and 6.1), appending to buf[:0]: the TBS is encoded once,
// after room for the SignContent header, which is filled in once the TBS
// length is known. It returns everything written to buf (all), the
// SignContent and the wire_format || content part of the TBS, all slices
// of the same buffer. body is as for framedContentTBS.
func framedSignContent(buf []byte, wf WireFormat, fc *FramedContent, body []byte, groupContext *GroupContext) (all, signContent, framed []byte, err error) {
	room := 4 + len(labelPrefix) + len(labelFramedContentTBS) + 4
	buf = append(buf[:0], make([]byte, room)...)
	end := 0
	b := cryptobyte.NewBuilder(buf)
	b.AddUint16(uint16(ProtocolVersionMLS10))
	b.AddUint16(uint16(wf))
	fc.marshalWithBody(b, body)
	if sofar, err := b.Bytes(); err == nil {
		end = len(sofar)
	}
	switch fc.Sender.Type {
	case SenderTypeMember, SenderTypeNewMemberCommit:
		if groupContext == nil {
			b.SetError(errors.New("mls: FramedContentTBS needs the group context"))
			break
		}
		groupContext.marshal(b)
	}
	all, err = b.Bytes()
	if err != nil {
		return nil, nil, nil, err
	}
	tbs := all[room:]
	var hdr [64]byte
	h := appendLabeledInput(hdr[:0], labelFramedContentTBS, nil)
	h = appendVarint(h[:len(h)-1], len(tbs))
	start := room - len(h)
	copy(all[start:], h)
	return all, all[start:], all[room+2 : end : end], nil
}

// checkContentContext checks that fc belongs to the group and epoch of
// groupContext, for the senders whose signature covers the GroupContext.
func checkContentContext(fc *FramedContent, groupContext *GroupContext) error {
	if fc.Sender.Type != SenderTypeMember && fc.Sender.Type != SenderTypeNewMemberCommit {
		return nil
	}
	if groupContext == nil {
		return errors.New("mls: group context required for a member or new member commit")
	}
	if !bytes.Equal(fc.GroupID, groupContext.GroupID) || fc.Epoch != groupContext.Epoch {
		return fmt.Errorf("mls: content for epoch %d of another group or epoch (group context epoch %d)", fc.Epoch, groupContext.Epoch)
	}
	return nil
}

// verifyContentSignature verifies ac's signature over FramedContentTBS with
// the sender's key (RFC 9420, Section 6.1).
func (s *cipherSuite) verifyContentSignature(ac *AuthenticatedContent, groupContext *GroupContext, senderKey signatureKeyFunc) error {
	return s.verifyContentSignatureBody(ac, nil, groupContext, senderKey)
}

// verifyContentSignatureBody is verifyContentSignature with the content
// body already encoded, when body is not nil (see
// FramedContent.marshalWithBody).
func (s *cipherSuite) verifyContentSignatureBody(ac *AuthenticatedContent, body []byte, groupContext *GroupContext, senderKey signatureKeyFunc) error {
	if err := checkContentContext(&ac.Content, groupContext); err != nil {
		return err
	}
	pub, err := senderKey(&ac.Content)
	if err != nil {
		return err
	}
	buf := getScratch()
	all, signContent, framed, err := framedSignContent(*buf, ac.WireFormat, &ac.Content, body, groupContext)
	if err != nil {
		return err
	}
	defer putScratch(buf, all)
	if !s.sig.verify(pub, signContent, ac.Auth.Signature) {
		return errPublicMessage
	}
	ac.framed = keepFramed(&ac.Content, framed)
	return nil
}

// membershipTag computes
//
//	membership_tag = MAC(membership_key, AuthenticatedContentTBM)
//
// (RFC 9420, Section 6.2).
func (s *cipherSuite) membershipTag(membershipKey []byte, ac *AuthenticatedContent, groupContext *GroupContext) ([]byte, error) {
	tbs, err := marshalFramedContentTBS(ac.WireFormat, &ac.Content, groupContext)
	if err != nil {
		return nil, err
	}
	tbm, err := marshalAuthenticatedContentTBM(tbs, &ac.Auth, ac.Content.ContentType)
	if err != nil {
		return nil, err
	}
	return s.mac(membershipKey, tbm), nil
}

// protectPublic wraps ac in a PublicMessage (RFC 9420, Section 6.2),
// adding the membership tag for member senders. ac must be signed for the
// mls_public_message wire format and, for a commit, carry its confirmation
// tag. Application data is never sent as a PublicMessage: it would be
// readable by the Delivery Service.
func (s *cipherSuite) protectPublic(ac *AuthenticatedContent, membershipKey []byte, groupContext *GroupContext) (*PublicMessage, error) {
	if ac.WireFormat != WireFormatPublicMessage {
		return nil, fmt.Errorf("mls: content signed for wire format %d, not public_message", ac.WireFormat)
	}
	if ac.Content.ContentType == ContentTypeApplication {
		return nil, errors.New("mls: application data cannot be sent as a public message")
	}
	if ac.Content.ContentType == ContentTypeCommit && len(ac.Auth.ConfirmationTag) == 0 {
		return nil, errors.New("mls: commit without confirmation tag")
	}
	pm := &PublicMessage{Content: ac.Content, Auth: ac.Auth}
	if ac.Content.Sender.Type == SenderTypeMember {
		tag, err := s.membershipTag(membershipKey, ac, groupContext)
		if err != nil {
			return nil, err
		}
		pm.MembershipTag = tag
	}
	return pm, nil
}

// unprotectPublic authenticates a PublicMessage (RFC 9420, Section 6.2):
// for a member sender it checks the membership tag with the epoch's
// membership_key, then it verifies the signature with the key senderKey
// returns. groupContext is the GroupContext of the message's epoch.
func (s *cipherSuite) unprotectPublic(pm *PublicMessage, membershipKey []byte, groupContext *GroupContext, senderKey signatureKeyFunc) (*AuthenticatedContent, error) {
	if pm.Content.ContentType == ContentTypeApplication {
		return nil, errors.New("mls: application data in a public message")
	}
	if err := checkContentContext(&pm.Content, groupContext); err != nil {
		return nil, err
	}
	ac := &AuthenticatedContent{WireFormat: WireFormatPublicMessage, Content: pm.Content, Auth: pm.Auth}
	if pm.Content.Sender.Type == SenderTypeMember {
		tag, err := s.membershipTag(membershipKey, ac, groupContext)
		if err != nil {
			return nil, err
		}
		if !hmac.Equal(tag, pm.MembershipTag) {
			return nil, errPublicMessage
		}
	}
	if err := s.verifyContentSignature(ac, groupContext, senderKey); err != nil {
		return nil, err
	}
	return ac, nil
}
