package mls

// This file holds joining a group: creating and opening a Welcome and its
// GroupInfo (RFC 9420, Section 12.4.3.1), the ratchet tree a joiner
// imports (Section 12.4.3.3), and joining by external commit
// (Section 12.4.3.2).

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"

	"golang.org/x/crypto/cryptobyte"
)

// Labels of the Welcome and GroupInfo (RFC 9420, Sections 12.4.3 and
// 12.4.3.1).
const (
	labelWelcomeHPKE  = "Welcome"
	labelGroupInfoTBS = "GroupInfoTBS"
)

// ErrNoMatchingKeyPackage is returned by JoinFromWelcome when the Welcome
// holds no secrets for the given KeyPackage: it was meant for someone else.
var ErrNoMatchingKeyPackage = errors.New("mls: welcome is not addressed to this key package")

// openedWelcome is what a joiner learns from a Welcome before it imports
// the tree: the decrypted GroupSecrets and GroupInfo, the PSK secret, and
// the epoch's secrets.
type openedWelcome struct {
	secrets   *GroupSecrets
	groupInfo *GroupInfo
	// groupInfoSigned is SignContent("GroupInfoTBS", GroupInfoTBS) of the
	// GroupInfo as received, which its signature covers (verifyGroupInfo).
	groupInfoSigned []byte
	pskSecret       []byte
	joiner          *joinerSecret
}

// openWelcome performs the first steps of RFC 9420, Section 12.4.3.1:
// it finds the EncryptedGroupSecrets for kpRef, decrypts it with the init
// private key, resolves the PSKs, and decrypts the GroupInfo with the
// welcome key. The GroupInfo is not verified yet.
func openWelcome(cs *cipherSuite, w *Welcome, kpRef KeyPackageRef, initPriv []byte, psks pskResolver) (*openedWelcome, error) {
	if w.CipherSuite != cs.id {
		return nil, fmt.Errorf("mls: welcome uses cipher suite 0x%04x, key package 0x%04x", uint16(w.CipherSuite), uint16(cs.id))
	}
	var egs *EncryptedGroupSecrets
	for i := range w.Secrets {
		if bytes.Equal(w.Secrets[i].NewMember, kpRef) {
			egs = &w.Secrets[i]
			break
		}
	}
	if egs == nil {
		return nil, ErrNoMatchingKeyPackage
	}
	sk, err := cs.hpkePrivateKey(initPriv)
	if err != nil {
		return nil, err
	}
	pt, err := cs.decryptWithLabel(sk, labelWelcomeHPKE, w.EncryptedGroupInfo,
		egs.EncryptedGroupSecrets.KEMOutput, egs.EncryptedGroupSecrets.Ciphertext)
	if err != nil {
		return nil, fmt.Errorf("mls: cannot decrypt group secrets: %w", err)
	}
	defer clear(pt)
	gs, err := UnmarshalGroupSecrets(pt)
	if err != nil {
		return nil, fmt.Errorf("mls: group secrets: %w", err)
	}
	joiner, err := joinerSecretFromBytes(cs, gs.JoinerSecret)
	if err != nil {
		return nil, err
	}
	clear(gs.JoinerSecret)
	gs.JoinerSecret = nil
	if gs.PathSecret != nil && len(gs.PathSecret.PathSecret) != cs.nh {
		return nil, fmt.Errorf("mls: invalid path secret length %d", len(gs.PathSecret.PathSecret))
	}

	// Section 12.4.3.1: "Verify that the PSKs are available" and compute
	// psk_secret over them, in the order given.
	pskList, err := psks.resolve(cs, gs.PSKs)
	if err != nil {
		return nil, err
	}
	pskSecret, err := cs.pskSecret(pskList)
	if err != nil {
		return nil, err
	}

	m := joiner.intermediate(pskSecret)
	welcomeSecret := m.welcomeSecret()
	m.zero()
	key, nonce := cs.welcomeKeyNonce(welcomeSecret)
	clear(welcomeSecret)
	aead, err := cs.aead.new(key)
	clear(key)
	if err != nil {
		return nil, err
	}
	// The GroupInfo is decrypted after room for the SignContent header of
	// its signature: GroupInfoTBS is the GroupInfo without its last field,
	// the signature, so the signed bytes are verified where they are
	// instead of encoding the GroupInfo, which holds the ratchet tree,
	// again (verifyGroupInfo).
	room := 4 + len(labelPrefix) + len(labelGroupInfoTBS) + 4
	all, err := aead.Open(make([]byte, room, room+len(w.EncryptedGroupInfo)), nonce, w.EncryptedGroupInfo, nil)
	if err != nil {
		return nil, errors.New("mls: cannot decrypt group info")
	}
	giBytes := all[room:]
	gi, err := UnmarshalGroupInfo(giBytes)
	if err != nil {
		return nil, fmt.Errorf("mls: group info: %w", err)
	}
	if gi.GroupContext.CipherSuite != cs.id || gi.GroupContext.Version != ProtocolVersionMLS10 {
		return nil, fmt.Errorf("mls: group info for cipher suite 0x%04x version %d", uint16(gi.GroupContext.CipherSuite), gi.GroupContext.Version)
	}
	tbs := len(giBytes) - varintLen(len(gi.Signature)) - len(gi.Signature)
	var hdr [64]byte
	h := appendLabeledInput(hdr[:0], labelGroupInfoTBS, nil)
	h = appendVarint(h[:len(h)-1], tbs)
	start := room - len(h)
	copy(all[start:], h)
	return &openedWelcome{secrets: gs, groupInfo: gi, groupInfoSigned: all[start : room+tbs], pskSecret: pskSecret, joiner: joiner}, nil
}

