package store

import (
	"bytes"
	"slices"
	"testing"
)

// queueWithMessages makes b1 a member of a group of a1 and sends it n
// messages after the Welcome (seq 1): seqs 2..n+1.
func queueWithMessages(t *testing.T, s *LocalStore, n int) {
	t.Helper()
	addUser(t, s, "alice", "a1")
	addUser(t, s, "bob", "b1")
	gid := []byte("group")
	if err := s.CreateGroup(ctx, gid, devKey("a1")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(ctx, CommitRequest{Group: gid, Committer: devKey("a1"), Message: []byte("c"), Added: [][]byte{devKey("b1")}, Welcome: []byte("w"),
		KeyPackageRefs: [][]byte{fetchedRef(t, s, devKey("a1"), "bob", devKey("b1"))}}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := s.Send(ctx, SendRequest{Group: gid, Sender: devKey("a1"), Messages: [][]byte{{'m', byte('0' + i)}}}); err != nil {
			t.Fatal(err)
		}
	}
}

// damageQueued edits the raw (sealed) value of a queued record of dev
// with edit, as a bad disk or an attacker with the file would.
func damageQueued(t *testing.T, s *LocalStore, dev string, seq uint64, edit func(v []byte) []byte) {
	t.Helper()
	rawEdit(t, s.db, func(tx *Tx) error {
		mb := tx.Bucket(bucketQueues, tx.Ident(domainDevice, devKey(dev))).Bucket(keyMessages).b
		v := mb.Get(SeqKey(seq))
		if v == nil {
			t.Fatalf("no queued record %d", seq)
		}
		return mb.Put(SeqKey(seq), edit(bytes.Clone(v)))
	})
}

func seqsOf(msgs []QueuedMessage) []uint64 {
	var out []uint64
	for _, m := range msgs {
		out = append(out, m.Seq)
	}
	return out
}

// TestDamagedQueuedRecordCostsOneMessage: a queued record that fails
// authentication is skipped and reported as lost, once as newly damaged,
// until the device acks past it; the other messages arrive.
func TestDamagedQueuedRecordCostsOneMessage(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func([]byte) []byte
	}{
		{"flipped bit", func(v []byte) []byte { v[len(v)-3] ^= 0x10; return v }},
		{"flipped nonce", func(v []byte) []byte { v[0] ^= 1; return v }},
		{"truncated", func(v []byte) []byte { return v[:10] }},
		{"emptied", func(v []byte) []byte { return nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newServer(t, Limits{})
			queueWithMessages(t, s, 4) // seqs 1 (Welcome) .. 5
			damageQueued(t, s, "b1", 3, tc.edit)

			r, err := s.Fetch(ctx, devKey("b1"), 0, 0, 0)
			if err != nil {
				t.Fatalf("fetch with a damaged record: %v", err)
			}
			if got := seqsOf(r.Messages); !slices.Equal(got, []uint64{1, 2, 4, 5}) {
				t.Errorf("messages %v, want [1 2 4 5]", got)
			}
			if !slices.Equal(r.Lost, []uint64{3}) || r.Damaged != 1 {
				t.Errorf("lost %v (newly damaged %d), want [3] (1)", r.Lost, r.Damaged)
			}
			if string(r.Messages[2].Data) != "m2" {
				t.Errorf("message 4 is %q, want m2", r.Messages[2].Data)
			}
			// Reported again (the device may not have got the answer), but
			// not as newly damaged.
			r, err = s.Fetch(ctx, devKey("b1"), 2, 0, 0)
			if err != nil || !slices.Equal(r.Lost, []uint64{3}) || r.Damaged != 0 || len(r.Messages) != 2 {
				t.Errorf("second fetch: %v, lost %v, damaged %d, %d messages", err, r.Lost, r.Damaged, len(r.Messages))
			}
			// The limit counts it: limit 2 after 1 gives 2 and lost 3.
			r, _ = s.Fetch(ctx, devKey("b1"), 1, 2, 0)
			if got := seqsOf(r.Messages); !slices.Equal(got, []uint64{2}) || !slices.Equal(r.Lost, []uint64{3}) {
				t.Errorf("fetch(after 1, limit 2): %v lost %v, want [2] lost [3]", got, r.Lost)
			}
			// A fetch of only the lost record.
			r, _ = s.Fetch(ctx, devKey("b1"), 2, 1, 0)
			if len(r.Messages) != 0 || !slices.Equal(r.Lost, []uint64{3}) {
				t.Errorf("fetch(after 2, limit 1): %d messages, lost %v", len(r.Messages), r.Lost)
			}
			// Ack past it: later fetches are clean.
			if err := s.Ack(ctx, devKey("b1"), 3); err != nil {
				t.Fatalf("ack past the lost record: %v", err)
			}
			r, err = s.Fetch(ctx, devKey("b1"), 0, 0, 0)
			if err != nil || len(r.Lost) != 0 || r.Damaged != 0 || !slices.Equal(seqsOf(r.Messages), []uint64{4, 5}) || r.Queue.Len != 2 {
				t.Errorf("after the ack: %v, messages %v, lost %v, queue %+v", err, seqsOf(r.Messages), r.Lost, r.Queue)
			}
		})
	}
}

// TestDamagedRecordsAllLost: a queue of nothing but damaged records (and
// a damaged key) is reported in one fetch and then acked away.
func TestDamagedRecordsAllLost(t *testing.T) {
	s, _ := newServer(t, Limits{})
	queueWithMessages(t, s, 3)
	for seq := uint64(1); seq <= 4; seq++ {
		damageQueued(t, s, "b1", seq, func(v []byte) []byte { v[30] ^= 0xff; return v })
	}
	// A key that is no sequence number (a bit flip in the key's length).
	rawEdit(t, s.db, func(tx *Tx) error {
		mb := tx.Bucket(bucketQueues, tx.Ident(domainDevice, devKey("b1"))).Bucket(keyMessages).b
		return mb.Put([]byte{0, 0, 0, 0, 0, 0, 0, 3, 0}, []byte("junk"))
	})
	r, err := s.Fetch(ctx, devKey("b1"), 0, 0, 0)
	if err != nil || len(r.Messages) != 0 || !slices.Equal(r.Lost, []uint64{1, 2, 3, 4}) || r.Damaged != 5 {
		t.Fatalf("fetch: %v, %d messages, lost %v, newly damaged %d; want lost [1 2 3 4], 5 damaged", err, len(r.Messages), r.Lost, r.Damaged)
	}
	if err := s.Ack(ctx, devKey("b1"), 4); err != nil {
		t.Fatal(err)
	}
	r, err = s.Fetch(ctx, devKey("b1"), 0, 0, 0)
	if err != nil || len(r.Messages)+len(r.Lost) != 0 || r.Queue.Len != 0 {
		t.Errorf("after the ack: %v, %d messages, lost %v, queue %+v", err, len(r.Messages), r.Lost, r.Queue)
	}
}
