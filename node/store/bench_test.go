package store

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// Benchmarks of the durable paths (every call fsynced), reported as
// messages/s. Run with e.g.
//
//	go test -run '^$' -bench . -benchtime 3s ./node/store

const (
	benchBatch   = 100 // messages per Send
	benchPayload = 256 // bytes per message
)

// benchGroups makes n groups of two devices (a sender and a receiver).
func benchGroups(b *testing.B, s *LocalStore, n int) (senders, receivers, groups [][]byte) {
	for i := range n {
		snd, rcv, gid := devKey(fmt.Sprint("s", i)), devKey(fmt.Sprint("r", i)), devKey(fmt.Sprint("g", i))
		for j, d := range [][]byte{snd, rcv} {
			user := fmt.Sprint("u", i, "-", j)
			if err := s.CreateAccount(ctx, Account{User: user}); err != nil {
				b.Fatal(err)
			}
			if err := s.AddDevice(ctx, Device{User: user, Key: d}); err != nil {
				b.Fatal(err)
			}
		}
		if err := s.CreateGroup(ctx, gid, snd); err != nil {
			b.Fatal(err)
		}
		ref := fetchedRef(b, s, snd, fmt.Sprint("u", i, "-1"), rcv)
		if _, err := s.Commit(ctx, CommitRequest{Group: gid, Committer: snd, Message: []byte("c"), Added: [][]byte{rcv}, Welcome: []byte("w"), KeyPackageRefs: [][]byte{ref}}); err != nil {
			b.Fatal(err)
		}
		senders, receivers, groups = append(senders, snd), append(receivers, rcv), append(groups, gid)
	}
	return senders, receivers, groups
}

func benchMessages() [][]byte {
	msgs := make([][]byte, benchBatch)
	for i := range msgs {
		msgs[i] = bytes.Repeat([]byte{byte(i)}, benchPayload)
	}
	return msgs
}

