package mls

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"slices"
	"testing"
	"time"

	"qpchat/internal/vectors"
	"qpchat/kem"
)

// testMember is a member's leaf and keys for tree tests and benchmarks.
type testMember struct {
	signer  *SignaturePrivateKey
	encPriv kem.PrivateKey
	leaf    *LeafNode
}

// newTestMember makes a signed key_package-source leaf with a basic
// credential named id, reading its keys from rnd.
func newTestMember(tb testing.TB, suite CipherSuite, rnd io.Reader, id string) *testMember {
	tb.Helper()
	cs, err := suite.suite()
	if err != nil {
		tb.Fatal(err)
	}
	signer, err := GenerateSignatureKey(suite, rnd)
	if err != nil {
		tb.Fatal(err)
	}
	encPriv, err := cs.hpke.KEM.GenerateKeyPair(rnd)
	if err != nil {
		tb.Fatal(err)
	}
	leaf := &LeafNode{
		EncryptionKey: encPriv.PublicKey().Bytes(),
		SignatureKey:  signer.PublicKey(),
		Credential:    Credential{Type: CredentialTypeBasic, Identity: []byte(id)},
		Capabilities: Capabilities{
			Versions:     []ProtocolVersion{ProtocolVersionMLS10},
			CipherSuites: []CipherSuite{suite},
			Credentials:  []CredentialType{CredentialTypeBasic},
		},
		Source:   LeafNodeSourceKeyPackage,
		Lifetime: Lifetime{NotBefore: 0, NotAfter: math.MaxUint64},
	}
	signTestLeaf(tb, cs, signer, leaf, nil, 0)
	return &testMember{signer: signer, encPriv: encPriv, leaf: leaf}
}

// signTestLeaf (re)signs leaf for groupID and index.
func signTestLeaf(tb testing.TB, cs *cipherSuite, signer *SignaturePrivateKey, leaf *LeafNode, groupID []byte, index leafIndex) {
	tb.Helper()
	tbs, err := leaf.marshalTBS(groupID, index)
	if err != nil {
		tb.Fatal(err)
	}
	if leaf.Signature, err = cs.signWithLabel(nil, signer, labelLeafNodeTBS, tbs); err != nil {
		tb.Fatal(err)
	}
}

// testGroupID is the group id of tree tests.
var testGroupID = []byte("tree test group")

// testContext stands in for the provisional GroupContext in tree tests: any
// encoding that depends on the tree hash exercises the same code.
func testContext(treeHash []byte) ([]byte, error) {
	return append([]byte("context:"), treeHash...), nil
}

// testTree is a tree with its members and their private views.
type testTree struct {
	tree    *ratchetTree
	members []*testMember
	privs   []*treePrivateKeys
}

// buildTestTree makes a tree of n members of suite. With full false it is
// grown by adds only, so every parent node is blank. With full true every
// member then commits once, in leaf order, so every parent node is set and
// the last member holds the keys of its whole direct path.
func buildTestTree(tb testing.TB, suite CipherSuite, n int, full bool, rnd io.Reader) *testTree {
	tb.Helper()
	tree, err := newRatchetTree(suite)
	if err != nil {
		tb.Fatal(err)
	}
	tt := &testTree{tree: tree}
	for i := range n {
		m := newTestMember(tb, suite, rnd, fmt.Sprintf("member %d", i))
		l, err := tree.addLeaf(m.leaf)
		if err != nil {
			tb.Fatal(err)
		}
		tt.members = append(tt.members, m)
		tt.privs = append(tt.privs, newTreePrivateKeys(l, m.encPriv))
	}
	if full {
		for i := range n {
			if _, err := tree.createUpdatePath(rnd, tt.privs[i], &updatePathParams{
				groupID: testGroupID, signer: tt.members[i].signer, context: testContext,
			}); err != nil {
				tb.Fatal(err)
			}
		}
	}
	return tt
}

