package mls

// Refusals of Update proposals (RFC 9420, Section 12.1.2): a member may
// rotate its leaf keys but not its identity, and its credential must
// still be accepted by the application.

import (
	"strings"
	"testing"
)

// errIdentityChange is the text of sameIdentity's refusal.
const errIdentityChange = "may not change its credential"

// forgeUpdateProposal has g frame an Update proposal for its own leaf
// with a fresh encryption key, changed by tamper before the leaf is
// signed, without g's own checks. It returns the MLSMessage, the proposal
// and its reference (Section 5.2).
func forgeUpdateProposal(t *testing.T, s *sim, g *Group, tamper func(*LeafNode)) ([]byte, *Proposal, ProposalRef) {
	t.Helper()
	old := g.tree.leaf(g.own())
	key, err := g.cs.hpke.KEM.GenerateKeyPair(s.rand)
	if err != nil {
		t.Fatal(err)
	}
	leaf := LeafNode{
		EncryptionKey: key.PublicKey().Bytes(),
		SignatureKey:  old.SignatureKey,
		Credential:    old.Credential,
		Capabilities:  old.Capabilities,
		Source:        LeafNodeSourceUpdate,
		Extensions:    old.Extensions,
	}
	if tamper != nil {
		tamper(&leaf)
	}
	resignLeaf(t, g, &leaf)
	p := &Proposal{Type: ProposalTypeUpdate, Update: &UpdateProposal{LeafNode: leaf}}
	fc := &FramedContent{
		GroupID:     g.ctx.GroupID,
		Epoch:       g.ctx.Epoch,
		Sender:      Sender{Type: SenderTypeMember, LeafIndex: g.own()},
		ContentType: ContentTypeProposal,
		Proposal:    p,
	}
	ac, msg, err := g.frame(s.rand, fc, nil)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := ac.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return msg, p, g.cs.makeProposalRef(enc)
}

// referenceTo appends a reference to ref to a commit's proposals.
func referenceTo(ref ProposalRef) func(*Commit) {
	return func(c *Commit) {
		c.Proposals = append(c.Proposals, ProposalOrRef{Type: ProposalOrRefTypeReference, Reference: ref})
	}
}

// revoking returns a credential validator that refuses identity and
// otherwise behaves as testConfig's.
func revoking(identity string) func(Credential, []byte) error {
	lax := testConfig().ValidateCredential
	return func(c Credential, key []byte) error {
		if string(c.Identity) == identity {
			return errorf("credential of %s revoked", identity)
		}
		return lax(c, key)
	}
}

// TestUpdateProposalByReferenceControl checks that an Update proposal made
// by forgeUpdateProposal without tampering is accepted and, committed by
// another member, applied; so the refusals below are due to the change
// under test alone.
func TestUpdateProposalByReferenceControl(t *testing.T) {
	for _, suite := range simSuites {
		t.Run(suiteName(suite), func(t *testing.T) {
			s, committer, receiver := newRefusalSim(t, suite)
			proposer := s.members[s.names()[2]]
			msg, p, _ := forgeUpdateProposal(t, s, proposer, nil)
			for _, g := range []*Group{committer, receiver} {
				ev, err := g.ProcessMessage(msg, testNow)
				if err != nil || ev.Kind != EventProposal {
					t.Fatalf("untampered update proposal: %+v, %v", ev, err)
				}
			}
			out, err := committer.CommitPending(s.rand, testNow)
			if err != nil {
				t.Fatal(err)
			}
			ev, err := receiver.ProcessMessage(out.Commit, testNow)
			if err != nil || ev.Kind != EventNewEpoch || len(ev.Updated) != 1 || ev.Updated[0].Leaf != proposer.OwnLeaf() {
				t.Fatalf("commit of an untampered update: %+v, %v", ev, err)
			}
			if got := receiver.tree.leaf(proposer.own()); string(got.EncryptionKey) != string(p.Update.LeafNode.EncryptionKey) {
				t.Error("the update was not applied")
			}
		})
	}
}

