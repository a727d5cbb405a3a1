package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"qpchat/mls"
	"qpchat/opaque"
	"qpchat/rpc"
)

// TestApprovalRecord: an approval verifies for its user only, and any
// change to it breaks the signature.
func TestApprovalRecord(t *testing.T) {
	addr, fp := startRealNode(t)
	alice := newRealUser(t, addr, fp, "alice")
	other := bytes.Repeat([]byte{7}, 32)
	a := alice.c.signApproval(other)
	if !a.verify("alice") {
		t.Fatal("a fresh approval does not verify")
	}
	if a.verify("bob") {
		t.Error("an approval verifies for another user")
	}
	for i, mutate := range []func(a *approvalRecord){
		func(a *approvalRecord) { a.Device = bytes.Repeat([]byte{8}, 32) },
		func(a *approvalRecord) { a.Approver = other },
		func(a *approvalRecord) { a.Signature[3] ^= 1 },
	} {
		b, err := parseApproval(a.marshal())
		if err != nil {
			t.Fatal(err)
		}
		mutate(b)
		if b.verify("alice") {
			t.Errorf("mutation %d still verifies", i)
		}
	}
	if alice.c.isApproved(other) {
		t.Error("a device is approved before anyone approved it")
	}
	if !alice.c.isApproved(alice.c.DeviceKey()) {
		t.Error("a device does not trust itself")
	}
	// An approval signed by a device this one does not trust is not
	// honoured, even when it verifies.
	b := &batch{groups: map[string]*group{}, names: map[string][]byte{}}
	stranger := newRealUser(t, addr, fp, "mallory")
	rec := stranger.c.signApproval(other)
	alice.c.applyApproval(b, "alice", stranger.c.DeviceKey(), &payload{Kind: payloadApproval, Text: string(rec.marshal())})
	if len(b.after) != 0 {
		t.Error("an approval by an untrusted device was honoured")
	}
}

func FuzzApprovalRecord(f *testing.F) {
	f.Add((&approvalRecord{Device: bytes.Repeat([]byte{1}, 32), Approver: bytes.Repeat([]byte{2}, 32), Signature: bytes.Repeat([]byte{3}, 64)}).marshal())
	fuzzRecord(f, parseApproval)
}

// TestDescribeMembers: membership notices name each device by its
// fingerprint, and a device of the committer's own user as "a device".
func TestDescribeMembers(t *testing.T) {
	alice1, alice2, bob := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32), bytes.Repeat([]byte{3}, 32)
	m := func(user string, key []byte) mls.Member {
		return mls.Member{Credential: credentialFor(user, key, make([]byte, 64)), SignatureKey: key}
	}
	got := describeMembers("alice", []mls.Member{m("alice", alice2), m("bob", bob)}, []mls.Member{m("alice", alice1)})
	want := "added a device " + Fingerprint(alice2) + ", bob (device " + Fingerprint(bob) + "); removed a device " + Fingerprint(alice1)
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func FuzzStoredApproval(f *testing.F) {
	a := &approvalRecord{Device: bytes.Repeat([]byte{1}, 32), Approver: bytes.Repeat([]byte{2}, 32), Signature: bytes.Repeat([]byte{3}, 64)}
	f.Add((&storedApproval{Rec: a, Adopted: true}).marshal())
	fuzzRecord(f, parseStoredApproval)
}

