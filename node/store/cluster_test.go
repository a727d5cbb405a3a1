//go:build !js

package store

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"qpchat/node/cluster/clustertest"
)

// Tests of what a cluster store guarantees across nodes. Each opens one
// replica per node of a 3-node cluster on loopback (the shared one, or
// its own when it stops nodes).

var (
	sharedOnce sync.Once
	sharedErr  error
)

// sharedTestCluster returns the package's 3-node cluster, started on first
// use (the cluster pass's, or one of its own, shut down by TestMain).
func sharedTestCluster(t testing.TB) *clustertest.Cluster {
	t.Helper()
	sharedOnce.Do(func() {
		if testCluster != nil {
			return
		}
		dir, err := os.MkdirTemp("", "qpchat-store-cluster-")
		if err != nil {
			sharedErr = err
			return
		}
		cleanupShared = append(cleanupShared, func() { os.RemoveAll(dir) })
		testCluster, sharedErr = clustertest.StartIn(dir, 3)
		if sharedErr == nil {
			cleanupShared = append(cleanupShared, testCluster.Shutdown)
		}
	})
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return testCluster
}

// clusterStores opens one replica of a fresh log per node of c.
func clusterStores(t testing.TB, c *clustertest.Cluster, lim Limits) []*LocalStore {
	t.Helper()
	name := fmt.Sprintf("g-%d", time.Now().UnixNano())
	dir := t.TempDir()
	var stores []*LocalStore
	for i := range c.Nodes {
		s, err := OpenClusterServer(filepath.Join(dir, fmt.Sprintf("replica-%d.db", i)), Options{Passphrase: []byte("cluster pass"), KDF: fastKDF},
			lim, ClusterOptions{Log: openLog(t, c, i, name)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		stores = append(stores, s)
	}
	return stores
}

// TestClusterKeyPackageOnce: when every node is asked for bob's last
// pool package at the same moment, exactly one hands it out; the others
// hand out the last resort.
func TestClusterKeyPackageOnce(t *testing.T) {
	c := sharedTestCluster(t)
	st := clusterStores(t, c, Limits{})
	addUser(t, st[0], "alice", "a1", "a2", "a3")
	addUser(t, st[1], "bob", "b1")
	const rounds = 10
	for r := range rounds {
		kp := KeyPackage{Ref: fmt.Appendf(nil, "ref-%d", r), Data: fmt.Appendf(nil, "pool-%d", r)}
		if _, err := st[r%3].PutKeyPackages(ctx, devKey("b1"), 1, []KeyPackage{kp}, &KeyPackage{Ref: []byte("last"), Data: []byte("last-resort")}); err != nil {
			t.Fatal(err)
		}
		got := make([][]FetchedKeyPackage, 3)
		errs := make([]error, 3)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i, s := range st {
			wg.Go(func() {
				<-start
				got[i], errs[i] = s.FetchKeyPackages(ctx, devKey(fmt.Sprintf("a%d", i+1)), "bob", 1)
			})
		}
		close(start)
		wg.Wait()
		pool := 0
		for i := range st {
			if errs[i] != nil || len(got[i]) != 1 {
				t.Fatalf("round %d node %d: %v, %v", r, i, got[i], errs[i])
			}
			switch f := got[i][0]; {
			case !f.LastResort && string(f.Data) == string(kp.Data):
				pool++
			case f.LastResort && string(f.Data) == "last-resort":
			default:
				t.Errorf("round %d node %d got %+v", r, i, f)
			}
		}
		if pool != 1 {
			t.Fatalf("round %d: the pool package was handed out %d times", r, pool)
		}
		for i, s := range st {
			if n, err := s.KeyPackageCount(ctx, devKey("b1"), 1); err != nil || n != 0 {
				t.Errorf("round %d node %d: pool count %d, %v", r, i, n, err)
			}
		}
	}
}

// TestClusterKeyPackageNodeDiesAfterAnswer: the node that handed out
// bob's only pool package dies right after answering (its NATS server
// first, then the store, nothing flushed in between); the other two never
// hand that package out again, and neither does the node once restarted:
// the removal reached the quorum before the answer did.
func TestClusterKeyPackageNodeDiesAfterAnswer(t *testing.T) {
	c := clustertest.Start(t, 3)
	dir := t.TempDir()
	open := func(i int) *LocalStore {
		t.Helper()
		s, err := OpenClusterServer(filepath.Join(dir, fmt.Sprintf("replica-%d.db", i)), Options{Passphrase: []byte("cluster pass"), KDF: fastKDF},
			Limits{}, ClusterOptions{Log: openLog(t, c, i, "kp-crash")})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	st := []*LocalStore{open(0), open(1), open(2)}
	defer func() {
		for _, s := range st {
			s.Close()
		}
	}()
	addUser(t, st[0], "alice", "a1")
	addUser(t, st[0], "bob", "b1")
	kp := KeyPackage{Ref: []byte("only"), Data: []byte("pool-only")}
	if _, err := st[1].PutKeyPackages(ctx, devKey("b1"), 1, []KeyPackage{kp}, &KeyPackage{Ref: []byte("last"), Data: []byte("last-resort")}); err != nil {
		t.Fatal(err)
	}
	// Node 0 must have applied the upload before it is asked.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if n, err := st[0].KeyPackageCount(ctx, devKey("b1"), 1); err == nil && n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("node 0 never saw the uploaded package")
		}
	}
	got, err := st[0].FetchKeyPackages(ctx, devKey("a1"), "bob", 1)
	if err != nil || len(got) != 1 || got[0].LastResort || string(got[0].Data) != "pool-only" {
		t.Fatalf("first fetch = %+v, %v; want the pool package", got, err)
	}
	c.Stop(0)
	st[0].Close()
	check := func(who string, s *LocalStore) {
		t.Helper()
		// If node 0 led the log's stream, the others elect a new leader
		// first (seconds); calls meanwhile fail as unavailable.
		got, err := s.FetchKeyPackages(ctx, devKey("a1"), "bob", 1)
		for deadline := time.Now().Add(time.Minute); errors.Is(err, ErrUnavailable) && time.Now().Before(deadline); {
			time.Sleep(100 * time.Millisecond)
			got, err = s.FetchKeyPackages(ctx, devKey("a1"), "bob", 1)
		}
		if err != nil || len(got) != 1 {
			t.Fatalf("%s: fetch = %+v, %v", who, got, err)
		}
		if !got[0].LastResort || string(got[0].Data) != "last-resort" {
			t.Errorf("%s handed out %q again after the node that answered died", who, got[0].Data)
		}
	}
	check("node 1", st[1])
	check("node 2", st[2])
	if err := c.Start(0); err != nil {
		t.Fatal(err)
	}
	st[0] = open(0)
	check("node 0 after its restart", st[0])
}

// TestClusterCommitOnceEverywhere: commits for the same epoch sent to
// different nodes at the same moment: exactly one is accepted, the others
// are stale, and every node agrees on the winner and the new epoch.
func TestClusterCommitOnceEverywhere(t *testing.T) {
	c := sharedTestCluster(t)
	st := clusterStores(t, c, Limits{})
	addUser(t, st[0], "alice", "a1")
	addUser(t, st[0], "bob", "b1")
	addUser(t, st[0], "carol", "c1")
	gid := bytes.Repeat([]byte{7}, 32)
	if err := st[0].CreateGroup(ctx, gid, devKey("a1")); err != nil {
		t.Fatal(err)
	}
	if _, err := st[0].Commit(ctx, CommitRequest{Group: gid, Committer: devKey("a1"), Message: []byte("add"),
		Added: [][]byte{devKey("b1"), devKey("c1")}, Welcome: []byte("w"),
		KeyPackageRefs: [][]byte{fetchedRef(t, st[0], devKey("a1"), "bob", devKey("b1")), fetchedRef(t, st[0], devKey("a1"), "carol", devKey("c1"))}}); err != nil {
		t.Fatal(err)
	}
	committers := []string{"a1", "b1", "c1"}
	var winners []string
	for epoch := uint64(1); epoch <= 8; epoch++ {
		errs := make([]error, 3)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i, s := range st {
			wg.Go(func() {
				<-start
				_, errs[i] = s.Commit(ctx, CommitRequest{Group: gid, Committer: devKey(committers[i]), Epoch: epoch,
					Message: fmt.Appendf(nil, "commit %d by %s", epoch, committers[i])})
			})
		}
		close(start)
		wg.Wait()
		won := -1
		for i, err := range errs {
			switch {
			case err == nil:
				if won >= 0 {
					t.Fatalf("epoch %d: both %s and %s won", epoch, committers[won], committers[i])
				}
				won = i
			case !errors.Is(err, ErrStaleCommit):
				t.Fatalf("epoch %d: %s's commit: %v, want ErrStaleCommit", epoch, committers[i], err)
			}
		}
		if won < 0 {
			t.Fatalf("epoch %d: no commit won: %v", epoch, errs)
		}
		winners = append(winners, committers[won])
		for i, s := range st {
			g, err := s.Group(ctx, gid)
			if err != nil || g.Epoch != epoch+1 {
				t.Fatalf("epoch %d: node %d sees %+v, %v", epoch, i, g, err)
			}
		}
	}
	// Every member's queue, read on every node, holds exactly the winners'
	// commits (each but its own), in order.
	for _, dev := range committers {
		var want []string
		for e, w := range winners {
			if w != dev {
				want = append(want, fmt.Sprintf("commit %d by %s", e+1, w))
			}
		}
		for i, s := range st {
			r, err := s.Fetch(ctx, devKey(dev), 0, 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range r.Messages {
				if m.Kind == KindCommit {
					got = append(got, string(m.Data))
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s's commits on node %d = %q, want %q", dev, i, got, want)
			}
		}
	}
	t.Logf("winners: %v", winners)
}

// clusterGroup makes a group of a1 and b1 on st[0] and returns a
// function sending one message from a1 through store s.
func clusterGroup(t testing.TB, st []*LocalStore) func(s *LocalStore, msg string) {
	addUser(t, st[0], "alice", "a1")
	addUser(t, st[0], "bob", "b1")
	gid := []byte("group")
	if err := st[0].CreateGroup(ctx, gid, devKey("a1")); err != nil {
		t.Fatal(err)
	}
	if _, err := st[0].Commit(ctx, CommitRequest{Group: gid, Committer: devKey("a1"), Message: []byte("c"), Added: [][]byte{devKey("b1")}, Welcome: []byte("w"),
		KeyPackageRefs: [][]byte{fetchedRef(t, st[0], devKey("a1"), "bob", devKey("b1"))}}); err != nil {
		t.Fatal(err)
	}
	return func(s *LocalStore, msg string) {
		if _, err := s.Send(ctx, SendRequest{Group: gid, Sender: devKey("a1"), Messages: [][]byte{[]byte(msg)}}); err != nil {
			t.Error(err)
		}
	}
}

// TestClusterQueueSignalAcrossNodes: a message queued through node B
// wakes a fetchWait-style waiter on node A (QueueSignal), which then
// fetches it from its own replica.
func TestClusterQueueSignalAcrossNodes(t *testing.T) {
	c := sharedTestCluster(t)
	st := clusterStores(t, c, Limits{})
	send := clusterGroup(t, st)
	for i := range 5 {
		wait := st[0].QueueSignal(devKey("b1"))
		r, err := st[0].Fetch(ctx, devKey("b1"), 0, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		before := r.Queue.Last
		msg := fmt.Sprint("from node B ", i)
		go send(st[1], msg)
		select {
		case <-wait:
		case <-time.After(20 * time.Second): // a failure bound, not a timing assertion
			t.Fatal("no wake-up on node A for a message queued on node B")
		}
		r, err = st[0].Fetch(ctx, devKey("b1"), before, 0, 0)
		if err != nil || len(r.Messages) != 1 || string(r.Messages[0].Data) != msg {
			t.Fatalf("after the wake-up node A fetched %+v, %v", r.Messages, err)
		}
	}
}

// BenchmarkClusterWakeup measures how long after a Send on node B
// returns a QueueSignal waiter on node A wakes (and, for reference, how
// long the Send took).
func BenchmarkClusterWakeup(b *testing.B) {
	c := sharedTestCluster(b)
	st := clusterStores(b, c, Limits{})
	send := clusterGroup(b, st)
	var wake, sends []time.Duration
	for i := 0; b.Loop(); i++ {
		wait := st[0].QueueSignal(devKey("b1"))
		t0 := time.Now()
		send(st[1], "m")
		t1 := time.Now()
		<-wait
		t2 := time.Now()
		wake, sends = append(wake, t2.Sub(t1)), append(sends, t1.Sub(t0))
		if i%100 == 99 {
			st[0].Ack(ctx, devKey("b1"), ^uint64(0))
		}
	}
	report := func(name string, d []time.Duration) {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		b.ReportMetric(float64(d[len(d)/2].Microseconds()), name+"-p50-µs")
		b.ReportMetric(float64(d[len(d)*99/100].Microseconds()), name+"-p99-µs")
	}
	report("wake", wake)
	report("send", sends)
}

// TestClusterNodeRestartCatchesUp stops one node (its store and its
// NATS server) while the other two keep sending, then starts it again:
// its replica catches up, and every node holds every acknowledged
// message exactly once, in order.
func TestClusterNodeRestartCatchesUp(t *testing.T) {
	c := clustertest.Start(t, 3)
	name := "restart"
	dir := t.TempDir()
	open := func(i int) *LocalStore {
		t.Helper()
		s, err := OpenClusterServer(filepath.Join(dir, fmt.Sprintf("replica-%d.db", i)), Options{Passphrase: []byte("cluster pass"), KDF: fastKDF},
			Limits{}, ClusterOptions{Log: openLog(t, c, i, name)})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	st := []*LocalStore{open(0), open(1), open(2)}
	defer func() {
		for _, s := range st {
			s.Close()
		}
		c.Shutdown()
	}()
	send := clusterGroup(t, st)
	var mu sync.Mutex
	acked := map[int]int{} // writer → messages acknowledged
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				send(st[w], fmt.Sprintf("%d %d", w, n))
				mu.Lock()
				acked[w] = n + 1
				mu.Unlock()
			}
		})
	}
	// Progress counts both writers together: the node that hosts the
	// stream's leader wins most races to the log, and a tight loop of
	// single-message sends on it can starve the other (see the package
	// documentation).
	progress := func(min int) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			mu.Lock()
			ok := acked[0]+acked[1] >= min
			mu.Unlock()
			if ok {
				return
			}
		}
		t.Fatalf("writers made no progress past %d", min)
	}
	t0 := time.Now()
	progress(20)
	t.Logf("%v: stopping node 2", time.Since(t0))
	st[2].Close()
	c.Stop(2)
	mu.Lock()
	atStop := acked[0] + acked[1]
	mu.Unlock()
	progress(atStop + 50) // the other two go on without node 2
	t.Logf("%v: restarting node 2", time.Since(t0))
	if err := c.Start(2); err != nil {
		t.Fatal(err)
	}
	st[2] = open(2)
	t.Logf("%v: node 2's store open", time.Since(t0))
	progress(atStop + 100)
	t.Logf("%v: done", time.Since(t0))
	close(stop)
	wg.Wait()
	if t.Failed() {
		return
	}
	for i, s := range st {
		r, err := s.Fetch(ctx, devKey("b1"), 1, 1<<30, 0) // after the Welcome
		if err != nil {
			t.Fatal(err)
		}
		next := map[int]int{}
		for _, m := range r.Messages {
			var w, n int
			if _, err := fmt.Sscanf(string(m.Data), "%d %d", &w, &n); err != nil {
				t.Fatalf("message %q", m.Data)
			}
			if n != next[w] {
				t.Fatalf("node %d: writer %d: message %d where %d was expected (lost, repeated or out of order)", i, w, n, next[w])
			}
			next[w]++
		}
		for w, n := range acked {
			if next[w] != n {
				t.Errorf("node %d: writer %d: %d messages acknowledged, %d queued", i, w, n, next[w])
			}
		}
	}
	t.Logf("acknowledged %v; node 2 stopped after %d", acked, atStop)
}

