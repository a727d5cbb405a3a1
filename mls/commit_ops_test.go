package mls

// Refusals: each test forges or replays one kind of bad message and checks
// that the receiving member refuses it and stays unchanged.

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// newRefusalSim returns a group of four members that send their handshake
// messages in the clear, so that tests can look at them, and a member
// other than the creator for receiving.
func newRefusalSim(t *testing.T, suite CipherSuite) (*sim, *Group, *Group) {
	t.Helper()
	s := newSim(t, suite, 42)
	s.add(s.names()[0], 3)
	for _, g := range s.members {
		g.cfg.PublicHandshake = true
	}
	names := s.names()
	return s, s.members[names[0]], s.members[names[1]]
}

// expectRefused processes msg at receiver and checks that it is refused
// with an error matching want (errors.Is for a sentinel, or a substring)
// and that the receiver's state is unchanged.
func expectRefused(t *testing.T, receiver *Group, msg []byte, want any) {
	t.Helper()
	before, err := receiver.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	ev, err := receiver.ProcessMessage(msg, testNow)
	if err == nil {
		t.Fatalf("message accepted: %+v", ev)
	}
	switch w := want.(type) {
	case error:
		if !errors.Is(err, w) {
			t.Errorf("err = %v, want %v", err, w)
		}
	case string:
		if !strings.Contains(err.Error(), w) {
			t.Errorf("err = %v, want it to mention %q", err, w)
		}
	}
	after, err := receiver.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Error("refused message changed the receiver's state")
	}
}

// forgeCommit has g create a commit with byValue proposals and a path if
// forcePath, changed by tamper before it is signed, as a misbehaving
// member would. The pending state is discarded.
func forgeCommit(t *testing.T, s *sim, g *Group, byValue []*Proposal, forcePath bool, tamper func(*Commit)) []byte {
	t.Helper()
	out, err := g.createCommit(s.rand, byValue, forcePath, treeInExtension, testNow, tamper)
	if err != nil {
		t.Fatal(err)
	}
	g.DiscardPending()
	return out.Commit
}

// resignLeaf signs a changed commit path leaf again with g's key, so that
// only the change under test is wrong.
func resignLeaf(t *testing.T, g *Group, leaf *LeafNode) {
	t.Helper()
	tbs, err := leaf.marshalTBS(g.ctx.GroupID, g.own())
	if err != nil {
		t.Fatal(err)
	}
	if leaf.Signature, err = g.cs.signWithLabel(nil, g.signer, labelLeafNodeTBS, tbs); err != nil {
		t.Fatal(err)
	}
}

func removeOf(l uint32) *Proposal {
	return &Proposal{Type: ProposalTypeRemove, Remove: &RemoveProposal{Removed: leafIndex(l)}}
}

func TestRefuseCommitWithoutRequiredPath(t *testing.T) {
	for _, suite := range simSuites {
		t.Run(suiteName(suite), func(t *testing.T) {
			s, committer, receiver := newRefusalSim(t, suite)
			// A Remove needs a path (Section 12.4); so does an empty commit.
			msg := forgeCommit(t, s, committer, []*Proposal{removeOf(3)}, false, func(c *Commit) { c.Path = nil })
			expectRefused(t, receiver, msg, ErrPathRequired)
			msg = forgeCommit(t, s, committer, nil, true, func(c *Commit) { c.Path = nil })
			expectRefused(t, receiver, msg, ErrPathRequired)
		})
	}
}

func TestRefuseBadParentHash(t *testing.T) {
	for _, suite := range simSuites {
		t.Run(suiteName(suite), func(t *testing.T) {
			s, committer, receiver := newRefusalSim(t, suite)
			msg := forgeCommit(t, s, committer, nil, true, func(c *Commit) {
				c.Path.LeafNode.ParentHash[0] ^= 1
				resignLeaf(t, committer, &c.Path.LeafNode)
			})
			expectRefused(t, receiver, msg, errParentHash)
		})
	}
}

