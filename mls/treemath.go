package mls

// Tree math for the left-balanced binary tree of RFC 9420, Section 4.2 and
// Appendix C. Nodes are numbered in array order: leaves at even indices,
// parents at odd ones, and the level of a node is the number of trailing
// one bits of its index. With 8 leaves:
//
//	                                    X
//	                    X                               X
//	            X               X               X               X
//	        X       X       X       X       X       X       X       X
//	node:   0   1   2   3   4   5   6   7   8   9  10  11  12  13  14
//	level:  0   1   0   2   0   1   0   3   0   1   0   2   0   1   0
//	leaf:   0       1       2       3       4       5       6       7
//
// RFC 9420 trees always have a power-of-two number of leaves (Section 7.7),
// so every function here assumes a full tree. Functions that have no answer
// for some input (the parent of the root, the child of a leaf, an index
// outside the tree) return ok == false instead of panicking.

// leafIndex numbers the leaves of the tree from the left, starting at 0.
type leafIndex uint32

// nodeIndex numbers all nodes of the tree in array order.
type nodeIndex uint32

// numLeaves is the number of leaves of a tree, a power of two.
type numLeaves uint32

// node returns the node index of leaf l.
func (l leafIndex) node() nodeIndex { return nodeIndex(2 * l) }

// leaf returns the leaf index of x, or ok == false when x is a parent node.
func (x nodeIndex) leaf() (leafIndex, bool) {
	if x%2 != 0 {
		return 0, false
	}
	return leafIndex(x / 2), true
}

// isLeaf reports whether x is a leaf node.
func (x nodeIndex) isLeaf() bool { return x%2 == 0 }

// level returns the level of x: 0 for leaves, the number of trailing one
// bits otherwise (Appendix C, level).
func (x nodeIndex) level() uint {
	k := uint(0)
	for (x>>k)&1 == 1 {
		k++
	}
	return k
}

// log2 returns floor(log2(x)), and 0 for x == 0 (Appendix C, log2).
func log2(x uint64) uint {
	k := uint(0)
	for x>>(k+1) > 0 {
		k++
	}
	return k
}

// width returns the number of nodes of a tree with n leaves (Appendix C,
// node_width).
func (n numLeaves) width() uint64 {
	if n == 0 {
		return 0
	}
	return 2*(uint64(n)-1) + 1
}

// root returns the root of a tree with n leaves (Appendix C, root). A tree
// with no leaves has no root.
func (n numLeaves) root() (nodeIndex, bool) {
	w := n.width()
	if w == 0 {
		return 0, false
	}
	return nodeIndex(uint64(1)<<log2(w) - 1), true
}

// contains reports whether x is a node of a tree with n leaves.
func (n numLeaves) contains(x nodeIndex) bool { return uint64(x) < n.width() }

// left returns the left child of x (Appendix C, left).
func (x nodeIndex) left() (nodeIndex, bool) {
	k := x.level()
	if k == 0 {
		return 0, false
	}
	return x ^ (1 << (k - 1)), true
}

// right returns the right child of x (Appendix C, right).
func (x nodeIndex) right() (nodeIndex, bool) {
	k := x.level()
	if k == 0 {
		return 0, false
	}
	return x ^ (3 << (k - 1)), true
}

// parent returns the parent of x in a tree with n leaves (Appendix C,
// parent). The root and nodes outside the tree have no parent.
func (x nodeIndex) parent(n numLeaves) (nodeIndex, bool) {
	r, ok := n.root()
	if !ok || x == r || !n.contains(x) {
		return 0, false
	}
	k := x.level()
	b := (uint64(x) >> (k + 1)) & 1
	p := (uint64(x) | 1<<k) ^ (b << (k + 1))
	// In a full tree the parent of a node is always inside it; the check
	// keeps a caller passing a non-power-of-two n from leaving the tree.
	if p >= n.width() {
		return 0, false
	}
	return nodeIndex(p), true
}

// sibling returns the other child of x's parent (Appendix C, sibling).
func (x nodeIndex) sibling(n numLeaves) (nodeIndex, bool) {
	p, ok := x.parent(n)
	if !ok {
		return 0, false
	}
	if x < p {
		return p.right()
	}
	return p.left()
}

// directPath returns the parents of x from its parent up to and including
// the root (RFC 9420, Section 4.1; Appendix C, direct_path). It is empty for
// the root and nil with ok == false for nodes outside the tree.
func (x nodeIndex) directPath(n numLeaves) ([]nodeIndex, bool) {
	if !n.contains(x) {
		return nil, false
	}
	var path []nodeIndex
	for {
		p, ok := x.parent(n)
		if !ok {
			return path, true
		}
		path = append(path, p)
		x = p
	}
}

// copath returns the siblings of x and of each node of its direct path
// except the root (Appendix C, copath).
func (x nodeIndex) copath(n numLeaves) ([]nodeIndex, bool) {
	if !n.contains(x) {
		return nil, false
	}
	var path []nodeIndex
	for {
		s, ok := x.sibling(n)
		if !ok {
			return path, true
		}
		path = append(path, s)
		x, _ = x.parent(n)
	}
}

// commonAncestor returns the lowest node that has both x and y as
// descendants, counting a node as its own descendant (Appendix C,
// common_ancestor_semantic, computed directly from the indices).
func commonAncestor(x, y nodeIndex) nodeIndex {
	// Two nodes share an ancestor at level k when their indices agree
	// above bit k; that ancestor has the shared prefix, a 0 bit at k and
	// ones below.
	lx, ly := x.level()+1, y.level()+1
	if lx <= ly && x>>ly == y>>ly {
		return y
	}
	if ly <= lx && x>>lx == y>>lx {
		return x
	}
	xn, yn := uint64(x), uint64(y)
	k := uint(0)
	for xn != yn {
		xn >>= 1
		yn >>= 1
		k++
	}
	return nodeIndex((xn<<k)+(1<<(k-1))) - 1
}
