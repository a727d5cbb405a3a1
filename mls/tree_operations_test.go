package mls

import (
	"bytes"
	"fmt"
	"testing"

	"qpchat/internal/vectors"
)

// treeOperationsVector mirrors an entry of tree-operations.json.
type treeOperationsVector struct {
	CipherSuite    CipherSuite `json:"cipher_suite"`
	TreeBefore     vectors.Hex `json:"tree_before"`
	Proposal       vectors.Hex `json:"proposal"`
	ProposalSender uint32      `json:"proposal_sender"`
	TreeHashBefore vectors.Hex `json:"tree_hash_before"`
	TreeAfter      vectors.Hex `json:"tree_after"`
	TreeHashAfter  vectors.Hex `json:"tree_hash_after"`
}

func TestTreeOperations(t *testing.T) {
	var tests []treeOperationsVector
	vectors.Load(t, "QPCHAT_MLS_VECTORS", "mls-test-vectors", "tree-operations.json", &tests)
	if len(tests) == 0 {
		t.Fatal("tree-operations.json has no entries")
	}
	counts := newSuiteCounts()
	for i, tc := range tests {
		ok := t.Run(fmt.Sprintf("%d/suite%d", i, tc.CipherSuite), func(t *testing.T) { testTreeOperations(t, &tc) })
		counts.add(tc.CipherSuite, ok)
	}
	counts.log(t, "tree-operations.json")
}

func testTreeOperations(t *testing.T, tc *treeOperationsVector) {
	tree, err := parseRatchetTree(tc.CipherSuite, tc.TreeBefore)
	if err != nil {
		t.Fatalf("parseRatchetTree(tree_before): %v", err)
	}
	if got := tree.treeHash(); !bytes.Equal(got, tc.TreeHashBefore) {
		t.Errorf("tree hash before = %x, want %x", got, tc.TreeHashBefore)
	}
	p, err := UnmarshalProposal(tc.Proposal)
	if err != nil {
		t.Fatalf("UnmarshalProposal: %v", err)
	}
	// Applying works on a clone; the original must stay as it was.
	after := tree.clone()
	sender := leafIndex(tc.ProposalSender)
	switch p.Type {
	case ProposalTypeAdd:
		leaf := p.Add.KeyPackage.LeafNode
		_, err = after.addLeaf(&leaf)
	case ProposalTypeUpdate:
		leaf := p.Update.LeafNode
		err = after.updateLeaf(sender, &leaf)
	case ProposalTypeRemove:
		err = after.removeLeaf(p.Remove.Removed)
	default:
		t.Fatalf("unexpected proposal type %d", p.Type)
	}
	if err != nil {
		t.Fatalf("applying proposal type %d: %v", p.Type, err)
	}
	got, err := after.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, tc.TreeAfter) {
		t.Errorf("tree after proposal type %d =\n%x\nwant\n%x", p.Type, got, tc.TreeAfter)
	}
	if got := after.treeHash(); !bytes.Equal(got, tc.TreeHashAfter) {
		t.Errorf("tree hash after = %x, want %x", got, tc.TreeHashAfter)
	}
	// A tree hashed from scratch agrees with the cached, updated one.
	fresh, err := parseRatchetTree(tc.CipherSuite, tc.TreeAfter)
	if err != nil {
		t.Fatalf("parseRatchetTree(tree_after): %v", err)
	}
	if got := fresh.treeHash(); !bytes.Equal(got, tc.TreeHashAfter) {
		t.Errorf("tree hash of parsed tree_after = %x, want %x", got, tc.TreeHashAfter)
	}
	if before, _ := tree.Marshal(); !bytes.Equal(before, tc.TreeBefore) {
		t.Error("applying the proposal to a clone changed the original tree")
	}
	if got := tree.treeHash(); !bytes.Equal(got, tc.TreeHashBefore) {
		t.Errorf("original tree hash changed to %x", got)
	}
}
