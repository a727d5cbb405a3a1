package client

import (
	"context"
	"strings"
	"testing"
)

func TestInvitesAndDecline(t *testing.T) {
	ctx := context.Background()
	n := newFakeNode()
	alice, bob, carol := newTestUser(t, n, "alice"), newTestUser(t, n, "bob"), newTestUser(t, n, "carol")
	alice.c.CreateGroup(ctx, "g", 0)
	if _, err := alice.c.Invite(ctx, "g", []string{"bob", "carol"}); err != nil {
		t.Fatal(err)
	}
	invs, err := bob.c.Invites(ctx)
	if err != nil || len(invs) != 1 {
		t.Fatalf("Invites = %+v, %v; want one", invs, err)
	}
	inv := invs[0]
	if inv.Inviter != "alice" || strings.Join(inv.Members, ",") != "alice,carol" || inv.Name != placeholderName(inv.Group) {
		t.Errorf("invite = %+v", inv)
	}
	// Listing applied nothing.
	if gs, _ := bob.c.Groups(ctx); len(gs) != 0 {
		t.Errorf("bob has groups %+v after listing invitations", gs)
	}
	if invs, _ := bob.c.Invites(ctx); len(invs) != 1 {
		t.Errorf("second Invites = %+v", invs)
	}
	res, err := bob.c.Decline(ctx, inv.Name, 0)
	if err != nil || res.Done || res.Group != "g" {
		t.Fatalf("Decline = %+v, %v", res, err)
	}
	if got := memberTexts(t, alice); strings.Join(got, "|") != "left: bob left" {
		t.Errorf("alice saw %q, want bob left", got)
	}
	if got := memberTexts(t, carol); strings.Join(got, "|") != "left: bob left" {
		t.Errorf("carol saw %q, want bob left", got)
	}
	if got := memberTexts(t, bob); strings.Join(got, "|") != "left: you left" {
		t.Errorf("bob saw %q", got)
	}
	if invs, _ := bob.c.Invites(ctx); len(invs) != 0 {
		t.Errorf("Invites after decline = %+v", invs)
	}
	if _, err := bob.c.Decline(ctx, "nonesuch", 0); err == nil {
		t.Error("Decline of an unknown invitation succeeded")
	}
}

func TestJoinOneGroup(t *testing.T) {
	ctx := context.Background()
	n := newFakeNode()
	alice, bob := newTestUser(t, n, "alice"), newTestUser(t, n, "bob")
	alice.c.CreateGroup(ctx, "a", 0)
	alice.c.CreateGroup(ctx, "b", 0)
	alice.c.Invite(ctx, "a", []string{"bob"})
	alice.c.Invite(ctx, "b", []string{"bob"})
	invs, _ := bob.c.Invites(ctx)
	if len(invs) != 2 {
		t.Fatalf("invites = %+v", invs)
	}
	evs, err := bob.c.Join(ctx, invs[1].Name)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if bob.c.GroupName(e.Group) != "b" {
			t.Errorf("join b reported %v of group %q", e.Kind, bob.c.GroupName(e.Group))
		}
	}
	if len(evs) == 0 {
		t.Error("join b reported nothing")
	}
	if _, err := bob.c.Join(ctx, "zzz"); err == nil {
		t.Error("join of an unknown group succeeded")
	}
}
