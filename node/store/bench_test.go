package store

import (
	"bytes"
	"fmt"
	"runtime"
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
