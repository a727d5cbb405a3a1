package mls

// This file holds proposals as a group handles them (RFC 9420, Section
// 12.1 to 12.3): the cache of proposals received by reference, resolving
// a commit's proposal list, validating it (Section 12.2) and applying it
// to the tree and GroupContext (Section 12.3), and the rule of Section
// 12.4 for when a commit needs a path.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"qpchat/kem"
)

// maxCachedProposals bounds the proposals held in one epoch, so that a
// member flooding proposals cannot grow the state without limit.
const maxCachedProposals = 1024

// cachedProposal is a proposal received in the current epoch, held until
// a commit references it (Section 12.4).
type cachedProposal struct {
	ref      ProposalRef
	proposal *Proposal
	sender   Sender
}

// sourcedProposal is a proposal of a commit with its sender: the proposal's
// own sender for one by reference, the committer for one by value.
type sourcedProposal struct {
	proposal *Proposal
	sender   Sender
	ref      ProposalRef // nil for a proposal by value
}

// receiveProposal validates a proposal received in the current epoch and
// caches it under its reference (RFC 9420, Section 12.1, Section 5.2).
func (g *Group) receiveProposal(ac *AuthenticatedContent, now time.Time) (*Event, error) {
	p := ac.Content.Proposal
	if p == nil {
		return nil, errors.New("mls: proposal message without proposal")
	}
	if ac.Content.Sender.Type != SenderTypeMember {
		return nil, fmt.Errorf("mls: proposals from sender type %d are not supported", ac.Content.Sender.Type)
	}
	if len(g.cache) >= maxCachedProposals {
		return nil, errors.New("mls: too many pending proposals in this epoch")
	}
	if err := g.checkProposal(p, ac.Content.Sender, now); err != nil {
		return nil, err
	}
	enc, err := ac.Marshal()
	if err != nil {
		return nil, err
	}
	ref := g.cs.makeProposalRef(enc)
	for _, c := range g.cache {
		if bytes.Equal(c.ref, ref) {
			return nil, fmt.Errorf("%w: proposal already received", ErrReplay)
		}
	}
	g.cache = append(g.cache, cachedProposal{ref: ref, proposal: p, sender: ac.Content.Sender})
	ev := &Event{
		Kind:              EventProposal,
		Sender:            uint32(ac.Content.Sender.LeafIndex),
		Epoch:             ac.Content.Epoch,
		AuthenticatedData: ac.Content.AuthenticatedData,
		Proposal:          p,
	}
	if leaf := g.tree.leaf(ac.Content.Sender.LeafIndex); leaf != nil {
		ev.SenderCredential = leaf.Credential
	}
	return ev, nil
}

// checkProposal checks what can be checked of one proposal on its own,
// against the current state (RFC 9420, Section 12.1). The proposal is
// checked again in the context of a commit.
func (g *Group) checkProposal(p *Proposal, sender Sender, now time.Time) error {
	switch p.Type {
	case ProposalTypeAdd:
		return g.validateKeyPackage(&p.Add.KeyPackage, now)
	case ProposalTypeUpdate:
		if sender.Type != SenderTypeMember {
			return errors.New("mls: update from a non-member")
		}
		return g.validateUpdateLeaf(g.tree, sender.LeafIndex, &p.Update.LeafNode)
	case ProposalTypeRemove:
		if g.tree.leaf(p.Remove.Removed) == nil {
			return fmt.Errorf("mls: remove of blank or unknown leaf %d", p.Remove.Removed)
		}
	case ProposalTypePSK:
		_, err := g.psks().resolve(g.cs, []PreSharedKeyID{p.PreSharedKey.PSK})
		return err
	case ProposalTypeReInit:
		return errReInit
	case ProposalTypeExternalInit:
		return errors.New("mls: external init proposal outside an external commit")
	case ProposalTypeGroupContextExtensions:
		return g.checkGroupContextExtensions(g.tree, p.GroupContextExtensions.Extensions)
	default:
		return fmt.Errorf("mls: unsupported proposal type %d", p.Type)
	}
	return nil
}

