package mls

// This file holds TreeKEM, RFC 9420, Sections 7.4 to 7.6: deriving path
// secrets and node key pairs, creating an UpdatePath encrypted to the
// copath resolutions, and merging and decrypting one received from another
// member.

import (
	"bytes"
	"crypto/sha3"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"maps"
	"runtime"
	"slices"
	"sync"

	"golang.org/x/crypto/cryptobyte"

	"qpchat/kem"
)

// Labels of the TreeKEM derivations (Section 7.4) and of EncryptWithLabel
// for path secrets (Section 7.6).
const (
	labelPath           = "path"
	labelNode           = "node"
	labelUpdatePathNode = "UpdatePathNode"
	labelLeafNodeTBS    = "LeafNodeTBS"
)

// errPathDecrypt is the one error a failed path-secret decryption returns,
// whatever went wrong (STYLE: a failed decryption never says which check
// failed).
var errPathDecrypt = errors.New("mls: cannot decrypt update path")

// nodePrivateKey is an HPKE private key of a tree node with the encoding of
// its public key, kept to match it against the tree without recomputing.
type nodePrivateKey struct {
	priv kem.PrivateKey
	pub  []byte
}

// treePrivateKeys is a member's private view of the ratchet tree
// (Section 7.4): its leaf index and the HPKE private keys it holds, for its
// leaf and for parent nodes on its direct path, indexed by node. A key is
// used only while the tree still holds the matching public key, so keys of
// nodes that were since blanked or replaced are never used; prune drops
// them.
type treePrivateKeys struct {
	leaf leafIndex
	keys map[nodeIndex]nodePrivateKey
}

// newTreePrivateKeys returns the private view of the member at leaf with
// leaf private key leafKey.
func newTreePrivateKeys(leaf leafIndex, leafKey kem.PrivateKey) *treePrivateKeys {
	k := &treePrivateKeys{leaf: leaf, keys: make(map[nodeIndex]nodePrivateKey)}
	k.set(leaf.node(), leafKey)
	return k
}

func (k *treePrivateKeys) set(x nodeIndex, priv kem.PrivateKey) {
	k.keys[x] = nodePrivateKey{priv: priv, pub: priv.PublicKey().Bytes()}
}

// clone returns an independent copy (private keys are immutable values and
// are shared).
func (k *treePrivateKeys) clone() *treePrivateKeys {
	return &treePrivateKeys{leaf: k.leaf, keys: maps.Clone(k.keys)}
}

// keyFor returns the private key for node x if k holds one whose public key
// is the one x has in t.
func (k *treePrivateKeys) keyFor(t *ratchetTree, x nodeIndex) (kem.PrivateKey, bool) {
	nk, ok := k.keys[x]
	if !ok || uint64(x) >= uint64(t.size) {
		return nil, false
	}
	pub := t.at(x).encryptionKey()
	if pub == nil || !bytes.Equal(pub, nk.pub) {
		return nil, false
	}
	return nk.priv, true
}

// prune drops every key whose node is blank, outside t or holds another
// public key, for forward secrecy after proposals blank nodes.
func (k *treePrivateKeys) prune(t *ratchetTree) {
	for x := range k.keys {
		if _, ok := k.keyFor(t, x); !ok {
			delete(k.keys, x)
		}
	}
}

// consistent reports whether every key k holds matches the public key of
// its node in t (FORMAT.md, treekem: the private state is consistent with
// the tree).
func (k *treePrivateKeys) consistent(t *ratchetTree) error {
	for x := range k.keys {
		if _, ok := k.keyFor(t, x); !ok {
			return fmt.Errorf("mls: private key for node %d does not match the tree", x)
		}
	}
	return nil
}

// marshal writes the keys for persistence as
// struct { uint32 leaf; struct { uint32 node; opaque priv<V>; } keys<V>; }
// in node order.
func (k *treePrivateKeys) marshal(b *cryptobyte.Builder) {
	b.AddUint32(uint32(k.leaf))
	writeVector(b, func(b *cryptobyte.Builder) {
		for _, x := range slices.Sorted(maps.Keys(k.keys)) {
			b.AddUint32(uint32(x))
			writeOpaque(b, k.keys[x].priv.Bytes())
		}
	})
}

