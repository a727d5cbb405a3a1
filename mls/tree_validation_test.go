package mls

import (
	"bytes"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"qpchat/internal/vectors"
)

// treeValidationVector mirrors an entry of tree-validation.json.
type treeValidationVector struct {
	CipherSuite CipherSuite   `json:"cipher_suite"`
	Tree        vectors.Hex   `json:"tree"`
	GroupID     vectors.Hex   `json:"group_id"`
	Resolutions [][]uint32    `json:"resolutions"`
	TreeHashes  []vectors.Hex `json:"tree_hashes"`
}

// acceptAllCredentials is the credential validator of vector tests: the
// vectors carry basic credentials the application would check.
func acceptAllCredentials(Credential, []byte) error { return nil }

func TestTreeValidation(t *testing.T) {
	var tests []treeValidationVector
	vectors.Load(t, "QPCHAT_MLS_VECTORS", "mls-test-vectors", "tree-validation.json", &tests)
	if len(tests) == 0 {
		t.Fatal("tree-validation.json has no entries")
	}
	counts := newSuiteCounts()
	counts.runParallel(t, len(tests), func(i int) CipherSuite { return tests[i].CipherSuite },
		func(t *testing.T, i int) { testTreeValidation(t, &tests[i]) })
	counts.log(t, "tree-validation.json")
}

func testTreeValidation(t *testing.T, tc *treeValidationVector) {
	tree, err := parseRatchetTree(tc.CipherSuite, tc.Tree)
	if err != nil {
		t.Fatalf("parseRatchetTree: %v", err)
	}
	if got, want := tree.size, len(tc.Resolutions); got != want {
		t.Fatalf("tree has %d nodes, want %d", got, want)
	}
	if len(tc.TreeHashes) != tree.size {
		t.Fatalf("vector has %d tree hashes for %d nodes", len(tc.TreeHashes), tree.size)
	}
	for i, want := range tc.Resolutions {
		got := tree.resolution(nil, nodeIndex(i))
		if !slices.Equal(got, toNodeIndices(want)) {
			t.Errorf("resolution(%d) = %v, want %v", i, got, want)
		}
	}
	for i, want := range tc.TreeHashes {
		if got := tree.nodeHash(nodeIndex(i)); !bytes.Equal(got, want) {
			t.Errorf("tree hash of node %d = %x, want %x", i, got, want)
		}
	}
	if err := tree.verifyParentHashes(); err != nil {
		t.Errorf("verifyParentHashes: %v", err)
	}
	for x := 0; x < tree.size; x += 2 {
		leaf := tree.at(nodeIndex(x)).leaf
		if leaf == nil {
			continue
		}
		tbs, err := leaf.marshalTBS(tc.GroupID, leafIndex(x/2))
		if err != nil {
			t.Fatal(err)
		}
		if !tree.cs.verifyWithLabel(leaf.SignatureKey, labelLeafNodeTBS, tbs, leaf.Signature) {
			t.Errorf("signature of leaf %d does not verify", x/2)
		}
	}
	if err := tree.validateTree(tc.GroupID, nil, timeZero, acceptAllCredentials); err != nil {
		t.Errorf("validateTree: %v", err)
	}
	// The tree re-exports to the same bytes.
	if got, err := tree.Marshal(); err != nil || !bytes.Equal(got, tc.Tree) {
		t.Errorf("Marshal() = %x, %v; want the input", got, err)
	}
}

func toNodeIndices(xs []uint32) []nodeIndex {
	out := make([]nodeIndex, len(xs))
	for i, x := range xs {
		out[i] = nodeIndex(x)
	}
	return out
}

// suiteCounts tallies passed entries per cipher suite for the log line
// each vector test ends with.
type suiteCounts struct {
	order         []CipherSuite
	passed, total map[CipherSuite]int
}

func newSuiteCounts() *suiteCounts {
	return &suiteCounts{passed: map[CipherSuite]int{}, total: map[CipherSuite]int{}}
}

// runParallel runs f for every entry as parallel subtests named by index
// and suite, and counts the entries that passed.
func (c *suiteCounts) runParallel(t *testing.T, n int, suite func(i int) CipherSuite, f func(t *testing.T, i int)) {
	t.Helper()
	var mu sync.Mutex
	t.Run("entries", func(t *testing.T) {
		for i := range n {
			s := suite(i)
			t.Run(fmt.Sprintf("%d/suite%d", i, s), func(t *testing.T) {
				t.Parallel()
				defer func() {
					mu.Lock()
					c.add(s, !t.Failed())
					mu.Unlock()
				}()
				f(t, i)
			})
		}
	})
}

func (c *suiteCounts) add(s CipherSuite, ok bool) {
	if c.total[s] == 0 {
		c.order = append(c.order, s)
	}
	c.total[s]++
	if ok {
		c.passed[s]++
	}
}

func (c *suiteCounts) log(t *testing.T, file string) {
	t.Helper()
	slices.Sort(c.order)
	for _, s := range c.order {
		t.Logf("%s: suite %d: %d/%d entries passed", file, s, c.passed[s], c.total[s])
	}
}

// timeZero skips lifetime checks: vector leaves carry fixed lifetimes.
var timeZero time.Time