// errReInit refuses ReInit proposals: qpchat does not reinitialize groups
// (RFC 9420, Section 12.1.5); a new group is created instead.
var errReInit = errors.New("mls: ReInit proposals are not supported")

// validateUpdateLeaf checks the leaf of an Update proposal from the member
// at l (RFC 9420, Section 12.1.2): a valid leaf node of source update
// (Section 7.3) whose encryption key differs from the current one and
// whose identity is unchanged.
func (g *Group) validateUpdateLeaf(t *ratchetTree, l leafIndex, leaf *LeafNode) error {
	old := t.leaf(l)
	if old == nil {
		return ErrNotMember
	}
	if err := sameIdentity(old, leaf); err != nil {
		return err
	}
	return t.validateLeaf(leaf, &leafValidation{
		groupID:            g.ctx.GroupID,
		index:              l,
		source:             LeafNodeSourceUpdate,
		replaces:           true,
		groupExtensions:    g.ctx.Extensions,
		validateCredential: g.cfg.ValidateCredential,
	})
}

// sameIdentity refuses a leaf that changes the member's credential: an
// Update or a commit path may rotate keys, not identity (Section 5.3.1
// leaves the rule to the application; qpchat binds a leaf to one device).
func sameIdentity(old, leaf *LeafNode) error {
	a, err := old.Credential.Marshal()
	if err != nil {
		return err
	}
	b, err := leaf.Credential.Marshal()
	if err != nil {
		return err
	}
	if !bytes.Equal(a, b) {
		return errors.New("mls: a member's update may not change its credential")
	}
	return nil
}

// checkGroupContextExtensions checks a GroupContextExtensions proposal
// against the members of t (RFC 9420, Section 12.1.7): every member must
// support every extension, and any required_capabilities.
func (g *Group) checkGroupContextExtensions(t *ratchetTree, exts Extensions) error {
	var req *RequiredCapabilities
	if b, ok := exts.Find(ExtensionTypeRequiredCapabilities); ok {
		r, err := UnmarshalRequiredCapabilities(b)
		if err != nil {
			return err
		}
		req = r
	}
	for x := 0; x < t.size; x += 2 {
		leaf := t.at(nodeIndex(x)).leaf
		if leaf == nil {
			continue
		}
		if err := checkExtensionsSupported(&leaf.Capabilities, exts); err != nil {
			return fmt.Errorf("leaf %d: %w", x/2, err)
		}
		if req != nil {
			if err := checkRequiredCapabilities(&leaf.Capabilities, req); err != nil {
				return fmt.Errorf("leaf %d: %w", x/2, err)
			}
		}
	}
	return nil
}

// checkRequiredCapabilities checks caps against required_capabilities
// (RFC 9420, Section 11.1).
func checkRequiredCapabilities(caps *Capabilities, req *RequiredCapabilities) error {
	for _, e := range req.ExtensionTypes {
		if !caps.supportsExtension(e) {
			return fmt.Errorf("mls: required extension %d not supported", e)
		}
	}
	for _, p := range req.ProposalTypes {
		if !isDefaultProposal(p) && !slices.Contains(caps.Proposals, p) {
			return fmt.Errorf("mls: required proposal type %d not supported", p)
		}
	}
	for _, c := range req.CredentialTypes {
		if !slices.Contains(caps.Credentials, c) {
			return fmt.Errorf("mls: required credential type %d not supported", c)
		}
	}
	return nil
}

