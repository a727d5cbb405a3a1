package main

import (
	"os"
	"os/exec"
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

// killedAt runs a command of u that stops at step (QPCHAT_TEST_HOLD_AT)
// and kills it there with SIGKILL, as a crash would.
func (u *cliUser) killedAt(step string, args ...string) {
	u.t.Helper()
	hold := filepath.Join(u.t.TempDir(), "hold")
	cmd := exec.Command(qpchatBinary(u.t), append([]string{"client"}, u.args(args)...)...)
	cmd.Env = append(u.env, "QPCHAT_TEST_HOLD_AT="+step+":"+hold)
	var b syncBuffer
	cmd.Stdout, cmd.Stderr = &b, &b
	if err := cmd.Start(); err != nil {
		u.t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	for deadline := time.Now().Add(time.Minute); ; {
		if _, err := os.Stat(hold + ".ready"); err == nil {
			break
		}
		select {
		case err := <-exited:
			u.t.Fatalf("%s ended (%v) before %s: %s", strings.Join(args, " "), err, step, b.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-exited
			u.t.Fatalf("%s never reached %s: %s", strings.Join(args, " "), step, b.String())
		}
	}
	cmd.Process.Kill()
	<-exited
	if !strings.Contains(b.String(), "test-only switch QPCHAT_TEST_HOLD_AT is set") {
		u.t.Errorf("%s did not warn about QPCHAT_TEST_HOLD_AT: %s", strings.Join(args, " "), b.String())
	}
}

// TestClientAccountCommandsKilled kills change-password after the node
// took the new password and before the profile saved the new key, and
// delete-account after the node deleted the account and before the
// profile was removed: the next command completes each. Alice's other
// device and the name then fail with clear errors.
func TestClientAccountCommandsKilled(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, "127.0.0.1:0", filepath.Join(dir, "data"))
	state := filepath.Join(dir, "state")
	alice, bob := newCLIUser(t, n, state, "alice"), newCLIUser(t, n, state, "bob")
	alice.run("create-group", "g")
	alice.run("create-group", "solo")
	alice.run("invite", "g", "bob")
	bob.run("join", "g")
	alice2 := alice.otherDevice("alice2")
	oldKey := alice.jsonLines("fetch-key", "alice")[0]["user_key"]

	alice.env = append(alice.env, "QPCHAT_NEW_PASSWORD=the new password")
	alice.killedAt("password-changed", "change-password")
	// The profile still holds the old key; the next command follows the
	// transition the node holds and says so.
	code, _, errs := alice.try("send", "g", "after the crash")
	if code != 0 || !strings.Contains(errs, "your password was changed") {
		t.Fatalf("send after the killed change-password: exit %d, %q", code, errs)
	}
	res := alice.jsonLines("fetch-key", "alice")
	if len(res) == 0 || res[0]["status"] != "own key" || res[0]["user_key"] == oldKey {
		t.Errorf("alice's key after the repair: %v (old %v)", res, oldKey)
	}
	bob.wantMessages("g alice: after the crash")
	if res := bob.jsonLines("fetch-key", "alice"); len(res) == 0 || res[0]["status"] != "pinned" || res[0]["user_key"] == oldKey {
		t.Errorf("bob's fetch-key alice: %v", res)
	}
	// The change is done: the old password no longer works for another.
	if code, _, errs := alice.try("change-password"); code != 2 || !strings.Contains(errs, "wrong user name or password") {
		t.Errorf("change-password with the old password: exit %d, %q", code, errs)
	}
	alice.env = append(alice.env, "QPCHAT_PASSWORD=the new password")

	alice.killedAt("account-deleted", "delete-account", "--yes", "--wait", "0s")
	if code, _, errs := alice.try("recv"); code != 5 || !strings.Contains(errs, "account was deleted") {
		t.Errorf("recv after the killed delete-account: exit %d, %q", code, errs)
	}
	// Run again, it removes the profile (no password is needed: the
	// node told this device its account is gone).
	alice.env = append(alice.env, "QPCHAT_PASSWORD=not the password")
	res = alice.jsonLines("delete-account", "--yes")
	if len(res) != 1 || res[0]["deleted"] != true || res[0]["already_deleted"] != true {
		t.Errorf("delete-account again printed %v", res)
	}
	if code, _, _ := alice.try("groups"); code == 0 {
		t.Error("alice's profile survived delete-account")
	}
	// Bob commits her pending removal from g.
	if events := strings.Join(bob.events(), "|"); !strings.Contains(events, "alice left") {
		t.Errorf("bob's events after the deletion: %q", events)
	}
	if code, _, errs := alice2.try("recv"); code != 5 || !strings.Contains(errs, "account was deleted") {
		t.Errorf("alice's other device after the deletion: exit %d, %q", code, errs)
	}
	if res := alice2.jsonLines("delete-account", "--yes"); len(res) != 1 || res[0]["already_deleted"] != true {
		t.Errorf("delete-account on alice's other device printed %v", res)
	}
	fresh := &cliUser{t: t, name: "alice", profile: "alice-new", env: append(clientEnv(t, n, state), "QPCHAT_PASSWORD=the new password")}
	if code, _, errs := fresh.try("login", "alice"); code != 2 || !strings.Contains(errs, "wrong user name or password") {
		t.Errorf("login to the deleted account: exit %d, %q", code, errs)
	}
}
