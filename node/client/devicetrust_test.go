package client

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"

	"qpchat/node/proto"
)

// TestTrustedDevices: the devices an inviter adds are those reachable
// from the first device through valid approvals by trusted devices.
func TestTrustedDevices(t *testing.T) {
	keys := map[string]ed25519.PrivateKey{}
	pub := func(name string) []byte { return keys[name].Public().(ed25519.PublicKey) }
	for _, n := range []string{"first", "phone", "tablet", "thief", "thief2", "bob"} {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		keys[n] = k
	}
	approve := func(by, user, dev string) []byte { return proto.SignApproval(keys[by], user, pub(dev)).Marshal() }
	certified := func(names ...string) map[string]bool {
		m := map[string]bool{}
		for _, n := range names {
			m[string(pub(n))] = true
		}
		return m
	}
	badSig := proto.SignApproval(keys["first"], "alice", pub("thief2"))
	badSig.Signature[0] ^= 1
	for _, tc := range []struct {
		name      string
		first     []byte
		approvals [][]byte
		certified map[string]bool
		want      []string
	}{
		{"first device only", pub("first"), nil, certified("first", "phone", "thief"), []string{"first"}},
		{"a chain", pub("first"), [][]byte{approve("first", "alice", "phone"), approve("phone", "alice", "tablet")},
			certified("first", "phone", "tablet", "thief"), []string{"first", "phone", "tablet"}},
		{"an untrusted approver", pub("first"), [][]byte{approve("thief", "alice", "thief2")},
			certified("first", "thief", "thief2"), []string{"first"}},
		{"a bad signature", pub("first"), [][]byte{badSig.Marshal()}, certified("first", "thief2"), []string{"first"}},
		{"signed for another user", pub("first"), [][]byte{approve("first", "bob", "thief")}, certified("first", "thief"), []string{"first"}},
		{"garbage", pub("first"), [][]byte{[]byte("junk"), nil}, certified("first"), []string{"first"}},
		{"the first device revoked: its approvals stay", pub("first"),
			[][]byte{approve("first", "alice", "phone"), approve("phone", "alice", "tablet")},
			certified("phone", "tablet", "thief"), []string{"phone", "tablet"}},
		{"a revoked approver other than the first cuts its chain", pub("first"),
			[][]byte{approve("first", "alice", "phone"), approve("phone", "alice", "tablet")},
			certified("first", "tablet"), []string{"first"}},
		{"no first device: nothing", nil, [][]byte{approve("first", "alice", "phone")}, certified("first", "phone"), nil},
		{"a cycle", pub("first"), [][]byte{approve("first", "alice", "phone"), approve("phone", "alice", "first")},
			certified("first", "phone"), []string{"first", "phone"}},
	} {
		got := trustedDevices("alice", tc.first, tc.approvals, tc.certified)
		if len(got) != len(tc.want) {
			t.Errorf("%s: %d devices trusted, want %v", tc.name, len(got), tc.want)
			continue
		}
		for _, n := range tc.want {
			if !got[string(pub(n))] {
				t.Errorf("%s: %s is not trusted", tc.name, n)
			}
		}
	}
}