func TestRefuseLeafWithBadSignature(t *testing.T) {
	for _, suite := range simSuites {
		t.Run(suiteName(suite), func(t *testing.T) {
			s, committer, receiver := newRefusalSim(t, suite)
			// A commit path leaf whose signature does not verify.
			msg := forgeCommit(t, s, committer, nil, true, func(c *Commit) {
				c.Path.LeafNode.Signature[0] ^= 1
			})
			expectRefused(t, receiver, msg, "signature")

			// A KeyPackage whose leaf signature does not verify, with the
			// KeyPackage signature itself made valid again.
			kp := newTestKeyPackage(t, s.rand, suite, "member-bad-leaf")
			kp.KeyPackage.LeafNode.Signature[0] ^= 1
			tbs, err := kp.KeyPackage.marshalTBS()
			if err != nil {
				t.Fatal(err)
			}
			if kp.KeyPackage.Signature, err = committer.cs.signWithLabel(s.rand, kp.Signer, labelKeyPackageTBS, tbs); err != nil {
				t.Fatal(err)
			}
			if err := ValidateKeyPackage(&kp.KeyPackage, suite, testNow, testConfig().ValidateCredential); err == nil {
				t.Error("ValidateKeyPackage accepted a leaf with a bad signature")
			}
			if _, err := committer.Add(s.rand, [][]byte{kpMessage(t, kp)}, testNow); err == nil {
				t.Error("Add accepted a leaf with a bad signature")
			}
			// The same Add forged into a commit is refused by receivers.
			msg = forgeCommit(t, s, committer, nil, true, func(c *Commit) {
				c.Proposals = append(c.Proposals, ProposalOrRef{Type: ProposalOrRefTypeProposal,
					Proposal: &Proposal{Type: ProposalTypeAdd, Add: &AddProposal{KeyPackage: kp.KeyPackage}}})
			})
			expectRefused(t, receiver, msg, "signature")
		})
	}
}

func TestRefuseKeyPackageOfAnotherSuite(t *testing.T) {
	for _, suite := range simSuites {
		t.Run(suiteName(suite), func(t *testing.T) {
			s, committer, receiver := newRefusalSim(t, suite)
			other := CipherSuiteMLS256DHKEMP384AES256GCMSHA384P384
			kp := newTestKeyPackage(t, s.rand, other, "member-other-suite")
			if err := ValidateKeyPackage(&kp.KeyPackage, other, testNow, testConfig().ValidateCredential); err != nil {
				t.Fatalf("the key package is valid in its own suite: %v", err)
			}
			if err := ValidateKeyPackage(&kp.KeyPackage, suite, testNow, testConfig().ValidateCredential); err == nil {
				t.Error("ValidateKeyPackage accepted a key package of another suite")
			}
			if _, err := committer.Add(s.rand, [][]byte{kpMessage(t, kp)}, testNow); err == nil {
				t.Error("Add accepted a key package of another suite")
			}
			msg := forgeCommit(t, s, committer, nil, false, func(c *Commit) {
				c.Proposals = append(c.Proposals, ProposalOrRef{Type: ProposalOrRefTypeProposal,
					Proposal: &Proposal{Type: ProposalTypeAdd, Add: &AddProposal{KeyPackage: kp.KeyPackage}}})
			})
			expectRefused(t, receiver, msg, "cipher suite")
		})
	}
}

func TestRefuseDuplicateAdd(t *testing.T) {
	for _, suite := range simSuites {
		t.Run(suiteName(suite), func(t *testing.T) {
			s, committer, receiver := newRefusalSim(t, suite)
			kp := newTestKeyPackage(t, s.rand, suite, "member-twice")
			b := kpMessage(t, kp)
			if _, err := committer.Add(s.rand, [][]byte{b, b}, testNow); err == nil {
				t.Error("Add accepted the same key package twice")
			}
			add := &Proposal{Type: ProposalTypeAdd, Add: &AddProposal{KeyPackage: kp.KeyPackage}}
			msg := forgeCommit(t, s, committer, []*Proposal{add}, false, func(c *Commit) {
				c.Proposals = append(c.Proposals, c.Proposals[0])
			})
			expectRefused(t, receiver, msg, "already used")
			// Adding an existing member (its signature key) is refused too.
			existing := newTestKeyPackage(t, s.rand, suite, "member-again")
			existing.KeyPackage.LeafNode.SignatureKey = receiver.signer.PublicKey()
			if _, err := committer.Add(s.rand, [][]byte{kpMessage(t, existing)}, testNow); err == nil {
				t.Error("Add accepted a key package of a current member")
			}
		})
	}
}

