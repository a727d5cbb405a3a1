package main

// End-to-end test of files: a 50 MiB file through the real binary, saved
// by recv, again by download after a node restart, and refused past the
// sender's quota.

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestClientFiles(t *testing.T) {
	dir := t.TempDir()
	data, state := filepath.Join(dir, "data"), filepath.Join(dir, "state")
	n := startNode(t, "127.0.0.1:0", data, "--file-quota", "83886080") // 80 MiB
	alice, bob := newCLIUser(t, n, state, "alice"), newCLIUser(t, n, state, "bob")
	alice.run("create-group", "files")
	alice.run("invite", "files", "bob")
	bob.run("join")

	big := make([]byte, 50<<20)
	rand.Read(big)
	src := filepath.Join(dir, "holiday video.mp4")
	if err := os.WriteFile(src, big, 0o600); err != nil {
		t.Fatal(err)
	}
	res := alice.jsonLines("send-file", "files", src)
	if len(res) != 1 || res[0]["sent"] != true || res[0]["size"] != float64(50<<20) {
		t.Fatalf("send-file printed %v", res)
	}

	downloads := filepath.Join(dir, "bob-downloads")
	var saved string
	for _, l := range bob.jsonLines("recv", "--download-dir", downloads) {
		switch l["event"] {
		case "file":
			if l["file"] != "holiday video.mp4" || l["sender"] != "alice" {
				t.Errorf("file event %v", l)
			}
		case "saved":
			saved, _ = l["path"].(string)
		}
	}
	if saved != filepath.Join(downloads, "holiday video.mp4") {
		t.Fatalf("recv saved the file to %q", saved)
	}
	if got, err := os.ReadFile(saved); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("the saved file differs (%d bytes, %v)", len(got), err)
	}
	if fi, _ := os.Stat(downloads); fi.Mode().Perm() != 0o700 {
		t.Errorf("download directory mode %v, want 0700", fi.Mode().Perm())
	}

	// The node keeps it across a restart; download saves it again under
	// a new name.
	n.stop(t)
	n = startNode(t, n.addr, data, "--file-quota", "83886080")
	out := bob.run("download", "files", "--download-dir", downloads)
	again := filepath.Join(downloads, "holiday video (1).mp4")
	if !strings.Contains(out, again) {
		t.Errorf("download printed %q, want the path %s", out, again)
	}
	if got, err := os.ReadFile(again); err != nil || !bytes.Equal(got, big) {
		t.Errorf("the file downloaded after the restart differs (%d bytes, %v)", len(got), err)
	}

	// A second 50 MiB file is past alice's 80 MiB quota: refused with the
	// numbers, exit code 5.
	code, stdout, stderr := alice.try("send-file", "files", src)
	if code != 5 || !strings.Contains(stderr, "quota") || !strings.Contains(stderr, "83886080") {
		t.Errorf("send-file past the quota: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	// Nothing reached bob for it.
	for _, l := range bob.jsonLines("recv", "--download-dir", downloads) {
		if l["event"] == "file" || l["event"] == "saved" {
			t.Errorf("bob got %v for a refused file", l)
		}
	}
}
