package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	nc "qpchat/node/client"
	"qpchat/node/proto"
	"qpchat/node/server"
	"qpchat/rpc"
)

// TestUserMessage: a node's refusal reads as words, without the RPC
// plumbing.
func TestUserMessage(t *testing.T) {
	for _, tc := range []struct{ err, want string }{
		{"client: fetching KeyPackages of carol: node.capnp:Session.fetchKeyPackages: qpchat not-found: fetchKeyPackages: not found",
			"no user named carol on this node"},
		{"client: fetching the user key of carol: client: unknown user (node.capnp:Session.userKey: qpchat not-found: userKey: not found)",
			"no user named carol on this node"},
		{"client: sending to friends: node.capnp:Session.send: qpchat limit: one of the messages is 1048609 bytes, the limit (--max-message-size) is 1048576",
			"sending to friends: over a limit of the node: one of the messages is 1048609 bytes, the limit (--max-message-size) is 1048576"},
		{"client: submitting a commit to g: node.capnp:Session.commit: qpchat stale: commit: another commit won epoch 3",
			"submitting a commit to g: another member changed the group at the same time; run the command again: another commit won epoch 3"},
		{"client: x (node.capnp:Session.y: qpchat internal: y: store failed)",
			"x (the node failed (nothing was changed): store failed)"},
		{"client: sending to friends: node.capnp:Session.send: qpchat unavailable: send: the cluster has no quorum: this node reaches too few of the other nodes",
			"sending to friends: the node cannot serve now; try again or another node of the cluster: the cluster has no quorum: this node reaches too few of the other nodes"},
		{"plain error", "plain error"},
	} {
		if got := userMessage(errors.New(tc.err)); got != tc.want {
			t.Errorf("userMessage(%q)\n = %q\nwant %q", tc.err, got, tc.want)
		}
	}
}

// TestExitCodes: each kind of failure has its own code.
func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, 0},
		{errors.New("something"), exitError},
		{&usageError{"send needs a group"}, exitUsage},
		{fmt.Errorf("x: %w", &rpc.PinMismatchError{Server: "s"}), exitUntrusted},
		{errors.New("rpc: certificate of server s is not trusted by the given CA: x"), exitUntrusted},
		{fmt.Errorf("login: %w", nc.ErrLoginFailed), exitAuth},
		{&authError{errors.New("wrong state passphrase")}, exitAuth},
		{errors.New("node.capnp:NodeService.authenticateDevice: qpchat auth-failed: bad signature"), exitAuth},
		{dialError(errors.New("rpc: cannot reach s: no answer within 3s")), exitUnreachable},
		{dialError(&rpc.PinMismatchError{Server: "s"}), exitUntrusted},
		{errors.New("node.capnp:Session.send: qpchat limit: too big"), exitRefused},
		{proto.Errorf(proto.CodeNotMember, "x"), exitRefused},
	} {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("exitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
	codes := map[int]bool{}
	for _, c := range []int{exitOK, exitError, exitAuth, exitUnreachable, exitUntrusted, exitRefused, exitUsage} {
		if codes[c] {
			t.Errorf("exit code %d used twice", c)
		}
		codes[c] = true
		if !strings.Contains(exitCodesHelp, fmt.Sprint(c)+" ") {
			t.Errorf("exit code %d is not in the help", c)
		}
	}
	code, out, _ := runCLI(t, "client", "--help")
	if code != 0 || !strings.Contains(out, "3 node unreachable") || !strings.Contains(out, "80 usage") {
		t.Errorf("client --help (exit %d) does not list the exit codes:\n%s", code, out)
	}
}

// TestVersionFlag: --version is the version command.
func TestVersionFlag(t *testing.T) {
	code, out, errs := runCLI(t, "--version")
	if code != 0 || errs != "" || !strings.HasPrefix(out, "qpchat "+version+" (commit ") {
		t.Errorf("--version: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

// TestConnectingNote: on a terminal, a client says whom it connects to
// before it waits, and a silent node fails after --connect-timeout
// with the exit code of an unreachable node.
func TestConnectingNote(t *testing.T) {
	addr := silentAddr(t)
	var out, errb strings.Builder
	code := runWith([]string{"client", "--server", addr, "--state-dir", t.TempDir(), "--connect-timeout", "200ms", "ping"}, &out, &errb, true)
	errs := errb.String()
	if code != exitUnreachable || !strings.HasPrefix(errs, "connecting to "+addr+"…\n") || !strings.Contains(errs, "no answer within 200ms") {
		t.Errorf("ping to a silent node on a terminal: exit %d, stderr %q", code, errs)
	}
	// Not on a terminal: only the error.
	code, _, errs = runCLI(t, "client", "--server", addr, "--state-dir", t.TempDir(), "--connect-timeout", "200ms", "ping")
	if code != exitUnreachable || strings.Contains(errs, "connecting") {
		t.Errorf("ping to a silent node, no terminal: exit %d, stderr %q", code, errs)
	}
	oneErrorLine(t, errs)
}

// TestLostConnectionExitCode: an error after the connection to the node
// ended exits like an unreachable node; other errors keep their code.
func TestLostConnectionExitCode(t *testing.T) {
	srv, err := server.New(server.Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	defer func() { cancel(); <-served }()
	addr := srv.Addr().String()
	rc, err := rpc.Dial(context.Background(), addr, rpc.DialOptions{Fingerprint: srv.Fingerprint(), Limits: clientLimits})
	if err != nil {
		t.Fatal(err)
	}
	cn := &conn{rc: rc}
	refused := errors.New("node.capnp:Session.send: qpchat limit: too big")
	if got := exitCode(cn.lost(addr, refused)); got != exitRefused {
		t.Errorf("a refusal on a live connection: exit %d, want %d", got, exitRefused)
	}
	rc.Close()
	<-rc.Done()
	if got := exitCode(cn.lost(addr, errors.New("fetching messages: rpc: connection closed"))); got != exitUnreachable {
		t.Errorf("an error after the connection ended: exit %d, want %d", got, exitUnreachable)
	}
	if cn.lost(addr, nil) != nil {
		t.Error("no error became an error")
	}
}
