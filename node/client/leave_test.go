package client

import (
	"context"
	"strings"
	"testing"
)

// leftTexts syncs u and returns its membership events as text.
func memberTexts(t *testing.T, u *testUser) []string {
	t.Helper()
	evs, err := u.c.Recv(context.Background(), 0)
	if err != nil {
		t.Fatalf("%s: Recv: %v", u.name, err)
	}
	var out []string
	for _, e := range evs {
		switch e.Kind {
		case EventLeft:
			out = append(out, "left: "+e.Text)
		case EventMembers:
			out = append(out, "members: "+e.Sender+" "+e.Text)
		case EventRemoved:
			out = append(out, "removed: "+e.Text)
		case EventRefused:
			out = append(out, "REFUSED: "+e.Text)
		}
	}
	return out
}

func threeMembers(t *testing.T) (alice, bob, carol *testUser) {
	t.Helper()
	ctx := context.Background()
	n := newFakeNode()
	alice, bob, carol = newTestUser(t, n, "alice"), newTestUser(t, n, "bob"), newTestUser(t, n, "carol")
	if _, err := alice.c.CreateGroup(ctx, "g", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.c.Invite(ctx, "g", []string{"bob", "carol"}); err != nil {
		t.Fatal(err)
	}
	wantTexts(t, bob)
	wantTexts(t, carol)
	return alice, bob, carol
}

func TestLeave(t *testing.T) {
	ctx := context.Background()
	alice, bob, carol := threeMembers(t)
	res, err := bob.c.Leave(ctx, "g", false, 0)
	if err != nil || res.Done {
		t.Fatalf("Leave = %+v, %v; want pending", res, err)
	}
	// Alice processes the proposal and commits it at once; Carol too,
	// but her commit is stale and finds nothing left to do.
	if got := memberTexts(t, alice); strings.Join(got, "|") != "left: bob left" {
		t.Errorf("alice saw %q, want bob left", got)
	}
	if got := memberTexts(t, carol); strings.Join(got, "|") != "left: bob left" {
		t.Errorf("carol saw %q, want bob left", got)
	}
	if got := memberTexts(t, bob); strings.Join(got, "|") != "left: you left" {
		t.Errorf("bob saw %q, want you left", got)
	}
	if gi := groupNamed(t, bob, "g"); !gi.Removed {
		t.Errorf("bob's group = %+v, want removed", gi)
	}
	if res, err := bob.c.Leave(ctx, "g", false, 0); err != nil || !res.Done {
		t.Errorf("Leave again = %+v, %v, want done", res, err)
	}
	if err := alice.c.Send(ctx, "g", "after bob"); err != nil {
		t.Fatal(err)
	}
	wantTexts(t, carol, "alice: after bob")
	wantTexts(t, bob)
	if ms, _ := alice.c.Members(ctx, "g"); len(ms) != 2 {
		t.Errorf("alice sees %d members, want 2", len(ms))
	}
}

// TestLeaveLosesEpoch: another commit wins the epoch of the leave
// proposal without covering it; the leaver proposes again in the next
// epoch and is removed then.
func TestLeaveLosesEpoch(t *testing.T) {
	ctx := context.Background()
	alice, bob, carol := threeMembers(t)
	fired := false
	carol.c.cfg.BeforeSubmit = func() {
		if fired {
			return
		}
		fired = true
		// Carol's Update is prepared; Bob proposes to leave in the same
		// epoch before she submits it.
		if res, err := bob.c.Leave(ctx, "g", false, 0); err != nil || res.Done {
			t.Errorf("Leave = %+v, %v", res, err)
		}
	}
	if _, err := carol.c.Update(ctx, "g"); err != nil {
		t.Fatal(err)
	}
	if !fired {
		t.Fatal("the race was not forced")
	}
	// Alice applies the proposal, then Carol's commit: the proposal
	// is void, nothing to commit.
	if got := memberTexts(t, alice); len(got) != 0 {
		t.Errorf("alice saw %q before bob proposed again", got)
	}
	// Bob (a restarted client) sees the new epoch and proposes again.
	bob.restart(t)
	res, err := bob.c.Leave(ctx, "g", false, 0)
	if err != nil || res.Done {
		t.Fatalf("Leave = %+v, %v; want pending", res, err)
	}
	if got := memberTexts(t, alice); strings.Join(got, "|") != "left: bob left" {
		t.Errorf("alice saw %q, want bob left", got)
	}
	if got := memberTexts(t, carol); strings.Join(got, "|") != "left: bob left" {
		t.Errorf("carol saw %q, want bob left", got)
	}
	if got := memberTexts(t, bob); strings.Join(got, "|") != "left: you left" {
		t.Errorf("bob saw %q, want you left", got)
	}
	ga, _ := alice.c.loadGroupByName(ctx, "g")
	gc, _ := carol.c.loadGroupByName(ctx, "g")
	if len(ga.g.Members()) != 2 || ga.g.Epoch() != gc.g.Epoch() {
		t.Errorf("alice: %d members, epochs %d and %d", len(ga.g.Members()), ga.g.Epoch(), gc.g.Epoch())
	}
}

// TestLeaveAllDevices: a user with two devices leaves from one; both go.
func TestLeaveAllDevices(t *testing.T) {
	ctx := context.Background()
	n := newFakeNode()
	alice, bob := newTestUser(t, n, "alice"), newTestUser(t, n, "bob")
	bob2 := newTestDevice(t, n, "bob", bob.userKey, "bob2")
	// bob's first device approves the second, so alice's invite adds both
	// (devicetrust.go).
	if err := bob.c.publishApproval(ctx, bob.c.signApproval(bob2.c.DeviceKey())); err != nil {
		t.Fatal(err)
	}
	alice.c.CreateGroup(ctx, "g", 0)
	if k, err := alice.c.Invite(ctx, "g", []string{"bob"}); err != nil || k != 2 {
		t.Fatalf("Invite = %d, %v; want both of bob's devices", k, err)
	}
	wantTexts(t, bob)
	wantTexts(t, bob2)
	if res, err := bob.c.Leave(ctx, "g", true, 0); err != nil || res.Done {
		t.Fatalf("Leave = %+v, %v", res, err)
	}
	got := memberTexts(t, alice)
	if strings.Join(got, "|") != "left: bob left|left: bob left" {
		t.Errorf("alice saw %q, want bob left twice", got)
	}
	if got := memberTexts(t, bob); strings.Join(got, "|") != "left: you left" {
		t.Errorf("bob saw %q", got)
	}
	if got := memberTexts(t, bob2); strings.Join(got, "|") != "left: you left" {
		t.Errorf("bob2 saw %q", got)
	}
	if ms, _ := alice.c.Members(ctx, "g"); len(ms) != 1 {
		t.Errorf("alice sees %d members, want 1", len(ms))
	}
}

// TestLeftDeviceNotReAdded: a device that left alone is not added back
// by the approval flow of the user's other device, unless approved again.
func TestLeftDeviceNotReAdded(t *testing.T) {
	ctx := context.Background()
	n := newFakeNode()
	alice, bob := newTestUser(t, n, "alice"), newTestUser(t, n, "bob")
	bob2 := newTestDevice(t, n, "bob", bob.userKey, "bob2")
	// bob's first device approves the second, so alice's invite adds both
	// (devicetrust.go).
	if err := bob.c.publishApproval(ctx, bob.c.signApproval(bob2.c.DeviceKey())); err != nil {
		t.Fatal(err)
	}
	alice.c.CreateGroup(ctx, "g", 0)
	if k, err := alice.c.Invite(ctx, "g", []string{"bob"}); err != nil || k != 2 {
		t.Fatalf("Invite = %d, %v; want both of bob's devices", k, err)
	}
	wantTexts(t, bob)
	wantTexts(t, bob2)
	if _, err := bob2.c.Leave(ctx, "g", false, 0); err != nil {
		t.Fatal(err)
	}
	want := "left: your device " + Fingerprint(bob2.c.DeviceKey()) + " left"
	if got := memberTexts(t, bob); strings.Join(got, "|") != want {
		t.Errorf("bob saw %q, want %q", got, want)
	}
	if got := memberTexts(t, bob2); strings.Join(got, "|") != "left: you left" {
		t.Errorf("bob2 saw %q", got)
	}
	// An approval of bob2 that bob had not yet carried out (as after a
	// lost connection) is resumed by the next sync: it skips g.
	if err := bob.c.putApproval(bob.c.signApproval(bob2.c.DeviceKey()), false); err != nil {
		t.Fatal(err)
	}
	memberTexts(t, bob)
	if ms, _ := bob.c.Members(ctx, "g"); len(ms) != 2 {
		t.Errorf("bob sees %d members after the resumed approval, want 2 (bob2 was added back)", len(ms))
	}
	// Nor does an invite of bob's own name.
	if k, err := bob.c.Invite(ctx, "g", []string{"bob"}); err != nil || k != 0 {
		t.Errorf("Invite(bob) = %d, %v; want 0 (bob2 left)", k, err)
	}
	// Approved again, it may be added again.
	if err := bob.c.forgetLeft(bob2.c.DeviceKey()); err != nil {
		t.Fatal(err)
	}
	if k, err := bob.c.Invite(ctx, "g", []string{"bob"}); err != nil || k != 1 {
		t.Errorf("Invite(bob) after a new approval = %d, %v; want 1", k, err)
	}
}

func TestLeaveAlone(t *testing.T) {
	ctx := context.Background()
	alice := newTestUser(t, newFakeNode(), "alice")
	alice.c.CreateGroup(ctx, "g", 0)
	if _, err := alice.c.Leave(ctx, "g", true, 0); err == nil || !strings.Contains(err.Error(), "nobody else") {
		t.Errorf("Leave of a group of one = %v, want an error", err)
	}
	if _, err := alice.c.Leave(ctx, "nonesuch", true, 0); err == nil {
		t.Error("Leave of an unknown group succeeded")
	}
}
