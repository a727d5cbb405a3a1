package mls

// This file creates and processes commits (RFC 9420, Section 12.4.1 and
// Section 12.4.2). processCommit reads as one call per numbered step of
// Section 12.4.2; createCommit follows Section 12.4.1 the same way.
//
// A committer does not process its own commit: it keeps the new epoch's
// state as a pending commit and merges it once the Delivery Service has
// accepted the commit (Section 12.4, Section 14).

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"
)

// labelExternalInit is the HPKE exporter label of an external commit's
// init_secret (RFC 9420, Section 8.3).
const labelExternalInit = "MLS 1.0 external init secret"

// commitState is everything a commit changes: the next epoch's state, as
// computed by its creator or by a receiver.
type commitState struct {
	ctx     GroupContext
	tree    *ratchetTree
	priv    *treePrivateKeys
	secrets *epochSecrets
	interim []byte

	// Only for the committer, to build the Welcome.
	confirmationTag []byte
	joiner          *joinerSecret
	welcomeSecret   []byte
	pskIDs          []PreSharedKeyID
	path            *updatePathResult
	sender          leafIndex

	eff *proposalEffects
}

// pathSecretFor returns the path secret a new member at l gets in the
// Welcome, or nil when the commit has no path.
func (st *commitState) pathSecretFor(l leafIndex) []byte {
	if st.path == nil {
		return nil
	}
	return st.path.pathSecretFor(st.sender, l)
}

// zeroCommitterSecrets deletes the secrets only the Welcome needed.
func (st *commitState) zeroCommitterSecrets() {
	if st.joiner != nil {
		st.joiner.zero()
	}
	clear(st.welcomeSecret)
	st.joiner, st.welcomeSecret = nil, nil
}

// pendingCommit is our own commit, sent and waiting to be merged.
type pendingCommit struct {
	state   *commitState
	message []byte
	event   *Event
}

// CommitOutput is what a commit produces for the Delivery Service.
type CommitOutput struct {
	// Commit is the MLSMessage to send to the group.
	Commit []byte
	// Welcome is the MLSMessage(Welcome) for the added members, or nil.
	Welcome []byte
	// Added are the KeyPackageRefs of the added members (the Welcome's
	// new_member values); Removed the leaves removed.
	Added   []KeyPackageRef
	Removed []uint32
}

// CommitOptions are the proposals a commit carries by value, besides every
// proposal received in the epoch, which it carries by reference.
type CommitOptions struct {
	// KeyPackages are serialized MLSMessage(KeyPackage) to add.
	KeyPackages [][]byte
	// Remove are leaf indices to remove.
	Remove []uint32
	// PSKs are pre-shared keys to inject (external or resumption).
	PSKs []PreSharedKeyID
	// Extensions, when non-nil, replace the GroupContext extensions.
	Extensions Extensions
	// ForcePath includes an UpdatePath even when no proposal needs one,
	// refreshing the committer's leaf and path (a full commit).
	ForcePath bool
	// OmitTreeInWelcome leaves the ratchet tree out of the Welcome; the
	// new members then need it out of band (Group.RatchetTree after
	// MergePending).
	OmitTreeInWelcome bool
	// TreeOutOfBand, when set, also leaves the ratchet tree out of the
	// Welcome, and is called with the serialized tree of the new epoch
	// (the body of a ratchet_tree extension) while the Welcome is made;
	// the extension it returns goes into the Welcome's GroupInfo instead,
	// telling new members where to get the tree (RFC 9420, Section
	// 12.4.3.3 leaves out-of-band delivery to the application). Joiners
	// read it with WelcomeGroupInfoExtensions; JoinFromWelcome checks the
	// tree they bring against the GroupContext's tree hash.
	TreeOutOfBand func(tree []byte) (Extension, error)
}

// Add commits the addition of the members whose KeyPackages (serialized
// MLSMessages) are given, with a Welcome for them.
func (g *Group) Add(rand io.Reader, keyPackages [][]byte, now time.Time) (*CommitOutput, error) {
	return g.Commit(rand, &CommitOptions{KeyPackages: keyPackages}, now)
}

// Remove commits the removal of the members at the given leaves.
func (g *Group) Remove(rand io.Reader, leaves []uint32, now time.Time) (*CommitOutput, error) {
	return g.Commit(rand, &CommitOptions{Remove: leaves}, now)
}

