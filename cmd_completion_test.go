package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// completions runs `qpchat __complete -- words...` in-process.
func completions(t *testing.T, words ...string) []string {
	t.Helper()
	code, out, errs := runCLI(t, append([]string{"__complete", "--"}, words...)...)
	if code != 0 {
		t.Fatalf("__complete %q: exit %d, stderr %q", words, code, errs)
	}
	return strings.Fields(out)
}

func hasAll(got []string, want ...string) bool {
	set := map[string]bool{}
	for _, g := range got {
		set[g] = true
	}
	for _, w := range want {
		if !set[w] {
			return false
		}
	}
	return true
}

func TestCompletion(t *testing.T) {
	clearQPChatEnv(t)
	state := t.TempDir()
	for _, p := range []string{"work", "home"} {
		if err := os.WriteFile(filepath.Join(state, p+".state"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("QPCHAT_STATE_DIR", state)
	for _, tc := range []struct {
		words []string
		want  []string
		exact bool
	}{
		{[]string{"cl"}, []string{"client"}, true},
		{[]string{""}, []string{"client", "serve", "version", "completion"}, false},
		{[]string{"client", ""}, []string{"send", "recv", "register-user", "ping", "create-group"}, false},
		{[]string{"client", "--pro"}, []string{"--profile"}, true},
		{[]string{"client", "--profile", ""}, []string{"home", "work"}, true},
		{[]string{"client", "--profile=w"}, nil, true}, // no value completion inside --flag=
		{[]string{"client", "--state-dir", t.TempDir(), "--profile", ""}, nil, true},
		{[]string{"serve", "--registration", ""}, []string{"closed", "invite", "open"}, true},
		{[]string{"serve", "ba"}, []string{"backup"}, true},
		{[]string{"serve", "--data", "/x", "re"}, []string{"rekey", "restore"}, true},
		{[]string{"--log-format", ""}, []string{"json", "text"}, true},
		{[]string{"completion", ""}, nil, false},
	} {
		got := completions(t, tc.words...)
		if tc.exact && strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("complete %q = %q, want %q", tc.words, got, tc.want)
		}
		if !tc.exact && !hasAll(got, tc.want...) {
			t.Errorf("complete %q = %q, want at least %q", tc.words, got, tc.want)
		}
		if hasAll(got, "__complete") {
			t.Errorf("complete %q offers the hidden command", tc.words)
		}
	}
}

// TestCompletionScripts: each script is valid for its shell (where the
// shell is installed) and calls the binary's __complete.
func TestCompletionScripts(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		code, out, errs := runCLI(t, "completion", shell)
		if code != 0 || !strings.Contains(out, "qpchat __complete") {
			t.Errorf("completion %s: exit %d, stderr %q, script %q", shell, code, errs, out)
			continue
		}
		bin, err := exec.LookPath(shell)
		if err != nil {
			t.Logf("%s not installed; its script's syntax is not checked", shell)
			continue
		}
		f := filepath.Join(t.TempDir(), "script")
		if err := os.WriteFile(f, []byte(out), 0o600); err != nil {
			t.Fatal(err)
		}
		if b, err := exec.Command(bin, "-n", f).CombinedOutput(); err != nil {
			t.Errorf("%s -n on its completion script: %v\n%s", shell, err, b)
		}
	}
	if code, _, _ := runCLI(t, "completion", "powershell"); code != 80 {
		t.Errorf("completion powershell: exit %d, want 80", code)
	}
}

// TestCompletionOfGroups: with the state passphrase in the environment,
// a group argument completes to the profile's groups.
func TestCompletionOfGroups(t *testing.T) {
	n := startNode(t, "127.0.0.1:0", t.TempDir())
	alice := newCLIUser(t, n, t.TempDir(), "alice")
	alice.run("create-group", "friends")
	alice.run("create-group", "family")
	cmd := exec.Command(qpchatBinary(t), "__complete", "--", "client", "--profile", "alice", "send", "f")
	cmd.Env = alice.env
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(string(out)); strings.Join(got, " ") != "family friends" {
		t.Errorf("group completion = %q, want family friends", got)
	}
}
