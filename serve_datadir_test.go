package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serveOutput starts `qpchat serve` with env and no --data, reads its
// stdout up to the fingerprint line, stops it and returns stdout and
// stderr.
func serveOutput(t *testing.T, env []string) (stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(qpchatBinary(t), "serve", "--listen", "127.0.0.1:0")
	cmd.Env = env
	errb := &syncBuffer{}
	cmd.Stderr = errb
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var out []string
	timeout := time.After(30 * time.Second)
wait:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				break wait
			}
			out = append(out, l)
			if strings.HasPrefix(l, "fingerprint ") {
				break wait
			}
		case <-timeout:
			t.Fatal("qpchat serve printed no fingerprint within 30s")
		}
	}
	cmd.Process.Signal(os.Interrupt)
	go func() {
		for range lines {
		}
	}()
	cmd.Wait()
	return strings.Join(out, "\n") + "\n", errb.String()
}

// TestServeDataDirFollowsXDG: without --data, the node keeps its data in
// $XDG_DATA_HOME/qpchat-server, else $HOME/.local/share/qpchat-server,
// says where, and prints its fingerprint once.
func TestServeDataDirFollowsXDG(t *testing.T) {
	env := testEnv(t) // a private HOME
	var home string
	for _, kv := range env {
		if h, ok := strings.CutPrefix(kv, "HOME="); ok {
			home = h
		}
	}
	var base []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "XDG_DATA_HOME=") {
			base = append(base, kv)
		}
	}
	want := filepath.Join(home, ".local", "share", "qpchat-server")
	out, errs := serveOutput(t, base)
	if !strings.Contains(out, "created a new server identity in "+want+"\n") {
		t.Errorf("with HOME=%s: stdout %q, want the identity in %s", home, out, want)
	}
	if _, err := os.Stat(filepath.Join(want, "node.db")); err != nil {
		t.Errorf("no store in %s: %v", want, err)
	}
	fp := strings.TrimPrefix(out[strings.Index(out, "fingerprint "):], "fingerprint ")
	fp = strings.TrimSpace(fp)
	if n := strings.Count(out+errs, fp); n != 1 {
		t.Errorf("the fingerprint appears %d times in the output:\n%s%s", n, out, errs)
	}
	out, _ = serveOutput(t, base)
	if !strings.Contains(out, "data directory "+want+"\n") {
		t.Errorf("second start: stdout %q, want the data directory named", out)
	}

	xdg := t.TempDir()
	out, _ = serveOutput(t, append(base, "XDG_DATA_HOME="+xdg))
	if want := filepath.Join(xdg, "qpchat-server"); !strings.Contains(out, "created a new server identity in "+want+"\n") {
		t.Errorf("with XDG_DATA_HOME=%s: stdout %q, want the identity in %s", xdg, out, want)
	}
}
