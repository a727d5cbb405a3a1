package store

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
)

// bigGroup makes a group of a1 and adds k devices (d0 … d{k-1}, one user
// each) in one commit with a Welcome of welcomeLen bytes. It returns the
// group id and the added device names.
func bigGroup(t testing.TB, s *LocalStore, k, welcomeLen int) ([]byte, []string) {
	t.Helper()
	addUser(t, s, "alice", "a1")
	gid := []byte("big group")
	if err := s.CreateGroup(ctx, gid, devKey("a1")); err != nil {
		t.Fatal(err)
	}
	var names []string
	var added, refs [][]byte
	for i := range k {
		name := fmt.Sprint("d", i)
		addUser(t, s, fmt.Sprint("user", i), name)
		names = append(names, name)
		added = append(added, devKey(name))
		refs = append(refs, fetchedRef(t, s, devKey("a1"), fmt.Sprint("user", i), devKey(name)))
	}
	welcome := bytes.Repeat([]byte{'W'}, welcomeLen)
	if _, err := s.Commit(ctx, CommitRequest{Group: gid, Committer: devKey("a1"), Message: []byte("commit 0"),
		Added: added, Welcome: welcome, KeyPackageRefs: refs}); err != nil {
		t.Fatal(err)
	}
	return gid, names
}

