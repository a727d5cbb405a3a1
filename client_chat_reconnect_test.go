package main

import (
	"bufio"
	"io"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// chatProcess is a running `qpchat client chat` with piped stdin.
type chatProcess struct {
	t     *testing.T
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
	seen  []string
}

func startChat(t *testing.T, u *cliUser, group string) *chatProcess {
	t.Helper()
	cmd := exec.Command(qpchatBinary(t), append([]string{"client"}, u.args([]string{"chat", group})...)...)
	cmd.Env = u.env
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &syncBuffer{}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &chatProcess{t: t, cmd: cmd, in: in, lines: make(chan string, 100)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		if t.Failed() {
			t.Logf("chat stdout:\n%s\nchat stderr:\n%s", strings.Join(c.seen, "\n"), cmd.Stderr)
		}
	})
	return c
}

// waitLine reads the chat's output until a line contains want. The
// guard only keeps a broken chat from hanging the test.
func (c *chatProcess) waitLine(want string) {
	c.t.Helper()
	guard := time.After(2 * time.Minute)
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				c.t.Fatalf("chat ended before printing %q", want)
			}
			c.seen = append(c.seen, l)
			if strings.Contains(l, want) {
				return
			}
		case <-guard:
			c.t.Fatalf("chat never printed %q", want)
		}
	}
}

func (c *chatProcess) typeLine(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.in, s+"\n"); err != nil {
		c.t.Fatal(err)
	}
}

// waitMessages polls u's recv until something arrives and checks it is
// exactly want.
func waitMessages(t *testing.T, u *cliUser, want ...string) {
	t.Helper()
	guard := time.Now().Add(2 * time.Minute)
	for {
		got := u.messages()
		if len(got) > 0 {
			if strings.Join(got, "|") != strings.Join(want, "|") {
				t.Errorf("%s received %q, want %q", u.profile, got, want)
			}
			return
		}
		if time.Now().After(guard) {
			t.Fatalf("%s received nothing, want %q", u.profile, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestClientChatReconnects: a chat survives a graceful restart and a
// kill -9 of the node. It says it is reconnecting, and lines typed while
// the node is down are delivered exactly once after it is back.
func TestClientChatReconnects(t *testing.T) {
	dir := t.TempDir()
	data, state := filepath.Join(dir, "data"), filepath.Join(dir, "state")
	n := startNode(t, "127.0.0.1:0", data)
	alice, bob := newCLIUser(t, n, state, "alice"), newCLIUser(t, n, state, "bob")
	alice.run("create-group", "g")
	alice.run("invite", "g", "bob")
	bob.run("join")

	chat := startChat(t, bob, "g")
	chat.waitLine("chatting in g")
	chat.typeLine("before")
	waitMessages(t, alice, "g bob: before")

	// Graceful restart.
	n.stop(t)
	chat.waitLine("reconnecting")
	chat.typeLine("during the restart")
	n = startNode(t, n.addr, data)
	chat.waitLine("reconnected")
	waitMessages(t, alice, "g bob: during the restart")
	alice.run("send", "g", "to bob")
	chat.waitLine("[g] alice: to bob")

	// kill -9: the node vanishes without a word.
	n.cmd.Process.Kill()
	<-n.exited
	chat.typeLine("during the outage")
	chat.waitLine("reconnecting")
	n = startNode(t, n.addr, data)
	chat.waitLine("reconnected")
	waitMessages(t, alice, "g bob: during the outage")
	alice.run("send", "g", "still there?")
	chat.waitLine("[g] alice: still there?")

	chat.in.Close()
	if err := chat.cmd.Wait(); err != nil {
		t.Errorf("chat: %v", err)
	}
}

// TestClientChatPipedFlood: more piped lines than the outbox holds are
// all sent, in order, each once.
func TestClientChatPipedFlood(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, "127.0.0.1:0", filepath.Join(dir, "data"))
	state := filepath.Join(dir, "state")
	alice, bob := newCLIUser(t, n, state, "alice"), newCLIUser(t, n, state, "bob")
	alice.run("create-group", "g")
	alice.run("invite", "g", "bob")
	bob.run("join")
	var in strings.Builder
	var want []string
	for i := range 250 {
		line := "line " + strings.Repeat("x", i%7) + " " + string(rune('a'+i%26)) + " #" + strconv.Itoa(i)
		in.WriteString(line + "\n")
		want = append(want, "g bob: "+line)
	}
	cmd := exec.Command(qpchatBinary(t), append([]string{"client"}, bob.args([]string{"chat", "g"})...)...)
	cmd.Env, cmd.Stdin = bob.env, strings.NewReader(in.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chat: %v: %s", err, out)
	}
	alice.wantMessages(want...)
}
