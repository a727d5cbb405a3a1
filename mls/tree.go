package mls

// This file holds the ratchet tree of RFC 9420, Section 7: the array
// representation of Section 4.2 and Appendix C, resolution (Section 4.1.1),
// adding and removing leaves with truncation (Section 7.7), the filtered
// direct path (Section 4.1.2) and the ratchet_tree extension
// (Section 12.4.3.3).
//
// Leaf and parent node values stored in a ratchetTree are never modified in
// place: every change replaces the pointer. The node array is stored in
// chunks shared copy-on-write between a tree and its clones, and the key
// and credential indexes are persistent maps (pmap), so clone costs a copy
// of the chunk pointers (about N/32 words) and a change copies only the
// chunks and index nodes it touches: a commit costs O(log N + proposals)
// node copies, not a copy of the tree (issue 12). A chunk holds a subtree
// six levels high, so a direct path of a tree of 50 000 leaves crosses
// three chunks.

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math/bits"
	"slices"
	"sync/atomic"
)

// maxTreeLeaves bounds the leaves of a tree so that node indices, which are
// uint32 on the wire, cannot overflow (2*leaves - 1 nodes).
const maxTreeLeaves = 1 << 30

// treeNode is one slot of the array representation. Both pointers are nil
// for a blank node; leaf is only set at even indices and parent only at odd
// ones.
type treeNode struct {
	leaf   *LeafNode
	parent *ParentNode
	// hash caches the tree hash of the subtree rooted here (Section 7.8);
	// nil means it must be recomputed. Changing a node clears the hash of
	// the node and of every ancestor. A hash may be filled in a chunk
	// shared with other trees: a node shared by two trees has the same
	// subtree in both (changing a descendant writes the node).
	hash []byte
	// members counts the non-blank leaves of the subtree rooted here.
	members uint32
	// cleared is the write token of the tree that last cleared hash
	// (invalidate); see there.
	cleared uint64
}

func (n *treeNode) blank() bool { return n.leaf == nil && n.parent == nil }

// encryptionKey returns the HPKE public key of a non-blank node.
func (n *treeNode) encryptionKey() []byte {
	if n.leaf != nil {
		return n.leaf.EncryptionKey
	}
	if n.parent != nil {
		return n.parent.EncryptionKey
	}
	return nil
}

// chunkBits sets the height of the subtrees that chunks hold: the levels
// of the tree are cut into bands of chunkBits levels, and a chunk holds the
// nodes of one band below one node of the band's top level, a complete
// subtree of chunkSize-1 nodes.
const (
	chunkBits = 6
	chunkSize = 1 << chunkBits
)

// chunkOf returns where node x is stored: its band (its level divided by
// chunkBits), its chunk in the band and its slot in the chunk. In a band b,
// y = x >> (b*chunkBits) is x's index in the tree with the b*chunkBits lowest
// levels removed, where x has one of the levels 0 to chunkBits-1 (Appendix
// C indices: removing the low bits, all ones above level 0, maps a node to
// its ancestor chain's index in the smaller tree); the chunkBits low bits
// of y are the slot and the rest the chunk, as for the nodes of band 0.
func chunkOf(x nodeIndex) (band, chunk, slot int) {
	band = bits.TrailingZeros32(^uint32(x)) / chunkBits
	y := uint32(x) >> (band * chunkBits)
	return band, int(y >> chunkBits), int(y & (chunkSize - 1))
}

// nodeChunk holds the nodes of one subtree (chunkOf); its last slot is
// unused. A tree writes a chunk in place only when the chunk carries the
// tree's write token; otherwise it copies the chunk first.
type nodeChunk struct {
	token uint64
	n     [chunkSize]treeNode
}

// writeTokens hands out write tokens; 0 is never one.
var writeTokens atomic.Uint64

// credCount counts, for one credential type, the leaves whose credential
// has the type (use) and the leaves that list it in their capabilities
// (support), for the checks of RFC 9420, Section 7.3.
type credCount struct {
	typ          CredentialType
	use, support int
}

