package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"qpchat/mls"
	"qpchat/node/proto"
	"qpchat/node/store"
)

var fastKDF = store.KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}

// testUser is one user's device on a fake node.
type testUser struct {
	name    string
	userKey ed25519.PrivateKey
	path    string
	st      *State
	c       *Client
	node    *fakeNode
}

func newUserKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	ek := make([]byte, 64)
	rand.Read(ek)
	k, err := proto.UserKey(ek)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newTestUser registers a user with one device on n.
func newTestUser(t *testing.T, n *fakeNode, name string) *testUser {
	t.Helper()
	uk := newUserKey(t)
	n.addUser(name, uk.Public().(ed25519.PublicKey))
	return newTestDevice(t, n, name, uk, name)
}

// newTestDevice sets up another device (profile) of a user.
func newTestDevice(t *testing.T, n *fakeNode, name string, uk ed25519.PrivateKey, profile string) *testUser {
	t.Helper()
	u := &testUser{name: name, userKey: uk, node: n, path: filepath.Join(t.TempDir(), profile+".state")}
	_, dev, _ := ed25519.GenerateKey(rand.Reader)
	devPub := dev.Public().(ed25519.PublicKey)
	n.addDevice(name, devPub)
	st, err := OpenState(StateOptions{Path: u.path, Passphrase: []byte("pw"), KDF: fastKDF})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SaveProfile(&Profile{User: name, UserKey: uk.Public().(ed25519.PublicKey), Device: dev,
		Cert: proto.SignDeviceCert(uk, name, devPub)}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	u.open(t)
	if _, err := u.c.ReplenishKeyPackages(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	return u
}

// open (re)opens the user's state, as a restarted client does.
func (u *testUser) open(t *testing.T) {
	t.Helper()
	st, err := OpenState(StateOptions{Path: u.path, Passphrase: []byte("pw"), MustExist: true})
	if err != nil {
		t.Fatal(err)
	}
	u.st = st
	prof, _ := st.Profile()
	c, err := New(Config{State: st, Session: u.node.session(prof.DeviceKey()), KeyPackageTarget: 3})
	if err != nil {
		t.Fatal(err)
	}
	u.c = c
	t.Cleanup(func() { st.Close() })
}

func (u *testUser) restart(t *testing.T) {
	t.Helper()
	u.st.Close()
	u.open(t)
}

// texts syncs and returns the texts received, as "sender: text".
func (u *testUser) texts(t *testing.T) []string {
	t.Helper()
	evs, err := u.c.Recv(context.Background(), 0)
	if err != nil {
		t.Fatalf("%s: Recv: %v", u.name, err)
	}
	var out []string
	for _, e := range evs {
		switch e.Kind {
		case EventMessage:
			out = append(out, e.Sender+": "+e.Text)
		case EventRefused:
			out = append(out, "REFUSED: "+e.Text)
		}
	}
	return out
}

func wantTexts(t *testing.T, u *testUser, want ...string) {
	t.Helper()
	got := u.texts(t)
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("%s received %q, want %q", u.name, got, want)
	}
}

func groupNamed(t *testing.T, u *testUser, name string) GroupInfo {
	t.Helper()
	gs, err := u.c.Groups(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range gs {
		if g.Name == name {
			return g
		}
	}
	t.Fatalf("%s has no group %q (has %+v)", u.name, name, gs)
	return GroupInfo{}
}

func TestThreeUsers(t *testing.T) {
	ctx := context.Background()
	n := newFakeNode()
	alice, bob, carol := newTestUser(t, n, "alice"), newTestUser(t, n, "bob"), newTestUser(t, n, "carol")

	if _, err := alice.c.CreateGroup(ctx, "friends", 0); err != nil {
		t.Fatal(err)
	}
	if k, err := alice.c.Invite(ctx, "friends", []string{"Bob"}); err != nil || k != 1 {
		t.Fatalf("Invite(bob) = %d, %v", k, err)
	}
	wantTexts(t, bob)
	if g := groupNamed(t, bob, "friends"); g.Suite != DefaultSuite || g.Members != 2 {
		t.Errorf("bob's group = %+v", g)
	}
	if _, err := alice.c.Invite(ctx, "friends", []string{"carol"}); err != nil {
		t.Fatal(err)
	}
	wantTexts(t, carol)
	for i, u := range []*testUser{alice, bob, carol} {
		if err := u.c.Send(ctx, "friends", "hi from "+u.name); err != nil {
			t.Fatalf("%d: %v", i, err)
		}
	}
	wantTexts(t, alice, "bob: hi from bob", "carol: hi from carol")
	wantTexts(t, bob, "alice: hi from alice", "carol: hi from carol")
	wantTexts(t, carol, "alice: hi from alice", "bob: hi from bob")

	// Bob rotates his keys; a restarted Carol carries on from her state.
	if _, err := bob.c.Update(ctx, "friends"); err != nil {
		t.Fatal(err)
	}
	carol.restart(t)
	if err := carol.c.Send(ctx, "friends", "after update"); err != nil {
		t.Fatal(err)
	}
	wantTexts(t, alice, "carol: after update")
	wantTexts(t, bob, "carol: after update")

	// Carol is removed and reads nothing of what follows.
	if k, err := alice.c.Remove(ctx, "friends", []string{"carol"}); err != nil || k != 1 {
		t.Fatalf("Remove = %d, %v", k, err)
	}
	if err := alice.c.Send(ctx, "friends", "carol is gone"); err != nil {
		t.Fatal(err)
	}
	wantTexts(t, bob, "alice: carol is gone")
	evs, err := carol.c.Recv(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	removed := false
	for _, e := range evs {
		if e.Kind == EventMessage {
			t.Errorf("carol read %q after her removal", e.Text)
		}
		removed = removed || e.Kind == EventRemoved
	}
	if !removed || !groupNamed(t, carol, "friends").Removed {
		t.Error("carol was not told she was removed")
	}
	if err := carol.c.Send(ctx, "friends", "x"); err == nil {
		t.Error("carol could still send")
	}
	ea, _ := alice.c.loadGroupByName(ctx, "friends")
	eb, _ := bob.c.loadGroupByName(ctx, "friends")
	if !bytes.Equal(ea.g.EpochAuthenticator(), eb.g.EpochAuthenticator()) {
		t.Error("alice and bob disagree on the epoch")
	}
}

func TestStaleCommitRetried(t *testing.T) {
	ctx := context.Background()
	n := newFakeNode()
	alice, bob := newTestUser(t, n, "alice"), newTestUser(t, n, "bob")
	carol := newTestUser(t, n, "carol")
	alice.c.CreateGroup(ctx, "g", 0)
	if _, err := alice.c.Invite(ctx, "g", []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	wantTexts(t, bob)
	// Alice prepares an Add of Carol; before she submits, Bob commits an
	// Update on the same epoch. Alice's commit is refused as stale; she
	// re-syncs and retries.
	fired := false
	alice.c.cfg.BeforeSubmit = func() {
		if fired {
			return
		}
		fired = true
		if _, err := bob.c.Update(ctx, "g"); err != nil {
			t.Errorf("bob.Update: %v", err)
		}
	}
	if _, err := alice.c.Invite(ctx, "g", []string{"carol"}); err != nil {
		t.Fatal(err)
	}
	if !fired {
		t.Fatal("the race was not forced")
	}
	wantTexts(t, bob)
	wantTexts(t, carol)
	ga, _ := alice.c.loadGroupByName(ctx, "g")
	gb, _ := bob.c.loadGroupByName(ctx, "g")
	gc, _ := carol.c.loadGroupByName(ctx, "g")
	if ga.g.Epoch() != 3 || gb.g.Epoch() != 3 || gc.g.Epoch() != 3 {
		t.Errorf("epochs = %d, %d, %d, want 3", ga.g.Epoch(), gb.g.Epoch(), gc.g.Epoch())
	}
	if !bytes.Equal(ga.g.EpochAuthenticator(), gb.g.EpochAuthenticator()) || !bytes.Equal(gb.g.EpochAuthenticator(), gc.g.EpochAuthenticator()) {
		t.Error("members disagree on the epoch")
	}
	if len(ga.g.Members()) != 3 {
		t.Errorf("%d members, want 3", len(ga.g.Members()))
	}
}

func TestLyingNodeKeyPackage(t *testing.T) {
	ctx := context.Background()
	n := newFakeNode()
	alice, bob := newTestUser(t, n, "alice"), newTestUser(t, n, "bob")
	// Mallory has a device whose credential claims to be Bob's, certified
	// by a key that is not Bob's user key.
	mallory := newTestUser(t, n, "mallory")
	evil := newUserKey(t)
	mallory.c.prof.User = "bob"
	mallory.c.prof.Cert = proto.SignDeviceCert(evil, "bob", mallory.c.devKey)
	forged, err := mallory.c.newKeyPackage(DefaultSuite)
	if err != nil {
		t.Fatal(err)
	}
	forgedMsg, _ := forged.Message()
	n.forgeKeyPackages = func(user string, got []FetchedKeyPackage) []FetchedKeyPackage {
		if user != "bob" {
			return got
		}
		return append(got, FetchedKeyPackage{Device: mallory.c.devKey, KeyPackage: forgedMsg})
	}
	alice.c.CreateGroup(ctx, "g", 0)
	// Pin Bob's real key first so the forged certificate cannot be pinned.
	if _, err := alice.c.pinnedKey(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.c.Invite(ctx, "g", []string{"bob"}); err == nil || !strings.Contains(err.Error(), "refusing a KeyPackage of bob") {
		t.Fatalf("Invite with a forged KeyPackage: %v", err)
	}
	if g := groupNamed(t, alice, "g"); g.Members != 1 || g.Epoch != 0 {
		t.Errorf("group changed: %+v", g)
	}
	_ = bob
}

func TestForgedSenderStamp(t *testing.T) {
	ctx := context.Background()
	n := newFakeNode()
	alice, bob, carol := newTestUser(t, n, "alice"), newTestUser(t, n, "bob"), newTestUser(t, n, "carol")
	alice.c.CreateGroup(ctx, "g", 0)
	if _, err := alice.c.Invite(ctx, "g", []string{"bob", "carol"}); err != nil {
		t.Fatal(err)
	}
	wantTexts(t, bob)
	wantTexts(t, carol)
	// The node claims Carol sent what Alice sent.
	n.forgeStamp = func(to string, d *Delivery) {
		if to == string(bob.c.devKey) && d.Kind == DeliveryApplication {
			d.Sender = carol.c.devKey
		}
	}
	if err := alice.c.Send(ctx, "g", "from alice"); err != nil {
		t.Fatal(err)
	}
	got := bob.texts(t)
	if len(got) != 1 || !strings.Contains(got[0], "REFUSED") || !strings.Contains(got[0], "stamp") {
		t.Errorf("bob got %q, want one refusal of the forged stamp", got)
	}
	n.forgeStamp = nil
	if err := alice.c.Send(ctx, "g", "honest"); err != nil {
		t.Fatal(err)
	}
	wantTexts(t, bob, "alice: honest")
}

// failingAck loses acks, as a client crashing between persist and ack.
type failingAck struct{ *fakeSession }

func (f failingAck) Ack(ctx context.Context, upTo uint64) error { return errors.New("crash") }

// crashAfterFetch closes the state once a fetch returns, as a client
// crashing between fetch and persist.
type crashAfterFetch struct {
	*fakeSession
	st *State
}

func (f crashAfterFetch) Fetch(ctx context.Context, after uint64, limit int, wait time.Duration) (*FetchResult, error) {
	r, err := f.fakeSession.Fetch(ctx, after, limit, wait)
	f.st.Close()
	return r, err
}

func queued(n *fakeNode, u *testUser) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.queues[string(u.c.devKey)])
}

// TestNoDuplicateAfterLostAck: a client that crashes between fetch and
// ack loses nothing and applies nothing twice.
func TestNoDuplicateAfterLostAck(t *testing.T) {
	ctx := context.Background()
	n := newFakeNode()
	alice, bob := newTestUser(t, n, "alice"), newTestUser(t, n, "bob")
	alice.c.CreateGroup(ctx, "g", 0)
	alice.c.Invite(ctx, "g", []string{"bob"})
	wantTexts(t, bob)

	// Crash after the fetch, before anything is stored: nothing is lost.
	bob.c.cfg.Session = crashAfterFetch{n.session(bob.c.devKey), bob.st}
	alice.c.Send(ctx, "g", "one")
	if _, err := bob.c.Recv(ctx, 0); err == nil {
		t.Fatal("Recv stored a batch in a closed state")
	}
	bob.restart(t)
	wantTexts(t, bob, "alice: one")

	// Crash after the batch is stored, before the ack: the node still
	// holds it, and nothing is applied twice.
	bob.c.cfg.Session = failingAck{n.session(bob.c.devKey)}
	alice.c.Send(ctx, "g", "two")
	wantTexts(t, bob, "alice: two")
	if err := bob.c.Flush(ctx); err == nil {
		t.Fatal("the ack was not lost")
	}
	if queued(n, bob) < 2 {
		t.Fatalf("%d deliveries queued after the lost ack, want the applied ones still there", queued(n, bob))
	}
	bob.restart(t)
	alice.c.Send(ctx, "g", "three")
	wantTexts(t, bob, "alice: three")
	if err := bob.c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if q := queued(n, bob); q != 0 {
		t.Errorf("%d deliveries left after the ack", q)
	}
}

func TestDMAndPrivacy(t *testing.T) {
	ctx := context.Background()
	n := newFakeNode()
	alice, bob, carol := newTestUser(t, n, "alice"), newTestUser(t, n, "bob"), newTestUser(t, n, "carol")
	name, err := alice.c.DM(ctx, "bob", "psst", 0)
	if err != nil || name != "dm:bob" {
		t.Fatalf("DM = %q, %v", name, err)
	}
	wantTexts(t, bob, "alice: psst")
	groupNamed(t, bob, "dm:alice")
	if _, err := bob.c.DM(ctx, "alice", "hi", 0); err != nil {
		t.Fatal(err)
	}
	wantTexts(t, alice, "bob: hi")
	if gs, _ := alice.c.Groups(ctx); len(gs) != 1 {
		t.Errorf("alice has %d groups, want the one dm channel", len(gs))
	}
	if got := carol.texts(t); len(got) != 0 {
		t.Errorf("carol read %q", got)
	}
}

func TestTwoDevices(t *testing.T) {
	ctx := context.Background()
	n := newFakeNode()
	alice, bob := newTestUser(t, n, "alice"), newTestUser(t, n, "bob")
	bob2 := newTestDevice(t, n, "bob", bob.userKey, "bob2")
	// bob's first device approves the second (devicetrust.go).
	if err := bob.c.publishApproval(ctx, bob.c.signApproval(bob2.c.DeviceKey())); err != nil {
		t.Fatal(err)
	}
	alice.c.CreateGroup(ctx, "g", 0)
	if k, err := alice.c.Invite(ctx, "g", []string{"bob"}); err != nil || k != 2 {
		t.Fatalf("Invite = %d, %v; want both devices", k, err)
	}
	wantTexts(t, bob)
	wantTexts(t, bob2)
	alice.c.Send(ctx, "g", "to both")
	wantTexts(t, bob, "alice: to both")
	wantTexts(t, bob2, "alice: to both")
	names, err := bob.c.RemoveDevice(ctx, bob2.c.devKey)
	if err != nil || len(names) != 1 {
		t.Fatalf("RemoveDevice = %v, %v", names, err)
	}
	alice.c.Send(ctx, "g", "only one")
	wantTexts(t, bob, "alice: only one")
	wantTexts(t, bob2)
	if !groupNamed(t, bob2, "g").Removed {
		t.Error("bob2 not removed")
	}
}

func TestSafetyNumberSymmetric(t *testing.T) {
	a, b := []byte("key-a"), []byte("key-b")
	x, y := SafetyNumber("alice", a, "bob", b), SafetyNumber("bob", b, "alice", a)
	if x != y || len(x) != 60+11 {
		t.Errorf("SafetyNumber = %q / %q", x, y)
	}
	if SafetyNumber("alice", a, "bob", []byte("key-c")) == x {
		t.Error("safety number ignores a key")
	}
}

func init() { _ = time.Second }

func kpCount(t *testing.T, u *testUser) (pool, lastResort int) {
	t.Helper()
	err := u.st.db.View(func(tx *store.Tx) error {
		c := tx.Bucket(bKPs).Cursor()
		for k, v, err := c.First(); k != nil; k, v, err = c.Next() {
			if err != nil {
				return err
			}
			r, err := parseKP(v)
			if err != nil {
				return err
			}
			if r.Suite != DefaultSuite {
				continue
			}
			if r.LastResort {
				lastResort++
			} else {
				pool++
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return
}

func TestKeyPackageUpkeep(t *testing.T) {
	ctx := context.Background()
	n := newFakeNode()
	alice, bob := newTestUser(t, n, "alice"), newTestUser(t, n, "bob")
	if p, lr := kpCount(t, bob); p != 3 || lr != 1 {
		t.Fatalf("bob keeps %d pool and %d last-resort private keys, want 3 and 1", p, lr)
	}
	// Empty Bob's pool at the node: the next invite gets his last resort.
	n.mu.Lock()
	n.pools[string(bob.c.devKey)][DefaultSuite] = nil
	n.mu.Unlock()
	alice.c.CreateGroup(ctx, "g", 0)
	if _, err := alice.c.Invite(ctx, "g", []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	commits := n.commits
	wantTexts(t, bob)
	// Joining through the last resort: Bob commits an Update, keeps the
	// old last resort's keys (it may be handed out again) and uploads a
	// new last resort and a fresh pool.
	if n.commits != commits+1 {
		t.Errorf("bob made %d commits after joining through a last resort, want 1 (an Update)", n.commits-commits)
	}
	if p, lr := kpCount(t, bob); p != 7 || lr != 1 {
		t.Errorf("after the last-resort join bob keeps %d pool and %d last-resort keys, want 7 (3 unused, the old last resort, 3 new) and 1", p, lr)
	}
	ga, _ := alice.c.loadGroupByName(ctx, "g")
	wantTexts(t, alice)
	if ga.g.Epoch() != 2 {
		t.Errorf("alice is in epoch %d, want 2 after bob's update", ga.g.Epoch())
	}
	// A pool package's init key is deleted once used.
	carol := newTestUser(t, n, "carol")
	alice.c.Invite(ctx, "g", []string{"carol"})
	before, _ := kpCount(t, carol)
	n.mu.Lock()
	n.pools[string(carol.c.devKey)][DefaultSuite] = nil // no top-up visible
	n.mu.Unlock()
	wantTexts(t, carol)
	if after, _ := kpCount(t, carol); after != before-1+3 {
		t.Errorf("carol keeps %d pool keys after joining, want %d (used one deleted, pool refilled to 3)", after, before-1+3)
	}
}

func TestChangedUserKeyRefused(t *testing.T) {
	ctx := context.Background()
	n := newFakeNode()
	alice, bob := newTestUser(t, n, "alice"), newTestUser(t, n, "bob")
	alice.c.CreateGroup(ctx, "g", 0)
	if _, err := alice.c.Invite(ctx, "g", []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	// Bob's account gets a new user key (say, re-registered) and a new
	// device; Alice has the old key pinned.
	newKey := newUserKey(t)
	n.addUser("bob", newKey.Public().(ed25519.PublicKey))
	n.mu.Lock()
	delete(n.owner, string(bob.c.devKey))
	delete(n.first, "bob") // a new account: its next device is its first
	n.mu.Unlock()
	bob2 := newTestDevice(t, n, "bob", newKey, "bob-new")
	alice.c.CreateGroup(ctx, "h", 0)
	_, err := alice.c.Invite(ctx, "h", []string{"bob"})
	var kc *KeyChangedError
	if !errors.As(err, &kc) {
		t.Fatalf("invite after a key change: %v, want KeyChangedError", err)
	}
	v, err := alice.c.Verify(ctx, "bob", false)
	if err != nil || v.Changed == nil || v.ChangedSafetyNumber == v.SafetyNumber {
		t.Fatalf("Verify = %+v, %v; want the change shown", v, err)
	}
	if _, err := alice.c.Verify(ctx, "bob", true); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.c.Invite(ctx, "h", []string{"bob"}); err != nil {
		t.Fatalf("invite after verify --accept: %v", err)
	}
	wantTexts(t, bob2)
	groupNamed(t, bob2, "h")
}

func TestOtherSuites(t *testing.T) {
	ctx := context.Background()
	n := newFakeNode()
	alice, bob := newTestUser(t, n, "alice"), newTestUser(t, n, "bob")
	for _, suite := range []uint16{0x0001, 0x0003, 0xFA02} {
		name := fmt.Sprintf("g%04x", suite)
		if _, err := alice.c.CreateGroup(ctx, name, suite); err != nil {
			t.Fatalf("suite 0x%04x: %v", suite, err)
		}
		if _, err := alice.c.Invite(ctx, name, []string{"bob"}); err != nil {
			t.Fatalf("suite 0x%04x: %v", suite, err)
		}
		alice.c.Send(ctx, name, "in "+name)
		wantTexts(t, bob, "alice: in "+name)
		if g := groupNamed(t, bob, name); g.Suite != suite {
			t.Errorf("bob's %s has suite 0x%04x", name, g.Suite)
		}
	}
	if _, err := alice.c.CreateGroup(ctx, "p256", 0x0002); err == nil {
		t.Error("a P-256 group was created with an Ed25519 device key")
	}
}

func TestSendAll(t *testing.T) {
	ctx := context.Background()
	n := newFakeNode()
	alice, bob, carol := newTestUser(t, n, "alice"), newTestUser(t, n, "bob"), newTestUser(t, n, "carol")
	alice.c.CreateGroup(ctx, "one", 0)
	alice.c.Invite(ctx, "one", []string{"bob"})
	alice.c.CreateGroup(ctx, "two", 0)
	alice.c.Invite(ctx, "two", []string{"bob", "carol"})
	names, err := alice.c.SendAll(ctx, "to all")
	if err != nil || strings.Join(names, ",") != "one,two" {
		t.Fatalf("SendAll = %v, %v", names, err)
	}
	wantTexts(t, bob, "alice: to all", "alice: to all")
	wantTexts(t, carol, "alice: to all")
}

func TestQueueOverflowReported(t *testing.T) {
	ctx := context.Background()
	n := newFakeNode()
	alice, bob := newTestUser(t, n, "alice"), newTestUser(t, n, "bob")
	alice.c.CreateGroup(ctx, "g", 0)
	alice.c.Invite(ctx, "g", []string{"bob"})
	wantTexts(t, bob)
	alice.c.Send(ctx, "g", "before")

	// Bob's queue overflows: alice's Update and message are dropped.
	n.mu.Lock()
	n.overflowed = map[string]bool{string(bob.c.devKey): true}
	n.mu.Unlock()
	if _, err := alice.c.Update(ctx, "g"); err != nil {
		t.Fatal(err)
	}
	alice.c.Send(ctx, "g", "lost")
	got := bob.texts(t)
	if len(got) != 2 || !strings.Contains(got[0], "overflowed") || got[1] != "alice: before" {
		t.Errorf("bob got %q, want one overflow notice and the message from before", got)
	}
	// The queue was acknowledged and the mark cleared: the notice does
	// not repeat, and the node queues for bob again.
	if got := bob.texts(t); len(got) != 0 {
		t.Errorf("the notice repeats: %q", got)
	}
	n.mu.Lock()
	over := n.overflowed[string(bob.c.devKey)]
	n.mu.Unlock()
	if over || queued(n, bob) != 0 {
		t.Errorf("after the notice: overflowed %v, %d deliveries queued; want the mark cleared and the queue acknowledged", over, queued(n, bob))
	}

	// Alice removes and re-adds bob's device; bob reads the group again.
	if _, err := alice.c.Remove(ctx, "g", []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	if k, err := alice.c.Invite(ctx, "g", []string{"bob"}); err != nil || k != 1 {
		t.Fatalf("re-invite = %d, %v", k, err)
	}
	alice.c.Send(ctx, "g", "welcome back")
	evs, err := bob.c.Recv(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	var texts []string
	joined := false
	for _, e := range evs {
		if e.Kind == EventMessage {
			texts = append(texts, e.Text)
		}
		joined = joined || e.Kind == EventJoined
	}
	if !joined || strings.Join(texts, "|") != "welcome back" {
		t.Errorf("after the re-add bob got %+v", evs)
	}
	if g := groupNamed(t, bob, "g"); g.Removed || g.Epoch != 4 {
		t.Errorf("bob's group after the re-add: %+v", g)
	}
}

// flakyKeys fails user-key lookups while down is set, as a node that
// cannot be reached.
type flakyKeys struct {
	Session
	down bool
}

func (f *flakyKeys) UserKey(ctx context.Context, user string) ([]byte, error) {
	if f.down {
		return nil, errors.New("connection lost")
	}
	return f.Session.UserKey(ctx, user)
}

func TestTransientFailureRetried(t *testing.T) {
	ctx := context.Background()
	n := newFakeNode()
	alice, bob, carol := newTestUser(t, n, "alice"), newTestUser(t, n, "bob"), newTestUser(t, n, "carol")
	alice.c.CreateGroup(ctx, "g", 0)
	alice.c.Invite(ctx, "g", []string{"carol"})
	alice.c.Invite(ctx, "g", []string{"bob"})
	// Bob cannot fetch the keys of Alice and Carol while the Welcome is
	// processed: the Welcome must be retried, not refused.
	flaky := &flakyKeys{Session: bob.c.cfg.Session, down: true}
	bob.c.cfg.Session = flaky
	if _, err := bob.c.Recv(ctx, 0); err == nil {
		t.Fatal("Recv succeeded without the user keys")
	}
	flaky.down = false
	evs, err := bob.c.Recv(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	joined := false
	for _, e := range evs {
		if e.Kind == EventRefused {
			t.Errorf("refused: %s", e.Text)
		}
		joined = joined || e.Kind == EventJoined
	}
	if !joined || groupNamed(t, bob, "g").Members != 3 {
		t.Errorf("bob did not join after the node came back: %+v", evs)
	}
	_ = carol
}

// TestUpdateChangingIdentityRefused: a member's commit whose new leaf
// names another identity (here another user, "eve", with a certificate
// that verifies under eve's user key for the same device key, so only
// the identity rule can refuse it) is refused and reported, and the group
// is left as it was.
func TestUpdateChangingIdentityRefused(t *testing.T) {
	ctx := context.Background()
	n := newFakeNode()
	alice, bob := newTestUser(t, n, "alice"), newTestUser(t, n, "bob")
	eveKey := newUserKey(t)
	n.addUser("eve", eveKey.Public().(ed25519.PublicKey))
	alice.c.CreateGroup(ctx, "g", 0)
	if _, err := alice.c.Invite(ctx, "g", []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	wantTexts(t, bob)

	// Bob's client turns liar: its own leaf in its group state now
	// claims to be eve's, so its next Update carries that credential.
	orig := credentialFor("bob", bob.c.devKey, bob.c.prof.Cert).Identity
	forged := credentialFor("eve", bob.c.devKey, proto.SignDeviceCert(eveKey, "eve", bob.c.devKey)).Identity
	if len(orig) != len(forged) {
		t.Fatalf("identities of %d and %d bytes", len(orig), len(forged))
	}
	gb, err := bob.c.loadGroupByName(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	state, err := gb.g.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(state, orig) {
		t.Fatal("bob's credential is not in his group state")
	}
	state = bytes.ReplaceAll(state, orig, forged)
	if gb.g, err = mls.UnmarshalGroup(bob.c.mlsConfig(ctx), state); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.c.Update(ctx, "g"); err != nil {
		t.Fatalf("the forged Update was not submitted: %v", err)
	}

	got := alice.texts(t)
	if len(got) != 1 || !strings.Contains(got[0], "REFUSED") || !(strings.Contains(got[0], "may not change its credential") || strings.Contains(got[0], "changes the identity")) {
		t.Errorf("alice got %q, want one refusal of the identity change", got)
	}
	if g := groupNamed(t, alice, "g"); g.Epoch != 1 || g.Members != 2 {
		t.Errorf("alice's group changed: %+v", g)
	}
	ms, err := alice.c.Members(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.User != "alice" && m.User != "bob" {
			t.Errorf("alice's group has a member %q", m.User)
		}
	}
	t.Logf("refusal: %s", got)
}

// TestServerPins: a pinned server key is found again, stored under an
// HMAC of the address (not the address), and a pin an older version kept
// under the address itself still counts until it is replaced.
func TestServerPins(t *testing.T) {
	st, err := OpenState(StateOptions{Path: filepath.Join(t.TempDir(), "p.state"), Passphrase: []byte("pw"), KDF: fastKDF})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, ok, err := st.Pin("node.example:7000"); ok || err != nil {
		t.Fatalf("Pin before SetPin = %v, %v", ok, err)
	}
	if err := st.SetPin("Node.Example:7000", "sha256:aa"); err != nil {
		t.Fatal(err)
	}
	if fp, ok, err := st.Pin("node.example:7000"); fp != "sha256:aa" || !ok || err != nil {
		t.Errorf("Pin = %q, %v, %v", fp, ok, err)
	}
	legacy := []byte("old.example:7000")
	if err := st.db.Update(func(tx *store.Tx) error { return tx.Bucket(bServers).Put(legacy, []byte("sha256:bb")) }); err != nil {
		t.Fatal(err)
	}
	if fp, ok, _ := st.Pin("old.example:7000"); fp != "sha256:bb" || !ok {
		t.Errorf("legacy pin = %q, %v", fp, ok)
	}
	if err := st.SetPin("old.example:7000", "sha256:cc"); err != nil {
		t.Fatal(err)
	}
	if fp, _, _ := st.Pin("old.example:7000"); fp != "sha256:cc" {
		t.Errorf("replaced pin = %q", fp)
	}
	st.db.View(func(tx *store.Tx) error {
		c := tx.Bucket(bServers).Cursor()
		for k, _, _ := c.First(); k != nil; k, _, _ = c.Next() {
			if bytes.Contains(k, []byte("example")) {
				t.Errorf("a pin is kept under the address %q", k)
			}
		}
		return nil
	})
}

// TestWelcomeTreeChecked: the node lied to Alice on first contact (a false
// user key for Bob), so she accepted a device "of Bob" that Bob's real key
// never signed. Carol, who pins Bob's real key, refuses the Welcome whose
// tree holds that device, and joins nothing.
func TestWelcomeTreeChecked(t *testing.T) {
	ctx := context.Background()
	n := newFakeNode()
	alice, bob, carol := newTestUser(t, n, "alice"), newTestUser(t, n, "bob"), newTestUser(t, n, "carol")
	evil := newUserKey(t)
	mallory := newTestUser(t, n, "mallory")
	mallory.c.prof.User = "bob"
	mallory.c.prof.Cert = proto.SignDeviceCert(evil, "bob", mallory.c.devKey)
	forged, err := mallory.c.newKeyPackage(DefaultSuite)
	if err != nil {
		t.Fatal(err)
	}
	forgedMsg, _ := forged.Message()
	n.forgeKeyPackages = func(user string, got []FetchedKeyPackage) []FetchedKeyPackage {
		if user != "bob" {
			return got
		}
		return []FetchedKeyPackage{{Device: mallory.c.devKey, KeyPackage: forgedMsg}}
	}
	realKey := bob.userKey.Public().(ed25519.PublicKey)
	n.addUser("bob", evil.Public().(ed25519.PublicKey))
	n.mu.Lock()
	n.first["bob"] = mallory.c.devKey // the lying node names it the first device too
	n.mu.Unlock()
	alice.c.CreateGroup(ctx, "g", 0)
	if _, err := alice.c.Invite(ctx, "g", []string{"bob"}); err != nil {
		t.Fatalf("alice, fooled, could not add the forged device: %v", err)
	}
	n.forgeKeyPackages = nil
	n.addUser("bob", realKey)
	n.mu.Lock()
	n.first["bob"] = bob.c.devKey
	n.mu.Unlock()

	if _, err := alice.c.Invite(ctx, "g", []string{"carol"}); err != nil {
		t.Fatal(err)
	}
	// The Welcome is refused; the group's name that follows it is then
	// for a group Carol does not have.
	got := carol.texts(t)
	if len(got) != 2 || !strings.Contains(got[0], "refused a Welcome") || !strings.Contains(got[0], "device of bob is not certified") ||
		!strings.Contains(got[1], "unknown group") {
		t.Errorf("carol got %q, want the Welcome refused for bob's uncertified device", got)
	}
	if gs, _ := carol.c.Groups(ctx); len(gs) != 0 {
		t.Errorf("carol joined %+v", gs)
	}
}

// lostCommit loses commits on the way to the node.
type lostCommit struct{ *fakeSession }

func (l lostCommit) Commit(ctx context.Context, req CommitRequest) error {
	return errors.New("connection lost")
}

// TestPendingCommitAfterCrash: a commit is persisted before it is
// submitted; a client that crashes before the node has it, or after the
// node accepted it but before the merge was stored, submits it on its
// next run (the node takes the second submission as a duplicate) and ends
// in the same epoch as the others.
func TestPendingCommitAfterCrash(t *testing.T) {
	ctx := context.Background()
	n := newFakeNode()
	alice, bob := newTestUser(t, n, "alice"), newTestUser(t, n, "bob")
	alice.c.CreateGroup(ctx, "g", 0)
	if _, err := alice.c.Invite(ctx, "g", []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	wantTexts(t, bob)
	same := func(epoch uint64) {
		t.Helper()
		wantTexts(t, alice)
		wantTexts(t, bob)
		ga, _ := alice.c.loadGroupByName(ctx, "g")
		gb, _ := bob.c.loadGroupByName(ctx, "g")
		if ga.g.Epoch() != epoch || gb.g.Epoch() != epoch || !bytes.Equal(ga.g.EpochAuthenticator(), gb.g.EpochAuthenticator()) {
			t.Errorf("alice in epoch %d, bob in %d, want both in %d and agreeing", ga.g.Epoch(), gb.g.Epoch(), epoch)
		}
	}

	// The commit never reaches the node.
	commits := n.commits
	alice.c.cfg.Session = lostCommit{n.session(alice.c.devKey)}
	if _, err := alice.c.Update(ctx, "g"); err == nil {
		t.Fatal("Update succeeded without the node")
	}
	alice.restart(t)
	same(2)
	if n.commits != commits+1 {
		t.Errorf("%d commits accepted, want 1", n.commits-commits)
	}

	// The node accepts it, and the client dies before storing the merge.
	alice.c.cfg.BeforeSubmit = func() { alice.st.Close() }
	if _, err := alice.c.Update(ctx, "g"); err == nil {
		t.Fatal("Update stored its merge in a closed state")
	}
	if n.commits != commits+2 {
		t.Fatalf("the node has %d new commits, want 2", n.commits-commits)
	}
	alice.restart(t)
	same(3)
	if n.commits != commits+2 {
		t.Errorf("the resubmission was accepted as a new commit")
	}
	if err := alice.c.Send(ctx, "g", "after"); err != nil {
		t.Fatal(err)
	}
	wantTexts(t, bob, "alice: after")
}

// TestKeyPackagesReplenishedWhenLow: when the node says a pool runs low,
// the next sync tops it up to the target, keeping the new private keys.
func TestKeyPackagesReplenishedWhenLow(t *testing.T) {
	n := newFakeNode()
	bob := newTestUser(t, n, "bob")
	n.mu.Lock()
	n.pools[string(bob.c.devKey)][DefaultSuite] = n.pools[string(bob.c.devKey)][DefaultSuite][:1]
	n.mu.Unlock()
	before, _ := kpCount(t, bob)
	wantTexts(t, bob) // not told: nothing uploaded
	if c, _ := bob.c.cfg.Session.KeyPackageCount(context.Background(), DefaultSuite); c != 1 {
		t.Fatalf("pool of %d before the node says it is low", c)
	}
	n.mu.Lock()
	n.low = map[string][]uint16{string(bob.c.devKey): {DefaultSuite}}
	n.mu.Unlock()
	wantTexts(t, bob)
	if c, _ := bob.c.cfg.Session.KeyPackageCount(context.Background(), DefaultSuite); c != 3 {
		t.Errorf("pool of %d after the low notice, want the target 3", c)
	}
	if after, _ := kpCount(t, bob); after != before+2 {
		t.Errorf("bob keeps %d pool keys, want %d (2 new)", after, before+2)
	}
}
