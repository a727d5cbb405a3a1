package store

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"
)

// TestApprovals: the first device is recorded once, approvals are kept
// per pair (the same pair replaces its record and does not count
// again), bounded, and survive reopening the file.
func TestApprovals(t *testing.T) {
	s, path := newServer(t, Limits{})
	addUser(t, s, "alice", "a1", "a2", "a3")
	addUser(t, s, "bob")
	if first, err := s.FirstDevice(ctx, "alice"); err != nil || !bytes.Equal(first, devKey("a1")) {
		t.Errorf("FirstDevice(alice) = %q, %v; want a1", first, err)
	}
	if _, err := s.FirstDevice(ctx, "bob"); !errors.Is(err, ErrNotFound) {
		t.Errorf("FirstDevice of a user without devices: %v, want ErrNotFound", err)
	}
	must(t, "PutApproval", s.PutApproval(ctx, "alice", devKey("a2"), devKey("a1"), []byte("r1"), 2))
	must(t, "PutApproval of the same pair", s.PutApproval(ctx, "alice", devKey("a2"), devKey("a1"), []byte("r1'"), 2))
	must(t, "PutApproval", s.PutApproval(ctx, "alice", devKey("a3"), devKey("a2"), []byte("r2"), 2))
	if err := s.PutApproval(ctx, "alice", devKey("a3"), devKey("a1"), []byte("r3"), 2); !errors.Is(err, ErrLimit) {
		t.Errorf("a third approval with max 2: %v, want ErrLimit", err)
	}
	if err := s.PutApproval(ctx, "carol", devKey("a3"), devKey("a1"), []byte("r3"), 2); !errors.Is(err, ErrNotFound) {
		t.Errorf("an approval of an unknown user: %v, want ErrNotFound", err)
	}
	must(t, "RevokeDevice", s.RevokeDevice(ctx, devKey("a1")))
	s.Close()
	s2, err := openServerAt(t, path, Options{Passphrase: []byte("server pass")}, Limits{})
	must(t, "OpenServer", err)
	defer s2.Close()
	got, damaged, err := s2.Approvals(ctx, "alice")
	if err != nil || damaged != 0 || len(got) != 2 {
		t.Fatalf("Approvals after reopening = %q, %d, %v; want 2", got, damaged, err)
	}
	if !(bytes.Equal(got[0], []byte("r1'")) && bytes.Equal(got[1], []byte("r2")) || bytes.Equal(got[1], []byte("r1'")) && bytes.Equal(got[0], []byte("r2"))) {
		t.Errorf("Approvals = %q, want r1' and r2", got)
	}
	if first, err := s2.FirstDevice(ctx, "alice"); err != nil || !bytes.Equal(first, devKey("a1")) {
		t.Errorf("FirstDevice after revoking it = %q, %v; want a1 still", first, err)
	}
	if got, _, err := s2.Approvals(ctx, "bob"); err != nil || len(got) != 0 {
		t.Errorf("Approvals(bob) = %q, %v", got, err)
	}
}

// TestFirstDeviceMigration: a file of server schema version 2 gets, for
// each account with exactly one device, that device as its first; an
// account with several gets none (which came first is not recorded).
func TestFirstDeviceMigration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node.db")
	v2 := Schema{Name: ServerSchema.Name, Migrations: ServerSchema.Migrations[:2]}
	db := openTest(t, path, Options{Passphrase: []byte("server pass"), KDF: fastKDF, Schema: v2})
	old := &LocalStore{db: db, limits: Limits{}.withDefaults()}
	for _, u := range []string{"alice", "bob", "carol"} {
		must(t, "CreateAccount", old.CreateAccount(ctx, Account{User: u, Record: []byte("r"), UserKey: devKey("uk-" + u)}))
	}
	// Version 2's AddDevice: the device record and the user's list.
	add := func(user, dev string) {
		err := db.Update(func(tx *Tx) error {
			k := tx.Ident(domainDevice, devKey(dev))
			if err := tx.Bucket(bucketDevices).Put(k, (&Device{User: user, Key: devKey(dev)}).marshal()); err != nil {
				return err
			}
			list, err := tx.CreateBucket(bucketUserDevices, tx.Ident(domainUser, []byte(user)))
			if err != nil {
				return err
			}
			return list.Put(k, devKey(dev))
		})
		must(t, "adding a version 2 device", err)
	}
	add("alice", "a1")
	add("bob", "b1")
	add("bob", "b2")
	db.Close()

	s, err := OpenServer(path, Options{Passphrase: []byte("server pass")}, Limits{})
	must(t, "OpenServer", err)
	defer s.Close()
	if first, err := s.FirstDevice(ctx, "alice"); err != nil || !bytes.Equal(first, devKey("a1")) {
		t.Errorf("FirstDevice(alice) = %q, %v; want a1", first, err)
	}
	if first, err := s.FirstDevice(ctx, "bob"); !errors.Is(err, ErrNotFound) {
		t.Errorf("FirstDevice(bob, two devices) = %q, %v; want ErrNotFound", first, err)
	}
	// carol had none: her first device from now on is recorded.
	must(t, "AddDevice", s.AddDevice(ctx, Device{User: "carol", Key: devKey("c1")}))
	must(t, "AddDevice", s.AddDevice(ctx, Device{User: "carol", Key: devKey("c2")}))
	if first, err := s.FirstDevice(ctx, "carol"); err != nil || !bytes.Equal(first, devKey("c1")) {
		t.Errorf("FirstDevice(carol) = %q, %v; want c1", first, err)
	}
	// bob's next device does not become his first.
	must(t, "AddDevice", s.AddDevice(ctx, Device{User: "bob", Key: devKey("b3")}))
	if _, err := s.FirstDevice(ctx, "bob"); !errors.Is(err, ErrNotFound) {
		t.Errorf("FirstDevice(bob) after a third device: %v, want ErrNotFound", err)
	}
	must(t, "PutApproval after the migration", s.PutApproval(ctx, "alice", devKey("a2"), devKey("a1"), []byte("r"), 10))
}
