package mls

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"

	"qpchat/internal/vectors"
	"qpchat/kem"
)

// treeKEMVector mirrors an entry of treekem.json.
type treeKEMVector struct {
	CipherSuite             CipherSuite `json:"cipher_suite"`
	GroupID                 vectors.Hex `json:"group_id"`
	Epoch                   uint64      `json:"epoch"`
	ConfirmedTranscriptHash vectors.Hex `json:"confirmed_transcript_hash"`
	RatchetTree             vectors.Hex `json:"ratchet_tree"`
	LeavesPrivate           []struct {
		Index          uint32      `json:"index"`
		EncryptionPriv vectors.Hex `json:"encryption_priv"`
		SignaturePriv  vectors.Hex `json:"signature_priv"`
		PathSecrets    []struct {
			Node       uint32      `json:"node"`
			PathSecret vectors.Hex `json:"path_secret"`
		} `json:"path_secrets"`
	} `json:"leaves_private"`
	UpdatePaths []struct {
		Sender        uint32        `json:"sender"`
		UpdatePath    vectors.Hex   `json:"update_path"`
		PathSecrets   []vectors.Hex `json:"path_secrets"`
		CommitSecret  vectors.Hex   `json:"commit_secret"`
		TreeHashAfter vectors.Hex   `json:"tree_hash_after"`
	} `json:"update_paths"`
}

// testRand returns a deterministic randomness source for tests.
func testRand(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	return rand.NewChaCha8(s)
}

func TestTreeKEM(t *testing.T) {
	var tests []treeKEMVector
	vectors.Load(t, "QPCHAT_MLS_VECTORS", "mls-test-vectors", "treekem.json", &tests)
	if len(tests) == 0 {
		t.Fatal("treekem.json has no entries")
	}
	counts := newSuiteCounts()
	counts.runParallel(t, len(tests), func(i int) CipherSuite { return tests[i].CipherSuite },
		func(t *testing.T, i int) { testTreeKEM(t, &tests[i], uint64(i)) })
	counts.log(t, "treekem.json")
}

