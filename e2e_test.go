package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"qpchat/internal/testport"
)

// The real binary, built once per test run with CGO_ENABLED=0.
var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func qpchatBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "qpchat-e2e-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "qpchat")
		cmd := exec.Command("go", "build", "-o", binPath, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = errors.New("go build: " + err.Error() + "\n" + string(out))
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// testEnv is the environment of the processes: no QPCHAT_* from the
// caller, and a private HOME.
func testEnv(t *testing.T) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "QPCHAT_") && !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	return append(env, "HOME="+t.TempDir())
}

// node is a running `qpchat serve` process.
type node struct {
	cmd         *exec.Cmd
	addr        string
	fingerprint string
	webURL      string // with --web-listen: the app's URL
	wantWeb     bool
	created     bool
	stderr      *syncBuffer
	exited      chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startNode runs `qpchat serve` (with extra flags) and waits for it to
// print its address and fingerprint.
func startNode(t *testing.T, listen, data string, extra ...string) *node {
	t.Helper()
	n, wait := launchNode(t, listen, data, extra...)
	wait()
	return n
}

// launchNode starts `qpchat serve` and returns a function that waits for
// it to print its address and fingerprint (so that nodes that wait for
// each other, as a cluster's do, can be started together).
func launchNode(t *testing.T, listen, data string, extra ...string) (*node, func()) {
	t.Helper()
	if listen == "127.0.0.1:0" {
		// Many tests restart the node on the address it first got; a
		// kernel-assigned port could be taken meanwhile by another test
		// process's QUIC client socket. One from below the ephemeral
		// range cannot.
		listen = testport.UDP(t)
	}
	cmd := exec.Command(qpchatBinary(t), append([]string{"serve", "--listen", listen, "--data", data, "--log-level", "debug"}, extra...)...)
	cmd.Env = testEnv(t)
	n := &node{cmd: cmd, stderr: &syncBuffer{}, exited: make(chan error, 1)}
	cmd.Stderr = n.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		io.Copy(io.Discard, stdout)
	}()
	go func() { n.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-n.exited
		}
		if t.Failed() {
			t.Logf("qpchat serve --data %s stderr:\n%s", data, n.stderr)
		}
	})

	n.wantWeb = slices.Contains(extra, "--web-listen")
	return n, func() { n.waitStarted(t, lines) }
}

func (n *node) waitStarted(t *testing.T, lines chan string) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for n.fingerprint == "" || n.wantWeb && n.webURL == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				// stdout closed: wait for the exit, so that stderr is all
				// copied before it is shown.
				var err error
				select {
				case err = <-n.exited:
				case <-time.After(10 * time.Second):
				}
				t.Fatalf("qpchat serve exited (%v) before printing its fingerprint; stderr:\n%s", err, n.stderr)
			}
			switch {
			case strings.HasPrefix(l, "created a new server identity"):
				n.created = true
			case strings.HasPrefix(l, "listening on "):
				n.addr = strings.TrimPrefix(l, "listening on ")
			case strings.HasPrefix(l, "fingerprint "):
				n.fingerprint = strings.TrimPrefix(l, "fingerprint ")
			case strings.HasPrefix(l, "web app on "):
				n.webURL = strings.TrimPrefix(l, "web app on ")
			}
		case <-timeout:
			t.Fatal("qpchat serve printed no fingerprint within 30s")
		}
	}
	go func() {
		for range lines {
		}
	}()
}

// stop sends SIGTERM and checks the node exits 0.
func (n *node) stop(t *testing.T) {
	t.Helper()
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-n.exited:
		if err != nil {
			t.Errorf("qpchat serve after SIGTERM: %v, want exit 0", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("qpchat serve did not exit within 30s of SIGTERM")
	}
}

// client runs `qpchat client ...` and returns its exit code and output.
func client(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(qpchatBinary(t), append([]string{"client"}, args...)...)
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatal(err)
	}
	return code, out.String(), errb.String()
}