// verifyGroupInfo checks the GroupInfo signature with the signer's
// signature public key (RFC 9420, Section 12.4.3): VerifyWithLabel(.,
// "GroupInfoTBS", GroupInfoTBS). signed, when not nil, is the
// SignContent of the GroupInfo as received (openWelcome); otherwise the
// GroupInfo is encoded.
func verifyGroupInfo(cs *cipherSuite, gi *GroupInfo, signerKey, signed []byte) error {
	if signed == nil {
		tbs, err := gi.marshalTBS()
		if err != nil {
			return err
		}
		signed = labeledInput(labelGroupInfoTBS, tbs)
	}
	if !cs.sig.verify(signerKey, signed, gi.Signature) {
		return errors.New("mls: invalid group info signature")
	}
	return nil
}

// signGroupInfo sets gi.Signature (RFC 9420, Section 12.4.3).
func signGroupInfo(rand io.Reader, cs *cipherSuite, gi *GroupInfo, sk *SignaturePrivateKey) error {
	tbs, err := gi.marshalTBS()
	if err != nil {
		return err
	}
	sig, err := cs.signWithLabel(rand, sk, labelGroupInfoTBS, tbs)
	if err != nil {
		return err
	}
	gi.Signature = sig
	return nil
}

// welcomeEpoch runs the key schedule of the Welcome's epoch and checks the
// GroupInfo's confirmation tag against the confirmation key (RFC 9420,
// Section 12.4.3.1: "Verify the confirmation tag").
func welcomeEpoch(cs *cipherSuite, ow *openedWelcome) (*epochSecrets, error) {
	gc, err := ow.groupInfo.GroupContext.Marshal()
	if err != nil {
		return nil, err
	}
	m := ow.joiner.intermediate(ow.pskSecret)
	defer m.zero()
	secrets := m.epochSecret(gc).derive()
	if !cs.verifyConfirmationTag(secrets.confirmationKey, ow.groupInfo.GroupContext.ConfirmedTranscriptHash, ow.groupInfo.ConfirmationTag) {
		secrets.zero()
		return nil, errors.New("mls: invalid confirmation tag in group info")
	}
	return secrets, nil
}

