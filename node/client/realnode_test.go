package client

import (
	"context"
	"crypto/ed25519"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

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
	t.Helper()
	srv, err := server.New(server.Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), OPAQUE: opaque.QPChatTest(),
		// One address opens every connection of these tests.
		Limits: server.Limits{MaxConnsPerAddr: 1000, LoginRateAddr: 100000},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return srv.Addr().String(), srv.Fingerprint()
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
	rc, err := rpc.Dial(ctx, addr, rpc.DialOptions{Fingerprint: fp, Pins: st})
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
