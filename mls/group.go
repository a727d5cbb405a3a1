package mls

// This file holds Group, the state machine one member drives (RFC 9420,
// Sections 3 and 14), and the small API node/client calls: create a group,
// add and remove members, update one's own leaf, commit pending proposals,
// process incoming messages, protect application messages, export secrets.
//
// Every entry point takes its randomness as an io.Reader and the current
// time as a time.Time: the package does no I/O and reads no clock.
//
// A Group is not safe for concurrent use.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"golang.org/x/crypto/cryptobyte"

	"qpchat/kem"
)

// Sentinel errors a caller may branch on.
var (
	// ErrWrongEpoch is returned by ProcessMessage for a handshake message
	// of another epoch than the current one, or an application message of
	// an epoch no longer (or not yet) held.
	ErrWrongEpoch = errors.New("mls: message for the wrong epoch")
	// ErrWrongGroup is returned by ProcessMessage for a message of another
	// group.
	ErrWrongGroup = errors.New("mls: message for another group")
	// ErrReplay is returned by ProcessMessage for a PrivateMessage whose
	// key generation was already used (a replay) or deleted.
	ErrReplay = errors.New("mls: message replayed or its key deleted")
	// ErrNotMember is returned for a message whose sender is not a member.
	ErrNotMember = errors.New("mls: sender is not a member of the group")
	// ErrPathRequired is returned for a commit that needs an UpdatePath
	// (RFC 9420, Section 12.4) and carries none.
	ErrPathRequired = errors.New("mls: commit requires a path")
	// ErrUnknownProposal is returned for a commit that references a
	// proposal this member has not received.
	ErrUnknownProposal = errors.New("mls: commit references an unknown proposal")
	// ErrOwnCommit is returned by ProcessMessage for a commit this member
	// created: it merges it with MergePending instead (RFC 9420, Section
	// 12.4: a member cannot process its own commit).
	ErrOwnCommit = errors.New("mls: own commit; use MergePending")
	// ErrPendingCommit is returned when a commit is already pending.
	ErrPendingCommit = errors.New("mls: a commit is pending; merge or discard it first")
	// ErrRemoved is returned by operations on a group this member was
	// removed from.
	ErrRemoved = errors.New("mls: this member was removed from the group")
)

// Config is the application's part of a group's behaviour. The zero value
// of every field but ValidateCredential selects a default.
type Config struct {
	// ValidateCredential checks the credential of every leaf the group
	// accepts: each Add's KeyPackage, each Update, each commit path's
	// leaf, every leaf of a Welcome's tree (RFC 9420, Section 5.3.1). An
	// error refuses the message or Welcome. nil refuses every leaf.
	ValidateCredential func(c Credential, signatureKey []byte) error
	// ExternalPSKs returns the external pre-shared key with the given id
	// (RFC 9420, Section 8.4). nil means no external PSKs are known.
	ExternalPSKs func(id []byte) ([]byte, bool)
	// PastEpochs is the number of past epochs whose message keys are kept
	// to decrypt late application messages. Zero means 3; negative means
	// none.
	PastEpochs int
	// MaxGenerationGap is how far ahead of a sender's ratchet a message
	// may be (out-of-order window within an epoch). Zero means 1000.
	MaxGenerationGap uint32
	// PaddingBlock pads PrivateMessage plaintexts to a multiple of this
	// many bytes. Zero means 32; 1 disables padding.
	PaddingBlock int
	// PublicHandshake sends proposals and commits as PublicMessage instead
	// of PrivateMessage. The zero value encrypts them.
	PublicHandshake bool
}

// withDefaults fills the zero fields of c with their defaults.
func (c Config) withDefaults() Config {
	if c.PastEpochs == 0 {
		c.PastEpochs = 3
	}
	if c.PastEpochs < 0 {
		c.PastEpochs = 0
	}
	if c.MaxGenerationGap == 0 {
		c.MaxGenerationGap = defaultMaxForward
	}
	if c.PaddingBlock == 0 {
		c.PaddingBlock = 32
	}
	return c
}

// maxEpochs bounds PastEpochs so that a configuration cannot make the
// state grow without limit.
const maxPastEpochs = 64

// Member is a member of the group as the tree shows it.
type Member struct {
	Leaf         uint32
	Credential   Credential
	SignatureKey []byte
}

// EventKind says what ProcessMessage found in a message.
type EventKind int

// Kinds of Event.
const (
	// EventApplication: application data from Sender, in Data.
	EventApplication EventKind = iota + 1
	// EventProposal: a proposal from Sender, held for a later commit.
	EventProposal
	// EventNewEpoch: a commit was applied; the group is in Epoch now.
	EventNewEpoch
)