// JoinFromWelcome joins a group from a Welcome (RFC 9420, Section
// 12.4.3.1). welcome is a serialized MLSMessage(Welcome); kp holds the
// private keys of the KeyPackage the Welcome was made for; ratchetTree is
// the serialized tree when it is given out of band, or nil to use the
// Welcome's ratchet_tree extension. Every leaf of the tree is validated,
// cfg.ValidateCredential included, and now is checked against the
// lifetimes of key_package leaves.
func JoinFromWelcome(cfg Config, welcome []byte, kp *KeyPackagePrivate, ratchetTree []byte, now time.Time) (*Group, error) {
	cfg = cfg.withDefaults()
	cs, ow, err := openWelcomeFor(cfg, welcome, kp)
	if err != nil {
		return nil, err
	}
	defer ow.joiner.zero()
	gi := ow.groupInfo

	// Import and verify the tree (Section 12.4.3.1): from the extension
	// or out of band, matching the GroupContext's tree hash, parent-hash
	// valid, every leaf valid, and the GroupInfo signed by a member.
	tree, err := importGroupInfo(cfg, gi, ow.groupInfoSigned, ratchetTree, now)
	if err != nil {
		return nil, err
	}

	// Find our own leaf: the one holding our KeyPackage's leaf node.
	own, err := findOwnLeaf(tree, &kp.KeyPackage.LeafNode)
	if err != nil {
		return nil, err
	}

	leafKey, err := cs.hpkePrivateKey(kp.EncryptionPriv)
	if err != nil {
		return nil, err
	}
	priv := newTreePrivateKeys(own, leafKey)
	// Section 12.4.3.1: with a path_secret, derive the private keys of the
	// common ancestor of the signer and us up to the root, and check them
	// against the tree.
	if ow.secrets.PathSecret != nil {
		if err := tree.joinPathSecret(priv, gi.Signer, ow.secrets.PathSecret.PathSecret); err != nil {
			return nil, err
		}
	}

	secrets, err := welcomeEpoch(cs, ow)
	if err != nil {
		return nil, err
	}
	g := &Group{
		cfg:     cfg,
		cs:      cs,
		ctx:     gi.GroupContext,
		tree:    tree,
		signer:  kp.Signer,
		priv:    priv,
		secrets: secrets,
		interim: cs.interimTranscriptHash(gi.GroupContext.ConfirmedTranscriptHash, gi.ConfirmationTag),
	}
	if err := g.startEpoch(); err != nil {
		return nil, err
	}
	return g, nil
}

// openWelcomeFor decodes a serialized MLSMessage(Welcome) and opens the
// part made for kp (RFC 9420, Section 12.4.3.1). The caller zeroes
// ow.joiner.
func openWelcomeFor(cfg Config, welcome []byte, kp *KeyPackagePrivate) (*cipherSuite, *openedWelcome, error) {
	// The Welcome is decoded without copying its byte fields: it is only
	// read here, while welcome is held (Welcome.decode).
	s := cryptobyte.String(welcome)
	var version, wf uint16
	if !s.ReadUint16(&version) || !s.ReadUint16(&wf) {
		return nil, nil, errDecode
	}
	if ProtocolVersion(version) != ProtocolVersionMLS10 {
		return nil, nil, fmt.Errorf("%w: unsupported protocol version %d", errDecode, version)
	}
	if WireFormat(wf) != WireFormatWelcome {
		return nil, nil, fmt.Errorf("mls: message of wire format %d is not a welcome", wf)
	}
	w := new(Welcome)
	if err := unmarshalAll(s, func(s *cryptobyte.String) error { return w.decode(s, true) }); err != nil {
		return nil, nil, err
	}
	cs, err := kp.KeyPackage.CipherSuite.suite()
	if err != nil {
		return nil, nil, err
	}
	kpRef, err := MakeKeyPackageRef(&kp.KeyPackage)
	if err != nil {
		return nil, nil, err
	}
	ow, err := openWelcome(cs, w, kpRef, kp.InitPriv, cfg.psks(nil))
	if err != nil {
		return nil, nil, err
	}
	return cs, ow, nil
}

