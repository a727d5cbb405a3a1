package mls

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"

	"golang.org/x/crypto/cryptobyte"

	"qpchat/internal/vectors"
)

type secretTreeVector struct {
	CipherSuite CipherSuite `json:"cipher_suite"`
	SenderData  struct {
		SenderDataSecret vectors.Hex `json:"sender_data_secret"`
		Ciphertext       vectors.Hex `json:"ciphertext"`
		Key              vectors.Hex `json:"key"`
		Nonce            vectors.Hex `json:"nonce"`
	} `json:"sender_data"`
	EncryptionSecret vectors.Hex `json:"encryption_secret"`
	Leaves           [][]struct {
		Generation       uint32      `json:"generation"`
		HandshakeKey     vectors.Hex `json:"handshake_key"`
		HandshakeNonce   vectors.Hex `json:"handshake_nonce"`
		ApplicationKey   vectors.Hex `json:"application_key"`
		ApplicationNonce vectors.Hex `json:"application_nonce"`
	} `json:"leaves"`
}

func TestSecretTreeVectors(t *testing.T) {
	var tests []secretTreeVector
	loadMLSVectors(t, "secret-tree.json", &tests)
	tally := newSuiteTally("secret-tree.json")
	for i, tc := range tests {
		tally.run(t, tc.CipherSuite, i, func(t *testing.T, s *cipherSuite) { testSecretTree(t, s, &tc) })
	}
	tally.log(t)
}

func testSecretTree(t *testing.T, s *cipherSuite, tc *secretTreeVector) {
	sd := tc.SenderData
	key, nonce := s.newSenderDataKeys(sd.SenderDataSecret).keyNonce(sd.Ciphertext)
	if !bytes.Equal(key, sd.Key) {
		t.Errorf("sender_data_key = %x, want %x", key, sd.Key)
	}
	if !bytes.Equal(nonce, sd.Nonce) {
		t.Errorf("sender_data_nonce = %x, want %x", nonce, sd.Nonce)
	}

	tree, err := newSecretTree(s, tc.EncryptionSecret, uint32(len(tc.Leaves)))
	if err != nil {
		t.Fatal(err)
	}
	// The leaves are visited in reverse so that a leaf's secrets are
	// derived both before and after its siblings'.
	for i := len(tc.Leaves) - 1; i >= 0; i-- {
		for _, g := range tc.Leaves[i] {
			hs, err := tree.keyForGeneration(uint32(i), handshakeRatchet, g.Generation)
			if err != nil {
				t.Fatalf("handshake key of leaf %d generation %d: %v", i, g.Generation, err)
			}
			app, err := tree.keyForGeneration(uint32(i), applicationRatchet, g.Generation)
			if err != nil {
				t.Fatalf("application key of leaf %d generation %d: %v", i, g.Generation, err)
			}
			if !bytes.Equal(hs.key, g.HandshakeKey) || !bytes.Equal(hs.nonce, g.HandshakeNonce) {
				t.Errorf("handshake key, nonce [%d][%d] = %x, %x, want %x, %x", i, g.Generation, hs.key, hs.nonce, g.HandshakeKey, g.HandshakeNonce)
			}
			if !bytes.Equal(app.key, g.ApplicationKey) || !bytes.Equal(app.nonce, g.ApplicationNonce) {
				t.Errorf("application key, nonce [%d][%d] = %x, %x, want %x, %x", i, g.Generation, app.key, app.nonce, g.ApplicationKey, g.ApplicationNonce)
			}
			// A used generation is deleted (RFC 9420, Section 9.2).
			if _, err := tree.keyForGeneration(uint32(i), applicationRatchet, g.Generation); !errors.Is(err, errGenerationUsed) {
				t.Errorf("second use of application generation %d of leaf %d: err = %v, want errGenerationUsed", g.Generation, i, err)
			}
		}
	}
	// Every tree node secret has been consumed once every leaf is derived.
	if len(tree.nodes) != 0 {
		t.Errorf("%d tree node secrets left after deriving every leaf", len(tree.nodes))
	}
}