// unmarshalTreePrivateKeys reads what marshal wrote, for suite.
func unmarshalTreePrivateKeys(suite CipherSuite, s *cryptobyte.String) (*treePrivateKeys, error) {
	cs, err := suite.suite()
	if err != nil {
		return nil, err
	}
	k := &treePrivateKeys{keys: make(map[nodeIndex]nodePrivateKey)}
	if !s.ReadUint32((*uint32)(&k.leaf)) {
		return nil, errDecode
	}
	var last nodeIndex
	err = readList(s, func(s *cryptobyte.String) error {
		var x uint32
		var raw []byte
		if !s.ReadUint32(&x) || !readOpaque(s, &raw) {
			return errDecode
		}
		defer clear(raw)
		// Nodes are in strictly increasing order, as marshal writes them,
		// so the encoding is canonical.
		if len(k.keys) > 0 && nodeIndex(x) <= last {
			return fmt.Errorf("%w: node %d out of order", errDecode, x)
		}
		last = nodeIndex(x)
		priv, err := cs.hpke.KEM.NewPrivateKey(raw)
		if err != nil {
			return fmt.Errorf("%w: %v", errDecode, err)
		}
		k.set(nodeIndex(x), priv)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return k, nil
}

// deriveNodeKey derives the key pair of a node from its path secret
// (Section 7.4): node_secret = DeriveSecret(path_secret, "node"), then
// KEM.DeriveKeyPair(node_secret).
func (t *ratchetTree) deriveNodeKey(pathSecret []byte) (kem.PrivateKey, error) {
	nodeSecret := t.cs.deriveSecret(pathSecret, labelNode)
	defer clear(nodeSecret)
	return t.cs.hpke.KEM.DeriveKeyPair(nodeSecret)
}

// encryptWithLabel implements EncryptWithLabel (Section 5.1.3) for a path
// secret: SealBase(pub, EncryptContext, "", plaintext).
func (t *ratchetTree) encryptWithLabel(rand io.Reader, pub []byte, label string, context, plaintext []byte) (HPKECiphertext, error) {
	pk, err := t.cs.hpke.KEM.NewPublicKey(pub)
	if err != nil {
		return HPKECiphertext{}, fmt.Errorf("mls: encryption key: %w", err)
	}
	enc, ct, err := t.cs.hpke.Seal(rand, pk, encryptContext(label, context), nil, plaintext)
	if err != nil {
		return HPKECiphertext{}, err
	}
	return HPKECiphertext{KEMOutput: enc, Ciphertext: ct}, nil
}

// decryptWithLabel implements DecryptWithLabel (Section 5.1.3).
func (t *ratchetTree) decryptWithLabel(priv kem.PrivateKey, label string, context []byte, c *HPKECiphertext) ([]byte, error) {
	return t.cs.hpke.Open(priv, c.KEMOutput, encryptContext(label, context), nil, c.Ciphertext)
}

// updatePathParams is the input of createUpdatePath.
type updatePathParams struct {
	// groupID and signer sign the new leaf (LeafNodeTBS with source
	// commit, Section 7.2); signer's public key becomes its signature key.
	groupID []byte
	signer  *SignaturePrivateKey
	// leaf supplies the credential, capabilities and extensions of the new
	// leaf; nil keeps those of the current leaf.
	leaf *LeafNode
	// excluded are the leaves added by the same commit: they get the path
	// secret through the Welcome, not the UpdatePath (Section 7.6).
	excluded []leafIndex
	// context returns the encoded provisional GroupContext for the tree
	// hash of the tree with the new path merged (Section 7.6, Section
	// 12.4.1): path secrets are encrypted with it as context.
	context func(treeHash []byte) ([]byte, error)
}

// updatePathResult is what createUpdatePath returns besides the changes to
// the tree and private keys.
type updatePathResult struct {
	path         *UpdatePath
	commitSecret []byte
	// nodes is the sender's filtered direct path and pathSecrets the path
	// secret of each of its nodes, for the Welcome (pathSecretFor).
	nodes       []nodeIndex
	pathSecrets [][]byte
	// context is the provisional GroupContext the secrets were encrypted
	// under.
	context []byte
}

// pathSecretFor returns the path secret a new member at leaf joiner needs
// (Section 12.4.3.1): the one of the lowest common ancestor of the joiner
// and the sender, sender being the leaf that created the path. It returns
// nil when that node is not on the path, as when the path is empty.
func (r *updatePathResult) pathSecretFor(sender, joiner leafIndex) []byte {
	lca := commonAncestor(sender.node(), joiner.node())
	if i := slices.Index(r.nodes, lca); i >= 0 {
		return r.pathSecrets[i]
	}
	return nil
}

// createUpdatePath refreshes the path of own's leaf (Sections 7.4 to 7.6):
// it blanks the direct path, draws a fresh leaf key and a path secret,
// derives the secrets and key pairs of the filtered direct path, sets the
// parent hashes, signs the new leaf, merges all of it into t, and encrypts
// each path secret to the copath resolution minus p.excluded under the
// provisional GroupContext. own's keys are replaced by the new ones.
//
// It mutates t and own even on error: callers work on clones.
func (t *ratchetTree) createUpdatePath(rand io.Reader, own *treePrivateKeys, p *updatePathParams) (*updatePathResult, error) {
	sender := own.leaf
	old := t.leaf(sender)
	if old == nil {
		return nil, fmt.Errorf("mls: update path from blank leaf %d", sender)
	}
	if p.signer == nil || p.context == nil {
		return nil, errors.New("mls: update path needs a signer and a context")
	}
	template := p.leaf
	if template == nil {
		template = old
	}

	leafKey, err := t.cs.hpke.KEM.GenerateKeyPair(rand)
	if err != nil {
		return nil, err
	}
	t.blankDirectPath(sender)
	path, copath := t.filteredDirectPath(sender)

	// path_secret[0] is random; path_secret[n] = DeriveSecret(
	// path_secret[n-1], "path"); the commit secret is the next value after
	// the last node's (Section 7.4). With an empty path the random value
	// is the commit secret.
	secret := make([]byte, t.cs.nh)
	if _, err := io.ReadFull(rand, secret); err != nil {
		return nil, fmt.Errorf("mls: reading randomness: %w", err)
	}
	res := &updatePathResult{nodes: path, pathSecrets: make([][]byte, len(path))}
	nodeKeys := make([]kem.PrivateKey, len(path))
	for i, x := range path {
		res.pathSecrets[i] = secret
		if nodeKeys[i], err = t.deriveNodeKey(secret); err != nil {
			return nil, err
		}
		t.setParent(x, &ParentNode{EncryptionKey: nodeKeys[i].PublicKey().Bytes()})
		secret = t.cs.deriveSecret(secret, labelPath)
	}
	res.commitSecret = secret

	leaf := &LeafNode{
		EncryptionKey: leafKey.PublicKey().Bytes(),
		SignatureKey:  p.signer.PublicKey(),
		Credential:    template.Credential,
		Capabilities:  template.Capabilities,
		Source:        LeafNodeSourceCommit,
		ParentHash:    t.setPathParentHashes(path, copath),
		Extensions:    template.Extensions,
	}
	tbs, err := leaf.marshalTBS(p.groupID, sender)
	if err != nil {
		return nil, err
	}
	if leaf.Signature, err = t.cs.signWithLabel(rand, p.signer, labelLeafNodeTBS, tbs); err != nil {
		return nil, err
	}
	t.setLeaf(sender, leaf)

	if res.context, err = p.context(t.treeHash()); err != nil {
		return nil, err
	}
	up := &UpdatePath{LeafNode: *leaf, Nodes: make([]UpdatePathNode, len(path))}
	excluded := sortedLeaves(p.excluded)
	var resolution []nodeIndex
	var jobs []sealJob
	for i, x := range path {
		up.Nodes[i].EncryptionKey = t.at(x).parent.EncryptionKey
		resolution = t.resolutionExcluding(resolution[:0], copath[i], excluded)
		cts := make([]HPKECiphertext, len(resolution))
		for j, r := range resolution {
			jobs = append(jobs, sealJob{pub: t.at(r).encryptionKey(), secret: res.pathSecrets[i], out: &cts[j]})
		}
		up.Nodes[i].EncryptedPathSecret = cts
	}
	if err := t.sealPathSecrets(rand, jobs, res.context); err != nil {
		return nil, err
	}
	res.path = up

	own.dropDirectPath(t, sender)
	own.set(sender.node(), leafKey)
	for i, x := range path {
		own.set(x, nodeKeys[i])
	}
	return res, nil
}

// sealJob is one path secret to encrypt to one node of a copath resolution.
type sealJob struct {
	pub, secret []byte
	out         *HPKECiphertext
	seed        [32]byte
}

// minSealsPerWorker is the number of encryptions below which spreading
// them over goroutines costs more than it saves.
const minSealsPerWorker = 4

// sealPathSecrets runs the EncryptWithLabel calls of an UpdatePath
// (Section 7.6). The first path commit in a tree with blank parents
// encrypts to about every member, so the work is spread over GOMAXPROCS
// goroutines. To keep the result a function of rand alone, whatever the
// scheduling, each encryption draws its ephemeral randomness from its own
// cSHAKE256 stream seeded with 32 bytes read from rand in job order.
func (t *ratchetTree) sealPathSecrets(rand io.Reader, jobs []sealJob, context []byte) error {
	for i := range jobs {
		if _, err := io.ReadFull(rand, jobs[i].seed[:]); err != nil {
			return fmt.Errorf("mls: reading randomness: %w", err)
		}
	}
	run := func(jobs []sealJob) error {
		for i := range jobs {
			j := &jobs[i]
			stream := sha3.NewCSHAKE256(nil, []byte("qpchat mls UpdatePath encryption randomness"))
			stream.Write(j.seed[:])
			clear(j.seed[:])
			ct, err := t.encryptWithLabel(stream, j.pub, labelUpdatePathNode, context, j.secret)
			if err != nil {
				return err
			}
			*j.out = ct
		}
		return nil
	}
	workers := min(runtime.GOMAXPROCS(0), len(jobs)/minSealsPerWorker)
	if workers <= 1 {
		return run(jobs)
	}
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := w*len(jobs)/workers, (w+1)*len(jobs)/workers
		wg.Go(func() { errs[w] = run(jobs[lo:hi]) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// resolutionExcluding appends the resolution of x without the leaves in
// excluded, which is sorted (Section 7.6: new members get the path secret
// in the Welcome).
func (t *ratchetTree) resolutionExcluding(out []nodeIndex, x nodeIndex, excluded []leafIndex) []nodeIndex {
	start := len(out)
	out = t.resolution(out, x)
	if len(excluded) == 0 {
		return out
	}
	kept := out[:start]
	for _, r := range out[start:] {
		if l, ok := r.leaf(); ok {
			if _, found := slices.BinarySearch(excluded, l); found {
				continue
			}
		}
		kept = append(kept, r)
	}
	return kept
}

// dropDirectPath forgets the keys of every parent node on the direct path
// of leaf l, which a new path from l replaces.
func (k *treePrivateKeys) dropDirectPath(t *ratchetTree, l leafIndex) {
	path, _ := l.node().directPath(t.numLeaves())
	for _, x := range path {
		delete(k.keys, x)
	}
}

// applyUpdatePath merges the public part of an UpdatePath from sender into
// t (Section 7.5, Section 12.4.2): it replaces the sender's leaf, blanks
// its direct path, sets the filtered direct path to the path's keys with
// no unmerged leaves, recomputes the parent hashes and checks that the new
// leaf's parent_hash matches them (Section 7.9.2). The number of path nodes
// must equal the length of the sender's filtered direct path in t, the tree
// with the commit's proposals applied. When v is non-nil the leaf is first
// validated with validateLeaf (source commit, replacing the sender).
//
// It mutates t even on error: callers work on clones.
func (t *ratchetTree) applyUpdatePath(sender leafIndex, up *UpdatePath, v *leafValidation) error {
	if up == nil {
		return errors.New("mls: no update path")
	}
	if t.leaf(sender) == nil {
		return fmt.Errorf("mls: update path from blank leaf %d", sender)
	}
	leaf := up.LeafNode
	if v != nil {
		vc := *v
		vc.index, vc.source, vc.replaces = sender, LeafNodeSourceCommit, true
		if err := t.validateLeaf(&leaf, &vc); err != nil {
			return err
		}
	}
	if leaf.Source != LeafNodeSourceCommit {
		return fmt.Errorf("mls: update path leaf has source %d", leaf.Source)
	}
	t.blankDirectPath(sender)
	path, copath := t.filteredDirectPath(sender)
	if len(up.Nodes) != len(path) {
		return fmt.Errorf("mls: update path has %d nodes, want %d", len(up.Nodes), len(path))
	}
	for i, x := range path {
		if len(up.Nodes[i].EncryptionKey) == 0 {
			return fmt.Errorf("mls: update path node %d has no encryption key", i)
		}
		t.setParent(x, &ParentNode{EncryptionKey: up.Nodes[i].EncryptionKey})
	}
	ph := t.setPathParentHashes(path, copath)
	if !bytes.Equal(ph, leaf.ParentHash) {
		return errParentHash
	}
	t.setLeaf(sender, &leaf)
	return nil
}

// decryptUpdatePath processes an UpdatePath from sender that applyUpdatePath
// has already merged into t (Section 7.6, Section 12.4.2): it finds the
// lowest common ancestor of own's leaf and the sender's on the sender's
// filtered direct path, decrypts that node's path secret with a key own
// holds for the copath resolution (minus the excluded new members), derives
// the path secrets of the nodes above, checks each derived public key
// against the path, stores the new private keys in own and returns the
// commit secret. context is the provisional GroupContext.
//
// own is changed only on success.
func (t *ratchetTree) decryptUpdatePath(own *treePrivateKeys, sender leafIndex, up *UpdatePath, excluded []leafIndex, context []byte) (commitSecret []byte, err error) {
	pathSecret, commitSecret, err := t.decryptPathSecret(own, sender, up, excluded, context)
	clear(pathSecret)
	return commitSecret, err
}

// decryptPathSecret is decryptUpdatePath that also returns the path secret
// decrypted at the common ancestor.
func (t *ratchetTree) decryptPathSecret(own *treePrivateKeys, sender leafIndex, up *UpdatePath, excluded []leafIndex, context []byte) (pathSecret, commitSecret []byte, err error) {
	if up == nil {
		return nil, nil, errors.New("mls: no update path")
	}
	if own.leaf == sender {
		return nil, nil, errors.New("mls: cannot decrypt one's own update path")
	}
	if slices.Contains(excluded, own.leaf) {
		return nil, nil, errors.New("mls: a new member takes its path secret from the Welcome")
	}
	path, copath := t.filteredDirectPath(sender)
	if len(up.Nodes) != len(path) {
		return nil, nil, fmt.Errorf("mls: update path has %d nodes, want %d", len(up.Nodes), len(path))
	}
	lca := commonAncestor(own.leaf.node(), sender.node())
	i := slices.Index(path, lca)
	if i < 0 {
		return nil, nil, errPathDecrypt
	}
	resolution := t.resolutionExcluding(nil, copath[i], sortedLeaves(excluded))
	cts := up.Nodes[i].EncryptedPathSecret
	if len(cts) != len(resolution) {
		return nil, nil, fmt.Errorf("mls: update path node %d has %d ciphertexts, want %d", i, len(cts), len(resolution))
	}
	var priv kem.PrivateKey
	j := -1
	for k, r := range resolution {
		if key, ok := own.keyFor(t, r); ok {
			priv, j = key, k
			break
		}
	}
	if j < 0 {
		return nil, nil, errPathDecrypt
	}
	pathSecret, err = t.decryptWithLabel(priv, labelUpdatePathNode, context, &cts[j])
	if err != nil || len(pathSecret) != t.cs.nh {
		return nil, nil, errPathDecrypt
	}
	keys, commitSecret, err := t.deriveChain(path[i:], pathSecret)
	if err != nil {
		return nil, nil, err
	}
	own.dropDirectPath(t, sender)
	for k, x := range path[i:] {
		own.set(x, keys[k])
	}
	return pathSecret, commitSecret, nil
}

// deriveChain derives the key pairs of nodes from the path secret of
// nodes[0] upwards (Section 7.4), checks each public key against the tree,
// and returns the keys and the commit secret.
func (t *ratchetTree) deriveChain(nodes []nodeIndex, pathSecret []byte) ([]kem.PrivateKey, []byte, error) {
	keys := make([]kem.PrivateKey, len(nodes))
	secret := pathSecret
	for k, x := range nodes {
		if k > 0 {
			next := t.cs.deriveSecret(secret, labelPath)
			if k > 1 {
				clear(secret) // derived here; pathSecret belongs to the caller
			}
			secret = next
		}
		key, err := t.deriveNodeKey(secret)
		if err != nil {
			return nil, nil, err
		}
		want := t.at(x).encryptionKey()
		if subtle.ConstantTimeCompare(key.PublicKey().Bytes(), want) != 1 {
			return nil, nil, fmt.Errorf("mls: derived key of node %d does not match the update path", x)
		}
		keys[k] = key
	}
	commitSecret := t.cs.deriveSecret(secret, labelPath)
	if len(nodes) > 1 {
		clear(secret)
	}
	return keys, commitSecret, nil
}

// joinPathSecret sets own's keys from the path secret of a Welcome
// (Section 12.4.3.1): pathSecret belongs to the lowest common ancestor of
// own's leaf and committer's, and the keys of the committer's filtered
// direct path above it follow from it. Each derived public key must match
// the tree.
func (t *ratchetTree) joinPathSecret(own *treePrivateKeys, committer leafIndex, pathSecret []byte) error {
	path, _ := t.filteredDirectPath(committer)
	i := slices.Index(path, commonAncestor(own.leaf.node(), committer.node()))
	if i < 0 {
		return errors.New("mls: welcome path secret for a node outside the committer's path")
	}
	keys, _, err := t.deriveChain(path[i:], pathSecret)
	if err != nil {
		return err
	}
	for k, x := range path[i:] {
		own.set(x, keys[k])
	}
	return nil
}