func TestTreeAddRemoveTruncate(t *testing.T) {
	tt := buildTestTree(t, CipherSuiteMLS128DHKEMX25519AES128GCMSHA256Ed25519, 5, false, testRand(1))
	tree := tt.tree
	if got := tree.numLeaves(); got != 8 {
		t.Fatalf("numLeaves() = %d after 5 adds, want 8", got)
	}
	if got := tree.memberCount(); got != 5 {
		t.Errorf("memberCount() = %d, want 5", got)
	}
	if err := tree.removeLeaf(4); err != nil {
		t.Fatal(err)
	}
	if got := tree.numLeaves(); got != 4 {
		t.Errorf("numLeaves() = %d after removing leaf 4, want 4", got)
	}
	if err := tree.removeLeaf(1); err != nil {
		t.Fatal(err)
	}
	if got := tree.numLeaves(); got != 4 {
		t.Errorf("numLeaves() = %d after removing leaf 1, want 4", got)
	}
	m := newTestMember(t, tree.suite, testRand(2), "new")
	if l, err := tree.addLeaf(m.leaf); err != nil || l != 1 {
		t.Errorf("addLeaf() = %d, %v; want the leftmost blank leaf 1", l, err)
	}
	if err := tree.removeLeaf(1); err != nil {
		t.Fatal(err)
	}
	if err := tree.removeLeaf(3); err != nil {
		t.Fatal(err)
	}
	if err := tree.removeLeaf(2); err != nil {
		t.Fatal(err)
	}
	if got := tree.numLeaves(); got != 1 {
		t.Errorf("numLeaves() = %d with only leaf 0 left, want 1", got)
	}
	if err := tree.removeLeaf(2); err == nil {
		t.Error("removeLeaf(2) outside the tree succeeded")
	}
	if err := tree.updateLeaf(5, m.leaf); err == nil {
		t.Error("updateLeaf(5) outside the tree succeeded")
	}
}

func TestTreeUnmergedLeaves(t *testing.T) {
	suite := CipherSuiteMLS128DHKEMX25519AES128GCMSHA256Ed25519
	tt := buildTestTree(t, suite, 3, true, testRand(3))
	tree := tt.tree
	m := newTestMember(t, suite, testRand(4), "joiner")
	l, err := tree.addLeaf(m.leaf)
	if err != nil || l != 3 {
		t.Fatalf("addLeaf() = %d, %v; want 3", l, err)
	}
	root := tree.root()
	if got := tree.parentNode(root).UnmergedLeaves; !slices.Equal(got, []leafIndex{3}) {
		t.Errorf("root unmerged leaves = %v, want [3]", got)
	}
	if got := tree.resolution(nil, root); !slices.Equal(got, []nodeIndex{root, 6}) {
		t.Errorf("resolution(root) = %v, want [%d 6]", got, root)
	}
	if err := tree.verifyParentHashes(); err != nil {
		t.Errorf("verifyParentHashes() with an unmerged leaf: %v", err)
	}
	if err := tree.checkUnmergedLeaves(); err != nil {
		t.Errorf("checkUnmergedLeaves(): %v", err)
	}
}

// TestTreeHashCache checks that the cached, incrementally invalidated tree
// hashes equal those of the same tree hashed from scratch after every kind
// of change.
func TestTreeHashCache(t *testing.T) {
	suite := CipherSuiteMLS128DHKEMX25519AES128GCMSHA256Ed25519
	rnd := testRand(5)
	tt := buildTestTree(t, suite, 6, true, rnd)
	tree := tt.tree
	check := func(step string) {
		t.Helper()
		data, err := tree.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		fresh, err := parseRatchetTree(suite, data)
		if err != nil {
			t.Fatalf("%s: re-parsing: %v", step, err)
		}
		if got, want := tree.treeHash(), fresh.treeHash(); !bytes.Equal(got, want) {
			t.Errorf("%s: cached tree hash %x, fresh %x", step, got, want)
		}
		if err := tree.verifyParentHashes(); err != nil {
			t.Errorf("%s: %v", step, err)
		}
	}
	check("initial")
	for i := range 3 {
		m := newTestMember(t, suite, rnd, fmt.Sprintf("added %d", i))
		if _, err := tree.addLeaf(m.leaf); err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprintf("add %d", i))
	}
	if err := tree.removeLeaf(2); err != nil {
		t.Fatal(err)
	}
	check("remove 2")
	upd := newTestMember(t, suite, rnd, "member 4")
	if err := tree.updateLeaf(4, upd.leaf); err != nil {
		t.Fatal(err)
	}
	check("update 4")
	if _, err := tree.createUpdatePath(rnd, tt.privs[0], &updatePathParams{
		groupID: testGroupID, signer: tt.members[0].signer, context: testContext, excluded: []leafIndex{6, 7, 8},
	}); err != nil {
		t.Fatal(err)
	}
	check("commit from 0")
	for _, l := range []leafIndex{8, 7, 6} {
		if err := tree.removeLeaf(l); err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprintf("remove %d", l))
	}
}