// WelcomeGroupInfoExtensions opens a Welcome (RFC 9420, Section 12.4.3.1)
// made for kp and returns the extensions of its GroupInfo, for a joiner
// that must fetch the ratchet tree before JoinFromWelcome
// (CommitOptions.TreeOutOfBand). The GroupInfo's signature is not checked
// yet (that needs the tree): treat the extensions as a hint that
// JoinFromWelcome then verifies.
func WelcomeGroupInfoExtensions(welcome []byte, kp *KeyPackagePrivate) (Extensions, error) {
	_, ow, err := openWelcomeFor(Config{}.withDefaults(), welcome, kp)
	if err != nil {
		return nil, err
	}
	ow.joiner.zero()
	return ow.groupInfo.Extensions, nil
}

// findOwnLeaf returns the index of the leaf equal to ours.
func findOwnLeaf(t *ratchetTree, leaf *LeafNode) (leafIndex, error) {
	want, err := leaf.Marshal()
	if err != nil {
		return 0, err
	}
	l, ok := t.leafIndexOf(func(n *LeafNode) bool {
		if !bytes.Equal(n.SignatureKey, leaf.SignatureKey) || !bytes.Equal(n.EncryptionKey, leaf.EncryptionKey) {
			return false
		}
		got, err := n.Marshal()
		return err == nil && bytes.Equal(got, want)
	})
	if !ok {
		return 0, errors.New("mls: our leaf is not in the welcome's ratchet tree")
	}
	return l, nil
}

// welcomeFor builds the Welcome for the new members of a commit (RFC 9420,
// Section 12.4.3.1): GroupInfo signed by the committer and encrypted with
// the welcome key, and GroupSecrets encrypted to each new member's init key
// with its path secret (the secret of the lowest common ancestor of the
// committer and the new member, when the commit has a path).
//
// withTree puts the ratchet tree in the GroupInfo's ratchet_tree extension;
// without it, new members need the tree out of band (RatchetTree).
func (g *Group) welcomeFor(rand io.Reader, st *commitState, newMembers []addedMember, deliver treeDelivery) ([]byte, error) {
	if len(newMembers) == 0 {
		return nil, nil
	}
	cs := g.cs
	gi, err := g.newGroupInfo(rand, st, deliver)
	if err != nil {
		return nil, err
	}
	giBytes, err := gi.Marshal()
	if err != nil {
		return nil, err
	}
	key, nonce := cs.welcomeKeyNonce(st.welcomeSecret)
	aead, err := cs.aead.new(key)
	clear(key)
	if err != nil {
		return nil, err
	}
	w := &Welcome{CipherSuite: cs.id, EncryptedGroupInfo: aead.Seal(nil, nonce, giBytes, nil)}
	// Every new member's GroupSecrets are encrypted under the same
	// EncryptContext("Welcome", encrypted_group_info): its HPKE info hash
	// is computed once, not once per member (the bytes are unchanged).
	ectx, err := cs.prepareEncryptContext(labelWelcomeHPKE, w.EncryptedGroupInfo)
	if err != nil {
		return nil, err
	}
	w.Secrets = make([]EncryptedGroupSecrets, 0, len(newMembers))
	for _, m := range newMembers {
		gs := GroupSecrets{JoinerSecret: st.joiner.bytes(), PSKs: st.pskIDs}
		if ps := st.pathSecretFor(m.leaf); ps != nil {
			gs.PathSecret = &PathSecret{PathSecret: ps}
		}
		pt, err := gs.Marshal()
		if err != nil {
			return nil, err
		}
		kemOut, ct, err := cs.sealWithPrepared(rand, m.initKey, ectx, pt)
		clear(pt)
		if err != nil {
			return nil, err
		}
		w.Secrets = append(w.Secrets, EncryptedGroupSecrets{
			NewMember:             m.ref,
			EncryptedGroupSecrets: HPKECiphertext{KEMOutput: kemOut, Ciphertext: ct},
		})
	}
	return (&MLSMessage{WireFormat: WireFormatWelcome, Welcome: w}).Marshal()
}

