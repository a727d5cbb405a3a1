package mls

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"

	"qpchat/internal/vectors"

	"golang.org/x/crypto/cryptobyte"
)

type messageProtectionVector struct {
	CipherSuite             CipherSuite `json:"cipher_suite"`
	GroupID                 vectors.Hex `json:"group_id"`
	Epoch                   uint64      `json:"epoch"`
	TreeHash                vectors.Hex `json:"tree_hash"`
	ConfirmedTranscriptHash vectors.Hex `json:"confirmed_transcript_hash"`

	SignaturePriv vectors.Hex `json:"signature_priv"`
	SignaturePub  vectors.Hex `json:"signature_pub"`

	EncryptionSecret vectors.Hex `json:"encryption_secret"`
	SenderDataSecret vectors.Hex `json:"sender_data_secret"`
	MembershipKey    vectors.Hex `json:"membership_key"`

	Proposal     vectors.Hex `json:"proposal"`
	ProposalPub  vectors.Hex `json:"proposal_pub"`
	ProposalPriv vectors.Hex `json:"proposal_priv"`

	Commit     vectors.Hex `json:"commit"`
	CommitPub  vectors.Hex `json:"commit_pub"`
	CommitPriv vectors.Hex `json:"commit_priv"`

	Application     vectors.Hex `json:"application"`
	ApplicationPriv vectors.Hex `json:"application_priv"`
}

func TestMessageProtection(t *testing.T) {
	var tests []messageProtectionVector
	loadMLSVectors(t, "message-protection.json", &tests)
	tally := newSuiteTally("message-protection.json")
	for i, tc := range tests {
		tally.run(t, tc.CipherSuite, i, func(t *testing.T, s *cipherSuite) { testMessageProtection(t, s, &tc) })
	}
	tally.log(t)
}

// protectionFixture is the group state a message-protection vector
// describes: member 1 of a two-member group sends every message.
type protectionFixture struct {
	suite *cipherSuite
	tc    *messageProtectionVector
	gc    *GroupContext
	key   *SignaturePrivateKey
}

const protectionSender = leafIndex(1)

// senderKey returns signature_pub for member 1 and refuses anyone else.
func (f *protectionFixture) senderKey(fc *FramedContent) ([]byte, error) {
	if fc.Sender.Type != SenderTypeMember || fc.Sender.LeafIndex != protectionSender {
		return nil, fmt.Errorf("unexpected sender %+v", fc.Sender)
	}
	return f.tc.SignaturePub, nil
}