// ratchetTree is the public state of a group's ratchet tree (RFC 9420,
// Section 7). The number of leaves is always zero or a power of two
// (Section 7.7). The zero value is unusable; use newRatchetTree or
// parseRatchetTree.
type ratchetTree struct {
	suite CipherSuite
	cs    *cipherSuite
	// size is the number of nodes; bands[b] holds the chunks of band b
	// (chunkOf), with the nodes and possibly stale nodes past size, which
	// extend clears.
	size  int
	bands [][]*nodeChunk
	token uint64
	// sigKeys and encKeys map the signature and encryption keys of the
	// leaves (keyHash) to their leaf; creds counts credential types
	// (hash: the type); usedTypes is the number of types with use > 0.
	sigKeys, encKeys pmap[leafIndex]
	creds            pmap[credCount]
	usedTypes        int
}

// newRatchetTree returns an empty tree for suite.
func newRatchetTree(suite CipherSuite) (*ratchetTree, error) {
	cs, err := suite.suite()
	if err != nil {
		return nil, err
	}
	return &ratchetTree{suite: suite, cs: cs, token: writeTokens.Add(1)}, nil
}

// clone returns a copy of t that can be changed without affecting t. Nodes
// and chunks are shared until one of the trees changes them: both trees get
// new write tokens, so each copies a shared chunk before writing it.
func (t *ratchetTree) clone() *ratchetTree {
	c := *t
	c.bands = make([][]*nodeChunk, len(t.bands))
	for b, chunks := range t.bands {
		c.bands[b] = slices.Clone(chunks)
	}
	t.token = writeTokens.Add(1)
	c.token = writeTokens.Add(1)
	return &c
}

// nodeCount returns the number of nodes, blank ones included.
func (t *ratchetTree) nodeCount() int { return t.size }

// at returns node x for reading; x must be inside the tree. The node must
// not be modified, except for filling its cached hash.
func (t *ratchetTree) at(x nodeIndex) *treeNode {
	b, c, i := chunkOf(x)
	return &t.bands[b][c].n[i]
}

// mut returns node x for writing, copying its chunk first when it is
// shared.
func (t *ratchetTree) mut(x nodeIndex) *treeNode {
	b, i, slot := chunkOf(x)
	c := t.bands[b][i]
	if c.token != t.token {
		cp := *c
		cp.token = t.token
		c = &cp
		t.bands[b][i] = c
	}
	return &c.n[slot]
}

// numLeaves returns the number of leaf slots, blank ones included.
func (t *ratchetTree) numLeaves() numLeaves {
	return numLeaves((t.size + 1) / 2)
}

// root returns the root node index. The tree must not be empty.
func (t *ratchetTree) root() nodeIndex {
	r, ok := t.numLeaves().root()
	if !ok {
		panic("mls: internal error: root of an empty ratchet tree")
	}
	return r
}

// leaf returns the leaf node at l, or nil when l is blank or outside the
// tree.
func (t *ratchetTree) leaf(l leafIndex) *LeafNode {
	x := l.node()
	if uint64(x) >= uint64(t.size) {
		return nil
	}
	return t.at(x).leaf
}

// parentNode returns the parent node at x, or nil when it is blank, a leaf
// slot or outside the tree.
func (t *ratchetTree) parentNode(x nodeIndex) *ParentNode {
	if uint64(x) >= uint64(t.size) {
		return nil
	}
	return t.at(x).parent
}

// isBlank reports whether node x is blank. Nodes outside the tree are blank.
func (t *ratchetTree) isBlank(x nodeIndex) bool {
	if uint64(x) >= uint64(t.size) {
		return true
	}
	return t.at(x).blank()
}