// newGroupInfo builds and signs the GroupInfo of the epoch a commit
// creates (RFC 9420, Section 12.4.3). deliver says how the ratchet tree
// travels (nil: not at all); the external_pub extension is always added
// so that the GroupInfo also serves external joins (Section 12.4.3.2).
func (g *Group) newGroupInfo(rand io.Reader, st *commitState, deliver treeDelivery) (*GroupInfo, error) {
	return makeGroupInfo(rand, g.cs, &st.ctx, st.tree, st.secrets, st.confirmationTag, g.own(), g.signer, deliver)
}

// treeDelivery returns the GroupInfo extension that carries or names the
// serialized ratchet tree, or ok false for none.
type treeDelivery func(tree []byte) (ext Extension, ok bool, err error)

// treeInExtension puts the tree itself in the ratchet_tree extension
// (RFC 9420, Section 12.4.3.3).
func treeInExtension(tree []byte) (Extension, bool, error) {
	return Extension{Type: ExtensionTypeRatchetTree, Data: tree}, true, nil
}

// makeGroupInfo builds and signs a GroupInfo for an epoch.
func makeGroupInfo(rand io.Reader, cs *cipherSuite, ctx *GroupContext, tree *ratchetTree, secrets *epochSecrets,
	confirmationTag []byte, signer leafIndex, sk *SignaturePrivateKey, deliver treeDelivery) (*GroupInfo, error) {
	var exts Extensions
	if deliver != nil {
		tb, err := tree.Marshal()
		if err != nil {
			return nil, err
		}
		ext, ok, err := deliver(tb)
		if err != nil {
			return nil, err
		}
		if ok {
			exts = append(exts, ext)
		}
	}
	pub, err := externalPub(cs, secrets.externalSecret)
	if err != nil {
		return nil, err
	}
	eb, err := (&ExternalPub{ExternalPub: pub}).Marshal()
	if err != nil {
		return nil, err
	}
	exts = append(exts, Extension{Type: ExtensionTypeExternalPub, Data: eb})
	gi := &GroupInfo{
		GroupContext:    *ctx,
		Extensions:      exts,
		ConfirmationTag: confirmationTag,
		Signer:          signer,
	}
	if err := signGroupInfo(rand, cs, gi, sk); err != nil {
		return nil, err
	}
	return gi, nil
}

// externalPub derives the public key of the external key pair
// (RFC 9420, Section 8.3): KEM.DeriveKeyPair(external_secret).
func externalPub(cs *cipherSuite, externalSecret []byte) ([]byte, error) {
	sk, err := cs.hpke.KEM.DeriveKeyPair(externalSecret)
	if err != nil {
		return nil, err
	}
	return sk.PublicKey().Bytes(), nil
}

// RatchetTree returns the current ratchet tree, encoded as the body of the
// ratchet_tree extension (RFC 9420, Section 12.4.3.3), for joiners that
// get it out of band.
func (g *Group) RatchetTree() ([]byte, error) { return g.tree.Marshal() }

