package mls

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"qpchat/internal/vectors"
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
	for i, tc := range tests {
		ok := t.Run(fmt.Sprintf("%d/suite%d", i, tc.CipherSuite), func(t *testing.T) { testTreeKEM(t, &tc, uint64(i)) })
		counts.add(tc.CipherSuite, ok)
	}
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
