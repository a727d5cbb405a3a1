package store

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
)

// TestMigrationRunner opens a server file with a synthetic later schema
// (ServerSchema plus a step that rewrites every account) and checks the
// step runs once, in order, and that the old binary then refuses the file.
func TestMigrationRunner(t *testing.T) {
	s, path := newServer(t, Limits{})
	addUser(t, s, "alice")
	addUser(t, s, "bob")
	s.Close()

	ran := 0
	later := Schema{Name: ServerSchema.Name, Migrations: append(ServerSchema.Migrations[:len(ServerSchema.Migrations):len(ServerSchema.Migrations)],
		Migration{Name: "upgrade KSF parameters", Apply: func(tx *Tx) error {
			ran++
			b := tx.Bucket(bucketAccounts)
			c := b.Cursor()
			for k, v, err := c.First(); k != nil; k, v, err = c.Next() {
				if err != nil {
					return err
				}
				a, err := parseAccount(v)
				if err != nil {
					return err
				}
				a.KSF.Time++
				if err := b.Put(k, a.marshal()); err != nil {
					return err
				}
			}
			return nil
		}})}
	opts := Options{Passphrase: []byte("server pass"), Schema: later}
	db, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := db.SchemaVersion(); err != nil || v != later.Version() {
		t.Errorf("SchemaVersion after migrating = %d, %v; want %d", v, err, later.Version())
	}
	db.Close()
	db, err = Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if ran != 1 {
		t.Errorf("migration ran %d times over two opens, want 1", ran)
	}
	s2 := &LocalStore{db: openTest(t, path, opts), limits: Limits{}.withDefaults()}
	for _, u := range []string{"alice", "bob"} {
		if a, err := s2.Account(ctx, u); err != nil || a.KSF.Time != 4 {
			t.Errorf("Account(%s) after migration = %+v, %v; want KSF time 4", u, a.KSF, err)
		}
	}
	s2.Close()

	// This binary (without the later step) must refuse the file.
	_, err = OpenServer(path, Options{Passphrase: []byte("server pass")}, Limits{})
	if want := fmt.Sprintf("version %d", later.Version()); !errors.Is(err, ErrNewerVersion) || !strings.Contains(err.Error(), want) {
		t.Errorf("OpenServer of a newer file = %v, want ErrNewerVersion naming %s", err, want)
	}
}

func TestMigrationFailureLeavesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	one := Schema{Name: "test", Migrations: []Migration{{Name: "a", Apply: func(tx *Tx) error {
		_, err := tx.CreateBucket([]byte("a"))
		return err
	}}}}
	db := openTest(t, path, Options{Passphrase: []byte("pw"), KDF: fastKDF, Schema: one})
	db.Close()
	two := Schema{Name: "test", Migrations: append(one.Migrations,
		Migration{Name: "b", Apply: func(tx *Tx) error {
			if _, err := tx.CreateBucket([]byte("b")); err != nil {
				return err
			}
			return errors.New("disk on fire")
		}})}
	if _, err := Open(path, Options{Passphrase: []byte("pw"), Schema: two}); err == nil || !strings.Contains(err.Error(), "migration 2 (b)") {
		t.Errorf("Open with a failing migration = %v, want an error naming migration 2", err)
	}
	db = openTest(t, path, Options{Passphrase: []byte("pw"), Schema: one})
	if v, _ := db.SchemaVersion(); v != 1 {
		t.Errorf("version after a failed migration = %d, want 1", v)
	}
	db.View(func(tx *Tx) error {
		if tx.Bucket([]byte("b")) != nil {
			t.Error("failed migration left its bucket behind")
		}
		return nil
	})
	db.Close()
	if _, err := Open(path, Options{Passphrase: []byte("pw"), Schema: Schema{Name: "other"}}); err == nil || !strings.Contains(err.Error(), `schema "test"`) {
		t.Errorf("Open with another schema name = %v, want an error naming schema \"test\"", err)
	}
}

// TestFetchRecordsMigration: a file of server schema version 1, whose
// fetch records carry no time, is migrated so that they do; the fetch
// still admits its commit, and PruneFetched can forget it.
func TestFetchRecordsMigration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node.db")
	v1 := Schema{Name: ServerSchema.Name, Migrations: ServerSchema.Migrations[:1]}
	opts := Options{Passphrase: []byte("server pass"), KDF: fastKDF, Schema: v1}
	db := openTest(t, path, opts)
	caller, ref, dev := devKey("a1"), []byte("ref-v1"), devKey("b1")
	err := db.Update(func(tx *Tx) error {
		old := build(func(b *cryptobyte.Builder) { addBytes8(b, dev); b.AddUint16(1) })
		return tx.Bucket(bucketFetched).Put(fetchedID(tx, caller, ref), old)
	})
	must(t, "writing a version 1 fetch record", err)
	db.Close()

	before := time.Now().Add(-time.Second)
	s, err := OpenServer(path, Options{Passphrase: []byte("server pass")}, Limits{})
	must(t, "OpenServer", err)
	defer s.Close()
	if v, err := s.db.SchemaVersion(); err != nil || v != ServerSchema.Version() {
		t.Fatalf("schema version %d, %v; want %d", v, err, ServerSchema.Version())
	}
	got, suite, err := s.FetchedKeyPackage(ctx, caller, ref)
	if err != nil || !bytes.Equal(got, dev) || suite != 1 {
		t.Fatalf("FetchedKeyPackage after the migration = %x, %d, %v", got, suite, err)
	}
	if n, err := s.PruneFetched(ctx, before); err != nil || n != 0 {
		t.Errorf("PruneFetched(before the migration) = %d, %v; want 0", n, err)
	}
	if n, err := s.PruneFetched(ctx, time.Now().Add(time.Minute)); err != nil || n != 1 {
		t.Errorf("PruneFetched(later) = %d, %v; want 1", n, err)
	}
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}
