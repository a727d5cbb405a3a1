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

// TestClientChatPromptKeepsTypedText: in a terminal, a message that
// arrives while Bob is typing is printed above his prompt, and the half
// typed line stays intact on the prompt and goes out whole.
func TestClientChatPromptKeepsTypedText(t *testing.T) {
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

	socket := fmt.Sprintf("qpchat-test-prompt-%d", os.Getpid())
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
	waitFor := func(what string, ok func(string) bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !ok(screen()) {
			if time.Now().After(deadline) {
				t.Fatalf("the chat never showed %s; screen:\n%s", what, screen())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitFor("the banner", func(s string) bool { return strings.Contains(s, "chatting in g") })

	// Bob types half a line; Alice's message arrives meanwhile.
	if out, err := tm("send-keys", "-t", "chat", "-l", "half typed"); err != nil {
		t.Fatalf("send-keys: %v: %s", err, out)
	}
	waitFor("the typed text", func(s string) bool { return strings.Contains(s, "> half typed") })
	alice.run("send", "g", "interrupting you")
	waitFor("alice's message above the prompt", func(s string) bool {
		lines := strings.Split(strings.TrimRight(s, "\n "), "\n")
		var msg, prompt = -1, -1
		for i, l := range lines {
			if strings.TrimSpace(l) == "[g] alice: interrupting you" {
				msg = i
			}
			if strings.TrimSpace(l) == "> half typed" {
				prompt = i
			}
		}
		return msg >= 0 && prompt > msg
	})
	if out, err := tm("send-keys", "-t", "chat", "-l", " and finished"); err != nil {
		t.Fatalf("send-keys: %v: %s", err, out)
	}
	tm("send-keys", "-t", "chat", "Enter")
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := alice.messages()
		if len(got) == 1 && got[0] == "g bob: half typed and finished" {
			break
		}
		if len(got) > 0 || time.Now().After(deadline) {
			t.Fatalf("alice received %q; bob's screen:\n%s", got, screen())
		}
		time.Sleep(200 * time.Millisecond)
	}
	tm("send-keys", "-t", "chat", "/quit", "Enter")
}
