package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	nc "qpchat/node/client"
	"qpchat/node/daemon"
	"qpchat/rpc"
)

// TestRPCError: each exit-code class of the commands has its stable
// JSON-RPC code, and the data names the class.
func TestRPCError(t *testing.T) {
	for _, tc := range []struct {
		err   error
		code  int
		class string
	}{
		{errors.New("client: no group named x"), -32001, "failed"},
		{&authError{errors.New("wrong state passphrase")}, -32002, "auth"},
		{&unreachableError{errors.New("timeout")}, -32003, "unreachable"},
		{&rpc.PinMismatchError{Server: "a", Pinned: "sha256:00", Got: "sha256:11"}, -32004, "untrusted-key"},
		{errors.New("node.capnp:Session.send: qpchat limit: too big"), -32005, "refused"},
		{&usageError{"send needs a group"}, daemon.CodeInvalidParams, "usage"},
	} {
		e := rpcError(tc.err)
		data, _ := e.Data.(map[string]any)
		if e.Code != tc.code || data["class"] != tc.class || e.Message == "" {
			t.Errorf("rpcError(%v) = %d %q %v, want %d class %s", tc.err, e.Code, e.Message, e.Data, tc.code, tc.class)
		}
	}
	// A call that timed out while the node is away is "unreachable".
	d := &daemonState{}
	if e := rpcError(d.explain(context.DeadlineExceeded)); e.Code != rpcCodeUnreachable {
		t.Errorf("a deadline while disconnected = %d, want %d", e.Code, rpcCodeUnreachable)
	}
	d.connected.Store(true)
	if e := rpcError(d.explain(nc.ErrOutboxFull)); e.Code != rpcCodeFailed {
		t.Errorf("another error while connected = %d, want %d", e.Code, rpcCodeFailed)
	}
}

// TestDaemonBacklog: recv's backlog keeps the newest events within its
// bounds and says how many older ones it dropped.
func TestDaemonBacklog(t *testing.T) {
	d := &daemonState{wake: make(chan struct{})}
	for i := range maxBacklog + 5 {
		d.add(map[string]any{"event": "message", "text": string(rune('a' + i%26))})
	}
	got := d.take(context.Background(), 0)
	if len(got) != maxBacklog+1 || got[0]["event"] != "lost" || got[1]["text"] != "f" {
		t.Errorf("take returned %d events starting %v, %v; want a lost entry and the newest %d", len(got), got[0], got[1], maxBacklog)
	}
	big := string(make([]byte, maxBacklogBytes/2+1))
	d.add(map[string]any{"event": "message", "text": big})
	d.add(map[string]any{"event": "message", "text": big})
	if got := d.take(context.Background(), 0); len(got) != 2 || got[0]["event"] != "lost" {
		t.Errorf("two texts over the byte bound: take returned %d events, want the lost entry and the newest", len(got))
	}
	if got := d.take(context.Background(), 0); len(got) != 0 {
		t.Errorf("take after take = %v, want nothing", got)
	}
}

// TestListenSocket: the socket gets mode 0600 in a new 0700 directory; a
// stale socket is replaced, anything else, a too long path and a
// directory anyone may write to are refused.
func TestListenSocket(t *testing.T) {
	base, err := os.MkdirTemp("", "qpl")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	path := filepath.Join(base, "new", "p.sock")
	ln, err := listenSocket(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	di, _ := os.Stat(filepath.Dir(path))
	if fi.Mode().Perm() != 0o600 || di.Mode().Perm() != 0o700 {
		t.Errorf("socket mode %v in directory mode %v, want 0600 in 0700", fi.Mode(), di.Mode())
	}
	ln.SetUnlinkOnClose(false)
	ln.Close() // leaves a stale socket file, as a crash does
	ln, err = listenSocket(path)
	if err != nil {
		t.Errorf("listenSocket over a stale socket: %v", err)
	} else {
		ln.Close()
	}
	file := filepath.Join(base, "file")
	os.WriteFile(file, []byte("keep me"), 0o600)
	if _, err := listenSocket(file); err == nil {
		t.Error("listenSocket replaced a regular file")
	}
	if _, err := listenSocket(filepath.Join(base, strings.Repeat("x", 120))); err == nil {
		t.Error("listenSocket took a path longer than a socket address holds")
	}
	open := filepath.Join(base, "open")
	os.Mkdir(open, 0o700)
	os.Chmod(open, 0o777)
	if _, err := listenSocket(filepath.Join(open, "p.sock")); err == nil {
		t.Error("listenSocket used a directory anyone may write to")
	}
}