// TestRefuseUpdateProposalChangingIdentity sends an Update proposal whose
// leaf carries another identity: refused when it arrives, and refused in a
// commit that references it.
func TestRefuseUpdateProposalChangingIdentity(t *testing.T) {
	for _, suite := range simSuites {
		t.Run(suiteName(suite), func(t *testing.T) {
			s, committer, receiver := newRefusalSim(t, suite)
			proposer := s.members[s.names()[2]]
			msg, p, ref := forgeUpdateProposal(t, s, proposer, func(l *LeafNode) {
				l.Credential.Identity = []byte("member-someone-else")
			})
			t.Run("proposal", func(t *testing.T) {
				expectRefused(t, receiver, msg, errIdentityChange)
				expectRefused(t, committer, msg, errIdentityChange)
				if _, err := proposer.Propose(s.rand, p, testNow); err == nil || !strings.Contains(err.Error(), errIdentityChange) {
					t.Errorf("Propose of an identity change: %v", err)
				}
			})
			// A commit referencing it is refused too, should the proposal
			// have reached the cache (the check is made again when
			// proposals are applied, Section 12.4.2).
			t.Run("commit", func(t *testing.T) {
				r := cloneGroup(t, receiver)
				r.cache = append(r.cache, cachedProposal{ref: ref, proposal: p,
					sender: Sender{Type: SenderTypeMember, LeafIndex: proposer.own()}})
				commit := forgeCommit(t, s, committer, nil, true, referenceTo(ref))
				expectRefused(t, r, commit, errIdentityChange)
			})
		})
	}
}

// TestRefuseUpdateProposalCredentialRejectedByApplication sends an Update
// proposal keeping the member's identity whose credential the
// application's validator refuses: refused when it arrives, and refused
// in a commit when the credential was revoked after the proposal arrived.
func TestRefuseUpdateProposalCredentialRejectedByApplication(t *testing.T) {
	for _, suite := range simSuites {
		t.Run(suiteName(suite), func(t *testing.T) {
			s, committer, receiver := newRefusalSim(t, suite)
			name := s.names()[2]
			proposer := s.members[name]
			msg, err := proposer.ProposeUpdate(s.rand, testNow)
			if err != nil {
				t.Fatal(err)
			}
			lax := receiver.cfg.ValidateCredential
			receiver.cfg.ValidateCredential = revoking(name)
			expectRefused(t, receiver, msg, "revoked")

			// Accepted while the credential is valid, then revoked before
			// the commit arrives.
			receiver.cfg.ValidateCredential = lax
			for _, g := range []*Group{committer, receiver} {
				if ev, err := g.ProcessMessage(msg, testNow); err != nil || ev.Kind != EventProposal {
					t.Fatalf("update proposal: %+v, %v", ev, err)
				}
			}
			out, err := committer.CommitPending(s.rand, testNow)
			if err != nil {
				t.Fatal(err)
			}
			receiver.cfg.ValidateCredential = revoking(name)
			expectRefused(t, receiver, out.Commit, "revoked")
			// The same commit is accepted once the credential is valid.
			receiver.cfg.ValidateCredential = lax
			if ev, err := receiver.ProcessMessage(out.Commit, testNow); err != nil || len(ev.Updated) != 1 {
				t.Fatalf("commit with a valid credential: %+v, %v", ev, err)
			}
		})
	}
}

// TestRefuseUpdateProposalByValue puts an Update proposal in a commit by
// value: it is the committer's own update, which RFC 9420, Section 12.2
// forbids, so it is refused whatever its leaf holds (a changed identity,
// a credential the application refuses, or a valid leaf).
func TestRefuseUpdateProposalByValue(t *testing.T) {
	for _, suite := range simSuites {
		t.Run(suiteName(suite), func(t *testing.T) {
			s, committer, receiver := newRefusalSim(t, suite)
			byValue := func(tamper func(*LeafNode)) []byte {
				_, p, _ := forgeUpdateProposal(t, s, committer, tamper)
				return forgeCommit(t, s, committer, nil, true, func(c *Commit) {
					c.Proposals = append(c.Proposals, ProposalOrRef{Type: ProposalOrRefTypeProposal, Proposal: p})
				})
			}
			expectRefused(t, receiver, byValue(func(l *LeafNode) {
				l.Credential.Identity = []byte("member-someone-else")
			}), "update proposal by value")
			lax := receiver.cfg.ValidateCredential
			receiver.cfg.ValidateCredential = revoking(s.names()[0])
			expectRefused(t, receiver, byValue(nil), "update proposal by value")
			receiver.cfg.ValidateCredential = lax
			expectRefused(t, receiver, byValue(nil), "update proposal by value")
		})
	}
}