// invalidate clears the cached tree hash of x and its ancestors and adds
// delta to their member counts.
//
// Without a count to change, the walk stops at a node that this tree
// cleared under its current write token and whose hash is still unset:
// that walk went up to the root, leaving every ancestor in a chunk of this
// tree with its hash unset, and none of them can have been hashed since
// (a hash is computed only after the hashes of all its descendants). So a
// commit that rewrites the direct path node by node (blanking it, then
// setting each node and its parent hash) clears the path once, not once per
// node.
func (t *ratchetTree) invalidate(x nodeIndex, delta int) {
	n := t.numLeaves()
	for {
		if c := t.at(x); delta == 0 && c.hash == nil && c.cleared == t.token {
			return
		}
		m := t.mut(x)
		m.hash = nil
		m.cleared = t.token
		m.members = uint32(int(m.members) + delta)
		p, ok := x.parent(n)
		if !ok {
			return
		}
		x = p
	}
}

// setLeaf replaces leaf l (nil blanks it), keeping the indexes. l must be
// inside the tree.
func (t *ratchetTree) setLeaf(l leafIndex, leaf *LeafNode) {
	x := l.node()
	old := t.at(x).leaf
	delta := 0
	if old == nil && leaf != nil {
		delta = 1
	} else if old != nil && leaf == nil {
		delta = -1
	}
	if old != nil {
		t.unindexLeaf(l, old)
	}
	t.mut(x).leaf = leaf
	t.invalidate(x, delta)
	if leaf != nil {
		t.indexLeaf(l, leaf)
	}
}

// setParent replaces parent node x (nil blanks it). x must be a parent
// node inside the tree.
func (t *ratchetTree) setParent(x nodeIndex, p *ParentNode) {
	t.mut(x).parent = p
	t.invalidate(x, 0)
}

// blankDirectPath blanks every parent node on the direct path of leaf l
// (Sections 7.5, 12.1.2 and 12.1.3).
func (t *ratchetTree) blankDirectPath(l leafIndex) {
	path, _ := l.node().directPath(t.numLeaves())
	for _, p := range path {
		if t.at(p).parent != nil {
			t.setParent(p, nil)
		}
	}
}

// memberCount returns the number of non-blank leaves.
func (t *ratchetTree) memberCount() int {
	if t.size == 0 {
		return 0
	}
	return int(t.at(t.root()).members)
}

// grow makes room for size nodes, with every node from the current size on
// blank (chunks may hold stale nodes past the size after a truncation).
func (t *ratchetTree) grow(size int) {
	// The highest level with a node below size is that of node 2^k-1 < size,
	// and in each band the last node below size has the largest index in
	// the smaller tree.
	bands := (bits.Len(uint(size))-1)/chunkBits + 1
	for b := range bands {
		if b == len(t.bands) {
			t.bands = append(t.bands, nil)
		}
		need := (size-1)>>(b*chunkBits)>>chunkBits + 1
		for len(t.bands[b]) < need {
			t.bands[b] = append(t.bands[b], &nodeChunk{token: t.token})
		}
	}
	for x := t.size; x < size; x++ {
		if n := t.at(nodeIndex(x)); !n.blank() || n.hash != nil || n.members != 0 {
			*t.mut(nodeIndex(x)) = treeNode{}
		}
	}
	t.size = size
}

// extend doubles the tree: the old tree becomes the left subtree of a new
// blank root whose right subtree is blank (Section 7.7). An empty tree
// becomes a single blank leaf.
func (t *ratchetTree) extend() error {
	n := t.numLeaves()
	if n == 0 {
		t.grow(1)
		return nil
	}
	if uint64(n)*2 > maxTreeLeaves {
		return errors.New("mls: ratchet tree is full")
	}
	// The array representation keeps every existing index: the new root
	// and the new right subtree are appended.
	oldRoot := t.root()
	t.grow(t.size + int(n.width()) + 1)
	t.mut(t.root()).members = t.at(oldRoot).members
	return nil
}

