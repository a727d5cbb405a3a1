//go:build !js

package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"qpchat/node/cluster"
	"qpchat/node/cluster/clustertest"
)

// The contract tests of Store and DB run on two backends: a single bbolt
// file (the default) and a replica of a 3-node NATS JetStream cluster
// store running in this process on loopback (QPCHAT_STORE_BACKEND=cluster).
// TestContractOnCluster runs the second pass as a child process, so a
// plain `go test` covers both.
const backendEnv = "QPCHAT_STORE_BACKEND"

// testCluster is the cluster of the cluster pass, started by TestMain,
// or started on first use by sharedTestCluster.
var testCluster *clustertest.Cluster

// cleanupShared runs when the tests end.
var cleanupShared []func()

func clusterBackend() bool { return os.Getenv(backendEnv) == "cluster" }

// runWithBackend runs the tests, first starting the cluster for the
// cluster pass.
func runWithBackend(m *testing.M) int {
	defer func() {
		for _, f := range slices.Backward(cleanupShared) {
			f()
		}
	}()
	if !clusterBackend() {
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "qpchat-store-cluster-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	testCluster, err = clustertest.StartIn(dir, 3)
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the test cluster:", err)
		return 1
	}
	defer testCluster.Shutdown()
	return m.Run()
}

// clusterTests are the contract tests that run on the cluster backend
// too: everything but the tests of the file itself (format, locking,
// headers, migrations of old files, crash of the process holding it).
var clusterTests = []string{
	"TestAccountsAndDevices", "TestKeyPackagesConcurrentFetch", "TestGroupsAndCommits",
	"TestQueueFetchAckOverflow", "TestRevokeEmptiesQueue", "TestPruneFetched", "TestSecrets",
	"TestNoPlaintextInFile", "TestChangeAccount", "TestDeleteAccount", "TestApprovals",
	"TestBlobLifecycle", "TestBlobSurvivesReopen", "TestDamagedQueuedRecordCostsOneMessage",
	"TestDamagedRecordsAllLost", "TestQueueStatsCountsDepths", "TestRetentionSweep",
	"TestRetentionMarksBounded", "TestPutGetCursor", "TestTamperDetected", "TestGroupCommitBatches",
	"TestUpdatePanicIsolated", "TestConcurrentWritersDurable", "TestGroupCommitCleanFailure", "TestBackup",
}

// TestContractOnCluster runs clusterTests again in a child process with
// the cluster backend.
func TestContractOnCluster(t *testing.T) {
	if clusterBackend() {
		t.Skip("already the cluster pass")
	}
	if testing.Short() {
		t.Skip("the cluster pass takes a while; run it with QPCHAT_STORE_BACKEND=cluster")
	}
	args := []string{"-test.run=^(" + strings.Join(clusterTests, "|") + ")$", "-test.count=1"}
	if testing.Verbose() {
		args = append(args, "-test.v")
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), backendEnv+"=cluster")
	out, err := cmd.CombinedOutput()
	if testing.Verbose() || err != nil {
		t.Logf("cluster pass:\n%s", out)
	}
	if err != nil {
		t.Fatalf("cluster pass failed: %v", err)
	}
}

// Per test (and subtest), one log stream; the stores a test opens take
// the cluster's nodes in turn.
var (
	testLogsMu sync.Mutex
	testLogs   = map[string]*testLogState{}
)

type testLogState struct {
	name  string
	opens int
}

// clusterOptsFor returns the cluster options of the next store that test
// t opens: the test's log, through the next node.
func clusterOptsFor(t testing.TB) ClusterOptions {
	t.Helper()
	root := t.Name()
	if _, ok := t.(*testing.B); ok {
		// A benchmark runs its function several times, each on a new store.
		root += time.Now().String()
	}
	testLogsMu.Lock()
	st := testLogs[root]
	if st == nil {
		h := sha256.Sum256([]byte(root))
		st = &testLogState{name: "t-" + hex.EncodeToString(h[:8])}
		testLogs[root] = st
	}
	node := st.opens % len(testCluster.Nodes)
	st.opens++
	testLogsMu.Unlock()
	return ClusterOptions{Log: testCluster.Log(t, node, st.name)}
}

// openDBAt opens the database of a contract test at path on the chosen
// backend.
func openDBAt(t testing.TB, path string, opts Options) (*DB, error) {
	t.Helper()
	if !clusterBackend() {
		return Open(path, opts)
	}
	return OpenCluster(path, opts, clusterOptsFor(t))
}

// openServerAt opens the Store of a contract test at path on the chosen
// backend.
func openServerAt(t testing.TB, path string, opts Options, lim Limits) (*LocalStore, error) {
	t.Helper()
	if !clusterBackend() {
		return OpenServer(path, opts, lim)
	}
	return OpenClusterServer(path, opts, lim, clusterOptsFor(t))
}

// openLog opens log stream name through node i of c.
func openLog(t testing.TB, c *clustertest.Cluster, i int, name string) *cluster.Log {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := cluster.OpenLog(ctx, c.Conns[i], name, 3)
	if err != nil {
		t.Fatal(err)
	}
	return l
}
