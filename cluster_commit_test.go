package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"qpchat/mls"
	"qpchat/node/bench"
	"qpchat/node/proto"
)

// TestClusterCompetingCommits sends, round after round, two commits for
// the same epoch of one group at the same moment to two different nodes
// of a three-process cluster, through the real RPC: exactly one is
// accepted, the other is refused as stale, and every node then holds the
// same history: one commit per epoch, the accepted one, in every
// member's queue.
func TestClusterCompetingCommits(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three nodes")
	}
	c := newTestCluster(t, 3, nil, nil)
	c.start()
	// Devices: the creator (unused after), two committers, the witness.
	w := setupClusterWorld(t, c.procs[0], "commits", 4)
	const witness = 3
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// Committer i on node i, i+1 (rotating): each pair of nodes competes.
	devOn := func(dev, k int) *bench.Device {
		t.Helper()
		p := c.procs[k]
		conn, err := bench.Dial(ctx, p.addr, p.fingerprint)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		d, err := conn.AuthenticateDevice(ctx, w.user, w.keys[dev], conn.Exporter)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	const rounds = 24
	var winners []string
	wins := [2]int{}
	for r := range rounds {
		epoch := uint64(1 + r)
		k := r % len(c.procs)
		ds := [2]*bench.Device{devOn(1, k), devOn(2, (k+1)%len(c.procs))}
		type result struct {
			who int
			err error
		}
		results := make(chan result, 2)
		start := make(chan struct{})
		for who, d := range ds {
			go func() {
				msg := bench.PrivateMessage(w.group, epoch, mls.ContentTypeCommit, fmt.Appendf(nil, "epoch %d by %d", epoch, who))
				<-start
				_, err := d.Commit(ctx, w.group, msg, nil, nil, nil)
				results <- result{who, err}
			}()
		}
		close(start)
		won := -1
		for range 2 {
			res := <-results
			switch {
			case res.err == nil:
				if won >= 0 {
					t.Fatalf("epoch %d: both commits were accepted (nodes %d and %d)", epoch, k+1, (k+1)%3+1)
				}
				won = res.who
			case proto.CodeOf(res.err) == proto.CodeStale:
			default:
				t.Fatalf("epoch %d: committer %d: %v, want success or stale", epoch, res.who, res.err)
			}
		}
		if won < 0 {
			t.Fatalf("epoch %d: neither commit was accepted", epoch)
		}
		wins[won]++
		winners = append(winners, fmt.Sprintf("epoch %d by %d", epoch, won))
	}
	t.Logf("%d rounds: committer on the first node won %d, on the second %d", rounds, wins[0], wins[1])
	// Every node holds the same history in the witness's queue: the
	// accepted commits, one per epoch, in order.
	for k, p := range c.procs {
		var got []string
		for _, m := range fetchAll(t, p, w.user, w.keys[witness], w.after[witness]) {
			pm, err := mls.UnmarshalMLSMessage(m.Data)
			if err != nil || pm.PrivateMessage == nil {
				t.Fatalf("node %d: a queued message does not decode: %v", k+1, err)
			}
			got = append(got, string(pm.PrivateMessage.Ciphertext))
		}
		if fmt.Sprint(got) != fmt.Sprint(winners) {
			t.Errorf("node %d holds the commits\n%q\nwant the accepted ones\n%q", k+1, got, winners)
		}
	}
}
