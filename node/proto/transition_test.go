package proto

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"testing"
)

func newKey(t testing.TB) ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pub(k ed25519.PrivateKey) []byte { return k.Public().(ed25519.PublicKey) }

func TestTransitionChain(t *testing.T) {
	k1, k2, k3, evil := newKey(t), newKey(t), newKey(t), newKey(t)
	t12 := SignTransition(k1, "alice", pub(k2))
	t23 := SignTransition(k2, "alice", pub(k3))
	parsed, err := ParseTransition(t12.Marshal())
	if err != nil || !parsed.Verify("alice") || !bytes.Equal(parsed.Marshal(), t12.Marshal()) {
		t.Fatalf("round trip: %v", err)
	}
	if parsed.Verify("bob") {
		t.Error("a transition of alice verifies for bob")
	}
	chain := FollowTransitions("alice", pub(k1), pub(k3), []*Transition{t12, t23})
	if len(chain) != 3 || !bytes.Equal(chain[2], pub(k3)) {
		t.Errorf("chain k1→k3 = %d keys", len(chain))
	}
	if FollowTransitions("alice", pub(k2), pub(k3), []*Transition{t12, t23}) == nil {
		t.Error("a contact who pinned k2 cannot follow to k3")
	}
	// A step signed by a key that is not the pinned one: a forged
	// statement by someone holding only the new key.
	forged := SignTransition(evil, "alice", pub(k3))
	forged.Old = pub(k1)
	if FollowTransitions("alice", pub(k1), pub(k3), []*Transition{forged}) != nil {
		t.Error("a forged transition was followed")
	}
	self := SignTransition(evil, "alice", pub(k3))
	if FollowTransitions("alice", pub(k1), pub(k3), []*Transition{self}) != nil {
		t.Error("a transition from an unpinned key was followed")
	}
	if FollowTransitions("alice", pub(k1), pub(k1), []*Transition{t12}) != nil {
		t.Error("a walk to the pinned key itself is a chain")
	}
	if _, err := ParseTransition(t12.Marshal()[1:]); err == nil {
		t.Error("a short transition parsed")
	}
}

func FuzzParseTransition(f *testing.F) {
	k1, k2 := newKey(f), newKey(f)
	f.Add(SignTransition(k1, "alice", pub(k2)).Marshal())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		tr, err := ParseTransition(b)
		if err != nil {
			return
		}
		if !bytes.Equal(tr.Marshal(), b) {
			t.Fatal("re-encoding differs")
		}
		tr.Verify("alice")
		FollowTransitions("alice", tr.Old, tr.New, []*Transition{tr})
		if _, _, err := ParseDeviceCert(b[:min(len(b), DeviceCertLen)]); err != nil && len(b) >= DeviceCertLen {
			t.Fatal(err)
		}
	})
}