// GroupInfo returns a signed GroupInfo of the current epoch as a
// serialized MLSMessage (RFC 9420, Section 12.4.3), with the external_pub
// extension so that it allows external joins (Section 12.4.3.2) and, when
// withTree is set, the ratchet tree.
func (g *Group) GroupInfo(rand io.Reader, withTree bool) ([]byte, error) {
	if g.removed {
		return nil, ErrRemoved
	}
	tag := g.cs.confirmationTag(g.secrets.confirmationKey, g.ctx.ConfirmedTranscriptHash)
	var deliver treeDelivery
	if withTree {
		deliver = treeInExtension
	}
	gi, err := makeGroupInfo(rand, g.cs, &g.ctx, g.tree, g.secrets, tag, g.own(), g.signer, deliver)
	if err != nil {
		return nil, err
	}
	return (&MLSMessage{WireFormat: WireFormatGroupInfo, GroupInfo: gi}).Marshal()
}

// importGroupInfo verifies a GroupInfo and the ratchet tree it describes
// (RFC 9420, Sections 12.4.3.1 and 12.4.3.2): the tree comes from the
// ratchet_tree extension or out of band, must match the tree hash, be
// parent-hash valid with every leaf valid, and the signer must be a member
// whose key verifies the signature.
//
// signed is as for verifyGroupInfo.
func importGroupInfo(cfg Config, gi *GroupInfo, signed, ratchetTree []byte, now time.Time) (*ratchetTree, error) {
	cs, err := gi.GroupContext.CipherSuite.suite()
	if err != nil {
		return nil, err
	}
	treeBytes := ratchetTree
	if treeBytes == nil {
		ext, ok := gi.Extensions.Find(ExtensionTypeRatchetTree)
		if !ok {
			return nil, errors.New("mls: no ratchet tree in the group info and none given")
		}
		treeBytes = ext
	}
	tree, err := parseRatchetTree(cs.id, treeBytes)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(tree.treeHash(), gi.GroupContext.TreeHash) {
		return nil, errors.New("mls: ratchet tree does not match the group's tree hash")
	}
	if err := tree.verifyParentHashes(); err != nil {
		return nil, err
	}
	if err := tree.validateTree(gi.GroupContext.GroupID, gi.GroupContext.Extensions, now, cfg.ValidateCredential); err != nil {
		return nil, err
	}
	signerLeaf := tree.leaf(gi.Signer)
	if signerLeaf == nil {
		return nil, fmt.Errorf("mls: group info signer %d is not a member", gi.Signer)
	}
	if err := verifyGroupInfo(cs, gi, signerLeaf.SignatureKey, signed); err != nil {
		return nil, err
	}
	return tree, nil
}