// addLeaf puts leaf in the leftmost blank leaf slot, extending the tree
// when there is none, adds the new index to the unmerged leaves of every
// non-blank parent on its direct path, and returns the index (Section 7.7,
// Section 12.1.1). The member counts lead to the slot in O(log N).
func (t *ratchetTree) addLeaf(leaf *LeafNode) (leafIndex, error) {
	if leaf == nil {
		return 0, errors.New("mls: cannot add a blank leaf")
	}
	var l leafIndex
	if n := t.numLeaves(); n == 0 || t.memberCount() == int(n) {
		l = leafIndex(n)
		if err := t.extend(); err != nil {
			return 0, err
		}
	} else {
		x := t.root()
		for !x.isLeaf() {
			left, _ := x.left()
			right, _ := x.right()
			first, last := leafRange(left)
			if int(t.at(left).members) < int(last-first)+1 {
				x = left
			} else {
				x = right
			}
		}
		l, _ = x.leaf()
	}
	path, _ := l.node().directPath(t.numLeaves())
	for _, p := range path {
		if old := t.at(p).parent; old != nil {
			np := *old
			np.UnmergedLeaves = append(slices.Clip(old.UnmergedLeaves), l)
			t.setParent(p, &np)
		}
	}
	t.setLeaf(l, leaf)
	return l, nil
}

// updateLeaf replaces the leaf of a member and blanks its direct path, as
// an Update proposal does (Section 12.1.2).
func (t *ratchetTree) updateLeaf(l leafIndex, leaf *LeafNode) error {
	if t.leaf(l) == nil {
		return fmt.Errorf("mls: update of blank leaf %d", l)
	}
	if leaf == nil {
		return errors.New("mls: cannot update to a blank leaf")
	}
	t.setLeaf(l, leaf)
	t.blankDirectPath(l)
	return nil
}

// removeLeaf blanks leaf l and its direct path, then truncates the tree
// (Section 12.1.3, Section 7.7).
func (t *ratchetTree) removeLeaf(l leafIndex) error {
	if t.leaf(l) == nil {
		return fmt.Errorf("mls: remove of blank leaf %d", l)
	}
	t.setLeaf(l, nil)
	t.blankDirectPath(l)
	t.truncate()
	return nil
}

// truncate removes the right half of the tree while it holds no non-blank
// leaf, so that the rightmost non-blank leaf is in the right half of the
// root (Section 7.7).
func (t *ratchetTree) truncate() {
	for {
		n := t.numLeaves()
		if n <= 1 {
			return
		}
		right, _ := t.root().right()
		if t.at(right).members != 0 {
			return
		}
		// The left subtree keeps its indices and its cached hashes; the
		// nodes past the new size stay in the chunks until grow clears
		// them.
		t.size = int(n) - 1
	}
}

// indexLeaf adds leaf, at l, to the key and credential indexes.
func (t *ratchetTree) indexLeaf(l leafIndex, leaf *LeafNode) {
	t.sigKeys = t.sigKeys.with(keyHash(leaf.SignatureKey), l)
	if len(leaf.EncryptionKey) > 0 {
		t.encKeys = t.encKeys.with(keyHash(leaf.EncryptionKey), l)
	}
	t.addCredCount(leaf.Credential.Type, 1, 0)
	for _, c := range distinctTypes(leaf.Capabilities.Credentials) {
		t.addCredCount(c, 0, 1)
	}
}

// unindexLeaf removes leaf, at l, from the indexes.
func (t *ratchetTree) unindexLeaf(l leafIndex, leaf *LeafNode) {
	isL := func(v leafIndex) bool { return v == l }
	t.sigKeys, _ = t.sigKeys.without(keyHash(leaf.SignatureKey), isL)
	if len(leaf.EncryptionKey) > 0 {
		t.encKeys, _ = t.encKeys.without(keyHash(leaf.EncryptionKey), isL)
	}
	t.addCredCount(leaf.Credential.Type, -1, 0)
	for _, c := range distinctTypes(leaf.Capabilities.Credentials) {
		t.addCredCount(c, 0, -1)
	}
}

