package server

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"qpchat/internal/testport"
	"qpchat/rpc"
)

// freeUDPAddr returns a loopback UDP address free at the moment, so a
// node can be restarted on the same address (pins are per address); it
// lies outside the ephemeral range (internal/testport).
func freeUDPAddr(t *testing.T) string {
	t.Helper()
	return testport.UDP(t)
}

func copyFiles(t *testing.T, from, to string, names ...string) {
	t.Helper()
	must(t, "mkdir", os.MkdirAll(to, 0o700))
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(from, n))
		must(t, "read "+n, err)
		must(t, "write "+n, os.WriteFile(filepath.Join(to, n), b, 0o600))
	}
}

// pinDial dials addr trusting as pins say, and returns the fingerprint
// and the successions it was told of.
func pinDial(t *testing.T, addr string, pins *rpc.FilePinStore) (string, []string, error) {
	t.Helper()
	var told []string
	cl, err := rpc.Dial(context.Background(), addr, rpc.DialOptions{
		Pins:         pins,
		OnSuccession: func(_, old, new string) { told = append(told, old+" -> "+new) },
	})
	if err != nil {
		return "", told, err
	}
	cl.Close()
	return cl.Fingerprint, told, nil
}

// TestKeySuccession: clients follow the node's committed key rotations,
// across several at once, are told once, never go back to a retired
// key, and refuse a key the commitment does not name.
func TestKeySuccession(t *testing.T) {
	addr := freeUDPAddr(t)
	data := filepath.Join(t.TempDir(), "data")
	start := func(dir string) *node {
		return startNode(t, func(c *Config) { c.Listen, c.DataDir = addr, dir })
	}
	n := start(data)
	fp0 := n.srv.Fingerprint()
	a := rpc.NewFilePinStore(t.TempDir()) // follows every rotation
	b := rpc.NewFilePinStore(t.TempDir()) // offline for two rotations
	for _, p := range []*rpc.FilePinStore{a, b} {
		got, told, err := pinDial(t, addr, p)
		if err != nil || got != fp0 || len(told) != 0 {
			t.Fatalf("first contact: %s, %v, %v", got, told, err)
		}
	}
	next, err := a.Successor(addr)
	if err != nil || next == "" {
		t.Fatalf("no successor pinned on first contact: %q, %v", next, err)
	}
	n.stop()
	oldIdentity := filepath.Join(t.TempDir(), "old")
	copyFiles(t, data, oldIdentity, certFileName, keyFileName, "node.key", "node.db")

	r, err := RotateIdentity(Config{DataDir: data})
	must(t, "rotate-identity", err)
	if r.Old != fp0 || r.New != next {
		t.Fatalf("rotation %+v, want from %s to the committed %s", r, fp0, next)
	}
	n = start(data)
	if n.srv.Fingerprint() != r.New {
		t.Fatalf("node after rotation has key %s, want %s", n.srv.Fingerprint(), r.New)
	}
	got, told, err := pinDial(t, addr, a)
	if err != nil || got != r.New || len(told) != 1 || told[0] != fp0+" -> "+r.New {
		t.Fatalf("after rotation: key %s, told %v, err %v", got, told, err)
	}
	if _, told, err = pinDial(t, addr, a); err != nil || len(told) != 0 {
		t.Errorf("second dial after rotation: told %v, err %v; want silence", told, err)
	}
	if p, _, _ := a.Pin(addr); p != r.New {
		t.Errorf("pin after rotation %s, want %s", p, r.New)
	}
	n.stop()

	// Two more rotations; b, still at fp0, follows the whole chain.
	r2, err := RotateIdentity(Config{DataDir: data})
	must(t, "second rotation", err)
	r3, err := RotateIdentity(Config{DataDir: data})
	must(t, "third rotation", err)
	n = start(data)
	got, told, err = pinDial(t, addr, b)
	if err != nil || got != r3.New || len(told) != 1 {
		t.Errorf("client offline for three rotations: key %s, told %v, err %v; want %s", got, told, err, r3.New)
	}
	if got, _, err := pinDial(t, addr, a); err != nil || got != r3.New {
		t.Errorf("client one rotation behind: %s, %v", got, err)
	}
	_ = r2
	n.stop()

	// The retired key is refused by clients that moved on.
	n = start(oldIdentity)
	var pm *rpc.PinMismatchError
	if _, _, err := pinDial(t, addr, a); !errors.As(err, &pm) {
		t.Errorf("retired key: %v, want a pin mismatch", err)
	}
	n.stop()

	// A key the commitment does not name is refused.
	n = start(filepath.Join(t.TempDir(), "impostor"))
	if _, _, err := pinDial(t, addr, a); !errors.As(err, &pm) {
		t.Errorf("uncommitted key: %v, want a pin mismatch", err)
	}
	n.stop()
}

func TestRotateIdentityRefusesWrongNextKey(t *testing.T) {
	n := startNode(t, nil)
	<-n.srv.Ready()
	n.stop()
	other := startNode(t, nil)
	<-other.srv.Ready()
	other.stop()
	// Put another node's next key in place.
	copyFiles(t, other.cfg.DataDir, n.cfg.DataDir, nextKeyFileName)
	if _, err := RotateIdentity(Config{DataDir: n.cfg.DataDir}); err == nil {
		t.Fatal("rotation with a next key that is not the committed one succeeded")
	}
	// Missing next key.
	must(t, "remove", os.Remove(filepath.Join(n.cfg.DataDir, nextKeyFileName)))
	if _, err := RotateIdentity(Config{DataDir: n.cfg.DataDir}); err == nil {
		t.Fatal("rotation without the next key succeeded")
	}
}

// TestInterruptedRotationFinishes: a rotation journal left by a crash
// after staging is completed by the next start.
func TestInterruptedRotationFinishes(t *testing.T) {
	n := startNode(t, nil)
	<-n.srv.Ready()
	fp0 := n.srv.Fingerprint()
	n.stop()
	dir := n.cfg.DataDir
	// Rotate into a copy, then replay its staged state onto dir by hand:
	// stage the new files and the journal, but rename nothing.
	copyDir := filepath.Join(t.TempDir(), "copy")
	copyFiles(t, dir, copyDir, certFileName, keyFileName, nextKeyFileName)
	r, err := RotateIdentity(Config{DataDir: copyDir})
	must(t, "rotate the copy", err)
	for _, name := range []string{certFileName, keyFileName, nextKeyFileName, retiredFileName} {
		b, err := os.ReadFile(filepath.Join(copyDir, name))
		must(t, "read", err)
		must(t, "stage", os.WriteFile(filepath.Join(dir, name+".new"), b, 0o600))
	}
	// Without a journal the staged files are ignored.
	n2 := startNode(t, func(c *Config) { c.DataDir = dir })
	if n2.srv.Fingerprint() != fp0 {
		t.Fatalf("staged files without a journal changed the key to %s", n2.srv.Fingerprint())
	}
	n2.stop()
	journal := `["` + filepath.Join(dir, certFileName) + `","` + filepath.Join(dir, keyFileName) + `","` +
		filepath.Join(dir, nextKeyFileName) + `","` + filepath.Join(dir, retiredFileName) + `"]`
	must(t, "journal", os.WriteFile(filepath.Join(dir, journalFileName), []byte(journal), 0o600))
	n3 := startNode(t, func(c *Config) { c.DataDir = dir })
	if n3.srv.Fingerprint() != r.New {
		t.Errorf("after the journal: key %s, want the rotated %s", n3.srv.Fingerprint(), r.New)
	}
	if _, err := os.Stat(filepath.Join(dir, journalFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("journal left behind: %v", err)
	}
}