func TestParseRatchetTreeRejects(t *testing.T) {
	suite := CipherSuiteMLS128DHKEMX25519AES128GCMSHA256Ed25519
	tt := buildTestTree(t, suite, 3, true, testRand(6))
	good := tt.tree.export()
	leaf := good[0]
	parent := good[1]
	withUnmerged := func(ls ...leafIndex) *Node {
		p := *parent.ParentNode
		p.UnmergedLeaves = ls
		return &Node{Type: NodeTypeParent, ParentNode: &p}
	}
	for _, tc := range []struct {
		name string
		rt   RatchetTree
	}{
		{"empty", RatchetTree{}},
		{"trailing blank", append(slices.Clone(good), nil, nil)},
		{"leaf at parent index", RatchetTree{leaf, leaf, leaf}},
		{"parent at leaf index", RatchetTree{parent}},
		{"unmerged leaf outside subtree", RatchetTree{good[0], withUnmerged(2), good[2], good[3], good[4]}},
		{"unmerged leaf blank", RatchetTree{good[0], withUnmerged(1), nil, good[3], good[4]}},
		{"unmerged leaf twice", RatchetTree{good[0], withUnmerged(1, 1), good[2], good[3], good[4]}},
		{"unmerged leaf merged below", RatchetTree{good[0], good[1], good[2], withUnmerged(1), good[4]}},
	} {
		if _, err := importRatchetTree(suite, tc.rt); err == nil {
			t.Errorf("importRatchetTree(%s) succeeded", tc.name)
		}
		if data, err := tc.rt.Marshal(); err == nil {
			if _, err := parseRatchetTree(suite, data); err == nil {
				t.Errorf("parseRatchetTree(%s) succeeded", tc.name)
			}
		}
	}
	if _, err := parseRatchetTree(suite, []byte{0x01}); err == nil {
		t.Error("parseRatchetTree(truncated) succeeded")
	}
	if _, err := importRatchetTree(CipherSuite(0xfff0), good); err == nil {
		t.Error("importRatchetTree with an unknown suite succeeded")
	}
}

func TestVerifyParentHashesRejects(t *testing.T) {
	suite := CipherSuiteMLS128DHKEMX25519AES128GCMSHA256Ed25519
	tt := buildTestTree(t, suite, 5, true, testRand(7))
	if err := tt.tree.verifyParentHashes(); err != nil {
		t.Fatalf("verifyParentHashes() on a good tree: %v", err)
	}
	for x := nodeIndex(1); uint64(x) < uint64(tt.tree.size); x += 2 {
		p := tt.tree.parentNode(x)
		if p == nil {
			continue
		}
		for _, field := range []string{"parent_hash", "encryption_key"} {
			bad := tt.tree.clone()
			np := *p
			if field == "parent_hash" {
				np.ParentHash = append([]byte{1}, p.ParentHash...)
			} else {
				np.EncryptionKey = tt.members[0].leaf.EncryptionKey
			}
			bad.setParent(x, &np)
			if err := bad.verifyParentHashes(); !errors.Is(err, errParentHash) {
				t.Errorf("node %d with a changed %s: verifyParentHashes() = %v, want errParentHash", x, field, err)
			}
		}
	}
	// A leaf whose parent hash was forged breaks the chain too.
	bad := tt.tree.clone()
	leaf := *bad.leaf(1)
	leaf.ParentHash = make([]byte, len(leaf.ParentHash))
	bad.setLeaf(1, &leaf)
	if err := bad.verifyParentHashes(); !errors.Is(err, errParentHash) {
		t.Errorf("leaf 1 with a zero parent hash: verifyParentHashes() = %v, want errParentHash", err)
	}
}