// credCountOf returns the counts of credential type c.
func (t *ratchetTree) credCountOf(c CredentialType) credCount {
	cc, _ := t.creds.get(uint64(c), func(v credCount) bool { return v.typ == c })
	cc.typ = c
	return cc
}

// addCredCount adds to the counts of credential type c.
func (t *ratchetTree) addCredCount(c CredentialType, use, support int) {
	is := func(v credCount) bool { return v.typ == c }
	old, _ := t.creds.get(uint64(c), is)
	t.creds, _ = t.creds.without(uint64(c), is)
	nc := credCount{typ: c, use: old.use + use, support: old.support + support}
	if old.use == 0 && nc.use > 0 {
		t.usedTypes++
	} else if old.use > 0 && nc.use == 0 {
		t.usedTypes--
	}
	if nc.use != 0 || nc.support != 0 {
		t.creds = t.creds.with(uint64(c), nc)
	}
}

// distinctTypes returns the credential types of cs without repetitions.
func distinctTypes(cs []CredentialType) []CredentialType {
	if len(cs) <= 8 {
		for i := range cs {
			if slices.Contains(cs[:i], cs[i]) {
				return slices.Compact(slices.Sorted(slices.Values(cs)))
			}
		}
		return cs
	}
	return slices.Compact(slices.Sorted(slices.Values(cs)))
}

// leafWithSignatureKey returns the leaf whose signature key is key.
func (t *ratchetTree) leafWithSignatureKey(key []byte) (leafIndex, bool) {
	return t.sigKeys.get(keyHash(key), func(l leafIndex) bool {
		leaf := t.leaf(l)
		return leaf != nil && bytes.Equal(leaf.SignatureKey, key)
	})
}

// leafWithEncryptionKey returns the leaf whose encryption key is key.
func (t *ratchetTree) leafWithEncryptionKey(key []byte) (leafIndex, bool) {
	return t.encKeys.get(keyHash(key), func(l leafIndex) bool {
		leaf := t.leaf(l)
		return leaf != nil && bytes.Equal(leaf.EncryptionKey, key)
	})
}

// resolution appends the resolution of x (Section 4.1.1) to out: a
// non-blank node and its unmerged leaves, nothing for a blank leaf, and the
// resolutions of both children for a blank parent.
func (t *ratchetTree) resolution(out []nodeIndex, x nodeIndex) []nodeIndex {
	n := t.at(x)
	switch {
	case n.leaf != nil:
		return append(out, x)
	case n.parent != nil:
		out = append(out, x)
		for _, l := range n.parent.UnmergedLeaves {
			out = append(out, l.node())
		}
		return out
	case x.isLeaf():
		return out
	}
	left, _ := x.left()
	right, _ := x.right()
	out = t.resolution(out, left)
	return t.resolution(out, right)
}

// hasNonBlank reports whether the resolution of x is non-empty, that is
// whether the subtree under x has a non-blank node.
func (t *ratchetTree) hasNonBlank(x nodeIndex) bool {
	if !t.at(x).blank() {
		return true
	}
	if x.isLeaf() {
		return false
	}
	left, _ := x.left()
	right, _ := x.right()
	return t.hasNonBlank(left) || t.hasNonBlank(right)
}

// filteredDirectPath returns the filtered direct path of leaf l and, for
// each of its nodes, the child of that node on l's copath (Section 4.1.2):
// the direct path without the nodes whose copath child has an empty
// resolution.
func (t *ratchetTree) filteredDirectPath(l leafIndex) (path, copath []nodeIndex) {
	n := t.numLeaves()
	x := l.node()
	for {
		p, ok := x.parent(n)
		if !ok {
			return path, copath
		}
		s, _ := x.sibling(n)
		if t.hasNonBlank(s) {
			path = append(path, p)
			copath = append(copath, s)
		}
		x = p
	}
}

