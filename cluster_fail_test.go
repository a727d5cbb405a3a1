package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"qpchat/mls"
	"qpchat/node/bench"
	"qpchat/opaque"
)

// clusterWorld is one user whose devices are all in one group: senders,
// receivers and a witness that never acknowledges anything (its queue
// is compared across the nodes at the end).
type clusterWorld struct {
	user  string
	group []byte
	keys  []ed25519.PrivateKey
	after []uint64 // per device: the seq of its Welcome (what it skipped)
}

// setupClusterWorld registers a user with n devices through node p, has
// device 0 create a group and add the others, and has each of them take
// its Welcome out of its queue.
func setupClusterWorld(t *testing.T, p *clusterProc, user string, n int) *clusterWorld {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := bench.Dial(ctx, p.addr, p.fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w := &clusterWorld{user: user, group: make([]byte, 32), after: make([]uint64, n)}
	rand.Read(w.group)
	login, uk, err := c.Register(ctx, opaque.QPChat(), user, []byte("a password of "+user))
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	var devs []*bench.Device
	for range n {
		dk, _ := bench.NewDeviceKey(nil)
		if err := c.RegisterDevice(ctx, login, user, uk, dk); err != nil {
			t.Fatalf("register device: %v", err)
		}
		d, err := c.AuthenticateDevice(ctx, user, dk, c.Exporter)
		if err != nil {
			t.Fatalf("authenticate device: %v", err)
		}
		w.keys, devs = append(w.keys, dk), append(devs, d)
	}
	login.Release()
	for _, d := range devs[1:] {
		kp, _, err := bench.KeyPackage(0x0001, user, uk, d.Key, time.Now(), 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.UploadKeyPackages(ctx, 0x0001, [][]byte{kp}, nil); err != nil {
			t.Fatalf("upload: %v", err)
		}
	}
	creator := devs[0]
	if err := creator.CreateGroup(ctx, w.group); err != nil {
		t.Fatal(err)
	}
	got, err := creator.FetchKeyPackages(ctx, user, 0x0001)
	if err != nil {
		t.Fatal(err)
	}
	var added, refs [][]byte
	for _, f := range got {
		m, err := mls.UnmarshalMLSMessage(f.KeyPackage)
		if err != nil {
			t.Fatal(err)
		}
		r, _ := mls.MakeKeyPackageRef(m.KeyPackage)
		added, refs = append(added, f.Device), append(refs, r)
	}
	if len(added) != n-1 {
		t.Fatalf("fetched %d KeyPackages, want %d", len(added), n-1)
	}
	if _, err := creator.Commit(ctx, w.group, bench.PrivateMessage(w.group, 0, mls.ContentTypeCommit, []byte("add")), added, nil, bench.Welcome(0x0001, refs)); err != nil {
		t.Fatalf("commit: %v", err)
	}
	for i, d := range devs[1:] {
		msgs, _, err := d.Fetch(ctx, 0, 0)
		if err != nil || len(msgs) != 1 {
			t.Fatalf("device %d's Welcome: %d messages, %v", i+1, len(msgs), err)
		}
		if err := d.Ack(ctx, msgs[0].Seq); err != nil {
			t.Fatal(err)
		}
		w.after[i+1] = msgs[0].Seq
	}
	return w
}

// appMessage is the application message idx of sender s.
func appMessage(group []byte, s, idx int) []byte {
	return bench.PrivateMessage(group, 1, mls.ContentTypeApplication, fmt.Appendf(nil, "%d:%d", s, idx))
}

// parseAppMessage returns the sender and index of an appMessage.
func parseAppMessage(data []byte) (s, idx int, err error) {
	pm, err := mls.UnmarshalMLSMessage(data)
	if err != nil || pm.PrivateMessage == nil {
		return 0, 0, fmt.Errorf("a queued message does not decode: %v", err)
	}
	if _, err := fmt.Sscanf(string(pm.PrivateMessage.Ciphertext), "%d:%d", &s, &idx); err != nil {
		return 0, 0, fmt.Errorf("payload %q: %v", pm.PrivateMessage.Ciphertext, err)
	}
	return s, idx, nil
}

// TestClusterSIGKILL runs three `qpchat serve` processes as a cluster
// under load from failing-over clients spread over the nodes (senders
// and receivers on every node), SIGKILLs one node at a time, rotating,
// at moments drawn from a seeded random source, and restarts it each
// time. At the end every send that returned success has been fetched
// exactly once by every receiver, in each sender's order; the clients
// failed over; and each node, the restarted ones too, holds the same
// queue of the witness device (which never acknowledges), with every
// acknowledged message in it once. QPCHAT_CLUSTER_KILLS sets the number
// of kills (default 10), QPCHAT_CLUSTER_SEED replays a run.
func TestClusterSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three nodes and kills them")
	}
	kills := 10
	if s := os.Getenv("QPCHAT_CLUSTER_KILLS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			t.Fatalf("QPCHAT_CLUSTER_KILLS=%q: want a positive number", s)
		}
		kills = v
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("QPCHAT_CLUSTER_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("QPCHAT_CLUSTER_SEED: %v", err)
		}
		seed = v
	}
	t.Logf("seed %d (replay with QPCHAT_CLUSTER_SEED=%d), %d kills", seed, seed, kills)
	rng := mrand.New(mrand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	c := newTestCluster(t, 3, nil, nil)
	c.start()
	const senders, receivers = 3, 3
	// Devices: senders, receivers, the witness.
	w := setupClusterWorld(t, c.procs[0], "sigkill", senders+receivers+1)
	witness := senders + receivers

	sent := newAckSet(senders)
	checks := make([]*arrivals, receivers)
	for i := range checks {
		checks[i] = newArrivals(senders)
	}
	var acked atomic.Int64
	var clients []*foClient
	for i := range senders + receivers {
		clients = append(clients, newFOClient(w.user, w.keys[i], c.procs, i%len(c.procs)))
	}
	defer func() {
		for _, cl := range clients {
			cl.close()
		}
	}()

	var failure sync.Once
	failed := make(chan struct{})
	fail := func(format string, args ...any) {
		failure.Do(func() {
			t.Errorf(format, args...)
			close(failed)
		})
	}
	sendCtx, stopSend := context.WithCancel(context.Background())
	defer stopSend()
	recvCtx, stopRecv := context.WithCancel(context.Background())
	defer stopRecv()
	var wg sync.WaitGroup
	for s := range senders {
		cl := clients[s]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for idx := 0; sendCtx.Err() == nil; {
				d, err := cl.device(sendCtx)
				if err != nil {
					return
				}
				// Longer than the node's own timeout on the cluster log
				// (10 s), so that a send that fails has ended at the node
				// too and cannot land after the next one.
				ctx, cancel := context.WithTimeout(sendCtx, 30*time.Second)
				_, err = d.Send(ctx, w.group, [][]byte{appMessage(w.group, s, idx)})
				cancel()
				if err != nil {
					// Unknown: neither acknowledged nor necessarily lost.
					cl.failed(d)
					idx++
					continue
				}
				sent.ack(s, idx)
				acked.Add(1)
				idx++
			}
		}()
	}
	var received atomic.Int64
	for r := range receivers {
		cl := clients[senders+r]
		after := w.after[senders+r]
		check := checks[r]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for recvCtx.Err() == nil {
				d, err := cl.device(recvCtx)
				if err != nil {
					return
				}
				ctx, cancel := context.WithTimeout(recvCtx, 30*time.Second)
				msgs, _, err := d.FetchWait(ctx, after, 0, time.Second)
				cancel()
				if err != nil {
					cl.failed(d)
					continue
				}
				for _, m := range msgs {
					if m.Seq <= after {
						fail("receiver %d: fetch after %d returned %d", r, after, m.Seq)
						return
					}
					s, idx, err := parseAppMessage(m.Data)
					if err == nil {
						err = check.receive(s, idx)
					}
					if err != nil {
						fail("receiver %d (node %d): %v", r, cl.node()+1, err)
						return
					}
					after = m.Seq
					received.Add(1)
				}
				if len(msgs) > 0 {
					ctx, cancel := context.WithTimeout(recvCtx, 30*time.Second)
					err := d.Ack(ctx, after)
					cancel()
					if err != nil {
						// The next fetch starts after what was seen.
						cl.failed(d)
					}
				}
			}
		}()
	}

	// progress waits until n more sends were acknowledged.
	progress := func(n int64, what string) {
		t.Helper()
		want := acked.Load() + n
		deadline := time.Now().Add(90 * time.Second)
		for acked.Load() < want {
			select {
			case <-failed:
				t.FailNow()
			case <-time.After(20 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no send acknowledged for 90 s", what)
			}
		}
	}
	progress(20, "before the first kill")
	for round := range kills {
		k := round % len(c.procs)
		time.Sleep(time.Duration(200+rng.IntN(800)) * time.Millisecond)
		before := acked.Load()
		c.procs[k].kill()
		for _, cl := range clients {
			cl.dropIfOn(k)
		}
		// Load goes on through the other two nodes.
		progress(5, fmt.Sprintf("round %d, node %d down", round, k+1))
		start := time.Now()
		c.procs[k].start()
		// Send the node's original clients back to it: the restarted
		// node serves again.
		for i, cl := range clients {
			if i%len(c.procs) == k {
				cl.moveTo(k)
			}
		}
		progress(5, fmt.Sprintf("round %d, node %d restarted", round, k+1))
		t.Logf("round %d: killed node %d with %d sends acknowledged; %d more while it was down and restarted (restart took %v)",
			round, k+1, before, acked.Load()-before, time.Since(start).Round(time.Millisecond))
	}
	stopSend()
	// The receivers drain what was sent.
	deadline := time.Now().Add(2 * time.Minute)
	for r, ch := range checks {
		for ch.verify(sent) != nil {
			select {
			case <-failed:
				t.FailNow()
			case <-time.After(50 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("receiver %d: %v", r, ch.verify(sent))
			}
		}
	}
	stopRecv()
	wg.Wait()
	select {
	case <-failed:
		t.FailNow()
	default:
	}
	total := acked.Load()
	if total == 0 {
		t.Fatal("no send was acknowledged")
	}
	for i, cl := range clients {
		moves, nodes := cl.stats()
		if moves == 0 || nodes < 2 {
			t.Errorf("client %d failed over %d times over %d nodes, want at least once to another node", i, moves, nodes)
		}
	}

	// Every node, the restarted ones too, has the witness's whole queue:
	// every acknowledged message once, in order, and the same queue on
	// each. A send whose client gave up (its append timed out) may still
	// land in the log after the senders stopped, so the nodes are read
	// again until they agree: they must converge, within 30 s.
	var first []uint64
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		var differ string
		first = nil
		for k, p := range c.procs {
			queue := fetchAll(t, p, w.user, w.keys[witness], w.after[witness])
			check := newArrivals(senders)
			var seqs []uint64
			for _, m := range queue {
				s, idx, err := parseAppMessage(m.Data)
				if err == nil {
					err = check.receive(s, idx)
				}
				if err != nil {
					t.Fatalf("witness on node %d: %v", k+1, err)
				}
				seqs = append(seqs, m.Seq)
			}
			if err := check.verify(sent); err != nil {
				t.Fatalf("witness on node %d: %v", k+1, err)
			}
			if first == nil {
				first = seqs
			} else if differ == "" && fmt.Sprint(seqs) != fmt.Sprint(first) {
				differ = fmt.Sprintf("node %d holds the witness's queue as %d messages, node 1 as %d: they differ", k+1, len(seqs), len(first))
			}
		}
		if differ == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s 30 s after the last kill", differ)
		}
		t.Logf("%s; reading again", differ)
	}
	t.Logf("%d kills: %d sends acknowledged, %d messages received by %d receivers, each acknowledged one exactly once and in order; witness queue of %d messages identical on all nodes",
		kills, total, received.Load(), receivers, len(first))
}