func TestEndToEnd(t *testing.T) {
	dir := t.TempDir()
	data, state := filepath.Join(dir, "data"), filepath.Join(dir, "state")
	env := testEnv(t)

	// First start: a new identity, trusted on first use.
	n1 := startNode(t, "127.0.0.1:0", data)
	if !n1.created || !strings.HasPrefix(n1.fingerprint, "sha256:") {
		t.Fatalf("first start: created %v, fingerprint %q", n1.created, n1.fingerprint)
	}
	addr := n1.addr
	code, out, errs := client(t, env, "--server", addr, "--state-dir", state, "ping")
	if code != 0 || !strings.HasPrefix(out, "pong from "+addr) || !strings.Contains(out, n1.fingerprint) {
		t.Fatalf("first ping: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if !strings.Contains(errs, "on first use: "+n1.fingerprint) {
		t.Errorf("first ping did not say it trusted the key on first use: stderr %q", errs)
	}
	for _, f := range []struct {
		path string
		mode os.FileMode
	}{{data, 0o700}, {filepath.Join(data, "server-key.pem"), 0o600}, {filepath.Join(state, "server-pins.json"), 0o600}} {
		if st, err := os.Stat(f.path); err != nil || st.Mode().Perm() != f.mode {
			t.Errorf("%s: %v, want mode %v", f.path, err, f.mode)
		}
	}

	// The environment works like the flags; the key is now pinned.
	envVars := append(env[:len(env):len(env)], "QPCHAT_SERVER="+addr, "QPCHAT_STATE_DIR="+state)
	code, out, errs = client(t, envVars, "ping", "--count", "2")
	if code != 0 || strings.Count(out, "pong from "+addr) != 2 || errs != "" {
		t.Fatalf("ping by environment: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	n1.stop(t)

	// A restart reuses the identity.
	n2 := startNode(t, addr, data)
	if n2.created || n2.fingerprint != n1.fingerprint {
		t.Errorf("restart: created %v, fingerprint %s; want the old %s", n2.created, n2.fingerprint, n1.fingerprint)
	}
	if code, out, errs = client(t, env, "--server", addr, "--state-dir", state, "ping"); code != 0 {
		t.Fatalf("ping after restart: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	n2.stop(t)

	// Another key on the same address is refused.
	n3 := startNode(t, addr, filepath.Join(dir, "other-data"))
	if n3.fingerprint == n1.fingerprint {
		t.Fatal("a new data directory gave the same key")
	}
	code, out, errs = client(t, env, "--server", addr, "--state-dir", state, "ping")
	if code != exitUntrusted || out != "" || !strings.Contains(errs, "refusing to connect") || !strings.Contains(errs, n3.fingerprint) {
		t.Errorf("ping to a changed key: exit %d, stdout %q, stderr %q; want exit %d and a refusal", code, out, errs, exitUntrusted)
	}
	oneErrorLine(t, errs)
	// Refusing again: the pin was not replaced.
	if code, _, _ = client(t, env, "--server", addr, "--state-dir", state, "ping"); code != exitUntrusted {
		t.Errorf("second ping to a changed key: exit %d, want %d", code, exitUntrusted)
	}

	// Only an explicit fingerprint re-pins.
	code, out, errs = client(t, env, "--server", addr, "--state-dir", state, "--server-fingerprint", n3.fingerprint, "ping")
	if code != 0 {
		t.Fatalf("ping with --server-fingerprint: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if code, out, errs = client(t, env, "--server", addr, "--state-dir", state, "ping"); code != 0 || errs != "" {
		t.Errorf("ping after re-pinning: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	n3.stop(t)
}

// TestServerList: --server may list several nodes of one service (they
// share the identity): the first that answers is used, a dead one is
// skipped, one pin (kept under the list) covers them all, and a node
// with another key is refused (exit 4), never skipped.
func TestServerList(t *testing.T) {
	dir := t.TempDir()
	d1, d2, d3 := filepath.Join(dir, "n1"), filepath.Join(dir, "n2"), filepath.Join(dir, "n3")
	n1 := startNode(t, "127.0.0.1:0", d1)
	// A second node with the same identity, as cluster-init gives.
	if err := os.MkdirAll(d2, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"server-cert.pem", "server-key.pem"} {
		b, err := os.ReadFile(filepath.Join(d1, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d2, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	n2 := startNode(t, "127.0.0.1:0", d2)
	if n2.fingerprint != n1.fingerprint {
		t.Fatalf("the copied identity has fingerprint %s, want %s", n2.fingerprint, n1.fingerprint)
	}
	n3 := startNode(t, "127.0.0.1:0", d3) // another identity

	// An address nothing listens on: QUIC gets no answer from it.
	dead := n1.addr
	n1.stop(t)
	n1 = startNode(t, "127.0.0.1:0", d1)

	env := append(testEnv(t), "QPCHAT_STATE_DIR="+filepath.Join(dir, "state"), "QPCHAT_CONNECT_TIMEOUT=1s")
	list := dead + ", " + n1.addr + "," + n2.addr
	code, out, errs := client(t, env, "ping", "--server", list)
	if code != 0 || !strings.Contains(out, "pong") {
		t.Fatalf("ping with a dead first node: exit %d\n%s%s", code, out, errs)
	}
	key := dead + "," + n1.addr + "," + n2.addr
	if !strings.Contains(errs, "trusting the key of "+key+" on first use: "+n1.fingerprint) {
		t.Errorf("the first use did not pin the list: %q", errs)
	}

	// The first live node goes away: the next one answers, under the same pin.
	n1.stop(t)
	code, out, errs = client(t, env, "ping", "--server", list)
	if code != 0 || !strings.Contains(out, "pong") || strings.Contains(errs, "first use") {
		t.Fatalf("ping after the first node stopped: exit %d\n%s%s", code, out, errs)
	}

	// None answers: unreachable, naming each.
	n2.stop(t)
	code, _, errs = client(t, env, "ping", "--server", list)
	if code != 3 || !strings.Contains(errs, "none of the 3 nodes answered") {
		t.Errorf("ping with every node down: exit %d, %q", code, errs)
	}

	// A node with another key in the list is refused, not skipped.
	n2 = startNode(t, n2.addr, d2)
	other := n3.addr + "," + n2.addr
	if code, _, errs := client(t, env, "ping", "--server", other, "--server-fingerprint", n2.fingerprint); code != 4 {
		t.Errorf("a node with another key first in the list: exit %d, %q; want 4", code, errs)
	}
	if code, _, errs := client(t, env, "ping", "--server", "a:1,,b:2"); code != 80 || !strings.Contains(errs, "empty address") {
		t.Errorf("an empty address in the list: exit %d, %q", code, errs)
	}
}