// runWriters runs b.N operations spread over w goroutines; op gets the
// goroutine index.
func runWriters(b *testing.B, w int, op func(i int) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for i := range w {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				if err := op(i); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
}

func BenchmarkEnqueue(b *testing.B) {
	for _, w := range []int{1, 64} {
		b.Run(fmt.Sprintf("writers=%d", w), func(b *testing.B) {
			s, _ := newServer(b, Limits{MaxQueueLen: 1 << 30})
			senders, _, groups := benchGroups(b, s, w)
			msgs := benchMessages()
			c0 := s.db.commits.Load()
			runWriters(b, w, func(i int) error {
				_, err := s.Send(ctx, SendRequest{Group: groups[i], Sender: senders[i], Messages: msgs})
				return err
			})
			b.ReportMetric(float64(b.N*benchBatch)/b.Elapsed().Seconds(), "msgs/s")
			b.ReportMetric(float64(b.N)/float64(s.db.commits.Load()-c0), "calls/fsync")
		})
	}
}

// BenchmarkDeliver is the store's share of the node's end-to-end path:
// each operation sends a batch of 100, fetches it at the receiver and acks
// it, all durable.
func BenchmarkDeliver(b *testing.B) {
	for _, w := range []int{1, 64} {
		b.Run(fmt.Sprintf("clients=%d", w), func(b *testing.B) {
			s, _ := newServer(b, Limits{MaxQueueLen: 1 << 30})
			senders, receivers, groups := benchGroups(b, s, w)
			msgs := benchMessages()
			runWriters(b, w, func(i int) error {
				if _, err := s.Send(ctx, SendRequest{Group: groups[i], Sender: senders[i], Messages: msgs}); err != nil {
					return err
				}
				r, err := s.Fetch(ctx, receivers[i], 1, benchBatch, 0)
				got := r.Messages
				if err != nil || len(got) != benchBatch {
					return fmt.Errorf("fetch: %d messages, %v", len(got), err)
				}
				return s.Ack(ctx, receivers[i], got[len(got)-1].Seq)
			})
			b.ReportMetric(float64(b.N*benchBatch)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// BenchmarkAck measures acknowledging batches of 100 queued messages.
func BenchmarkAck(b *testing.B) {
	for _, w := range []int{1, 64} {
		b.Run(fmt.Sprintf("writers=%d", w), func(b *testing.B) {
			s, _ := newServer(b, Limits{MaxQueueLen: 1 << 30})
			senders, receivers, groups := benchGroups(b, s, w)
			msgs := benchMessages()
			perWriter := (b.N + w - 1) / w
			var wg sync.WaitGroup
			for i := range w {
				wg.Go(func() {
					for range perWriter {
						if _, err := s.Send(ctx, SendRequest{Group: groups[i], Sender: senders[i], Messages: msgs}); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			acked := make([]uint64, w)
			for i := range acked {
				acked[i] = 1 // the Welcome
			}
			runWriters(b, w, func(i int) error {
				acked[i] += benchBatch
				return s.Ack(ctx, receivers[i], acked[i])
			})
			b.ReportMetric(float64(b.N*benchBatch)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// BenchmarkKeyPackageConsume measures FetchKeyPackages (one device, pool
// consume) with 16 concurrent fetchers.
func BenchmarkKeyPackageConsume(b *testing.B) {
	s, _ := newServer(b, Limits{MaxKeyPackages: b.N + 1})
	addUser(b, s, "bob", "b1")
	addUser(b, s, "carol", "c1")
	kp := bytes.Repeat([]byte{1}, 1400) // roughly a hybrid-suite KeyPackage
	for done := 0; done < b.N; {
		n := min(b.N-done, 1000)
		pool := make([]KeyPackage, n)
		for i := range pool {
			pool[i] = KeyPackage{Ref: fmt.Appendf(nil, "ref-%d", done+i), Data: kp}
		}
		if _, err := s.PutKeyPackages(ctx, devKey("b1"), 1, pool, nil); err != nil {
			b.Fatal(err)
		}
		done += n
	}
	c0 := s.db.commits.Load()
	runWriters(b, 16, func(int) error {
		got, err := s.FetchKeyPackages(ctx, devKey("c1"), "bob", 1)
		if err != nil || len(got) != 1 || got[0].LastResort {
			return fmt.Errorf("fetch: %+v, %v", got, err)
		}
		return nil
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "fetches/s")
	b.ReportMetric(float64(b.N)/float64(s.db.commits.Load()-c0), "calls/fsync")
}

// BenchmarkUpdateSequential is the naive baseline: one small write per
// fsync, no concurrency.
func BenchmarkUpdateSequential(b *testing.B) {
	s, _ := newServer(b, Limits{})
	v := make([]byte, benchPayload)
	runtime.GC()
	runWriters(b, 1, func(int) error {
		return s.db.Update(func(tx *Tx) error { return tx.Bucket(bucketSecrets).Put([]byte("k"), v) })
	})
}

// bytesWritten returns the bytes this process has passed to write calls
// (wchar of /proc/self/io), or -1 where that is not available.
func bytesWritten() int64 {
	raw, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "wchar: "); ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				return n
			}
		}
	}
	return -1
}

// benchMembers makes n users with one device each (m0 … m{n-1}), from
// 16 goroutines so that their writes share fsyncs.
func benchMembers(b *testing.B, s *LocalStore, n int) (names []string, devs [][]byte) {
	names, devs = make([]string, n), make([][]byte, n)
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < n; i += 16 {
				names[i] = fmt.Sprint("m", i)
				devs[i] = devKey(names[i])
				addUser(b, s, "user-"+names[i], names[i])
			}
		})
	}
	wg.Wait()
	return names, devs
}

// benchRefs fetches a KeyPackage of each device for committer, from 16
// goroutines.
func benchRefs(b *testing.B, s *LocalStore, committer []byte, names []string, devs [][]byte) [][]byte {
	refs := make([][]byte, len(devs))
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < len(devs); i += 16 {
				refs[i] = fetchedRef(b, s, committer, "user-"+names[i], devs[i])
			}
		})
	}
	wg.Wait()
	return refs
}

// BenchmarkCommitAdd is one commit adding K devices to a new group, with
// a Welcome of 350 KB and a commit of 16 KB (about what 250 devices per
// commit take), and the bytes the process wrote for it:
//
//	go test -run '^$' -bench CommitAdd -benchtime 5x ./node/store
func BenchmarkCommitAdd(b *testing.B) {
	for _, k := range []int{10, 250} {
		b.Run(fmt.Sprintf("added=%d", k), func(b *testing.B) {
			s, _ := newServer(b, Limits{MaxGroupSize: k + 1})
			addUser(b, s, "alice", "a1")
			names, devs := benchMembers(b, s, k)
			welcome, commit := bytes.Repeat([]byte{'W'}, 350<<10), bytes.Repeat([]byte{'C'}, 16<<10)
			var written int64
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				gid := fmt.Appendf(nil, "group %d", i)
				if err := s.CreateGroup(ctx, gid, devKey("a1")); err != nil {
					b.Fatal(err)
				}
				refs := benchRefs(b, s, devKey("a1"), names, devs)
				w0 := bytesWritten()
				b.StartTimer()
				if _, err := s.Commit(ctx, CommitRequest{Group: gid, Committer: devKey("a1"), Message: commit,
					Added: devs, Welcome: welcome, KeyPackageRefs: refs}); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				written += bytesWritten() - w0
				b.StartTimer()
			}
			if written >= 0 {
				b.ReportMetric(float64(written)/float64(b.N)/(1<<20), "MiB-written/op")
			}
		})
	}
}

// BenchmarkCommitFanOut is one commit of 16 KB (no adds) in a group of N
// devices, queued for the N-1 others, and the bytes the process wrote
// for it.
func BenchmarkCommitFanOut(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			s, _ := newServer(b, Limits{MaxGroupSize: n, MaxQueueLen: 1 << 30})
			addUser(b, s, "alice", "a1")
			names, devs := benchMembers(b, s, n-1)
			gid := []byte("group")
			if err := s.CreateGroup(ctx, gid, devKey("a1")); err != nil {
				b.Fatal(err)
			}
			refs := benchRefs(b, s, devKey("a1"), names, devs)
			if _, err := s.Commit(ctx, CommitRequest{Group: gid, Committer: devKey("a1"), Message: []byte("c"),
				Added: devs, Welcome: []byte("w"), KeyPackageRefs: refs}); err != nil {
				b.Fatal(err)
			}
			commit := bytes.Repeat([]byte{'C'}, 16<<10)
			w0 := bytesWritten()
			b.ResetTimer()
			for i := range b.N {
				if _, err := s.Commit(ctx, CommitRequest{Group: gid, Committer: devKey("a1"), Epoch: uint64(i + 1), Message: commit}); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if w := bytesWritten() - w0; w0 >= 0 {
				b.ReportMetric(float64(w)/float64(b.N)/(1<<20), "MiB-written/op")
			}
		})
	}
}
