package mls

import (
	"fmt"
	"testing"

	"qpchat/internal/vectors"
)

// treeMathVector mirrors one entry of tree-math.json (FORMAT.md, "Tree Math").
type treeMathVector struct {
	NLeaves uint32    `json:"n_leaves"`
	NNodes  uint32    `json:"n_nodes"`
	Root    uint32    `json:"root"`
	Left    []*uint32 `json:"left"`
	Right   []*uint32 `json:"right"`
	Parent  []*uint32 `json:"parent"`
	Sibling []*uint32 `json:"sibling"`
}

func TestTreeMath(t *testing.T) {
	var tests []treeMathVector
	vectors.Load(t, "QPCHAT_MLS_VECTORS", "mls-test-vectors", "tree-math.json", &tests)
	if len(tests) == 0 {
		t.Fatal("tree-math.json has no entries")
	}
	passed := 0
	for _, tc := range tests {
		if t.Run(fmt.Sprintf("n_leaves=%d", tc.NLeaves), func(t *testing.T) { testTreeMath(t, &tc) }) {
			passed++
		}
	}
	t.Logf("tree-math.json: %d/%d entries passed", passed, len(tests))
}

// checkOptional compares an (x, ok) result with an optional<uint32> value.
func checkOptional(t *testing.T, what string, i int, got nodeIndex, ok bool, want *uint32) {
	t.Helper()
	switch {
	case want == nil && ok:
		t.Errorf("%s(%d) = %d, want none", what, i, got)
	case want != nil && !ok:
		t.Errorf("%s(%d) = none, want %d", what, i, *want)
	case want != nil && uint32(got) != *want:
		t.Errorf("%s(%d) = %d, want %d", what, i, got, *want)
	}
}

func testTreeMath(t *testing.T, tc *treeMathVector) {
	n := numLeaves(tc.NLeaves)
	if got := n.width(); got != uint64(tc.NNodes) {
		t.Errorf("width(%d) = %d, want %d", n, got, tc.NNodes)
	}
	if got, ok := n.root(); !ok || uint32(got) != tc.Root {
		t.Errorf("root(%d) = %d, %v, want %d", n, got, ok, tc.Root)
	}
	for name, list := range map[string][]*uint32{"left": tc.Left, "right": tc.Right, "parent": tc.Parent, "sibling": tc.Sibling} {
		if len(list) != int(tc.NNodes) {
			t.Errorf("len(%s) = %d, want %d", name, len(list), tc.NNodes)
		}
	}
	for i := 0; i < int(tc.NNodes) && i < len(tc.Left) && i < len(tc.Right) && i < len(tc.Parent) && i < len(tc.Sibling); i++ {
		x := nodeIndex(i)
		got, ok := x.left()
		checkOptional(t, "left", i, got, ok, tc.Left[i])
		got, ok = x.right()
		checkOptional(t, "right", i, got, ok, tc.Right[i])
		got, ok = x.parent(n)
		checkOptional(t, "parent", i, got, ok, tc.Parent[i])
		got, ok = x.sibling(n)
		checkOptional(t, "sibling", i, got, ok, tc.Sibling[i])
	}
}

func TestTreeMathOutOfRange(t *testing.T) {
	n := numLeaves(4) // nodes 0..6
	if _, ok := nodeIndex(7).parent(n); ok {
		t.Error("parent(7) in a 4-leaf tree succeeded, want none")
	}
	if _, ok := nodeIndex(7).sibling(n); ok {
		t.Error("sibling(7) in a 4-leaf tree succeeded, want none")
	}
	if _, ok := nodeIndex(0xffffffff).parent(n); ok {
		t.Error("parent(2^32-1) succeeded, want none")
	}
	if _, ok := nodeIndex(9).directPath(n); ok {
		t.Error("directPath(9) in a 4-leaf tree succeeded, want none")
	}
	if _, ok := numLeaves(0).root(); ok {
		t.Error("root of an empty tree succeeded, want none")
	}
	if _, ok := nodeIndex(0).parent(numLeaves(1)); ok {
		t.Error("parent of the single leaf succeeded, want none")
	}
	// The largest tree whose width fits a nodeIndex.
	big := numLeaves(1 << 31)
	if r, ok := big.root(); !ok || r != 1<<31-1 {
		t.Errorf("root(2^31) = %d, %v, want %d", r, ok, 1<<31-1)
	}
	last := nodeIndex(1<<32 - 2)
	if p, ok := last.parent(big); !ok || p != 1<<32-3 {
		t.Errorf("parent(2^32-2) = %d, %v, want %d", p, ok, uint32(1<<32-3))
	}
	if l, ok := nodeIndex(5).leaf(); ok {
		t.Errorf("leaf(5) = %d, want none", l)
	}
	if l, ok := nodeIndex(6).leaf(); !ok || l != 3 || l.node() != 6 {
		t.Errorf("leaf(6) = %d, %v, want 3", l, ok)
	}
}

func TestDirectPathCopath(t *testing.T) {
	n := numLeaves(8)
	// Leaf 2 (node 4): parents 5, 3, 7; siblings 6, 1, 11.
	dp, ok := nodeIndex(4).directPath(n)
	if !ok || fmt.Sprint(dp) != "[5 3 7]" {
		t.Errorf("directPath(4) = %v, %v, want [5 3 7]", dp, ok)
	}
	cp, ok := nodeIndex(4).copath(n)
	if !ok || fmt.Sprint(cp) != "[6 1 11]" {
		t.Errorf("copath(4) = %v, %v, want [6 1 11]", cp, ok)
	}
	if dp, ok := nodeIndex(7).directPath(n); !ok || len(dp) != 0 {
		t.Errorf("directPath(root) = %v, %v, want []", dp, ok)
	}
}

// commonAncestorSemantic is Appendix C's common_ancestor_semantic: walk up
// from x until the ancestor also covers y.
func commonAncestorSemantic(x, y nodeIndex, n numLeaves) nodeIndex {
	dx, _ := x.directPath(n)
	dy, _ := y.directPath(n)
	ax := append([]nodeIndex{x}, dx...)
	ay := map[nodeIndex]bool{y: true}
	for _, p := range dy {
		ay[p] = true
	}
	for _, a := range ax {
		if ay[a] {
			return a
		}
	}
	panic("no common ancestor")
}

func TestCommonAncestor(t *testing.T) {
	for _, n := range []numLeaves{1, 2, 4, 8, 16} {
		w := nodeIndex(n.width())
		for x := nodeIndex(0); x < w; x++ {
			for y := nodeIndex(0); y < w; y++ {
				if got, want := commonAncestor(x, y), commonAncestorSemantic(x, y, n); got != want {
					t.Errorf("commonAncestor(%d, %d) = %d, want %d (n=%d)", x, y, got, want, n)
				}
			}
		}
	}
}