// resolveProposals turns a commit's ProposalOrRef list into proposals with
// their senders (RFC 9420, Section 12.4.2: "for each proposal by reference,
// find it in the cache"). committer is the commit's sender.
func (g *Group) resolveProposals(list []ProposalOrRef, committer Sender) ([]sourcedProposal, error) {
	out := make([]sourcedProposal, 0, len(list))
	for i := range list {
		por := &list[i]
		switch por.Type {
		case ProposalOrRefTypeProposal:
			out = append(out, sourcedProposal{proposal: por.Proposal, sender: committer})
		case ProposalOrRefTypeReference:
			found := false
			for _, c := range g.cache {
				if bytes.Equal(c.ref, por.Reference) {
					out = append(out, sourcedProposal{proposal: c.proposal, sender: c.sender, ref: c.ref})
					found = true
					break
				}
			}
			if !found {
				return nil, ErrUnknownProposal
			}
		default:
			return nil, fmt.Errorf("mls: invalid ProposalOrRef type %d", por.Type)
		}
	}
	return out, nil
}

// validateProposalList applies the rules of RFC 9420, Section 12.2 (and,
// for external commits, Section 12.4.3.2) to the proposals of a commit
// from committer. It does not check each proposal's own validity, which
// applyProposals does in application order.
func (g *Group) validateProposalList(props []sourcedProposal, committer Sender, hasRefs bool) error {
	external := committer.Type == SenderTypeNewMemberCommit
	var (
		touched     = map[leafIndex]bool{}
		pskIDs      [][]byte
		nGCE, nInit int
		nRemove     int
	)
	for _, sp := range props {
		p := sp.proposal
		switch p.Type {
		case ProposalTypeAdd:
			if external {
				return errors.New("mls: external commit with an add proposal")
			}
		case ProposalTypeUpdate:
			if external {
				return errors.New("mls: external commit with an update proposal")
			}
			if sp.sender.Type != SenderTypeMember {
				return errors.New("mls: update proposal from a non-member")
			}
			if sp.ref == nil {
				return errors.New("mls: update proposal by value")
			}
			if committer.Type == SenderTypeMember && sp.sender.LeafIndex == committer.LeafIndex {
				return errors.New("mls: commit covers the committer's own update")
			}
			if touched[sp.sender.LeafIndex] {
				return fmt.Errorf("mls: several updates or removes of leaf %d", sp.sender.LeafIndex)
			}
			touched[sp.sender.LeafIndex] = true
		case ProposalTypeRemove:
			r := p.Remove.Removed
			nRemove++
			if committer.Type == SenderTypeMember && r == committer.LeafIndex {
				return errors.New("mls: commit removes the committer")
			}
			if touched[r] {
				return fmt.Errorf("mls: several updates or removes of leaf %d", r)
			}
			touched[r] = true
		case ProposalTypePSK:
			id, err := p.PreSharedKey.PSK.Marshal()
			if err != nil {
				return err
			}
			for _, prev := range pskIDs {
				if bytes.Equal(prev, id) {
					return errors.New("mls: the same PSK is proposed twice")
				}
			}
			pskIDs = append(pskIDs, id)
		case ProposalTypeGroupContextExtensions:
			if external {
				return errors.New("mls: external commit with a group context extensions proposal")
			}
			nGCE++
		case ProposalTypeExternalInit:
			if !external {
				return errors.New("mls: external init proposal in a member commit")
			}
			nInit++
		case ProposalTypeReInit:
			return errReInit
		default:
			return fmt.Errorf("mls: unsupported proposal type %d", p.Type)
		}
	}
	if nGCE > 1 {
		return errors.New("mls: several group context extensions proposals")
	}
	if external {
		if nInit != 1 {
			return errors.New("mls: external commit needs exactly one external init proposal")
		}
		if nRemove > 1 {
			return errors.New("mls: external commit with several removes")
		}
		if hasRefs {
			return errors.New("mls: external commit with proposals by reference")
		}
	}
	return nil
}

// pathRequired reports whether a commit covering props must carry a path
// (RFC 9420, Section 12.4): unless every proposal is an Add, PreSharedKey
// or ReInit, and also for an empty commit.
func pathRequired(props []sourcedProposal) bool {
	if len(props) == 0 {
		return true
	}
	for _, sp := range props {
		switch sp.proposal.Type {
		case ProposalTypeAdd, ProposalTypePSK, ProposalTypeReInit:
		default:
			return true
		}
	}
	return false
}

