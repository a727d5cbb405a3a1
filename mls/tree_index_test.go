package mls

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"testing"
)

// indexTestLeaf is a leaf for index tests: keys named by numbers, a
// credential type and the types it supports. Signatures are not checked
// by the code under test.
func indexTestLeaf(sig, enc int, typ CredentialType, caps ...CredentialType) *LeafNode {
	return &LeafNode{
		SignatureKey:  fmt.Appendf(nil, "sig-%d", sig),
		EncryptionKey: fmt.Appendf(nil, "enc-%d", enc),
		Credential:    Credential{Type: typ, Identity: fmt.Appendf(nil, "id-%d", sig), Certificates: [][]byte{fmt.Appendf(nil, "cert-%d", sig)}},
		Capabilities:  Capabilities{Credentials: caps},
		Source:        LeafNodeSourceKeyPackage,
		Lifetime:      Lifetime{NotAfter: 1},
	}
}

// checkTreeIndexes compares the tree's member counts and indexes with a
// scan of its leaves.
func checkTreeIndexes(t *testing.T, tree *ratchetTree) {
	t.Helper()
	members := 0
	use := map[CredentialType]int{}
	support := map[CredentialType]int{}
	for x := 0; x < tree.size; x += 2 {
		leaf := tree.at(nodeIndex(x)).leaf
		if leaf == nil {
			continue
		}
		members++
		use[leaf.Credential.Type]++
		for _, c := range distinctTypes(leaf.Capabilities.Credentials) {
			support[c]++
		}
		if l, ok := tree.leafWithSignatureKey(leaf.SignatureKey); !ok || l != leafIndex(x/2) {
			t.Fatalf("signature key of leaf %d indexed at %d, %v", x/2, l, ok)
		}
		if l, ok := tree.leafWithEncryptionKey(leaf.EncryptionKey); !ok || l != leafIndex(x/2) {
			t.Fatalf("encryption key of leaf %d indexed at %d, %v", x/2, l, ok)
		}
	}
	if got := tree.memberCount(); got != members {
		t.Fatalf("memberCount() = %d, scan finds %d", got, members)
	}
	if tree.sigKeys.len() != members || tree.encKeys.len() != members {
		t.Fatalf("indexes hold %d and %d keys for %d members", tree.sigKeys.len(), tree.encKeys.len(), members)
	}
	for c := CredentialType(0); c < 5; c++ {
		if cc := tree.credCountOf(c); cc.use != use[c] || cc.support != support[c] {
			t.Fatalf("type %d: counts %+v, scan finds use %d support %d", c, cc, use[c], support[c])
		}
	}
	if _, ok := tree.leafWithSignatureKey([]byte("sig-none")); ok {
		t.Fatal("unknown signature key found")
	}
}