func TestSecretTreeOutOfOrder(t *testing.T) {
	s, _ := CipherSuiteMLS128DHKEMX25519AES128GCMSHA256Ed25519.suite()
	secret := bytes.Repeat([]byte{7}, s.nh)
	sender, err := newSecretTree(s, secret, 5)
	if err != nil {
		t.Fatal(err)
	}
	receiver, _ := newSecretTree(s, secret, 5)
	receiver.keepBehind = 4
	receiver.maxForward = 10

	var sent []ratchetKey
	for range 20 {
		k, err := sender.nextKey(3, applicationRatchet)
		if err != nil {
			t.Fatal(err)
		}
		sent = append(sent, k)
	}
	for i, k := range sent {
		if k.generation != uint32(i) {
			t.Fatalf("nextKey generation = %d, want %d", k.generation, i)
		}
	}
	check := func(gen uint32) error {
		k, err := receiver.keyForGeneration(3, applicationRatchet, gen)
		if err != nil {
			return err
		}
		if !bytes.Equal(k.key, sent[gen].key) || !bytes.Equal(k.nonce, sent[gen].nonce) {
			t.Errorf("generation %d: receiver key differs from sender key", gen)
		}
		return nil
	}
	// Receive 5 first, then 2 and 4 late, then 2 again (a replay).
	for _, g := range []uint32{5, 2, 4} {
		if err := check(g); err != nil {
			t.Errorf("generation %d: %v", g, err)
		}
	}
	if err := check(2); !errors.Is(err, errGenerationUsed) {
		t.Errorf("replayed generation 2: err = %v, want errGenerationUsed", err)
	}
	// 5 - 0 is beyond keepBehind = 4: generation 0 is gone.
	if err := check(0); !errors.Is(err, errGenerationUsed) {
		t.Errorf("generation 0, 5 behind: err = %v, want errGenerationUsed", err)
	}
	// 6 + 10 is the furthest the receiver ratchets forward.
	if err := check(17); !errors.Is(err, errGenerationTooFar) {
		t.Errorf("generation 17, 11 ahead: err = %v, want errGenerationTooFar", err)
	}
	if err := check(16); err != nil {
		t.Errorf("generation 16, 10 ahead: %v", err)
	}
	// The ratchet moved to 17: kept keys are at most 4 behind 16.
	for g := range receiver.ratchets[3][applicationRatchet].skipped {
		if g < 12 {
			t.Errorf("generation %d still kept after moving to 17", g)
		}
	}
	if err := check(3); !errors.Is(err, errGenerationUsed) {
		t.Errorf("generation 3 after eviction: err = %v, want errGenerationUsed", err)
	}
	if err := check(12); err != nil {
		t.Errorf("generation 12, 4 behind: %v", err)
	}
	// The handshake ratchet of the same leaf is independent.
	if k, err := receiver.keyForGeneration(3, handshakeRatchet, 0); err != nil || bytes.Equal(k.key, sent[0].key) {
		t.Errorf("handshake generation 0: err = %v, or key equals the application key", err)
	}
	if _, err := receiver.keyForGeneration(5, handshakeRatchet, 0); err == nil {
		t.Errorf("leaf 5 of a 5-leaf tree: no error")
	}
	receiver.zero()
	if len(receiver.ratchets) != 0 || len(receiver.nodes) != 0 {
		t.Errorf("zero left secrets behind")
	}
}