// TestClusterFsyncEveryWrite checks the embedded servers' configuration:
// JetStream fsyncs every write before acknowledging it (no
// sync_interval window), the log is a file-backed stream replicated on
// all three nodes, and deleting or purging its entries is refused.
func TestClusterFsyncEveryWrite(t *testing.T) {
	c := sharedTestCluster(t)
	for i, n := range c.Nodes {
		cfg := n.Server().JetStreamConfig()
		if cfg == nil || !cfg.SyncAlways {
			t.Errorf("node %d: JetStream config %+v, want SyncAlways", i, cfg)
		}
	}
	l := openLog(t, c, 0, "fsync-check")
	info, err := l.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Replicas != 3 || info.Config.Storage.String() != "File" || !info.Config.DenyDelete || !info.Config.DenyPurge {
		t.Errorf("log stream config %+v", info.Config)
	}
}

// TestClusterNoCleartext runs a small flow through the cluster and looks
// through every file the cluster and the replicas wrote (JetStream's
// stream and Raft files included), and at the stream's name and
// subject, for the user names, device keys, group id and messages.
func TestClusterNoCleartext(t *testing.T) {
	c := clustertest.Start(t, 3)
	dir := t.TempDir()
	var st []*LocalStore
	for i := range 3 {
		s, err := OpenClusterServer(filepath.Join(dir, fmt.Sprintf("replica-%d.db", i)), Options{Passphrase: []byte("cluster pass"), KDF: fastKDF},
			Limits{}, ClusterOptions{Log: openLog(t, c, i, "qpchat-store")})
		if err != nil {
			t.Fatal(err)
		}
		st = append(st, s)
	}
	gid := append([]byte("teamsecretgroup"), bytes.Repeat([]byte{0}, 17)...)
	addUser(t, st[0], "alicecleartext", "alicephonekey")
	addUser(t, st[1], "bobcleartext", "boblaptopkey")
	if err := st[2].CreateGroup(ctx, gid, devKey("alicephonekey")); err != nil {
		t.Fatal(err)
	}
	if _, err := st[1].PutKeyPackages(ctx, devKey("boblaptopkey"), 1, []KeyPackage{{Ref: []byte("bobref"), Data: []byte("bobkpdata")}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := st[0].FetchKeyPackages(ctx, devKey("alicephonekey"), "bobcleartext", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := st[0].Commit(ctx, CommitRequest{Group: gid, Committer: devKey("alicephonekey"), Message: []byte("teamcommitmsg"),
		Added: [][]byte{devKey("boblaptopkey")}, Welcome: []byte("welcometoteam"), KeyPackageRefs: [][]byte{[]byte("bobref")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st[2].Send(ctx, SendRequest{Group: gid, Sender: devKey("alicephonekey"), Messages: [][]byte{[]byte("hellosecretmsg")}}); err != nil {
		t.Fatal(err)
	}
	// Every node has applied everything before the files are read.
	for _, s := range st {
		if r, err := s.Fetch(ctx, devKey("boblaptopkey"), 0, 0, 0); err != nil || len(r.Messages) != 2 {
			t.Fatalf("bob's queue: %d messages, %v", len(r.Messages), err)
		}
	}
	l := openLog(t, c, 0, "qpchat-store")
	info, err := l.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	names := info.Config.Name + " " + fmt.Sprint(info.Config.Subjects)
	for _, s := range st {
		s.Close()
	}
	c.Shutdown()
	secrets := []string{"alicecleartext", "bobcleartext", "alicephonekey", "boblaptopkey", "teamsecretgroup", "hellosecretmsg", "teamcommitmsg", "welcometoteam", "bobkpdata"}
	found := map[string]bool{}
	files := 0
	roots := []string{dir}
	for i := range 3 {
		roots = append(roots, c.DataDir(i))
	}
	for _, root := range roots {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			files++
			for _, s := range secrets {
				if bytes.Contains(data, []byte(s)) {
					t.Errorf("%s contains %q", path, s)
				}
			}
			if bytes.Contains(data, bucketQueues) {
				found["queues"] = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range secrets {
		if bytes.Contains([]byte(names), []byte(s)) {
			t.Errorf("stream name or subject %q contains %q", names, s)
		}
	}
	// The search works: the clear bucket names of the write sets are found.
	if !found["queues"] {
		t.Errorf("no file of %d holds the bucket name \"queues\"; the search is broken", files)
	}
	t.Logf("searched %d files", files)
}

// TestClusterLeaderLoss stops the node that leads the log's stream: the
// other two elect a new leader and go on serving reads and writes, and
// their followers resume from the new leader.
func TestClusterLeaderLoss(t *testing.T) {
	c := clustertest.Start(t, 3)
	dir := t.TempDir()
	var st []*LocalStore
	for i := range 3 {
		s, err := OpenClusterServer(filepath.Join(dir, fmt.Sprintf("replica-%d.db", i)), Options{Passphrase: []byte("cluster pass"), KDF: fastKDF},
			Limits{}, ClusterOptions{Log: openLog(t, c, i, "leader-loss")})
		if err != nil {
			t.Fatal(err)
		}
		st = append(st, s)
	}
	defer func() {
		for _, s := range st {
			s.Close()
		}
	}()
	send := clusterGroup(t, st)
	send(st[0], "before")
	info, err := openLog(t, c, 0, "leader-loss").Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	leader := -1
	for i := range 3 {
		if c.Config(i).Name == info.Cluster.Leader {
			leader = i
		}
	}
	if leader < 0 {
		t.Fatalf("stream leader %q is none of the nodes", info.Cluster.Leader)
	}
	st[leader].Close()
	c.Stop(leader)
	t0 := time.Now()
	for i := range 3 {
		if i == leader {
			continue
		}
		wait := st[i].QueueSignal(devKey("b1"))
		for {
			_, err := st[i].Send(ctx, SendRequest{Group: []byte("group"), Sender: devKey("a1"), Messages: [][]byte{fmt.Appendf(nil, "after, through %d", i)}})
			if err == nil {
				break
			}
			if time.Since(t0) > time.Minute {
				t.Fatalf("node %d: no write a minute after losing the leader: %v", i, err)
			}
			t.Logf("%v: node %d: %v", time.Since(t0), i, err)
		}
		<-wait
	}
	for i := range 3 {
		if i == leader {
			continue
		}
		r, err := st[i].Fetch(ctx, devKey("b1"), 1, 0, 0)
		if err != nil || len(r.Messages) != 3 {
			t.Errorf("node %d: %d messages, %v", i, len(r.Messages), err)
		}
	}
	t.Logf("the cluster served writes on both nodes %v after losing the leader (node %d)", time.Since(t0), leader)
}

// TestClusterMinorityFails: a node cut off from the other two (they are
// down) answers writes with an error naming the cluster log, and reads
// too once JetStream's stream leader noticed it lost the quorum.
func TestClusterMinorityFails(t *testing.T) {
	c := clustertest.Start(t, 3)
	dir := t.TempDir()
	var st []*LocalStore
	for i := range 3 {
		s, err := OpenClusterServer(filepath.Join(dir, fmt.Sprintf("replica-%d.db", i)), Options{Passphrase: []byte("cluster pass"), KDF: fastKDF},
			Limits{}, ClusterOptions{Log: openLog(t, c, i, "minority"), Timeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		st = append(st, s)
	}
	send := clusterGroup(t, st)
	send(st[0], "before")
	defer st[0].Close()
	for i := 1; i < 3; i++ {
		st[i].Close()
		c.Stop(i)
	}
	_, err := st[0].Send(ctx, SendRequest{Group: []byte("group"), Sender: devKey("a1"), Messages: [][]byte{[]byte("alone")}})
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("Send without a quorum = %v, want ErrUnavailable", err)
	}
	// A stream leader that lost its quorum answers the read barrier until
	// it notices and steps down (Raft's election timeout); then reads
	// fail too.
	for deadline := time.Now().Add(30 * time.Second); ; {
		_, err := st[0].Fetch(ctx, devKey("b1"), 0, 0, 0)
		if err != nil {
			if !errors.Is(err, ErrUnavailable) {
				t.Errorf("Fetch without a quorum = %v, want ErrUnavailable", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("reads still served 30 s after losing the quorum")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
