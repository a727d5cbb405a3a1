package mls

// Benchmarks of issue 12: each operation of a large group next to its
// floor, measured in the same run, for suite 1 and qpchat's hybrid suite
// 0xFA01, at N = 64 to 50 000 members.
//
// The sizes 16 384 and 50 000 take minutes to set up (N KeyPackages) and
// run only with QPCHAT_BENCH_LARGE=1; run them at -benchtime 1x:
//
//	QPCHAT_BENCH_LARGE=1 go test ./mls -run XXX -bench Scale -benchtime 1x -timeout 2h
//
// Each sub-benchmark runs the operation and its floor alternately and
// reports cpu-ns/op, floor-cpu-ns/op and their ratio x-floor.

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"os"
	"testing"
)

var scaleSuites = []CipherSuite{
	CipherSuiteMLS128DHKEMX25519AES128GCMSHA256Ed25519,
	CipherSuiteMLS128HybridX25519MLKEM768AES128GCMSHA256Ed25519,
}

func scaleSizes() []int {
	sizes := []int{64, 1024, 4096}
	if os.Getenv("QPCHAT_BENCH_LARGE") == "1" {
		sizes = append(sizes, 16384, 50000)
	}
	return sizes
}

// scaleGroup is a group of n members built by one Add commit: the
// KeyPackages, the Welcome (ratchet tree included) and the creator's
// group after the commit.
type scaleGroup struct {
	suite   CipherSuite
	kps     []*KeyPackagePrivate
	msgs    [][]byte // kps[1:] as MLSMessages
	welcome []byte
	creator *Group
	// full is the group with every parent node set (see makeFull), seen
	// by the member at leaf 0 (committer) and at the last leaf (receiver).
	committer, receiver *Group
}

var scaleGroups = map[string]*scaleGroup{}

// getScaleKeyPackages makes (once) the n KeyPackages of a scale group.
func getScaleGroup(b *testing.B, suite CipherSuite, n int) *scaleGroup {
	key := fmt.Sprintf("%d/%d", suite, n)
	if sg, ok := scaleGroups[key]; ok {
		return sg
	}
	rand := testRand(uint64(n) + 1000)
	sg := &scaleGroup{suite: suite, kps: make([]*KeyPackagePrivate, n)}
	for i := range sg.kps {
		sg.kps[i] = newTestKeyPackage(b, rand, suite, fmt.Sprintf("member-%d", i))
		if i > 0 {
			sg.msgs = append(sg.msgs, kpMessage(b, sg.kps[i]))
		}
	}
	scaleGroups[key] = sg
	return sg
}

// build creates the group and adds every other member in one commit with
// the tree in the Welcome, the operation BenchmarkScale/op=build measures.
func (sg *scaleGroup) build(b *testing.B) (*Group, []byte) {
	g, welcome, _ := sg.buildSized(b)
	return g, welcome
}

// buildSized is build that also returns the length of the commit.
func (sg *scaleGroup) buildSized(b *testing.B) (*Group, []byte, int) {
	rand := testRand(7)
	g, err := CreateGroup(rand, testConfig(), []byte("scale group"), sg.kps[0], nil)
	if err != nil {
		b.Fatal(err)
	}
	out, err := g.Add(rand, sg.msgs, testNow)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := g.MergePending(); err != nil {
		b.Fatal(err)
	}
	return g, out.Welcome, len(out.Commit)
}

// makeFull gives the group of the creator a full tree: every parent node
// gets the same key pair, which the receiver (the last leaf) holds, as if
// every member had committed. Commit processing does not look at the
// parent hashes of the nodes it does not change, so this stands for a tree
// of real commits, which would take N path commits to build.
func (sg *scaleGroup) makeFull(b *testing.B) {
	if sg.committer != nil {
		return
	}
	g := cloneGroupInMemory(sg.creator)
	cs := g.cs
	pk, err := cs.hpke.KEM.GenerateKeyPair(testRand(9))
	if err != nil {
		b.Fatal(err)
	}
	parent := &ParentNode{EncryptionKey: pk.PublicKey().Bytes()}
	for x := 1; x < g.tree.size; x += 2 {
		g.tree.setParent(nodeIndex(x), parent)
	}
	g.tree.truncate()
	g.tree.treeHash()
	last := leafIndex(len(sg.kps) - 1)
	leafKey := func(l leafIndex) *treePrivateKeys {
		k, err := cs.hpkePrivateKey(sg.kps[l].EncryptionPriv)
		if err != nil {
			b.Fatal(err)
		}
		return newTreePrivateKeys(l, k)
	}
	rp := leafKey(last)
	path, _ := last.node().directPath(g.tree.numLeaves())
	for _, x := range path {
		rp.set(x, pk)
	}
	sg.committer = cloneAs(b, g, leafKey(0), sg.kps[0].Signer)
	sg.receiver = cloneAs(b, g, rp, sg.kps[last].Signer)
}

