package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"qpchat/node/store"
)

// serveCmd runs `qpchat serve ...` (the binary) and returns its exit
// code and output.
func serveCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(qpchatBinary(t), append([]string{"serve"}, args...)...)
	cmd.Env = testEnv(t)
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

// TestServeOpsCommands runs a node with an admin listener and the
// operator's subcommands against it: health, a live backup, refusals
// while it runs, compaction once stopped, and a restore that brings the
// same node back.
func TestServeOpsCommands(t *testing.T) {
	data := t.TempDir()
	n := startNode(t, "127.0.0.1:0", data, "--admin-listen", "127.0.0.1:0")

	if code, out, errs := serveCmd(t, "health", "--data", data); code != 0 || !strings.Contains(out, "ready") {
		t.Errorf("serve health: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	backup := filepath.Join(t.TempDir(), "node.backup")
	if code, _, errs := serveCmd(t, "backup", "--data", data, "--out", backup); code != 0 || !strings.Contains(errs, "backed up the running node") {
		t.Fatalf("serve backup of a running node: exit %d, stderr %q", code, errs)
	}
	if fi, err := os.Stat(backup); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("backup file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	code, out, errs := serveCmd(t, "backup", "--data", data, "--out", "-")
	if _, _, err := store.ReadBackup(strings.NewReader(out), io.Discard); code != 0 || err != nil {
		t.Errorf("serve backup --out -: exit %d, stderr %q; the output does not verify: %v", code, errs, err)
	}
	if code, _, errs := serveCmd(t, "backup", "--data", data, "--out", backup); code != exitError || !strings.Contains(errs, "exists") {
		t.Errorf("serve backup over an existing file: exit %d, stderr %q", code, errs)
	}
	if code, _, errs := serveCmd(t, "restore", "--data", data, "--in", backup, "--force"); code != exitError || !strings.Contains(errs, "running") {
		t.Errorf("serve restore over a running node: exit %d, stderr %q", code, errs)
	}
	if code, _, errs := serveCmd(t, "compact", "--data", data); code != exitError || !strings.Contains(errs, "running") {
		t.Errorf("serve compact of a running node: exit %d, stderr %q", code, errs)
	}
	n.stop(t)

	if code, _, _ := serveCmd(t, "health", "--data", data, "--admin-listen", "127.0.0.1:1"); code != exitError {
		t.Errorf("serve health of a stopped node: exit %d, want %d", code, exitError)
	}
	if code, out, errs := serveCmd(t, "compact", "--data", data); code != 0 || !strings.Contains(out, "bytes before") {
		t.Errorf("serve compact: exit %d, stdout %q, stderr %q", code, out, errs)
	}

	restored := t.TempDir()
	key, err := os.ReadFile(filepath.Join(data, "node.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(restored, "node.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := serveCmd(t, "restore", "--data", restored, "--in", backup); code != 0 || !strings.Contains(out, "restored server-key.pem") {
		t.Fatalf("serve restore: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	n2 := startNode(t, "127.0.0.1:0", restored)
	if n2.created || n2.fingerprint != n.fingerprint {
		t.Errorf("restored node: created %v, fingerprint %s, want %s", n2.created, n2.fingerprint, n.fingerprint)
	}
	n2.stop(t)
}

// TestServeInviteTokens: a node that registers by invitation refuses
// register-user without a token and accepts one minted by
// `serve invite-token`, online (admin listener) and offline.
func TestServeInviteTokens(t *testing.T) {
	data := t.TempDir()
	n := startNode(t, "127.0.0.1:0", data, "--admin-listen", "127.0.0.1:0", "--registration", "invite")
	env := func(name string) []string {
		return append(clientEnv(t, n, t.TempDir()), "QPCHAT_PASSWORD=password of "+name)
	}
	if code, _, errs := client(t, env("bob"), "register-user", "bob", "--server-fingerprint", n.fingerprint); code == 0 || !strings.Contains(errs, "invitation") {
		t.Errorf("register-user without a token: exit %d, stderr %q", code, errs)
	}
	code, tok, errs := serveCmd(t, "invite-token", "--data", data)
	tok = strings.TrimSpace(tok)
	if code != 0 || !strings.HasPrefix(tok, "qpi-") {
		t.Fatalf("serve invite-token on a running node: exit %d, stdout %q, stderr %q", code, tok, errs)
	}
	if code, out, errs := client(t, env("alice"), "register-user", "alice", "--token", tok, "--server-fingerprint", n.fingerprint); code != 0 {
		t.Fatalf("register-user --token: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if code, _, errs := client(t, env("bob"), "register-user", "bob", "--token", tok, "--server-fingerprint", n.fingerprint); code == 0 || !strings.Contains(errs, "invitation") {
		t.Errorf("register-user with a used token: exit %d, stderr %q", code, errs)
	}
	n.stop(t)

	code, tok, errs = serveCmd(t, "invite-token", "--data", data, "--invite-ttl", "1h")
	tok = strings.TrimSpace(tok)
	if code != 0 || !strings.HasPrefix(tok, "qpi-") {
		t.Fatalf("serve invite-token on a stopped node: exit %d, stdout %q, stderr %q", code, tok, errs)
	}
	n = startNode(t, "127.0.0.1:0", data, "--registration", "invite")
	if code, out, errs := client(t, env("carol"), "register-user", "carol", "--token", tok, "--server-fingerprint", n.fingerprint); code != 0 {
		t.Fatalf("register-user with an offline token: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	n.stop(t)
}

// TestServeRotateIdentity: after `serve rotate-identity` a client that
// pinned the old key follows to the new one, saying so once.
func TestServeRotateIdentity(t *testing.T) {
	addr := freeUDPAddr(t)
	data := t.TempDir()
	n := startNode(t, addr, data)
	env := append(testEnv(t), "QPCHAT_SERVER="+addr, "QPCHAT_STATE_DIR="+t.TempDir())
	if code, _, errs := client(t, env, "ping"); code != 0 || !strings.Contains(errs, "on first use") {
		t.Fatalf("first ping: exit %d, stderr %q", code, errs)
	}
	if code, _, errs := serveCmd(t, "rotate-identity", "--data", data); code != exitError || !strings.Contains(errs, "running") {
		t.Errorf("rotate-identity of a running node: exit %d, stderr %q", code, errs)
	}
	n.stop(t)
	code, out, errs := serveCmd(t, "rotate-identity", "--data", data)
	if code != 0 || !strings.Contains(out, "new key") {
		t.Fatalf("rotate-identity: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	n2 := startNode(t, addr, data)
	if n2.fingerprint == n.fingerprint || !strings.Contains(out, n2.fingerprint) {
		t.Errorf("node after rotation has key %s; rotate-identity printed %q", n2.fingerprint, out)
	}
	code, _, errs = client(t, env, "ping")
	if code != 0 || !strings.Contains(errs, "moved to its next key "+n2.fingerprint) {
		t.Errorf("ping after rotation: exit %d, stderr %q", code, errs)
	}
	if code, _, errs := client(t, env, "ping"); code != 0 || errs != "" {
		t.Errorf("second ping after rotation: exit %d, stderr %q; want silence", code, errs)
	}
	n2.stop(t)
}

// TestServeRekey: serve rekey moves a stopped node's store to a new key
// file, refuses a running node, and the node starts with the new key
// only.
func TestServeRekey(t *testing.T) {
	data := t.TempDir()
	n := startNode(t, "127.0.0.1:0", data)
	newKey := filepath.Join(t.TempDir(), "new.key")
	if code, _, errs := serveCmd(t, "rekey", "--data", data, "--new-store-key-file", newKey); code != exitError || !strings.Contains(errs, "running") {
		t.Errorf("rekey of a running node: exit %d, stderr %q", code, errs)
	}
	n.stop(t)
	if code, out, errs := serveCmd(t, "rekey", "--data", data, "--new-store-key-file", newKey); code != 0 || !strings.Contains(out, newKey) {
		t.Fatalf("rekey: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	// The old key file no longer opens the store.
	if code, _, errs := serveCmd(t, "backup", "--data", data, "--out", filepath.Join(t.TempDir(), "b")); code == 0 || !strings.Contains(errs, "key") {
		t.Errorf("backup with the old key after rekey: exit %d, stderr %q", code, errs)
	}
	n2 := startNode(t, "127.0.0.1:0", data, "--store-key-file", newKey)
	if n2.fingerprint != n.fingerprint {
		t.Errorf("fingerprint changed across a rekey: %s, was %s", n2.fingerprint, n.fingerprint)
	}
	n2.stop(t)
}

// TestServeBackupNeedsAdminListener: backing up a running node without
// an admin listener fails with a pointer to --admin-listen.
func TestServeBackupNeedsAdminListener(t *testing.T) {
	data := t.TempDir()
	n := startNode(t, "127.0.0.1:0", data)
	code, _, errs := serveCmd(t, "backup", "--data", data, "--out", filepath.Join(t.TempDir(), "b"))
	if code != exitError || !strings.Contains(errs, "--admin-listen") {
		t.Errorf("backup of a running node without admin listener: exit %d, stderr %q", code, errs)
	}
	oneErrorLine(t, errs)
	n.stop(t)
}
