package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"qpchat/internal/testport"
)

// startClusterNodes starts three `qpchat serve` cluster nodes on the data
// directories dirs, reading the route files from shared (which also holds
// the store key and identity a new data directory copies), each with an
// admin listener.
func startClusterNodes(t *testing.T, name, shared string, dirs []string) []*node {
	t.Helper()
	peers := testport.TCP(t, len(dirs))
	var nodes []*node
	var waits []func()
	for i, d := range dirs {
		n, wait := launchNode(t, "127.0.0.1:0", d, "--cluster-name", name, "--cluster-listen", peers[i],
			"--cluster-peers", strings.Join(peers, ","), "--cluster-files", shared, "--admin-listen", "127.0.0.1:0")
		nodes, waits = append(nodes, n), append(waits, wait)
	}
	for _, w := range waits {
		w()
	}
	return nodes
}

// stopNodes stops nodes with SIGTERM and waits for them.
func stopNodes(t *testing.T, nodes []*node) {
	t.Helper()
	for _, n := range nodes {
		n.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, n := range nodes {
		select {
		case <-n.exited:
		case <-time.After(30 * time.Second):
			t.Fatal("a node did not stop")
		}
	}
}

// TestClusterBackupRestoreEndToEnd: `serve backup` of a running cluster
// node, `serve restore` of it into every node of a fresh cluster (and
// into a single node), and the users find their account, group and
// queued message there.
func TestClusterBackupRestoreEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts six nodes")
	}
	dir := t.TempDir()
	shared := clusterInit(t, dir)
	var dirsA []string
	for i := range 3 {
		dirsA = append(dirsA, filepath.Join(dir, fmt.Sprintf("a%d", i+1)))
	}
	a := startClusterNodes(t, "old", shared, dirsA)
	state := filepath.Join(dir, "state")
	alice := newCLIUser(t, a[0], state, "alice")
	bob := newCLIUser(t, a[1], state, "bob")
	alice.run("create-group", "friends")
	alice.run("invite", "friends", "bob")
	bob.run("join")
	alice.run("send", "friends", "queued before the backup")

	backup := filepath.Join(dir, "cluster.backup")
	serve := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(qpchatBinary(t), append([]string{"serve"}, args...)...)
		cmd.Env = testEnv(t)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("qpchat serve %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	out := serve("backup", "--data", dirsA[2], "--cluster-name", "old", "--out", backup)
	if !regexp.MustCompile(`as of log entry [1-9]`).MatchString(out) {
		t.Errorf("serve backup of a cluster node printed %q", out)
	}
	stopNodes(t, a)

	// A fresh cluster: new data directories, each with the store key,
	// each restoring the same backup.
	var dirsB []string
	for i := range 3 {
		d := filepath.Join(dir, fmt.Sprintf("b%d", i+1))
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		key, err := os.ReadFile(filepath.Join(shared, "node.key"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "node.key"), key, 0o600); err != nil {
			t.Fatal(err)
		}
		out := serve("restore", "--data", d, "--cluster-name", "new", "--in", backup)
		if !strings.Contains(out, "cluster-restore.db") {
			t.Errorf("serve restore for a cluster node printed %q", out)
		}
		dirsB = append(dirsB, d)
	}
	// A damaged copy is refused, and leaves nothing to seed.
	raw, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)/2] ^= 0x40
	damaged := filepath.Join(dir, "damaged.backup")
	if err := os.WriteFile(damaged, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	spare := filepath.Join(dir, "spare")
	copyClusterFiles(t, shared, spare, "node.key")
	cmd := exec.Command(qpchatBinary(t), "serve", "restore", "--data", spare, "--cluster-name", "new", "--in", damaged)
	cmd.Env = testEnv(t)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "not an intact qpchat backup") {
		t.Errorf("restore of a damaged backup: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(spare, "cluster-restore.db")); err == nil {
		t.Error("a damaged backup was left to seed a cluster")
	}
	// A node that has a replica is not a fresh cluster's.
	cmd = exec.Command(qpchatBinary(t), "serve", "restore", "--data", dirsA[0], "--cluster-name", "old", "--in", backup)
	cmd.Env = testEnv(t)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "fresh cluster") {
		t.Errorf("restore over a node's replica: %v\n%s", err, out)
	}

	b := startClusterNodes(t, "new", shared, dirsB)
	if b[0].fingerprint != a[0].fingerprint {
		t.Errorf("the restored cluster has key %s, the old one %s", b[0].fingerprint, a[0].fingerprint)
	}
	for _, d := range dirsB {
		if _, err := os.Stat(filepath.Join(d, "cluster-restore.db.done")); err != nil {
			t.Errorf("%s: the restore was not marked done: %v", d, err)
		}
	}
	// Bob, now on node 3 of the new cluster, gets what was queued.
	bob.env = append(bob.env, "QPCHAT_SERVER="+b[2].addr, "QPCHAT_SERVER_FINGERPRINT="+b[2].fingerprint)
	alice.env = append(alice.env, "QPCHAT_SERVER="+b[0].addr, "QPCHAT_SERVER_FINGERPRINT="+b[0].fingerprint)
	bob.wantMessages("friends alice: queued before the backup")
	alice.run("send", "friends", "after the restore")
	bob.wantMessages("friends alice: after the restore")

	// The same backup restores into a single node.
	single := filepath.Join(dir, "single")
	copyClusterFiles(t, shared, single, "node.key")
	serve("restore", "--data", single, "--in", backup)
	n, wait := launchNode(t, "127.0.0.1:0", single)
	wait()
	if n.fingerprint != a[0].fingerprint {
		t.Errorf("the single node restored from the cluster has key %s, want %s", n.fingerprint, a[0].fingerprint)
	}
	bobSingle := &cliUser{t: t, name: "bob", profile: "bob-single", env: append(clientEnv(t, n, filepath.Join(dir, "state2")), "QPCHAT_PASSWORD=password of bob")}
	bobSingle.run("login", "bob", "--server-fingerprint", n.fingerprint)
}