// measureAgainstFloor runs op and floor alternately in each iteration, so
// that both see the same load on a shared machine, and reports their CPU
// time per operation (cpu-ns/op, floor-cpu-ns/op) and the ratio
// (x-floor). setup, when not nil, runs before each op without being
// measured. bytes, when given, is a second floor measured the same way:
// the passes over a message's bytes that no implementation avoids
// (bytesFloor), reported as bytes-cpu-ns/op and x-floor+bytes, the ratio
// of op to both floors.
func measureAgainstFloor(b *testing.B, setup, op, floor func(), bytes ...func()) {
	var cpu, fl, by cpuMeter
	for b.Loop() {
		if setup != nil {
			setup()
		}
		cpu.begin()
		op()
		cpu.end()
		fl.begin()
		floor()
		fl.end()
		if len(bytes) > 0 {
			by.begin()
			bytes[0]()
			by.end()
		}
	}
	cpu.report(b)
	b.ReportMetric(float64(fl.total.Nanoseconds())/float64(b.N), "floor-cpu-ns/op")
	if fl.total > 0 {
		b.ReportMetric(float64(cpu.total)/float64(fl.total), "x-floor")
	}
	if len(bytes) > 0 && fl.total+by.total > 0 {
		b.ReportMetric(float64(by.total.Nanoseconds())/float64(b.N), "bytes-cpu-ns/op")
		b.ReportMetric(float64(cpu.total)/float64(fl.total+by.total), "x-floor+bytes")
	}
}

// bytesFloor is what a message of n bytes costs any implementation:
// sha512 SHA-512 passes (Ed25519 hashes the signed content twice to sign,
// once to verify), one SHA-256 pass (the transcript hash) and one
// AES-128-GCM encryption (the PrivateMessage).
func bytesFloor(n, sha512Passes int) func() {
	msg := make([]byte, n)
	out := make([]byte, 0, n+16)
	block, _ := aes.NewCipher(make([]byte, 16))
	aead, _ := cipher.NewGCM(block)
	nonce := make([]byte, 12)
	return func() {
		for range sha512Passes {
			sha512.Sum512(msg)
		}
		sha256.Sum256(msg)
		aead.Seal(out[:0], nonce, msg, nil)
	}
}