func TestValidateLeafRejects(t *testing.T) {
	suite := CipherSuiteMLS128DHKEMX25519AES128GCMSHA256Ed25519
	cs, _ := suite.suite()
	rnd := testRand(8)
	tt := buildTestTree(t, suite, 3, false, rnd)
	tree := tt.tree
	now := time.Unix(1_700_000_000, 0)
	addCheck := func() *leafValidation {
		return &leafValidation{groupID: testGroupID, source: LeafNodeSourceKeyPackage, now: now, validateCredential: acceptAllCredentials}
	}
	newcomer := newTestMember(t, suite, rnd, "newcomer")
	if err := tree.validateLeaf(newcomer.leaf, addCheck()); err != nil {
		t.Fatalf("validateLeaf(good add) = %v", err)
	}
	// Each case changes a copy of the newcomer's leaf and re-signs it unless
	// the signature itself is the point.
	for _, tc := range []struct {
		name   string
		change func(l *LeafNode, v *leafValidation)
		resign bool
	}{
		{"bad signature", func(l *LeafNode, v *leafValidation) { l.Signature = slices.Clone(l.Signature); l.Signature[0] ^= 1 }, false},
		{"changed after signing", func(l *LeafNode, v *leafValidation) { l.Credential.Identity = []byte("mallory") }, false},
		{"wrong source", func(l *LeafNode, v *leafValidation) { v.source = LeafNodeSourceUpdate }, false},
		{"credential rejected", func(l *LeafNode, v *leafValidation) {
			v.validateCredential = func(Credential, []byte) error { return errors.New("unknown user") }
		}, false},
		{"no validator", func(l *LeafNode, v *leafValidation) { v.validateCredential = nil }, false},
		{"expired", func(l *LeafNode, v *leafValidation) { l.Lifetime.NotAfter = uint64(now.Unix()) - 1 }, true},
		{"not yet valid", func(l *LeafNode, v *leafValidation) { l.Lifetime.NotBefore = uint64(now.Unix()) + 1 }, true},
		{"duplicate encryption key", func(l *LeafNode, v *leafValidation) { l.EncryptionKey = tt.members[1].leaf.EncryptionKey }, true},
		{"duplicate signature key", func(l *LeafNode, v *leafValidation) {
			l.SignatureKey = tt.members[1].leaf.SignatureKey
			l.Signature = nil
		}, false},
		{"own credential type not listed", func(l *LeafNode, v *leafValidation) {
			l.Capabilities.Credentials = []CredentialType{CredentialTypeX509}
		}, true},
		{"extension not listed", func(l *LeafNode, v *leafValidation) {
			l.Extensions = Extensions{{Type: 0x0a0a, Data: []byte{1}}}
		}, true},
		{"required extension unsupported", func(l *LeafNode, v *leafValidation) {
			rc, _ := (&RequiredCapabilities{ExtensionTypes: []ExtensionType{0x0b0b}}).Marshal()
			v.groupExtensions = Extensions{{Type: ExtensionTypeRequiredCapabilities, Data: rc}}
		}, false},
		{"required proposal unsupported", func(l *LeafNode, v *leafValidation) {
			rc, _ := (&RequiredCapabilities{ProposalTypes: []ProposalType{0x0c0c}}).Marshal()
			v.groupExtensions = Extensions{{Type: ExtensionTypeRequiredCapabilities, Data: rc}}
		}, false},
		{"required credential unsupported", func(l *LeafNode, v *leafValidation) {
			rc, _ := (&RequiredCapabilities{CredentialTypes: []CredentialType{CredentialTypeX509}}).Marshal()
			v.groupExtensions = Extensions{{Type: ExtensionTypeRequiredCapabilities, Data: rc}}
		}, false},
	} {
		leaf := *newcomer.leaf
		v := addCheck()
		tc.change(&leaf, v)
		if tc.resign {
			signTestLeaf(t, cs, newcomer.signer, &leaf, nil, 0)
		}
		if err := tree.validateLeaf(&leaf, v); err == nil {
			t.Errorf("validateLeaf(%s) succeeded", tc.name)
		}
	}

	if err := tree.validateLeaf(nil, addCheck()); err == nil {
		t.Error("validateLeaf(nil) succeeded")
	}

	// A credential type the members do not support.
	x509 := *newcomer.leaf
	x509.Credential = Credential{Type: CredentialTypeX509, Certificates: [][]byte{{1}}}
	x509.Capabilities.Credentials = []CredentialType{CredentialTypeBasic, CredentialTypeX509}
	signTestLeaf(t, cs, newcomer.signer, &x509, nil, 0)
	if err := tree.validateLeaf(&x509, addCheck()); err == nil {
		t.Error("validateLeaf(credential type unsupported by members) succeeded")
	}

	// Update: the same signature key is fine, the same encryption key is
	// not, and the signature covers the group and the leaf index.
	upd := *tt.members[1].leaf
	upd.Source = LeafNodeSourceUpdate
	fresh, _ := cs.hpke.KEM.GenerateKeyPair(rnd)
	upd.EncryptionKey = fresh.PublicKey().Bytes()
	signTestLeaf(t, cs, tt.members[1].signer, &upd, testGroupID, 1)
	updCheck := &leafValidation{groupID: testGroupID, index: 1, source: LeafNodeSourceUpdate, replaces: true, validateCredential: acceptAllCredentials}
	if err := tree.validateLeaf(&upd, updCheck); err != nil {
		t.Errorf("validateLeaf(good update) = %v", err)
	}
	wrongIndex := *updCheck
	wrongIndex.index = 2
	if err := tree.validateLeaf(&upd, &wrongIndex); err == nil {
		t.Error("validateLeaf(update signed for leaf 1, checked as leaf 2) succeeded")
	}
	sameKey := upd
	sameKey.EncryptionKey = tt.members[1].leaf.EncryptionKey
	signTestLeaf(t, cs, tt.members[1].signer, &sameKey, testGroupID, 1)
	if err := tree.validateLeaf(&sameKey, updCheck); err == nil {
		t.Error("validateLeaf(update keeping its encryption key) succeeded")
	}

	// The whole tree validates, and refuses a duplicate signature key.
	if err := tree.validateTree(testGroupID, nil, now, acceptAllCredentials); err != nil {
		t.Errorf("validateTree() = %v", err)
	}
	dup := tree.clone()
	twin := *newcomer.leaf
	twin.SignatureKey = tt.members[0].leaf.SignatureKey
	dup.setLeaf(1, &twin)
	if err := dup.validateTree(testGroupID, nil, time.Time{}, acceptAllCredentials); err == nil {
		t.Error("validateTree(duplicate signature key) succeeded")
	}
	if err := tree.validateTree(testGroupID, nil, now, nil); err == nil {
		t.Error("validateTree(no validator) succeeded")
	}
}