func testTreeKEM(t *testing.T, tc *treeKEMVector, seed uint64) {
	tree, err := parseRatchetTree(tc.CipherSuite, tc.RatchetTree)
	if err != nil {
		t.Fatalf("parseRatchetTree: %v", err)
	}
	contextFor := func(treeHash []byte) []byte {
		gc := GroupContext{
			Version:                 ProtocolVersionMLS10,
			CipherSuite:             tc.CipherSuite,
			GroupID:                 tc.GroupID,
			Epoch:                   tc.Epoch,
			TreeHash:                treeHash,
			ConfirmedTranscriptHash: tc.ConfirmedTranscriptHash,
		}
		b, err := gc.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	// Private states, checked against the tree.
	privs := map[leafIndex]*treePrivateKeys{}
	signers := map[leafIndex]*SignaturePrivateKey{}
	for _, lp := range tc.LeavesPrivate {
		l := leafIndex(lp.Index)
		encPriv, err := tree.cs.hpke.KEM.NewPrivateKey(lp.EncryptionPriv)
		if err != nil {
			t.Fatalf("leaf %d encryption_priv: %v", l, err)
		}
		priv := newTreePrivateKeys(l, encPriv)
		for _, ps := range lp.PathSecrets {
			key, err := tree.deriveNodeKey(ps.PathSecret)
			if err != nil {
				t.Fatal(err)
			}
			priv.set(nodeIndex(ps.Node), key)
		}
		if err := priv.consistent(tree); err != nil {
			t.Errorf("leaf %d private state: %v", l, err)
		}
		privs[l] = priv
		if signers[l], err = ParseSignaturePrivateKey(tc.CipherSuite, lp.SignaturePriv); err != nil {
			t.Fatalf("leaf %d signature_priv: %v", l, err)
		}
	}

	for k, upv := range tc.UpdatePaths {
		sender := leafIndex(upv.Sender)
		up, err := UnmarshalUpdatePath(upv.UpdatePath)
		if err != nil {
			t.Fatalf("update path %d: %v", k, err)
		}
		// Merging checks that the path is parent-hash valid.
		merged := tree.clone()
		if err := merged.applyUpdatePath(sender, up, nil); err != nil {
			t.Errorf("update path %d: applyUpdatePath: %v", k, err)
			continue
		}
		if got := merged.treeHash(); !bytes.Equal(got, upv.TreeHashAfter) {
			t.Errorf("update path %d: tree hash after = %x, want %x", k, got, upv.TreeHashAfter)
		}
		if err := merged.verifyParentHashes(); err != nil {
			t.Errorf("update path %d: merged tree: %v", k, err)
		}
		context := contextFor(merged.treeHash())
		receivers := 0
		for l, priv := range privs {
			if l == sender || tree.leaf(l) == nil {
				continue
			}
			receivers++
			own := priv.clone()
			ps, cs, err := merged.decryptPathSecret(own, sender, up, nil, context)
			if err != nil {
				t.Errorf("update path %d: leaf %d: %v", k, l, err)
				continue
			}
			if int(l) >= len(upv.PathSecrets) || !bytes.Equal(ps, upv.PathSecrets[l]) {
				t.Errorf("update path %d: leaf %d decrypted path secret %x", k, l, ps)
			}
			if !bytes.Equal(cs, upv.CommitSecret) {
				t.Errorf("update path %d: leaf %d commit secret = %x, want %x", k, l, cs, upv.CommitSecret)
			}
			if err := own.consistent(merged); err != nil {
				t.Errorf("update path %d: leaf %d keys after decrypting: %v", k, l, err)
			}
		}
		if receivers == 0 {
			t.Errorf("update path %d: no receiver to check", k)
		}

		// Create our own path from the sender and have every other member
		// process it.
		created := tree.clone()
		own := privs[sender].clone()
		res, err := created.createUpdatePath(testRand(seed*100+uint64(k)), own, &updatePathParams{
			groupID: tc.GroupID,
			signer:  signers[sender],
			context: func(th []byte) ([]byte, error) { return contextFor(th), nil },
		})
		if err != nil {
			t.Fatalf("update path %d: createUpdatePath: %v", k, err)
		}
		if err := own.consistent(created); err != nil {
			t.Errorf("update path %d: creator keys: %v", k, err)
		}
		processed := tree.clone()
		v := &leafValidation{groupID: tc.GroupID, validateCredential: acceptAllCredentials}
		if err := processed.applyUpdatePath(sender, res.path, v); err != nil {
			t.Fatalf("update path %d: applying the created path: %v", k, err)
		}
		if !bytes.Equal(processed.treeHash(), created.treeHash()) {
			t.Errorf("update path %d: receiver and creator disagree on the tree hash", k)
		}
		if err := processed.verifyParentHashes(); err != nil {
			t.Errorf("update path %d: created path: %v", k, err)
		}
		newContext := contextFor(processed.treeHash())
		if !bytes.Equal(newContext, res.context) {
			t.Errorf("update path %d: provisional context differs", k)
		}
		for l, priv := range privs {
			if l == sender || tree.leaf(l) == nil {
				continue
			}
			cs, err := processed.decryptUpdatePath(priv.clone(), sender, res.path, nil, newContext)
			if err != nil {
				t.Errorf("update path %d: leaf %d on created path: %v", k, l, err)
				continue
			}
			if !bytes.Equal(cs, res.commitSecret) {
				t.Errorf("update path %d: leaf %d commit secret = %x, want %x", k, l, cs, res.commitSecret)
			}
		}
	}
}

// simMember is one member's own copy of the tree and its private keys in
// TestTreeKEMSimulation.
type simMember struct {
	m    *testMember
	tree *ratchetTree
	priv *treePrivateKeys
}

// TestTreeKEMSimulation runs random sequences of adds, removes, updates and
// path commits in which every member keeps its own tree: after each commit
// all members agree on the tree hash and the commit secret, joiners derive
// their keys from the path secret a Welcome would carry, every private
// view stays consistent with the tree, and removed members can decrypt
// none of the commit's ciphertexts.
func TestTreeKEMSimulation(t *testing.T) {
	suites := []CipherSuite{
		CipherSuiteMLS128DHKEMX25519AES128GCMSHA256Ed25519,
		CipherSuiteMLS128DHKEMP256AES128GCMSHA256P256,
		CipherSuiteMLS128DHKEMX25519ChaCha20Poly1305SHA256Ed25519,
	}
	steps := 40
	if testing.Short() {
		suites, steps = suites[:1], 15
	}
	// The post-quantum suites plug into the same TreeKEM code.
	for _, pq := range []CipherSuite{
		CipherSuiteMLS128XWingAES128GCMSHA256Ed25519,
		CipherSuiteMLS128HybridX25519MLKEM768AES128GCMSHA256Ed25519,
	} {
		if pq.Supported() {
			suites = append(suites, pq)
		}
	}
	for _, suite := range suites {
		t.Run(fmt.Sprintf("suite%d", suite), func(t *testing.T) { simulateTreeKEM(t, suite, steps) })
	}
}

func simulateTreeKEM(t *testing.T, suite CipherSuite, steps int) {
	rnd := testRand(uint64(suite) * 1000)
	choose := rand.New(rand.NewPCG(uint64(suite), 7))
	cs, _ := suite.suite()
	next := 0
	newMember := func() *testMember {
		next++
		return newTestMember(t, suite, rnd, fmt.Sprintf("sim %d", next))
	}
	first := newMember()
	tree, _ := newRatchetTree(suite)
	if _, err := tree.addLeaf(first.leaf); err != nil {
		t.Fatal(err)
	}
	members := map[leafIndex]*simMember{0: {m: first, tree: tree, priv: newTreePrivateKeys(0, first.encPriv)}}
	live := func() []leafIndex {
		ls := slices.Sorted(maps.Keys(members))
		return ls
	}
	commits := 0
	for step := 0; step < steps; step++ {
		ls := live()
		committer := ls[choose.IntN(len(ls))]
		// Proposals: some adds while small, some removes while large, and
		// an update of another member now and then.
		var adds []*testMember
		for range choose.IntN(4) {
			if len(ls)+len(adds) < 20 {
				adds = append(adds, newMember())
			}
		}
		var removes []leafIndex
		if len(ls) > 3 && choose.IntN(3) == 0 {
			for range 1 + choose.IntN(2) {
				r := ls[choose.IntN(len(ls))]
				if r != committer && !slices.Contains(removes, r) {
					removes = append(removes, r)
				}
			}
		}
		var updater leafIndex
		var updateLeaf *LeafNode
		var updateKey kem.PrivateKey
		if len(ls) > 2 && choose.IntN(4) == 0 {
			updater = ls[choose.IntN(len(ls))]
			if updater != committer && !slices.Contains(removes, updater) {
				updateKey, _ = cs.hpke.KEM.GenerateKeyPair(rnd)
				leaf := *members[updater].tree.leaf(updater)
				leaf.Source = LeafNodeSourceUpdate
				leaf.EncryptionKey = updateKey.PublicKey().Bytes()
				signTestLeaf(t, cs, members[updater].m.signer, &leaf, testGroupID, updater)
				updateLeaf = &leaf
			}
		}

		// Every member applies the proposals to its own tree: updates,
		// removes, then adds (Section 12.3 order).
		var added []leafIndex
		removed := map[leafIndex]*simMember{}
		for _, l := range ls {
			sm := members[l]
			if updateLeaf != nil {
				v := &leafValidation{groupID: testGroupID, index: updater, source: LeafNodeSourceUpdate, replaces: true, validateCredential: acceptAllCredentials}
				if err := sm.tree.validateLeaf(updateLeaf, v); err != nil {
					t.Fatalf("step %d: member %d validating update of %d: %v", step, l, updater, err)
				}
				if err := sm.tree.updateLeaf(updater, updateLeaf); err != nil {
					t.Fatal(err)
				}
			}
			for _, r := range removes {
				if err := sm.tree.removeLeaf(r); err != nil {
					t.Fatal(err)
				}
			}
			var got []leafIndex
			for _, a := range adds {
				v := &leafValidation{groupID: testGroupID, source: LeafNodeSourceKeyPackage, validateCredential: acceptAllCredentials}
				if err := sm.tree.validateLeaf(a.leaf, v); err != nil {
					t.Fatalf("step %d: member %d validating add: %v", step, l, err)
				}
				idx, err := sm.tree.addLeaf(a.leaf)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, idx)
			}
			if added == nil {
				added = got
			} else if !slices.Equal(added, got) {
				t.Fatalf("step %d: members disagree on the new leaves: %v and %v", step, added, got)
			}
		}
		if updateLeaf != nil {
			members[updater].priv = newTreePrivateKeys(updater, updateKey)
		}
		for _, r := range removes {
			removed[r] = members[r]
			delete(members, r)
		}
		for _, sm := range members {
			sm.priv.prune(sm.tree)
		}

		// The committer sends a path when the proposals require one or at
		// random; new members are excluded from its encryption.
		withPath := len(removes) > 0 || updateLeaf != nil || len(adds) == 0 || choose.IntN(2) == 0
		c := members[committer]
		var res *updatePathResult
		if withPath {
			var err error
			res, err = c.tree.createUpdatePath(rnd, c.priv, &updatePathParams{
				groupID: testGroupID, signer: c.m.signer, context: testContext, excluded: added,
			})
			if err != nil {
				t.Fatalf("step %d: createUpdatePath: %v", step, err)
			}
			commits++
			for l, sm := range members {
				if l == committer {
					continue
				}
				v := &leafValidation{groupID: testGroupID, validateCredential: acceptAllCredentials}
				if err := sm.tree.applyUpdatePath(committer, res.path, v); err != nil {
					t.Fatalf("step %d: member %d applying path: %v", step, l, err)
				}
				ctx, _ := testContext(sm.tree.treeHash())
				cs, err := sm.tree.decryptUpdatePath(sm.priv, committer, res.path, added, ctx)
				if err != nil {
					t.Fatalf("step %d: member %d decrypting path from %d: %v", step, l, committer, err)
				}
				if !bytes.Equal(cs, res.commitSecret) {
					t.Fatalf("step %d: member %d commit secret differs", step, l)
				}
			}
			// Removed members hold no key that opens any ciphertext.
			for r, sm := range removed {
				for _, node := range res.path.Nodes {
					for k := range node.EncryptedPathSecret {
						for _, key := range sm.priv.keys {
							if _, err := c.tree.decryptWithLabel(key.priv, labelUpdatePathNode, res.context, &node.EncryptedPathSecret[k]); err == nil {
								t.Fatalf("step %d: removed member %d decrypted a path secret", step, r)
							}
						}
					}
				}
			}
		}

		// New members join from the committer's tree, as from a Welcome.
		for k, a := range adds {
			l := added[k]
			if _, dup := members[l]; dup {
				t.Fatalf("step %d: leaf %d added twice", step, l)
			}
			data, err := c.tree.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			jt, err := parseRatchetTree(suite, data)
			if err != nil {
				t.Fatalf("step %d: joiner importing tree: %v", step, err)
			}
			if err := jt.verifyParentHashes(); err != nil {
				t.Fatalf("step %d: joiner: %v", step, err)
			}
			if err := jt.validateTree(testGroupID, nil, time.Time{}, acceptAllCredentials); err != nil {
				t.Fatalf("step %d: joiner: %v", step, err)
			}
			priv := newTreePrivateKeys(l, a.encPriv)
			if res != nil {
				if ps := res.pathSecretFor(committer, l); ps != nil {
					if err := jt.joinPathSecret(priv, committer, ps); err != nil {
						t.Fatalf("step %d: joiner %d: %v", step, l, err)
					}
				}
			}
			members[l] = &simMember{m: a, tree: jt, priv: priv}
		}

		want := c.tree.treeHash()
		for l, sm := range members {
			if !bytes.Equal(sm.tree.treeHash(), want) {
				t.Fatalf("step %d: member %d has another tree hash", step, l)
			}
			if err := sm.priv.consistent(sm.tree); err != nil {
				t.Fatalf("step %d: member %d: %v", step, l, err)
			}
		}
		if err := c.tree.verifyParentHashes(); err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
	}
	if commits == 0 {
		t.Fatal("the simulation made no path commit")
	}
	t.Logf("suite %d: %d steps, %d path commits, %d members at the end", suite, steps, commits, len(members))
}