// fetchAll reads a device's whole queue after after through node p.
func fetchAll(t *testing.T, p *clusterProc, user string, key ed25519.PrivateKey, after uint64) []bench.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out []bench.Message
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		conn, err := bench.Dial(ctx, p.addr, p.fingerprint)
		if err == nil {
			var d *bench.Device
			d, err = conn.AuthenticateDevice(ctx, user, key, conn.Exporter)
			for err == nil {
				var msgs []bench.Message
				msgs, _, err = d.Fetch(ctx, after, 0)
				if err == nil && len(msgs) == 0 {
					conn.Close()
					return out
				}
				for _, m := range msgs {
					out = append(out, m)
					after = m.Seq
				}
			}
			conn.Close()
		}
		if time.Now().After(deadline) || errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("reading a queue through %s: %v", p.addr, err)
		}
	}
}

// ackSet records the sends that were acknowledged, per sender.
type ackSet struct {
	mu    sync.Mutex
	acked []map[int]bool
}

func newAckSet(senders int) *ackSet {
	a := &ackSet{}
	for range senders {
		a.acked = append(a.acked, map[int]bool{})
	}
	return a
}

func (a *ackSet) ack(s, idx int) {
	a.mu.Lock()
	a.acked[s][idx] = true
	a.mu.Unlock()
}

