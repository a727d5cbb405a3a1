package main

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// pendingDevices returns the fingerprints devices lists as pending.
func pendingDevices(u *cliUser) []string {
	var out []string
	for _, d := range u.jsonLines("devices") {
		if d["pending"] == true {
			out = append(out, d["device"].(string))
		}
	}
	return out
}

func groupNames(u *cliUser) []string {
	var out []string
	for _, g := range u.jsonLines("groups") {
		out = append(out, g["group"].(string))
	}
	return out
}

// TestClientApproveDevice: a second device of alice gets none of her
// groups until one of her devices approves it; then it receives in the
// group, and bob sees which device was added. A device that the devices
// alice approved approve follows where the approver is not a member. A
// device certified with the password alone is never added.
func TestClientApproveDevice(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, "127.0.0.1:0", filepath.Join(dir, "data"))
	state := filepath.Join(dir, "state")
	alice, bob := newCLIUser(t, n, state, "alice"), newCLIUser(t, n, state, "bob")
	alice.run("create-group", "g")
	alice.run("invite", "g", "bob")
	bob.run("join")

	phone := &cliUser{t: t, name: "alice", profile: "alice-phone", env: alice.env}
	phone.run("login", "alice")
	out := phone.run("register-state")
	phone.device = strings.Fields(strings.SplitN(out, "\n", 2)[0])[1]
	if !strings.Contains(out, "approve-device "+phone.device) {
		t.Errorf("register-state of a second device does not say how to approve it:\n%s", out)
	}
	if got := pendingDevices(alice); !slices.Equal(got, []string{phone.device}) {
		t.Errorf("alice's devices lists %v as pending, want the phone %s", got, phone.device)
	}
	alice.run("send", "g", "before approval")
	phone.run("join")
	if got := groupNames(phone); len(got) != 0 {
		t.Errorf("the unapproved phone is in %v", got)
	}
	phone.wantMessages()

	res := alice.jsonLines("approve-device", phone.device)
	if len(res) != 1 || res[0]["approved"] != phone.device || len(res[0]["groups"].([]any)) != 1 {
		t.Fatalf("approve-device printed %v", res)
	}
	if got := pendingDevices(alice); len(got) != 0 {
		t.Errorf("still pending after approval: %v", got)
	}
	if out := bob.run("recv"); !strings.Contains(out, "[g] alice added a device "+phone.device) {
		t.Errorf("bob was not told which device alice added:\n%s", out)
	}
	phone.run("join")
	alice.run("send", "g", "after approval")
	phone.wantMessages("g alice: after approval")
	bob.wantMessages("g alice: after approval")

	// A thief who learnt the password certifies a device: it stays
	// pending everywhere and joins nothing, not even when alice invites
	// herself.
	thief := &cliUser{t: t, name: "alice", profile: "alice-thief", env: alice.env}
	thief.run("login", "alice")
	thief.setupDevice()
	alice.run("create-group", "k")
	alice.run("invite", "k", "bob")
	bob.run("join")
	alice.run("invite", "k", "alice") // adds the approved phone only
	if got := pendingDevices(alice); !slices.Equal(got, []string{thief.device}) {
		t.Errorf("alice's devices lists %v as pending, want the thief's %s", got, thief.device)
	}

	// The phone approves a tablet: the phone adds it to g, and alice's
	// first device, which approved the phone, adds it to k as well.
	tablet := alice.otherDevice("alice-tablet")
	if res := phone.jsonLines("approve-device", tablet.device); len(res) != 1 || res[0]["approved"] != tablet.device {
		t.Fatalf("approve-device on the phone printed %v", res)
	}
	alice.run("recv")
	tablet.run("join")
	if got := groupNames(tablet); !slices.Equal(got, []string{"g", "k"}) {
		t.Errorf("the tablet is in %v, want g and k", got)
	}
	alice.run("send", "k", "to k")
	tablet.wantMessages("k alice: to k")

	thief.run("join")
	if got := groupNames(thief); len(got) != 0 {
		t.Errorf("the thief's device is in %v", got)
	}
	thief.wantMessages()
	for _, m := range alice.jsonLines("members", "k") {
		if m["device"] == thief.device {
			t.Error("the thief's device is a member of k")
		}
	}

	// Bob's invitations add alice's approved devices only (their
	// approvals are published to the node) and name the skipped one.
	bob.run("create-group", "b")
	out = bob.run("invite", "b", "alice")
	if !strings.Contains(out, "skipped 1 unapproved device of alice ("+thief.device+")") ||
		!strings.Contains(out, "invited alice to b (3 device(s))") {
		t.Errorf("bob's invite of alice printed:\n%s", out)
	}
	bob.run("create-group", "b2")
	var skipped []any
	for _, l := range bob.jsonLines("invite", "b2", "alice") {
		if l["skipped_unapproved"] != nil {
			skipped = l["skipped_unapproved"].([]any)
		}
	}
	if len(skipped) != 1 || skipped[0] != thief.device {
		t.Errorf("invite --json skipped %v, want the thief's device", skipped)
	}
	if out := bob.run("fetch-key", "alice"); !strings.Contains(out, "skipped 1 unapproved device of alice ("+thief.device+")") {
		t.Errorf("fetch-key alice printed:\n%s", out)
	}
	tablet.run("join")
	if got := groupNames(tablet); !slices.Equal(got, []string{"b", "b2", "g", "k"}) {
		t.Errorf("the tablet is in %v, want b, b2, g and k", got)
	}
	thief.run("join")
	if got := groupNames(thief); len(got) != 0 {
		t.Errorf("after bob's invitations the thief's device is in %v", got)
	}
}
