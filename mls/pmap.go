package mls

// This file holds pmap, the persistent hash map the ratchet tree keeps its
// indexes in (signature and encryption keys to leaves, credential type
// counts). A tree is cloned for every commit; a persistent map is cloned
// by copying its root pointer, and each change copies only the O(log N)
// nodes on the way to the changed entry, so that a commit costs
// O(log N + proposals), not O(N).

import "hash/maphash"

// pmapFanout is the number of children of an inner node (4 bits of the
// hash per level) and pmapBucket the number of entries a bucket holds
// before it splits.
const (
	pmapBits   = 4
	pmapFanout = 1 << pmapBits
	pmapBucket = 8
	pmapDepth  = 64 / pmapBits
)

// pmap is a persistent multimap from 64-bit hashes to values. Entries with
// equal hashes are told apart by the callers' match functions. The zero
// value is an empty map. Nodes are never modified once built.
type pmap[V any] struct {
	root *pmapNode[V]
	n    int
}

// pmapNode is an inner node (kids non-nil) or a bucket of entries.
type pmapNode[V any] struct {
	kids *[pmapFanout]*pmapNode[V]
	ents []pmapEntry[V]
}

type pmapEntry[V any] struct {
	h uint64
	v V
}

func pmapSlot(h uint64, depth int) int { return int(h>>(pmapBits*depth)) & (pmapFanout - 1) }

// len returns the number of entries.
func (m pmap[V]) len() int { return m.n }

// get returns the first value stored under h for which match is true.
func (m pmap[V]) get(h uint64, match func(V) bool) (V, bool) {
	n := m.root
	for depth := 0; n != nil && n.kids != nil; depth++ {
		n = n.kids[pmapSlot(h, depth)]
	}
	if n != nil {
		for _, e := range n.ents {
			if e.h == h && match(e.v) {
				return e.v, true
			}
		}
	}
	var zero V
	return zero, false
}

// pmapFrom returns a map holding ents, built in one pass: the same map as
// adding them one by one with with, in order, without copying the path to
// each new entry.
func pmapFrom[V any](ents []pmapEntry[V]) pmap[V] {
	return pmap[V]{root: pmapBuild(ents, 0), n: len(ents)}
}

// pmapBuild returns the node at depth holding ents: a bucket, as
// pmapInsert keeps one, while they fit, else an inner node whose children
// hold the entries by their hash slot, in their order.
func pmapBuild[V any](ents []pmapEntry[V], depth int) *pmapNode[V] {
	if len(ents) == 0 {
		return nil
	}
	if len(ents) <= pmapBucket || depth >= pmapDepth {
		return &pmapNode[V]{ents: append([]pmapEntry[V](nil), ents...)}
	}
	// A stable counting sort by slot.
	var start [pmapFanout + 1]int
	for _, e := range ents {
		start[pmapSlot(e.h, depth)+1]++
	}
	for i := range pmapFanout {
		start[i+1] += start[i]
	}
	sorted := make([]pmapEntry[V], len(ents))
	next := start
	for _, e := range ents {
		i := pmapSlot(e.h, depth)
		sorted[next[i]] = e
		next[i]++
	}
	var kids [pmapFanout]*pmapNode[V]
	for i := range kids {
		kids[i] = pmapBuild(sorted[start[i]:start[i+1]], depth+1)
	}
	return &pmapNode[V]{kids: &kids}
}

// with returns m with v added under h.
func (m pmap[V]) with(h uint64, v V) pmap[V] {
	return pmap[V]{root: pmapInsert(m.root, 0, pmapEntry[V]{h, v}), n: m.n + 1}
}

func pmapInsert[V any](n *pmapNode[V], depth int, e pmapEntry[V]) *pmapNode[V] {
	if n == nil {
		return &pmapNode[V]{ents: []pmapEntry[V]{e}}
	}
	if n.kids != nil {
		kids := *n.kids
		i := pmapSlot(e.h, depth)
		kids[i] = pmapInsert(kids[i], depth+1, e)
		return &pmapNode[V]{kids: &kids}
	}
	if len(n.ents) < pmapBucket || depth >= pmapDepth {
		ents := make([]pmapEntry[V], len(n.ents), len(n.ents)+1)
		copy(ents, n.ents)
		return &pmapNode[V]{ents: append(ents, e)}
	}
	// Split the full bucket into an inner node.
	var kids [pmapFanout]*pmapNode[V]
	inner := &pmapNode[V]{kids: &kids}
	for _, old := range n.ents {
		i := pmapSlot(old.h, depth)
		kids[i] = pmapInsert(kids[i], depth+1, old)
	}
	i := pmapSlot(e.h, depth)
	kids[i] = pmapInsert(kids[i], depth+1, e)
	return inner
}

// without returns m without the first entry under h for which match is
// true, and whether there was one.
func (m pmap[V]) without(h uint64, match func(V) bool) (pmap[V], bool) {
	root, ok := pmapDelete(m.root, 0, h, match)
	if !ok {
		return m, false
	}
	return pmap[V]{root: root, n: m.n - 1}, true
}

func pmapDelete[V any](n *pmapNode[V], depth int, h uint64, match func(V) bool) (*pmapNode[V], bool) {
	if n == nil {
		return nil, false
	}
	if n.kids != nil {
		i := pmapSlot(h, depth)
		k, ok := pmapDelete(n.kids[i], depth+1, h, match)
		if !ok {
			return n, false
		}
		kids := *n.kids
		kids[i] = k
		return &pmapNode[V]{kids: &kids}, true
	}
	for j, e := range n.ents {
		if e.h == h && match(e.v) {
			if len(n.ents) == 1 {
				return nil, true
			}
			ents := make([]pmapEntry[V], 0, len(n.ents)-1)
			ents = append(ents, n.ents[:j]...)
			return &pmapNode[V]{ents: append(ents, n.ents[j+1:]...)}, true
		}
	}
	return n, false
}

// pmapSeed keys the hashes of the key indexes. It is random per process,
// so that a member cannot choose keys that fall in one bucket.
var pmapSeed = maphash.MakeSeed()

func keyHash(key []byte) uint64 { return maphash.Bytes(pmapSeed, key) }