// leafIndexOf returns the index of the first leaf for which match is true.
func (t *ratchetTree) leafIndexOf(match func(*LeafNode) bool) (leafIndex, bool) {
	for x := 0; x < t.size; x += 2 {
		if l := t.at(nodeIndex(x)).leaf; l != nil && match(l) {
			return leafIndex(x / 2), true
		}
	}
	return 0, false
}

// export returns the tree in the array form of the ratchet_tree extension
// (Section 12.4.3.3), without the blank nodes after the last non-blank one.
// The nodes are shared with t and must not be modified.
func (t *ratchetTree) export() RatchetTree {
	last := t.size - 1
	for last >= 0 && t.at(nodeIndex(last)).blank() {
		last--
	}
	out := make(RatchetTree, last+1)
	for i := range out {
		n := t.at(nodeIndex(i))
		switch {
		case n.leaf != nil:
			out[i] = &Node{Type: NodeTypeLeaf, LeafNode: n.leaf}
		case n.parent != nil:
			out[i] = &Node{Type: NodeTypeParent, ParentNode: n.parent}
		}
	}
	return out
}

// Marshal returns the ratchet_tree extension data for t.
func (t *ratchetTree) Marshal() ([]byte, error) { return t.export().Marshal() }

// parseRatchetTree decodes the body of a ratchet_tree extension
// (Section 12.4.3.3) for suite and imports it with importRatchetTree.
func parseRatchetTree(suite CipherSuite, data []byte) (*ratchetTree, error) {
	rt, err := UnmarshalRatchetTree(data)
	if err != nil {
		return nil, fmt.Errorf("mls: ratchet tree: %w", err)
	}
	return importRatchetTree(suite, rt)
}

// importRatchetTree builds a tree from the array form of the ratchet_tree
// extension (Section 12.4.3.3). It checks the structure only: the last node
// is non-blank, leaves sit at even and parents at odd indices, and unmerged
// leaves name non-blank leaves below their node. The caller validates the
// leaves (validateTree) and the parent hashes (verifyParentHashes) and
// compares the tree hash with the GroupContext. The nodes of rt are shared
// with the result and must not be modified afterwards.
func importRatchetTree(suite CipherSuite, rt RatchetTree) (*ratchetTree, error) {
	t, err := newRatchetTree(suite)
	if err != nil {
		return nil, err
	}
	if len(rt) == 0 || rt[len(rt)-1] == nil {
		return nil, errors.New("mls: ratchet tree is empty or ends in a blank node")
	}
	if uint64(len(rt)) > 2*maxTreeLeaves-1 {
		return nil, fmt.Errorf("mls: ratchet tree of %d nodes is too large", len(rt))
	}
	// Pad with blank nodes to a full tree of 2^d leaves.
	leaves := uint64(1)
	for 2*leaves-1 < uint64(len(rt)) {
		leaves *= 2
	}
	t.grow(int(2*leaves - 1))
	for i, n := range rt {
		if n == nil {
			continue
		}
		x := nodeIndex(i)
		switch {
		case n.Type == NodeTypeLeaf && n.LeafNode != nil && x.isLeaf():
			t.at(x).leaf = n.LeafNode
		case n.Type == NodeTypeParent && n.ParentNode != nil && !x.isLeaf():
			t.at(x).parent = n.ParentNode
		default:
			return nil, fmt.Errorf("mls: ratchet tree has a node of type %d at node %d", n.Type, i)
		}
	}
	// Member counts bottom-up, level by level, and the indexes. The
	// credential counts are summed first and stored once per type.
	// The key indexes are built in one pass (pmapFrom).
	type counts struct{ use, support int }
	creds := map[CredentialType]counts{}
	var sigKeys, encKeys []pmapEntry[leafIndex]
	for x := 0; x < t.size; x += 2 {
		if leaf := t.at(nodeIndex(x)).leaf; leaf != nil {
			t.at(nodeIndex(x)).members = 1
			l := leafIndex(x / 2)
			sigKeys = append(sigKeys, pmapEntry[leafIndex]{keyHash(leaf.SignatureKey), l})
			if len(leaf.EncryptionKey) > 0 {
				encKeys = append(encKeys, pmapEntry[leafIndex]{keyHash(leaf.EncryptionKey), l})
			}
			c := creds[leaf.Credential.Type]
			c.use++
			creds[leaf.Credential.Type] = c
			for _, typ := range distinctTypes(leaf.Capabilities.Credentials) {
				c := creds[typ]
				c.support++
				creds[typ] = c
			}
		}
	}
	t.sigKeys, t.encKeys = pmapFrom(sigKeys), pmapFrom(encKeys)
	for _, typ := range slices.Sorted(maps.Keys(creds)) {
		t.addCredCount(typ, creds[typ].use, creds[typ].support)
	}
	for level := uint(1); uint64(1)<<level <= leaves; level++ {
		for x := nodeIndex(1)<<level - 1; uint64(x) < uint64(t.size); x += nodeIndex(2) << level {
			left, _ := x.left()
			right, _ := x.right()
			t.at(x).members = t.at(left).members + t.at(right).members
		}
	}
	if err := t.checkUnmergedLeaves(); err != nil {
		return nil, err
	}
	return t, nil
}