// TestCreateUpdatePathDeterministic checks that an UpdatePath is a function
// of the randomness alone, although large ones are encrypted in parallel.
func TestCreateUpdatePathDeterministic(t *testing.T) {
	tt := buildTestTree(t, CipherSuiteMLS128DHKEMX25519AES128GCMSHA256Ed25519, 40, false, testRand(13))
	var paths [2][]byte
	for i := range paths {
		res, err := tt.tree.clone().createUpdatePath(testRand(14), tt.privs[3].clone(), &updatePathParams{
			groupID: testGroupID, signer: tt.members[3].signer, context: testContext,
		})
		if err != nil {
			t.Fatal(err)
		}
		if paths[i], err = res.path.Marshal(); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			// Every other member decrypts it.
			merged := tt.tree.clone()
			if err := merged.applyUpdatePath(3, res.path, nil); err != nil {
				t.Fatal(err)
			}
			for l := range leafIndex(40) {
				if l == 3 {
					continue
				}
				if cs, err := merged.decryptUpdatePath(tt.privs[l].clone(), 3, res.path, nil, res.context); err != nil || !bytes.Equal(cs, res.commitSecret) {
					t.Errorf("member %d: decryptUpdatePath = %x, %v", l, cs, err)
				}
			}
		}
	}
	if !bytes.Equal(paths[0], paths[1]) {
		t.Error("two UpdatePaths from the same randomness differ")
	}
	// Leaf signatures of a tree this size are verified in parallel; a bad
	// one anywhere is still found.
	if err := tt.tree.validateTree(testGroupID, nil, time.Time{}, acceptAllCredentials); err != nil {
		t.Errorf("validateTree() = %v", err)
	}
	for _, l := range []leafIndex{0, 19, 20, 39} {
		bad := tt.tree.clone()
		leaf := *bad.leaf(l)
		leaf.Signature = slices.Clone(leaf.Signature)
		leaf.Signature[3] ^= 0x10
		bad.setLeaf(l, &leaf)
		if err := bad.validateTree(testGroupID, nil, time.Time{}, acceptAllCredentials); err == nil {
			t.Errorf("validateTree() with a bad signature on leaf %d succeeded", l)
		}
	}
}

