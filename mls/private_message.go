package mls

// This file implements PrivateMessage protection (RFC 9420, Section 6.3):
// content encryption with keys from the secret tree (Section 6.3.1) and
// sender data encryption (Section 6.3.2), with the reuse guard.

import (
	"bytes"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/cryptobyte"
)

// errPrivateMessage is the single error unprotectPrivate returns for every
// failure to decrypt or authenticate, so that a sender learns nothing about
// which check failed (key lookup, sender data or content decryption).
var errPrivateMessage = errors.New("mls: cannot decrypt private message")

// senderDataKeys derives the keys and nonces that encrypt SenderData in
// one epoch (RFC 9420, Section 6.3.2):
//
//	ciphertext_sample = ciphertext[0..KDF.Nh-1]
//	sender_data_key   = ExpandWithLabel(sender_data_secret, "key", ciphertext_sample, AEAD.Nk)
//	sender_data_nonce = ExpandWithLabel(sender_data_secret, "nonce", ciphertext_sample, AEAD.Nn)
//
// It keeps one HMAC keyed with sender_data_secret for the whole epoch, so
// that a message costs two HMAC computations and no allocation. It is not
// safe for concurrent use (nor is the Group that holds it).
type senderDataKeys struct {
	e          *expander
	key, nonce [32]byte
}

// newSenderDataKeys returns the sender data key deriver of
// senderDataSecret.
func (s *cipherSuite) newSenderDataKeys(senderDataSecret []byte) *senderDataKeys {
	return &senderDataKeys{e: s.newExpander(senderDataSecret)}
}

// keyNonce returns sender_data_key and sender_data_nonce for ciphertext; a
// ciphertext shorter than KDF.Nh is used whole. Both live in sd until the
// next call or clear, which the caller calls once done with them.
func (sd *senderDataKeys) keyNonce(ciphertext []byte) (key, nonce []byte) {
	s := sd.e.s
	sample := ciphertext
	if len(sample) > s.nh {
		sample = sample[:s.nh]
	}
	key, nonce = sd.key[:s.aead.nk], sd.nonce[:s.aead.nn]
	sd.e.expandWithLabelTo(key, labelKey, sample)
	sd.e.expandWithLabelTo(nonce, labelNonce, sample)
	return key, nonce
}

// clear zeroes the last key and nonce.
func (sd *senderDataKeys) clear() {
	clear(sd.key[:])
	clear(sd.nonce[:])
}

// ratchetTypeFor returns the hash ratchet that keys content of type ct
// (RFC 9420, Section 9.1).
func ratchetTypeFor(ct ContentType) (ratchetType, error) {
	switch ct {
	case ContentTypeApplication:
		return applicationRatchet, nil
	case ContentTypeProposal, ContentTypeCommit:
		return handshakeRatchet, nil
	}
	return 0, fmt.Errorf("mls: invalid content type %d", ct)
}

// applyReuseGuard XORs the reuse guard into the first four bytes of the
// ratchet nonce, in place (RFC 9420, Section 6.3.1). The guard protects
// against nonce reuse if a client's state is copied or rolled back: two
// encryptions with the same generation still get different nonces unless
// the guards also collide.
func applyReuseGuard(nonce []byte, guard [4]byte) {
	subtle.XORBytes(nonce[:4], nonce[:4], guard[:])
}

// senderDataSize is the length of an encoded SenderData: leaf_index,
// generation and reuse_guard (RFC 9420, Section 6.3.2).
const senderDataSize = 4 + 4 + 4

