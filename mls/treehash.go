package mls

// This file holds the tree hash of RFC 9420, Section 7.8, and the parent
// hash of Section 7.9 with its verification (Section 7.9.2).
//
// Tree hashes are cached per node (treeNode.hash) and cleared along the
// direct path of every changed node, so hashing a tree after a commit costs
// O(log N) hash computations, and checking every parent hash of a joined
// tree reuses the subtree hashes instead of recomputing them per parent.

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"

	"golang.org/x/crypto/cryptobyte"
)

// errParentHash is returned when a tree or an UpdatePath fails parent-hash
// verification (Section 7.9.2).
var errParentHash = errors.New("mls: invalid parent hash")

// treeHash returns the tree hash of the whole tree, the hash of the root
// (Section 7.8). An empty tree has no hash.
func (t *ratchetTree) treeHash() []byte {
	if t.size == 0 {
		return nil
	}
	return t.nodeHash(t.root())
}

// nodeHash returns the tree hash of the subtree rooted at x, computing and
// caching it when needed (Section 7.8).
func (t *ratchetTree) nodeHash(x nodeIndex) []byte {
	if h := t.at(x).hash; h != nil {
		return h
	}
	var h []byte
	if x.isLeaf() {
		h = t.leafHash(x, t.at(x).leaf)
	} else {
		left, _ := x.left()
		right, _ := x.right()
		h = t.parentHashInput(t.at(x).parent, t.nodeHash(left), t.nodeHash(right))
	}
	t.at(x).hash = h
	return h
}

// leafHash hashes a TreeHashInput for leaf slot x holding leaf (nil for a
// blank leaf):
//
//	struct {
//	    uint32 leaf_index;
//	    optional<LeafNode> leaf_node;
//	} LeafNodeHashInput;
func (t *ratchetTree) leafHash(x nodeIndex, leaf *LeafNode) []byte {
	buf := getScratch()
	b := cryptobyte.NewBuilder(*buf)
	b.AddUint8(uint8(NodeTypeLeaf))
	b.AddUint32(uint32(x / 2))
	writeOptional(b, leaf != nil)
	if leaf != nil {
		leaf.marshal(b)
	}
	in := mustBytes(b)
	h := t.cs.hashOf(in)
	putScratch(buf, in)
	return h
}

// parentHashInput hashes a TreeHashInput for a parent node p (nil for a
// blank one) with the given child hashes:
//
//	struct {
//	    optional<ParentNode> parent_node;
//	    opaque left_hash<V>;
//	    opaque right_hash<V>;
//	} ParentNodeHashInput;
func (t *ratchetTree) parentHashInput(p *ParentNode, left, right []byte) []byte {
	buf := getScratch()
	b := cryptobyte.NewBuilder(*buf)
	b.AddUint8(uint8(NodeTypeParent))
	writeOptional(b, p != nil)
	if p != nil {
		p.marshal(b)
	}
	writeOpaque(b, left)
	writeOpaque(b, right)
	in := mustBytes(b)
	h := t.cs.hashOf(in)
	putScratch(buf, in)
	return h
}

// mustBytes returns the bytes of a builder whose content is known to be
// encodable: every value written comes from a decoded or locally built
// struct whose vectors fit the variable-length header.
func mustBytes(b *cryptobyte.Builder) []byte {
	out, err := b.Bytes()
	if err != nil {
		panic("mls: internal error: encoding a tree node: " + err.Error())
	}
	return out
}

// hashExcluding returns the tree hash of the subtree at x in the tree
// modified as Section 7.9 describes for the original sibling tree hash:
// every leaf in excluded (sorted, no duplicates) is blanked and removed from
// the unmerged leaves of every parent node. Subtrees that hold no excluded
// leaf use the cache, so the cost is O(|excluded| log N) hashes.
func (t *ratchetTree) hashExcluding(x nodeIndex, excluded []leafIndex) []byte {
	first, last := leafRange(x)
	i, _ := slices.BinarySearch(excluded, first)
	if i == len(excluded) || excluded[i] > last {
		return t.nodeHash(x)
	}
	if x.isLeaf() {
		return t.leafHash(x, nil)
	}
	left, _ := x.left()
	right, _ := x.right()
	p := t.at(x).parent
	if p != nil {
		np := *p
		np.UnmergedLeaves = nil
		for _, l := range p.UnmergedLeaves {
			if _, found := slices.BinarySearch(excluded, l); !found {
				np.UnmergedLeaves = append(np.UnmergedLeaves, l)
			}
		}
		p = &np
	}
	return t.parentHashInput(p, t.hashExcluding(left, excluded), t.hashExcluding(right, excluded))
}

