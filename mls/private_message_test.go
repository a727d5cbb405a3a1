package mls

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"testing"
)

// protectPrivateMessage is protectPrivate returning the PrivateMessage
// decoded from its encoding, for tests that look into it or change it.
func (s *cipherSuite) protectPrivateMessage(rand io.Reader, ac *AuthenticatedContent, tree *secretTree, senderDataSecret []byte, paddingBlock int) (*PrivateMessage, error) {
	enc, err := s.protectPrivate(rand, ac, tree, s.newSenderDataKeys(senderDataSecret), paddingBlock)
	if err != nil {
		return nil, err
	}
	msg, err := UnmarshalMLSMessage(enc)
	if err != nil {
		return nil, err
	}
	if msg.WireFormat != WireFormatPrivateMessage {
		return nil, fmt.Errorf("protectPrivate made wire format %d", msg.WireFormat)
	}
	return msg.PrivateMessage, nil
}

// benchPrivateFixture is a two-member group in which member 1 sends 100-byte
// application messages.
type benchPrivateFixture struct {
	s                *cipherSuite
	key              *SignaturePrivateKey
	gc               *GroupContext
	senderDataSecret []byte
	encryptionSecret []byte
	fc               *FramedContent
}

func newBenchPrivateFixture(b *testing.B, cs CipherSuite) *benchPrivateFixture {
	s, err := cs.suite()
	if err != nil {
		b.Fatal(err)
	}
	key, err := GenerateSignatureKey(cs, rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	gc := &GroupContext{
		Version: ProtocolVersionMLS10, CipherSuite: cs, GroupID: []byte("benchmark group"), Epoch: 7,
		TreeHash: bytes.Repeat([]byte{2}, s.nh), ConfirmedTranscriptHash: bytes.Repeat([]byte{3}, s.nh),
	}
	return &benchPrivateFixture{
		s: s, key: key, gc: gc,
		senderDataSecret: bytes.Repeat([]byte{4}, s.nh),
		encryptionSecret: bytes.Repeat([]byte{5}, s.nh),
		fc: &FramedContent{
			GroupID: gc.GroupID, Epoch: gc.Epoch,
			Sender:          Sender{Type: SenderTypeMember, LeafIndex: 1},
			ContentType:     ContentTypeApplication,
			ApplicationData: bytes.Repeat([]byte{'m'}, 100),
		},
	}
}

func (f *benchPrivateFixture) tree(b *testing.B) *secretTree {
	t, err := newSecretTree(f.s, f.encryptionSecret, 2)
	if err != nil {
		b.Fatal(err)
	}
	t.maxForward = ^uint32(0)
	return t
}

// protect signs and encrypts one application message, as a member sending
// it does.
func (f *benchPrivateFixture) protect(b *testing.B, tree *secretTree) *PrivateMessage {
	ac, err := f.s.signFramedContent(rand.Reader, f.key, WireFormatPrivateMessage, f.fc, f.gc)
	if err != nil {
		b.Fatal(err)
	}
	pm, err := f.s.protectPrivateMessage(rand.Reader, ac, tree, f.senderDataSecret, 0)
	if err != nil {
		b.Fatal(err)
	}
	return pm
}

// BenchmarkPrivateMessage measures PrivateMessage protect (sign, content
// and sender data encryption) and unprotect (decryption and signature
// verification) of a 100-byte application message.
func BenchmarkPrivateMessage(b *testing.B) {
	for _, cs := range benchSuites {
		b.Run(fmt.Sprintf("suite%d/protect", cs), func(b *testing.B) {
			f := newBenchPrivateFixture(b, cs)
			tree := f.tree(b)
			b.ReportAllocs()
			for b.Loop() {
				f.protect(b, tree)
			}
		})
		b.Run(fmt.Sprintf("suite%d/unprotect", cs), func(b *testing.B) {
			f := newBenchPrivateFixture(b, cs)
			pub := f.key.PublicKey()
			senderKey := func(*FramedContent) ([]byte, error) { return pub, nil }
			// The messages are made in advance: each generation decrypts
			// once.
			sender := f.tree(b)
			msgs := make([]*PrivateMessage, b.N)
			for i := range msgs {
				msgs[i] = f.protect(b, sender)
			}
			receiver := f.tree(b)
			sd := f.s.newSenderDataKeys(f.senderDataSecret)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := f.s.unprotectPrivate(msgs[i], receiver, sd, f.gc, senderKey); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// fuzzProtectionGroup is a fixed two-member group for the unprotect fuzz
// targets: member 1 sends.
type fuzzProtectionGroup struct {
	s                *cipherSuite
	key              *SignaturePrivateKey
	gc               *GroupContext
	senderDataSecret []byte
	encryptionSecret []byte
	membershipKey    []byte
}

func newFuzzProtectionGroup(tb testing.TB) *fuzzProtectionGroup {
	cs := CipherSuiteMLS128DHKEMX25519AES128GCMSHA256Ed25519
	s, _ := cs.suite()
	key, err := GenerateSignatureKey(cs, bytes.NewReader(bytes.Repeat([]byte{9}, 64)))
	if err != nil {
		tb.Fatal(err)
	}
	return &fuzzProtectionGroup{
		s: s, key: key,
		gc:               &GroupContext{Version: ProtocolVersionMLS10, CipherSuite: cs, GroupID: []byte("fuzz"), Epoch: 1},
		senderDataSecret: bytes.Repeat([]byte{1}, s.nh),
		encryptionSecret: bytes.Repeat([]byte{2}, s.nh),
		membershipKey:    bytes.Repeat([]byte{3}, s.nh),
	}
}

func (g *fuzzProtectionGroup) senderKey(fc *FramedContent) ([]byte, error) {
	if fc.Sender.Type != SenderTypeMember || fc.Sender.LeafIndex != 1 {
		return nil, fmt.Errorf("unknown sender")
	}
	return g.key.PublicKey(), nil
}

// seeds returns valid PublicMessage and PrivateMessage encodings.
func (g *fuzzProtectionGroup) seeds(tb testing.TB) [][]byte {
	tree, _ := newSecretTree(g.s, g.encryptionSecret, 2)
	var out [][]byte
	contents := []*FramedContent{
		{ContentType: ContentTypeApplication, ApplicationData: []byte("hello")},
		{ContentType: ContentTypeProposal, Proposal: &Proposal{Type: ProposalTypeRemove, Remove: &RemoveProposal{Removed: 0}}},
		{ContentType: ContentTypeCommit, Commit: &Commit{}},
	}
	for _, fc := range contents {
		fc.GroupID, fc.Epoch = g.gc.GroupID, g.gc.Epoch
		fc.Sender = Sender{Type: SenderTypeMember, LeafIndex: 1}
		for _, wf := range []WireFormat{WireFormatPublicMessage, WireFormatPrivateMessage} {
			ac, err := g.s.signFramedContent(rand.Reader, g.key, wf, fc, g.gc)
			if err != nil {
				tb.Fatal(err)
			}
			if fc.ContentType == ContentTypeCommit {
				ac.Auth.ConfirmationTag = bytes.Repeat([]byte{4}, g.s.nh)
			}
			msg := &MLSMessage{Version: ProtocolVersionMLS10, WireFormat: wf}
			if wf == WireFormatPublicMessage {
				if fc.ContentType == ContentTypeApplication {
					continue
				}
				msg.PublicMessage, err = g.s.protectPublic(ac, g.membershipKey, g.gc)
			} else {
				msg.PrivateMessage, err = g.s.protectPrivateMessage(rand.Reader, ac, tree, g.senderDataSecret, 8)
			}
			if err != nil {
				tb.Fatal(err)
			}
			b, err := msg.Marshal()
			if err != nil {
				tb.Fatal(err)
			}
			out = append(out, b)
		}
	}
	return out
}

// FuzzUnprotect feeds arbitrary MLSMessages to unprotectPublic and
// unprotectPrivate: they must never panic, must return nil content with an
// error, and content they accept must re-encode into the body it came from.
func FuzzUnprotect(f *testing.F) {
	g := newFuzzProtectionGroup(f)
	for _, seed := range g.seeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := UnmarshalMLSMessage(data)
		if err != nil {
			return
		}
		var ac *AuthenticatedContent
		switch msg.WireFormat {
		case WireFormatPublicMessage:
			ac, err = g.s.unprotectPublic(msg.PublicMessage, g.membershipKey, g.gc, g.senderKey)
		case WireFormatPrivateMessage:
			tree, _ := newSecretTree(g.s, g.encryptionSecret, 2)
			ac, err = g.s.unprotectPrivate(msg.PrivateMessage, tree, g.s.newSenderDataKeys(g.senderDataSecret), g.gc, g.senderKey)
		default:
			return
		}
		if err != nil {
			if ac != nil {
				t.Fatalf("unprotect returned content with error %v", err)
			}
			return
		}
		// Accepted content carries a valid signature from member 1.
		tbs, err := marshalFramedContentTBS(ac.WireFormat, &ac.Content, g.gc)
		if err != nil {
			t.Fatalf("accepted content does not re-encode: %v", err)
		}
		if !g.s.verifyWithLabel(g.key.PublicKey(), labelFramedContentTBS, tbs, ac.Auth.Signature) {
			t.Fatalf("accepted content with an invalid signature")
		}
	})
}