func TestApplyUpdatePathRejects(t *testing.T) {
	suite := CipherSuiteMLS128DHKEMX25519AES128GCMSHA256Ed25519
	rnd := testRand(9)
	tt := buildTestTree(t, suite, 6, true, rnd)
	created := tt.tree.clone()
	res, err := created.createUpdatePath(rnd, tt.privs[2].clone(), &updatePathParams{
		groupID: testGroupID, signer: tt.members[2].signer, context: testContext,
	})
	if err != nil {
		t.Fatal(err)
	}
	good := res.path
	v := &leafValidation{groupID: testGroupID, validateCredential: acceptAllCredentials}
	if err := tt.tree.clone().applyUpdatePath(2, good, v); err != nil {
		t.Fatalf("applyUpdatePath(good) = %v", err)
	}
	for _, tc := range []struct {
		name   string
		sender leafIndex
		change func(up *UpdatePath)
	}{
		{"wrong sender", 3, func(up *UpdatePath) {}},
		{"blank sender", 7, func(up *UpdatePath) {}},
		{"node missing", 2, func(up *UpdatePath) { up.Nodes = up.Nodes[:len(up.Nodes)-1] }},
		{"node added", 2, func(up *UpdatePath) { up.Nodes = append(up.Nodes, up.Nodes[0]) }},
		{"node key changed", 2, func(up *UpdatePath) {
			up.Nodes[1].EncryptionKey = tt.members[0].leaf.EncryptionKey
		}},
		{"empty node key", 2, func(up *UpdatePath) { up.Nodes[0].EncryptionKey = nil }},
		{"leaf parent hash changed", 2, func(up *UpdatePath) {
			up.LeafNode.ParentHash = slices.Clone(up.LeafNode.ParentHash)
			up.LeafNode.ParentHash[0] ^= 1
		}},
		{"leaf source update", 2, func(up *UpdatePath) { up.LeafNode.Source = LeafNodeSourceUpdate }},
	} {
		up := *good
		up.Nodes = slices.Clone(good.Nodes)
		tc.change(&up)
		if err := tt.tree.clone().applyUpdatePath(tc.sender, &up, v); err == nil {
			t.Errorf("applyUpdatePath(%s) succeeded", tc.name)
		}
	}
	// A bad parent hash is refused even without leaf validation.
	up := *good
	up.Nodes = slices.Clone(good.Nodes)
	up.Nodes[0].EncryptionKey = tt.members[5].leaf.EncryptionKey
	if err := tt.tree.clone().applyUpdatePath(2, &up, nil); !errors.Is(err, errParentHash) {
		t.Errorf("applyUpdatePath(changed key, no validation) = %v, want errParentHash", err)
	}
}