// sortedLeaves returns a sorted copy of ls without duplicates.
func sortedLeaves(ls []leafIndex) []leafIndex {
	if len(ls) == 0 {
		return nil
	}
	return slices.Compact(slices.Sorted(slices.Values(ls)))
}

// parentHash returns the parent hash of parent node p with copath child s
// (Section 7.9):
//
//	struct {
//	    HPKEPublicKey encryption_key;
//	    opaque parent_hash<V>;
//	    opaque original_sibling_tree_hash<V>;
//	} ParentHashInput;
//
// where original_sibling_tree_hash is the tree hash of s with p's unmerged
// leaves removed.
func (t *ratchetTree) parentHash(p, s nodeIndex) []byte {
	pn := t.at(p).parent
	sibling := t.hashExcluding(s, sortedLeaves(pn.UnmergedLeaves))
	buf := getScratch()
	b := cryptobyte.NewBuilder(*buf)
	writeOpaque(b, pn.EncryptionKey)
	writeOpaque(b, pn.ParentHash)
	writeOpaque(b, sibling)
	in := mustBytes(b)
	h := t.cs.hashOf(in)
	putScratch(buf, in)
	return h
}

// setPathParentHashes fills in the parent_hash fields along a freshly set
// filtered direct path (Section 7.9): the root-most node gets an empty
// parent hash and each lower node the parent hash of the node above it
// with that node's copath child. path and copath are as returned by
// filteredDirectPath, and every node of path must be non-blank with no
// unmerged leaves. It returns the parent hash for the leaf.
func (t *ratchetTree) setPathParentHashes(path, copath []nodeIndex) []byte {
	var ph []byte
	for i := len(path) - 1; i >= 0; i-- {
		np := *t.at(path[i]).parent
		np.ParentHash = ph
		t.setParent(path[i], &np)
		ph = t.parentHash(path[i], copath[i])
	}
	return ph
}

// nodeParentHash returns the parent_hash field of a non-blank node, nil for
// leaves whose source is not commit.
func (t *ratchetTree) nodeParentHash(x nodeIndex) []byte {
	n := t.at(x)
	if n.leaf != nil {
		if n.leaf.Source != LeafNodeSourceCommit {
			return nil
		}
		return n.leaf.ParentHash
	}
	if n.parent != nil {
		return n.parent.ParentHash
	}
	return nil
}

// verifyParentHashes checks that every non-blank parent node is parent-hash
// valid (Section 7.9.2), as a new member must when joining: for exactly
// one child C of P, with S the other child, the resolution of C minus P's
// unmerged leaves below C is a single node D whose parent_hash is the
// parent hash of P with copath child S.
//
// Every link points strictly downwards, so the links form chains that end
// at leaves, and each parent node is covered by exactly one chain.
func (t *ratchetTree) verifyParentHashes() error {
	var res []nodeIndex
	for x := nodeIndex(1); uint64(x) < uint64(t.size); x += 2 {
		p := t.at(x).parent
		if p == nil {
			continue
		}
		left, _ := x.left()
		right, _ := x.right()
		unmerged := sortedLeaves(p.UnmergedLeaves)
		valid := 0
		for _, c := range [2][2]nodeIndex{{left, right}, {right, left}} {
			res = t.resolution(res[:0], c[0])
			d, ok := chainLink(res, unmerged)
			if !ok {
				continue
			}
			ph := t.nodeParentHash(d)
			if ph != nil && subtle.ConstantTimeCompare(ph, t.parentHash(x, c[1])) == 1 {
				valid++
			}
		}
		if valid != 1 {
			return fmt.Errorf("%w at node %d", errParentHash, x)
		}
	}
	return nil
}

// chainLink returns the single node of res that is not an unmerged leaf
// (unmerged is sorted), and ok == false when there is not exactly one. Every unmerged leaf of P
// below C is in the resolution of C (checkUnmergedLeaves), so res minus D
// equals those unmerged leaves exactly when D is the only other node.
func chainLink(res []nodeIndex, unmerged []leafIndex) (nodeIndex, bool) {
	var d nodeIndex
	found := false
	for _, x := range res {
		if l, isLeaf := x.leaf(); isLeaf {
			if _, found := slices.BinarySearch(unmerged, l); found {
				continue
			}
		}
		if found {
			return 0, false
		}
		d, found = x, true
	}
	return d, found
}
