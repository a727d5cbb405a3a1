package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"qpchat/internal/testport"
)

// liveWakeAcrossNodes runs `recv --follow` as to (on its node) and sends
// two messages as from (on another node). The second is sent once the
// first was printed, so the follow is then parked in a new fetchWait
// that lasts chatWait: printing the second sooner than that after the
// first proves the fetchWait was woken by the other node's write, not
// ended by its timeout.
func liveWakeAcrossNodes(t *testing.T, from, to *cliUser) {
	t.Helper()
	follow := exec.Command(qpchatBinary(t), append([]string{"client"}, to.args([]string{"recv", "--follow", "--json"})...)...)
	follow.Env = to.env
	pr, pw := io.Pipe()
	follow.Stdout = pw
	var ferr syncBuffer
	follow.Stderr = &ferr
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		follow.Process.Signal(syscall.SIGTERM)
		follow.Wait()
		pw.Close()
	}()
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var printed time.Time
	for i := 1; i <= 2; i++ {
		text := fmt.Sprintf("live %d from %s on node 1", i, from.name)
		from.run("send", "friends", text)
		sent := time.Now()
		select {
		case l := <-lines:
			if !strings.Contains(l, text) {
				t.Fatalf("recv --follow printed %q, want %q", l, text)
			}
		case <-time.After(chatWait):
			t.Fatalf("recv --follow on another node printed nothing within %v of %q; stderr %s", chatWait, text, ferr.String())
		}
		now := time.Now()
		t.Logf("live %d: printed %v after the send returned", i, now.Sub(sent).Round(time.Millisecond))
		if i == 2 && now.Sub(printed) >= chatWait {
			t.Errorf("the second message was printed %v after the first: not sooner than the follow's fetchWait timeout (%v), so not woken", now.Sub(printed), chatWait)
		}
		printed = now
	}
}

// clusterInit runs `serve cluster-init` into dir/shared and returns that
// directory.
func clusterInit(t *testing.T, dir string) string {
	t.Helper()
	shared := filepath.Join(dir, "shared")
	cmd := exec.Command(qpchatBinary(t), "serve", "cluster-init", "--out", shared)
	cmd.Env = testEnv(t)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "fingerprint sha256:") {
		t.Fatalf("serve cluster-init: %v\n%s", err, out)
	}
	return shared
}

// copyClusterFiles makes the data directory data (mode 0700) and copies
// the named files of cluster-init's directory into it (mode 0600), as the
// README tells an operator to.
func copyClusterFiles(t *testing.T, shared, data string, files ...string) {
	t.Helper()
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(shared, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(data, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// startSharedNodes starts three nodes in dir/node1..3, each with the
// named files of cluster-init's directory and the flags argsOf gives it,
// waits until all have started and checks they share one identity.
func startSharedNodes(t *testing.T, dir, shared string, files []string, argsOf func(i int) []string) []*node {
	t.Helper()
	var nodes []*node
	var waits []func()
	for i := range 3 {
		data := filepath.Join(dir, fmt.Sprintf("node%d", i+1))
		copyClusterFiles(t, shared, data, files...)
		n, wait := launchNode(t, "127.0.0.1:0", data, argsOf(i)...)
		nodes, waits = append(nodes, n), append(waits, wait)
	}
	for _, w := range waits {
		w()
	}
	for i, n := range nodes[1:] {
		if n.fingerprint != nodes[0].fingerprint {
			t.Fatalf("node %d has key %s, node 1 %s: the nodes must share the identity", i+2, n.fingerprint, nodes[0].fingerprint)
		}
	}
	return nodes
}

// groupOfThree: alice creates group and invites bob and carol in one
// commit; both join.
func groupOfThree(t *testing.T, group string, alice, bob, carol *cliUser) {
	t.Helper()
	alice.run("create-group", group)
	alice.run("invite", group, "bob", "carol")
	if out := bob.run("join"); !strings.Contains(out, "["+group+"] joined, invited by alice") {
		t.Errorf("bob join printed %q", out)
	}
	if out := carol.run("join"); !strings.Contains(out, "invited by alice") {
		t.Errorf("carol join printed %q", out)
	}
}

// TestClusterEndToEnd runs three `qpchat serve` processes as one cluster
// (serve cluster-init, embedded NATS JetStream on loopback routes) with
// Alice on node 1, Bob on node 2 and Carol on node 3: register, create a
// group, invite, join, send and receive across nodes, a live recv on node
// 3 woken by a send on node 1; then one node is
// killed and the others carry on.
func TestClusterEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three nodes")
	}
	dir := t.TempDir()
	shared := clusterInit(t, dir)
	peers := testport.TCP(t, 3)
	nodes := startSharedNodes(t, dir, shared, []string{"node.key", "server-cert.pem", "server-key.pem", "route.pem", "route-password"},
		func(i int) []string {
			return []string{"--cluster-name", "e2e", "--cluster-listen", peers[i], "--cluster-peers", strings.Join(peers, ",")}
		})
	state := filepath.Join(dir, "state")
	alice := newCLIUser(t, nodes[0], state, "alice")
	bob := newCLIUser(t, nodes[1], state, "bob")
	carol := newCLIUser(t, nodes[2], state, "carol")
	groupOfThree(t, "friends", alice, bob, carol)
	alice.run("send", "friends", "one from alice on node 1")
	bob.run("send", "friends", "two from bob on node 2")
	carol.run("send", "friends", "three from carol on node 3")
	alice.wantMessages("friends bob: two from bob on node 2", "friends carol: three from carol on node 3")
	bob.wantMessages("friends alice: one from alice on node 1", "friends carol: three from carol on node 3")
	carol.wantMessages("friends alice: one from alice on node 1", "friends bob: two from bob on node 2")

	// A live recv --follow of Carol's on node 3 wakes when Alice sends
	// on node 1: node 3's fetchWait is woken by node 1's write.
	liveWakeAcrossNodes(t, alice, carol)
	bob.wantMessages("friends alice: live 1 from alice on node 1", "friends alice: live 2 from alice on node 1")

	// Node 3 is killed: Carol moves to node 1 (same identity, same
	// pin) and finds what was sent meanwhile.
	nodes[2].cmd.Process.Kill()
	<-nodes[2].exited
	// The other two elect new leaders for what node 3 led: Raft's
	// election timeouts make that up to about ten seconds, during which
	// calls fail (clients retry); so each step below is retried.
	eventually := func(u *cliUser, args ...string) string {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			code, out, errs := u.try(args...)
			if code == 0 {
				return out
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s: the cluster did not recover from losing node 3: %s", u.name, strings.Join(args, " "), errs)
			}
		}
	}
	wantMessages := func(u *cliUser, want ...string) {
		t.Helper()
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(eventually(u, "recv", "--json")), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err == nil && m["event"] == "message" {
				got = append(got, m["group"].(string)+" "+m["sender"].(string)+": "+m["text"].(string))
			}
		}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("%s received %q, want %q", u.name, got, want)
		}
	}
	eventually(alice, "send", "friends", "while node 3 is down")
	carol.env = append(carol.env, "QPCHAT_SERVER="+nodes[0].addr)
	wantMessages(bob, "friends alice: while node 3 is down")
	wantMessages(carol, "friends alice: while node 3 is down")
	eventually(bob, "update", "friends")
	eventually(carol, "send", "friends", "carol through node 1")
	wantMessages(alice, "friends carol: carol through node 1")
	wantMessages(bob, "friends carol: carol through node 1")
}