// Event is what ProcessMessage or MergePending reports.
type Event struct {
	Kind EventKind
	// Sender is the leaf index of the sending member (for an external
	// commit, the leaf the joiner took).
	Sender           uint32
	SenderCredential Credential
	// Epoch is the epoch the message was sent in, or the new epoch for
	// EventNewEpoch.
	Epoch             uint64
	AuthenticatedData []byte
	// Data is the application data (EventApplication).
	Data []byte
	// Proposal is the proposal held (EventProposal).
	Proposal *Proposal
	// Added, Removed and Updated describe the membership change of
	// EventNewEpoch. Removed members are described as they were.
	Added, Removed, Updated []Member
	// SelfRemoved is set when the commit removed this member: the group
	// cannot be used further.
	SelfRemoved bool
}

// pastEpoch is what is kept of an earlier epoch to decrypt its late
// application messages and to supply its resumption PSK.
type pastEpoch struct {
	ctx              GroupContext
	tree             *ratchetTree
	keys             *secretTree
	senderDataSecret []byte
	resumptionPSK    []byte
	// senderData derives the sender data keys from senderDataSecret;
	// made on first use (senderDataKeys).
	senderData *senderDataKeys
}

// senderDataKeys returns the sender data key deriver of the epoch,
// made on first use.
func (p *pastEpoch) senderDataKeys(cs *cipherSuite) *senderDataKeys {
	if p.senderData == nil {
		p.senderData = cs.newSenderDataKeys(p.senderDataSecret)
	}
	return p.senderData
}

// Group is one member's state of an MLS group.
type Group struct {
	cfg Config
	cs  *cipherSuite

	// ctx is the current GroupContext; tree the public ratchet tree;
	// priv our leaf index and the private keys we hold for the tree.
	ctx    GroupContext
	tree   *ratchetTree
	priv   *treePrivateKeys
	signer *SignaturePrivateKey

	// secrets are the epoch's key schedule outputs; interim the interim
	// transcript hash; keys the secret tree of the epoch.
	secrets *epochSecrets
	interim []byte
	keys    *secretTree

	// past holds earlier epochs, oldest first, at most cfg.PastEpochs.
	past []*pastEpoch
	// cache holds the proposals received in this epoch (Section 12.4).
	cache []cachedProposal
	// updateKeys holds the leaf private keys of our own Update proposals
	// of this epoch, by proposal reference, until a commit covers one.
	updateKeys map[string]kem.PrivateKey
	// pending is our own commit, waiting for MergePending.
	pending *pendingCommit
	// removed is set once a commit removed us.
	removed bool
}

// own returns our leaf index.
func (g *Group) own() leafIndex { return g.priv.leaf }

// GroupID returns the group's identifier.
func (g *Group) GroupID() []byte { return bytes.Clone(g.ctx.GroupID) }

// Epoch returns the current epoch number.
func (g *Group) Epoch() uint64 { return g.ctx.Epoch }

// CipherSuite returns the group's cipher suite.
func (g *Group) CipherSuite() CipherSuite { return g.cs.id }

// OwnLeaf returns this member's leaf index.
func (g *Group) OwnLeaf() uint32 { return uint32(g.own()) }

// EpochAuthenticator returns the epoch authenticator of the current epoch
// (RFC 9420, Section 8.7). Members of the same epoch agree on it.
func (g *Group) EpochAuthenticator() []byte { return bytes.Clone(g.secrets.epochAuthenticator) }

// Export implements MLS-Exporter (RFC 9420, Section 8.5) for the current
// epoch.
func (g *Group) Export(label string, context []byte, length int) ([]byte, error) {
	return g.secrets.mlsExporter(label, context, length)
}

// Members returns the members of the group in leaf order.
func (g *Group) Members() []Member {
	var out []Member
	for x := 0; x < g.tree.size; x += 2 {
		if l := g.tree.at(nodeIndex(x)).leaf; l != nil {
			out = append(out, memberOf(leafIndex(x/2), l))
		}
	}
	return out
}

// Member returns the member at leaf, if there is one.
func (g *Group) Member(leaf uint32) (Member, bool) {
	l := g.tree.leaf(leafIndex(leaf))
	if l == nil {
		return Member{}, false
	}
	return memberOf(leafIndex(leaf), l), true
}

func memberOf(l leafIndex, leaf *LeafNode) Member {
	return Member{Leaf: uint32(l), Credential: leaf.Credential, SignatureKey: bytes.Clone(leaf.SignatureKey)}
}

