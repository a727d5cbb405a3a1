package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// TestClusterExternalNATS runs three `qpchat serve --nats URL` nodes on an
// existing NATS JetStream server (started in the test process, one server,
// so --cluster-replicas 1) instead of embedded servers: users on different
// nodes register, make a group, invite, join and exchange messages, and
// the store's streams are on that server.
func TestClusterExternalNATS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a NATS cluster and three nodes")
	}
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true,
		JetStream: true, StoreDir: t.TempDir(), SyncAlways: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("the NATS server did not start")
	}
	dir := t.TempDir()
	shared := filepath.Join(dir, "shared")
	cmd := exec.Command(qpchatBinary(t), "serve", "cluster-init", "--out", shared)
	cmd.Env = testEnv(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("serve cluster-init: %v\n%s", err, out)
	}
	var nodes []*node
	var waits []func()
	for i := range 3 {
		data := filepath.Join(dir, fmt.Sprintf("node%d", i+1))
		if err := os.Mkdir(data, 0o700); err != nil {
			t.Fatal(err)
		}
		// The route files are the embedded servers' only; --nats needs
		// the identity and the store key.
		for _, f := range []string{"node.key", "server-cert.pem", "server-key.pem"} {
			b, err := os.ReadFile(filepath.Join(shared, f))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(data, f), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		n, wait := launchNode(t, "127.0.0.1:0", data, "--nats", ns.ClientURL(), "--cluster-replicas", "1")
		nodes, waits = append(nodes, n), append(waits, wait)
	}
	for _, w := range waits {
		w()
	}
	for i, n := range nodes[1:] {
		if n.fingerprint != nodes[0].fingerprint {
			t.Fatalf("node %d has key %s, node 1 %s", i+2, n.fingerprint, nodes[0].fingerprint)
		}
	}
	state := filepath.Join(dir, "state")
	alice := newCLIUser(t, nodes[0], state, "alice")
	bob := newCLIUser(t, nodes[1], state, "bob")
	carol := newCLIUser(t, nodes[2], state, "carol")
	alice.run("create-group", "porch")
	alice.run("invite", "porch", "bob", "carol")
	if out := bob.run("join"); !strings.Contains(out, "[porch] joined, invited by alice") {
		t.Errorf("bob join printed %q", out)
	}
	if out := carol.run("join"); !strings.Contains(out, "invited by alice") {
		t.Errorf("carol join printed %q", out)
	}
	alice.run("send", "porch", "from node 1")
	bob.run("send", "porch", "from node 2")
	carol.wantMessages("porch alice: from node 1", "porch bob: from node 2")

	// The nodes keep their log and rate limits on the external cluster.
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for name := range js.StreamNames() {
		names = append(names, name)
	}
	for _, want := range []string{"qpchat-store", "qpchat-limits"} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Errorf("the external cluster has streams %v, not %s", names, want)
		}
	}
}
