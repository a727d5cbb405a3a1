package mls

// This file implements PrivateMessage protection (RFC 9420, Section 6.3):
// content encryption with keys from the secret tree (Section 6.3.1) and
// sender data encryption (Section 6.3.2), with the reuse guard.

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
)

// errPrivateMessage is the single error unprotectPrivate returns for every
// failure to decrypt or authenticate, so that a sender learns nothing about
// which check failed (key lookup, sender data or content decryption).
var errPrivateMessage = errors.New("mls: cannot decrypt private message")

// senderDataKeyNonce derives the key and nonce that encrypt SenderData
// (RFC 9420, Section 6.3.2):
//
//	ciphertext_sample = ciphertext[0..KDF.Nh-1]
//	sender_data_key   = ExpandWithLabel(sender_data_secret, "key", ciphertext_sample, AEAD.Nk)
//	sender_data_nonce = ExpandWithLabel(sender_data_secret, "nonce", ciphertext_sample, AEAD.Nn)
//
// A ciphertext shorter than KDF.Nh is used whole.
func (s *cipherSuite) senderDataKeyNonce(senderDataSecret, ciphertext []byte) (key, nonce []byte) {
	sample := ciphertext
	if len(sample) > s.nh {
		sample = sample[:s.nh]
	}
	e := s.newExpander(senderDataSecret)
	return e.expandWithLabel(labelKey, sample, s.aead.nk), e.expandWithLabel(labelNonce, sample, s.aead.nn)
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

// protectPrivate encrypts ac as a PrivateMessage (RFC 9420, Section 6.3).
//
// ac must be complete: signed over wire format mls_private_message, with
// the confirmation tag set for a commit, and sent by a member. The content
// key is the next generation of the sender's ratchet in tree; it is deleted
// after use. The plaintext is padded with zeros to a multiple of
// paddingBlock bytes (no padding when paddingBlock ≤ 1). The reuse guard is
// read from rand.
func (s *cipherSuite) protectPrivate(rand io.Reader, ac *AuthenticatedContent, tree *secretTree, senderDataSecret []byte, paddingBlock int) (*PrivateMessage, error) {
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

	// Section 6.3.1: encode the content, pad it and encrypt it.
	content := PrivateMessageContent{
		ApplicationData: fc.ApplicationData,
		Proposal:        fc.Proposal,
		Commit:          fc.Commit,
		Auth:            ac.Auth,
	}
	plaintext, err := content.Marshal(fc.ContentType)
	if err != nil {
		return nil, err
	}
	if paddingBlock > 1 && len(plaintext)%paddingBlock != 0 {
		content.Padding = paddingBlock - len(plaintext)%paddingBlock
		plaintext = append(plaintext, make([]byte, content.Padding)...)
	}
	aad, err := marshalPrivateContentAAD(fc.GroupID, fc.Epoch, fc.ContentType, fc.AuthenticatedData)
	if err != nil {
		return nil, err
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
	ciphertext := aead.Seal(nil, key.nonce, plaintext, aad)
	clear(plaintext)

	// Section 6.3.2: encrypt the sender data under a key bound to the
	// content ciphertext.
	senderData := SenderData{LeafIndex: fc.Sender.LeafIndex, Generation: key.generation, ReuseGuard: guard}
	sdPlain, err := senderData.Marshal()
	if err != nil {
		return nil, err
	}
	sdAAD, err := marshalSenderDataAAD(fc.GroupID, fc.Epoch, fc.ContentType)
	if err != nil {
		return nil, err
	}
	sdKey, sdNonce := s.senderDataKeyNonce(senderDataSecret, ciphertext)
	defer clear(sdKey)
	sdAEAD, err := s.aead.new(sdKey)
	if err != nil {
		return nil, err
	}
	return &PrivateMessage{
		GroupID:             fc.GroupID,
		Epoch:               fc.Epoch,
		ContentType:         fc.ContentType,
		AuthenticatedData:   fc.AuthenticatedData,
		EncryptedSenderData: sdAEAD.Seal(nil, sdNonce, sdPlain, sdAAD),
		Ciphertext:          ciphertext,
	}, nil
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
func (s *cipherSuite) unprotectPrivate(pm *PrivateMessage, tree *secretTree, senderDataSecret []byte, groupContext *GroupContext, senderKey signatureKeyFunc) (*AuthenticatedContent, error) {
	ac, key, err := s.unprotectPrivatePending(pm, tree, senderDataSecret, groupContext, senderKey)
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
func (s *cipherSuite) unprotectPrivatePending(pm *PrivateMessage, tree *secretTree, senderDataSecret []byte, groupContext *GroupContext, senderKey signatureKeyFunc) (*AuthenticatedContent, *pendingKey, error) {
	typ, err := ratchetTypeFor(pm.ContentType)
	if err != nil {
		return nil, nil, err
	}
	if groupContext == nil || !bytes.Equal(pm.GroupID, groupContext.GroupID) || pm.Epoch != groupContext.Epoch {
		return nil, nil, fmt.Errorf("mls: private message for epoch %d does not belong to this group and epoch", pm.Epoch)
	}

	// Section 6.3.2: recover the sender data.
	sdAAD, err := marshalSenderDataAAD(pm.GroupID, pm.Epoch, pm.ContentType)
	if err != nil {
		return nil, nil, err
	}
	sdKey, sdNonce := s.senderDataKeyNonce(senderDataSecret, pm.Ciphertext)
	sdAEAD, err := s.aead.new(sdKey)
	clear(sdKey)
	if err != nil {
		return nil, nil, err
	}
	sdPlain, err := sdAEAD.Open(nil, sdNonce, pm.EncryptedSenderData, sdAAD)
	if err != nil {
		return nil, nil, errPrivateMessage
	}
	senderData, err := UnmarshalSenderData(sdPlain)
	if err != nil {
		return nil, nil, errPrivateMessage
	}

	// Section 6.3.1: decrypt the content with the sender's key of that
	// generation, looked up without changing the tree.
	key, err := tree.lookupKey(uint32(senderData.LeafIndex), typ, senderData.Generation)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", errPrivateMessage, err)
	}
	ac, err := s.openPrivateContent(pm, key, senderData, groupContext, senderKey)
	if err != nil {
		key.discard()
		return nil, nil, err
	}
	return ac, key, nil
}

// openPrivateContent decrypts pm's content with key and verifies the
// signature of the content (RFC 9420, Sections 6.3.1 and 6.1).
func (s *cipherSuite) openPrivateContent(pm *PrivateMessage, key *pendingKey, senderData *SenderData, groupContext *GroupContext, senderKey signatureKeyFunc) (*AuthenticatedContent, error) {
	aad, err := marshalPrivateContentAAD(pm.GroupID, pm.Epoch, pm.ContentType, pm.AuthenticatedData)
	if err != nil {
		return nil, err
	}
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