func TestRefuseMessageFromNonMember(t *testing.T) {
	for _, suite := range simSuites {
		t.Run(suiteName(suite), func(t *testing.T) {
			s, _, receiver := newRefusalSim(t, suite)
			// An outsider's proposal, framed as coming from a blank leaf of
			// the right group and epoch.
			outsider := newTestKeyPackage(t, s.rand, suite, "member-outsider")
			fc := &FramedContent{
				GroupID:     receiver.ctx.GroupID,
				Epoch:       receiver.ctx.Epoch,
				Sender:      Sender{Type: SenderTypeMember, LeafIndex: 9},
				ContentType: ContentTypeProposal,
				Proposal:    removeOf(1),
			}
			ac, err := receiver.cs.signFramedContent(s.rand, outsider.Signer, WireFormatPublicMessage, fc, &receiver.ctx)
			if err != nil {
				t.Fatal(err)
			}
			pm := &PublicMessage{Content: ac.Content, Auth: ac.Auth, MembershipTag: make([]byte, receiver.cs.nh)}
			msg, err := (&MLSMessage{WireFormat: WireFormatPublicMessage, PublicMessage: pm}).Marshal()
			if err != nil {
				t.Fatal(err)
			}
			expectRefused(t, receiver, msg, ErrNotMember)

			// A removed member's messages are refused once the group moved on.
			names := s.names()
			victim := s.members[names[3]]
			out, err := s.members[names[0]].Remove(s.rand, []uint32{victim.OwnLeaf()}, testNow)
			if err != nil {
				t.Fatal(err)
			}
			s.commit(names[0], out, nil)
			stale, err := victim.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			old, err := UnmarshalGroup(testConfig(), stale)
			if err != nil {
				t.Fatal(err)
			}
			old.removed = false // pretend it ignored its removal
			msg, err = old.Protect(s.rand, []byte("still here?"), nil)
			if err != nil {
				t.Fatal(err)
			}
			// Its epoch is now a past epoch whose keys the members keep,
			// but the old epoch's message still only decrypts under the old
			// epoch; in the current epoch it is refused.
			msg2 := bytes.Clone(msg)
			pmsg, err := UnmarshalMLSMessage(msg2)
			if err != nil {
				t.Fatal(err)
			}
			pmsg.PrivateMessage.Epoch = receiver.Epoch()
			msg2, err = pmsg.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			expectRefused(t, receiver, msg2, errPrivateMessage)
		})
	}
}

