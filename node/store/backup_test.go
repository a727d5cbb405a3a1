package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// backupOf makes a backup of a small database with one value and one
// sealed file.
func backupOf(t testing.TB, dir string) []byte {
	db, err := Open(filepath.Join(dir, "db"), Options{Passphrase: []byte("pw"), KDF: fastKDF})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *Tx) error {
		b, err := tx.CreateBucket([]byte("b"))
		if err != nil {
			return err
		}
		return b.Put([]byte("k"), []byte("kept"))
	}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := db.WriteBackup(&buf, "test", map[string][]byte{"id.pem": []byte("identity secret")}, time.Unix(1e9, 0)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestBackupRoundTrip(t *testing.T) {
	dir := t.TempDir()
	b := backupOf(t, dir)
	for _, clear := range []string{"kept", "identity secret"} {
		if bytes.Contains(b, []byte(clear)) {
			t.Errorf("backup holds %q in clear", clear)
		}
	}
	path := filepath.Join(dir, "restored")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	h, files, err := ReadBackup(bytes.NewReader(b), f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if h.Version != "test" || h.SchemaVersion != 0 || !h.Created.Equal(time.Unix(1e9, 0)) || len(h.Files) != 1 {
		t.Errorf("header %+v", h)
	}
	if err := CheckFile(path); err != nil {
		t.Fatal(err)
	}
	db, err := Open(path, Options{Passphrase: []byte("pw"), KDF: fastKDF})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	id, err := db.OpenBackupFile("id.pem", files["id.pem"])
	if err != nil || string(id) != "identity secret" {
		t.Errorf("OpenBackupFile = %q, %v", id, err)
	}
	if _, err := db.OpenBackupFile("other.pem", files["id.pem"]); err == nil {
		t.Error("a sealed file opened under another name")
	}
	db.View(func(tx *Tx) error {
		if v, err := tx.Bucket([]byte("b")).Get([]byte("k")); err != nil || string(v) != "kept" {
			t.Errorf("restored value = %q, %v", v, err)
		}
		return nil
	})
}

func TestReadBackupRejectsDamage(t *testing.T) {
	b := backupOf(t, t.TempDir())
	hdrLen := int(binary.BigEndian.Uint32(b[len(backupMagic):]))
	bodyStart := len(backupMagic) + 4 + hdrLen
	for name, bad := range map[string][]byte{
		"empty":          nil,
		"magic":          append([]byte("qpchat-backup-2\n"), b[len(backupMagic):]...),
		"cut":            b[:len(b)-1],
		"extra":          append(bytes.Clone(b), 0),
		"bit in db":      flip(b, bodyStart+100),
		"bit in header":  flip(b, len(backupMagic)+4+2),
		"bit in sum":     flip(b, len(b)-1),
		"header too big": append([]byte(backupMagic), 0xff, 0xff, 0xff, 0xff),
	} {
		_, _, err := ReadBackup(bytes.NewReader(bad), io.Discard)
		if !errors.Is(err, ErrBadBackup) {
			t.Errorf("%s: ReadBackup = %v, want ErrBadBackup", name, err)
		}
	}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x10
	return c
}

func TestCompactKeepsData(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "db")
	db := openTest(t, src, passOpts("pw"))
	for i := range 200 {
		rawEdit(t, db, func(tx *Tx) error {
			b, err := tx.CreateBucket([]byte("b"))
			if err != nil {
				return err
			}
			return b.Put(SeqKey(uint64(i)), bytes.Repeat([]byte{1}, 4000))
		})
	}
	rawEdit(t, db, func(tx *Tx) error { return tx.DeleteBucket([]byte("b")) })
	rawEdit(t, db, func(tx *Tx) error {
		b, err := tx.CreateBucket([]byte("c"))
		if err != nil {
			return err
		}
		return b.Put([]byte("k"), []byte("kept"))
	})
	db.Close()
	dst := filepath.Join(dir, "compact")
	before, after, err := Compact(dst, src)
	if err != nil {
		t.Fatal(err)
	}
	if after >= before {
		t.Errorf("compaction from %d to %d bytes, want smaller", before, after)
	}
	db = openTest(t, dst, passOpts("pw"))
	defer db.Close()
	db.View(func(tx *Tx) error {
		if v, err := tx.Bucket([]byte("c")).Get([]byte("k")); err != nil || string(v) != "kept" {
			t.Errorf("compacted value = %q, %v", v, err)
		}
		return nil
	})
	if _, _, err := Compact(dst, src); err == nil {
		t.Error("Compact over an existing file succeeded")
	}
}

func TestQueueStatsCountsDepths(t *testing.T) {
	s, _ := newServer(t, Limits{})
	addUser(t, s, "alice", "a1")
	addUser(t, s, "bob", "b1")
	addUser(t, s, "carol", "c1")
	gid := []byte("group")
	if err := s.CreateGroup(ctx, gid, devKey("a1")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(ctx, CommitRequest{Group: gid, Committer: devKey("a1"), Message: []byte("c"),
		Added: [][]byte{devKey("b1"), devKey("c1")}, Welcome: []byte("w"),
		KeyPackageRefs: [][]byte{fetchedRef(t, s, devKey("a1"), "bob", devKey("b1")), fetchedRef(t, s, devKey("a1"), "carol", devKey("c1"))}}); err != nil {
		t.Fatal(err)
	}
	msgs := make([][]byte, 12)
	for i := range msgs {
		msgs[i] = []byte("m")
	}
	if _, err := s.Send(ctx, SendRequest{Group: gid, Sender: devKey("a1"), Messages: msgs}); err != nil {
		t.Fatal(err)
	}
	if err := s.Ack(ctx, devKey("c1"), 1<<62); err != nil {
		t.Fatal(err)
	}
	st, err := s.QueueStats(context.Background(), []uint64{0, 1, 10, 100})
	if err != nil {
		t.Fatal(err)
	}
	// b1 holds the Welcome and 12 messages, c1 nothing.
	want := []uint64{1, 1, 1, 2}
	if st.Queues != 2 || st.Messages != 13 || st.Overflowed != 0 || !slicesEqual(st.Buckets, want) {
		t.Errorf("QueueStats = %+v, want 2 queues, 13 messages, buckets %v", st, want)
	}
}

func slicesEqual(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// FuzzReadBackup: no input panics or reads past its bounds, and anything
// accepted re-reads the same.
func FuzzReadBackup(f *testing.F) {
	f.Add(backupOf(f, f.TempDir()))
	f.Add([]byte(backupMagic + "\x00\x00\x00\x02{}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var db bytes.Buffer
		h, files, err := ReadBackup(bytes.NewReader(b), &db)
		if err != nil {
			if !errors.Is(err, ErrBadBackup) {
				t.Fatalf("error %v is not ErrBadBackup", err)
			}
			return
		}
		if int64(db.Len()) != h.DBBytes || len(files) != len(h.Files) {
			t.Fatalf("accepted backup: %d db bytes for %d announced, %d files for %d", db.Len(), h.DBBytes, len(files), len(h.Files))
		}
	})
}

// retentionQueue makes a store with a group of a1 and b1 and returns a
// function sending one message from a1.
func retentionQueue(t *testing.T) (*LocalStore, func(string)) {
	s, _ := newServer(t, Limits{})
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
	return s, func(text string) {
		t.Helper()
		if _, err := s.Send(ctx, SendRequest{Group: gid, Sender: devKey("a1"), Messages: [][]byte{[]byte(text)}}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRetentionSweep: messages are dropped once at least retention old,
// never earlier, and the queue is then marked overflowed.
func TestRetentionSweep(t *testing.T) {
	s, send := retentionQueue(t)
	start := time.Unix(1_800_000_000, 0)
	now := start
	for h := 0; ; h++ {
		send(fmt.Sprint(h))
		n, _, err := s.RetentionSweep(ctx, now, 64*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			// Retention, one mark step and one sweep interval at most.
			if age := now.Sub(start); age < 64*time.Hour || age > 66*time.Hour {
				t.Errorf("first drop when the oldest message was %v old, want 64h to 66h", age)
			}
			break
		}
		if now.Sub(start) > 100*time.Hour {
			t.Fatal("messages older than retention never dropped")
		}
		now = now.Add(time.Hour)
	}
	fr, err := s.Fetch(ctx, devKey("b1"), 0, 0, 0)
	msgs, q := fr.Messages, fr.Queue
	if err != nil || !q.Overflowed {
		t.Fatalf("queue after the drop: overflowed %v, %v; want marked", q.Overflowed, err)
	}
	newest := int(now.Sub(start) / time.Hour)
	for _, m := range msgs {
		var h int
		if _, err := fmt.Sscanf(string(m.Data), "%d", &h); err != nil {
			continue // the Welcome
		}
		if newest-h >= 64 {
			t.Errorf("message of hour %d still queued at hour %d", h, newest)
		}
	}
	if len(msgs) < 60 {
		t.Errorf("%d messages left at hour %d, want the ~63 younger than retention", len(msgs), newest)
	}
}

// TestRetentionMarksBounded: a queue keeps about 65 marks, whatever the
// number of sweeps.
func TestRetentionMarksBounded(t *testing.T) {
	s, send := retentionQueue(t)
	now := time.Unix(1_800_000_000, 0)
	for h := range 1000 {
		send(fmt.Sprint(h))
		if n, _, err := s.RetentionSweep(ctx, now, 6400*time.Hour); err != nil || n != 0 {
			t.Fatalf("hour %d: %d dropped, %v; want none with a 6400h retention", h, n, err)
		}
		now = now.Add(time.Hour)
	}
	n := 0
	s.db.View(func(tx *Tx) error {
		c := tx.Bucket(bucketMarks, tx.Ident(domainDevice, devKey("b1"))).KeyCursor()
		for k, _, _ := c.First(); k != nil; k, _, _ = c.Next() {
			n++
		}
		return nil
	})
	if n > 12 {
		t.Errorf("%d marks after 1000 hourly sweeps at a 100h step, want about 10", n)
	}
}