func TestTreePrivateKeysRoundTrip(t *testing.T) {
	tt := buildTestTree(t, CipherSuiteMLS128DHKEMX25519AES128GCMSHA256Ed25519, 6, true, testRand(15))
	own := tt.privs[5]
	if len(own.keys) < 2 {
		t.Fatalf("member 5 holds %d keys, want its leaf and path", len(own.keys))
	}
	enc, err := marshalWith(own.marshal)
	if err != nil {
		t.Fatal(err)
	}
	s := cryptobyte.String(enc)
	got, err := unmarshalTreePrivateKeys(tt.tree.suite, &s)
	if err != nil || !s.Empty() {
		t.Fatalf("unmarshalTreePrivateKeys() = %v, %d bytes left", err, len(s))
	}
	if !sameKeys(got, own) {
		t.Error("private keys changed in a round trip")
	}
	if err := got.consistent(tt.tree); err != nil {
		t.Error(err)
	}
	if enc2, _ := marshalWith(got.marshal); !bytes.Equal(enc, enc2) {
		t.Error("re-encoding differs")
	}
	for cut := range len(enc) {
		s := cryptobyte.String(enc[:cut])
		if k, err := unmarshalTreePrivateKeys(tt.tree.suite, &s); err == nil && s.Empty() {
			t.Errorf("truncated to %d bytes: decoded %v", cut, k)
		}
	}
}

