package main

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSystemdUnitVerifies runs `systemd-analyze verify` on
// contrib/systemd/qpchat.service (with ExecStart pointing at the test
// binary) where systemd is installed, and checks the hardening the unit
// promises is there.
func TestSystemdUnitVerifies(t *testing.T) {
	unit, err := os.ReadFile("contrib/systemd/qpchat.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"DynamicUser=yes", "StateDirectory=qpchat", "ProtectSystem=strict", "NoNewPrivileges=yes", "Restart=on-failure", "Type=notify"} {
		if !bytes.Contains(unit, []byte("\n"+want+"\n")) {
			t.Errorf("the unit lacks %s", want)
		}
	}
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed; the unit's text was checked only")
	}
	dir := t.TempDir()
	patched := bytes.ReplaceAll(unit, []byte("/usr/local/bin/qpchat"), []byte(qpchatBinary(t)))
	path := filepath.Join(dir, "qpchat.service")
	if err := os.WriteFile(path, patched, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", path).CombinedOutput()
	// verify also reports on units the host lacks; only lines about ours count.
	var ours []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "qpchat.service") {
			ours = append(ours, l)
		}
	}
	if len(ours) > 0 || (err != nil && len(out) == 0) {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestServeNotifiesSystemd: under Type=notify the node sends READY=1 once
// it accepts connections and STOPPING=1 when it drains.
func TestServeNotifiesSystemd(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	pc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	n := startNode(t, "127.0.0.1:0", t.TempDir())
	read := func() string {
		pc.SetReadDeadline(time.Now().Add(30 * time.Second)) // a bound on a hang, not a timing assertion
		b := make([]byte, 256)
		k, err := pc.Read(b)
		if err != nil {
			t.Fatal(err)
		}
		return string(b[:k])
	}
	if got := read(); got != "READY=1" {
		t.Errorf("first notification %q, want READY=1", got)
	}
	n.stop(t)
	if got := read(); got != "STOPPING=1" {
		t.Errorf("notification at shutdown %q, want STOPPING=1", got)
	}
}

// TestDaemonUnitVerifies runs `systemd-analyze verify` on an instance of
// contrib/systemd/qpchat-daemon@.service (ExecStart pointing at the test
// binary) where systemd is installed; the unit must run the daemon of
// its instance's profile and read the passphrase from a file.
func TestDaemonUnitVerifies(t *testing.T) {
	unit, err := os.ReadFile("contrib/systemd/qpchat-daemon@.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ExecStart=/usr/local/bin/qpchat client --profile %i daemon", "Environment=QPCHAT_PASSPHRASE_FILE=", "Restart=on-failure"} {
		if !bytes.Contains(unit, []byte("\n"+want)) {
			t.Errorf("the unit lacks %s", want)
		}
	}
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed; the unit's text was checked only")
	}
	path := filepath.Join(t.TempDir(), "qpchat-daemon@bot.service")
	if err := os.WriteFile(path, bytes.ReplaceAll(unit, []byte("/usr/local/bin/qpchat"), []byte(qpchatBinary(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", path).CombinedOutput()
	var ours []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "qpchat-daemon@") {
			ours = append(ours, l)
		}
	}
	if len(ours) > 0 || (err != nil && len(out) == 0) {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