// Update commits a fresh leaf key and path for this member (an empty
// commit with a path, RFC 9420, Section 12.4), together with any proposal
// received in the epoch.
func (g *Group) Update(rand io.Reader, now time.Time) (*CommitOutput, error) {
	return g.Commit(rand, &CommitOptions{ForcePath: true}, now)
}

// CommitPending commits the proposals received in this epoch.
func (g *Group) CommitPending(rand io.Reader, now time.Time) (*CommitOutput, error) {
	return g.Commit(rand, &CommitOptions{}, now)
}

// Commit creates a commit (RFC 9420, Section 12.4.1) covering every
// proposal received in this epoch by reference and the proposals of opts
// by value. The new epoch is pending until MergePending.
func (g *Group) Commit(rand io.Reader, opts *CommitOptions, now time.Time) (*CommitOutput, error) {
	if g.removed {
		return nil, ErrRemoved
	}
	if g.pending != nil {
		return nil, ErrPendingCommit
	}
	byValue, err := g.proposalsFor(opts)
	if err != nil {
		return nil, err
	}
	deliver := treeInExtension
	switch {
	case opts.TreeOutOfBand != nil:
		deliver = func(tree []byte) (Extension, bool, error) {
			ext, err := opts.TreeOutOfBand(tree)
			return ext, err == nil, err
		}
	case opts.OmitTreeInWelcome:
		deliver = nil
	}
	return g.createCommit(rand, byValue, opts.ForcePath, deliver, now, nil)
}

// proposalsFor turns CommitOptions into proposals by value.
func (g *Group) proposalsFor(opts *CommitOptions) ([]*Proposal, error) {
	var out []*Proposal
	if opts.Extensions != nil {
		out = append(out, &Proposal{Type: ProposalTypeGroupContextExtensions,
			GroupContextExtensions: &GroupContextExtensionsProposal{Extensions: opts.Extensions}})
	}
	for _, l := range opts.Remove {
		out = append(out, &Proposal{Type: ProposalTypeRemove, Remove: &RemoveProposal{Removed: leafIndex(l)}})
	}
	for _, b := range opts.KeyPackages {
		kp, err := parseKeyPackageMessage(b)
		if err != nil {
			return nil, err
		}
		out = append(out, &Proposal{Type: ProposalTypeAdd, Add: &AddProposal{KeyPackage: *kp}})
	}
	for _, id := range opts.PSKs {
		out = append(out, &Proposal{Type: ProposalTypePSK, PreSharedKey: &PreSharedKeyProposal{PSK: id}})
	}
	return out, nil
}

// parseKeyPackageMessage decodes a serialized MLSMessage(KeyPackage).
func parseKeyPackageMessage(b []byte) (*KeyPackage, error) {
	m, err := UnmarshalMLSMessage(b)
	if err != nil {
		return nil, err
	}
	if m.WireFormat != WireFormatKeyPackage {
		return nil, fmt.Errorf("mls: message of wire format %d is not a key package", m.WireFormat)
	}
	return m.KeyPackage, nil
}

