package main

import (
	"context"
	"errors"
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