// FuzzTreePrivateKeys decodes arbitrary persisted private keys: no panic,
// and a decoded value re-encodes stably.
func FuzzTreePrivateKeys(f *testing.F) {
	tt := buildTestTree(f, CipherSuiteMLS128DHKEMX25519AES128GCMSHA256Ed25519, 4, true, testRand(16))
	for _, own := range tt.privs {
		enc, err := marshalWith(own.marshal)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(0), enc)
	}
	f.Add(uint8(1), []byte{0, 0, 0, 1, 0})
	f.Fuzz(func(t *testing.T, suiteByte uint8, data []byte) {
		suite := CipherSuite(suiteByte%7 + 1)
		s := cryptobyte.String(data)
		k, err := unmarshalTreePrivateKeys(suite, &s)
		if err != nil {
			if k != nil {
				t.Fatal("unmarshalTreePrivateKeys returned keys with an error")
			}
			return
		}
		enc, err := marshalWith(k.marshal)
		if err != nil {
			t.Fatal(err)
		}
		s2 := cryptobyte.String(enc)
		k2, err := unmarshalTreePrivateKeys(suite, &s2)
		if err != nil || !s2.Empty() {
			t.Fatalf("re-decoding %x: %v", enc, err)
		}
		if enc2, _ := marshalWith(k2.marshal); !bytes.Equal(enc, enc2) {
			t.Fatalf("re-encoding is not stable: %x then %x", enc, enc2)
		}
	})
}