// createCommit implements RFC 9420, Section 12.4.1. tamper, when not nil,
// changes the Commit before it is signed; tests use it to forge commits.
func (g *Group) createCommit(rand io.Reader, byValue []*Proposal, forcePath bool, deliver treeDelivery, now time.Time, tamper func(*Commit)) (*CommitOutput, error) {
	self := Sender{Type: SenderTypeMember, LeafIndex: g.own()}

	// Proposals: those received by reference that fit in the list, then
	// ours by value (Section 12.2 lets the committer drop invalid ones).
	var props []sourcedProposal
	for _, p := range byValue {
		props = append(props, sourcedProposal{proposal: p, sender: self})
	}
	if err := g.validateProposalList(props, self, false); err != nil {
		return nil, err
	}
	var list []ProposalOrRef
	for _, c := range g.cache {
		try := append(props[:len(props):len(props)], sourcedProposal{proposal: c.proposal, sender: c.sender, ref: c.ref})
		if g.validateProposalList(try, self, true) != nil {
			continue
		}
		props = try
		list = append(list, ProposalOrRef{Type: ProposalOrRefTypeReference, Reference: c.ref})
	}
	for _, p := range byValue {
		list = append(list, ProposalOrRef{Type: ProposalOrRefTypeProposal, Proposal: p})
	}

	// Apply the proposals to a copy of the tree (Section 12.4.1: "apply
	// them to the tree and GroupContext as a receiver would").
	tree := g.tree.clone()
	eff, err := g.applyProposals(tree, props, now)
	if err != nil {
		return nil, err
	}
	st := &commitState{tree: tree, priv: g.priv.clone(), sender: g.own(), eff: eff}
	st.ctx = g.provisionalContext(eff)

	// With a path, refresh our leaf and path, encrypting the path secrets
	// under the provisional GroupContext (Section 12.4.1, Section 7.6).
	var commitSecret []byte
	commit := &Commit{Proposals: list}
	if forcePath || pathRequired(props) {
		res, err := tree.createUpdatePath(rand, st.priv, &updatePathParams{
			groupID:  g.ctx.GroupID,
			signer:   g.signer,
			excluded: addedLeaves(eff),
			context:  st.contextWithTreeHash,
		})
		if err != nil {
			return nil, err
		}
		st.path = res
		commit.Path = res.path
		commitSecret = res.commitSecret
	}
	st.priv.prune(tree)
	st.ctx.TreeHash = tree.treeHash()
	if tamper != nil {
		tamper(commit)
	}

	// Frame the commit, then derive the new epoch from its transcript hash
	// and set the confirmation tag before it is protected.
	fc := &FramedContent{
		GroupID:     g.ctx.GroupID,
		Epoch:       g.ctx.Epoch,
		Sender:      self,
		ContentType: ContentTypeCommit,
		Commit:      commit,
	}
	_, msg, err := g.frame(rand, fc, func(ac *AuthenticatedContent) error {
		return g.deriveEpoch(st, ac, g.secrets.initSecret, commitSecret, eff.psks, true)
	})
	if err != nil {
		return nil, err
	}
	out := &CommitOutput{Commit: msg}
	for _, a := range eff.added {
		out.Added = append(out.Added, a.ref)
	}
	for _, r := range eff.removed {
		out.Removed = append(out.Removed, r.Leaf)
	}
	out.Welcome, err = g.welcomeFor(rand, st, eff.added, deliver)
	st.zeroCommitterSecrets()
	if err != nil {
		return nil, err
	}
	g.pending = &pendingCommit{state: st, message: msg, event: g.epochEvent(st, self)}
	return out, nil
}

func addedLeaves(eff *proposalEffects) []leafIndex {
	var out []leafIndex
	for _, a := range eff.added {
		out = append(out, a.leaf)
	}
	return out
}

// provisionalContext returns the GroupContext of the next epoch before its
// tree hash and transcript hash are known (Section 12.4.1, 12.4.2).
func (g *Group) provisionalContext(eff *proposalEffects) GroupContext {
	return GroupContext{
		Version:                 g.ctx.Version,
		CipherSuite:             g.ctx.CipherSuite,
		GroupID:                 g.ctx.GroupID,
		Epoch:                   g.ctx.Epoch + 1,
		ConfirmedTranscriptHash: g.ctx.ConfirmedTranscriptHash,
		Extensions:              eff.extensions,
	}
}

// contextWithTreeHash encodes the provisional GroupContext with the given
// tree hash, the context path secrets are encrypted under (Section 7.6).
func (st *commitState) contextWithTreeHash(treeHash []byte) ([]byte, error) {
	c := st.ctx
	c.TreeHash = treeHash
	return c.Marshal()
}

// deriveEpoch computes the next epoch from the signed commit ac (Section
// 8, Section 8.2): the confirmed transcript hash, the GroupContext, the key
// schedule and the interim transcript hash. The committer (create) sets the
// confirmation tag; a receiver verifies it.
func (g *Group) deriveEpoch(st *commitState, ac *AuthenticatedContent, initSecret, commitSecret []byte, psks []PreSharedKeyID, create bool) error {
	cs := g.cs
	confirmed, err := cs.confirmedTranscriptHash(g.interim, ac)
	if err != nil {
		return err
	}
	st.ctx.ConfirmedTranscriptHash = confirmed
	gc, err := st.ctx.Marshal()
	if err != nil {
		return err
	}
	pskList, err := g.psks().resolve(cs, psks)
	if err != nil {
		return err
	}
	var pskSecret []byte
	if len(pskList) > 0 {
		if pskSecret, err = cs.pskSecret(pskList); err != nil {
			return err
		}
		defer clear(pskSecret)
	}
	secrets, joiner, welcomeSecret := newEpochSecrets(cs, initSecret, commitSecret, pskSecret, gc)
	if create {
		ac.Auth.ConfirmationTag = cs.confirmationTag(secrets.confirmationKey, confirmed)
		st.joiner, st.welcomeSecret, st.pskIDs = joiner, welcomeSecret, psks
	} else {
		joiner.zero()
		clear(welcomeSecret)
		if !cs.verifyConfirmationTag(secrets.confirmationKey, confirmed, ac.Auth.ConfirmationTag) {
			secrets.zero()
			return errors.New("mls: invalid confirmation tag")
		}
	}
	st.confirmationTag = ac.Auth.ConfirmationTag
	st.secrets = secrets
	st.interim = cs.interimTranscriptHash(confirmed, ac.Auth.ConfirmationTag)
	return nil
}

