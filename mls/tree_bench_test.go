//go:build unix

package mls

import (
	"crypto/ed25519"
	"fmt"
	"sync"
	"testing"
	"time"
)

// reportCPU reports the process CPU time per operation since start as
// "cpu-ns/op".
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}

// Benchmark trees are costly to build (a full tree of 1024 members is 1024
// path commits), so they are built once per process and cloned.
var (
	benchTreesMu sync.Mutex
	benchTrees   = map[string]*testTree{}
)

// benchTreeSizes are the group sizes the tree benchmarks run at.
var benchTreeSizes = []int{2, 32, 128, 512, 1024}

// benchTestTree returns a shared suite-1 tree of n members, add-only or
// full (see buildTestTree). Callers must clone the tree and private keys
// before changing them.
func benchTestTree(b *testing.B, n int, full bool) *testTree {
	b.Helper()
	key := fmt.Sprintf("%d/%v", n, full)
	benchTreesMu.Lock()
	defer benchTreesMu.Unlock()
	if tt, ok := benchTrees[key]; ok {
		return tt
	}
	tt := buildTestTree(b, CipherSuiteMLS128DHKEMX25519AES128GCMSHA256Ed25519, n, full, testRand(uint64(n)))
	// A group always has the hash of its current tree cached.
	tt.tree.treeHash()
	benchTrees[key] = tt
	return tt
}

func treeKind(full bool) string {
	if full {
		return "full"
	}
	return "addonly"
}

// BenchmarkCreateUpdatePath measures creating a commit's UpdatePath from
// leaf 0: in the add-only tree it encrypts to about N leaves, in the full
// tree to about log2(N) nodes.
func BenchmarkCreateUpdatePath(b *testing.B) {
	for _, full := range []bool{false, true} {
		for _, n := range benchTreeSizes {
			b.Run(fmt.Sprintf("%s/N=%d", treeKind(full), n), func(b *testing.B) {
				tt := benchTestTree(b, n, full)
				rnd := testRand(1)
				size := 0
				b.ResetTimer()
				cpu := cpuTime()
				for b.Loop() {
					tree := tt.tree.clone()
					res, err := tree.createUpdatePath(rnd, tt.privs[0].clone(), &updatePathParams{
						groupID: testGroupID, signer: tt.members[0].signer, context: testContext,
					})
					if err != nil {
						b.Fatal(err)
					}
					if size == 0 {
						enc, _ := res.path.Marshal()
						size = len(enc)
					}
				}
				reportCPU(b, cpu)
				b.ReportMetric(float64(size), "path-bytes")
			})
		}
	}
}

// BenchmarkProcessUpdatePath measures a member merging and decrypting an
// UpdatePath from leaf 0: applyUpdatePath, the new tree hash and
// decryptUpdatePath.
func BenchmarkProcessUpdatePath(b *testing.B) {
	for _, full := range []bool{false, true} {
		for _, n := range benchTreeSizes {
			b.Run(fmt.Sprintf("%s/N=%d", treeKind(full), n), func(b *testing.B) {
				tt := benchTestTree(b, n, full)
				res, err := tt.tree.clone().createUpdatePath(testRand(2), tt.privs[0].clone(), &updatePathParams{
					groupID: testGroupID, signer: tt.members[0].signer, context: testContext,
				})
				if err != nil {
					b.Fatal(err)
				}
				receiver := tt.privs[n-1]
				b.ResetTimer()
				cpu := cpuTime()
				for b.Loop() {
					tree := tt.tree.clone()
					if err := tree.applyUpdatePath(0, res.path, nil); err != nil {
						b.Fatal(err)
					}
					ctx, _ := testContext(tree.treeHash())
					if _, err := tree.decryptUpdatePath(receiver.clone(), 0, res.path, nil, ctx); err != nil {
						b.Fatal(err)
					}
				}
				reportCPU(b, cpu)
			})
		}
	}
}

// BenchmarkJoinTree measures what a new member does with a received ratchet
// tree before it can join: import, tree hash, parent hashes and leaf
// validation (one signature per leaf). BenchmarkEd25519Verify gives the
// cost of the N signature verifications alone for comparison.
func BenchmarkJoinTree(b *testing.B) {
	for _, full := range []bool{false, true} {
		for _, n := range benchTreeSizes {
			b.Run(fmt.Sprintf("%s/N=%d", treeKind(full), n), func(b *testing.B) {
				tt := benchTestTree(b, n, full)
				data, err := tt.tree.Marshal()
				if err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				cpu := cpuTime()
				for b.Loop() {
					tree, err := parseRatchetTree(tt.tree.suite, data)
					if err != nil {
						b.Fatal(err)
					}
					tree.treeHash()
					if err := tree.verifyParentHashes(); err != nil {
						b.Fatal(err)
					}
					if err := tree.validateTree(testGroupID, nil, time.Time{}, acceptAllCredentials); err != nil {
						b.Fatal(err)
					}
				}
				reportCPU(b, cpu)
				b.ReportMetric(float64(len(data)), "tree-bytes")
			})
		}
	}
}

// BenchmarkEd25519Verify measures N plain Ed25519 verifications of
// leaf-sized messages, the floor for BenchmarkJoinTree.
func BenchmarkEd25519Verify(b *testing.B) {
	for _, n := range benchTreeSizes {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			priv := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
			pub := priv.Public().(ed25519.PublicKey)
			msg := make([]byte, 200)
			sig := ed25519.Sign(priv, msg)
			cpu := cpuTime()
			for b.Loop() {
				for range n {
					if !ed25519.Verify(pub, msg, sig) {
						b.Fatal("verify failed")
					}
				}
			}
			reportCPU(b, cpu)
		})
	}
}