// JoinExternal joins a group by external commit (RFC 9420, Section
// 12.4.3.2) from a serialized MLSMessage(GroupInfo) with the external_pub
// extension. kp supplies the new leaf's credential, capabilities and keys;
// ratchetTree is the tree when given out of band, or nil to use the
// GroupInfo's extension. It returns the group, already in the new epoch,
// and the commit to send; if the Delivery Service refuses the commit the
// caller drops the group and tries again.
func JoinExternal(rand io.Reader, cfg Config, groupInfo []byte, ratchetTree []byte, kp *KeyPackagePrivate, now time.Time) (*Group, []byte, error) {
	cfg = cfg.withDefaults()
	msg, err := UnmarshalMLSMessage(groupInfo)
	if err != nil {
		return nil, nil, err
	}
	if msg.WireFormat != WireFormatGroupInfo {
		return nil, nil, fmt.Errorf("mls: message of wire format %d is not a group info", msg.WireFormat)
	}
	gi := msg.GroupInfo
	if gi.GroupContext.CipherSuite != kp.KeyPackage.CipherSuite {
		return nil, nil, fmt.Errorf("mls: group of cipher suite 0x%04x, key package of 0x%04x",
			uint16(gi.GroupContext.CipherSuite), uint16(kp.KeyPackage.CipherSuite))
	}
	cs, err := gi.GroupContext.CipherSuite.suite()
	if err != nil {
		return nil, nil, err
	}
	tree, err := importGroupInfo(cfg, gi, nil, ratchetTree, now)
	if err != nil {
		return nil, nil, err
	}
	if err := checkCredential(cfg.ValidateCredential, &kp.KeyPackage.LeafNode); err != nil {
		return nil, nil, err
	}

	// Section 8.3: encapsulate to the external public key; the exported
	// secret is the init secret of the new epoch.
	extData, ok := gi.Extensions.Find(ExtensionTypeExternalPub)
	if !ok {
		return nil, nil, errors.New("mls: group info has no external_pub extension")
	}
	ext, err := UnmarshalExternalPub(extData)
	if err != nil {
		return nil, nil, err
	}
	pk, err := cs.hpkePublicKey(ext.ExternalPub)
	if err != nil {
		return nil, nil, err
	}
	kemOutput, hctx, err := cs.hpke.SetupBaseSender(rand, pk, nil)
	if err != nil {
		return nil, nil, err
	}
	initSecret, err := hctx.Export([]byte(labelExternalInit), cs.nh)
	if err != nil {
		return nil, nil, err
	}
	defer clear(initSecret)

	leafKey, err := cs.hpkePrivateKey(kp.EncryptionPriv)
	if err != nil {
		return nil, nil, err
	}
	// The joiner's view of the group's current epoch, without its secrets.
	g := &Group{
		cfg:     cfg,
		cs:      cs,
		ctx:     gi.GroupContext,
		tree:    tree,
		signer:  kp.Signer,
		interim: cs.interimTranscriptHash(gi.GroupContext.ConfirmedTranscriptHash, gi.ConfirmationTag),
	}
	init := &Proposal{Type: ProposalTypeExternalInit, ExternalInit: &ExternalInitProposal{KEMOutput: kemOutput}}
	self := Sender{Type: SenderTypeNewMemberCommit}
	props := []sourcedProposal{{proposal: init, sender: self}}
	if err := g.validateProposalList(props, self, false); err != nil {
		return nil, nil, err
	}
	next := tree.clone()
	eff, err := g.applyProposals(next, props, now)
	if err != nil {
		return nil, nil, err
	}
	// Section 12.4.3.2: the joiner takes the leftmost free leaf and sends
	// a path from there.
	own, err := next.addLeaf(&kp.KeyPackage.LeafNode)
	if err != nil {
		return nil, nil, err
	}
	g.priv = newTreePrivateKeys(own, leafKey)
	st := &commitState{tree: next, priv: g.priv.clone(), sender: own, eff: eff}
	st.ctx = g.provisionalContext(eff)
	res, err := next.createUpdatePath(rand, st.priv, &updatePathParams{
		groupID: g.ctx.GroupID,
		signer:  kp.Signer,
		leaf:    &kp.KeyPackage.LeafNode,
		context: st.contextWithTreeHash,
	})
	if err != nil {
		return nil, nil, err
	}
	st.path = res
	st.ctx.TreeHash = next.treeHash()

	fc := &FramedContent{
		GroupID:     g.ctx.GroupID,
		Epoch:       g.ctx.Epoch,
		Sender:      self,
		ContentType: ContentTypeCommit,
		Commit: &Commit{
			Proposals: []ProposalOrRef{{Type: ProposalOrRefTypeProposal, Proposal: init}},
			Path:      res.path,
		},
	}
	ac, err := cs.signFramedContent(rand, kp.Signer, WireFormatPublicMessage, fc, &g.ctx)
	if err != nil {
		return nil, nil, err
	}
	if err := g.deriveEpoch(st, ac, initSecret, res.commitSecret, nil, true); err != nil {
		return nil, nil, err
	}
	st.zeroCommitterSecrets()
	pm, err := cs.protectPublic(ac, nil, &g.ctx)
	if err != nil {
		return nil, nil, err
	}
	commit, err := (&MLSMessage{WireFormat: WireFormatPublicMessage, PublicMessage: pm}).Marshal()
	if err != nil {
		return nil, nil, err
	}
	if err := g.install(st); err != nil {
		return nil, nil, err
	}
	return g, commit, nil
}
