package main

import (
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
	shared := clusterInit(t, dir)
	// The route files are the embedded servers' only; --nats needs the
	// identity and the store key.
	nodes := startSharedNodes(t, dir, shared, []string{"node.key", "server-cert.pem", "server-key.pem"},
		func(int) []string { return []string{"--nats", ns.ClientURL(), "--cluster-replicas", "1"} })
	state := filepath.Join(dir, "state")
	alice := newCLIUser(t, nodes[0], state, "alice")
	bob := newCLIUser(t, nodes[1], state, "bob")
	carol := newCLIUser(t, nodes[2], state, "carol")
	groupOfThree(t, "porch", alice, bob, carol)
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
