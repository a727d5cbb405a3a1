package main

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestBenchAgainstCluster runs `qpchat bench` with the --server list of a
// three-process cluster: it spreads its clients over the nodes and every
// message sent on one node is delivered through another.
func TestBenchAgainstCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three nodes")
	}
	c := newTestCluster(t, 3, nil, nil)
	c.start()
	var addrs []string
	for _, p := range c.procs {
		addrs = append(addrs, p.addr)
	}
	cmd := exec.Command(qpchatBinary(t), "bench", "--server", strings.Join(addrs, ","), "--server-fingerprint", c.procs[0].fingerprint,
		"-c", "3", "-b", "5", "-d", "500ms", "--wake-probes", "5", "--devices-per-user", "8", "--conns", "1")
	cmd.Env = testEnv(t)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("qpchat bench: %v\n%s", err, out)
	}
	t.Logf("%s", out)
	if !strings.Contains(string(out), "against 3 nodes "+strings.Join(addrs, ",")) {
		t.Errorf("bench does not say it ran against the 3 nodes:\n%s", out)
	}
	m := regexp.MustCompile(`sent (\d+), delivered (\d+) messages`).FindStringSubmatch(string(out))
	if m == nil || m[1] != m[2] || m[1] == "0" {
		t.Errorf("bench did not deliver every message it sent:\n%s", out)
	}
	if !strings.Contains(string(out), "fetchWait wake-up (parked): p50 ") {
		t.Errorf("no wake-up measured:\n%s", out)
	}
}