func TestDecryptUpdatePathRejects(t *testing.T) {
	suite := CipherSuiteMLS128DHKEMX25519AES128GCMSHA256Ed25519
	rnd := testRand(10)
	tt := buildTestTree(t, suite, 5, false, rnd)
	created := tt.tree.clone()
	res, err := created.createUpdatePath(rnd, tt.privs[0].clone(), &updatePathParams{
		groupID: testGroupID, signer: tt.members[0].signer, context: testContext,
	})
	if err != nil {
		t.Fatal(err)
	}
	merged := tt.tree.clone()
	if err := merged.applyUpdatePath(0, res.path, nil); err != nil {
		t.Fatal(err)
	}
	receiver := tt.privs[4]
	before := receiver.clone()
	if cs, err := merged.decryptUpdatePath(receiver.clone(), 0, res.path, nil, res.context); err != nil || !bytes.Equal(cs, res.commitSecret) {
		t.Fatalf("decryptUpdatePath(good) = %x, %v; want %x", cs, err, res.commitSecret)
	}
	// Leaf 4 decrypts at the root, the path's last node.
	last := len(res.path.Nodes) - 1
	for _, tc := range []struct {
		name     string
		context  []byte
		excluded []leafIndex
		change   func(up *UpdatePath)
	}{
		{"wrong context", []byte("other"), nil, func(up *UpdatePath) {}},
		{"ciphertext changed", res.context, nil, func(up *UpdatePath) {
			c := up.Nodes[last].EncryptedPathSecret[0]
			c.Ciphertext = slices.Clone(c.Ciphertext)
			c.Ciphertext[0] ^= 1
			up.Nodes[last].EncryptedPathSecret = []HPKECiphertext{c}
		}},
		{"ciphertext missing", res.context, nil, func(up *UpdatePath) { up.Nodes[last].EncryptedPathSecret = nil }},
		{"receiver excluded", res.context, []leafIndex{4}, func(up *UpdatePath) {}},
	} {
		up := *res.path
		up.Nodes = slices.Clone(res.path.Nodes)
		tc.change(&up)
		if _, err := merged.decryptUpdatePath(receiver, 0, &up, tc.excluded, tc.context); err == nil {
			t.Errorf("decryptUpdatePath(%s) succeeded", tc.name)
		}
		if !sameKeys(receiver, before) {
			t.Errorf("decryptUpdatePath(%s) changed the private keys on failure", tc.name)
		}
	}
	// A path secret that does not derive the tree's keys is refused.
	wrongKeys := merged.clone()
	root := wrongKeys.root()
	np := *wrongKeys.parentNode(root)
	np.EncryptionKey = tt.members[1].leaf.EncryptionKey
	wrongKeys.setParent(root, &np)
	if _, err := wrongKeys.decryptUpdatePath(receiver, 0, res.path, nil, res.context); err == nil {
		t.Error("decryptUpdatePath(derived key differs from the tree) succeeded")
	}
	if _, err := merged.decryptUpdatePath(tt.privs[0].clone(), 0, res.path, nil, res.context); err == nil {
		t.Error("decryptUpdatePath(own path) succeeded")
	}
}

