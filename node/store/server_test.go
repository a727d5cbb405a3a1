package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var ctx = context.Background()

func newServer(t testing.TB, lim Limits) (*LocalStore, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "node.db")
	s, err := openServerAt(t, path, Options{Passphrase: []byte("server pass"), KDF: fastKDF}, lim)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func devKey(name string) []byte {
	k := make([]byte, 32)
	copy(k, name)
	return k
}

// addUser creates an account with one device per name in devices.
func addUser(t testing.TB, s Store, user string, devices ...string) {
	t.Helper()
	if err := s.CreateAccount(ctx, Account{User: user, Record: []byte("record of " + user), KSF: KSFParams{3, 65536, 4}, UserKey: devKey("uk-" + user)}); err != nil {
		t.Fatal(err)
	}
	for _, d := range devices {
		if err := s.AddDevice(ctx, Device{User: user, Key: devKey(d), Certificate: []byte("cert " + d)}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestAccountsAndDevices(t *testing.T) {
	s, path := newServer(t, Limits{})
	addUser(t, s, "alice", "a1", "a2")
	if err := s.CreateAccount(ctx, Account{User: "alice"}); !errors.Is(err, ErrExists) {
		t.Errorf("CreateAccount(alice) again = %v, want ErrExists", err)
	}
	if _, err := s.Account(ctx, "bob"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Account(bob) = %v, want ErrNotFound", err)
	}
	if err := s.AddDevice(ctx, Device{User: "bob", Key: devKey("b1")}); !errors.Is(err, ErrNotFound) {
		t.Errorf("AddDevice for a missing account = %v, want ErrNotFound", err)
	}
	addUser(t, s, "bob")
	if err := s.AddDevice(ctx, Device{User: "bob", Key: devKey("a1")}); !errors.Is(err, ErrExists) {
		t.Errorf("AddDevice(bob, alice's device key) = %v, want ErrExists", err)
	}
	a := Account{User: "alice", Record: []byte("new record"), KSF: KSFParams{4, 1 << 17, 4}, UserKey: devKey("uk2")}
	if err := s.ReplaceAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := s.ReplaceAccount(ctx, Account{User: "carol"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("ReplaceAccount(carol) = %v, want ErrNotFound", err)
	}
	if err := s.RevokeDevice(ctx, devKey("a2")); err != nil {
		t.Fatal(err)
	}
	// Everything survives a reopen.
	s.Close()
	s2, err := openServerAt(t, path, Options{Passphrase: []byte("server pass")}, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	got, err := s2.Account(ctx, "alice")
	if err != nil || got.User != a.User || !bytes.Equal(got.Record, a.Record) || got.KSF != a.KSF || !bytes.Equal(got.UserKey, a.UserKey) {
		t.Errorf("Account(alice) = %+v, %v; want %+v", got, err, a)
	}
	d, err := s2.Device(ctx, devKey("a1"))
	if err != nil || d.User != "alice" || string(d.Certificate) != "cert a1" || d.Revoked {
		t.Errorf("Device(a1) = %+v, %v", d, err)
	}
	devs, err := s2.Devices(ctx, "alice")
	if err != nil || len(devs) != 2 {
		t.Fatalf("Devices(alice) = %v, %v", devs, err)
	}
	revoked := 0
	for _, d := range devs {
		if d.Revoked {
			revoked++
			if !bytes.Equal(d.Key, devKey("a2")) {
				t.Errorf("device %q revoked, want a2", d.Key)
			}
		}
	}
	if revoked != 1 {
		t.Errorf("%d revoked devices, want 1", revoked)
	}
}

func TestKeyPackagesConcurrentFetch(t *testing.T) {
	s, _ := newServer(t, Limits{MaxKeyPackages: 60})
	addUser(t, s, "bob", "b1", "b2")
	addUser(t, s, "carol", "c1")
	const suite, perDevice = 0xFA01, 50
	for _, d := range []string{"b1", "b2"} {
		var pool []KeyPackage
		for i := range perDevice {
			pool = append(pool, KeyPackage{Ref: fmt.Appendf(nil, "%s-ref-%d", d, i), Data: fmt.Appendf(nil, "%s-kp-%d", d, i)})
		}
		last := &KeyPackage{Ref: []byte(d + "-last"), Data: []byte(d + "-last-kp")}
		if n, err := s.PutKeyPackages(ctx, devKey(d), suite, pool, last); err != nil || n != perDevice {
			t.Fatalf("PutKeyPackages(%s) = %d, %v", d, n, err)
		}
	}
	if _, err := s.PutKeyPackages(ctx, devKey("b1"), suite, make([]KeyPackage, 11), nil); err == nil {
		t.Error("PutKeyPackages with empty packages succeeded")
	}
	tooMany := make([]KeyPackage, 11)
	for i := range tooMany {
		tooMany[i] = KeyPackage{Ref: []byte{byte(i + 1)}, Data: []byte{1}}
	}
	if _, err := s.PutKeyPackages(ctx, devKey("b1"), suite, tooMany, nil); !errors.Is(err, ErrLimit) {
		t.Errorf("PutKeyPackages over the limit = %v, want ErrLimit", err)
	}

	const fetchers, each = 16, 5 // 80 fetches per device for 50 packages
	var mu sync.Mutex
	seen := map[string]int{}
	lastResorts := map[string]int{}
	var wg sync.WaitGroup
	for range fetchers {
		wg.Go(func() {
			for range each {
				got, err := s.FetchKeyPackages(ctx, devKey("c1"), "bob", suite)
				if err != nil || len(got) != 2 {
					t.Errorf("FetchKeyPackages = %d packages, %v; want 2", len(got), err)
					return
				}
				mu.Lock()
				for _, f := range got {
					if f.LastResort {
						lastResorts[string(f.Device[:2])]++
						if want := string(f.Device[:2]) + "-last-kp"; string(f.Data) != want {
							t.Errorf("last resort %q, want %q", f.Data, want)
						}
					} else {
						seen[string(f.Data)]++
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != 2*perDevice {
		t.Errorf("%d distinct pool packages handed out, want %d", len(seen), 2*perDevice)
	}
	for kp, n := range seen {
		if n != 1 {
			t.Errorf("package %q handed out %d times", kp, n)
		}
	}
	for _, d := range []string{"b1", "b2"} {
		if lastResorts[d] != fetchers*each-perDevice {
			t.Errorf("device %s: last resort handed out %d times, want %d", d, lastResorts[d], fetchers*each-perDevice)
		}
		if n, err := s.KeyPackageCount(ctx, devKey(d), suite); err != nil || n != 0 {
			t.Errorf("KeyPackageCount(%s) = %d, %v; want 0", d, n, err)
		}
	}
	// The fetcher is remembered for Welcome matching.
	if dev, su, err := s.FetchedKeyPackage(ctx, devKey("c1"), []byte("b2-ref-7")); err != nil || !bytes.Equal(dev, devKey("b2")) || su != suite {
		t.Errorf("FetchedKeyPackage(c1, b2-ref-7) = %q, %d, %v", dev, su, err)
	}
	if _, _, err := s.FetchedKeyPackage(ctx, devKey("b1"), []byte("b2-ref-7")); !errors.Is(err, ErrNotFound) {
		t.Errorf("FetchedKeyPackage by another caller = %v, want ErrNotFound", err)
	}
	// A new upload replaces the last resort; other suites are separate.
	s.PutKeyPackages(ctx, devKey("b1"), suite, nil, &KeyPackage{Ref: []byte("new"), Data: []byte("new-last")})
	got, _ := s.FetchKeyPackages(ctx, devKey("c1"), "bob", suite)
	if len(got) != 2 || !slices.ContainsFunc(got, func(f FetchedKeyPackage) bool { return string(f.Data) == "new-last" }) {
		t.Errorf("after replacing the last resort: %+v", got)
	}
	if got, err := s.FetchKeyPackages(ctx, devKey("c1"), "bob", 1); err != nil || len(got) != 0 {
		t.Errorf("FetchKeyPackages for another suite = %v, %v; want none", got, err)
	}
	// Revoking deletes a device's packages and hides it from fetches.
	if err := s.RevokeDevice(ctx, devKey("b1")); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.FetchKeyPackages(ctx, devKey("c1"), "bob", suite); len(got) != 1 || !bytes.Equal(got[0].Device, devKey("b2")) {
		t.Errorf("after revoking b1: %+v", got)
	}
	if _, err := s.PutKeyPackages(ctx, devKey("b1"), suite, nil, &KeyPackage{Ref: []byte("r"), Data: []byte("d")}); !errors.Is(err, ErrRevoked) {
		t.Errorf("PutKeyPackages for a revoked device = %v, want ErrRevoked", err)
	}
}

var refCounter atomic.Int64

// fetchedRef uploads a KeyPackage for dev (a device of user) and fetches it
// as committer, so that committer may add dev; it returns the ref to put in
// CommitRequest.KeyPackageRefs.
func fetchedRef(t testing.TB, s Store, committer []byte, user string, dev []byte) []byte {
	t.Helper()
	ref := fmt.Appendf(nil, "ref-%d", refCounter.Add(1))
	if _, err := s.PutKeyPackages(ctx, dev, 1, []KeyPackage{{Ref: ref, Data: []byte("kp")}}, nil); err != nil {
		t.Fatal(err)
	}
	got, err := s.FetchKeyPackages(ctx, committer, user, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range got {
		if bytes.Equal(f.Device, dev) {
			return f.Ref
		}
	}
	t.Fatalf("no KeyPackage fetched for %q", dev)
	return nil
}

func fetchAll(t *testing.T, s Store, dev string) []QueuedMessage {
	t.Helper()
	r, err := s.Fetch(ctx, devKey(dev), 0, 0, 0)
	msgs := r.Messages
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

func TestGroupsAndCommits(t *testing.T) {
	s, _ := newServer(t, Limits{MaxGroupSize: 3})
	addUser(t, s, "alice", "a1", "a2")
	addUser(t, s, "bob", "b1")
	addUser(t, s, "eve", "e1")
	gid := bytes.Repeat([]byte{9}, 32)
	if err := s.CreateGroup(ctx, gid, devKey("a1")); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateGroup(ctx, gid, devKey("b1")); !errors.Is(err, ErrExists) {
		t.Errorf("CreateGroup of an existing id = %v, want ErrExists", err)
	}
	c0 := CommitRequest{Group: gid, Committer: devKey("a1"), Epoch: 0, Message: []byte("commit-0"),
		Added: [][]byte{devKey("b1"), devKey("a2")}, Welcome: []byte("welcome-0"),
		KeyPackageRefs: [][]byte{fetchedRef(t, s, devKey("a1"), "alice", devKey("a2")), fetchedRef(t, s, devKey("a1"), "bob", devKey("b1"))}}
	res, err := s.Commit(ctx, c0)
	if err != nil || res.Duplicate || res.Epoch != 1 {
		t.Fatalf("Commit(epoch 0) = %+v, %v", res, err)
	}
	again, err := s.Commit(ctx, c0)
	if err != nil || !again.Duplicate {
		t.Errorf("resubmitted commit = %+v, %v; want Duplicate", again, err)
	}
	other := c0
	other.Message = []byte("another commit-0")
	if _, err := s.Commit(ctx, other); !errors.Is(err, ErrStaleCommit) {
		t.Errorf("second commit for epoch 0 = %v, want ErrStaleCommit", err)
	}
	future := CommitRequest{Group: gid, Committer: devKey("b1"), Epoch: 5, Message: []byte("c5")}
	if _, err := s.Commit(ctx, future); !errors.Is(err, ErrWrongEpoch) {
		t.Errorf("commit for a future epoch = %v, want ErrWrongEpoch", err)
	}
	if _, err := s.Commit(ctx, CommitRequest{Group: gid, Committer: devKey("e1"), Epoch: 1, Message: []byte("x")}); !errors.Is(err, ErrNotMember) {
		t.Errorf("commit by a non-member = %v, want ErrNotMember", err)
	}
	if _, err := s.Send(ctx, SendRequest{Group: gid, Sender: devKey("e1"), Messages: [][]byte{[]byte("x")}}); !errors.Is(err, ErrNotMember) {
		t.Errorf("send by a non-member = %v, want ErrNotMember", err)
	}
	if _, err := s.Commit(ctx, CommitRequest{Group: gid, Committer: devKey("b1"), Epoch: 1, Message: []byte("x"), Added: [][]byte{devKey("e1")}}); !errors.Is(err, ErrInvalidCommit) {
		t.Errorf("commit adding without a Welcome = %v, want ErrInvalidCommit", err)
	}
	if _, err := s.Commit(ctx, CommitRequest{Group: gid, Committer: devKey("b1"), Epoch: 1, Message: []byte("x"), Added: [][]byte{devKey("e1")}, Welcome: []byte("w")}); !errors.Is(err, ErrLimit) {
		t.Errorf("commit beyond the group size = %v, want ErrLimit", err)
	}
	if _, err := s.Commit(ctx, CommitRequest{Group: gid, Committer: devKey("b1"), Epoch: 1, Message: []byte("x"), Removed: [][]byte{devKey("e1")}}); !errors.Is(err, ErrInvalidCommit) {
		t.Errorf("commit removing a non-member = %v, want ErrInvalidCommit", err)
	}
	// b1 removes a2: the commit reaches a1 and a2 (removed, but a member before), not b1.
	if _, err := s.Commit(ctx, CommitRequest{Group: gid, Committer: devKey("b1"), Epoch: 1, Message: []byte("commit-1"), Removed: [][]byte{devKey("a2")}}); err != nil {
		t.Fatal(err)
	}
	g, err := s.Group(ctx, gid)
	if err != nil || g.Epoch != 2 || len(g.Members) != 2 || !isMember(g.Members, devKey("a1")) || !isMember(g.Members, devKey("b1")) {
		t.Errorf("Group = %+v, %v", g, err)
	}
	if _, err := s.Send(ctx, SendRequest{Group: gid, Sender: devKey("a1"), Messages: [][]byte{[]byte("m1"), []byte("m2")}}); err != nil {
		t.Fatal(err)
	}

	type want struct {
		kind MessageKind
		data string
	}
	check := func(dev string, wants ...want) {
		t.Helper()
		msgs := fetchAll(t, s, dev)
		if len(msgs) != len(wants) {
			t.Errorf("%s got %d messages, want %d", dev, len(msgs), len(wants))
			return
		}
		for i, m := range msgs {
			if m.Seq != uint64(i+1) || m.Kind != wants[i].kind || string(m.Data) != wants[i].data || !bytes.Equal(m.Group, gid) {
				t.Errorf("%s message %d = seq %d kind %d %q", dev, i, m.Seq, m.Kind, m.Data)
			}
		}
	}
	check("a1", want{KindCommit, "commit-1"})
	check("a2", want{KindWelcome, "welcome-0"}, want{KindCommit, "commit-1"})
	check("b1", want{KindWelcome, "welcome-0"}, want{KindApplication, "m1"}, want{KindApplication, "m2"})
	check("e1")
	// The stamps: sender and declared changes.
	a2 := fetchAll(t, s, "a2")
	if !bytes.Equal(a2[1].Sender, devKey("b1")) || len(a2[1].Removed) != 1 || !bytes.Equal(a2[1].Removed[0], devKey("a2")) {
		t.Errorf("commit stamp = sender %q removed %q", a2[1].Sender, a2[1].Removed)
	}
	if len(a2[0].Added) != 2 || !bytes.Equal(a2[0].Sender, devKey("a1")) {
		t.Errorf("Welcome stamp = sender %q added %q", a2[0].Sender, a2[0].Added)
	}
	b1 := fetchAll(t, s, "b1")
	if !bytes.Equal(b1[1].Sender, devKey("a1")) {
		t.Errorf("application message sender = %q, want a1", b1[1].Sender)
	}

	// Adding needs KeyPackageRefs that the committer fetched, one per added device.
	addE1 := CommitRequest{Group: gid, Committer: devKey("a1"), Epoch: 2, Message: []byte("commit-2"),
		Added: [][]byte{devKey("e1")}, Welcome: []byte("welcome-2")}
	byB1 := fetchedRef(t, s, devKey("b1"), "eve", devKey("e1"))
	byA1 := fetchedRef(t, s, devKey("a1"), "eve", devKey("e1"))
	ofB1 := fetchedRef(t, s, devKey("a1"), "bob", devKey("b1"))
	for name, refs := range map[string][][]byte{
		"no ref":                 nil,
		"unknown ref":            {[]byte("bogus")},
		"ref fetched by another": {byB1},
		"ref of another device":  {ofB1},
		"one ref too many":       {byA1, ofB1},
	} {
		req := addE1
		req.KeyPackageRefs = refs
		if _, err := s.Commit(ctx, req); !errors.Is(err, ErrInvalidCommit) {
			t.Errorf("commit adding e1 with %s = %v, want ErrInvalidCommit", name, err)
		}
	}
	addE1.KeyPackageRefs = [][]byte{byA1}
	if _, err := s.Commit(ctx, addE1); err != nil {
		t.Errorf("commit adding e1 with a1's fetched ref = %v", err)
	}
	if _, _, err := s.FetchedKeyPackage(ctx, devKey("a1"), byA1); !errors.Is(err, ErrNotFound) {
		t.Errorf("fetch record after its commit = %v, want ErrNotFound (forgotten)", err)
	}
}

func TestQueueFetchAckOverflow(t *testing.T) {
	s, _ := newServer(t, Limits{MaxQueueLen: 5})
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
	send := func(msgs ...string) SendResult {
		t.Helper()
		var mm [][]byte
		for _, m := range msgs {
			mm = append(mm, []byte(m))
		}
		res, err := s.Send(ctx, SendRequest{Group: gid, Sender: devKey("a1"), Messages: mm})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	wait := s.QueueSignal(devKey("b1"))
	send("m1", "m2")
	select {
	case <-wait:
	default:
		t.Error("QueueSignal not closed after a send returned")
	}
	seqs := func(after uint64, limit, maxBytes int) []uint64 {
		t.Helper()
		r, err := s.Fetch(ctx, devKey("b1"), after, limit, maxBytes)
		msgs := r.Messages
		if err != nil {
			t.Fatal(err)
		}
		var out []uint64
		for _, m := range msgs {
			out = append(out, m.Seq)
		}
		return out
	}
	if got := seqs(0, 0, 0); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Errorf("Fetch(0) = %v, want [1 2 3]", got)
	}
	if got := seqs(1, 1, 0); !slices.Equal(got, []uint64{2}) {
		t.Errorf("Fetch(after 1, limit 1) = %v, want [2]", got)
	}
	// Sizes count data and stamp: the Welcome "w" 1 byte and m1 2 bytes
	// of data, each with the group, the sender and (the Welcome) the
	// added device.
	fr, err := s.Fetch(ctx, devKey("b1"), 0, 0, 0)
	all := fr.Messages
	if err != nil || len(all) != 3 {
		t.Fatalf("Fetch(0) = %d messages, %v", len(all), err)
	}
	two := all[0].answerSize() + all[1].answerSize()
	if got := seqs(0, 0, two); !slices.Equal(got, []uint64{1, 2}) {
		t.Errorf("Fetch(0, maxBytes %d) = %v, want [1 2]", two, got)
	}
	if got := seqs(0, 0, two-1); !slices.Equal(got, []uint64{1}) {
		t.Errorf("Fetch(0, maxBytes %d) = %v, want [1]: the stamps count", two-1, got)
	}
	if got := seqs(1, 0, 1); !slices.Equal(got, []uint64{2}) {
		t.Errorf("Fetch(after 1, maxBytes 1) = %v, want [2]: at least one message", got)
	}
	// Fetching does not delete.
	if got := seqs(0, 0, 0); len(got) != 3 {
		t.Errorf("second Fetch(0) = %v, want 3 messages", got)
	}
	if err := s.Ack(ctx, devKey("b1"), 2); err != nil {
		t.Fatal(err)
	}
	if got := seqs(0, 0, 0); !slices.Equal(got, []uint64{3}) {
		t.Errorf("after Ack(2): %v, want [3]", got)
	}
	// Queue limit 5: one waiting, four more fit, the fifth overflows.
	if res := send("m3", "m4", "m5", "m6", "m7", "m8"); len(res.Overflowed) != 1 || !bytes.Equal(res.Overflowed[0], devKey("b1")) {
		t.Errorf("overflowing send reported %q", res.Overflowed)
	}
	r, _ := s.Fetch(ctx, devKey("b1"), 0, 0, 0)
	st := r.Queue
	if !st.Overflowed || st.Len != 5 || st.Last != 7 {
		t.Errorf("queue state = %+v, want overflowed, 5 waiting, last 7", st)
	}
	if res := send("m9"); len(res.Overflowed) != 0 {
		t.Errorf("send to an already overflowed queue reported %q again", res.Overflowed)
	}
	if got := seqs(0, 0, 0); !slices.Equal(got, []uint64{3, 4, 5, 6, 7}) {
		t.Errorf("overflowed queue = %v, want [3 4 5 6 7]", got)
	}
	if err := s.Ack(ctx, devKey("b1"), 100); err != nil {
		t.Fatal(err)
	}
	if err := s.ClearOverflow(ctx, devKey("b1")); err != nil {
		t.Fatal(err)
	}
	send("m10")
	r, _ = s.Fetch(ctx, devKey("b1"), 0, 0, 0)
	msgs, st := r.Messages, r.Queue
	if len(msgs) != 1 || msgs[0].Seq != 8 || string(msgs[0].Data) != "m10" || st.Overflowed || st.Len != 1 {
		t.Errorf("after clearing the overflow: %+v, state %+v", msgs, st)
	}
	// The sender's own queue got nothing.
	if got := fetchAll(t, s, "a1"); len(got) != 0 {
		t.Errorf("sender received %d of its own messages", len(got))
	}
}

// TestRevokeEmptiesQueue: revoking a device deletes what waits for it,
// and what its groups send it later (it stays a member until another
// device removes it) is not stored.
func TestRevokeEmptiesQueue(t *testing.T) {
	s, _ := newServer(t, Limits{})
	addUser(t, s, "alice", "a1")
	addUser(t, s, "bob", "b1", "b2")
	gid := []byte("group")
	if err := s.CreateGroup(ctx, gid, devKey("a1")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(ctx, CommitRequest{Group: gid, Committer: devKey("a1"), Message: []byte("c"),
		Added: [][]byte{devKey("b1"), devKey("b2")}, Welcome: []byte("w"),
		KeyPackageRefs: [][]byte{fetchedRef(t, s, devKey("a1"), "bob", devKey("b1")), fetchedRef(t, s, devKey("a1"), "bob", devKey("b2"))}}); err != nil {
		t.Fatal(err)
	}
	send := func(m string) {
		t.Helper()
		res, err := s.Send(ctx, SendRequest{Group: gid, Sender: devKey("a1"), Messages: [][]byte{[]byte(m)}})
		if err != nil || len(res.Overflowed) != 0 {
			t.Fatalf("send: %v, overflowed %q", err, res.Overflowed)
		}
	}
	send("before")
	if got := fetchAll(t, s, "b2"); len(got) != 2 {
		t.Fatalf("b2 has %d messages before the revocation, want 2", len(got))
	}
	if err := s.RevokeDevice(ctx, devKey("b2")); err != nil {
		t.Fatal(err)
	}
	send("after")
	if got := fetchAll(t, s, "b2"); len(got) != 0 {
		t.Errorf("revoked b2 still has %d messages", len(got))
	}
	if r, err := s.Fetch(ctx, devKey("b2"), 0, 0, 0); err != nil || r.Queue.Len != 0 || r.Queue.Last != 2 || !r.Queue.Overflowed {
		t.Errorf("revoked b2's queue state = %+v, %v; want empty, last 2 (never reused), closed", r.Queue, err)
	}
	if got := fetchAll(t, s, "b1"); len(got) != 3 {
		t.Errorf("b1 has %d messages, want 3 (Welcome, before, after)", len(got))
	}
	// A device revoked before anything was queued for it gets nothing either.
	addUser(t, s, "carol", "c1")
	ref := fetchedRef(t, s, devKey("a1"), "carol", devKey("c1"))
	if err := s.RevokeDevice(ctx, devKey("c1")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(ctx, CommitRequest{Group: gid, Committer: devKey("a1"), Message: []byte("c2"), Epoch: 1,
		Added: [][]byte{devKey("c1")}, Welcome: []byte("w2"), KeyPackageRefs: [][]byte{ref}}); err != nil {
		t.Fatal(err)
	}
	if got := fetchAll(t, s, "c1"); len(got) != 0 {
		t.Errorf("device revoked before its Welcome has %d messages", len(got))
	}
}

// TestPruneFetched: fetches older than the cut are forgotten (a commit
// can no longer use them), newer ones kept, across several chunks.
func TestPruneFetched(t *testing.T) {
	s, _ := newServer(t, Limits{})
	addUser(t, s, "alice", "a1")
	addUser(t, s, "bob", "b1", "b2")
	old := [][]byte{fetchedRef(t, s, devKey("a1"), "bob", devKey("b1")), fetchedRef(t, s, devKey("a1"), "bob", devKey("b2")),
		fetchedRef(t, s, devKey("b1"), "alice", devKey("a1"))}
	defer func(n int) { pruneChunk = n }(pruneChunk)
	pruneChunk = 2
	if n, err := s.PruneFetched(ctx, time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("PruneFetched(an hour ago) = %d, %v; want 0", n, err)
	}
	cut := time.Now().Add(time.Second)
	time.Sleep(1100 * time.Millisecond) // records keep whole seconds
	kept := fetchedRef(t, s, devKey("a1"), "bob", devKey("b2"))
	if n, err := s.PruneFetched(ctx, cut); err != nil || n != 3 {
		t.Fatalf("PruneFetched = %d, %v; want 3", n, err)
	}
	for _, ref := range old {
		if _, _, err := s.FetchedKeyPackage(ctx, devKey("a1"), ref); !errors.Is(err, ErrNotFound) {
			t.Errorf("pruned fetch %q: %v, want ErrNotFound", ref, err)
		}
	}
	if _, _, err := s.FetchedKeyPackage(ctx, devKey("a1"), kept); err != nil {
		t.Errorf("newer fetch was pruned: %v", err)
	}
	if err := s.CreateGroup(ctx, []byte("g"), devKey("a1")); err != nil {
		t.Fatal(err)
	}
	_, err := s.Commit(ctx, CommitRequest{Group: []byte("g"), Committer: devKey("a1"), Message: []byte("c"),
		Added: [][]byte{devKey("b1")}, Welcome: []byte("w"), KeyPackageRefs: [][]byte{old[0]}})
	if !errors.Is(err, ErrInvalidCommit) {
		t.Errorf("commit through a pruned fetch = %v, want ErrInvalidCommit", err)
	}
	if _, err := s.Commit(ctx, CommitRequest{Group: []byte("g"), Committer: devKey("a1"), Message: []byte("c"),
		Added: [][]byte{devKey("b2")}, Welcome: []byte("w"), KeyPackageRefs: [][]byte{kept}}); err != nil {
		t.Errorf("commit through a kept fetch: %v", err)
	}
}

func TestSecrets(t *testing.T) {
	s, _ := newServer(t, Limits{})
	calls := 0
	mk := func() ([]byte, error) { calls++; return []byte(fmt.Sprintf("secret-%d", calls)), nil }
	a, err := s.Secret(ctx, "quic-reset", mk)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Secret(ctx, "quic-reset", mk)
	if err != nil || !bytes.Equal(a, b) || calls != 1 {
		t.Errorf("Secret twice = %q, %q, %v (%d creations)", a, b, err, calls)
	}
	c, _ := s.Secret(ctx, "quic-token", mk)
	if bytes.Equal(a, c) {
		t.Error("two secrets are equal")
	}
}

// TestNoPlaintextInFile runs a small flow and checks that no identifier or
// message appears in the file.
func TestNoPlaintextInFile(t *testing.T) {
	s, path := newServer(t, Limits{})
	addUser(t, s, "alice", "alice-phone")
	addUser(t, s, "bob", "bob-laptop")
	gid := append([]byte("team"), bytes.Repeat([]byte{0}, 28)...)
	if err := s.CreateGroup(ctx, gid, devKey("alice-phone")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutKeyPackages(ctx, devKey("bob-laptop"), 1, []KeyPackage{{Ref: []byte("bob-ref"), Data: []byte("bob-kpdata")}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.FetchKeyPackages(ctx, devKey("alice-phone"), "bob", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(ctx, CommitRequest{Group: gid, Committer: devKey("alice-phone"), Message: []byte("team commit"),
		Added: [][]byte{devKey("bob-laptop")}, Welcome: []byte("welcome to team"), KeyPackageRefs: [][]byte{[]byte("bob-ref")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Send(ctx, SendRequest{Group: gid, Sender: devKey("alice-phone"), Messages: [][]byte{[]byte("hello-secret")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Secret(ctx, "opaque-oprf-seed", func() ([]byte, error) { return []byte("oprf-seed-bytes"), nil }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"alice", "bob", "team", "hello-secret", "phone", "laptop", "kpdata", "welcome", "oprf-seed"} {
		if bytes.Contains(data, []byte(secret)) {
			t.Errorf("database file contains %q", secret)
		}
	}
	// The check itself works: a string we expect in clear is found.
	if !bytes.Contains(data, []byte("keypackages")) {
		t.Error("bucket name not found in the file; the search is broken")
	}
}