// BenchmarkScale measures, per suite and size, each against its floor in
// the same loop: building the group in one commit (floor: the KeyPackage
// verifications and one HPKE seal per new member), joining it (N
// crypto/ed25519 verifications), creating a full-path commit in a full
// tree (commitFloor), processing it (2 verifications and 1 HPKE open), protecting (1 signature) and
// unprotecting (1 verification) a 100-byte message.
func BenchmarkScale(b *testing.B) {
	for _, suite := range scaleSuites {
		for _, n := range scaleSizes() {
			prefix := fmt.Sprintf("suite=%s/N=%d", suiteName(suite), n)
			sg := func(b *testing.B) *scaleGroup {
				sg := getScaleGroup(b, suite, n)
				if sg.creator == nil {
					sg.creator, sg.welcome = sg.build(b)
				}
				return sg
			}
			b.Run(prefix+"/op=build", func(b *testing.B) {
				s := getScaleGroup(b, suite, n)
				var commitLen int
				s.creator, s.welcome, commitLen = s.buildSized(b)
				// The commit and the GroupInfo in the Welcome (which
				// holds the tree) are each signed and encrypted.
				commitBytes, welcomeBytes := bytesFloor(commitLen, 2), bytesFloor(len(s.welcome), 2)
				measureAgainstFloor(b, nil, func() { s.creator, s.welcome = s.build(b) }, buildFloor(b, s), func() {
					commitBytes()
					welcomeBytes()
				})
				b.ReportMetric(float64(len(s.welcome)), "welcome-bytes")
				b.ReportMetric(float64(commitLen), "commit-bytes")
			})
			b.Run(prefix+"/op=join", func(b *testing.B) {
				s := sg(b)
				kp := s.kps[n-1]
				measureAgainstFloor(b, nil, func() {
					if _, err := JoinFromWelcome(testConfig(), s.welcome, kp, nil, testNow); err != nil {
						b.Fatal(err)
					}
				}, joinFloor(b, s), bytesFloor(len(s.welcome), 1)) // decrypt, verify the GroupInfo, hash the tree
				b.ReportMetric(float64(len(s.welcome)), "welcome-bytes")
			})
			b.Run(prefix+"/op=commit-full", func(b *testing.B) {
				s := sg(b)
				s.makeFull(b)
				committer := cloneGroupInMemory(s.committer)
				rand := testRand(13)
				commit := func() int {
					out, err := committer.Update(rand, testNow)
					if err != nil {
						b.Fatal(err)
					}
					committer.DiscardPending()
					return len(out.Commit)
				}
				size := commit()
				measureAgainstFloor(b, nil, func() { commit() }, commitFloor(b, s), bytesFloor(size, 2))
				b.ReportMetric(float64(size), "commit-bytes")
			})
			b.Run(prefix+"/op=process-full", func(b *testing.B) {
				s := sg(b)
				s.makeFull(b)
				committer := cloneGroupInMemory(s.committer)
				out, err := committer.Update(testRand(3), testNow)
				if err != nil {
					b.Fatal(err)
				}
				var g *Group
				measureAgainstFloor(b, func() { g = cloneGroupInMemory(s.receiver) }, func() {
					if _, err := g.ProcessMessage(out.Commit, testNow); err != nil {
						b.Fatal(err)
					}
				}, processFloor(b, s), bytesFloor(len(out.Commit), 1))
				b.ReportMetric(float64(len(out.Commit)), "commit-bytes")
			})
			b.Run(prefix+"/op=protect", func(b *testing.B) {
				s := sg(b)
				s.makeFull(b)
				g := cloneGroupInMemory(s.committer)
				data := make([]byte, 100)
				rand := testRand(4)
				measureAgainstFloor(b, nil, func() {
					if _, err := g.Protect(rand, data, nil); err != nil {
						b.Fatal(err)
					}
				}, signFloor())
			})
			b.Run(prefix+"/op=unprotect", func(b *testing.B) {
				s := sg(b)
				s.makeFull(b)
				sender, receiver := cloneGroupInMemory(s.committer), cloneGroupInMemory(s.receiver)
				data := make([]byte, 100)
				rand := testRand(5)
				var msg []byte
				measureAgainstFloor(b, func() {
					var err error
					if msg, err = sender.Protect(rand, data, nil); err != nil {
						b.Fatal(err)
					}
				}, func() {
					if _, err := receiver.ProcessMessage(msg, testNow); err != nil {
						b.Fatal(err)
					}
				}, verifyFloor())
			})
		}
	}
}