// epochEvent describes the membership change of a commit.
func (g *Group) epochEvent(st *commitState, sender Sender) *Event {
	ev := &Event{
		Kind:    EventNewEpoch,
		Sender:  uint32(sender.LeafIndex),
		Epoch:   st.ctx.Epoch,
		Removed: st.eff.removed,
		Updated: st.eff.updated,
	}
	for _, a := range st.eff.added {
		ev.Added = append(ev.Added, memberOf(a.leaf, &a.kp.LeafNode))
	}
	if sender.Type == SenderTypeMember {
		if leaf := g.tree.leaf(sender.LeafIndex); leaf != nil {
			ev.SenderCredential = leaf.Credential
		}
	}
	if sender.Type == SenderTypeNewMemberCommit {
		if leaf := st.tree.leaf(st.sender); leaf != nil {
			ev.Sender = uint32(st.sender)
			ev.SenderCredential = leaf.Credential
			ev.Added = append(ev.Added, memberOf(st.sender, leaf))
		}
	}
	return ev
}

// MergePending moves the group to the epoch of its pending commit, once
// the Delivery Service has accepted it, and reports the change.
func (g *Group) MergePending() (*Event, error) {
	if g.pending == nil {
		return nil, errors.New("mls: no pending commit")
	}
	p := g.pending
	g.pending = nil
	if err := g.install(p.state); err != nil {
		return nil, err
	}
	return p.event, nil
}

// DiscardPending drops the pending commit, when the Delivery Service
// refused it; the group stays in its epoch.
func (g *Group) DiscardPending() {
	if g.pending != nil {
		g.pending.state.secrets.zero()
		g.pending = nil
	}
}

// PendingCommit returns the message of the pending commit, or nil.
func (g *Group) PendingCommit() []byte {
	if g.pending == nil {
		return nil
	}
	return bytes.Clone(g.pending.message)
}

// install enters the epoch st describes, keeping the current one as a
// past epoch.
func (g *Group) install(st *commitState) error {
	if g.keys != nil {
		g.retireEpoch()
	}
	g.ctx = st.ctx
	g.tree = st.tree
	g.priv = st.priv
	g.secrets = st.secrets
	g.interim = st.interim
	g.pending = nil
	return g.startEpoch()
}

