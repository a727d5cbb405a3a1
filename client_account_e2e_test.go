package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestClientChangePasswordAndDeleteAccount: alice changes her password
// with the CLI; bob, who pinned her old key, follows without a warning,
// her other device picks the new key up, the old password stops working.
// Then she deletes the account: her groups see her leave, the node
// forgets her, and her profile is gone.
func TestClientChangePasswordAndDeleteAccount(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, "127.0.0.1:0", filepath.Join(dir, "data"))
	state := filepath.Join(dir, "state")
	alice, bob := newCLIUser(t, n, state, "alice"), newCLIUser(t, n, state, "bob")
	alice.run("create-group", "g")
	alice.run("invite", "g", "bob")
	bob.run("join", "g")
	alice2 := alice.otherDevice("alice2")
	alice.run("approve-device", alice2.device)
	alice2.run("join")
	bob.run("recv")
	if res := bob.jsonLines("fetch-key", "alice"); len(res) == 0 || res[0]["status"] != "pinned" {
		t.Fatalf("bob's fetch-key alice before the change: %v", res)
	}

	code, out, errs := alice.try("change-password")
	if code == 0 {
		t.Fatalf("change-password without a new password succeeded: %s", out)
	}
	if !strings.Contains(errs, "new password") {
		t.Errorf("change-password without a new password said %q", errs)
	}
	alice.env = append(alice.env, "QPCHAT_NEW_PASSWORD=the new password")
	res := alice.jsonLines("change-password")
	if len(res) != 1 || res[0]["user"] != "alice" || res[0]["user_key"] == res[0]["old_user_key"] {
		t.Fatalf("change-password printed %v", res)
	}
	newKey := res[0]["user_key"]
	alice.env = append(alice.env, "QPCHAT_PASSWORD=the new password")

	// Bob follows the transition: no CHANGED, no verify needed.
	if res := bob.jsonLines("fetch-key", "alice"); len(res) == 0 || res[0]["status"] != "pinned" || res[0]["user_key"] != newKey {
		t.Errorf("bob's fetch-key alice after the change: %v", res)
	}
	alice.run("send", "g", "new password, same alice")
	bob.wantMessages("g alice: new password, same alice")
	alice2.wantMessages("g alice: new password, same alice")
	// Alice's other device learnt the new key on its first command.
	if res := alice2.jsonLines("fetch-key", "alice"); len(res) == 0 || res[0]["status"] != "own key" || res[0]["user_key"] != newKey {
		t.Errorf("alice2's fetch-key alice: %v", res)
	}
	alice2.run("send", "g", "from the second device")
	bob.wantMessages("g alice: from the second device")

	// The old password no longer logs in; the new one does.
	old := &cliUser{t: t, name: "alice", profile: "alice-old", env: append(clientEnv(t, n, state), "QPCHAT_PASSWORD=password of alice")}
	if code, out, _ := old.try("login", "alice"); code == 0 {
		t.Errorf("login with the old password succeeded: %s", out)
	}
	fresh := &cliUser{t: t, name: "alice", profile: "alice-new", env: append(clientEnv(t, n, state), "QPCHAT_PASSWORD=the new password")}
	fresh.run("login", "alice")

	// Deleting needs a confirmation on a terminal, or --yes.
	if code, _, errs := alice.try("delete-account"); code == 0 || !strings.Contains(errs, "--yes") {
		t.Errorf("delete-account without a terminal: exit %d, %q", code, errs)
	}
	res = alice.jsonLines("delete-account", "--yes")
	if len(res) != 1 || res[0]["deleted"] != true {
		t.Fatalf("delete-account printed %v", res)
	}
	var seen []string
	for deadline := time.Now().Add(30 * time.Second); ; {
		out := bob.run("recv")
		seen = append(seen, out)
		if strings.Contains(out, "alice left") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bob never saw alice leave: %q", seen)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if out := bob.run("members", "g"); strings.Contains(out, "alice") {
		t.Errorf("alice is still a member of g: %s", out)
	}
	if code, _, _ := alice.try("groups"); code == 0 {
		t.Error("alice's profile survived delete-account")
	}
	if code, _, _ := bob.try("fetch-key", "alice"); code == 0 {
		t.Error("the node still knows alice after delete-account")
	}
	if code, _, _ := alice2.try("send", "g", "ghost"); code == 0 {
		t.Error("alice's other device still sends after delete-account")
	}
}