// Extensions returns the GroupContext extensions.
func (g *Group) Extensions() Extensions { return g.ctx.Extensions }

// CreateGroup creates a one-member group at epoch 0 (RFC 9420, Section
// 11) from the member's KeyPackage material: kp supplies the leaf (its
// encryption key and credential) and the signature key. groupID should
// be random; extensions become the GroupContext extensions.
func CreateGroup(rand io.Reader, cfg Config, groupID []byte, kp *KeyPackagePrivate, extensions Extensions) (*Group, error) {
	cfg = cfg.withDefaults()
	cs, err := kp.KeyPackage.CipherSuite.suite()
	if err != nil {
		return nil, err
	}
	if len(groupID) == 0 {
		return nil, errors.New("mls: empty group id")
	}
	tree, err := newRatchetTree(cs.id)
	if err != nil {
		return nil, err
	}
	leaf := kp.KeyPackage.LeafNode
	if err := checkCredential(cfg.ValidateCredential, &leaf); err != nil {
		return nil, err
	}
	if err := checkExtensionsSupported(&leaf.Capabilities, extensions); err != nil {
		return nil, err
	}
	if _, err := tree.addLeaf(&leaf); err != nil {
		return nil, err
	}
	leafKey, err := cs.hpkePrivateKey(kp.EncryptionPriv)
	if err != nil {
		return nil, err
	}
	g := &Group{
		cfg:    cfg,
		cs:     cs,
		tree:   tree,
		priv:   newTreePrivateKeys(0, leafKey),
		signer: kp.Signer,
		ctx: GroupContext{
			Version:     ProtocolVersionMLS10,
			CipherSuite: cs.id,
			GroupID:     bytes.Clone(groupID),
			Epoch:       0,
			TreeHash:    tree.treeHash(),
			// The confirmed transcript hash of epoch 0 is empty and the
			// interim one follows from a confirmation tag over it
			// (Section 8.2, Section 11).
			ConfirmedTranscriptHash: nil,
			Extensions:              extensions,
		},
	}
	// Section 11: epoch 0 starts from a fresh random epoch secret.
	es := make([]byte, cs.nh)
	if _, err := io.ReadFull(rand, es); err != nil {
		return nil, fmt.Errorf("mls: reading randomness: %w", err)
	}
	secrets := (&epochSecret{suite: cs, secret: es}).derive()
	g.secrets = secrets
	tag := cs.confirmationTag(secrets.confirmationKey, g.ctx.ConfirmedTranscriptHash)
	g.interim = cs.interimTranscriptHash(g.ctx.ConfirmedTranscriptHash, tag)
	if err := g.startEpoch(); err != nil {
		return nil, err
	}
	return g, nil
}

// checkCredential calls the validator for leaf, failing closed when there
// is none.
func checkCredential(v func(Credential, []byte) error, leaf *LeafNode) error {
	if v == nil {
		return errors.New("mls: no credential validator configured")
	}
	if err := v(leaf.Credential, leaf.SignatureKey); err != nil {
		return fmt.Errorf("mls: credential refused: %w", err)
	}
	return nil
}

// startEpoch creates the secret tree of the current epoch.
func (g *Group) startEpoch() error {
	keys, err := newSecretTree(g.cs, g.secrets.encryptionSecret, uint32(g.tree.numLeaves()))
	if err != nil {
		return err
	}
	keys.maxForward = g.cfg.MaxGenerationGap
	g.keys = keys
	g.cache = nil
	g.updateKeys = nil
	return nil
}

// retireEpoch moves the current epoch to the past ones, dropping the
// oldest beyond cfg.PastEpochs, before the group enters a new epoch.
func (g *Group) retireEpoch() {
	g.past = append(g.past, &pastEpoch{
		ctx:              g.ctx,
		tree:             g.tree,
		keys:             g.keys,
		senderDataSecret: g.secrets.senderDataSecret,
		resumptionPSK:    g.secrets.resumptionPSK,
		senderData:       g.secrets.senderData,
	})
	limit := min(g.cfg.PastEpochs, maxPastEpochs)
	for len(g.past) > limit {
		old := g.past[0]
		old.keys.zero()
		clear(old.senderDataSecret)
		clear(old.resumptionPSK)
		old.senderData = nil
		g.past = g.past[1:]
	}
}

