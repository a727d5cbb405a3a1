package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"qpchat/web/browsertest"
)

// TestBrowserWithCLI runs the real binaries: `qpchat serve --web-listen`
// serves the web app, a browser user (headless chromium) and a terminal
// user (`qpchat client`) register, invite each other into groups and
// exchange messages both ways; the browser shows the terminal user's
// message live (fetchWait over the WebSocket), both sides show one
// safety number, and the browser user's session survives a reload
// (state in IndexedDB, a fresh login).
func TestBrowserWithCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test skipped in -short mode")
	}
	browsertest.Find(t)
	dir := t.TempDir()
	n := startNode(t, "127.0.0.1:0", filepath.Join(dir, "data"), "--web-listen", "127.0.0.1:0")
	if !strings.HasPrefix(n.webURL, "http://127.0.0.1:") {
		t.Fatalf("serve printed web app URL %q", n.webURL)
	}
	bob := newCLIUser(t, n, filepath.Join(dir, "state"), "bob")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	b := browsertest.New(t, ctx)
	t.Logf("time to interactive: %v", b.Open(n.webURL))
	b.Register("alice", "alice's long password")
	t.Logf("register + login + device set-up in the browser (the node's default Argon2id): %s ms",
		b.Eval("login time", `document.body.dataset.loginMillis`, 5*time.Second))

	// The browser user makes a group and invites the terminal user.
	b.Step("create a group", browsertest.Fill("new-group", "garden"), browsertest.Click("create-group"))
	b.WaitOpened("create a group", "garden")
	b.Step("invite bob", browsertest.Fill("invite-users", "bob"), browsertest.Click("invite"))
	b.WaitText("invite bob", "members", "bob")
	if out := bob.run("join"); !strings.Contains(out, "[garden] joined, invited by alice") {
		t.Fatalf("bob join printed %q", out)
	}

	// Terminal → browser, live; browser → terminal.
	bob.run("send", "garden", "hello from the terminal")
	b.WaitText("the terminal's message arrives live", "messages", "hello from the terminal")
	b.Step("send from the browser", browsertest.Fill("text", "hi from the browser"), browsertest.Click("send"))
	b.WaitText("send from the browser", "messages", "hi from the browser")
	bob.wantMessages("garden alice: hi from the browser")

	// Hostile text from the terminal is shown as text: no element is
	// made from it and no script runs.
	hostile := `<img src=x onerror="document.title='pwned'"><script>document.title='pwned'</script>` + "\x1b[31mred\x1b[0m"
	bob.run("send", "garden", hostile)
	b.WaitText("hostile text arrives", "messages", "<img src=x")
	if got := b.Eval("hostile text", `document.querySelectorAll("#messages img, #messages script").length + " " + document.title`, 5*time.Second); got != "0 qpchat" {
		b.Report()
		t.Fatalf("after a message with markup the page has %q (elements made from it, title)", got)
	}

	// Both sides show one safety number.
	sn, _ := bob.jsonLines("verify", "alice")[0]["safety_number"].(string)
	if sn == "" {
		t.Fatal("bob's verify printed no safety number")
	}
	b.WaitText("the browser shows the terminal's safety number", "members", sn)

	// The terminal user invites the browser user into a group of his.
	bob.run("create-group", "porch")
	bob.run("invite", "porch", "alice")
	b.WaitText("the browser joins bob's group", "groups", "porch")
	b.Step("open porch", browsertest.Click("group-porch"))
	b.WaitOpened("open porch", "porch")
	bob.run("send", "porch", "welcome to the porch")
	b.WaitText("a message in bob's group", "messages", "welcome to the porch")

	// A reload logs in again from the state kept in IndexedDB: the
	// history is there and the browser still takes part.
	b.Open(n.webURL)
	b.Step("log in again", browsertest.Fill("user", "alice"), browsertest.Fill("password", "alice's long password"),
		browsertest.Click("login"))
	b.WaitText("log in again", "groups", "garden")
	b.Step("open garden", browsertest.Click("group-garden"))
	b.WaitOpened("open garden", "garden")
	b.WaitText("history after the reload", "messages", "hello from the terminal")
	bob.run("send", "garden", "after your reload")
	b.WaitText("live after the reload", "messages", "after your reload")
	b.Step("reply after the reload", browsertest.Fill("text", "still here"), browsertest.Click("send"))
	b.WaitText("reply after the reload", "messages", "still here") // shown once the node took it
	bob.wantMessages("garden alice: still here")

	// The node is killed and restarted on the same addresses: the
	// browser reconnects by itself and chats on.
	n.cmd.Process.Kill()
	<-n.exited
	web := strings.TrimSuffix(strings.TrimPrefix(n.webURL, "http://"), "/")
	n2 := startNode(t, n.addr, filepath.Join(dir, "data"), "--web-listen", web)
	if n2.webURL != n.webURL {
		t.Fatalf("the restarted node serves the app on %s, was %s", n2.webURL, n.webURL)
	}
	bob.run("send", "garden", "after the node restarted")
	b.WaitText("live after the node restarted", "messages", "after the node restarted")
	b.Step("reply after the node restarted", browsertest.Fill("text", "reconnected"), browsertest.Click("send"))
	b.WaitText("reply after the node restarted", "messages", "reconnected")
	bob.wantMessages("garden alice: reconnected")
}
