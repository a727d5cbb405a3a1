package client

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"qpchat/internal/testport"
	"qpchat/node/server"
	"qpchat/opaque"
	"qpchat/rpc"
)

// TestStateFollowsKeySuccession: the client state keeps the successor
// commitment with its pin, and a dial with the state as pin store follows
// the node's rotation once.
func TestStateFollowsKeySuccession(t *testing.T) {
	addr := testport.UDP(t)
	data := t.TempDir()
	run := func() (stop func(), fp string) {
		srv, err := server.New(server.Config{Listen: addr, DataDir: data, OPAQUE: opaque.QPChatTest(),
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- srv.Serve(ctx) }()
		return func() { cancel(); <-done }, srv.Fingerprint()
	}
	st, err := OpenState(StateOptions{Path: filepath.Join(t.TempDir(), "p.state"), Passphrase: []byte("pw"), KDF: fastKDF})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var told []string
	dial := func() (string, error) {
		cl, err := rpc.Dial(context.Background(), addr, rpc.DialOptions{Pins: st,
			OnSuccession: func(_, old, new string) { told = append(told, old+">"+new) }})
		if err != nil {
			return "", err
		}
		cl.Close()
		return cl.Fingerprint, nil
	}
	stop, fp0 := run()
	if got, err := dial(); err != nil || got != fp0 {
		t.Fatalf("first dial: %s, %v", got, err)
	}
	next, err := st.Successor(addr)
	if err != nil || next == "" {
		t.Fatalf("successor kept in the state: %q, %v", next, err)
	}
	stop()
	r, err := server.RotateIdentity(server.Config{DataDir: data})
	if err != nil {
		t.Fatal(err)
	}
	stop, fp1 := run()
	defer stop()
	if fp1 != next || r.New != next {
		t.Fatalf("rotated to %s, committed %s", fp1, next)
	}
	if got, err := dial(); err != nil || got != fp1 || len(told) != 1 {
		t.Fatalf("dial after rotation: %s, %v, told %v", got, err, told)
	}
	if p, _, _ := st.Pin(addr); p != fp1 {
		t.Errorf("state pin %s, want %s", p, fp1)
	}
	if n, _ := st.Successor(addr); n != r.Next {
		t.Errorf("state successor %s, want %s", n, r.Next)
	}
}
