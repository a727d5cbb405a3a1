package mls

// This file holds leaf node validation, RFC 9420, Section 7.3, for a single
// leaf (an Add's KeyPackage leaf, an Update, a Commit's UpdatePath) and for
// every leaf of a tree a new member imports (Section 12.4.3.1).

import (
	"crypto/sha512"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	"golang.org/x/crypto/cryptobyte"
)

// leafValidation says where a leaf node appears, for validateLeaf.
type leafValidation struct {
	// groupID and index bind update and commit leaves to their group and
	// position (LeafNodeTBS, Section 7.2). For an Add, index is ignored
	// for the signature.
	groupID []byte
	index   leafIndex
	// source is the leaf_node_source the context requires: key_package
	// for an Add, update for an Update proposal, commit for an UpdatePath.
	source LeafNodeSource
	// replaces is true when the leaf replaces the member at index (Update
	// and Commit), so that leaf's signature key does not count as a
	// duplicate. Its encryption key does: a new leaf must change it.
	replaces bool
	// now is checked against the lifetime of a key_package leaf; the zero
	// time skips the check, as Section 7.3 allows for leaves received in
	// a tree.
	now time.Time
	// groupExtensions are the GroupContext extensions; a
	// required_capabilities extension among them must be supported.
	groupExtensions Extensions
	// validateCredential is the application's credential check
	// (Section 5.3.1). nil refuses every leaf, so a forgotten validator
	// fails closed.
	validateCredential func(c Credential, signatureKey []byte) error
	// signatureVerified is set when the leaf's signature was verified
	// already, in a batch (batchVerifyKeyPackages).
	signatureVerified bool
}

// Default extension and proposal types (RFC 9420, Section 7.2) are
// supported by every client and need not be listed in capabilities.
func isDefaultExtension(t ExtensionType) bool { return t >= 1 && t <= 5 }
func isDefaultProposal(t ProposalType) bool   { return t >= 1 && t <= 7 }

// supportsExtension reports whether c lists t or t is a default type.
func (c *Capabilities) supportsExtension(t ExtensionType) bool {
	return isDefaultExtension(t) || slices.Contains(c.Extensions, t)
}

// validateLeaf validates leaf as Section 7.3 requires, against the members
// already in t: credential (through the application's validator),
// signature, group requirements, credential types supported both ways,
// lifetime, extensions listed in the capabilities, the expected source,
// and unique signature and encryption keys.
func (t *ratchetTree) validateLeaf(leaf *LeafNode, v *leafValidation) error {
	if leaf == nil {
		return errors.New("mls: blank leaf node")
	}
	if !v.signatureVerified {
		if err := t.verifyLeafSignature(leaf, v.groupID, v.index); err != nil {
			return err
		}
	}
	if err := t.validateLeafAlone(leaf, v); err != nil {
		return err
	}
	return t.checkLeafAgainstMembers(leaf, v)
}

// checkLeafAgainstMembers runs the checks of Section 7.3 that involve the
// other members, with the tree's indexes, in O(log N + capabilities):
// signature and encryption keys unique (a leaf that replaces the member
// at v.index may keep that member's signature key, never its encryption
// key), the leaf's credential type supported by every other member, and
// every credential type in use by another member supported by the leaf.
// When a check fails, conflictScan names the leaf at fault.
func (t *ratchetTree) checkLeafAgainstMembers(leaf *LeafNode, v *leafValidation) error {
	if l, ok := t.leafWithSignatureKey(leaf.SignatureKey); ok && !(v.replaces && l == v.index) {
		return fmt.Errorf("mls: leaf signature key already used by leaf %d", l)
	}
	if l, ok := t.leafWithEncryptionKey(leaf.EncryptionKey); ok {
		return fmt.Errorf("mls: leaf encryption key already used by leaf %d", l)
	}
	// The counts of the other members: without the replaced leaf.
	var self *LeafNode
	if v.replaces {
		self = t.leaf(v.index)
	}
	others := t.memberCount()
	usedTypes := t.usedTypes
	own := t.credCountOf(leaf.Credential.Type)
	if self != nil {
		others--
		if slices.Contains(self.Capabilities.Credentials, leaf.Credential.Type) {
			own.support--
		}
		if t.credCountOf(self.Credential.Type).use == 1 {
			usedTypes--
		}
	}
	ok := own.support == others
	if ok {
		covered := 0
		for _, c := range distinctTypes(leaf.Capabilities.Credentials) {
			use := t.credCountOf(c).use
			if self != nil && self.Credential.Type == c {
				use--
			}
			if use > 0 {
				covered++
			}
		}
		ok = covered == usedTypes
	}
	if !ok {
		if err := t.conflictScan(leaf, v); err != nil {
			return err
		}
		return errors.New("mls: internal error: leaf indexes out of step with the tree")
	}
	return nil
}