// protectPrivate encrypts ac as a PrivateMessage (RFC 9420, Section 6.3)
// and returns its MLSMessage encoding.
//
// ac must be complete: signed over wire format mls_private_message, with
// the confirmation tag set for a commit, and sent by a member. The content
// key is the next generation of the sender's ratchet in tree; it is deleted
// after use. The plaintext is padded with zeros to a multiple of
// paddingBlock bytes (no padding when paddingBlock ≤ 1). The reuse guard is
// read from rand.
//
// The message is built in one buffer of its final size: the
// PrivateContentAAD and SenderDataAAD are prefixes of the PrivateMessage
// encoding, and the content and sender data are encrypted in place.
func (s *cipherSuite) protectPrivate(rand io.Reader, ac *AuthenticatedContent, tree *secretTree, sd *senderDataKeys, paddingBlock int) ([]byte, error) {
	fc := &ac.Content
	if ac.WireFormat != WireFormatPrivateMessage {
		return nil, fmt.Errorf("mls: content signed for wire format %d, not private_message", ac.WireFormat)
	}
	if fc.Sender.Type != SenderTypeMember {
		return nil, fmt.Errorf("mls: sender type %d cannot send a private message", fc.Sender.Type)
	}
	if fc.ContentType == ContentTypeCommit && len(ac.Auth.ConfirmationTag) == 0 {
		return nil, errors.New("mls: commit without confirmation tag")
	}
	typ, err := ratchetTypeFor(fc.ContentType)
	if err != nil {
		return nil, err
	}

	// Section 6.3.1: the content is encoded (and padded) below, in place;
	// a proposal or commit is encoded into a scratch buffer first, since
	// its length is needed for the layout.
	var content []byte
	contentLen := 0
	if fc.ContentType == ContentTypeApplication {
		if len(fc.ApplicationData) > maxVarint || len(ac.Auth.Signature) > maxVarint {
			return nil, errors.New("mls: vector too long to encode")
		}
		contentLen = varintLen(len(fc.ApplicationData)) + len(fc.ApplicationData) +
			varintLen(len(ac.Auth.Signature)) + len(ac.Auth.Signature)
	} else {
		buf := getScratch()
		b := cryptobyte.NewBuilder(*buf)
		if body := ac.encodedBody(); body != nil {
			b.AddBytes(body)
		} else {
			marshalContentBody(b, fc.ContentType, fc.ApplicationData, fc.Proposal, fc.Commit)
		}
		ac.Auth.marshal(b, fc.ContentType)
		if content, err = b.Bytes(); err != nil {
			return nil, err
		}
		defer putScratch(buf, content)
		contentLen = len(content)
	}
	padding := 0
	if paddingBlock > 1 && contentLen%paddingBlock != 0 {
		padding = paddingBlock - contentLen%paddingBlock
	}

	var guard [4]byte
	if _, err := io.ReadFull(rand, guard[:]); err != nil {
		return nil, fmt.Errorf("mls: reading randomness: %w", err)
	}
	key, err := tree.nextKey(uint32(fc.Sender.LeafIndex), typ)
	if err != nil {
		return nil, err
	}
	defer key.zero()
	applyReuseGuard(key.nonce, guard)
	aead, err := s.aead.new(key.key)
	if err != nil {
		return nil, err
	}

	// The MLSMessage header and the PrivateMessage up to the ciphertext.
	sdLen := senderDataSize + aead.Overhead()
	ctLen := contentLen + padding + aead.Overhead()
	if len(fc.GroupID) > maxVarint || len(fc.AuthenticatedData) > maxVarint || ctLen > maxVarint {
		return nil, errors.New("mls: vector too long to encode")
	}
	enc := make([]byte, 0, 4+
		varintLen(len(fc.GroupID))+len(fc.GroupID)+8+1+
		varintLen(len(fc.AuthenticatedData))+len(fc.AuthenticatedData)+
		varintLen(sdLen)+sdLen+varintLen(ctLen)+ctLen)
	enc = binary.BigEndian.AppendUint16(enc, uint16(ProtocolVersionMLS10))
	enc = binary.BigEndian.AppendUint16(enc, uint16(WireFormatPrivateMessage))
	pmStart := len(enc)
	enc = appendVarint(enc, len(fc.GroupID))
	enc = append(enc, fc.GroupID...)
	enc = binary.BigEndian.AppendUint64(enc, fc.Epoch)
	enc = append(enc, byte(fc.ContentType))
	sdAAD := enc[pmStart:len(enc):len(enc)] // SenderDataAAD
	enc = appendVarint(enc, len(fc.AuthenticatedData))
	enc = append(enc, fc.AuthenticatedData...)
	contentAAD := enc[pmStart:len(enc):len(enc)] // PrivateContentAAD
	enc = appendVarint(enc, sdLen)
	sdStart := len(enc)
	enc = enc[:sdStart+sdLen]
	enc = appendVarint(enc, ctLen)

	// Section 6.3.1: encrypt the padded content (the padding is the
	// zeroed tail of the fresh buffer).
	ctStart := len(enc)
	if fc.ContentType == ContentTypeApplication {
		enc = appendVarint(enc, len(fc.ApplicationData))
		enc = append(enc, fc.ApplicationData...)
		enc = appendVarint(enc, len(ac.Auth.Signature))
		enc = append(enc, ac.Auth.Signature...)
	} else {
		enc = append(enc, content...)
	}
	enc = enc[:len(enc)+padding]
	plaintext := enc[ctStart:]
	ciphertext := aead.Seal(plaintext[:0], key.nonce, plaintext, contentAAD)
	enc = enc[:ctStart+len(ciphertext)]

	// Section 6.3.2: encrypt the sender data under a key bound to the
	// content ciphertext.
	senderData := enc[sdStart : sdStart+senderDataSize]
	binary.BigEndian.PutUint32(senderData, uint32(fc.Sender.LeafIndex))
	binary.BigEndian.PutUint32(senderData[4:], key.generation)
	copy(senderData[8:], guard[:])
	sdKey, sdNonce := sd.keyNonce(ciphertext)
	defer sd.clear()
	sdAEAD, err := s.aead.new(sdKey)
	if err != nil {
		return nil, err
	}
	sdAEAD.Seal(senderData[:0], sdNonce, senderData, sdAAD)
	return enc, nil
}