// buildFloor is the floor of building: verifying each KeyPackage (its
// signature and its leaf's, with crypto/ed25519) and one HPKE seal of
// GroupSecrets to each new member's init key.
func buildFloor(b *testing.B, sg *scaleGroup) func() {
	cs, err := sg.suite.suite()
	if err != nil {
		b.Fatal(err)
	}
	type item struct{ pub, msg, sig []byte }
	var items []item
	for _, kp := range sg.kps[1:] {
		k := &kp.KeyPackage
		tbs, err := k.marshalTBS()
		if err != nil {
			b.Fatal(err)
		}
		items = append(items, item{k.LeafNode.SignatureKey, labeledInput(labelKeyPackageTBS, tbs), k.Signature})
		ltbs, err := k.LeafNode.marshalTBS(nil, 0)
		if err != nil {
			b.Fatal(err)
		}
		items = append(items, item{k.LeafNode.SignatureKey, labeledInput(labelLeafNodeTBS, ltbs), k.LeafNode.Signature})
	}
	secrets := make([]byte, 3*cs.nh) // about the size of GroupSecrets
	rand := testRand(6)
	return func() {
		for _, it := range items {
			if !ed25519.Verify(it.pub, it.msg, it.sig) {
				b.Fatal("key package signature")
			}
		}
		for _, kp := range sg.kps[1:] {
			if _, _, err := cs.encryptWithLabel(rand, kp.KeyPackage.InitKey, labelWelcomeHPKE, nil, secrets); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// joinFloor is N single Ed25519 verifications (crypto/ed25519) of the
// leaves of the tree a joiner imports.
func joinFloor(b *testing.B, sg *scaleGroup) func() {
	t := sg.creator.tree
	type item struct{ pub, msg, sig []byte }
	var items []item
	for x := 0; x < t.size; x += 2 {
		leaf := t.at(nodeIndex(x)).leaf
		if leaf == nil {
			continue
		}
		tbs, err := leaf.marshalTBS(sg.creator.ctx.GroupID, leafIndex(x/2))
		if err != nil {
			b.Fatal(err)
		}
		items = append(items, item{leaf.SignatureKey, labeledInput(labelLeafNodeTBS, tbs), leaf.Signature})
	}
	return func() {
		for _, it := range items {
			if !ed25519.Verify(it.pub, it.msg, it.sig) {
				b.Fatal("leaf signature")
			}
		}
	}
}

// processFloor is two Ed25519 verifications (the commit's and its leaf's)
// and one HPKE open of a path secret.
func processFloor(b *testing.B, sg *scaleGroup) func() {
	cs, err := sg.suite.suite()
	if err != nil {
		b.Fatal(err)
	}
	pub, priv, _ := ed25519.GenerateKey(testRand(8))
	msg := make([]byte, 300)
	sig := ed25519.Sign(priv, msg)
	sk, err := cs.hpke.KEM.GenerateKeyPair(testRand(10))
	if err != nil {
		b.Fatal(err)
	}
	kemOut, ct, err := cs.encryptWithLabel(testRand(11), sk.PublicKey().Bytes(), labelUpdatePathNode, msg, make([]byte, cs.nh))
	if err != nil {
		b.Fatal(err)
	}
	return func() {
		if !ed25519.Verify(pub, msg, sig) || !ed25519.Verify(pub, msg, sig) {
			b.Fatal("verify")
		}
		if _, err := cs.decryptWithLabel(sk, labelUpdatePathNode, msg, kemOut, ct); err != nil {
			b.Fatal(err)
		}
	}
}

// commitFloor is the floor of a full-path commit in a full tree: two
// Ed25519 signatures (the commit's and its leaf's) and, for each of the
// ceil(log2 N) nodes of the committer's direct path, one
// KEM.DeriveKeyPair and one HPKE seal of the path secret to the copath
// node (RFC 9420, Section 7.5).
func commitFloor(b *testing.B, sg *scaleGroup) func() {
	cs, err := sg.suite.suite()
	if err != nil {
		b.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(testRand(14))
	msg := make([]byte, 300)
	sk, err := cs.hpke.KEM.GenerateKeyPair(testRand(15))
	if err != nil {
		b.Fatal(err)
	}
	pub := sk.PublicKey().Bytes()
	depth := 0
	for 1<<depth < len(sg.kps) {
		depth++
	}
	secret := make([]byte, cs.nh)
	rand := testRand(16)
	return func() {
		ed25519.Sign(priv, msg)
		ed25519.Sign(priv, msg)
		for range depth {
			if _, err := cs.hpke.KEM.DeriveKeyPair(secret); err != nil {
				b.Fatal(err)
			}
			if _, _, err := cs.encryptWithLabel(rand, pub, labelUpdatePathNode, msg, secret); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// signFloor and verifyFloor are one crypto/ed25519 signature and one
// verification of a message the size of a protected 100-byte application
// message's signed content.
func signFloor() func() {
	_, priv, _ := ed25519.GenerateKey(testRand(12))
	msg := make([]byte, 250)
	return func() { ed25519.Sign(priv, msg) }
}

func verifyFloor() func() {
	pub, priv, _ := ed25519.GenerateKey(testRand(12))
	msg := make([]byte, 250)
	sig := ed25519.Sign(priv, msg)
	return func() {
		if !ed25519.Verify(pub, msg, sig) {
			panic("verify")
		}
	}
}