// conflictScan is the plain form of checkLeafAgainstMembers: it compares
// leaf with every member and names the first conflict. It is O(N) and
// runs only when the indexed checks fail (and in tests, as their oracle).
func (t *ratchetTree) conflictScan(leaf *LeafNode, v *leafValidation) error {
	for x := 0; x < t.size; x += 2 {
		other := t.at(nodeIndex(x)).leaf
		if other == nil {
			continue
		}
		self := v.replaces && leafIndex(x/2) == v.index
		if !self && slices.Equal(other.SignatureKey, leaf.SignatureKey) {
			return fmt.Errorf("mls: leaf signature key already used by leaf %d", x/2)
		}
		if slices.Equal(other.EncryptionKey, leaf.EncryptionKey) {
			return fmt.Errorf("mls: leaf encryption key already used by leaf %d", x/2)
		}
		if self {
			continue
		}
		// Section 7.3: the new leaf's credential type must be supported by
		// every member, and the new leaf must support every credential
		// type in use.
		if !slices.Contains(other.Capabilities.Credentials, leaf.Credential.Type) {
			return fmt.Errorf("mls: leaf %d does not support credential type %d", x/2, leaf.Credential.Type)
		}
		if !slices.Contains(leaf.Capabilities.Credentials, other.Credential.Type) {
			return fmt.Errorf("mls: leaf does not support credential type %d in use", other.Credential.Type)
		}
	}
	return nil
}

// verifyLeafSignature checks the leaf's signature over LeafNodeTBS for its
// group and position (Section 7.2).
func (t *ratchetTree) verifyLeafSignature(leaf *LeafNode, groupID []byte, index leafIndex) error {
	tbs, err := leaf.marshalTBS(groupID, index)
	if err != nil {
		return err
	}
	if !t.cs.verifyWithLabel(leaf.SignatureKey, labelLeafNodeTBS, tbs, leaf.Signature) {
		return fmt.Errorf("mls: invalid signature on leaf %d", index)
	}
	return nil
}

