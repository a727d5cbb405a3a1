package client

import (
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"qpchat/node/proto"
	"qpchat/node/server"
	"qpchat/opaque"
	"qpchat/rpc"
)

// startWebNode starts a node with a QUIC and a loopback web listener and
// returns the QUIC address, the ws:// URL and the node's fingerprint.
func startWebNode(t testing.TB) (quicAddr, webURL, fp string) {
	t.Helper()
	srv, err := server.New(server.Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), OPAQUE: opaque.QPChatTest(),
		Limits: server.Limits{MaxConnsPerAddr: 1000, LoginRateAddr: 100000},
		Web:    server.WebConfig{Listen: "127.0.0.1:0"},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return srv.Addr().String(), "ws://" + srv.WebAddr().String() + rpc.WebPath, srv.Fingerprint()
}

func dialEntry(t testing.TB, ctx context.Context, addr, fp string) *RPCEntry {
	t.Helper()
	rc, err := rpc.Dial(ctx, addr, rpc.DialOptions{Fingerprint: fp, Limits: rpc.MessageLimits{MaxMessageSize: proto.MinClientFrameSize}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	return &RPCEntry{C: rc}
}

// TestWebSocketNodeService speaks NodeService over the WebSocket with
// the client library: ping, registration, login, a device registered
// and authenticated, a device Session call; then the same account from
// QUIC.
func TestWebSocketNodeService(t *testing.T) {
	quicAddr, webURL, fp := startWebNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e := dialEntry(t, ctx, webURL, fp)
	if e.BindingType() != proto.BindingWeb {
		t.Fatalf("binding over ws:// = %v, want %v", e.BindingType(), proto.BindingWeb)
	}
	f, rel := e.C.Node.Ping(ctx, func(p rpc.NodeService_ping_Params) error { p.SetNonce(7); return nil })
	res, err := f.Struct()
	if err != nil || res.Nonce() != 7 {
		t.Fatalf("ping over ws:// = %v, %v", res, err)
	}
	rel()

	opts := AccountOptions{Bounds: opaque.TestKSFBounds}
	pw := []byte("correct horse")
	if _, _, err := RegisterUser(ctx, e, "webby", pw, opts); err != nil {
		t.Fatal(err)
	}
	uk, ls, err := Login(ctx, e, "webby", pw, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Login(ctx, e, "webby", []byte("wrong"), opts); !errors.Is(err, ErrLoginFailed) {
		t.Errorf("login with a wrong password over ws:// = %v, want ErrLoginFailed", err)
	}
	dev, cert, err := NewDevice(ctx, e, ls, "webby", uk, nil)
	if err != nil {
		t.Fatal(err)
	}
	prof := &Profile{User: "webby", UserKey: uk.Public().(ed25519.PublicKey), Device: dev, Cert: cert}
	s, err := AuthenticateDevice(ctx, e, prof)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.KeyPackageCount(ctx, 0xFA01); err != nil || n != 0 {
		t.Errorf("keyPackageCount over ws:// = %d, %v", n, err)
	}

	// The same account and device from QUIC.
	q := dialEntry(t, ctx, quicAddr, fp)
	if _, _, err := Login(ctx, q, "webby", pw, opts); err != nil {
		t.Errorf("login over QUIC after registering over ws://: %v", err)
	}
	if _, err := AuthenticateDevice(ctx, q, prof); err != nil {
		t.Errorf("device authentication over QUIC: %v", err)
	}
}

// lyingEntry reports another binding kind than its connection's, as a
// client (or a relay) would that tries to pass one kind's proof off as
// the other's.
type lyingEntry struct {
	*RPCEntry
	claim proto.Binding
}

func (l lyingEntry) BindingType() proto.Binding { return l.claim }

// TestBindingDowngradeRefused: a login proof or device signature made
// under one binding kind is refused on a connection of the other, in
// both directions, even over that connection's own binding value. The
// node takes the kind from the transport, never from the client.
func TestBindingDowngradeRefused(t *testing.T) {
	quicAddr, webURL, fp := startWebNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	opts := AccountOptions{Bounds: opaque.TestKSFBounds}
	pw := []byte("pw")
	q := dialEntry(t, ctx, quicAddr, fp)
	if _, _, err := RegisterUser(ctx, q, "alice", pw, opts); err != nil {
		t.Fatal(err)
	}
	uk, ls, err := Login(ctx, q, "alice", pw, opts)
	if err != nil {
		t.Fatal(err)
	}
	dev, cert, err := NewDevice(ctx, q, ls, "alice", uk, nil)
	if err != nil {
		t.Fatal(err)
	}
	prof := &Profile{User: "alice", UserKey: uk.Public().(ed25519.PublicKey), Device: dev, Cert: cert}

	for _, tc := range []struct {
		name  string
		addr  string
		claim proto.Binding
	}{
		{"web proof on QUIC", quicAddr, proto.BindingWeb},
		{"QUIC proof on web", webURL, proto.BindingTLSExporter},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := lyingEntry{dialEntry(t, ctx, tc.addr, fp), tc.claim}
			if _, _, err := Login(ctx, e, "alice", pw, opts); !errors.Is(err, ErrLoginFailed) {
				t.Errorf("login = %v, want ErrLoginFailed", err)
			}
			if _, err := AuthenticateDevice(ctx, e, prof); !isAuthErr(err) {
				t.Errorf("device authentication = %v, want an authentication failure", err)
			}
			// The honest kind on the same connection works.
			if _, err := AuthenticateDevice(ctx, e.RPCEntry, prof); err != nil {
				t.Errorf("honest device authentication: %v", err)
			}
			_, ls, err := Login(ctx, e.RPCEntry, "alice", pw, opts)
			if err != nil {
				t.Fatalf("honest login: %v", err)
			}
			// Registering a device with a possession proof of the other
			// kind is refused too.
			if _, _, err := NewDevice(ctx, e, ls, "alice", uk, nil); err == nil {
				t.Error("device registration with the other kind's proof succeeded")
			}
		})
	}
}

func isAuthErr(err error) bool {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if proto.CodeOf(e) == proto.CodeAuth {
			return true
		}
	}
	return false
}