// addedMember is a member added by a commit.
type addedMember struct {
	leaf leafIndex
	kp   *KeyPackage
	ref  KeyPackageRef
	// initKey is kp's init key, parsed when kp was validated.
	initKey kem.PublicKey
}

// proposalEffects is what applying a commit's proposals changed.
type proposalEffects struct {
	extensions Extensions // the new GroupContext extensions
	added      []addedMember
	removed    []Member
	updated    []Member
	psks       []PreSharedKeyID
	selfRemove bool
	// externalInit is the ExternalInit's kem_output of an external commit.
	externalInit []byte
	// externalRemove is the leaf an external joiner removed (a resync).
	externalRemove *leafIndex
}

// applyProposals applies props to t, a clone of the group's tree, in the
// order of RFC 9420, Section 12.3 (GroupContextExtensions, Update,
// Remove, Add, then PreSharedKey collected), validating each proposal as
// it is applied so that Adds are checked against the tree after the
// Removes (Section 12.2: an Add of a member being removed is allowed).
func (g *Group) applyProposals(t *ratchetTree, props []sourcedProposal, now time.Time) (*proposalEffects, error) {
	eff := &proposalEffects{extensions: g.ctx.Extensions}
	byType := func(typ ProposalType, f func(sp sourcedProposal) error) error {
		for _, sp := range props {
			if sp.proposal.Type == typ {
				if err := f(sp); err != nil {
					return err
				}
			}
		}
		return nil
	}
	err := byType(ProposalTypeGroupContextExtensions, func(sp sourcedProposal) error {
		exts := sp.proposal.GroupContextExtensions.Extensions
		if err := g.checkGroupContextExtensions(t, exts); err != nil {
			return err
		}
		eff.extensions = exts
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = byType(ProposalTypeUpdate, func(sp sourcedProposal) error {
		l := sp.sender.LeafIndex
		leaf := sp.proposal.Update.LeafNode
		if err := g.validateUpdateLeaf(t, l, &leaf); err != nil {
			return err
		}
		if err := t.updateLeaf(l, &leaf); err != nil {
			return err
		}
		eff.updated = append(eff.updated, memberOf(l, &leaf))
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = byType(ProposalTypeRemove, func(sp sourcedProposal) error {
		r := sp.proposal.Remove.Removed
		leaf := t.leaf(r)
		if leaf == nil {
			return fmt.Errorf("mls: remove of blank or unknown leaf %d", r)
		}
		eff.removed = append(eff.removed, memberOf(r, leaf))
		if r == g.own() {
			eff.selfRemove = true
		}
		if sp.sender.Type == SenderTypeNewMemberCommit {
			rr := r
			eff.externalRemove = &rr
		}
		return t.removeLeaf(r)
	})
	if err != nil {
		return nil, err
	}
	// The signatures of many Adds (a commit building a large group) are
	// verified in batches first; if a batch fails, each KeyPackage is
	// verified alone below, which names the bad one.
	var kps []*KeyPackage
	for _, sp := range props {
		if sp.proposal.Type == ProposalTypeAdd {
			kps = append(kps, &sp.proposal.Add.KeyPackage)
		}
	}
	sigsVerified := batchVerifyKeyPackages(t.cs, kps)
	err = byType(ProposalTypeAdd, func(sp sourcedProposal) error {
		kp := &sp.proposal.Add.KeyPackage
		initKey, err := g.validateKeyPackageChecked(t, kp, eff.extensions, now, sigsVerified)
		if err != nil {
			return err
		}
		leaf := kp.LeafNode
		l, err := t.addLeaf(&leaf)
		if err != nil {
			return err
		}
		ref, err := MakeKeyPackageRef(kp)
		if err != nil {
			return err
		}
		eff.added = append(eff.added, addedMember{leaf: l, kp: kp, ref: ref, initKey: initKey})
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = byType(ProposalTypePSK, func(sp sourcedProposal) error {
		eff.psks = append(eff.psks, sp.proposal.PreSharedKey.PSK)
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = byType(ProposalTypeExternalInit, func(sp sourcedProposal) error {
		eff.externalInit = sp.proposal.ExternalInit.KEMOutput
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Section 12.2: an Add's or an Update's new leaf must support the
	// extensions of a GroupContextExtensions in the same commit; checking
	// the final tree against the final extensions covers both orders.
	if !slices.EqualFunc(eff.extensions, g.ctx.Extensions, func(a, b Extension) bool {
		return a.Type == b.Type && bytes.Equal(a.Data, b.Data)
	}) {
		if err := g.checkGroupContextExtensions(t, eff.extensions); err != nil {
			return nil, err
		}
	}
	return eff, nil
}

// Pre-shared keys (RFC 9420, Section 8.4): external PSKs come from the
// application, resumption PSKs from the group's own current and past
// epochs (Section 8.6).
// pskResolver looks up the PSKs of PreSharedKeyIDs.
type pskResolver struct {
	external   func(id []byte) ([]byte, bool)
	resumption func(groupID []byte, epoch uint64) ([]byte, bool)
}

// psks returns the resolver of cfg with no resumption PSKs, as a joiner
// has none.
func (c Config) psks(resumption func([]byte, uint64) ([]byte, bool)) pskResolver {
	return pskResolver{external: c.ExternalPSKs, resumption: resumption}
}

// psks returns the group's resolver: external PSKs from the Config,
// resumption PSKs (usage application) of this group's current and kept
// past epochs.
func (g *Group) psks() pskResolver {
	return g.cfg.psks(func(groupID []byte, epoch uint64) ([]byte, bool) {
		if !bytes.Equal(groupID, g.ctx.GroupID) {
			return nil, false
		}
		if epoch == g.ctx.Epoch {
			return g.secrets.resumptionPSK, true
		}
		for _, p := range g.past {
			if p.ctx.Epoch == epoch {
				return p.resumptionPSK, true
			}
		}
		return nil, false
	})
}

// resolve returns the PSKs of ids in order, checking each id (Section
// 8.4): the nonce has length KDF.Nh, a resumption PSK has usage
// application (qpchat neither reinitializes nor branches), and the key is
// known.
func (r pskResolver) resolve(cs *cipherSuite, ids []PreSharedKeyID) ([]pskWithID, error) {
	out := make([]pskWithID, 0, len(ids))
	for i := range ids {
		id := &ids[i]
		if len(id.PSKNonce) != cs.nh {
			return nil, fmt.Errorf("mls: psk nonce of length %d, want %d", len(id.PSKNonce), cs.nh)
		}
		var (
			psk []byte
			ok  bool
		)
		switch id.Type {
		case PSKTypeExternal:
			if r.external != nil {
				psk, ok = r.external(id.PSKID)
			}
		case PSKTypeResumption:
			if id.Usage != ResumptionPSKUsageApplication {
				return nil, errors.New("mls: resumption psk usage other than application")
			}
			if r.resumption != nil {
				psk, ok = r.resumption(id.PSKGroupID, id.PSKEpoch)
			}
		default:
			return nil, fmt.Errorf("mls: invalid psk type %d", id.Type)
		}
		if !ok {
			return nil, errors.New("mls: unknown pre-shared key")
		}
		out = append(out, pskWithID{id: id, psk: psk})
	}
	return out, nil
}

// Propose sends a proposal by reference (RFC 9420, Section 12.1): it
// returns the MLSMessage for the group and caches the proposal, so that a
// later commit, ours or another member's, can cover it.
func (g *Group) Propose(rand io.Reader, p *Proposal, now time.Time) ([]byte, error) {
	if g.removed {
		return nil, ErrRemoved
	}
	self := Sender{Type: SenderTypeMember, LeafIndex: g.own()}
	if err := g.checkProposal(p, self, now); err != nil {
		return nil, err
	}
	if len(g.cache) >= maxCachedProposals {
		return nil, errors.New("mls: too many pending proposals in this epoch")
	}
	fc := &FramedContent{
		GroupID:     g.ctx.GroupID,
		Epoch:       g.ctx.Epoch,
		Sender:      self,
		ContentType: ContentTypeProposal,
		Proposal:    p,
	}
	ac, msg, err := g.frame(rand, fc, nil)
	if err != nil {
		return nil, err
	}
	enc, err := ac.Marshal()
	if err != nil {
		return nil, err
	}
	g.cache = append(g.cache, cachedProposal{ref: g.cs.makeProposalRef(enc), proposal: p, sender: self})
	return msg, nil
}

// ProposeUpdate proposes a new leaf for this member with a fresh
// encryption key (RFC 9420, Section 12.1.2), for another member to
// commit. The new private key is kept until a commit covers the proposal
// or the epoch ends. (Update, a commit with a path, is usually better: it
// also refreshes the path.)
func (g *Group) ProposeUpdate(rand io.Reader, now time.Time) ([]byte, error) {
	if g.removed {
		return nil, ErrRemoved
	}
	old := g.tree.leaf(g.own())
	key, err := g.cs.hpke.KEM.GenerateKeyPair(rand)
	if err != nil {
		return nil, err
	}
	leaf := LeafNode{
		EncryptionKey: key.PublicKey().Bytes(),
		SignatureKey:  old.SignatureKey,
		Credential:    old.Credential,
		Capabilities:  old.Capabilities,
		Source:        LeafNodeSourceUpdate,
		Extensions:    old.Extensions,
	}
	tbs, err := leaf.marshalTBS(g.ctx.GroupID, g.own())
	if err != nil {
		return nil, err
	}
	if leaf.Signature, err = g.cs.signWithLabel(rand, g.signer, labelLeafNodeTBS, tbs); err != nil {
		return nil, err
	}
	msg, err := g.Propose(rand, &Proposal{Type: ProposalTypeUpdate, Update: &UpdateProposal{LeafNode: leaf}}, now)
	if err != nil {
		return nil, err
	}
	if g.updateKeys == nil {
		g.updateKeys = make(map[string]kem.PrivateKey)
	}
	g.updateKeys[string(g.cache[len(g.cache)-1].ref)] = key
	return msg, nil
}

// ownUpdateKey returns the leaf private key of our Update proposal among
// props, if a commit covers one.
func (g *Group) ownUpdateKey(props []sourcedProposal) (kem.PrivateKey, bool, error) {
	for _, sp := range props {
		if sp.proposal.Type == ProposalTypeUpdate && sp.sender.Type == SenderTypeMember && sp.sender.LeafIndex == g.own() {
			key, ok := g.updateKeys[string(sp.ref)]
			if !ok {
				return nil, false, errors.New("mls: commit covers an update of ours whose key we do not hold")
			}
			return key, true, nil
		}
	}
	return nil, false, nil
}

// ProposeAdd proposes adding the member of a serialized
// MLSMessage(KeyPackage).
func (g *Group) ProposeAdd(rand io.Reader, keyPackage []byte, now time.Time) ([]byte, error) {
	kp, err := parseKeyPackageMessage(keyPackage)
	if err != nil {
		return nil, err
	}
	return g.Propose(rand, &Proposal{Type: ProposalTypeAdd, Add: &AddProposal{KeyPackage: *kp}}, now)
}

// ProposeRemove proposes removing the member at leaf.
func (g *Group) ProposeRemove(rand io.Reader, leaf uint32, now time.Time) ([]byte, error) {
	return g.Propose(rand, &Proposal{Type: ProposalTypeRemove, Remove: &RemoveProposal{Removed: leafIndex(leaf)}}, now)
}