func (f *protectionFixture) tree(t *testing.T) *secretTree {
	t.Helper()
	tree, err := newSecretTree(f.suite, f.tc.EncryptionSecret, 2)
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

// content returns a FramedContent from member 1 carrying body, which is a
// decoded Proposal or Commit, or application data.
func (f *protectionFixture) content(ct ContentType, raw []byte) (*FramedContent, error) {
	fc := &FramedContent{
		GroupID:           f.tc.GroupID,
		Epoch:             f.tc.Epoch,
		Sender:            Sender{Type: SenderTypeMember, LeafIndex: protectionSender},
		AuthenticatedData: []byte("authenticated data"),
		ContentType:       ct,
	}
	var err error
	switch ct {
	case ContentTypeApplication:
		fc.ApplicationData = raw
	case ContentTypeProposal:
		fc.Proposal, err = UnmarshalProposal(raw)
	case ContentTypeCommit:
		fc.Commit, err = UnmarshalCommit(raw)
	}
	return fc, err
}

// sign signs fc for wire format wf, adding a confirmation tag to commits.
func (f *protectionFixture) sign(t *testing.T, wf WireFormat, fc *FramedContent) *AuthenticatedContent {
	t.Helper()
	ac, err := f.suite.signFramedContent(rand.Reader, f.key, wf, fc, f.gc)
	if err != nil {
		t.Fatalf("signFramedContent: %v", err)
	}
	if fc.ContentType == ContentTypeCommit {
		ac.Auth.ConfirmationTag = f.suite.confirmationTag(f.tc.MembershipKey, f.tc.ConfirmedTranscriptHash)
	}
	return ac
}

// body returns the encoding of the content body of fc, to compare with
// the raw proposal, commit or application data of the vector.
func contentBody(t *testing.T, fc *FramedContent) []byte {
	t.Helper()
	var b []byte
	var err error
	switch fc.ContentType {
	case ContentTypeApplication:
		return fc.ApplicationData
	case ContentTypeProposal:
		b, err = fc.Proposal.Marshal()
	case ContentTypeCommit:
		b, err = fc.Commit.Marshal()
	}
	if err != nil {
		t.Fatalf("re-encoding content: %v", err)
	}
	return b
}

func testMessageProtection(t *testing.T, s *cipherSuite, tc *messageProtectionVector) {
	key, err := ParseSignaturePrivateKey(tc.CipherSuite, tc.SignaturePriv)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(key.PublicKey(), tc.SignaturePub) {
		t.Fatalf("signature_priv does not match signature_pub")
	}
	f := &protectionFixture{
		suite: s,
		tc:    tc,
		key:   key,
		gc: &GroupContext{
			Version:                 ProtocolVersionMLS10,
			CipherSuite:             tc.CipherSuite,
			GroupID:                 tc.GroupID,
			Epoch:                   tc.Epoch,
			TreeHash:                tc.TreeHash,
			ConfirmedTranscriptHash: tc.ConfirmedTranscriptHash,
		},
	}
	cases := []struct {
		name           string
		ct             ContentType
		raw, pub, priv []byte
	}{
		{"proposal", ContentTypeProposal, tc.Proposal, tc.ProposalPub, tc.ProposalPriv},
		{"commit", ContentTypeCommit, tc.Commit, tc.CommitPub, tc.CommitPriv},
		{"application", ContentTypeApplication, tc.Application, nil, tc.ApplicationPriv},
	}
	for _, c := range cases {
		// Every field of the vector is checked: proposal_pub and
		// commit_pub must be present (application data has no
		// PublicMessage form, RFC 9420, Section 6.2).
		switch {
		case c.ct == ContentTypeApplication:
		case c.pub == nil:
			t.Errorf("%s_pub missing from the vector", c.name)
		default:
			testPublicVector(t, f, c.name, c.ct, c.raw, c.pub)
		}
		if c.raw == nil || c.priv == nil {
			t.Fatalf("%s or %s_priv missing from the vector", c.name, c.name)
		}
		testPublicRoundTrip(t, f, c.name, c.ct, c.raw)
		testPrivateVector(t, f, c.name, c.ct, c.raw, c.priv)
		testPrivateRoundTrip(t, f, c.name, c.ct, c.raw)
	}
}

// testPublicVector unprotects the vector's PublicMessage.
func testPublicVector(t *testing.T, f *protectionFixture, name string, ct ContentType, raw, pub []byte) {
	msg, err := UnmarshalMLSMessage(pub)
	if err != nil {
		t.Fatalf("%s_pub: UnmarshalMLSMessage: %v", name, err)
	}
	if msg.WireFormat != WireFormatPublicMessage {
		t.Fatalf("%s_pub: wire format %d", name, msg.WireFormat)
	}
	ac, err := f.suite.unprotectPublic(msg.PublicMessage, f.tc.MembershipKey, f.gc, f.senderKey)
	if err != nil {
		t.Fatalf("%s_pub: unprotectPublic: %v", name, err)
	}
	if ac.Content.ContentType != ct {
		t.Errorf("%s_pub: content type %d, want %d", name, ac.Content.ContentType, ct)
	}
	if got := contentBody(t, &ac.Content); !bytes.Equal(got, raw) {
		t.Errorf("%s_pub: content = %x, want %x", name, got, raw)
	}
	// A wrong membership key or a modified tag is refused.
	wrongKey := append([]byte(nil), f.tc.MembershipKey...)
	wrongKey[0] ^= 1
	if _, err := f.suite.unprotectPublic(msg.PublicMessage, wrongKey, f.gc, f.senderKey); !errors.Is(err, errPublicMessage) {
		t.Errorf("%s_pub with a wrong membership key: err = %v, want errPublicMessage", name, err)
	}
	// A modified authenticated_data breaks the membership tag and the
	// signature.
	msg.PublicMessage.Content.AuthenticatedData = append(msg.PublicMessage.Content.AuthenticatedData, 0)
	if _, err := f.suite.unprotectPublic(msg.PublicMessage, f.tc.MembershipKey, f.gc, f.senderKey); err == nil {
		t.Errorf("%s_pub with modified authenticated data: no error", name)
	}
}

// testPublicRoundTrip protects the raw value as a PublicMessage and
// unprotects the result; application data must be refused.
func testPublicRoundTrip(t *testing.T, f *protectionFixture, name string, ct ContentType, raw []byte) {
	fc, err := f.content(ct, raw)
	if err != nil {
		t.Fatalf("%s: decoding raw value: %v", name, err)
	}
	ac := f.sign(t, WireFormatPublicMessage, fc)
	pm, err := f.suite.protectPublic(ac, f.tc.MembershipKey, f.gc)
	if ct == ContentTypeApplication {
		if err == nil {
			t.Errorf("%s: protectPublic of application data: no error", name)
		}
		return
	}
	if err != nil {
		t.Fatalf("%s: protectPublic: %v", name, err)
	}
	wire, err := (&MLSMessage{Version: ProtocolVersionMLS10, WireFormat: WireFormatPublicMessage, PublicMessage: pm}).Marshal()
	if err != nil {
		t.Fatalf("%s: MLSMessage.Marshal: %v", name, err)
	}
	msg, err := UnmarshalMLSMessage(wire)
	if err != nil {
		t.Fatalf("%s: UnmarshalMLSMessage(own PublicMessage): %v", name, err)
	}
	got, err := f.suite.unprotectPublic(msg.PublicMessage, f.tc.MembershipKey, f.gc, f.senderKey)
	if err != nil {
		t.Fatalf("%s: unprotectPublic(protectPublic(...)): %v", name, err)
	}
	if body := contentBody(t, &got.Content); !bytes.Equal(body, raw) {
		t.Errorf("%s: public round trip content = %x, want %x", name, body, raw)
	}
	// Content signed for the other wire format is refused.
	if _, err := f.suite.protectPublic(f.sign(t, WireFormatPrivateMessage, fc), f.tc.MembershipKey, f.gc); err == nil {
		t.Errorf("%s: protectPublic of content signed for private_message: no error", name)
	}
}

// testPrivateVector unprotects the vector's PrivateMessage.
func testPrivateVector(t *testing.T, f *protectionFixture, name string, ct ContentType, raw, priv []byte) {
	msg, err := UnmarshalMLSMessage(priv)
	if err != nil {
		t.Fatalf("%s_priv: UnmarshalMLSMessage: %v", name, err)
	}
	if msg.WireFormat != WireFormatPrivateMessage {
		t.Fatalf("%s_priv: wire format %d", name, msg.WireFormat)
	}
	tree := f.tree(t)
	ac, err := f.suite.unprotectPrivate(msg.PrivateMessage, tree, f.suite.newSenderDataKeys(f.tc.SenderDataSecret), f.gc, f.senderKey)
	if err != nil {
		t.Fatalf("%s_priv: unprotectPrivate: %v", name, err)
	}
	if ac.Content.ContentType != ct {
		t.Errorf("%s_priv: content type %d, want %d", name, ac.Content.ContentType, ct)
	}
	if got := contentBody(t, &ac.Content); !bytes.Equal(got, raw) {
		t.Errorf("%s_priv: content = %x, want %x", name, got, raw)
	}
	// The same message a second time is a replay of a deleted key.
	if _, err := f.suite.unprotectPrivate(msg.PrivateMessage, tree, f.suite.newSenderDataKeys(f.tc.SenderDataSecret), f.gc, f.senderKey); !errors.Is(err, errGenerationUsed) {
		t.Errorf("%s_priv replayed: err = %v, want errGenerationUsed", name, err)
	}
}

// testPrivateRoundTrip protects the raw value as a PrivateMessage with one
// copy of the secret tree and unprotects it with another, as the sender and
// a receiver would.
func testPrivateRoundTrip(t *testing.T, f *protectionFixture, name string, ct ContentType, raw []byte) {
	fc, err := f.content(ct, raw)
	if err != nil {
		t.Fatalf("%s: decoding raw value: %v", name, err)
	}
	ac := f.sign(t, WireFormatPrivateMessage, fc)
	sender, receiver := f.tree(t), f.tree(t)
	var wires [][]byte
	for range 2 {
		pm, err := f.suite.protectPrivateMessage(rand.Reader, ac, sender, f.tc.SenderDataSecret, 32)
		if err != nil {
			t.Fatalf("%s: protectPrivate: %v", name, err)
		}
		wire, err := (&MLSMessage{Version: ProtocolVersionMLS10, WireFormat: WireFormatPrivateMessage, PrivateMessage: pm}).Marshal()
		if err != nil {
			t.Fatalf("%s: MLSMessage.Marshal: %v", name, err)
		}
		wires = append(wires, wire)
	}
	// Receive the second message first, then a forgery of the first, then
	// the first: the forgery must not cost the genuine message its key.
	for _, i := range []int{1, -1, 0} {
		var wire []byte
		if i >= 0 {
			wire = wires[i]
		} else {
			wire = append([]byte(nil), wires[0]...)
			wire[len(wire)-1] ^= 1
		}
		msg, err := UnmarshalMLSMessage(wire)
		if err != nil {
			t.Fatalf("%s: UnmarshalMLSMessage(own PrivateMessage): %v", name, err)
		}
		got, err := f.suite.unprotectPrivate(msg.PrivateMessage, receiver, f.suite.newSenderDataKeys(f.tc.SenderDataSecret), f.gc, f.senderKey)
		if i < 0 {
			if !errors.Is(err, errPrivateMessage) {
				t.Errorf("%s: unprotectPrivate of a modified ciphertext: err = %v, want errPrivateMessage", name, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: unprotectPrivate(protectPrivate(...)) #%d: %v", name, i, err)
		}
		if body := contentBody(t, &got.Content); !bytes.Equal(body, raw) {
			t.Errorf("%s: private round trip content = %x, want %x", name, body, raw)
		}
		if !bytes.Equal(got.Content.AuthenticatedData, fc.AuthenticatedData) || got.Content.Sender != fc.Sender {
			t.Errorf("%s: private round trip header = %+v, want %+v", name, got.Content, fc)
		}
		if ct == ContentTypeCommit && !bytes.Equal(got.Auth.ConfirmationTag, ac.Auth.ConfirmationTag) {
			t.Errorf("%s: confirmation tag = %x, want %x", name, got.Auth.ConfirmationTag, ac.Auth.ConfirmationTag)
		}
	}
	// Content signed for the other wire format is refused.
	if _, err := f.suite.protectPrivateMessage(rand.Reader, f.sign(t, WireFormatPublicMessage, fc), sender, f.tc.SenderDataSecret, 0); err == nil {
		t.Errorf("%s: protectPrivate of content signed for public_message: no error", name)
	}
}

// TestEncodedBodyIsTheSignedBody checks that the body protectPrivate
// takes from a signed commit's kept encoding is the commit's encoding.
func TestEncodedBodyIsTheSignedBody(t *testing.T) {
	suite := CipherSuiteMLS128DHKEMX25519AES128GCMSHA256Ed25519
	rand := testRand(21)
	g, err := CreateGroup(rand, testConfig(), []byte("body group"), newTestKeyPackage(t, rand, suite, "member-0"), nil)
	if err != nil {
		t.Fatal(err)
	}
	fc := &FramedContent{
		GroupID:           g.ctx.GroupID,
		Epoch:             g.ctx.Epoch,
		Sender:            Sender{Type: SenderTypeMember, LeafIndex: g.own()},
		AuthenticatedData: []byte("some authenticated data"),
		ContentType:       ContentTypeCommit,
		Commit:            &Commit{Proposals: []ProposalOrRef{{Type: ProposalOrRefTypeReference, Reference: bytes.Repeat([]byte{3}, 32)}}},
	}
	ac, err := g.cs.signFramedContent(rand, g.signer, WireFormatPrivateMessage, fc, &g.ctx)
	if err != nil {
		t.Fatal(err)
	}
	want, err := marshalWith(func(b *cryptobyte.Builder) { marshalContentBody(b, fc.ContentType, nil, nil, fc.Commit) })
	if err != nil {
		t.Fatal(err)
	}
	if got := ac.encodedBody(); !bytes.Equal(got, want) {
		t.Errorf("encodedBody %x, want the commit encoding %x", got, want)
	}
	ac.framed = nil
	if ac.encodedBody() != nil {
		t.Error("encodedBody without a kept encoding")
	}
}
