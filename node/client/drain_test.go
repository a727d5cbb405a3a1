package client

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestRecvDrainsSizeCutAnswers: the node cuts fetch answers at about
// 1 MiB, so three messages of 400 KB take two answers; one Recv must
// still return all three, and the "after" behind them.
func TestRecvDrainsSizeCutAnswers(t *testing.T) {
	addr, fp := startRealNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	alice, bob := newRealUser(t, addr, fp, "alice"), newRealUser(t, addr, fp, "bob")
	if _, err := alice.c.CreateGroup(ctx, "g", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.c.Invite(ctx, "g", []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.c.Recv(ctx, 0); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range 3 {
		text := strings.Repeat(string(rune('a'+i)), 400_000)
		want = append(want, text)
		if err := alice.c.Send(ctx, "g", text); err != nil {
			t.Fatal(err)
		}
	}
	want = append(want, "after")
	if err := alice.c.Send(ctx, "g", "after"); err != nil {
		t.Fatal(err)
	}
	evs, err := bob.c.Recv(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range evs {
		if e.Kind == EventMessage {
			got = append(got, e.Text)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("one Recv returned %d messages, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("message %d: %d bytes starting %.10q, want %d bytes starting %.10q", i, len(got[i]), got[i], len(want[i]), want[i])
		}
	}
}