// BenchmarkSecretTreeKey measures deriving the application key of one leaf
// of a fresh 64-leaf secret tree for generation 0 (the tree walk from the
// root, the leaf's ratchet secrets and one key and nonce) and for
// generation 1000 (the same plus 1000 ratchet steps).
func BenchmarkSecretTreeKey(b *testing.B) {
	for _, cs := range benchSuites {
		for _, gen := range []uint32{0, 1000} {
			b.Run(fmt.Sprintf("suite%d/gen%d", cs, gen), func(b *testing.B) {
				s, err := cs.suite()
				if err != nil {
					b.Fatal(err)
				}
				secret := bytes.Repeat([]byte{1}, s.nh)
				b.ReportAllocs()
				for b.Loop() {
					tree, err := newSecretTree(s, secret, 64)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := tree.keyForGeneration(37, applicationRatchet, gen); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// TestSecretTreeDeletion checks the deletion schedule of RFC 9420,
// Section 9.2: deriving a leaf consumes the secrets on its path and keeps
// only the siblings of that path.
func TestSecretTreeDeletion(t *testing.T) {
	s, _ := CipherSuiteMLS128DHKEMX25519AES128GCMSHA256Ed25519.suite()
	tree, err := newSecretTree(s, bytes.Repeat([]byte{1}, s.nh), 8)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tree.nodes[7]; !ok || len(tree.nodes) != 1 {
		t.Fatalf("fresh 8-leaf tree holds nodes %v, want only the root 7", keysOf(tree.nodes))
	}
	if _, err := tree.nextKey(0, handshakeRatchet); err != nil {
		t.Fatal(err)
	}
	// Leaf 0 is node 0; its path is 1, 3, 7 and the siblings are 2, 5, 11.
	want := []uint32{2, 5, 11}
	if got := keysOf(tree.nodes); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after deriving leaf 0 the tree holds nodes %v, want %v", got, want)
	}
	if _, err := tree.nextKey(5, applicationRatchet); err != nil {
		t.Fatal(err)
	}
	// Leaf 5 is node 10 under 11: 11 is consumed, 9 (leaf 4) and 13 remain.
	want = []uint32{2, 5, 8, 13}
	if got := keysOf(tree.nodes); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after deriving leaf 5 the tree holds nodes %v, want %v", got, want)
	}
	// Each generation advances the ratchet and the old secret is
	// overwritten (zeroed, or replaced in place by the next one).
	r := &tree.ratchets[0][handshakeRatchet]
	old := r.secret
	oldValue := bytes.Clone(old)
	if _, err := tree.nextKey(0, handshakeRatchet); err != nil {
		t.Fatal(err)
	}
	if r.generation != 2 || bytes.Equal(old, oldValue) || bytes.Equal(r.secret, oldValue) {
		t.Errorf("after two keys: generation %d, old secret still held in %x (want 2 and overwritten)", r.generation, old)
	}
	// Nor is the HMAC keyed with it kept.
	if tree.exp.m.keyed() {
		t.Error("the tree keeps the keyed HMAC of a consumed secret after nextKey")
	}
	p, err := tree.lookupKey(3, applicationRatchet, 5)
	if err != nil {
		t.Fatal(err)
	}
	p.discard()
	if tree.exp.m.keyed() {
		t.Error("the tree keeps a keyed HMAC after lookupKey")
	}
}

func keysOf(m map[uint32][]byte) []uint32 {
	var out []uint32
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestSecretTreeLookupAllOrNothing checks that lookupKey changes nothing
// until commit: a discarded lookup (a message that was then refused) leaves
// the tree's encoding identical and the key usable, whether it derived the
// leaf's ratchets, stepped the ratchet forward or took a kept skipped key;
// a committed one consumes the generation like keyForGeneration.
func TestSecretTreeLookupAllOrNothing(t *testing.T) {
	s, _ := CipherSuiteMLS128DHKEMX25519AES128GCMSHA256Ed25519.suite()
	secret := bytes.Repeat([]byte{3}, s.nh)
	sender, _ := newSecretTree(s, secret, 8)
	receiver, _ := newSecretTree(s, secret, 8)
	receiver.keepBehind = 4
	var sent []ratchetKey
	for range 12 {
		k, err := sender.nextKey(5, applicationRatchet)
		if err != nil {
			t.Fatal(err)
		}
		sent = append(sent, k)
	}
	encode := func() []byte {
		b := cryptobyte.NewBuilder(nil)
		marshalSecretTree(b, receiver)
		return b.BytesOrPanic()
	}
	// Fresh leaf (ratchets derived in the lookup), a jump forward, a kept
	// skipped key, then the next generation.
	for _, gen := range []uint32{3, 9, 6, 10} {
		before := encode()
		p, err := receiver.lookupKey(5, applicationRatchet, gen)
		if err != nil {
			t.Fatalf("generation %d: %v", gen, err)
		}
		if !bytes.Equal(p.key.key, sent[gen].key) || !bytes.Equal(p.key.nonce, sent[gen].nonce) {
			t.Errorf("generation %d: looked-up key differs from the sender's", gen)
		}
		if !bytes.Equal(encode(), before) {
			t.Errorf("generation %d: lookupKey changed the tree", gen)
		}
		p.discard()
		if !bytes.Equal(encode(), before) {
			t.Errorf("generation %d: discard changed the tree", gen)
		}
		p, err = receiver.lookupKey(5, applicationRatchet, gen)
		if err != nil {
			t.Fatalf("generation %d after discard: %v", gen, err)
		}
		p.commit()
		if bytes.Equal(encode(), before) {
			t.Errorf("generation %d: commit left the tree unchanged", gen)
		}
		if _, err := receiver.lookupKey(5, applicationRatchet, gen); !errors.Is(err, errGenerationUsed) {
			t.Errorf("generation %d after commit: err = %v, want errGenerationUsed", gen, err)
		}
	}
	// Only the secrets a plain derivation keeps remain: the leaf 5 path
	// (10, 9, 11, 7) is consumed, its siblings 8, 13 and 3 kept.
	if got := fmt.Sprint(keysOf(receiver.nodes)); got != "[3 8 13]" {
		t.Errorf("tree holds nodes %s, want [3 8 13]", got)
	}
	// A lookup on a zeroed tree's pending key commits nothing.
	p, err := receiver.lookupKey(5, applicationRatchet, 11)
	if err != nil {
		t.Fatal(err)
	}
	receiver.zero()
	p.commit()
	if len(receiver.ratchets) != 0 || len(receiver.nodes) != 0 {
		t.Errorf("commit after zero put secrets back into the tree")
	}
}
