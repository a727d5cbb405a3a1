package store

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"
)

func TestChangeAccount(t *testing.T) {
	s, path := newServer(t, Limits{})
	addUser(t, s, "alice", "a1", "a2", "a3")
	addUser(t, s, "bob", "b1")
	if err := s.RevokeDevice(ctx, devKey("a3")); err != nil {
		t.Fatal(err)
	}
	tr := bytes.Repeat([]byte{7}, TransitionLen)
	a := Account{User: "alice", Record: []byte("new record"), KSF: KSFParams{3, 65536, 4}, UserKey: devKey("uk2"), Transitions: [][]byte{tr}}
	certs := map[string][]byte{string(devKey("a1")): []byte("new a1"), string(devKey("a2")): []byte("new a2")}
	// Refusals change nothing.
	if err := s.ChangeAccount(ctx, devKey("uk-other"), a, certs); !errors.Is(err, ErrStale) {
		t.Errorf("ChangeAccount with a wrong old key = %v, want ErrStale", err)
	}
	if err := s.ChangeAccount(ctx, devKey("uk-alice"), a, map[string][]byte{string(devKey("a1")): []byte("x")}); !errors.Is(err, ErrInvalid) {
		t.Errorf("ChangeAccount missing a device = %v, want ErrInvalid", err)
	}
	extra := map[string][]byte{string(devKey("b1")): []byte("x")}
	for k, v := range certs {
		extra[k] = v
	}
	if err := s.ChangeAccount(ctx, devKey("uk-alice"), a, extra); !errors.Is(err, ErrInvalid) {
		t.Errorf("ChangeAccount certifying bob's device = %v, want ErrInvalid", err)
	}
	if got, _ := s.Account(ctx, "alice"); !bytes.Equal(got.UserKey, devKey("uk-alice")) || len(got.Transitions) != 0 {
		t.Fatalf("a refused change changed the account: %+v", got)
	}
	if err := s.ChangeAccount(ctx, devKey("uk-alice"), a, certs); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2, err := openServerAt(t, path, Options{Passphrase: []byte("server pass")}, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	got, err := s2.Account(ctx, "alice")
	if err != nil || !bytes.Equal(got.UserKey, devKey("uk2")) || string(got.Record) != "new record" || len(got.Transitions) != 1 || !bytes.Equal(got.Transitions[0], tr) {
		t.Fatalf("after the change Account = %+v, %v", got, err)
	}
	for _, c := range []struct{ dev, cert string }{{"a1", "new a1"}, {"a2", "new a2"}, {"a3", "cert a3"}, {"b1", "cert b1"}} {
		if d, err := s2.Device(ctx, devKey(c.dev)); err != nil || string(d.Certificate) != c.cert {
			t.Errorf("device %s: certificate %q, %v; want %q", c.dev, d.Certificate, err, c.cert)
		}
	}
	// A record with the most transitions round-trips; one more is refused.
	many := make([][]byte, MaxTransitions)
	for i := range many {
		many[i] = tr
	}
	acct := Account{User: "x", UserKey: devKey("k"), Transitions: many}
	if back, err := parseAccount(acct.marshal()); err != nil || len(back.Transitions) != MaxTransitions {
		t.Errorf("parse of %d transitions: %d, %v", MaxTransitions, len(back.Transitions), err)
	}
	acct.Transitions = append(many, tr)
	if err := acct.check(); !errors.Is(err, ErrLimit) {
		t.Errorf("check of %d transitions = %v, want ErrLimit", len(acct.Transitions), err)
	}
}

func TestDeleteAccount(t *testing.T) {
	s, _ := newServer(t, Limits{})
	addUser(t, s, "alice", "a1", "a2")
	kp := KeyPackage{Ref: []byte("ref"), Data: []byte("kp")}
	if _, err := s.PutKeyPackages(ctx, devKey("a1"), 1, []KeyPackage{kp}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAccount(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Account(ctx, "alice"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Account after DeleteAccount = %v, want ErrNotFound", err)
	}
	if err := s.DeleteAccount(ctx, "alice"); !errors.Is(err, ErrNotFound) {
		t.Errorf("DeleteAccount twice = %v, want ErrNotFound", err)
	}
	if d, err := s.Device(ctx, devKey("a1")); err != nil || !d.Revoked {
		t.Errorf("device a1 after DeleteAccount: %+v, %v (want kept, revoked)", d, err)
	}
	if n, err := s.KeyPackageCount(ctx, devKey("a1"), 1); err != nil || n != 0 {
		t.Errorf("KeyPackageCount after DeleteAccount = %d, %v", n, err)
	}
	// The name starts from scratch: no old devices, a new first device,
	// and old device keys stay taken.
	addUser(t, s, "alice", "n1")
	if ds, err := s.Devices(ctx, "alice"); err != nil || len(ds) != 1 || !bytes.Equal(ds[0].Key, devKey("n1")) {
		t.Errorf("Devices of the new alice = %+v, %v", ds, err)
	}
	if first, err := s.FirstDevice(ctx, "alice"); err != nil || !bytes.Equal(first, devKey("n1")) {
		t.Errorf("FirstDevice of the new alice = %q, %v", first, err)
	}
	if err := s.AddDevice(ctx, Device{User: "alice", Key: devKey("a1")}); !errors.Is(err, ErrExists) {
		t.Errorf("re-adding a deleted account's device key = %v, want ErrExists", err)
	}
}

// TestTransitionV1Migration: a file of server schema version 3 holding
// statements of the first format (128 bytes) opens with them dropped,
// the rest of the account kept.
func TestTransitionV1Migration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node.db")
	v3 := Schema{Name: ServerSchema.Name, Migrations: ServerSchema.Migrations[:3]}
	db := openTest(t, path, Options{Passphrase: []byte("server pass"), KDF: fastKDF, Schema: v3})
	old := &LocalStore{db: db, limits: Limits{}.withDefaults()}
	must(t, "CreateAccount", old.CreateAccount(ctx, Account{User: "bob", Record: []byte("rb"), UserKey: devKey("uk-bob")}))
	// Version 3's ChangeAccount stored 128-byte statements.
	v1 := Account{User: "alice", Record: []byte("ra"), KSF: KSFParams{3, 65536, 4}, UserKey: devKey("uk-alice"),
		Transitions: [][]byte{bytes.Repeat([]byte{1}, transitionLenV1), bytes.Repeat([]byte{2}, transitionLenV1)}}
	must(t, "storing a version 3 account", db.Update(func(tx *Tx) error {
		return tx.Bucket(bucketAccounts).Put(tx.Ident(domainUser, []byte("alice")), v1.marshal())
	}))
	db.Close()

	s, err := OpenServer(path, Options{Passphrase: []byte("server pass")}, Limits{})
	must(t, "OpenServer", err)
	defer s.Close()
	got, err := s.Account(ctx, "alice")
	if err != nil || len(got.Transitions) != 0 || string(got.Record) != "ra" || !bytes.Equal(got.UserKey, devKey("uk-alice")) || got.KSF != v1.KSF {
		t.Errorf("alice after the migration: %+v, %v", got, err)
	}
	if got, err := s.Account(ctx, "bob"); err != nil || string(got.Record) != "rb" {
		t.Errorf("bob after the migration: %+v, %v", got, err)
	}
}
