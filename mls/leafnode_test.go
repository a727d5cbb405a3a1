package mls

import (
	"bytes"
	"reflect"
	"testing"

	"golang.org/x/crypto/cryptobyte"
)

// sampleLeafNode returns a LeafNode of the given source with every field
// set, including GREASE values in its capabilities.
func sampleLeafNode(source LeafNodeSource) LeafNode {
	l := LeafNode{
		EncryptionKey: []byte("encryption key"),
		SignatureKey:  []byte("signature key"),
		Credential:    Credential{Type: CredentialTypeBasic, Identity: []byte("bob")},
		Capabilities: Capabilities{
			Versions:     []ProtocolVersion{ProtocolVersionMLS10},
			CipherSuites: []CipherSuite{CipherSuiteMLS128DHKEMX25519AES128GCMSHA256Ed25519, 0x0a0a},
			Extensions:   []ExtensionType{ExtensionTypeApplicationID, 0x1a1a},
			Proposals:    []ProposalType{0x2a2a},
			Credentials:  []CredentialType{CredentialTypeBasic, CredentialTypeX509, 0x3a3a},
		},
		Source:     source,
		Extensions: Extensions{{Type: ExtensionTypeApplicationID, Data: []byte("dev1")}},
		Signature:  []byte("signature"),
	}
	switch source {
	case LeafNodeSourceKeyPackage:
		l.Lifetime = Lifetime{NotBefore: 1, NotAfter: 1<<64 - 1}
	case LeafNodeSourceCommit:
		l.ParentHash = []byte("parent hash")
	}
	return l
}

func TestLeafNodeRoundTrip(t *testing.T) {
	for _, source := range []LeafNodeSource{LeafNodeSourceKeyPackage, LeafNodeSourceUpdate, LeafNodeSourceCommit} {
		l := sampleLeafNode(source)
		enc, err := l.Marshal()
		if err != nil {
			t.Fatalf("Marshal(source %d): %v", source, err)
		}
		got, err := UnmarshalLeafNode(enc)
		if err != nil {
			t.Fatalf("UnmarshalLeafNode(source %d): %v", source, err)
		}
		if !reflect.DeepEqual(*got, l) {
			t.Errorf("UnmarshalLeafNode(Marshal(l)) = %+v, want %+v", *got, l)
		}
	}
}

func TestLeafNodeUnknownSource(t *testing.T) {
	l := sampleLeafNode(LeafNodeSourceUpdate)
	enc, err := l.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	// The source byte follows the keys, credential and capabilities.
	prefix, err := marshalWith(func(b *cryptobyte.Builder) {
		writeOpaque(b, l.EncryptionKey)
		writeOpaque(b, l.SignatureKey)
		l.Credential.marshal(b)
		l.Capabilities.marshal(b)
	})
	if err != nil {
		t.Fatal(err)
	}
	i := len(prefix)
	if enc[i] != byte(LeafNodeSourceUpdate) {
		t.Fatalf("leaf_node_source not at offset %d", i)
	}
	for _, bad := range []byte{0, 4, 0xff} {
		mod := bytes.Clone(enc)
		mod[i] = bad
		if _, err := UnmarshalLeafNode(mod); err == nil {
			t.Errorf("UnmarshalLeafNode with leaf_node_source %d succeeded", bad)
		}
	}
	l.Source = 4
	if _, err := l.Marshal(); err == nil {
		t.Error("Marshal with leaf_node_source 4 succeeded")
	}
}

func TestLeafNodeTBS(t *testing.T) {
	groupID := []byte("group")
	for _, source := range []LeafNodeSource{LeafNodeSourceKeyPackage, LeafNodeSourceUpdate, LeafNodeSourceCommit} {
		l := sampleLeafNode(source)
		content, err := marshalWith(l.marshalContent)
		if err != nil {
			t.Fatal(err)
		}
		tbs, err := l.marshalTBS(groupID, 5)
		if err != nil {
			t.Fatal(err)
		}
		want := content
		if source != LeafNodeSourceKeyPackage {
			// opaque group_id<V>; uint32 leaf_index;
			want = append(bytes.Clone(content), 5, 'g', 'r', 'o', 'u', 'p', 0, 0, 0, 5)
		}
		if !bytes.Equal(tbs, want) {
			t.Errorf("marshalTBS(source %d) = %x, want %x", source, tbs, want)
		}
		// The full encoding is the TBS content followed by the signature.
		full, _ := l.Marshal()
		if !bytes.HasPrefix(full, content) {
			t.Errorf("Marshal(source %d) does not start with the signed content", source)
		}
	}
}

func FuzzLeafNode(f *testing.F) {
	for _, source := range []LeafNodeSource{LeafNodeSourceKeyPackage, LeafNodeSourceUpdate, LeafNodeSourceCommit} {
		l := sampleLeafNode(source)
		enc, err := l.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc)
	}
	addMessageSeeds(f, func(tc *messagesVector) [][]byte {
		// The Update proposal body is exactly a LeafNode.
		return seeds(tc.UpdateProposal)
	})
	f.Fuzz(func(t *testing.T, data []byte) {
		checkRoundTrip(t, data, UnmarshalLeafNode, (*LeafNode).Marshal)
	})
}