// sameKeys reports whether two private views hold the same keys.
func sameKeys(a, b *treePrivateKeys) bool {
	if a.leaf != b.leaf || len(a.keys) != len(b.keys) {
		return false
	}
	for x, k := range a.keys {
		if o, ok := b.keys[x]; !ok || !bytes.Equal(o.pub, k.pub) {
			return false
		}
	}
	return true
}

// FuzzImportRatchetTree imports arbitrary ratchet_tree extension data: it must
// never panic, a successful import must re-export to the same bytes, and
// hashing, parent-hash verification, validation and path computations must
// return without panicking on whatever was accepted.
func FuzzImportRatchetTree(f *testing.F) {
	var tests []treeValidationVector
	vectors.Load(f, "QPCHAT_MLS_VECTORS", "mls-test-vectors", "tree-validation.json", &tests)
	for i, tc := range tests {
		if i%7 == 0 || tc.CipherSuite == CipherSuiteMLS128DHKEMX25519AES128GCMSHA256Ed25519 {
			f.Add(uint8(tc.CipherSuite), []byte(tc.Tree))
		}
	}
	tt := buildTestTree(f, CipherSuiteMLS128DHKEMX25519AES128GCMSHA256Ed25519, 5, true, testRand(11))
	if _, err := tt.tree.addLeaf(newTestMember(f, tt.tree.suite, testRand(12), "unmerged").leaf); err != nil {
		f.Fatal(err)
	}
	seed, err := tt.tree.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(uint8(1), seed)
	f.Add(uint8(1), []byte{})
	f.Add(uint8(2), []byte{0x01, 0x00})
	f.Fuzz(func(t *testing.T, suiteByte uint8, data []byte) {
		suite := CipherSuite(suiteByte%7 + 1)
		tree, err := parseRatchetTree(suite, data)
		if err != nil {
			if tree != nil {
				t.Fatal("parseRatchetTree returned a tree with an error")
			}
			return
		}
		out, err := tree.Marshal()
		if err != nil {
			t.Fatalf("Marshal() of an imported tree: %v", err)
		}
		if !bytes.Equal(out, data) {
			t.Fatalf("Marshal() = %x, want the input %x", out, data)
		}
		if len(tree.treeHash()) != tree.cs.nh {
			t.Fatal("tree hash has the wrong length")
		}
		_ = tree.verifyParentHashes()
		_ = tree.validateTree(nil, nil, time.Time{}, acceptAllCredentials)
		tree.resolution(nil, tree.root())
		for l := range leafIndex(tree.numLeaves()) {
			tree.filteredDirectPath(l)
		}
	})
}