// unprotectPrivate decrypts a PrivateMessage of the epoch whose secret tree
// and sender_data_secret are given (RFC 9420, Section 6.3) and verifies its
// signature (Section 6.1).
//
// pm.GroupID and pm.Epoch must be those of groupContext, the GroupContext
// of the epoch whose secrets are given; the signature covers it. senderKey
// returns the signature public key of the sending member, or an error if
// the leaf is blank.
//
// A message whose key was already used, or is outside the secret tree's
// window, is refused. The content key is deleted only once the message
// decrypted and its signature verified: a refused message burns no
// generation.
func (s *cipherSuite) unprotectPrivate(pm *PrivateMessage, tree *secretTree, sd *senderDataKeys, groupContext *GroupContext, senderKey signatureKeyFunc) (*AuthenticatedContent, error) {
	ac, key, err := s.unprotectPrivatePending(pm, tree, sd, groupContext, senderKey)
	if err != nil {
		return nil, err
	}
	key.commit()
	return ac, nil
}

// unprotectPrivatePending is unprotectPrivate leaving the secret tree
// unchanged: on success the caller commits the returned key once it
// accepts the message (deleting the generation) or discards it. On error
// the tree is unchanged and there is nothing to discard.
func (s *cipherSuite) unprotectPrivatePending(pm *PrivateMessage, tree *secretTree, sd *senderDataKeys, groupContext *GroupContext, senderKey signatureKeyFunc) (*AuthenticatedContent, *pendingKey, error) {
	typ, err := ratchetTypeFor(pm.ContentType)
	if err != nil {
		return nil, nil, err
	}
	if groupContext == nil || !bytes.Equal(pm.GroupID, groupContext.GroupID) || pm.Epoch != groupContext.Epoch {
		return nil, nil, fmt.Errorf("mls: private message for epoch %d does not belong to this group and epoch", pm.Epoch)
	}

	// Section 6.3.2: recover the sender data. The SenderDataAAD is a
	// prefix of the PrivateContentAAD; both are built once, in a scratch
	// buffer that also receives the sender data plaintext.
	buf := getScratch()
	aad, sdAADLen := appendPrivateContentAAD(*buf, pm)
	sdKey, sdNonce := sd.keyNonce(pm.Ciphertext)
	sdAEAD, err := s.aead.new(sdKey)
	if err != nil {
		sd.clear()
		putScratch(buf, aad)
		return nil, nil, err
	}
	sdPlain, err := sdAEAD.Open(aad[len(aad):], sdNonce, pm.EncryptedSenderData, aad[:sdAADLen])
	sd.clear()
	var senderData SenderData
	ok := err == nil && len(sdPlain) == senderDataSize
	if ok {
		senderData.LeafIndex = leafIndex(binary.BigEndian.Uint32(sdPlain))
		senderData.Generation = binary.BigEndian.Uint32(sdPlain[4:])
		copy(senderData.ReuseGuard[:], sdPlain[8:])
		clear(sdPlain)
	}
	if !ok {
		putScratch(buf, aad)
		return nil, nil, errPrivateMessage
	}
	defer putScratch(buf, aad)

	// Section 6.3.1: decrypt the content with the sender's key of that
	// generation, looked up without changing the tree.
	key, err := tree.lookupKey(uint32(senderData.LeafIndex), typ, senderData.Generation)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", errPrivateMessage, err)
	}
	ac, err := s.openPrivateContent(pm, aad, key, &senderData, groupContext, senderKey)
	if err != nil {
		key.discard()
		return nil, nil, err
	}
	return ac, key, nil
}

