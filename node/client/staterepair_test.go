package client

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"qpchat/node/store"
)

// flipRaw flips a byte of the sealed value under key in a top-level
// bucket of a closed state file, as a bad disk would.
func flipRaw(t *testing.T, path string, bucket, key []byte) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		v := b.Get(key)
		if v == nil {
			t.Fatalf("no record %x in %s", key, bucket)
		}
		v = bytes.Clone(v)
		v[len(v)/2] ^= 0x08
		return b.Put(key, v)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// firstKey returns the first key of a top-level bucket of an open state.
func firstKey(t *testing.T, st *State, bucket []byte) []byte {
	t.Helper()
	var k []byte
	st.db.View(func(tx *store.Tx) error {
		k, _, _ = tx.Bucket(bucket).KeyCursor().First()
		return nil
	})
	if k == nil {
		t.Fatalf("bucket %s is empty", bucket)
	}
	return k
}

// TestDamagedStateRepaired: damaged history entries, a damaged group, a
// damaged KeyPackage key and a damaged queue position cost what they
// held: Check repairs them, says what was lost in the history, and the
// profile goes on working in its other group.
func TestDamagedStateRepaired(t *testing.T) {
	ctx := context.Background()
	n := newFakeNode()
	alice, bob := newTestUser(t, n, "alice"), newTestUser(t, n, "bob")
	for _, g := range []string{"g", "h"} {
		alice.c.CreateGroup(ctx, g, 0)
		alice.c.Invite(ctx, g, []string{"bob"})
		alice.c.Send(ctx, g, "hello "+g)
	}
	wantTexts(t, bob, "alice: hello g", "alice: hello h")
	if err := bob.c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	gid := groupNamed(t, bob, "g").ID
	var groupKey []byte
	bob.st.db.View(func(tx *store.Tx) error { groupKey = tx.Ident("group", gid); return nil })
	kpKey := firstKey(t, bob.st, bKPs)
	bob.st.Close()

	flipRaw(t, bob.path, bEvents, store.SeqKey(2))
	flipRaw(t, bob.path, bGroups, groupKey)
	flipRaw(t, bob.path, bKPs, kpKey)
	flipRaw(t, bob.path, bProfile, kLastSeq)

	st, err := OpenState(StateOptions{Path: bob.path, Passphrase: []byte("pw")})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Check(); err != nil {
		t.Fatalf("Check of a state with repairable damage: %v", err)
	}
	before, _ := st.Events(0, 0)
	if err := st.Check(); err != nil {
		t.Fatalf("second Check: %v", err)
	}
	if after, _ := st.Events(0, 0); len(after) != len(before) {
		t.Errorf("a second Check added %d history entries", len(after)-len(before))
	}
	st.Close()

	bob.open(t)
	// Told once, in the history.
	evs, err := bob.c.Recv(ctx, 0)
	if err != nil {
		t.Fatalf("Recv after the repair: %v", err)
	}
	var lost []string
	for _, e := range evs {
		if e.Kind == EventLost {
			lost = append(lost, e.Text)
		}
	}
	all := strings.Join(lost, "\n")
	for _, want := range []string{"1 history entry was damaged", "#2", "state of 1 group was damaged", "1 unused KeyPackage key was damaged", "position in this device's queue"} {
		if !strings.Contains(all, want) {
			t.Errorf("the history does not say %q; it says:\n%s", want, all)
		}
	}
	// The history entry's place holds a placeholder.
	hist, err := bob.st.Events(1, 1)
	if err != nil || len(hist) != 1 || hist[0].Kind != EventLost {
		t.Errorf("history entry 2 after the repair: %+v, %v", hist, err)
	}
	// Group g is gone, h works.
	gs, err := bob.c.Groups(ctx)
	if err != nil || len(gs) != 1 || gs[0].Name != "h" {
		t.Fatalf("groups after the repair: %+v, %v; want h only", gs, err)
	}
	alice.c.Send(ctx, "h", "still here")
	got := bob.texts(t)
	if len(got) == 0 || got[len(got)-1] != "alice: still here" {
		t.Errorf("bob received %q in h after the repair", got)
	}
	if err := bob.c.Send(ctx, "h", "me too"); err != nil {
		t.Errorf("bob sends in h after the repair: %v", err)
	}
	wantTexts(t, alice, "bob: me too")
}

// TestDamagedProfileIsFatal: a damaged device key leaves nothing to work
// with; Check says so.
func TestDamagedProfileIsFatal(t *testing.T) {
	n := newFakeNode()
	bob := newTestUser(t, n, "bob")
	bob.st.Close()
	flipRaw(t, bob.path, bProfile, kDevice)
	st, err := OpenState(StateOptions{Path: bob.path, Passphrase: []byte("pw")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Check(); !errors.Is(err, store.ErrCorrupt) {
		t.Errorf("Check with a damaged device key: %v, want ErrCorrupt", err)
	}
}

// TestDamagedGroupNameRebuilt: a damaged name record is dropped and the
// group's name is restored from its record.
func TestDamagedGroupNameRebuilt(t *testing.T) {
	ctx := context.Background()
	n := newFakeNode()
	alice := newTestUser(t, n, "alice")
	alice.c.CreateGroup(ctx, "g", 0)
	key := firstKey(t, alice.st, bNames)
	alice.st.Close()
	flipRaw(t, alice.path, bNames, key)
	st, err := OpenState(StateOptions{Path: alice.path, Passphrase: []byte("pw")})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Check(); err != nil {
		t.Fatal(err)
	}
	st.Close()
	alice.open(t)
	if g := groupNamed(t, alice, "g"); g.Members != 1 {
		t.Errorf("group g after its name was rebuilt: %+v", g)
	}
}
