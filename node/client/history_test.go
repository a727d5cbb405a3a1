package client

import (
	"context"
	"strings"
	"testing"
	"time"

	"qpchat/node/store"
)

func TestHistory(t *testing.T) {
	ctx := context.Background()
	n := newFakeNode()
	alice, bob := newTestUser(t, n, "alice"), newTestUser(t, n, "bob")
	alice.c.CreateGroup(ctx, "g", 0)
	alice.c.CreateGroup(ctx, "other", 0)
	alice.c.Invite(ctx, "g", []string{"bob"})
	wantTexts(t, bob)
	for _, s := range []string{"one", "two", "three"} {
		if err := alice.c.Send(ctx, "g", s); err != nil {
			t.Fatal(err)
		}
	}
	alice.c.Send(ctx, "other", "elsewhere")
	wantTexts(t, bob, "alice: one", "alice: two", "alice: three")
	bob.c.Send(ctx, "g", "four")
	// After a restart, history is read from the state (shown and sent
	// messages alike).
	bob.restart(t)
	texts := func(evs []*Event) string {
		var out []string
		for _, e := range evs {
			if e.Kind == EventMessage {
				out = append(out, e.Sender+": "+e.Text)
			}
		}
		return strings.Join(out, "|")
	}
	evs, skipped, err := bob.c.History("g", HistoryOptions{})
	if err != nil || skipped != 0 {
		t.Fatal(err, skipped)
	}
	if got := texts(evs); got != "alice: one|alice: two|alice: three|bob: four" {
		t.Errorf("history = %q", got)
	}
	if evs, _, _ := bob.c.History("g", HistoryOptions{Limit: 2}); texts(evs) != "alice: three|bob: four" {
		t.Errorf("history limit 2 = %q", texts(evs))
	}
	if evs, _, _ := bob.c.History("g", HistoryOptions{Since: time.Now().Add(time.Hour)}); len(evs) != 0 {
		t.Errorf("history since the future = %d entries", len(evs))
	}
	if ah, _, _ := alice.c.History("other", HistoryOptions{}); texts(ah) != "alice: elsewhere" {
		t.Errorf("alice's other = %q", texts(ah))
	}
	if _, _, err := bob.c.History("nonesuch", HistoryOptions{}); err == nil {
		t.Error("history of an unknown group succeeded")
	}
}

func TestHistoryDamagedEntrySkipped(t *testing.T) {
	ctx := context.Background()
	n := newFakeNode()
	alice := newTestUser(t, n, "alice")
	alice.c.CreateGroup(ctx, "g", 0)
	if err := alice.c.st.db.Update(func(tx *store.Tx) error {
		b := tx.Bucket(bEvents)
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		return b.Put(store.SeqKey(seq), []byte{9, 9, 9})
	}); err != nil {
		t.Fatal(err)
	}
	evs, skipped, err := alice.c.History("g", HistoryOptions{})
	if err != nil || skipped != 1 || len(evs) != 1 || evs[0].Kind != EventJoined {
		t.Errorf("History = %d entries, %d skipped, %v; want the creation and 1 skipped", len(evs), skipped, err)
	}
}