// Protect encrypts application data as a PrivateMessage of the current
// epoch (RFC 9420, Section 6.3) and returns the MLSMessage bytes.
// authenticatedData travels in the clear but authenticated.
func (g *Group) Protect(rand io.Reader, data, authenticatedData []byte) ([]byte, error) {
	if g.removed {
		return nil, ErrRemoved
	}
	fc := &FramedContent{
		GroupID:           g.ctx.GroupID,
		Epoch:             g.ctx.Epoch,
		Sender:            Sender{Type: SenderTypeMember, LeafIndex: g.own()},
		AuthenticatedData: authenticatedData,
		ContentType:       ContentTypeApplication,
		ApplicationData:   data,
	}
	ac, err := g.cs.signFramedContent(rand, g.signer, WireFormatPrivateMessage, fc, &g.ctx)
	if err != nil {
		return nil, err
	}
	return g.cs.protectPrivate(rand, ac, g.keys, g.secrets.senderDataKeys(), g.cfg.PaddingBlock)
}

// frame signs and protects handshake content of the current epoch as the
// configured wire format, returning the AuthenticatedContent (for the
// transcript and proposal references) and the MLSMessage. For a commit,
// confirm is called with the signed content to compute its confirmation
// tag before the message is protected.
func (g *Group) frame(rand io.Reader, fc *FramedContent, confirm func(ac *AuthenticatedContent) error) (*AuthenticatedContent, []byte, error) {
	wf := WireFormatPrivateMessage
	if g.cfg.PublicHandshake {
		wf = WireFormatPublicMessage
	}
	ac, err := g.cs.signFramedContent(rand, g.signer, wf, fc, &g.ctx)
	if err != nil {
		return nil, nil, err
	}
	if confirm != nil {
		if err := confirm(ac); err != nil {
			return nil, nil, err
		}
	}
	var b []byte
	if wf == WireFormatPublicMessage {
		msg := &MLSMessage{WireFormat: wf}
		if msg.PublicMessage, err = g.cs.protectPublic(ac, g.secrets.membershipKey, &g.ctx); err != nil {
			return nil, nil, err
		}
		b, err = msg.Marshal()
	} else {
		// The handshake ratchet advances only when the commit is sent;
		// a discarded commit leaves a gap the receivers tolerate.
		b, err = g.cs.protectPrivate(rand, ac, g.keys, g.secrets.senderDataKeys(), g.cfg.PaddingBlock)
	}
	if err != nil {
		return nil, nil, err
	}
	return ac, b, nil
}

// ProcessMessage processes a serialized MLSMessage received for this group
// (RFC 9420, Sections 6 and 12.4.2) and reports what happened. A message
// that is refused leaves the group unchanged: the key of a PrivateMessage
// is deleted only once the message is accepted.
func (g *Group) ProcessMessage(data []byte, now time.Time) (*Event, error) {
	if g.removed {
		return nil, ErrRemoved
	}
	// A PrivateMessage is decoded without copying its ciphertexts: they
	// are only decrypted, and data is held until this call returns.
	if len(data) >= 4 && binary.BigEndian.Uint16(data) == uint16(ProtocolVersionMLS10) &&
		WireFormat(binary.BigEndian.Uint16(data[2:])) == WireFormatPrivateMessage {
		pm := new(PrivateMessage)
		if err := unmarshalAll(data[4:], func(s *cryptobyte.String) error { return pm.decode(s, true) }); err != nil {
			return nil, err
		}
		return g.processPrivate(pm, now)
	}
	msg, err := UnmarshalMLSMessage(data)
	if err != nil {
		return nil, err
	}
	switch msg.WireFormat {
	case WireFormatPublicMessage:
		return g.processPublic(msg.PublicMessage, now)
	case WireFormatPrivateMessage:
		return g.processPrivate(msg.PrivateMessage, now)
	default:
		return nil, fmt.Errorf("mls: cannot process a message of wire format %d in a group", msg.WireFormat)
	}
}

// memberKey returns the signature key of the member sender of fc in tree.
func memberKey(tree *ratchetTree) signatureKeyFunc {
	return func(fc *FramedContent) ([]byte, error) {
		if fc.Sender.Type != SenderTypeMember {
			return nil, fmt.Errorf("mls: sender type %d not accepted", fc.Sender.Type)
		}
		leaf := tree.leaf(fc.Sender.LeafIndex)
		if leaf == nil {
			return nil, ErrNotMember
		}
		return leaf.SignatureKey, nil
	}
}

