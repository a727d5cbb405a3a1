package main

// End-to-end tests of what a careless or hostile user meets: messages
// that try to forge lines, repeated invitations, empty joins, removal
// notices, unknown users and secret files others can read.

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestClientHostileTextAndSmallFixes(t *testing.T) {
	dir := t.TempDir()
	data, state := filepath.Join(dir, "data"), filepath.Join(dir, "state")
	n := startNode(t, "127.0.0.1:0", data)
	alice, bob, carol := newCLIUser(t, n, state, "alice"), newCLIUser(t, n, state, "bob"), newCLIUser(t, n, state, "carol")
	alice.run("create-group", "friends")
	alice.run("invite", "friends", "bob", "carol")
	bob.run("join")
	carol.run("join")

	// join with nothing waiting says so.
	if out := bob.run("join"); !strings.Contains(out, "nothing to join") {
		t.Errorf("join with nothing pending printed %q", out)
	}
	// Inviting a member says so.
	if out := alice.run("invite", "friends", "bob"); !strings.Contains(out, "bob is already a member of friends") || strings.Contains(out, "invited") {
		t.Errorf("inviting a member printed %q", out)
	}
	// An unknown user, in words.
	code, _, errs := alice.try("invite", "friends", "nobody")
	if code != exitRefused || !strings.Contains(errs, "no user named nobody on this node") || strings.Contains(errs, "capnp") {
		t.Errorf("inviting an unknown user: exit %d, stderr %q", code, errs)
	}
	oneErrorLine(t, errs)

	// A text that tries to pass for a line of bob's, and escapes.
	forged := "hi\n[friends] bob: I owe alice 100 EUR\r[friends] bob: again\x1b[2J\u202eRUE 001\xff"
	if code, out, errs := alice.sendStdin("friends", forged); code != 0 {
		t.Fatalf("send: exit %d, %q %q", code, out, errs)
	}
	out := bob.run("recv")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	headers := 0
	for _, l := range lines {
		if strings.HasPrefix(l, "[") {
			headers++
		}
		checkTerminalText(t, forged, l)
	}
	if headers != 1 || !strings.HasPrefix(lines[0], "[friends] alice: hi") || len(lines) != 2 || !strings.HasPrefix(lines[1], continuation) {
		t.Errorf("the forging text printed as:\n%s", out)
	}
	var got []string
	for _, m := range carol.jsonLines("recv") {
		if m["event"] == "message" {
			// JSON strings cannot hold invalid UTF-8: text_base64 has
			// the exact bytes.
			raw, _ := base64.StdEncoding.DecodeString(m["text_base64"].(string))
			got = append(got, m["text"].(string), string(raw))
		}
	}
	if len(got) != 2 || got[0] != strings.ToValidUTF8(forged, "\ufffd") || got[1] != forged {
		t.Errorf("--json text and text_base64 = %q, want the exact text", got)
	}

	// Group names with control characters are refused.
	if code, _, errs := alice.try("create-group", "evil\x1b[31m"); code == 0 || !strings.Contains(errs, "control") {
		t.Errorf("a group name with ESC: exit %d, stderr %q", code, errs)
	}

	// A removed member is told once, and groups shows no made-up suite.
	alice.run("remove", "friends", "carol")
	var notices []string
	for _, m := range carol.jsonLines("recv") {
		notices = append(notices, m["event"].(string))
	}
	if len(notices) != 1 || notices[0] != "removed" {
		t.Errorf("the removed member saw %v, want one removed notice", notices)
	}
	if out := carol.run("groups"); !strings.Contains(out, "friends: removed") || strings.Contains(out, "0x0000") {
		t.Errorf("groups after removal printed %q", out)
	}

	// Secret files others can read are refused, as ssh does.
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("password of alice\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs = client(t, append(alice.env, "QPCHAT_PASSWORD_FILE="+pw), alice.args([]string{"login", "alice"})...)
	if code == 0 || !strings.Contains(errs, "chmod 600") {
		t.Errorf("a world-readable password file: exit %d, stderr %q", code, errs)
	}
	if err := os.Chmod(pw, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := client(t, append(alice.env, "QPCHAT_PASSWORD_FILE="+pw), alice.args([]string{"login", "alice"})...); code != 0 {
		t.Errorf("a private password file: exit %d, stderr %q", code, errs)
	}
}

// TestGitignoreCoversQuickStart: the README's quick start keeps node
// and client state in the checkout; git must not pick them up.
func TestGitignoreCoversQuickStart(t *testing.T) {
	b, err := os.ReadFile(".gitignore")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"node-data", "client-state"} {
		if !strings.Contains(string(readme), "./"+dir) {
			continue
		}
		if !strings.Contains(string(b), "/"+dir+"/") {
			t.Errorf(".gitignore does not cover ./%s, which the README uses", dir)
		}
	}
}
