package server

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"qpchat/mls"
	"qpchat/node/bench"
	"qpchat/node/proto"
	"qpchat/opaque"
	"qpchat/rpc"
)

// Helpers for the tests of the node's services. Every test runs a real
// node (store, QUIC, Cap'n Proto) in-process and talks to it with the
// wire client of node/bench.

// testSuite is the MLS suite of the tests' KeyPackages.
const testSuite = uint16(mls.CipherSuiteMLS128DHKEMX25519AES128GCMSHA256Ed25519)

// fakeClock is a settable clock for expiry and lifetimes.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// node is a running test node.
type node struct {
	t     testing.TB
	srv   *Server
	cfg   Config
	clock *fakeClock
	stop  func()
}

// startNode runs a node with the cheap test OPAQUE configuration; edit
// adjusts the configuration first.
func startNode(t testing.TB, edit func(*Config)) *node {
	t.Helper()
	return startNodeWith(t, edit, nil)
}

// startNodeWith is startNode with prepare run on the Server before it
// serves (to replace its hooks).
func startNodeWith(t testing.TB, edit func(*Config), prepare func(*Server)) *node {
	t.Helper()
	clock := &fakeClock{now: time.Now()}
	cfg := Config{
		Listen:  "127.0.0.1:0",
		DataDir: filepath.Join(t.TempDir(), "data"),
		Version: "test",
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		OPAQUE:  opaque.QPChatTest(),
		Now:     clock.Now,
	}
	if edit != nil {
		edit(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if prepare != nil {
		prepare(srv)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ctx) }()
	var once sync.Once
	n := &node{t: t, srv: srv, cfg: cfg, clock: clock}
	n.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-errc; err != nil {
				t.Errorf("Serve: %v", err)
			}
		})
	}
	t.Cleanup(n.stop)
	return n
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// dial opens a connection to the node.
func (n *node) dial() *bench.Conn {
	n.t.Helper()
	c, err := bench.Dial(testCtx(n.t), n.srv.Addr().String(), n.srv.Fingerprint())
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() { c.Close() })
	return c
}

// user is a registered account with its login session.
type user struct {
	name    string
	key     ed25519.PrivateKey
	login   rpc.Session
	conn    *bench.Conn
	devices []*bench.Device
}

const testPassword = "correct horse battery staple"

// register creates an account and returns it logged in.
func (n *node) register(name string) *user {
	n.t.Helper()
	c := n.dial()
	s, uk, err := c.Register(testCtx(n.t), n.cfg.OPAQUE, name, []byte(testPassword))
	if err != nil {
		n.t.Fatalf("register %s: %v", name, err)
	}
	norm, _ := proto.NormalizeUser(name)
	return &user{name: norm, key: uk, login: s, conn: c}
}

// addDevice registers a new device for u and opens a device session on
// its own connection.
func (n *node) addDevice(u *user) *bench.Device {
	n.t.Helper()
	dk, err := bench.NewDeviceKey(nil)
	if err != nil {
		n.t.Fatal(err)
	}
	if err := u.conn.RegisterDevice(testCtx(n.t), u.login, u.name, u.key, dk); err != nil {
		n.t.Fatalf("register device: %v", err)
	}
	c := n.dial()
	d, err := c.AuthenticateDevice(testCtx(n.t), u.name, dk, c.Exporter)
	if err != nil {
		n.t.Fatalf("authenticate device: %v", err)
	}
	u.devices = append(u.devices, d)
	return d
}

// keyPackages makes count KeyPackages of d (a device of u).
func keyPackages(t testing.TB, u *user, d *bench.Device, count int, now time.Time) (msgs, refs [][]byte) {
	t.Helper()
	for range count {
		m, r, err := bench.KeyPackage(testSuite, u.name, u.key, d.Key, now, 0)
		if err != nil {
			t.Fatal(err)
		}
		msgs, refs = append(msgs, m), append(refs, r)
	}
	return msgs, refs
}

// newGroupID returns 32 random bytes.
func newGroupID(t testing.TB) []byte {
	id := make([]byte, 32)
	if _, err := rand.Read(id); err != nil {
		t.Fatal(err)
	}
	return id
}

// wantCode fails unless err carries code.
func wantCode(t testing.TB, what string, err error, code proto.Code) {
	t.Helper()
	if err == nil {
		t.Errorf("%s succeeded, want error %q", what, code)
		return
	}
	if got := proto.CodeOf(err); got != code {
		t.Errorf("%s: error %v (code %q), want code %q", what, err, got, code)
	}
}

func must(t testing.TB, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

var errTimeout = errors.New("timed out")

func parseLeaf(c tls.Certificate) (*x509.Certificate, error) {
	return x509.ParseCertificate(c.Certificate[0])
}