// processPublic authenticates a PublicMessage of the current epoch and
// dispatches its content (RFC 9420, Section 6.2).
func (g *Group) processPublic(pm *PublicMessage, now time.Time) (*Event, error) {
	fc := &pm.Content
	if !bytes.Equal(fc.GroupID, g.ctx.GroupID) {
		return nil, ErrWrongGroup
	}
	if fc.Epoch != g.ctx.Epoch {
		return nil, ErrWrongEpoch
	}
	var senderKey signatureKeyFunc
	switch fc.Sender.Type {
	case SenderTypeMember:
		senderKey = memberKey(g.tree)
		if g.tree.leaf(fc.Sender.LeafIndex) == nil {
			return nil, ErrNotMember
		}
	case SenderTypeNewMemberCommit:
		// An external commit is signed with the key of the leaf in its
		// path (Section 12.4.3.2).
		if fc.ContentType != ContentTypeCommit || fc.Commit == nil || fc.Commit.Path == nil {
			return nil, errors.New("mls: new member commit without a path")
		}
		key := fc.Commit.Path.LeafNode.SignatureKey
		senderKey = func(*FramedContent) ([]byte, error) { return key, nil }
	default:
		// TODO(RFC 9420 §12.1.8): external senders and new_member_proposal.
		return nil, fmt.Errorf("mls: messages from sender type %d are not supported", fc.Sender.Type)
	}
	ac, err := g.cs.unprotectPublic(pm, g.secrets.membershipKey, &g.ctx, senderKey)
	if err != nil {
		return nil, err
	}
	return g.dispatch(ac, now)
}

// processPrivate decrypts a PrivateMessage (RFC 9420, Section 6.3).
// Application messages of a kept past epoch are accepted; handshake
// messages only of the current epoch.
func (g *Group) processPrivate(pm *PrivateMessage, now time.Time) (*Event, error) {
	if !bytes.Equal(pm.GroupID, g.ctx.GroupID) {
		return nil, ErrWrongGroup
	}
	if pm.Epoch == g.ctx.Epoch {
		// The key is deleted from the secret tree only once the message
		// is accepted, so that a refused message changes nothing.
		ac, key, err := g.cs.unprotectPrivatePending(pm, g.keys, g.secrets.senderDataKeys(), &g.ctx, memberKey(g.tree))
		if err != nil {
			return nil, privateError(err)
		}
		ev, err := g.dispatch(ac, now)
		if err != nil {
			key.discard()
			return nil, privateError(err)
		}
		key.commit()
		return ev, nil
	}
	if pm.ContentType != ContentTypeApplication {
		return nil, ErrWrongEpoch
	}
	for _, p := range g.past {
		if p.ctx.Epoch != pm.Epoch {
			continue
		}
		ac, err := g.cs.unprotectPrivate(pm, p.keys, p.senderDataKeys(g.cs), &p.ctx, memberKey(p.tree))
		if err != nil {
			return nil, privateError(err)
		}
		return applicationEvent(ac, p.tree), nil
	}
	return nil, ErrWrongEpoch
}

// privateError maps the secret tree's replay errors to ErrReplay.
func privateError(err error) error {
	if errors.Is(err, errGenerationUsed) {
		return fmt.Errorf("%w: %v", ErrReplay, err)
	}
	return err
}

func applicationEvent(ac *AuthenticatedContent, tree *ratchetTree) *Event {
	fc := &ac.Content
	ev := &Event{
		Kind:              EventApplication,
		Sender:            uint32(fc.Sender.LeafIndex),
		Epoch:             fc.Epoch,
		AuthenticatedData: fc.AuthenticatedData,
		Data:              fc.ApplicationData,
	}
	if leaf := tree.leaf(fc.Sender.LeafIndex); leaf != nil {
		ev.SenderCredential = leaf.Credential
	}
	return ev
}

// dispatch handles authenticated content of the current epoch.
func (g *Group) dispatch(ac *AuthenticatedContent, now time.Time) (*Event, error) {
	switch ac.Content.ContentType {
	case ContentTypeApplication:
		if ac.WireFormat != WireFormatPrivateMessage {
			return nil, errors.New("mls: application data in a public message")
		}
		return applicationEvent(ac, g.tree), nil
	case ContentTypeProposal:
		return g.receiveProposal(ac, now)
	case ContentTypeCommit:
		if ac.Content.Sender.Type == SenderTypeMember && ac.Content.Sender.LeafIndex == g.own() {
			return nil, ErrOwnCommit
		}
		return g.processCommit(ac, now)
	}
	return nil, fmt.Errorf("mls: invalid content type %d", ac.Content.ContentType)
}

// checkExtensionsSupported checks that caps lists every non-default
// extension type in exts (RFC 9420, Section 12.1.7).
func checkExtensionsSupported(caps *Capabilities, exts Extensions) error {
	for _, e := range exts {
		if !caps.supportsExtension(e.Type) {
			return fmt.Errorf("mls: extension type %d not supported by a member", e.Type)
		}
	}
	return nil
}
