package mls

// Benchmarks of the Group API (issue 4 and issue 5): commits with a full
// path, processing them, adding a member, joining, and application
// messages, in groups of 2 to 1024 members grown only by adds (blank
// parents) or where every member committed (full tree).

import (
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
)

// cpuMeter adds up the CPU time of the measured parts of a benchmark.
type cpuMeter struct{ total, start time.Duration }

func (m *cpuMeter) begin() { m.start = cpuTime() }
func (m *cpuMeter) end()   { m.total += cpuTime() - m.start }
func (m *cpuMeter) report(b *testing.B) {
	if b.N > 0 {
		b.ReportMetric(float64(m.total.Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}

// cloneGroupInMemory copies g without going through its encoding, keeping
// the tree's cached hashes as a long-running member has them. The epoch
// secrets are shared: processing a commit replaces them, never changes
// them. Past epochs are dropped.
func cloneGroupInMemory(g *Group) *Group {
	c := *g
	c.tree = g.tree.clone()
	c.priv = g.priv.clone()
	b := cryptobyte.NewBuilder(nil)
	marshalSecretTree(b, g.keys)
	enc := cryptobyte.String(b.BytesOrPanic())
	keys, err := unmarshalSecretTree(&enc, g.cs)
	if err != nil {
		panic(err)
	}
	c.keys = keys
	c.past = nil // not shared: retiring an epoch zeroes the oldest one
	c.cache = slices.Clone(g.cache)
	return &c
}

// cloneAs returns a copy of g in g's epoch as seen by the member at leaf l
// holding the private keys priv (its leaf key, and any path keys still in
// the tree) and signature key signer. The epoch's secrets are the same for
// every member, so this stands in for the member having processed every
// commit, as long as it only commits (creating a path needs no path
// secrets) or receives commits encrypted to keys it holds. Benchmarks use
// it to build large groups quickly.
func cloneAs(tb testing.TB, g *Group, priv *treePrivateKeys, signer *SignaturePrivateKey) *Group {
	tb.Helper()
	c := cloneGroupInMemory(g)
	c.priv = priv.clone()
	c.priv.prune(c.tree)
	if _, ok := c.priv.keyFor(c.tree, c.priv.leaf.node()); !ok {
		tb.Fatalf("leaf %d does not hold the given leaf key", c.priv.leaf)
	}
	c.signer = signer
	return c
}

// benchGroup is a group of n members for benchmarks: committer and
// receiver are two members of the same epoch, receiver at the last leaf.
type benchGroup struct {
	committer, receiver *Group
	rand                io.Reader
	suite               CipherSuite
}

var benchGroups = map[string]*benchGroup{}

// fresh returns copies of the committer and the receiver for one
// benchmark, so that no benchmark depends on what ran before it (a
// committer that created thousands of commits is thousands of handshake
// generations ahead of the shared receiver).
func (bg *benchGroup) fresh() (committer, receiver *Group) {
	return cloneGroupInMemory(bg.committer), cloneGroupInMemory(bg.receiver)
}

// bitReverse reverses the low bits bits of x.
func bitReverse(x uint32, bits int) uint32 {
	var r uint32
	for range bits {
		r = r<<1 | x&1
		x >>= 1
	}
	return r
}

// getBenchGroup builds (once) a group of n members of suite. The add-only
// tree is grown by one Add commit, so every parent node is blank; in the
// full tree, every second member then committed a path, in bit-reversed
// order so that each path encrypts to few nodes, and the receiver
// committed last so that it holds the keys of its whole direct path.
func getBenchGroup(b *testing.B, suite CipherSuite, n int, full bool) *benchGroup {
	key := fmt.Sprintf("%d/%d/%v", suite, n, full)
	if bg, ok := benchGroups[key]; ok {
		return bg
	}
	rand := testRand(uint64(n))
	kps := make([]*KeyPackagePrivate, n)
	msgs := make([][]byte, 0, n-1)
	for i := range kps {
		kps[i] = newTestKeyPackage(b, rand, suite, fmt.Sprintf("member-%d", i))
		if i > 0 {
			msgs = append(msgs, kpMessage(b, kps[i]))
		}
	}
	creator, err := CreateGroup(rand, testConfig(), []byte("bench group"), kps[0], nil)
	if err != nil {
		b.Fatal(err)
	}
	if n > 1 {
		if _, err := creator.Add(rand, msgs, testNow); err != nil {
			b.Fatal(err)
		}
		if _, err := creator.MergePending(); err != nil {
			b.Fatal(err)
		}
	}
	// privs holds each member's latest private keys.
	privs := make([]*treePrivateKeys, n)
	for i, kp := range kps {
		k, err := creator.cs.hpkePrivateKey(kp.EncryptionPriv)
		if err != nil {
			b.Fatal(err)
		}
		privs[i] = newTreePrivateKeys(leafIndex(i), k)
	}
	state := creator
	last := uint32(n - 1)
	commitAs := func(l uint32) {
		m := cloneAs(b, state, privs[l], kps[l].Signer)
		if _, err := m.Update(rand, testNow); err != nil {
			b.Fatal(err)
		}
		if _, err := m.MergePending(); err != nil {
			b.Fatal(err)
		}
		privs[l] = m.priv.clone()
		state = m
	}
	if full {
		bits := 0
		for 1<<bits < n/2 {
			bits++
		}
		for i := range uint32(1) << bits {
			l := 2 * bitReverse(i, bits)
			// The receiver's pair is filled by the receiver, last.
			if l < uint32(n) && l != last&^1 {
				commitAs(l)
			}
		}
		commitAs(last)
	}
	bg := &benchGroup{rand: rand, suite: suite}
	bg.receiver = cloneAs(b, state, privs[last], kps[last].Signer)
	bg.committer = cloneAs(b, state, privs[0], kps[0].Signer)
	// Members keep their tree hashes cached between messages.
	bg.receiver.tree.treeHash()
	bg.committer.tree.treeHash()
	benchGroups[key] = bg
	return bg
}

var benchSizes = []int{2, 32, 128, 512, 1024}

func forBenchGroups(b *testing.B, f func(b *testing.B, bg *benchGroup)) {
	for _, full := range []bool{false, true} {
		for _, n := range benchSizes {
			name := fmt.Sprintf("tree=add-only/N=%d", n)
			if full {
				name = fmt.Sprintf("tree=full/N=%d", n)
			}
			b.Run(name, func(b *testing.B) {
				f(b, getBenchGroup(b, CipherSuiteMLS128DHKEMX25519AES128GCMSHA256Ed25519, n, full))
			})
		}
	}
}

// BenchmarkCommitCreate creates a commit with a full update path (the
// first path commit of the add-only tree encrypts to about N leaves).
func BenchmarkCommitCreate(b *testing.B) {
	forBenchGroups(b, benchCommitCreate)
}

func benchCommitCreate(b *testing.B, bg *benchGroup) {
	committer, _ := bg.fresh()
	var size int
	var cpu cpuMeter
	cpu.begin()
	for b.Loop() {
		out, err := committer.Update(bg.rand, testNow)
		if err != nil {
			b.Fatal(err)
		}
		size = len(out.Commit)
		committer.DiscardPending()
	}
	cpu.end()
	cpu.report(b)
	b.ReportMetric(float64(size), "commit-bytes")
}

// BenchmarkCommitProcess processes a full-path commit as another member.
func BenchmarkCommitProcess(b *testing.B) {
	forBenchGroups(b, benchCommitProcess)
}

func benchCommitProcess(b *testing.B, bg *benchGroup) {
	committer, receiver := bg.fresh()
	out, err := committer.Update(bg.rand, testNow)
	if err != nil {
		b.Fatal(err)
	}
	var cpu cpuMeter
	for b.Loop() {
		b.StopTimer()
		g := cloneGroupInMemory(receiver)
		b.StartTimer()
		cpu.begin()
		if _, err := g.ProcessMessage(out.Commit, testNow); err != nil {
			b.Fatal(err)
		}
		cpu.end()
	}
	cpu.report(b)
}

// BenchmarkAddMember adds one member: the commit and its Welcome.
func BenchmarkAddMember(b *testing.B) {
	forBenchGroups(b, func(b *testing.B, bg *benchGroup) {
		committer, _ := bg.fresh()
		kp := kpMessage(b, newTestKeyPackage(b, bg.rand, bg.suite, "member-new"))
		var out *CommitOutput
		var cpu cpuMeter
		cpu.begin()
		for b.Loop() {
			var err error
			if out, err = committer.Add(bg.rand, [][]byte{kp}, testNow); err != nil {
				b.Fatal(err)
			}
			committer.DiscardPending()
		}
		cpu.end()
		cpu.report(b)
		b.ReportMetric(float64(len(out.Commit)), "commit-bytes")
		b.ReportMetric(float64(len(out.Welcome)), "welcome-bytes")
	})
}

// BenchmarkJoin joins from the Welcome of one Add (the ratchet tree is in
// the Welcome; every leaf signature is verified). Compare with
// BenchmarkVerifyLeaves, N Ed25519 verifications.
func BenchmarkJoin(b *testing.B) {
	forBenchGroups(b, func(b *testing.B, bg *benchGroup) {
		committer, _ := bg.fresh()
		kp := newTestKeyPackage(b, bg.rand, bg.suite, "member-new")
		out, err := committer.Add(bg.rand, [][]byte{kpMessage(b, kp)}, testNow)
		if err != nil {
			b.Fatal(err)
		}
		var cpu cpuMeter
		cpu.begin()
		for b.Loop() {
			if _, err := JoinFromWelcome(testConfig(), out.Welcome, kp, nil, testNow); err != nil {
				b.Fatal(err)
			}
		}
		cpu.end()
		cpu.report(b)
		b.ReportMetric(float64(len(out.Welcome)), "welcome-bytes")
	})
}

// BenchmarkVerifyLeaves verifies the signatures of every leaf of the tree,
// the floor of the cost of joining.
func BenchmarkVerifyLeaves(b *testing.B) {
	forBenchGroups(b, func(b *testing.B, bg *benchGroup) {
		t := bg.receiver.tree
		var cpu cpuMeter
		cpu.begin()
		defer cpu.report(b)
		defer cpu.end()
		for b.Loop() {
			for x := 0; x < t.size; x += 2 {
				leaf := t.at(nodeIndex(x)).leaf
				if leaf == nil {
					continue
				}
				tbs, err := leaf.marshalTBS(bg.receiver.ctx.GroupID, leafIndex(x/2))
				if err != nil {
					b.Fatal(err)
				}
				if !t.cs.verifyWithLabel(leaf.SignatureKey, labelLeafNodeTBS, tbs, leaf.Signature) {
					b.Fatal("leaf signature")
				}
			}
		}
	})
}

// BenchmarkProtect and BenchmarkUnprotect protect and unprotect a 100-byte
// application message.
func BenchmarkProtect(b *testing.B) {
	forBenchGroups(b, func(b *testing.B, bg *benchGroup) {
		g, _ := bg.fresh()
		data := make([]byte, 100)
		var cpu cpuMeter
		cpu.begin()
		for b.Loop() {
			if _, err := g.Protect(bg.rand, data, nil); err != nil {
				b.Fatal(err)
			}
		}
		cpu.end()
		cpu.report(b)
	})
}

func BenchmarkUnprotect(b *testing.B) {
	forBenchGroups(b, benchUnprotect)
}

// benchUnprotect processes 100-byte application messages from the
// committer as the receiver.
func benchUnprotect(b *testing.B, bg *benchGroup) {
	sender, receiver := bg.fresh()
	data := make([]byte, 100)
	const batch = 512
	msgs := make([][]byte, 0, batch)
	i := 0
	var cpu cpuMeter
	defer cpu.report(b)
	for b.Loop() {
		if i == len(msgs) {
			b.StopTimer()
			msgs, i = msgs[:0], 0
			for range batch {
				m, err := sender.Protect(bg.rand, data, nil)
				if err != nil {
					b.Fatal(err)
				}
				msgs = append(msgs, m)
			}
			b.StartTimer()
		}
		cpu.begin()
		if _, err := receiver.ProcessMessage(msgs[i], testNow); err != nil {
			b.Fatal(err)
		}
		cpu.end()
		i++
	}
}

// BenchmarkHybridCommit compares commit creation and processing in full
// trees of 32 and 1024 members for qpchat's hybrid suite and suite 1
// (issue 5: the ratio is the figure).
func BenchmarkHybridCommit(b *testing.B) {
	for _, suite := range []CipherSuite{
		CipherSuiteMLS128DHKEMX25519AES128GCMSHA256Ed25519,
		CipherSuiteMLS128HybridX25519MLKEM768AES128GCMSHA256Ed25519,
	} {
		for _, n := range []int{32, 1024} {
			bg := func(b *testing.B) *benchGroup { return getBenchGroup(b, suite, n, true) }
			b.Run(fmt.Sprintf("%s/N=%d/create", suiteName(suite), n), func(b *testing.B) { benchCommitCreate(b, bg(b)) })
			b.Run(fmt.Sprintf("%s/N=%d/process", suiteName(suite), n), func(b *testing.B) { benchCommitProcess(b, bg(b)) })
		}
	}
}