// checkUnmergedLeaves checks that every unmerged leaf of a parent node P is
// a non-blank leaf below P, named once, and also unmerged at every
// non-blank parent between it and P (Section 7.9.2 and Section 12.4.3.1,
// which require the unmerged leaves to be consistent with the tree).
//
// It runs in O(T log N) for T unmerged entries, so a hostile tree cannot
// make a joiner do quadratic work: checking the nearest non-blank node
// below P suffices, because that node's own entries are checked in turn.
func (t *ratchetTree) checkUnmergedLeaves() error {
	type entry struct {
		node nodeIndex
		leaf leafIndex
	}
	seen := make(map[entry]struct{})
	n := t.numLeaves()
	for x := 1; x < t.size; x += 2 {
		p := t.at(nodeIndex(x)).parent
		if p == nil {
			continue
		}
		for _, l := range p.UnmergedLeaves {
			if uint64(l) >= uint64(n) || t.at(l.node()).leaf == nil {
				return fmt.Errorf("mls: unmerged leaf %d of node %d is blank", l, x)
			}
			if !isDescendant(l.node(), nodeIndex(x)) {
				return fmt.Errorf("mls: unmerged leaf %d is not below node %d", l, x)
			}
			e := entry{nodeIndex(x), l}
			if _, dup := seen[e]; dup {
				return fmt.Errorf("mls: unmerged leaf %d of node %d is listed twice", l, x)
			}
			seen[e] = struct{}{}
		}
	}
	for e := range seen {
		// Walk down from P towards the leaf to the first non-blank parent.
		y := e.node
		for {
			var ok bool
			if e.leaf.node() < y {
				y, ok = y.left()
			} else {
				y, ok = y.right()
			}
			if !ok || y.isLeaf() {
				break
			}
			if t.at(y).parent != nil {
				if _, ok := seen[entry{y, e.leaf}]; !ok {
					return fmt.Errorf("mls: unmerged leaf %d of node %d is merged at node %d", e.leaf, e.node, y)
				}
				break
			}
		}
	}
	return nil
}

// leafRange returns the first and last leaf index under node x.
func leafRange(x nodeIndex) (first, last leafIndex) {
	span := uint64(1)<<x.level() - 1
	return leafIndex((uint64(x) - span) / 2), leafIndex((uint64(x) + span) / 2)
}

// isDescendant reports whether x is in the subtree rooted at a (a node is
// its own descendant).
func isDescendant(x, a nodeIndex) bool {
	k := a.level()
	// The subtree of a covers the indices a-(2^k-1) .. a+(2^k-1).
	span := uint64(1)<<k - 1
	return uint64(x)+span >= uint64(a) && uint64(x) <= uint64(a)+span
}