// arrivals records what one receiver got, per sender in arrival order.
// A message that reached the queue twice is an error at once; order and
// completeness are checked against the acknowledged sends (verify): a
// send that failed is unknown, and may arrive (a node stored it and
// died before answering) after later ones of its sender that went to
// another node, so only acknowledged sends must keep their order.
type arrivals struct {
	mu   sync.Mutex
	got  [][]int
	seen []map[int]bool
}

func newArrivals(senders int) *arrivals {
	a := &arrivals{got: make([][]int, senders)}
	for range senders {
		a.seen = append(a.seen, map[int]bool{})
	}
	return a
}

func (a *arrivals) receive(s, idx int) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if s < 0 || s >= len(a.got) {
		return fmt.Errorf("message from unknown sender %d", s)
	}
	if a.seen[s][idx] {
		return fmt.Errorf("message %d of sender %d received twice", idx, s)
	}
	a.seen[s][idx] = true
	a.got[s] = append(a.got[s], idx)
	return nil
}

// verify checks that every acknowledged send arrived, and that they
// arrived in the order they were sent.
func (a *arrivals) verify(sent *ackSet) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	sent.mu.Lock()
	defer sent.mu.Unlock()
	for s, acked := range sent.acked {
		last := -1
		for _, idx := range a.got[s] {
			if !acked[idx] {
				continue
			}
			if idx < last {
				return fmt.Errorf("acknowledged message %d of sender %d arrived after %d: out of order", idx, s, last)
			}
			last = idx
		}
		for idx := range acked {
			if !a.seen[s][idx] {
				return fmt.Errorf("acknowledged message %d of sender %d is missing", idx, s)
			}
		}
	}
	return nil
}
