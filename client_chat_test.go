package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// shellQuote quotes s for sh.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// TestClientChatTmux drives `qpchat client chat` in a real terminal: Bob
// types a line that Alice receives, and Alice's message appears in Bob's
// chat while it waits for input.
func TestClientChatTmux(t *testing.T) {
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		if os.Getenv("QPCHAT_REQUIRE_VECTORS") != "" {
			t.Fatal("tmux is required (QPCHAT_REQUIRE_VECTORS is set)")
		}
		t.Skip("tmux not installed")
	}
	dir := t.TempDir()
	n := startNode(t, "127.0.0.1:0", filepath.Join(dir, "data"))
	state := filepath.Join(dir, "state")
	alice, bob := newCLIUser(t, n, state, "alice"), newCLIUser(t, n, state, "bob")
	alice.run("create-group", "g")
	alice.run("invite", "g", "bob")
	bob.run("join")

	socket := fmt.Sprintf("qpchat-test-%d", os.Getpid())
	tm := func(args ...string) (string, error) {
		out, err := exec.Command(tmux, append([]string{"-L", socket, "-f", "/dev/null"}, args...)...).CombinedOutput()
		return string(out), err
	}
	var sh strings.Builder
	sh.WriteString("env -i")
	for _, kv := range bob.env {
		sh.WriteString(" " + shellQuote(kv))
	}
	sh.WriteString(" " + shellQuote(qpchatBinary(t)) + " client --profile bob chat g; sleep 30")
	if out, err := tm("new-session", "-d", "-s", "chat", "-x", "160", "-y", "40", sh.String()); err != nil {
		t.Fatalf("tmux new-session: %v: %s", err, out)
	}
	t.Cleanup(func() { tm("kill-server") })
	screen := func() string { s, _ := tm("capture-pane", "-p", "-t", "chat"); return s }
	waitFor := func(what string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !strings.Contains(screen(), what) {
			if time.Now().After(deadline) {
				t.Fatalf("the chat never showed %q; screen:\n%s", what, screen())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitFor("chatting in g")

	// Bob types a line; Alice receives it.
	if out, err := tm("send-keys", "-t", "chat", "hi from the terminal", "Enter"); err != nil {
		t.Fatalf("send-keys: %v: %s", err, out)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := alice.messages()
		if len(got) == 1 && got[0] == "g bob: hi from the terminal" {
			break
		}
		if len(got) > 0 || time.Now().After(deadline) {
			t.Fatalf("alice received %q; bob's screen:\n%s", got, screen())
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Alice replies; it appears live in Bob's chat.
	alice.run("send", "g", "reply from alice")
	waitFor("[g] alice: reply from alice")
	tm("send-keys", "-t", "chat", "/quit", "Enter")

	// register-user without --server-fingerprint shows the node's key on
	// the terminal and goes on only once the user types yes.
	sh.Reset()
	sh.WriteString("env -i")
	for _, kv := range bob.env {
		sh.WriteString(" " + shellQuote(kv))
	}
	sh.WriteString(" QPCHAT_PASSWORD=dave " + shellQuote(qpchatBinary(t)) + " client --profile dave register-user dave; sleep 30")
	if out, err := tm("new-session", "-d", "-s", "reg", "-x", "160", "-y", "40", sh.String()); err != nil {
		t.Fatalf("tmux new-session: %v: %s", err, out)
	}
	regScreen := func() string { s, _ := tm("capture-pane", "-p", "-J", "-t", "reg"); return s }
	deadline = time.Now().Add(60 * time.Second)
	for !strings.Contains(regScreen(), "Type yes to trust it") {
		if time.Now().After(deadline) {
			t.Fatalf("register-user did not ask to confirm the key; screen:\n%s", regScreen())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(regScreen(), n.fingerprint) {
		t.Errorf("the confirmation does not show the node's fingerprint %s:\n%s", n.fingerprint, regScreen())
	}
	tm("send-keys", "-t", "reg", "yes", "Enter")
	for !strings.Contains(regScreen(), "registered dave") {
		if time.Now().After(deadline) {
			t.Fatalf("register-user did not finish; screen:\n%s", regScreen())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestClientChatPiped: chat also works with stdin from a pipe.
func TestClientChatPiped(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, "127.0.0.1:0", filepath.Join(dir, "data"))
	state := filepath.Join(dir, "state")
	alice, bob := newCLIUser(t, n, state, "alice"), newCLIUser(t, n, state, "bob")
	alice.run("create-group", "g")
	alice.run("invite", "g", "bob")
	alice.run("send", "g", "waiting for you")
	cmd := exec.Command(qpchatBinary(t), append([]string{"client"}, bob.args([]string{"chat", "g"})...)...)
	cmd.Env, cmd.Stdin = bob.env, strings.NewReader("first line\nsecond line\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("chat: %v: %s", err, out)
	}
	if !strings.Contains(string(out), "[g] alice: waiting for you") {
		t.Errorf("piped chat showed %q", out)
	}
	alice.wantMessages("g bob: first line", "g bob: second line")
}

// TestClientSecretsOnTerminal: without QPCHAT_PASSWORD and
// QPCHAT_PASSPHRASE the client asks for both on the terminal, without
// echo, and a message piped into stdin still goes out (the prompts read
// /dev/tty, not stdin).
func TestClientSecretsOnTerminal(t *testing.T) {
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		if os.Getenv("QPCHAT_REQUIRE_VECTORS") != "" {
			t.Fatal("tmux is required (QPCHAT_REQUIRE_VECTORS is set)")
		}
		t.Skip("tmux not installed")
	}
	dir := t.TempDir()
	n := startNode(t, "127.0.0.1:0", filepath.Join(dir, "data"))
	state := filepath.Join(dir, "state")
	alice := newCLIUser(t, n, state, "alice")

	const passphrase, password = "erin-state-secret", "erin-password-secret"
	var sh strings.Builder
	sh.WriteString("env -i")
	for _, kv := range clientEnv(t, n, state) {
		if !strings.HasPrefix(kv, "QPCHAT_PASSPHRASE=") {
			sh.WriteString(" " + shellQuote(kv))
		}
	}
	env := sh.String()
	bin := shellQuote(qpchatBinary(t))
	sh.Reset()
	fmt.Fprintf(&sh, "%s %s client --profile erin register-user erin --server-fingerprint %s && ", env, bin, n.fingerprint)
	fmt.Fprintf(&sh, "%s %s client --profile erin register-state && ", env, bin)
	fmt.Fprintf(&sh, "echo 'from a pipe' | %s %s client --profile erin dm alice; echo EXIT=$?; sleep 30", env, bin)

	socket := fmt.Sprintf("qpchat-test-secrets-%d", os.Getpid())
	tm := func(args ...string) (string, error) {
		out, err := exec.Command(tmux, append([]string{"-L", socket, "-f", "/dev/null"}, args...)...).CombinedOutput()
		return string(out), err
	}
	if out, err := tm("new-session", "-d", "-s", "sec", "-x", "200", "-y", "50", sh.String()); err != nil {
		t.Fatalf("tmux new-session: %v: %s", err, out)
	}
	t.Cleanup(func() { tm("kill-server") })
	screen := func() string { s, _ := tm("capture-pane", "-p", "-J", "-t", "sec"); return s }
	// answer waits for the count-th appearance of prompt and types text.
	answer := func(prompt string, count int, text string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for strings.Count(screen(), prompt) < count {
			if time.Now().After(deadline) {
				t.Fatalf("no prompt %q (#%d); screen:\n%s", prompt, count, screen())
			}
			time.Sleep(100 * time.Millisecond)
		}
		if out, err := tm("send-keys", "-t", "sec", text, "Enter"); err != nil {
			t.Fatalf("send-keys: %v: %s", err, out)
		}
	}
	// register-user: a new state file (passphrase twice), a new password
	// (twice); register-state: both once; dm: the passphrase.
	answer("State passphrase:", 1, passphrase)
	answer("Repeat the state passphrase:", 1, passphrase)
	answer("Password:", 1, password)
	answer("Repeat the password:", 1, password)
	answer("State passphrase:", 2, passphrase)
	answer("Password:", 2, password)
	answer("State passphrase:", 3, passphrase)
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(screen(), "EXIT=") {
		if time.Now().After(deadline) {
			t.Fatalf("the commands did not finish; screen:\n%s", screen())
		}
		time.Sleep(100 * time.Millisecond)
	}
	s := screen()
	if !strings.Contains(s, "EXIT=0") {
		t.Fatalf("a command failed; screen:\n%s", s)
	}
	if strings.Contains(s, passphrase) || strings.Contains(s, password) {
		t.Errorf("a secret was echoed; screen:\n%s", s)
	}
	alice.wantMessages("dm:erin erin: from a pipe")
}
