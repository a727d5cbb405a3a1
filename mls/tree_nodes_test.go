package mls

import (
	"bytes"
	"reflect"
	"testing"
)

func sampleRatchetTree() RatchetTree {
	leaf0 := sampleLeafNode(LeafNodeSourceKeyPackage)
	leaf2 := sampleLeafNode(LeafNodeSourceCommit)
	return RatchetTree{
		{Type: NodeTypeLeaf, LeafNode: &leaf0},
		{Type: NodeTypeParent, ParentNode: &ParentNode{
			EncryptionKey: []byte("parent key"), ParentHash: []byte("ph"),
			UnmergedLeaves: []leafIndex{0, 0x01020304},
		}},
		nil, // blank leaf
		nil, // blank parent
		{Type: NodeTypeLeaf, LeafNode: &leaf2},
	}
}

func TestRatchetTreeRoundTrip(t *testing.T) {
	tree := sampleRatchetTree()
	enc, err := tree.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := UnmarshalRatchetTree(enc)
	if err != nil || !reflect.DeepEqual(got, tree) {
		t.Errorf("UnmarshalRatchetTree(Marshal(tree)) = %+v, %v, want %+v", got, err, tree)
	}
}

func TestParentNodeEncoding(t *testing.T) {
	tree := RatchetTree{nil, {Type: NodeTypeParent, ParentNode: &ParentNode{
		EncryptionKey: []byte{0xee}, UnmergedLeaves: []leafIndex{2},
	}}}
	enc, err := tree.Marshal()
	want := []byte{
		11,                              // vector length
		0,                               // blank
		1, 2, 1, 0xee, 0, 4, 0, 0, 0, 2, // present, parent, key, parent_hash, unmerged_leaves
	}
	if err != nil || !bytes.Equal(enc, want) {
		t.Errorf("Marshal(tree) = %x, %v, want %x", enc, err, want)
	}
}

func TestRatchetTreeRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"optional 2", []byte{1, 2}},
		{"node type 0", []byte{2, 1, 0}},
		{"node type 3", []byte{2, 1, 3}},
		{"unmerged leaves not a multiple of 4", []byte{7, 1, 2, 0, 0, 3, 0, 0}},
		{"vector longer than input", []byte{5, 0, 0}},
	} {
		if tree, err := UnmarshalRatchetTree(tc.in); err == nil || tree != nil {
			t.Errorf("UnmarshalRatchetTree(%x) [%s] = %v, %v, want error", tc.in, tc.name, tree, err)
		}
	}
	if _, err := (RatchetTree{{Type: NodeTypeLeaf}}).Marshal(); err == nil {
		t.Error("Marshal of a leaf node without LeafNode succeeded")
	}
}

func FuzzRatchetTree(f *testing.F) {
	enc, err := sampleRatchetTree().Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(enc)
	addMessageSeeds(f, func(tc *messagesVector) [][]byte { return seeds(tc.RatchetTree) })
	f.Fuzz(func(t *testing.T, data []byte) {
		checkRoundTrip(t, data, UnmarshalRatchetTree, RatchetTree.Marshal)
	})
}