// TestTreeIndexes applies random adds, updates and removes to a tree and
// its clones and checks, after each step, that the indexes agree with a
// scan of the leaves, that the indexed leaf checks (checkLeafAgainstMembers)
// accept exactly the leaves the plain scan (conflictScan) accepts, and that
// changing a clone leaves the original unchanged.
func TestTreeIndexes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tree, err := newRatchetTree(CipherSuiteMLS128DHKEMX25519AES128GCMSHA256Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	types := []CredentialType{1, 2, 3}
	randCaps := func() []CredentialType {
		var caps []CredentialType
		for _, c := range types {
			if rng.IntN(4) != 0 {
				caps = append(caps, c)
			}
		}
		if rng.IntN(8) == 0 && len(caps) > 0 {
			caps = append(caps, caps[0]) // a repeated type counts once
		}
		return caps
	}
	next := 0
	fresh := func() *LeafNode {
		next++
		// Credentials of types 1 and 2 (the encodable ones); type 3 only
		// appears in capabilities.
		return indexTestLeaf(next, next, types[rng.IntN(2)], randCaps()...)
	}
	members := func() []leafIndex {
		var ls []leafIndex
		for x := 0; x < tree.size; x += 2 {
			if tree.at(nodeIndex(x)).leaf != nil {
				ls = append(ls, leafIndex(x/2))
			}
		}
		return ls
	}
	var saved *ratchetTree
	var savedExport []byte
	var savedHash []byte
	for step := range 1500 {
		ls := members()
		switch op := rng.IntN(20); {
		case op < 9 || len(ls) < 2:
			if _, err := tree.addLeaf(fresh()); err != nil {
				t.Fatal(err)
			}
		case op < 13:
			l := ls[rng.IntN(len(ls))]
			nl := fresh()
			nl.SignatureKey = tree.leaf(l).SignatureKey
			if err := tree.updateLeaf(l, nl); err != nil {
				t.Fatal(err)
			}
		default:
			if err := tree.removeLeaf(ls[rng.IntN(len(ls))]); err != nil {
				t.Fatal(err)
			}
		}
		checkTreeIndexes(t, tree)

		// A candidate leaf: fresh, or reusing keys or types of members.
		ls = members()
		cand := fresh()
		v := &leafValidation{}
		if rng.IntN(3) == 0 {
			cand.SignatureKey = tree.leaf(ls[rng.IntN(len(ls))]).SignatureKey
		}
		if rng.IntN(4) == 0 {
			cand.EncryptionKey = tree.leaf(ls[rng.IntN(len(ls))]).EncryptionKey
		}
		if rng.IntN(2) == 0 {
			v.replaces, v.index = true, ls[rng.IntN(len(ls))]
		}
		indexed, scanned := tree.checkLeafAgainstMembers(cand, v), tree.conflictScan(cand, v)
		if (indexed == nil) != (scanned == nil) {
			t.Fatalf("step %d: indexed check %v, scan %v", step, indexed, scanned)
		}

		// Every 50 steps, keep a clone aside and continue on the tree;
		// the clone must not change.
		if saved != nil {
			exp, err := saved.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(exp, savedExport) || !bytes.Equal(saved.treeHash(), savedHash) {
				t.Fatalf("step %d: changing a tree changed its clone", step)
			}
			checkTreeIndexes(t, saved)
		}
		if step%50 == 0 {
			saved = tree.clone()
			if rng.IntN(2) == 0 {
				tree, saved = saved, tree // either side may be the one changed
			}
			if savedExport, err = saved.Marshal(); err != nil {
				t.Fatal(err)
			}
			savedHash = saved.treeHash()
		}
	}
	// The tree hash with the cached subtree hashes equals a fresh one.
	exp, err := tree.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	imported, err := parseRatchetTree(tree.suite, exp)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(imported.treeHash(), tree.treeHash()) {
		t.Fatal("cached tree hash differs from the hash of the imported tree")
	}
	checkTreeIndexes(t, imported)
}

// TestPmap checks the persistent map against a plain map, with colliding
// hashes and old versions kept.
func TestPmap(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var m pmap[int]
	ref := map[int]uint64{}
	type version struct {
		m   pmap[int]
		ref map[int]uint64
	}
	var versions []version
	for i := range 5000 {
		if rng.IntN(3) == 0 && len(ref) > 0 {
			for v, h := range ref {
				var ok bool
				if m, ok = m.without(h, func(x int) bool { return x == v }); !ok {
					t.Fatalf("entry %d not found for deletion", v)
				}
				delete(ref, v)
				break
			}
		} else {
			h := rng.Uint64()
			if rng.IntN(4) == 0 {
				h = uint64(rng.IntN(3)) // many entries under a few hashes
			}
			m = m.with(h, i)
			ref[i] = h
		}
		if i%500 == 0 {
			versions = append(versions, version{m, maps.Clone(ref)})
		}
	}
	versions = append(versions, version{m, ref})
	for _, ver := range versions {
		if ver.m.len() != len(ver.ref) {
			t.Fatalf("len %d, want %d", ver.m.len(), len(ver.ref))
		}
		for v, h := range ver.ref {
			if got, ok := ver.m.get(h, func(x int) bool { return x == v }); !ok || got != v {
				t.Fatalf("entry %d missing", v)
			}
		}
	}
	if _, ok := m.without(12345, func(int) bool { return true }); ok {
		t.Fatal("deleted an absent entry")
	}
}

// TestPmapFrom checks that a map built in one pass is the map that adding
// the same entries one by one gives, node for node, for sizes around the
// bucket size and with many entries under a few hashes.
func TestPmapFrom(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{0, 1, pmapBucket, pmapBucket + 1, 100, 3000} {
		var ents []pmapEntry[int]
		var m pmap[int]
		for i := range n {
			h := rng.Uint64()
			if rng.IntN(5) == 0 {
				h = uint64(rng.IntN(2)) << 60 // collide at every depth
			}
			ents = append(ents, pmapEntry[int]{h, i})
			m = m.with(h, i)
		}
		if got := pmapFrom(ents); !reflect.DeepEqual(got, m) {
			t.Errorf("%d entries: pmapFrom differs from adding them one by one", n)
		}
	}
}
