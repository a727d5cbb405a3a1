package main

// End-to-end tests of leave, invites, decline, history and recv --follow
// with the real binary (harness in client_e2e_test.go).

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// events runs recv --json and returns "event text" of each entry.
func (u *cliUser) events() []string {
	u.t.Helper()
	var out []string
	for _, m := range u.jsonLines("recv") {
		text, _ := m["text"].(string)
		out = append(out, m["event"].(string)+" "+text)
	}
	return out
}

func TestClientLeave(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, "127.0.0.1:0", filepath.Join(dir, "data"))
	state := filepath.Join(dir, "state")
	alice, bob, carol := newCLIUser(t, n, state, "alice"), newCLIUser(t, n, state, "bob"), newCLIUser(t, n, state, "carol")
	alice.run("create-group", "friends")
	alice.run("invite", "friends", "bob", "carol")
	bob.run("join", "friends")
	carol.run("join")

	// Bob leaves and waits; Alice's next recv commits his removal.
	leave := exec.Command(qpchatBinary(t), append([]string{"client"}, bob.args([]string{"leave", "friends", "--wait", "60s", "--json"})...)...)
	leave.Env = bob.env
	var lout bytes.Buffer
	leave.Stdout, leave.Stderr = &lout, &lout
	if err := leave.Start(); err != nil {
		t.Fatal(err)
	}
	var seen []string
	for deadline := time.Now().Add(time.Minute); ; {
		out := alice.run("recv")
		seen = append(seen, out)
		if strings.Contains(out, "[friends] bob left") {
			break
		}
		if time.Now().After(deadline) {
			leave.Process.Kill()
			t.Fatalf("alice never saw bob leave: %q", seen)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := leave.Wait(); err != nil {
		t.Fatalf("leave: %v: %s", err, lout.String())
	}
	var res map[string]any
	if err := json.Unmarshal([]byte(lastLine(lout.String())), &res); err != nil || res["done"] != true || res["group"] != "friends" {
		t.Errorf("leave printed %q, want done", lout.String())
	}
	if got := carol.events(); strings.Join(got, "|") != "left bob left" {
		t.Errorf("carol saw %q, want bob left", got)
	}
	if got := bob.events(); strings.Join(got, "|") != "left you left" {
		t.Errorf("bob saw %q, want you left", got)
	}
	if out := bob.run("groups"); !strings.Contains(out, "friends: left") {
		t.Errorf("bob's groups printed %q, want friends: left", out)
	}
	if out := alice.run("members", "friends"); strings.Contains(out, "bob") {
		t.Errorf("bob is still a member: %s", out)
	}
	alice.run("send", "friends", "bob is gone")
	carol.wantMessages("friends alice: bob is gone")
	bob.wantMessages()

	// Carol is invited to another group and declines it before joining.
	alice.run("create-group", "other")
	alice.run("invite", "other", "carol")
	invs := carol.jsonLines("invites")
	if len(invs) != 1 || invs[0]["inviter"] != "alice" {
		t.Fatalf("invites printed %v", invs)
	}
	name := invs[0]["group"].(string)
	if out := carol.run("decline", name, "--wait", "0s"); !strings.Contains(out, "pending") {
		t.Errorf("decline printed %q, want pending", out)
	}
	if got := alice.events(); strings.Join(got, "|") != "left carol left" {
		t.Errorf("alice saw %q, want carol left", got)
	}
	if out := carol.run("invites"); !strings.Contains(out, "no invitations") {
		t.Errorf("invites after decline printed %q", out)
	}
	if got := carol.events(); !strings.Contains(strings.Join(got, "|"), "left you left") {
		t.Errorf("carol saw %q, want you left", got)
	}
}

func lastLine(s string) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return l[len(l)-1]
}

func TestClientHistoryAndFollow(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	n := startNode(t, "127.0.0.1:0", data)
	state := filepath.Join(dir, "state")
	alice, bob := newCLIUser(t, n, state, "alice"), newCLIUser(t, n, state, "bob")
	alice.run("create-group", "g")
	alice.run("invite", "g", "bob")
	bob.run("join")
	alice.run("send", "g", "before the restart")
	bob.wantMessages("g alice: before the restart")

	// The node restarts; history keeps what came before and after.
	n.cmd.Process.Kill()
	<-n.exited
	startNode(t, n.addr, data)
	alice.run("send", "g", "after the restart")
	bob.run("send", "g", "bob's own \x1b[31mred\x1b[0m")
	bob.wantMessages("g alice: after the restart")
	var texts []string
	for _, m := range bob.jsonLines("history", "g") {
		if m["event"] == "message" {
			texts = append(texts, m["sender"].(string)+": "+m["text"].(string))
		}
	}
	if strings.Join(texts, "|") != "alice: before the restart|alice: after the restart|bob: bob's own \x1b[31mred\x1b[0m" {
		t.Errorf("history = %q", texts)
	}
	out := bob.run("history", "g", "--limit", "1", "--since", "1h")
	if strings.Count(strings.TrimSpace(out), "\n") != 0 || !strings.Contains(out, "[g] bob: bob's own") || strings.Contains(out, "\x1b") {
		t.Errorf("history --limit 1 printed %q (one escaped line wanted)", out)
	}
	if code, _, _ := client(t, bob.env, bob.args([]string{"history", "g", "--since", "yesterday"})...); code == 0 {
		t.Error("history --since yesterday succeeded")
	}

	// recv --follow prints what arrives after it started, saves files as
	// recv does, and exits 0 on SIGTERM.
	downloads := t.TempDir()
	follow := exec.Command(qpchatBinary(t), append([]string{"client"}, bob.args([]string{"recv", "--follow", "--json", "--download-dir", downloads})...)...)
	follow.Env = bob.env
	pr, pw := io.Pipe()
	follow.Stdout = pw
	var ferr bytes.Buffer
	follow.Stderr = &ferr
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	time.Sleep(time.Second) // let it connect and wait
	for _, s := range []string{"first live", "second live"} {
		alice.run("send", "g", s)
		select {
		case l := <-lines:
			if !strings.Contains(l, s) {
				t.Errorf("recv --follow printed %q, want %q", l, s)
			}
		case <-time.After(30 * time.Second):
			follow.Process.Kill()
			t.Fatalf("recv --follow printed nothing for %q; stderr %s", s, ferr.String())
		}
	}
	src := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(src, []byte("followed file"), 0o600); err != nil {
		t.Fatal(err)
	}
	alice.run("send-file", "g", src)
	var saved string
	for saved == "" {
		select {
		case l := <-lines:
			var obj map[string]any
			if err := json.Unmarshal([]byte(l), &obj); err != nil {
				t.Fatalf("recv --follow printed %q: %v", l, err)
			}
			if obj["event"] == "saved" {
				saved, _ = obj["path"].(string)
			}
		case <-time.After(30 * time.Second):
			follow.Process.Kill()
			t.Fatalf("recv --follow saved no file; stderr %s", ferr.String())
		}
	}
	if b, err := os.ReadFile(saved); err != nil || string(b) != "followed file" || filepath.Dir(saved) != downloads {
		t.Errorf("recv --follow saved %q in %s (%v), want the sent bytes in %s", b, saved, err, downloads)
	}
	follow.Process.Signal(syscall.SIGTERM)
	if err := follow.Wait(); err != nil {
		t.Errorf("recv --follow after SIGTERM: %v; stderr %s", err, ferr.String())
	}
	pw.Close()
}