// appendPrivateContentAAD appends pm's PrivateContentAAD (RFC 9420,
// Section 6.3.1) to b[:0] and returns it with the length of its prefix that
// is the SenderDataAAD (Section 6.3.2):
//
//	struct {
//	    opaque group_id<V>;
//	    uint64 epoch;
//	    ContentType content_type;
//	    opaque authenticated_data<V>;   // PrivateContentAAD only
//	} PrivateContentAAD, SenderDataAAD;
//
// The fields come from a decoded message, so their lengths are valid.
func appendPrivateContentAAD(b []byte, pm *PrivateMessage) (aad []byte, senderDataAAD int) {
	b = appendVarint(b[:0], len(pm.GroupID))
	b = append(b, pm.GroupID...)
	b = binary.BigEndian.AppendUint64(b, pm.Epoch)
	b = append(b, byte(pm.ContentType))
	senderDataAAD = len(b)
	b = appendVarint(b, len(pm.AuthenticatedData))
	return append(b, pm.AuthenticatedData...), senderDataAAD
}

// openPrivateContent decrypts pm's content with key and verifies the
// signature of the content (RFC 9420, Sections 6.3.1 and 6.1);
// aad is its PrivateContentAAD.
func (s *cipherSuite) openPrivateContent(pm *PrivateMessage, aad []byte, key *pendingKey, senderData *SenderData, groupContext *GroupContext, senderKey signatureKeyFunc) (*AuthenticatedContent, error) {
	// The key's nonce may be a kept key of the tree: XOR the guard into a
	// copy.
	var nonceBuf [32]byte
	nonce := append(nonceBuf[:0], key.key.nonce...)
	applyReuseGuard(nonce, senderData.ReuseGuard)
	aead, err := s.aead.new(key.key.key)
	if err != nil {
		return nil, err
	}
	// The plaintext is decrypted into a scratch buffer: decoding copies
	// what it keeps, and the buffer is zeroed when it is given back.
	buf := getScratch()
	plaintext, err := aead.Open(*buf, nonce, pm.Ciphertext, aad)
	if err != nil {
		used := *buf
		if n := len(pm.Ciphertext); n <= cap(used) {
			used = used[:n]
		}
		putScratch(buf, used)
		return nil, errPrivateMessage
	}
	defer putScratch(buf, plaintext)
	content, bodyLen, err := unmarshalPrivateMessageContent(plaintext, pm.ContentType)
	if err != nil {
		return nil, errPrivateMessage
	}

	ac := &AuthenticatedContent{
		WireFormat: WireFormatPrivateMessage,
		Content: FramedContent{
			GroupID:           pm.GroupID,
			Epoch:             pm.Epoch,
			Sender:            Sender{Type: SenderTypeMember, LeafIndex: senderData.LeafIndex},
			AuthenticatedData: pm.AuthenticatedData,
			ContentType:       pm.ContentType,
			ApplicationData:   content.ApplicationData,
			Proposal:          content.Proposal,
			Commit:            content.Commit,
		},
		Auth: content.Auth,
	}
	// The body was decoded from plaintext[:bodyLen], its canonical
	// encoding: the signature input reuses those bytes.
	if err := s.verifyContentSignatureBody(ac, plaintext[:bodyLen], groupContext, senderKey); err != nil {
		return nil, err
	}
	return ac, nil
}