// validateLeafAlone runs the checks of Section 7.3 that need no other
// member, except the signature (verifyLeafSignature): everything but
// uniqueness and the credential types of others.
func (t *ratchetTree) validateLeafAlone(leaf *LeafNode, v *leafValidation) error {
	if leaf == nil {
		return errors.New("mls: blank leaf node")
	}
	if leaf.Source != v.source {
		return fmt.Errorf("mls: leaf node source %d, want %d", leaf.Source, v.source)
	}
	if v.validateCredential == nil {
		return errors.New("mls: no credential validator configured")
	}
	if err := v.validateCredential(leaf.Credential, leaf.SignatureKey); err != nil {
		return fmt.Errorf("mls: credential rejected: %w", err)
	}
	caps := &leaf.Capabilities
	if data, ok := v.groupExtensions.Find(ExtensionTypeRequiredCapabilities); ok {
		req, err := UnmarshalRequiredCapabilities(data)
		if err != nil {
			return fmt.Errorf("mls: required_capabilities: %w", err)
		}
		for _, e := range req.ExtensionTypes {
			if !caps.supportsExtension(e) {
				return fmt.Errorf("mls: leaf does not support required extension %d", e)
			}
		}
		for _, p := range req.ProposalTypes {
			if !isDefaultProposal(p) && !slices.Contains(caps.Proposals, p) {
				return fmt.Errorf("mls: leaf does not support required proposal %d", p)
			}
		}
		for _, c := range req.CredentialTypes {
			if !slices.Contains(caps.Credentials, c) {
				return fmt.Errorf("mls: leaf does not support required credential type %d", c)
			}
		}
	}
	if !slices.Contains(caps.Credentials, leaf.Credential.Type) {
		return fmt.Errorf("mls: leaf does not list its own credential type %d", leaf.Credential.Type)
	}
	if leaf.Source == LeafNodeSourceKeyPackage && !v.now.IsZero() {
		now := v.now.Unix()
		if now < 0 || uint64(now) < leaf.Lifetime.NotBefore || uint64(now) > leaf.Lifetime.NotAfter {
			return fmt.Errorf("mls: leaf lifetime [%d, %d] does not include %d",
				leaf.Lifetime.NotBefore, leaf.Lifetime.NotAfter, now)
		}
	}
	for _, e := range leaf.Extensions {
		if !caps.supportsExtension(e.Type) {
			return fmt.Errorf("mls: leaf extension %d not listed in its capabilities", e.Type)
		}
	}
	return nil
}

// validateTree validates every leaf of t as a new member must before
// joining (Section 12.4.3.1, Section 7.3): each leaf against its own
// position, with keys unique across the tree and every credential type in
// use supported by every leaf. It runs in time linear in the number of
// leaves; the signatures, most of the cost, are verified on GOMAXPROCS
// goroutines. The credential validator is called sequentially, in leaf
// order. now may be zero to skip lifetime checks.
func (t *ratchetTree) validateTree(groupID []byte, groupExtensions Extensions, now time.Time,
	validateCredential func(Credential, []byte) error) error {
	sigKeys := make(map[string]leafIndex)
	encKeys := make(map[string]leafIndex)
	var credTypes []CredentialType
	for x := 0; x < t.size; x += 2 {
		n := t.at(nodeIndex(x))
		if n.leaf == nil {
			continue
		}
		l := leafIndex(x / 2)
		v := leafValidation{
			groupID:            groupID,
			index:              l,
			source:             n.leaf.Source,
			now:                now,
			groupExtensions:    groupExtensions,
			validateCredential: validateCredential,
		}
		if err := t.validateLeafAlone(n.leaf, &v); err != nil {
			return fmt.Errorf("%w (leaf %d of the tree)", err, l)
		}
		if prev, dup := sigKeys[string(n.leaf.SignatureKey)]; dup {
			return fmt.Errorf("mls: leaves %d and %d share a signature key", prev, l)
		}
		sigKeys[string(n.leaf.SignatureKey)] = l
		if prev, dup := encKeys[string(n.leaf.EncryptionKey)]; dup {
			return fmt.Errorf("mls: leaves %d and %d share an encryption key", prev, l)
		}
		encKeys[string(n.leaf.EncryptionKey)] = l
		if !slices.Contains(credTypes, n.leaf.Credential.Type) {
			credTypes = append(credTypes, n.leaf.Credential.Type)
		}
	}
	if err := t.verifyLeafSignatures(groupID); err != nil {
		return err
	}
	for x := 0; x < t.size; x += 2 {
		leaf := t.at(nodeIndex(x)).leaf
		if leaf == nil {
			continue
		}
		for _, c := range credTypes {
			if !slices.Contains(leaf.Capabilities.Credentials, c) {
				return fmt.Errorf("mls: leaf %d does not support credential type %d in use", x/2, c)
			}
		}
	}
	return nil
}