// processCommit implements RFC 9420, Section 12.4.2 for an authenticated
// commit of the current epoch. The group changes only when every step
// succeeds.
func (g *Group) processCommit(ac *AuthenticatedContent, now time.Time) (*Event, error) {
	commit := ac.Content.Commit
	if commit == nil {
		return nil, errors.New("mls: commit message without commit")
	}
	committer := ac.Content.Sender
	external := committer.Type == SenderTypeNewMemberCommit

	// Step: "Verify that the epoch field of the enclosing FramedContent is
	// equal to the epoch field of the current GroupContext" was checked
	// when the message was authenticated.

	// Step: resolve the proposals by reference from the cache.
	props, err := g.resolveProposals(commit.Proposals, committer)
	if err != nil {
		return nil, err
	}
	// Step: verify that the proposal list is valid (Section 12.2).
	if err := g.validateProposalList(props, committer, hasReferences(commit)); err != nil {
		return nil, err
	}
	// Step: verify that the path is present if required (Section 12.4).
	if commit.Path == nil && (external || pathRequired(props)) {
		return nil, ErrPathRequired
	}
	// Step: apply the proposals to a copy of the tree (Section 12.3).
	tree := g.tree.clone()
	eff, err := g.applyProposals(tree, props, now)
	if err != nil {
		return nil, err
	}
	if eff.selfRemove {
		return g.selfRemoved(committer, eff), nil
	}
	st := &commitState{tree: tree, priv: g.priv.clone(), eff: eff, sender: committer.LeafIndex}
	st.ctx = g.provisionalContext(eff)
	// Step: if the commit covers our own Update, our leaf now holds the
	// key we proposed.
	if key, ok, err := g.ownUpdateKey(props); err != nil {
		return nil, err
	} else if ok {
		st.priv.set(g.own().node(), key)
	}

	// Step: an external joiner takes the leftmost free leaf (Section
	// 12.4.3.2).
	// The slot holds a placeholder until the path's leaf replaces it: a
	// copy without encryption key, so that the leaf is validated like any
	// new leaf (its encryption key must be new).
	if external {
		placeholder := commit.Path.LeafNode
		placeholder.EncryptionKey = nil
		if st.sender, err = tree.addLeaf(&placeholder); err != nil {
			return nil, err
		}
	}
	// Step: apply and decrypt the path under the provisional GroupContext.
	commitSecret, err := g.applyPath(st, commit, external)
	if err != nil {
		return nil, err
	}
	// Section 12.4.3.2: the Remove of an external commit may only remove
	// the joiner's own earlier leaf (a member rejoining).
	if external && len(eff.removed) > 0 {
		old := &LeafNode{Credential: eff.removed[0].Credential}
		if err := sameIdentity(old, st.tree.leaf(st.sender)); err != nil {
			return nil, errors.New("mls: external commit removes another member")
		}
	}
	defer clear(commitSecret)
	st.priv.prune(tree)
	st.ctx.TreeHash = tree.treeHash()

	// Step: the init secret: the previous epoch's, or for an external
	// commit the one the joiner exported from the external key pair.
	initSecret := g.secrets.initSecret
	if external {
		if initSecret, err = g.externalInitSecret(eff.externalInit); err != nil {
			return nil, err
		}
		defer clear(initSecret)
	}
	// Steps: update the transcript hash, the GroupContext and the key
	// schedule, and verify the confirmation tag.
	if err := g.deriveEpoch(st, ac, initSecret, commitSecret, eff.psks, false); err != nil {
		return nil, err
	}
	ev := g.epochEvent(st, committer)
	// Step: enter the new epoch.
	if err := g.install(st); err != nil {
		return nil, err
	}
	return ev, nil
}

func hasReferences(c *Commit) bool {
	for _, p := range c.Proposals {
		if p.Type == ProposalOrRefTypeReference {
			return true
		}
	}
	return false
}

// applyPath validates the commit's UpdatePath, merges it into st.tree and
// decrypts the path secret (Section 12.4.2). It returns the commit secret,
// nil without a path.
func (g *Group) applyPath(st *commitState, commit *Commit, external bool) ([]byte, error) {
	if commit.Path == nil {
		return nil, nil
	}
	if !external {
		if err := sameIdentity(st.tree.leaf(st.sender), &commit.Path.LeafNode); err != nil {
			return nil, err
		}
	}
	err := st.tree.applyUpdatePath(st.sender, commit.Path, &leafValidation{
		groupID:            g.ctx.GroupID,
		groupExtensions:    st.ctx.Extensions,
		validateCredential: g.cfg.ValidateCredential,
	})
	if err != nil {
		return nil, err
	}
	gc, err := st.contextWithTreeHash(st.tree.treeHash())
	if err != nil {
		return nil, err
	}
	return st.tree.decryptUpdatePath(st.priv, st.sender, commit.Path, addedLeaves(st.eff), gc)
}

// externalInitSecret recovers the init secret of an external commit from
// its ExternalInit (RFC 9420, Section 8.3): the external key pair derives
// from external_secret, and init_secret is exported from the HPKE context.
func (g *Group) externalInitSecret(kemOutput []byte) ([]byte, error) {
	sk, err := g.cs.hpke.KEM.DeriveKeyPair(g.secrets.externalSecret)
	if err != nil {
		return nil, err
	}
	ctx, err := g.cs.hpke.SetupBaseReceiver(sk, kemOutput, nil)
	if err != nil {
		return nil, errors.New("mls: invalid external init")
	}
	return ctx.Export([]byte(labelExternalInit), g.cs.nh)
}

// selfRemoved handles a commit that removes this member: it cannot derive
// the new epoch (it gets no path secret) and leaves the group.
func (g *Group) selfRemoved(committer Sender, eff *proposalEffects) *Event {
	g.removed = true
	ev := &Event{
		Kind:        EventNewEpoch,
		Sender:      uint32(committer.LeafIndex),
		Epoch:       g.ctx.Epoch + 1,
		Removed:     eff.removed,
		Updated:     eff.updated,
		SelfRemoved: true,
	}
	for _, a := range eff.added {
		ev.Added = append(ev.Added, memberOf(a.leaf, &a.kp.LeafNode))
	}
	return ev
}
