package mls

import (
	"reflect"
	"testing"
)

func sampleUpdatePath() *UpdatePath {
	return &UpdatePath{
		LeafNode: sampleLeafNode(LeafNodeSourceCommit),
		Nodes: []UpdatePathNode{
			{EncryptionKey: []byte("pk1"), EncryptedPathSecret: []HPKECiphertext{
				{KEMOutput: []byte("kem1"), Ciphertext: []byte("ct1")},
				{KEMOutput: []byte("kem2"), Ciphertext: []byte("ct2")},
			}},
			{EncryptionKey: []byte("pk2")}, // a node whose copath resolution is empty
		},
	}
}

func sampleCommits() []Commit {
	props := sampleProposals()
	return []Commit{
		{},
		{Proposals: []ProposalOrRef{
			{Type: ProposalOrRefTypeReference, Reference: ProposalRef("ref")},
			{Type: ProposalOrRefTypeProposal, Proposal: &props[0]},
			{Type: ProposalOrRefTypeProposal, Proposal: &props[2]},
		}, Path: sampleUpdatePath()},
		{Path: sampleUpdatePath()},
	}
}

func TestCommitRoundTrip(t *testing.T) {
	for i, c := range sampleCommits() {
		enc, err := c.Marshal()
		if err != nil {
			t.Fatalf("Marshal(commit %d): %v", i, err)
		}
		got, err := UnmarshalCommit(enc)
		if err != nil {
			t.Fatalf("UnmarshalCommit(commit %d): %v", i, err)
		}
		if !reflect.DeepEqual(*got, c) {
			t.Errorf("UnmarshalCommit(Marshal(commit %d)) = %+v, want %+v", i, *got, c)
		}
	}
}

func TestCommitRejects(t *testing.T) {
	// Empty proposal list followed by an optional<UpdatePath> presence
	// octet of 2.
	if _, err := UnmarshalCommit([]byte{0, 2}); err == nil {
		t.Error("UnmarshalCommit with optional presence 2 succeeded")
	}
	if c, err := UnmarshalCommit([]byte{0, 0}); err != nil || len(c.Proposals) != 0 || c.Path != nil {
		t.Errorf("UnmarshalCommit(empty) = %+v, %v", c, err)
	}
	if _, err := UnmarshalCommit([]byte{0, 1}); err == nil {
		t.Error("UnmarshalCommit with a missing UpdatePath succeeded")
	}
}

func TestUpdatePathRoundTrip(t *testing.T) {
	p := sampleUpdatePath()
	enc, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := UnmarshalUpdatePath(enc)
	if err != nil || !reflect.DeepEqual(got, p) {
		t.Errorf("UnmarshalUpdatePath(Marshal(p)) = %+v, %v", got, err)
	}
}

func FuzzCommit(f *testing.F) {
	for _, c := range sampleCommits() {
		enc, err := c.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc)
	}
	addMessageSeeds(f, func(tc *messagesVector) [][]byte { return seeds(tc.Commit) })
	f.Fuzz(func(t *testing.T, data []byte) {
		checkRoundTrip(t, data, UnmarshalCommit, (*Commit).Marshal)
	})
}

func FuzzUpdatePath(f *testing.F) {
	enc, err := sampleUpdatePath().Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(enc)
	f.Fuzz(func(t *testing.T, data []byte) {
		checkRoundTrip(t, data, UnmarshalUpdatePath, (*UpdatePath).Marshal)
	})
}