// verifyLeafSignatures verifies the signature of every non-blank leaf,
// spread over GOMAXPROCS goroutines for large trees. It reports the lowest
// failing leaf. For Ed25519 suites the signatures are verified in batches
// (edBatchVerify); a batch that fails is verified one by one to name the
// leaf.
func (t *ratchetTree) verifyLeafSignatures(groupID []byte) error {
	var leaves []leafIndex
	for x := 0; x < t.size; x += 2 {
		if t.at(nodeIndex(x)).leaf != nil {
			leaves = append(leaves, leafIndex(x/2))
		}
	}
	one := func(l leafIndex) error {
		return t.verifyLeafSignature(t.at(l.node()).leaf, groupID, l)
	}
	run := func(ls []leafIndex) error {
		if _, ed := t.cs.sig.(ed25519Scheme); ed && len(ls) > 1 {
			if t.batchVerifyLeaves(ls, groupID) {
				return nil
			}
		}
		for _, l := range ls {
			if err := one(l); err != nil {
				return err
			}
		}
		return nil
	}
	workers := min(runtime.GOMAXPROCS(0), len(leaves)/minSignaturesPerWorker)
	if workers <= 1 {
		return run(leaves)
	}
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := w*len(leaves)/workers, (w+1)*len(leaves)/workers
		wg.Go(func() { errs[w] = run(leaves[lo:hi]) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// batchVerifyLeaves reports whether the Ed25519 signatures of the leaves
// ls all verify, in batches. false means at least one did not (or could
// not be encoded): the caller verifies them one by one.
func (t *ratchetTree) batchVerifyLeaves(ls []leafIndex, groupID []byte) bool {
	sigs := make([]edSignature, 0, min(edBatchSize, len(ls)))
	buf := getScratch()
	defer func() { putScratch(buf, *buf) }()
	var digest [64]byte
	for len(ls) > 0 {
		n := min(len(ls), edBatchSize)
		sigs = sigs[:0]
		for _, l := range ls[:n] {
			leaf := t.at(l.node()).leaf
			pub, ok := parseEdPublicKey(leaf.SignatureKey)
			if !ok || len(leaf.Signature) != 64 {
				return false
			}
			all, in, err := leafSignedInput(*buf, leaf, groupID, l)
			if err != nil {
				return false
			}
			*buf = all
			digest = sha512.Sum512(in)
			sigs = append(sigs, edSignature{})
			if !sigs[len(sigs)-1].prepareDigest(pub, leaf.Signature, &digest) {
				return false
			}
		}
		if !edBatchVerify(sigs) {
			return false
		}
		ls = ls[n:]
	}
	return true
}

// leafSignedInput encodes into buf[:0] what Ed25519 hashes to verify the
// signature of leaf at index l (RFC 8032, Section 5.1.7, k = SHA-512(R ‖ A
// ‖ M)): R, the first half of the signature, A, the signature key, and M =
// SignContent("LeafNodeTBS", LeafNodeTBS) (RFC 9420, Sections 5.1.2 and
// 7.2). The TBS is encoded once, after room for the rest, which is filled
// in once its length is known: it returns everything written to buf (all)
// and the input, a suffix of it. The signature and key must be 64 and 32
// bytes.
func leafSignedInput(buf []byte, leaf *LeafNode, groupID []byte, l leafIndex) (all, in []byte, err error) {
	room := 64 + 4 + len(labelPrefix) + len(labelLeafNodeTBS) + 4
	b := cryptobyte.NewBuilder(append(buf[:0], make([]byte, room)...))
	leaf.marshalContent(b)
	switch leaf.Source {
	case LeafNodeSourceUpdate, LeafNodeSourceCommit:
		writeOpaque(b, groupID)
		b.AddUint32(uint32(l))
	}
	if all, err = b.Bytes(); err != nil {
		return nil, nil, err
	}
	var hdr [64 + 64]byte
	h := append(hdr[:0], leaf.Signature[:32]...)
	h = append(h, leaf.SignatureKey...)
	h = appendLabeledInput(h, labelLeafNodeTBS, nil)
	h = appendVarint(h[:len(h)-1], len(all)-room)
	start := room - len(h)
	copy(all[start:], h)
	return all, all[start:], nil
}

// minSignaturesPerWorker is the number of leaf signatures below which
// verifying them on several goroutines costs more than it saves.
const minSignaturesPerWorker = 16
