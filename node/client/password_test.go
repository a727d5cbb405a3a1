package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"qpchat/node/proto"
	"qpchat/opaque"
)

func texts(evs []*Event) []string {
	var out []string
	for _, e := range evs {
		if e.Kind == EventMessage {
			out = append(out, e.Sender+": "+e.Text)
		}
	}
	return out
}

// TestPasswordChange changes alice's password in a live group: bob, who
// pinned the old key, follows the transition without asking; dave, who
// first meets alice after the change, accepts her leaf certified under
// the old key; a forged transition is refused as a changed key.
func TestPasswordChange(t *testing.T) {
	addr, fp := startRealNode(t)
	ctx := context.Background()
	alice, bob := newRealUser(t, addr, fp, "alice"), newRealUser(t, addr, fp, "bob")
	if _, err := alice.c.CreateGroup(ctx, "g", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.c.Invite(ctx, "g", []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.c.Recv(ctx, 0); err != nil {
		t.Fatal(err)
	}
	oldPub := bytes.Clone(alice.c.prof.UserKey)
	opts := AccountOptions{Bounds: opaque.TestKSFBounds}
	e := &RPCEntry{C: alice.rc}
	if _, _, err := ChangePassword(ctx, e, "alice", []byte("wrong"), []byte("new"), opts); !errors.Is(err, ErrLoginFailed) {
		t.Errorf("ChangePassword with a wrong old password: %v", err)
	}
	_, newKey, err := ChangePassword(ctx, e, "alice", []byte("password of alice"), []byte("a new password"), opts)
	if err != nil {
		t.Fatal(err)
	}
	newPub := newKey.Public().(ed25519.PublicKey)
	// This device learns it from the node (as another device of alice's
	// would, or this one after a crash before it saved the new key).
	if ok, err := alice.c.SyncOwnKey(ctx); err != nil || !ok || !bytes.Equal(alice.c.prof.UserKey, newPub) {
		t.Fatalf("SyncOwnKey = %v, %v", ok, err)
	}
	if !proto.VerifyDeviceCert(newPub, "alice", alice.c.devKey, alice.c.prof.Cert) {
		t.Error("the profile's certificate is not under the new key")
	}
	if ok, err := alice.c.SyncOwnKey(ctx); err != nil || ok {
		t.Errorf("SyncOwnKey again = %v, %v", ok, err)
	}
	// New KeyPackages carry the new certificate and the node takes them.
	if _, err := alice.c.ReplenishKeyPackages(ctx, []uint16{DefaultSuite}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Login(ctx, e, "alice", []byte("password of alice"), opts); !errors.Is(err, ErrLoginFailed) {
		t.Errorf("the old password: %v", err)
	}

	// Bob pinned the old key: he follows the change, and the group goes on.
	info, err := bob.c.FetchKey(ctx, "alice")
	if err != nil || !info.Followed || info.Status != "pinned" || !bytes.Equal(info.UserKey, newPub) {
		t.Fatalf("bob's FetchKey(alice) = %+v, %v", info, err)
	}
	if p, _ := bob.st.peer("alice"); p == nil || !bytes.Equal(p.Key, newPub) || len(p.Retired) != 1 || !bytes.Equal(p.Retired[0], oldPub) {
		t.Errorf("bob's pin of alice: %+v", p)
	}
	if err := alice.c.Send(ctx, "g", "after the change"); err != nil {
		t.Fatal(err)
	}
	evs, err := bob.c.Recv(ctx, 0)
	if err != nil || !slicesEqual(texts(evs), []string{"alice: after the change"}) {
		t.Errorf("bob received %q, %v", texts(evs), err)
	}

	// Dave meets alice after the change; her leaf in g still holds the
	// certificate under the old key.
	dave := newRealUser(t, addr, fp, "dave")
	if _, err := bob.c.Invite(ctx, "g", []string{"dave"}); err != nil {
		t.Fatal(err)
	}
	if _, err := dave.c.Recv(ctx, 0); err != nil {
		t.Fatalf("dave joining a group with alice's pre-change leaf: %v", err)
	}
	if err := alice.c.Send(ctx, "g", "hi dave"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.c.Recv(ctx, 0); err != nil {
		t.Fatal(err)
	}
	evs, err = dave.c.Recv(ctx, 0)
	if err != nil || !slicesEqual(texts(evs), []string{"alice: hi dave"}) {
		t.Errorf("dave received %q, %v", texts(evs), err)
	}

	// Carol registers under a name, bob pins it; the account is deleted
	// and the name taken by someone else, whose key no transition from
	// the pinned one reaches: bob sees a changed key.
	carol := newRealUser(t, addr, fp, "carol")
	if _, err := bob.c.FetchKey(ctx, "carol"); err != nil {
		t.Fatal(err)
	}
	if err := DeleteAccount(ctx, &RPCEntry{C: carol.rc}, "carol", []byte("password of carol"), opts); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Login(ctx, &RPCEntry{C: carol.rc}, "carol", []byte("password of carol"), opts); !errors.Is(err, ErrLoginFailed) {
		t.Errorf("login to a deleted account: %v", err)
	}
	carolPin, _ := bob.st.peer("carol")
	mallory := newRealUser(t, addr, fp, "carol")
	if _, _, err := ChangePassword(ctx, &RPCEntry{C: mallory.rc}, "carol", []byte("password of carol"), []byte("mallory's"), opts); err != nil {
		t.Fatal(err)
	}
	// A node that also rewrites mallory's transition to start at the
	// key bob pinned (the signature is mallory's): not followed either.
	real := bob.c.cfg.Session
	bob.c.cfg.Session = &forgingSession{Session: real, user: "carol", old: carolPin.Key}
	var kc *KeyChangedError
	if _, err := bob.c.FetchKey(ctx, "carol"); !errors.As(err, &kc) {
		t.Errorf("bob's FetchKey of carol with a forged transition: %v, want a changed key", err)
	}
	bob.c.cfg.Session = real
	if _, err := bob.c.FetchKey(ctx, "carol"); !errors.As(err, &kc) {
		t.Errorf("bob's FetchKey of the re-registered carol: %v, want a changed key", err)
	}
	if p, _ := bob.st.peer("carol"); p == nil || !bytes.Equal(p.Key, carolPin.Key) || len(p.Retired) != 0 || p.Changed == nil {
		t.Errorf("bob's pin of carol after the forgeries: %+v", p)
	}
}

// forgingSession rewrites the first key transition of user to start at
// old, as a hostile node could.
type forgingSession struct {
	Session
	user string
	old  []byte
}

func (f *forgingSession) KeyTransitions(ctx context.Context, user string) ([][]byte, error) {
	ts, err := f.Session.(TransitionSession).KeyTransitions(ctx, user)
	if err != nil || user != f.user || len(ts) == 0 {
		return ts, err
	}
	forged := append(bytes.Clone(f.old), ts[0][len(f.old):]...)
	return append([][]byte{forged}, ts[1:]...), nil
}

func slicesEqual(a, b []string) bool {
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

// TestDeleteAccount: alice leaves every group (one she shares with bob,
// one of bob's, one she is alone in), deletes the account, and her
// device then hears that the account is gone; a revoked device of a
// living account hears only that it is refused.
func TestDeleteAccount(t *testing.T) {
	addr, fp := startRealNode(t)
	ctx := context.Background()
	alice, bob := newRealUser(t, addr, fp, "alice"), newRealUser(t, addr, fp, "bob")
	opts := AccountOptions{Bounds: opaque.TestKSFBounds}
	for _, g := range []string{"g", "solo"} {
		if _, err := alice.c.CreateGroup(ctx, g, 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := alice.c.Invite(ctx, "g", []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.c.CreateGroup(ctx, "h", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.c.Invite(ctx, "h", []string{"alice"}); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.c.Recv(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.c.Recv(ctx, 0); err != nil {
		t.Fatal(err)
	}

	// Nobody commits yet: g and h are pending, solo has nobody to do it.
	// Running it again changes nothing.
	for range 2 {
		res, err := alice.c.LeaveEveryGroup(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(res.Pending)
		if len(res.Left) != 0 || !slicesEqual(res.Pending, []string{"g", "h"}) || !slicesEqual(res.Abandoned, []string{"solo"}) {
			t.Errorf("LeaveEveryGroup = %+v, want g and h pending, solo abandoned", res)
		}
	}
	evs, err := bob.c.Recv(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, e := range evs {
		if e.Kind == EventLeft {
			left = append(left, bob.c.GroupName(e.Group)+": "+e.Text)
		}
	}
	slices.Sort(left)
	if !slicesEqual(left, []string{"g: alice left", "h: alice left"}) {
		t.Errorf("bob saw %q, want alice leave g and h", left)
	}
	res, err := alice.c.LeaveEveryGroup(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(res.Left)
	if !slicesEqual(res.Left, []string{"g", "h"}) || len(res.Pending) != 0 {
		t.Errorf("LeaveEveryGroup after bob's commits = %+v, want g and h left", res)
	}

	if err := DeleteAccount(ctx, &RPCEntry{C: alice.rc}, "alice", []byte("wrong"), opts); !errors.Is(err, ErrLoginFailed) {
		t.Errorf("DeleteAccount with a wrong password: %v", err)
	}
	if err := DeleteAccount(ctx, &RPCEntry{C: alice.rc}, "alice", []byte("password of alice"), opts); err != nil {
		t.Fatal(err)
	}
	prof, err := alice.st.Profile()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := AuthenticateDevice(ctx, &RPCEntry{C: alice.rc}, prof); !errors.Is(err, ErrAccountDeleted) {
		t.Errorf("AuthenticateDevice after the deletion: %v, want ErrAccountDeleted", err)
	}
	if _, _, err := Login(ctx, &RPCEntry{C: alice.rc}, "alice", []byte("password of alice"), opts); !errors.Is(err, ErrLoginFailed) {
		t.Errorf("Login after the deletion: %v, want ErrLoginFailed", err)
	}
	if err := DeleteAccount(ctx, &RPCEntry{C: alice.rc}, "alice", []byte("password of alice"), opts); !errors.Is(err, ErrLoginFailed) {
		t.Errorf("DeleteAccount again: %v, want ErrLoginFailed", err)
	}
	if _, err := bob.c.cfg.Session.FetchKeyPackages(ctx, "alice", DefaultSuite); err == nil {
		t.Error("bob still fetches KeyPackages of alice")
	}
	// Bob's group goes on without her.
	if err := bob.c.Send(ctx, "g", "still here"); err != nil {
		t.Fatal(err)
	}

	// A revoked device whose account lives on is refused as before.
	bprof, err := bob.st.Profile()
	if err != nil {
		t.Fatal(err)
	}
	_, ls, err := Login(ctx, &RPCEntry{C: bob.rc}, "bob", []byte("password of bob"), opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := ls.RevokeDevice(ctx, bprof.DeviceKey()); err != nil {
		t.Fatal(err)
	}
	if _, err := AuthenticateDevice(ctx, &RPCEntry{C: bob.rc}, bprof); errors.Is(err, ErrAccountDeleted) || proto.CodeOf(err) != proto.CodeAuth {
		t.Errorf("AuthenticateDevice of a revoked device: %v, want auth-failed", err)
	}
}

// backwardForger is a hostile node: it serves a key transition into
// user's real key from a key of its own, and a KeyPackage of a device
// certified by that key.
type backwardForger struct {
	Session
	user  string
	trans []byte
	kp    FetchedKeyPackage
}

func (f *backwardForger) KeyTransitions(ctx context.Context, user string) ([][]byte, error) {
	if user == f.user {
		return [][]byte{f.trans}, nil
	}
	return f.Session.(TransitionSession).KeyTransitions(ctx, user)
}

func (f *backwardForger) FetchKeyPackages(ctx context.Context, user string, suite uint16) (*KeyPackages, error) {
	kps, err := f.Session.FetchKeyPackages(ctx, user, suite)
	if err == nil && user == f.user {
		kps.Packages = append(kps.Packages, f.kp)
		kps.FirstDevice = f.kp.Device
	}
	return kps, err
}

// TestForgedPredecessorRefused: a contact who pinned alice's key meets a
// device certified by another key, and the node claims that key was
// alice's before a password change. Only alice's current key can say
// which key came before it: the device is refused.
func TestForgedPredecessorRefused(t *testing.T) {
	addr, fp := startRealNode(t)
	ctx := context.Background()
	alice, dave := newRealUser(t, addr, fp, "alice"), newRealUser(t, addr, fp, "dave")
	if _, err := dave.c.FetchKey(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	evil := newUserKey(t)
	_, dev, _ := ed25519.GenerateKey(nil)
	devPub := dev.Public().(ed25519.PublicKey)
	fake, err := New(Config{State: alice.st})
	if err != nil {
		t.Fatal(err)
	}
	fake.prof = &Profile{User: "alice", Device: dev, Cert: proto.SignDeviceCert(evil, "alice", devPub)}
	fake.devKey = devPub
	kp, err := fake.newKeyPackage(DefaultSuite)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := kp.Message()
	forged := forgedPredecessor(evil, "alice", alice.c.prof.UserKey)
	dave.c.cfg.Session = &backwardForger{Session: dave.c.cfg.Session, user: "alice", trans: forged, kp: FetchedKeyPackage{Device: devPub, KeyPackage: msg}}
	info, err := dave.c.FetchKey(ctx, "alice")
	if err == nil || !strings.Contains(err.Error(), "refusing a KeyPackage of alice") {
		t.Errorf("FetchKey(alice) with a forged predecessor = %+v, %v; want the device refused", info, err)
	}
	if p, _ := dave.st.peer("alice"); p == nil || len(p.Retired) != 0 {
		t.Errorf("dave's pin of alice: %+v, want no retired key", p)
	}
}

// forgedPredecessor is the statement "old was user's key before cur",
// made by someone who holds old but not cur: cur's signature is by
// another key.
func forgedPredecessor(old ed25519.PrivateKey, user string, cur []byte) []byte {
	tr := proto.SignTransition(old, old, user, 1)
	tr.New = cur
	tr.OldSignature = proto.SignWithLabel(old, proto.LabelKeyTransition, proto.TransitionContent(user, tr.Old, cur, 1))
	return tr.Marshal()
}
