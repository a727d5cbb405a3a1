package server

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"qpchat/mls"
	"qpchat/node/bench"
)

// logLines returns the lines of l that contain substr.
func logLines(l *logBuffer, substr string) []string {
	var out []string
	for _, line := range strings.Split(l.String(), "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return out
}

// damageQueuedSeq flips a byte of the sealed value of every queued record
// with sequence number seq, in the node's file, with the node stopped.
// It returns how many it damaged.
func damageQueuedSeq(t *testing.T, path string, seq uint64) int {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	must(t, "open the node's file", err)
	defer db.Close()
	n := 0
	key := binary.BigEndian.AppendUint64(nil, seq)
	err = db.Update(func(tx *bolt.Tx) error {
		queues := tx.Bucket([]byte("queues"))
		return queues.ForEachBucket(func(dev []byte) error {
			mb := queues.Bucket(dev).Bucket([]byte("m"))
			if mb == nil {
				return nil
			}
			v := mb.Get(key)
			if v == nil {
				return nil
			}
			v = bytes.Clone(v)
			v[len(v)/2] ^= 0x40
			n++
			return mb.Put(key, v)
		})
	})
	must(t, "damage queued records", err)
	return n
}

// TestDamagedQueuedRecordSkippedAndReported: a queued message damaged in
// the node's file costs its device that one message: the others arrive,
// the fetch answer lists the lost sequence number until the device acks
// past it, and the node logs one warning per damaged record, naming no
// user, device or group.
func TestDamagedQueuedRecordSkippedAndReported(t *testing.T) {
	logs := &logBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, nil))
	w := newWorld(t, func(c *Config) { c.Logger = logger })
	var batch [][]byte
	for i := range 3 {
		batch = append(batch, bench.PrivateMessage(w.group, 1, mls.ContentTypeApplication, []byte{'m', byte('0' + i)}))
	}
	_, err := w.a1.Send(testCtx(t), w.group, batch)
	must(t, "send", err)
	// Queues of a2, b1, b2: 1 Welcome, 2..4 the messages.
	w.n.stop()
	dataDir := w.n.cfg.DataDir
	if got := damageQueuedSeq(t, filepath.Join(dataDir, "node.db"), 3); got != 3 {
		t.Fatalf("damaged %d records, want 3 (a2, b1, b2)", got)
	}

	n := startNode(t, func(c *Config) { c.DataDir, c.Logger = dataDir, logger })
	auth := func(u *user, d *bench.Device) *bench.Device {
		c := n.dial()
		s, err := c.AuthenticateDevice(testCtx(t), u.name, d.Key, c.Exporter)
		must(t, "authenticate after the restart", err)
		return s
	}
	b1 := auth(w.bob, w.b1)
	const warning = "queued message was damaged"

	msgs, q, err := b1.Fetch(testCtx(t), 0, 0)
	must(t, "fetch with a damaged record", err)
	var seqs []uint64
	for _, m := range msgs {
		seqs = append(seqs, m.Seq)
	}
	if !slices.Equal(seqs, []uint64{1, 2, 4}) || !slices.Equal(q.Lost, []uint64{3}) {
		t.Fatalf("fetch: messages %v, lost %v; want [1 2 4], lost [3]", seqs, q.Lost)
	}
	if got := len(logLines(logs, warning)); got != 1 {
		t.Errorf("%d warnings after the first fetch, want 1", got)
	}
	// Fetched again (the answer may have been lost): reported again, not
	// logged again. A fetch after the lost one does not list it.
	_, q, err = b1.FetchWait(testCtx(t), 2, 0, 0)
	must(t, "fetchWait", err)
	if !slices.Equal(q.Lost, []uint64{3}) {
		t.Errorf("second fetch: lost %v, want [3]", q.Lost)
	}
	if _, q, _ = b1.Fetch(testCtx(t), 3, 0); len(q.Lost) != 0 {
		t.Errorf("fetch after 3: lost %v", q.Lost)
	}
	if got := len(logLines(logs, warning)); got != 1 {
		t.Errorf("%d warnings after fetching the damaged record again, want still 1", got)
	}
	// Ack past it: clean from then on.
	must(t, "ack past the lost record", b1.Ack(testCtx(t), 3))
	msgs, q, err = b1.Fetch(testCtx(t), 0, 0)
	if err != nil || len(msgs) != 1 || msgs[0].Seq != 4 || len(q.Lost) != 0 || q.Length != 1 {
		t.Errorf("after the ack: %v, %d messages, lost %v, queue length %d", err, len(msgs), q.Lost, q.Length)
	}
	// fetchWait with only a lost record after `after` answers at once.
	b2 := auth(w.bob, w.b2)
	msgs, q, err = b2.FetchWait(testCtx(t), 2, 0, 20e9)
	if err != nil || len(msgs) != 1 || !slices.Equal(q.Lost, []uint64{3}) {
		t.Errorf("b2 fetchWait: %v, %d messages, lost %v", err, len(msgs), q.Lost)
	}
	lines := logLines(logs, warning)
	if len(lines) != 2 {
		t.Errorf("%d warnings after two devices met their damaged records, want 2", len(lines))
	}
	for _, line := range lines {
		for _, secret := range []string{"bob", "alice", hex.EncodeToString(w.b1.Pub()), hex.EncodeToString(w.b2.Pub()), hex.EncodeToString(w.group), "127.0.0.1"} {
			if strings.Contains(line, secret) {
				t.Errorf("warning %q names %q", line, secret)
			}
		}
	}
}