// secondDevice logs in as u's user from a new state and sets up a
// device there.
func secondDevice(t *testing.T, addr, fp string, u *realUser) *realUser {
	t.Helper()
	ctx := context.Background()
	st, err := OpenState(StateOptions{Path: filepath.Join(t.TempDir(), u.name+"-2.state"), Passphrase: []byte("pw"), KDF: fastKDF})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rc, err := rpc.Dial(ctx, addr, rpc.DialOptions{Fingerprint: fp, Pins: st})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	e := &RPCEntry{C: rc}
	uk, ls, err := Login(ctx, e, u.name, []byte("password of "+u.name), AccountOptions{Bounds: opaque.TestKSFBounds})
	if err != nil {
		t.Fatal(err)
	}
	dev, cert, err := NewDevice(ctx, e, ls, u.name, uk, nil)
	if err != nil {
		t.Fatal(err)
	}
	prof := &Profile{User: u.name, UserKey: uk.Public().(ed25519.PublicKey), Device: dev, Cert: cert}
	if err := st.SaveProfile(prof); err != nil {
		t.Fatal(err)
	}
	sess, err := AuthenticateDevice(ctx, e, prof)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{State: st, Session: sess, KeyPackageTarget: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReplenishKeyPackages(ctx, []uint16{DefaultSuite}); err != nil {
		t.Fatal(err)
	}
	return &realUser{name: u.name, st: st, rc: rc, c: c}
}

// answerlessCommit fails the first Commit as a lost connection does, after the
// node accepted it.
type answerlessCommit struct {
	Session
	once sync.Once
}

func (s *answerlessCommit) Commit(ctx context.Context, req CommitRequest) error {
	if err := s.Session.Commit(ctx, req); err != nil {
		return err
	}
	var err error
	s.once.Do(func() { err = &connError{errors.New("rpc: connection closed")} })
	return err
}

// TestApprovalResumesAfterLostConnection: an approval whose Add lost its
// answer is finished by the next sync: the device joins, learns the
// group's name and receives.
func TestApprovalResumesAfterLostConnection(t *testing.T) {
	addr, fp := startRealNode(t)
	ctx := context.Background()
	alice := newRealUser(t, addr, fp, "alice")
	newRealUser(t, addr, fp, "bob")
	if _, err := alice.c.CreateGroup(ctx, "g", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.c.Invite(ctx, "g", []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	phone := secondDevice(t, addr, fp, alice)
	real := alice.c.cfg.Session
	alice.c.cfg.Session = &answerlessCommit{Session: real}
	if _, err := alice.c.ApproveDevice(ctx, phone.c.DeviceKey()); err == nil {
		t.Fatal("ApproveDevice succeeded through a lost connection")
	}
	alice.c.cfg.Session = real
	if _, err := alice.c.Recv(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if err := alice.c.Send(ctx, "g", "hello phone"); err != nil {
		t.Fatal(err)
	}
	evs, err := phone.c.Recv(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(messagesOf(t, evs), "|"); got != "alice: hello phone" {
		t.Errorf("the phone received %q", got)
	}
	gs, err := phone.c.Groups(ctx)
	if err != nil || len(gs) != 1 || gs[0].Name != "g" {
		t.Errorf("the phone's groups: %v, %v", gs, err)
	}
}

// TestInviteAddsOnlyApprovedDevices: alice has an approved phone and a
// device a thief registered with her password. Bob invites her: only her
// first device and the phone are added, the thief's device is reported as
// skipped and gets no Welcome. After alice revokes her first device, the
// devices it approved stay roots: a tablet the phone approves is added to
// the next group, the thief's device still is not.
func TestInviteAddsOnlyApprovedDevices(t *testing.T) {
	addr, fp := startRealNode(t)
	ctx := context.Background()
	alice, bob := newRealUser(t, addr, fp, "alice"), newRealUser(t, addr, fp, "bob")
	phone := secondDevice(t, addr, fp, alice)
	thief := secondDevice(t, addr, fp, alice)
	if _, err := alice.c.ApproveDevice(ctx, phone.c.DeviceKey()); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.c.CreateGroup(ctx, "g", 0); err != nil {
		t.Fatal(err)
	}
	r, err := bob.c.InviteReport(ctx, "g", []string{"alice"})
	if err != nil {
		t.Fatal(err)
	}
	wantSkipped := func(r []SkippedDevices) {
		t.Helper()
		if len(r) != 1 || r[0].User != "alice" || r[0].NoRoot || len(r[0].Devices) != 1 || !bytes.Equal(r[0].Devices[0], thief.c.DeviceKey()) {
			t.Errorf("skipped %+v, want the thief's device %s only", r, Fingerprint(thief.c.DeviceKey()))
		}
	}
	if r.Added != 2 {
		t.Errorf("bob added %d devices of alice, want 2 (first device and phone)", r.Added)
	}
	wantSkipped(r.Skipped)
	if err := bob.c.Send(ctx, "g", "for alice only"); err != nil {
		t.Fatal(err)
	}
	for _, u := range []*realUser{alice, phone} {
		evs, err := u.c.Recv(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(messagesOf(t, evs), "|"); got != "bob: for alice only" {
			t.Errorf("an approved device of alice received %q", got)
		}
	}
	assertShutOut := func(when string) {
		t.Helper()
		res, err := thief.c.cfg.Session.Fetch(ctx, 0, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range res.Deliveries {
			if d.Kind == DeliveryWelcome {
				t.Errorf("%s: the thief's device got a Welcome", when)
			}
		}
		if gs, err := thief.c.Groups(ctx); err != nil || len(gs) != 0 {
			t.Errorf("%s: the thief's device has groups %+v, %v", when, gs, err)
		}
	}
	if _, err := thief.c.Recv(ctx, 0); err != nil {
		t.Fatal(err)
	}
	assertShutOut("first invitation")

	// fetch-key shows the same split.
	info, err := bob.c.FetchKey(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Devices) != 2 || info.Skipped == nil {
		t.Errorf("FetchKey: %d devices, skipped %+v; want 2 and the thief's", len(info.Devices), info.Skipped)
	} else {
		wantSkipped([]SkippedDevices{*info.Skipped})
	}

	// The first device is revoked; the phone approves a tablet.
	_, ls, err := Login(ctx, &RPCEntry{C: alice.rc}, "alice", []byte("password of alice"), AccountOptions{Bounds: opaque.TestKSFBounds})
	if err != nil {
		t.Fatal(err)
	}
	if err := ls.RevokeDevice(ctx, alice.c.DeviceKey()); err != nil {
		t.Fatal(err)
	}
	tablet := secondDevice(t, addr, fp, alice)
	if _, err := phone.c.ApproveDevice(ctx, tablet.c.DeviceKey()); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.c.CreateGroup(ctx, "h", 0); err != nil {
		t.Fatal(err)
	}
	r, err = bob.c.InviteReport(ctx, "h", []string{"alice"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Added != 2 {
		t.Errorf("after the first device's revocation bob added %d devices, want 2 (phone and tablet)", r.Added)
	}
	wantSkipped(r.Skipped)
	if _, err := thief.c.Recv(ctx, 0); err != nil {
		t.Fatal(err)
	}
	assertShutOut("second invitation")
}

// TestHonouredApprovalIsPublished: a device that honours an approval
// from a trusted own device publishes its own record to the node.
func TestHonouredApprovalIsPublished(t *testing.T) {
	addr, fp := startRealNode(t)
	ctx := context.Background()
	alice, bob := newRealUser(t, addr, fp, "alice"), newRealUser(t, addr, fp, "bob")
	if _, err := alice.c.CreateGroup(ctx, "g", 0); err != nil {
		t.Fatal(err)
	}
	phone := secondDevice(t, addr, fp, alice)
	if _, err := alice.c.ApproveDevice(ctx, phone.c.DeviceKey()); err != nil {
		t.Fatal(err)
	}
	if _, err := phone.c.Recv(ctx, 0); err != nil {
		t.Fatal(err)
	}
	tablet := secondDevice(t, addr, fp, alice)
	if _, err := phone.c.ApproveDevice(ctx, tablet.c.DeviceKey()); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.c.Recv(ctx, 0); err != nil { // honours the phone's record
		t.Fatal(err)
	}
	kps, err := bob.c.cfg.Session.FetchKeyPackages(ctx, "alice", DefaultSuite)
	if err != nil {
		t.Fatal(err)
	}
	published := map[string]bool{}
	for _, r := range kps.Approvals {
		a, err := parseApproval(r)
		if err != nil || !a.verify("alice") {
			t.Fatalf("the node handed out a bad record: %v", err)
		}
		published[Fingerprint(a.Approver)+" → "+Fingerprint(a.Device)] = true
	}
	for _, want := range []string{
		Fingerprint(alice.c.DeviceKey()) + " → " + Fingerprint(phone.c.DeviceKey()),
		Fingerprint(phone.c.DeviceKey()) + " → " + Fingerprint(tablet.c.DeviceKey()),
		Fingerprint(alice.c.DeviceKey()) + " → " + Fingerprint(tablet.c.DeviceKey()), // honoured
	} {
		if !published[want] {
			t.Errorf("the node does not hold the approval %s (has %v)", want, published)
		}
	}
}