// TestTreeHashCacheClones changes a tree and its clones at random (leaves
// added, updated and removed, parent nodes set and blanked along direct
// paths, as commits do), hashing only now and then and only some subtrees,
// so that nodes are changed while their cached hashes are in every state,
// and checks after each step that the cached tree hash of every live tree
// equals the hash of a fresh import of it (invalidate's early stop and
// hashes filled in chunks shared between clones).
func TestTreeHashCacheClones(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(3, 4))
	tree, err := newRatchetTree(CipherSuiteMLS128DHKEMX25519AES128GCMSHA256Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	next := 0
	fresh := func() *LeafNode {
		next++
		return indexTestLeaf(next, next, CredentialTypeBasic, CredentialTypeBasic)
	}
	members := func(tr *ratchetTree) []leafIndex {
		var ls []leafIndex
		for x := 0; x < tr.size; x += 2 {
			if tr.at(nodeIndex(x)).leaf != nil {
				ls = append(ls, leafIndex(x/2))
			}
		}
		return ls
	}
	check := func(step int, tr *ratchetTree) {
		t.Helper()
		exp, err := tr.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		imported, err := parseRatchetTree(tr.suite, exp)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(imported.treeHash(), tr.treeHash()) {
			t.Fatalf("step %d: cached tree hash differs from a fresh import's", step)
		}
	}
	// More than one chunk of nodes (chunkSize), so that a direct path
	// crosses chunks that clones share.
	trees := []*ratchetTree{tree}
	for range 150 {
		if _, err := tree.addLeaf(fresh()); err != nil {
			t.Fatal(err)
		}
	}
	for step := range 3000 {
		tr := trees[rng.IntN(len(trees))]
		ls := members(tr)
		switch op := rng.IntN(10); {
		case op < 2 || len(ls) < 100:
			if _, err := tr.addLeaf(fresh()); err != nil {
				t.Fatal(err)
			}
		case op < 3:
			if err := tr.removeLeaf(ls[rng.IntN(len(ls))]); err != nil {
				t.Fatal(err)
			}
		case op < 4:
			l := ls[rng.IntN(len(ls))]
			nl := fresh()
			nl.SignatureKey = tr.leaf(l).SignatureKey
			if err := tr.updateLeaf(l, nl); err != nil {
				t.Fatal(err)
			}
		default:
			// A commit's path: blank the direct path, then set each node
			// twice (key, then parent hash), then replace the leaf.
			l := ls[rng.IntN(len(ls))]
			tr.blankDirectPath(l)
			path, _ := tr.filteredDirectPath(l)
			for _, x := range path {
				tr.setParent(x, &ParentNode{EncryptionKey: fmt.Appendf(nil, "node-%d", rng.Uint64())})
			}
			if rng.IntN(2) == 0 && len(path) > 0 {
				x := path[rng.IntN(len(path))]
				tr.nodeHash(x) // hash part of the path in between
			}
			for _, x := range path {
				np := *tr.at(x).parent
				np.ParentHash = fmt.Appendf(nil, "ph-%d", rng.Uint64())
				tr.setParent(x, &np)
			}
			nl := fresh()
			nl.SignatureKey = tr.leaf(l).SignatureKey
			tr.setLeaf(l, nl)
		}
		// Hash the whole tree or a subtree of any of the trees, now and
		// then.
		switch h := trees[rng.IntN(len(trees))]; rng.IntN(6) {
		case 0:
			h.treeHash()
		case 1:
			h.nodeHash(nodeIndex(rng.IntN(h.size)))
		}
		if rng.IntN(10) == 0 {
			trees = append(trees, tr.clone())
			if len(trees) > 4 {
				trees = trees[1:]
			}
		}
		if rng.IntN(40) == 0 {
			for _, tr := range trees {
				check(step, tr)
			}
		}
	}
	for _, tr := range trees {
		check(-1, tr)
	}
}

// TestChunkOf checks the node layout: every node of a tree of 2^14 leaves
// has its own slot, slots stay below chunkSize-1, and a direct path
// crosses one chunk per band of chunkBits levels.
func TestChunkOf(t *testing.T) {
	const leaves = 1 << 14
	type place struct{ band, chunk, slot int }
	seen := make(map[place]nodeIndex)
	for x := nodeIndex(0); x < 2*leaves-1; x++ {
		b, c, s := chunkOf(x)
		if s >= chunkSize-1 {
			t.Fatalf("node %d in slot %d", x, s)
		}
		if y, dup := seen[place{b, c, s}]; dup {
			t.Fatalf("nodes %d and %d share band %d chunk %d slot %d", y, x, b, c, s)
		}
		seen[place{b, c, s}] = x
	}
	for _, l := range []leafIndex{0, 1, 777, leaves - 1} {
		path, _ := l.node().directPath(leaves)
		chunks := map[[2]int]bool{}
		for _, x := range append(path, l.node()) {
			b, c, _ := chunkOf(x)
			chunks[[2]int{b, c}] = true
		}
		if want := 15/chunkBits + 1; len(chunks) != want {
			t.Errorf("direct path of leaf %d crosses %d chunks, want %d", l, len(chunks), want)
		}
	}
}
