package mls

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"testing"
)

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
	pm, err := f.s.protectPrivate(rand.Reader, ac, tree, f.senderDataSecret, 0)
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
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := f.s.unprotectPrivate(msgs[i], receiver, f.senderDataSecret, f.gc, senderKey); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
