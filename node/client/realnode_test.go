package client

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"qpchat/node/proto"
	"qpchat/node/server"
	"qpchat/opaque"
	"qpchat/rpc"
)

// realUser is a user with a device on a real in-process node.
type realUser struct {
	name string
	st   *State
	rc   *rpc.Client
	c    *Client
}

func startRealNode(t testing.TB) (addr, fp string) {
	return startRealNodeQueue(t, 0)
}

// startRealNodeQueue starts a node whose queues hold at most queueLen
// messages (0: the default).
func startRealNodeQueue(t testing.TB, queueLen int) (addr, fp string) {
	t.Helper()
	return startRealNodeLimits(t, func(l *server.Limits) { l.MaxQueueLength = queueLen })
}

func newRealUser(t testing.TB, addr, fp, name string) *realUser {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := OpenState(StateOptions{Path: filepath.Join(t.TempDir(), name+".state"), Passphrase: []byte("pw"), KDF: fastKDF})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rc, err := rpc.Dial(ctx, addr, rpc.DialOptions{Fingerprint: fp, Pins: st, Limits: rpc.MessageLimits{MaxMessageSize: proto.MinClientFrameSize}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	e := &RPCEntry{C: rc}
	opts := AccountOptions{Bounds: opaque.TestKSFBounds}
	if _, _, err := RegisterUser(ctx, e, name, []byte("password of "+name), opts); err != nil {
		t.Fatal(err)
	}
	uk, ls, err := Login(ctx, e, name, []byte("password of "+name), opts)
	if err != nil {
		t.Fatal(err)
	}
	dev, cert, err := NewDevice(ctx, e, ls, name, uk, nil)
	if err != nil {
		t.Fatal(err)
	}
	prof := &Profile{User: name, UserKey: uk.Public().(ed25519.PublicKey), Device: dev, Cert: cert}
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
	return &realUser{name: name, st: st, rc: rc, c: c}
}

// TestRealNode runs a group through the real node/server over QUIC.
func TestRealNode(t *testing.T) {
	addr, fp := startRealNode(t)
	ctx := context.Background()
	alice, bob := newRealUser(t, addr, fp, "alice"), newRealUser(t, addr, fp, "bob")
	if _, _, err := Login(ctx, &RPCEntry{C: alice.rc}, "alice", []byte("wrong"), AccountOptions{Bounds: opaque.TestKSFBounds}); err != ErrLoginFailed {
		t.Errorf("login with a wrong password: %v, want ErrLoginFailed", err)
	}
	if _, err := alice.c.CreateGroup(ctx, "g", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.c.Invite(ctx, "g", []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	if err := alice.c.Send(ctx, "g", "hello bob"); err != nil {
		t.Fatal(err)
	}
	evs, err := bob.c.Recv(ctx, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range evs {
		if e.Kind == EventMessage {
			got = append(got, e.Sender+": "+e.Text)
		}
	}
	if len(got) != 1 || got[0] != "alice: hello bob" {
		t.Errorf("bob got %q", got)
	}
	if bob.c.GroupName(evs[0].Group) != "g" {
		t.Errorf("bob names the group %q", bob.c.GroupName(evs[0].Group))
	}
}

// lyingSession wraps a real node's session and lies the way a malicious
// node could: extra KeyPackages for a user, rewritten sender stamps.
type lyingSession struct {
	Session
	extraKP     map[string]FetchedKeyPackage
	stampSender []byte
}

func (l *lyingSession) FetchKeyPackages(ctx context.Context, user string, suite uint16) (*KeyPackages, error) {
	kps, err := l.Session.FetchKeyPackages(ctx, user, suite)
	if err != nil {
		return nil, err
	}
	if x, ok := l.extraKP[user]; ok {
		kps.Packages = append(kps.Packages, x)
	}
	return kps, nil
}

func (l *lyingSession) Fetch(ctx context.Context, after uint64, limit int, wait time.Duration) (*FetchResult, error) {
	r, err := l.Session.Fetch(ctx, after, limit, wait)
	if err != nil {
		return nil, err
	}
	for i, d := range r.Deliveries {
		if l.stampSender != nil && d.Kind == DeliveryApplication {
			r.Deliveries[i].Sender = l.stampSender
		}
	}
	return r, nil
}

// TestRealNodeLying puts a lying layer between clients and a real node:
// a KeyPackage of a device Bob's user key never signed is refused by the
// invite, and a message whose sender stamp disagrees with its MLS sender
// is refused and reported.
func TestRealNodeLying(t *testing.T) {
	addr, fp := startRealNode(t)
	ctx := context.Background()
	alice, bob, carol := newRealUser(t, addr, fp, "alice"), newRealUser(t, addr, fp, "bob"), newRealUser(t, addr, fp, "carol")

	// A device claiming to be Bob's, certified by a key that is not his.
	evil := newUserKey(t)
	_, dev, _ := ed25519.GenerateKey(nil)
	devPub := dev.Public().(ed25519.PublicKey)
	fake, err := New(Config{State: carol.st})
	if err != nil {
		t.Fatal(err)
	}
	fake.prof = &Profile{User: "bob", Device: dev, Cert: proto.SignDeviceCert(evil, "bob", devPub)}
	fake.devKey = devPub
	kp, err := fake.newKeyPackage(DefaultSuite)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := kp.Message()
	lie := &lyingSession{Session: alice.c.cfg.Session, extraKP: map[string]FetchedKeyPackage{"bob": {Device: devPub, KeyPackage: msg}}}
	alice.c.cfg.Session = lie
	alice.c.CreateGroup(ctx, "g", 0)
	_, err = alice.c.Invite(ctx, "g", []string{"bob"})
	if err == nil || !strings.Contains(err.Error(), "refusing a KeyPackage of bob") {
		t.Fatalf("invite with a forged KeyPackage: %v", err)
	}
	if gs, _ := alice.c.Groups(ctx); gs[0].Members != 1 || gs[0].Epoch != 0 {
		t.Errorf("the group changed: %+v", gs[0])
	}

	// Honest again for the invite; then the node claims Carol sent
	// what Alice sent Bob.
	lie.extraKP = nil
	if _, err := alice.c.Invite(ctx, "g", []string{"bob", "carol"}); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.c.Recv(ctx, 0); err != nil {
		t.Fatal(err)
	}
	bob.c.cfg.Session = &lyingSession{Session: bob.c.cfg.Session, stampSender: carol.c.DeviceKey()}
	if err := alice.c.Send(ctx, "g", "from alice"); err != nil {
		t.Fatal(err)
	}
	evs, err := bob.c.Recv(ctx, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Kind != EventRefused || !strings.Contains(evs[0].Text, "stamp") {
		t.Errorf("bob got %+v, want one refusal of the forged stamp", evs)
	}
}

// TestRealNodeOverflow: bob's queue at a real node overflows; bob is told
// once, clears the mark, and reads the group again after alice removes
// and re-adds his device.
func TestRealNodeOverflow(t *testing.T) {
	addr, fp := startRealNodeQueue(t, 4)
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
	if err := bob.c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		if err := alice.c.Send(ctx, "g", fmt.Sprintf("m%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	texts := func() (msgs []string, notices int) {
		t.Helper()
		evs, err := bob.c.Recv(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			switch {
			case e.Kind == EventMessage:
				msgs = append(msgs, e.Text)
			case e.Kind == EventRefused && strings.Contains(e.Text, "overflowed"):
				notices++
			}
		}
		return
	}
	if msgs, notices := texts(); notices != 1 || strings.Join(msgs, " ") != "m0 m1 m2 m3" {
		t.Errorf("bob got %q and %d overflow notices, want m0..m3 and one", msgs, notices)
	}
	if _, err := alice.c.Remove(ctx, "g", []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.c.Invite(ctx, "g", []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	if err := alice.c.Send(ctx, "g", "welcome back"); err != nil {
		t.Fatal(err)
	}
	if msgs, notices := texts(); notices != 0 || strings.Join(msgs, " ") != "welcome back" {
		t.Errorf("after the re-add bob got %q and %d overflow notices", msgs, notices)
	}
}