// bodyState returns the shared bodies (id → opened value) and their
// counts, read directly from the buckets.
func bodyState(t testing.TB, s *LocalStore) (bodies map[uint64][]byte, counts map[uint64]uint64) {
	t.Helper()
	bodies, counts = map[uint64][]byte{}, map[uint64]uint64{}
	err := s.db.View(func(tx *Tx) error {
		c := tx.Bucket(bucketBodies).Cursor()
		for k, v, err := c.First(); k != nil; k, v, err = c.Next() {
			if err != nil {
				return err
			}
			id, _ := ParseSeqKey(k)
			bodies[id] = v
		}
		c = tx.Bucket(bucketBodyCount).Cursor()
		for k, v, err := c.First(); k != nil; k, v, err = c.Next() {
			if err != nil {
				return err
			}
			n, err := parseBodyCount(v)
			if err != nil {
				return err
			}
			id, _ := ParseSeqKey(k)
			counts[id] = n.Refs
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return bodies, counts
}

// queuedRaw returns the opened queue entries of dev.
func queuedRaw(t testing.TB, s *LocalStore, dev string) map[uint64][]byte {
	t.Helper()
	out := map[uint64][]byte{}
	err := s.db.View(func(tx *Tx) error {
		mb := tx.Bucket(bucketQueues, tx.Ident(domainDevice, devKey(dev))).Bucket(keyMessages)
		if mb == nil {
			return nil
		}
		c := mb.Cursor()
		for k, v, err := c.First(); k != nil; k, v, err = c.Next() {
			if err != nil {
				return err
			}
			seq, _ := ParseSeqKey(k)
			out[seq] = v
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestWelcomeStoredOnce: a commit adding K devices stores its Welcome
// once, each added device's queue holds a 10-byte reference, every
// device fetches the whole Welcome, and the file grows by about one
// Welcome, not K.
func TestWelcomeStoredOnce(t *testing.T) {
	const k, welcomeLen = 40, 65536
	s, _ := newServer(t, Limits{})
	size0, _ := s.Size()
	_, names := bigGroup(t, s, k, welcomeLen)
	size1, _ := s.Size()

	bodies, counts := bodyState(t, s)
	if len(bodies) != 1 || len(counts) != 1 {
		t.Fatalf("%d bodies, %d counts after one Welcome to %d devices; want 1, 1", len(bodies), len(counts), k)
	}
	for id, b := range bodies {
		e, err := parseEnvelope(b)
		if err != nil || e.Kind != KindWelcome || len(e.Data) != welcomeLen {
			t.Errorf("body %d: kind %d, %d bytes, %v; want the Welcome", id, e.Kind, len(e.Data), err)
		}
		if counts[id] != k {
			t.Errorf("body %d has %d references, want %d", id, counts[id], k)
		}
	}
	st, err := s.QueueStats(ctx, nil)
	if err != nil || st.Bodies != 1 || st.BodyBytes < welcomeLen || st.BodyBytes > welcomeLen+4096 || st.Messages != k {
		t.Errorf("QueueStats = %+v, %v; want 1 body of about %d bytes, %d messages", st, err, welcomeLen, k)
	}
	for _, n := range names {
		q := queuedRaw(t, s, n)
		if len(q) != 1 || len(q[1]) != bodyRefLen {
			t.Fatalf("queue of %s: %d entries, first of %d bytes; want one reference", n, len(q), len(q[1]))
		}
		msgs := fetchAll(t, s, n)
		if len(msgs) != 1 || msgs[0].Kind != KindWelcome || len(msgs[0].Data) != welcomeLen || len(msgs[0].Added) != k {
			t.Fatalf("%s fetched %d messages, want the Welcome", n, len(msgs))
		}
	}
	// The file grows by one Welcome more than with a tiny one, not by k
	// (bbolt grows in pages, so allow some slack).
	s2, _ := newServer(t, Limits{})
	base0, _ := s2.Size()
	bigGroup(t, s2, k, 100)
	base1, _ := s2.Size()
	if extra := (size1 - size0) - (base1 - base0); extra > 3*welcomeLen {
		t.Errorf("a Welcome of %d bytes to %d devices grew the file by %d bytes more than one of 100 bytes", welcomeLen, k, extra)
	}
}

// TestSendSharesBodies: a batch to a group of three stores one body per
// message; to a group of two, the message stays inline; a full queue
// takes no reference, and a body no queue took is not written.
func TestSendSharesBodies(t *testing.T) {
	s, _ := newServer(t, Limits{MaxQueueLen: 3})
	gid, names := bigGroup(t, s, 2, 100) // queues of d0, d1: the Welcome
	send := func(msgs ...string) SendResult {
		t.Helper()
		var batch [][]byte
		for _, m := range msgs {
			batch = append(batch, []byte(m))
		}
		r, err := s.Send(ctx, SendRequest{Group: gid, Sender: devKey("a1"), Messages: batch})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	send("one", "two")
	if bodies, _ := bodyState(t, s); len(bodies) != 3 {
		t.Errorf("%d bodies after a Welcome and two messages to two devices, want 3", len(bodies))
	}
	// d0's queue is full (3 messages), d1 has room for one.
	must(t, "Ack", s.Ack(ctx, devKey(names[1]), 1))
	if r := send("three"); len(r.Overflowed) != 1 || !bytes.Equal(r.Overflowed[0], devKey(names[0])) {
		t.Errorf("overflowed %q, want d0", r.Overflowed)
	}
	bodies, counts := bodyState(t, s)
	if len(bodies) != 4 || counts[4] != 1 || counts[1] != 1 {
		t.Errorf("%d bodies, counts %v; want 4, one reference to the Welcome and to message three", len(bodies), counts)
	}
	// Both full: a body no queue takes is not written.
	send("four")
	if b2, c2 := bodyState(t, s); len(b2) != len(bodies) || len(c2) != len(counts) {
		t.Errorf("%d bodies, counts %v after a send no queue took; want as before", len(b2), c2)
	}
	for i, want := range []int{3, 3} {
		if got := len(fetchAll(t, s, names[i])); got != want {
			t.Errorf("%s holds %d messages, want %d", names[i], got, want)
		}
	}

	// A group of two: inline.
	s2, _ := newServer(t, Limits{})
	queueWithMessages(t, s2, 2)
	if bodies, _ := bodyState(t, s2); len(bodies) != 0 {
		t.Errorf("%d bodies for messages to one device, want none", len(bodies))
	}
	for seq, v := range queuedRaw(t, s2, "b1") {
		if len(v) == bodyRefLen {
			t.Errorf("entry %d of a one-device fan-out is a reference", seq)
		}
	}
}

// TestBodyReleased: a shared body goes with its last reference, however
// the references go: acks, revocation, account deletion, device expiry,
// retention.
func TestBodyReleased(t *testing.T) {
	const k = 6
	type dropFn func(t *testing.T, s *LocalStore, dev string, i int)
	ack := func(t *testing.T, s *LocalStore, dev string, _ int) {
		if err := s.Ack(ctx, devKey(dev), 1); err != nil {
			t.Fatal(err)
		}
	}
	revoke := func(t *testing.T, s *LocalStore, dev string, _ int) {
		if err := s.RevokeDevice(ctx, devKey(dev)); err != nil {
			t.Fatal(err)
		}
	}
	deleteAccount := func(t *testing.T, s *LocalStore, _ string, i int) {
		if err := s.DeleteAccount(ctx, fmt.Sprint("user", i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		drop dropFn
	}{
		{"ack", ack},
		{"revoke", revoke},
		{"delete account", deleteAccount},
		{"mixed", func(t *testing.T, s *LocalStore, dev string, i int) {
			[]dropFn{ack, revoke, deleteAccount}[i%3](t, s, dev, i)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newServer(t, Limits{})
			_, names := bigGroup(t, s, k, 1000)
			for i, n := range names {
				tc.drop(t, s, n, i)
				bodies, counts := bodyState(t, s)
				if i < k-1 {
					if len(bodies) != 1 || len(counts) != 1 || counts[1] != uint64(k-1-i) {
						t.Fatalf("after dropping %d of %d references: %d bodies, counts %v", i+1, k, len(bodies), counts)
					}
				} else if len(bodies)+len(counts) != 0 {
					t.Fatalf("after dropping every reference: %d bodies, counts %v; want none", len(bodies), counts)
				}
			}
		})
	}
	t.Run("expiry and retention", func(t *testing.T) {
		s, _ := newServer(t, Limits{})
		_, names := bigGroup(t, s, k, 1000)
		now := time.Unix(1_800_000_000, 0)
		// d0..d2 are seen now; the others are taken as seen now too on
		// the first sweep, then expire.
		if _, err := s.ExpireDevices(ctx, now.Add(-time.Hour), now); err != nil {
			t.Fatal(err)
		}
		for _, n := range append(names[:3:3], "a1") {
			if err := s.TouchDevice(ctx, devKey(n), now.Add(48*time.Hour)); err != nil {
				t.Fatal(err)
			}
		}
		if n, err := s.ExpireDevices(ctx, now.Add(24*time.Hour), now.Add(48*time.Hour)); err != nil || n != k-3 {
			t.Fatalf("ExpireDevices = %d, %v; want %d", n, err, k-3)
		}
		if _, counts := bodyState(t, s); counts[1] != 3 {
			t.Fatalf("after expiring %d devices: counts %v, want 3 references left", k-3, counts)
		}
		if _, _, err := s.RetentionSweep(ctx, now, time.Hour); err != nil {
			t.Fatal(err)
		}
		dropped, queues, err := s.RetentionSweep(ctx, now.Add(3*time.Hour), time.Hour)
		if err != nil || dropped != 3 || queues != 3 {
			t.Fatalf("RetentionSweep = %d, %d, %v; want 3 messages in 3 queues", dropped, queues, err)
		}
		if bodies, counts := bodyState(t, s); len(bodies)+len(counts) != 0 {
			t.Fatalf("after retention: %d bodies, counts %v; want none", len(bodies), counts)
		}
	})
}

// TestBodiesAcrossReopen: references and counts survive closing the
// store half-way through the acks, and the body goes with the last ack
// after the reopen.
func TestBodiesAcrossReopen(t *testing.T) {
	const k = 8
	s, path := newServer(t, Limits{})
	gid, names := bigGroup(t, s, k, 5000)
	if _, err := s.Send(ctx, SendRequest{Group: gid, Sender: devKey("a1"), Messages: [][]byte{[]byte("hello")}}); err != nil {
		t.Fatal(err)
	}
	for _, n := range names[:k/2] {
		if err := s.Ack(ctx, devKey(n), 1); err != nil {
			t.Fatal(err)
		}
	}
	names[0], names[k-1] = names[k-1], names[0] // ack in another order after the reopen
	s.Close()
	s, err := OpenServer(path, Options{Passphrase: []byte("server pass")}, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, counts := bodyState(t, s); counts[1] != k/2 || counts[2] != k {
		t.Fatalf("after the reopen: counts %v, want Welcome %d, message %d", counts, k/2, k)
	}
	for i, n := range names {
		msgs := fetchAll(t, s, n)
		if len(msgs) == 0 || string(msgs[len(msgs)-1].Data) != "hello" {
			t.Fatalf("%s fetched %d messages, last not hello", n, len(msgs))
		}
		if err := s.Ack(ctx, devKey(n), 2); err != nil {
			t.Fatal(err)
		}
		if _, counts := bodyState(t, s); i < k-1 && counts[2] != uint64(k-1-i) {
			t.Fatalf("after %d acks of the message: counts %v", i+1, counts)
		}
	}
	if bodies, counts := bodyState(t, s); len(bodies)+len(counts) != 0 {
		t.Fatalf("after every ack: %d bodies, counts %v; want none", len(bodies), counts)
	}
}

// TestDamagedSharedBody: a damaged shared body costs each referencing
// device that one message, is reported as newly damaged once in all,
// blocks no one, and goes when the last device acks past it.
func TestDamagedSharedBody(t *testing.T) {
	const k = 5
	s, _ := newServer(t, Limits{})
	gid, names := bigGroup(t, s, k, 100)
	for _, m := range []string{"m0", "m1", "m2"} {
		if _, err := s.Send(ctx, SendRequest{Group: gid, Sender: devKey("a1"), Messages: [][]byte{[]byte(m)}}); err != nil {
			t.Fatal(err)
		}
	}
	// Body 3 is m1, seq 3 in every queue.
	rawEdit(t, s.db, func(tx *Tx) error {
		b := tx.Bucket(bucketBodies).b
		v := bytes.Clone(b.Get(SeqKey(3)))
		v[len(v)-1] ^= 1
		return b.Put(SeqKey(3), v)
	})
	damaged := 0
	for _, n := range names {
		r, err := s.Fetch(ctx, devKey(n), 0, 0, 0)
		if err != nil {
			t.Fatalf("%s: fetch with a damaged body: %v", n, err)
		}
		if got := seqsOf(r.Messages); !slices.Equal(got, []uint64{1, 2, 4}) || !slices.Equal(r.Lost, []uint64{3}) {
			t.Errorf("%s: messages %v lost %v, want [1 2 4] lost [3]", n, got, r.Lost)
		}
		damaged += r.Damaged
	}
	if damaged != 1 {
		t.Errorf("the damaged body was reported %d times, want once", damaged)
	}
	for _, n := range names {
		if err := s.Ack(ctx, devKey(n), 4); err != nil {
			t.Fatal(err)
		}
	}
	if bodies, counts := bodyState(t, s); len(bodies)+len(counts) != 0 {
		t.Errorf("after every device acked: %d bodies, counts %v; want none", len(bodies), counts)
	}
}

// TestDanglingReference: a reference to a missing body is a damaged
// entry of its own device (lost, reported, replaced by the marker).
func TestDanglingReference(t *testing.T) {
	s, _ := newServer(t, Limits{})
	_, names := bigGroup(t, s, 3, 100)
	rawEdit(t, s.db, func(tx *Tx) error { return tx.Bucket(bucketBodies).Delete(SeqKey(1)) })
	r, err := s.Fetch(ctx, devKey(names[0]), 0, 0, 0)
	if err != nil || len(r.Messages) != 0 || !slices.Equal(r.Lost, []uint64{1}) || r.Damaged != 1 {
		t.Fatalf("fetch of a dangling reference: %v, %d messages, lost %v, newly damaged %d", err, len(r.Messages), r.Lost, r.Damaged)
	}
	if v := queuedRaw(t, s, names[0])[1]; len(v) != 0 {
		t.Errorf("dangling entry is %x, want the lost marker", v)
	}
	if _, counts := bodyState(t, s); counts[1] != 2 {
		t.Errorf("counts %v after one dangling reference was dropped, want 2 left", counts)
	}
	r, _ = s.Fetch(ctx, devKey(names[0]), 0, 0, 0)
	if !slices.Equal(r.Lost, []uint64{1}) || r.Damaged != 0 {
		t.Errorf("second fetch: lost %v, newly damaged %d; want [1], 0", r.Lost, r.Damaged)
	}
	for _, n := range names {
		if err := s.Ack(ctx, devKey(n), 1); err != nil {
			t.Fatal(err)
		}
	}
	if bodies, counts := bodyState(t, s); len(bodies)+len(counts) != 0 {
		t.Errorf("after every ack: %d bodies, counts %v; want none", len(bodies), counts)
	}
}

// TestBodiesMigration: a file of server schema version 4, whose queues
// hold a copy of every message per device, opens with its messages, and
// what comes after shares bodies; an older binary then refuses it.
func TestBodiesMigration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node.db")
	v4 := Schema{Name: ServerSchema.Name, Migrations: ServerSchema.Migrations[:4]}
	opts := Options{Passphrase: []byte("server pass"), KDF: fastKDF, Schema: v4}
	old := &LocalStore{db: openTest(t, path, opts), limits: Limits{}.withDefaults(), signals: signals{m: map[string]chan struct{}{}}}
	addUser(t, old, "alice", "a1")
	addUser(t, old, "bob", "b1")
	addUser(t, old, "carol", "c1")
	gid := []byte("group")
	must(t, "CreateGroup", old.CreateGroup(ctx, gid, devKey("a1")))
	// The version 4 layout: group state and per-device copies, written
	// as that version's Commit and Send did.
	g := Group{ID: gid, Epoch: 1, Members: [][]byte{devKey("a1"), devKey("b1"), devKey("c1")}}
	welcome := (&Envelope{Kind: KindWelcome, Group: gid, Sender: devKey("a1"), Added: g.Members[1:], Data: []byte("welcome")}).marshal()
	hello := (&Envelope{Kind: KindApplication, Group: gid, Sender: devKey("a1"), Data: []byte("hello")}).marshal()
	err := old.db.Update(func(tx *Tx) error {
		gb := tx.Bucket(bucketGroups, tx.Ident(domainGroup, gid))
		if err := gb.Put(keyGroup, g.marshal()); err != nil {
			return err
		}
		for _, d := range g.Members[1:] {
			qb, err := tx.CreateBucket(bucketQueues, tx.Ident(domainDevice, d))
			if err != nil {
				return err
			}
			mb, err := qb.CreateBucket(keyMessages)
			if err != nil {
				return err
			}
			for i, e := range [][]byte{welcome, hello} {
				if err := mb.Put(SeqKey(uint64(i+1)), e); err != nil {
					return err
				}
			}
			if err := qb.Put(keyQueue, (&QueueState{Len: 2, Last: 2}).marshal()); err != nil {
				return err
			}
		}
		return nil
	})
	must(t, "writing version 4 queues", err)
	must(t, "View", old.db.View(func(tx *Tx) error {
		if tx.Bucket(bucketBodies) != nil {
			t.Error("a version 4 file has a bodies bucket")
		}
		return nil
	}))
	old.Close()

	s, err := OpenServer(path, Options{Passphrase: []byte("server pass")}, Limits{})
	must(t, "OpenServer", err)
	defer s.Close()
	if v, err := s.db.SchemaVersion(); err != nil || v != 5 || v != ServerSchema.Version() {
		t.Fatalf("schema version %d, %v; want 5", v, err)
	}
	_, err = s.Send(ctx, SendRequest{Group: gid, Sender: devKey("a1"), Messages: [][]byte{[]byte("after")}})
	must(t, "Send after the migration", err)
	for _, d := range []string{"b1", "c1"} {
		msgs := fetchAll(t, s, d)
		var got []string
		for _, m := range msgs {
			got = append(got, string(m.Data))
		}
		if !slices.Equal(got, []string{"welcome", "hello", "after"}) || !slices.Equal(seqsOf(msgs), []uint64{1, 2, 3}) {
			t.Errorf("%s fetched %q (seqs %v), want welcome, hello, after (1 2 3)", d, got, seqsOf(msgs))
		}
		if v := queuedRaw(t, s, d); len(v[2]) == bodyRefLen || len(v[3]) != bodyRefLen {
			t.Errorf("%s: old entry of %d bytes, new one of %d; want inline, then a reference", d, len(v[2]), len(v[3]))
		}
	}
	if bodies, _ := bodyState(t, s); len(bodies) != 1 {
		t.Errorf("%d bodies after one shared send, want 1", len(bodies))
	}
	for _, d := range []string{"b1", "c1"} {
		must(t, "Ack", s.Ack(ctx, devKey(d), 3))
	}
	if bodies, counts := bodyState(t, s); len(bodies)+len(counts) != 0 {
		t.Errorf("after the acks: %d bodies, counts %v", len(bodies), counts)
	}
	s.Close()
	if _, err := Open(path, Options{Passphrase: []byte("server pass"), Schema: v4}); err == nil {
		t.Error("a version 4 binary opened the migrated file")
	}
}

// TestBodiesBackup: a backup restores shared bodies with their
// references.
func TestBodiesBackup(t *testing.T) {
	s, _ := newServer(t, Limits{})
	_, names := bigGroup(t, s, 3, 2000)
	var buf bytes.Buffer
	if _, err := s.DB().WriteBackup(&buf, "test", nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "restored.db")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = ReadBackup(&buf, f)
	f.Close()
	must(t, "ReadBackup", err)
	r, err := OpenServer(path, Options{Passphrase: []byte("server pass")}, Limits{})
	must(t, "opening the restored store", err)
	defer r.Close()
	for _, n := range names {
		if msgs := fetchAll(t, r, n); len(msgs) != 1 || len(msgs[0].Data) != 2000 {
			t.Errorf("%s in the restored store: %d messages", n, len(msgs))
		}
		must(t, "Ack", r.Ack(ctx, devKey(n), 1))
	}
	if bodies, counts := bodyState(t, r); len(bodies)+len(counts) != 0 {
		t.Errorf("restored store after the acks: %d bodies, counts %v", len(bodies), counts)
	}
}

var (
	sampleRef   = bodyRef{ID: 0x0102030405060708}
	sampleCount = bodyCount{Refs: 5000}
)

func FuzzBodyRef(f *testing.F) {
	fuzzRecord(f, seedsOf(sampleRef.marshal()), parseBodyRef, (*bodyRef).marshal)
}

func FuzzBodyCount(f *testing.F) {
	fuzzRecord(f, seedsOf(sampleCount.marshal()), parseBodyCount, (*bodyCount).marshal)
}

func FuzzQueuedRecord(f *testing.F) {
	zeroRef := build(func(b *cryptobyte.Builder) { b.AddUint8(bodyRefTag); b.AddUint64(0) })
	seeds := append(seedsOf(sampleRef.marshal()), seedsOf(sampleEnv.marshal())...)
	fuzzRecord(f, append(seeds, zeroRef), parseQueued, (*queuedRecord).marshal)
}

func TestBodyRecordsRoundTrip(t *testing.T) {
	if got := len(sampleRef.marshal()); got != bodyRefLen {
		t.Errorf("bodyRef encodes to %d bytes, want bodyRefLen %d", got, bodyRefLen)
	}
	smallest := Envelope{Kind: KindApplication, Group: []byte{1}, Sender: []byte{1}}
	if n := len(smallest.marshal()); n <= bodyRefLen {
		t.Errorf("the smallest envelope has %d bytes, not more than a reference", n)
	}
	if r, err := parseBodyRef(sampleRef.marshal()); err != nil || r != sampleRef {
		t.Errorf("parseBodyRef = %+v, %v", r, err)
	}
	if _, err := parseBodyRef((&bodyRef{}).marshal()); err == nil {
		t.Error("parseBodyRef accepted id 0")
	}
	if _, err := parseBodyCount((&bodyCount{}).marshal()); err == nil {
		t.Error("parseBodyCount accepted 0 references")
	}
	q, err := parseQueued(sampleEnv.marshal())
	if err != nil || q.Ref.ID != 0 || q.Env.Kind != sampleEnv.Kind {
		t.Errorf("parseQueued(envelope) = %+v, %v", q, err)
	}
}