func TestRefuseReplayedPrivateMessage(t *testing.T) {
	for _, suite := range simSuites {
		t.Run(suiteName(suite), func(t *testing.T) {
			s, sender, receiver := newRefusalSim(t, suite)
			names := s.names()
			msg := s.broadcast(names[0], []byte("once"))
			_ = sender
			expectRefused(t, receiver, msg, ErrReplay)
			// Out of order within the window is fine, replays are not.
			m1, err := sender.Protect(s.rand, []byte("one"), nil)
			if err != nil {
				t.Fatal(err)
			}
			m2, err := sender.Protect(s.rand, []byte("two"), nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range [][]byte{m2, m1} {
				if _, err := receiver.ProcessMessage(m, testNow); err != nil {
					t.Fatalf("out-of-order message: %v", err)
				}
			}
			expectRefused(t, receiver, m1, ErrReplay)
			expectRefused(t, receiver, m2, ErrReplay)
		})
	}
}

func TestRefuseCommitForWrongEpoch(t *testing.T) {
	for _, suite := range simSuites {
		t.Run(suiteName(suite), func(t *testing.T) {
			s, committer, receiver := newRefusalSim(t, suite)
			names := s.names()
			out, err := committer.Update(s.rand, testNow)
			if err != nil {
				t.Fatal(err)
			}
			s.commit(names[0], out, nil)
			// The same commit again is for the previous epoch.
			expectRefused(t, receiver, out.Commit, ErrWrongEpoch)
			// A commit claiming a future epoch.
			msg := forgeCommit(t, s, committer, nil, true, nil)
			m, err := UnmarshalMLSMessage(msg)
			if err != nil {
				t.Fatal(err)
			}
			m.PublicMessage.Content.Epoch += 5
			if msg, err = m.Marshal(); err != nil {
				t.Fatal(err)
			}
			expectRefused(t, receiver, msg, ErrWrongEpoch)
		})
	}
}

// TestForgeCommitControl checks that forgeCommit without tampering makes a
// commit receivers accept, so the refusals above are due to the change
// under test alone.
func TestForgeCommitControl(t *testing.T) {
	for _, suite := range simSuites {
		t.Run(suiteName(suite), func(t *testing.T) {
			s, committer, receiver := newRefusalSim(t, suite)
			msg := forgeCommit(t, s, committer, []*Proposal{removeOf(3)}, false, nil)
			ev, err := receiver.ProcessMessage(msg, testNow)
			if err != nil || ev.Kind != EventNewEpoch || len(ev.Removed) != 1 {
				t.Fatalf("untampered forged commit: %+v, %v", ev, err)
			}
		})
	}
}

func TestRefuseIdentityChange(t *testing.T) {
	for _, suite := range simSuites {
		t.Run(suiteName(suite), func(t *testing.T) {
			s, committer, receiver := newRefusalSim(t, suite)
			msg := forgeCommit(t, s, committer, nil, true, func(c *Commit) {
				c.Path.LeafNode.Credential.Identity = []byte("member-someone-else")
				resignLeaf(t, committer, &c.Path.LeafNode)
			})
			expectRefused(t, receiver, msg, "may not change its credential")
		})
	}
}

func TestRefuseCredentialRejectedByApplication(t *testing.T) {
	for _, suite := range simSuites {
		t.Run(suiteName(suite), func(t *testing.T) {
			s, committer, receiver := newRefusalSim(t, suite)
			mallory := newTestKeyPackage(t, s.rand, suite, "mallory")
			if _, err := committer.Add(s.rand, [][]byte{kpMessage(t, mallory)}, testNow); err == nil {
				t.Error("Add accepted a credential the application refuses")
			}
			msg := forgeCommit(t, s, committer, nil, false, func(c *Commit) {
				c.Proposals = append(c.Proposals, ProposalOrRef{Type: ProposalOrRefTypeProposal,
					Proposal: &Proposal{Type: ProposalTypeAdd, Add: &AddProposal{KeyPackage: mallory.KeyPackage}}})
			})
			expectRefused(t, receiver, msg, "credential rejected")
			// A Welcome whose tree holds a refused leaf is refused.
			kp := newTestKeyPackage(t, s.rand, suite, "member-joiner")
			out, err := committer.Add(s.rand, [][]byte{kpMessage(t, kp)}, testNow)
			if err != nil {
				t.Fatal(err)
			}
			committer.DiscardPending()
			strict := Config{ValidateCredential: func(c Credential, _ []byte) error {
				if string(c.Identity) == s.names()[1] {
					return errorf("revoked")
				}
				return nil
			}}
			if _, err := JoinFromWelcome(strict, out.Welcome, kp, nil, testNow); err == nil || !strings.Contains(err.Error(), "revoked") {
				t.Errorf("join with a refused member in the tree: %v", err)
			}
			if _, err := JoinFromWelcome(testConfig(), out.Welcome, kp, nil, testNow); err != nil {
				t.Errorf("join: %v", err)
			}
		})
	}
}

func TestRefuseReInit(t *testing.T) {
	s, committer, receiver := newRefusalSim(t, CipherSuiteMLS128DHKEMX25519AES128GCMSHA256Ed25519)
	reinit := &Proposal{Type: ProposalTypeReInit, ReInit: &ReInitProposal{
		GroupID: []byte("new group"), Version: ProtocolVersionMLS10, CipherSuite: committer.CipherSuite()}}
	if _, err := committer.Propose(s.rand, reinit, testNow); !errors.Is(err, errReInit) {
		t.Errorf("Propose(ReInit): err = %v, want errReInit", err)
	}
	msg := forgeCommit(t, s, committer, nil, true, func(c *Commit) {
		c.Proposals = []ProposalOrRef{{Type: ProposalOrRefTypeProposal, Proposal: reinit}}
	})
	expectRefused(t, receiver, msg, errReInit)
}

func TestRefuseUnknownProposalReference(t *testing.T) {
	s, committer, receiver := newRefusalSim(t, CipherSuiteMLS128DHKEMX25519AES128GCMSHA256Ed25519)
	msg := forgeCommit(t, s, committer, nil, true, func(c *Commit) {
		c.Proposals = append(c.Proposals, ProposalOrRef{Type: ProposalOrRefTypeReference,
			Reference: make(ProposalRef, committer.cs.nh)})
	})
	expectRefused(t, receiver, msg, ErrUnknownProposal)
}

func TestRefuseCommitRemovingCommitter(t *testing.T) {
	s, committer, receiver := newRefusalSim(t, CipherSuiteMLS128DHKEMX25519AES128GCMSHA256Ed25519)
	if _, err := committer.Remove(s.rand, []uint32{committer.OwnLeaf()}, testNow); err == nil {
		t.Error("a commit removing its committer was created")
	}
	msg := forgeCommit(t, s, committer, nil, true, func(c *Commit) {
		c.Proposals = append(c.Proposals, ProposalOrRef{Type: ProposalOrRefTypeProposal, Proposal: removeOf(committer.OwnLeaf())})
	})
	expectRefused(t, receiver, msg, "removes the committer")
}
