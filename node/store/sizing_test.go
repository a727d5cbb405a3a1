package store

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// BenchmarkSizing measures what README's "Sizing" reports: the file
// growth for 1 000 users (account and one device each) and for one
// million queued messages of 256 bytes, and the process's RSS after.
// One iteration is the whole measurement:
//
//	go test -run '^$' -bench Sizing -benchtime 1x -timeout 30m ./node/store
func BenchmarkSizing(b *testing.B) {
	for b.Loop() {
		s, path := newServer(b, Limits{MaxQueueLen: 1 << 30, MaxGroupSize: 1000})
		size := func() int64 {
			b.Helper()
			n, err := s.Size()
			if err != nil {
				b.Fatal(err)
			}
			return n
		}
		start := size()
		const users = 1000
		for i := range users {
			u := fmt.Sprintf("user%04d", i)
			if err := s.CreateAccount(ctx, Account{User: u, Record: bytes.Repeat([]byte{1}, 192), KSF: KSFParams{3, 65536, 4}, UserKey: devKey("uk" + u)}); err != nil {
				b.Fatal(err)
			}
			if err := s.AddDevice(ctx, Device{User: u, Key: devKey("d" + u), Certificate: bytes.Repeat([]byte{2}, 64)}); err != nil {
				b.Fatal(err)
			}
		}
		afterUsers := size()

		// One group of 10 devices; each message of the sender's batches is
		// stored once, with 9 references.
		gid := devKey("sizing-group")
		sender := devKey("duser0000")
		if err := s.CreateGroup(ctx, gid, sender); err != nil {
			b.Fatal(err)
		}
		var added, refs [][]byte
		for i := 1; i < 10; i++ {
			u := fmt.Sprintf("user%04d", i)
			added = append(added, devKey("d"+u))
			refs = append(refs, fetchedRef(b, s, sender, u, devKey("d"+u)))
		}
		if _, err := s.Commit(ctx, CommitRequest{Group: gid, Committer: sender, Message: []byte("c"), Added: added, Welcome: []byte("w"), KeyPackageRefs: refs}); err != nil {
			b.Fatal(err)
		}
		beforeMsgs := size()
		msgs := make([][]byte, 1000)
		for i := range msgs {
			msgs[i] = bytes.Repeat([]byte{byte(i)}, 256)
		}
		const queued = 1_000_000
		for n := 0; n < queued; n += len(msgs) * len(added) {
			if _, err := s.Send(ctx, SendRequest{Group: gid, Sender: sender, Messages: msgs}); err != nil {
				b.Fatal(err)
			}
		}
		st, err := s.QueueStats(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		afterMsgs := size()
		perMillion := float64(afterMsgs-beforeMsgs) * 1e6 / float64(st.Messages)
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		b.ReportMetric(float64(afterUsers-start), "disk-B/1k-users")
		b.ReportMetric(perMillion, "disk-B/1M-msgs")
		b.ReportMetric(float64(ms.HeapInuse), "heap-B")
		b.ReportMetric(float64(rssBytes()), "rss-B")
		b.Logf("%s: %d users in %d bytes; %d queued messages of 256 B: %d bytes (%.0f per million); heap %d, RSS %d",
			path, users, afterUsers-start, st.Messages, afterMsgs-beforeMsgs, perMillion, ms.HeapInuse, rssBytes())
	}
}

// rssBytes reads the process's resident set from /proc (0 elsewhere).
func rssBytes() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) >= 1 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// TestQueuePagesFull: a queue's keys only grow, so its B-tree pages are
// filled completely when they split (bbolt's default leaves them half
// empty, which doubled the disk a queued message costs).
func TestQueuePagesFull(t *testing.T) {
	s, _ := newServer(t, Limits{MaxQueueLen: 1 << 20, MaxGroupSize: 10})
	addUser(t, s, "alice", "a1")
	addUser(t, s, "bob", "b1")
	gid := devKey("pages-group")
	if err := s.CreateGroup(ctx, gid, devKey("a1")); err != nil {
		t.Fatal(err)
	}
	ref := fetchedRef(t, s, devKey("a1"), "bob", devKey("b1"))
	if _, err := s.Commit(ctx, CommitRequest{Group: gid, Committer: devKey("a1"), Message: []byte("c"), Added: [][]byte{devKey("b1")}, Welcome: []byte("w"), KeyPackageRefs: [][]byte{ref}}); err != nil {
		t.Fatal(err)
	}
	msgs := make([][]byte, 200)
	for i := range msgs {
		msgs[i] = bytes.Repeat([]byte{byte(i)}, 256)
	}
	for range 50 { // 10 000 messages, in transactions of 200 as senders do
		if _, err := s.Send(ctx, SendRequest{Group: gid, Sender: devKey("a1"), Messages: msgs}); err != nil {
			t.Fatal(err)
		}
	}
	err := s.view(ctx, func(tx *Tx) error {
		qb := tx.Bucket(bucketQueues).Bucket(tx.Ident(domainDevice, devKey("b1")))
		st := qb.Bucket(keyMessages).b.(boltBucket).b.Stats()
		fill := float64(st.LeafInuse) / float64(st.LeafAlloc)
		t.Logf("%d keys in %d leaf pages, %d of %d bytes in use (%.0f%%)", st.KeyN, st.LeafPageN, st.LeafInuse, st.LeafAlloc, 100*fill)
		if st.KeyN < 10_000 || fill < 0.85 {
			t.Errorf("queue leaves %.0f%% full for %d keys, want ≥ 85%% for 10000", 100*fill, st.KeyN)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
