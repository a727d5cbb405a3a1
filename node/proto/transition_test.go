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

func keysEqual(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func TestTransitionRoundTrip(t *testing.T) {
	k1, k2 := newKey(t), newKey(t)
	t12 := SignTransition(k1, k2, "alice", 1)
	b := t12.Marshal()
	if len(b) != TransitionLen {
		t.Fatalf("len(Marshal()) = %d, want %d", len(b), TransitionLen)
	}
	parsed, err := ParseTransition(b)
	if err != nil || !parsed.Verify("alice") || !bytes.Equal(parsed.Marshal(), b) || parsed.Seq != 1 {
		t.Fatalf("round trip: %+v, %v", parsed, err)
	}
	if parsed.Verify("bob") {
		t.Error("a transition of alice verifies for bob")
	}
	for _, n := range []int{0, TransitionLen - 1, TransitionLen + 1, 128} {
		if _, err := ParseTransition(make([]byte, n)); err == nil {
			t.Errorf("ParseTransition of %d bytes succeeded", n)
		}
	}
	// Each field is covered by both signatures.
	for i, mutate := range []func(x *Transition){
		func(x *Transition) { x.Seq++ },
		func(x *Transition) { x.Seq = 0 },
		func(x *Transition) { x.New = pub(newKey(t)) },
		func(x *Transition) { x.Old = pub(newKey(t)) },
		func(x *Transition) { x.OldSignature = bytes.Clone(x.NewSignature) },
		func(x *Transition) { x.NewSignature = bytes.Clone(x.OldSignature) },
		func(x *Transition) { x.New = x.Old },
	} {
		x, _ := ParseTransition(b)
		mutate(x)
		if x.Verify("alice") {
			t.Errorf("mutation %d verifies", i)
		}
	}
}

func TestTransitionChain(t *testing.T) {
	k1, k2, k3, evil := newKey(t), newKey(t), newKey(t), newKey(t)
	t12 := SignTransition(k1, k2, "alice", 1)
	t23 := SignTransition(k2, k3, "alice", 2)
	want := [][]byte{pub(k1), pub(k2), pub(k3)}
	for _, ts := range [][]*Transition{{t12, t23}, {t23, t12}} {
		if chain := FollowTransitions("alice", pub(k1), pub(k3), ts); !keysEqual(chain, want) {
			t.Errorf("chain k1→k3 = %d keys, want 3", len(chain))
		}
	}
	if FollowTransitions("alice", pub(k2), pub(k3), []*Transition{t12, t23}) == nil {
		t.Error("a contact who pinned k2 cannot follow to k3")
	}
	if FollowTransitions("alice", pub(k1), pub(k1), []*Transition{t12}) != nil {
		t.Error("a walk to the pinned key itself is a chain")
	}
	if FollowTransitions("alice", pub(k1), pub(k3), []*Transition{t23}) != nil {
		t.Error("a chain with a missing step was followed")
	}
	// A step signed by another key than the pinned one (a forged
	// statement by someone holding only the new key), and one whose new
	// key did not sign (someone holding only the old key hands the name
	// to a key of theirs).
	forged := SignTransition(evil, k3, "alice", 1)
	forged.Old = pub(k1)
	if FollowTransitions("alice", pub(k1), pub(k3), []*Transition{forged}) != nil {
		t.Error("a transition not signed by the pinned key was followed")
	}
	unsigned := SignTransition(k1, k3, "alice", 1)
	unsigned.NewSignature = SignWithLabel(evil, LabelKeyTransitionNew, TransitionContent("alice", pub(k1), pub(k3), 1))
	if FollowTransitions("alice", pub(k1), pub(k3), []*Transition{unsigned}) != nil {
		t.Error("a transition not signed by the new key was followed")
	}
	// Sequence numbers must follow each other.
	gap := SignTransition(k2, k3, "alice", 3)
	if FollowTransitions("alice", pub(k1), pub(k3), []*Transition{t12, gap}) != nil {
		t.Error("a chain with a gap in its numbers was followed")
	}
	// A fork: k1 signed two changes, to k2 and to evil. Whoever holds k1
	// besides its user made one of them: nothing is followed.
	fork := SignTransition(k1, evil, "alice", 1)
	if FollowTransitions("alice", pub(k1), pub(k3), []*Transition{t12, t23, fork}) != nil {
		t.Error("a chain through a fork was followed")
	}
	if FollowTransitions("alice", pub(k1), pub(k3), []*Transition{t12, t12, t23}) == nil {
		t.Error("a statement sent twice breaks the chain")
	}
	// A cycle ends.
	t31 := SignTransition(k3, k1, "alice", 3)
	if FollowTransitions("alice", pub(k1), pub(evil), []*Transition{t12, t23, t31}) != nil {
		t.Error("a walk to an unreachable key found a chain")
	}
}

func TestTransitionPredecessors(t *testing.T) {
	k1, k2, k3, evil := newKey(t), newKey(t), newKey(t), newKey(t)
	t12 := SignTransition(k1, k2, "alice", 1)
	t23 := SignTransition(k2, k3, "alice", 2)
	if got := Predecessors("alice", pub(k3), []*Transition{t12, t23}); !keysEqual(got, [][]byte{pub(k2), pub(k1)}) {
		t.Errorf("Predecessors(k3) = %d keys, want k2, k1", len(got))
	}
	if got := Predecessors("alice", pub(k2), []*Transition{t23, t12}); !keysEqual(got, [][]byte{pub(k1)}) {
		t.Errorf("Predecessors(k2) = %d keys, want k1", len(got))
	}
	// Someone holding a key of their own says it came before k3: only
	// k3 can say so, and it did not sign.
	claim := SignTransition(evil, newKey(t), "alice", 1)
	claim.New = pub(k3)
	if got := Predecessors("alice", pub(k3), []*Transition{claim}); len(got) != 0 {
		t.Errorf("a predecessor k3 did not name: %d keys", len(got))
	}
	// Two predecessors of one key: inconsistent, none is taken.
	other := SignTransition(evil, k2, "alice", 1)
	if got := Predecessors("alice", pub(k3), []*Transition{t12, t23, other}); len(got) != 0 {
		t.Errorf("Predecessors with two predecessors of k2 = %d keys", len(got))
	}
	if got := Predecessors("alice", pub(k3), []*Transition{SignTransition(k1, k2, "alice", 5), t23}); !keysEqual(got, [][]byte{pub(k2)}) {
		t.Errorf("Predecessors across a gap in the numbers = %d keys, want k2 only", len(got))
	}
	if LastSeq([][]byte{t23.Marshal(), t12.Marshal(), []byte("junk")}) != 2 || LastSeq(nil) != 0 {
		t.Error("LastSeq")
	}
}

func FuzzParseTransition(f *testing.F) {
	k1, k2 := newKey(f), newKey(f)
	f.Add(SignTransition(k1, k2, "alice", 1).Marshal())
	f.Add(SignTransition(k2, k1, "alice", 1<<63).Marshal())
	f.Add([]byte{})
	f.Add(make([]byte, 128))
	f.Fuzz(func(t *testing.T, b []byte) {
		tr, err := ParseTransition(b)
		if err != nil {
			if tr != nil {
				t.Fatal("a failed parse returned a value")
			}
			return
		}
		if !bytes.Equal(tr.Marshal(), b) {
			t.Fatal("re-encoding differs")
		}
		ok := tr.Verify("alice")
		chain := FollowTransitions("alice", tr.Old, tr.New, []*Transition{tr})
		if (chain != nil) != ok {
			t.Fatalf("Verify = %v but FollowTransitions = %d keys", ok, len(chain))
		}
		if p := Predecessors("alice", tr.New, []*Transition{tr, tr}); (len(p) == 1) != ok {
			t.Fatalf("Verify = %v but Predecessors = %d keys", ok, len(p))
		}
		if _, _, err := ParseDeviceCert(b[:min(len(b), DeviceCertLen)]); err != nil && len(b) >= DeviceCertLen {
			t.Fatal(err)
		}
	})
}
