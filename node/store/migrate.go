package store

import (
	"encoding/binary"
	"fmt"
	"time"

	"golang.org/x/crypto/cryptobyte"
)

// Schema describes what a database file holds: a name, so that a client's
// state file is never opened as a server's, and the ordered migrations that
// build it. The schema version of a file is the number of migrations applied
// to it, kept in the meta bucket.
type Schema struct {
	Name       string
	Migrations []Migration
}

// Migration is one step of a schema. Apply runs inside the transaction that
// opens the file, together with every other pending step: a failure leaves
// the file as it was. Migrations are never edited or reordered once
// released; a change is a new migration at the end.
type Migration struct {
	Name  string
	Apply func(tx *Tx) error
}

// Version is the schema version this binary writes.
func (s Schema) Version() uint64 { return uint64(len(s.Migrations)) }

var (
	metaSchemaKey  = []byte("schema")
	metaVersionKey = []byte("version")
)

// migrate checks the file's schema name and version and applies the pending
// migrations in order, in the caller's transaction. A file newer than the
// binary is refused with ErrNewerVersion, before anything is changed.
func migrate(tx *Tx, s Schema, fresh bool) error {
	meta, err := tx.metaBucket(fresh)
	if err != nil {
		return err
	}
	if fresh {
		if err := meta.Put(metaSchemaKey, []byte(s.Name)); err != nil {
			return err
		}
		if err := meta.Put(metaVersionKey, SeqKey(0)); err != nil {
			return err
		}
	}
	name, err := meta.Get(metaSchemaKey)
	if err != nil {
		return fmt.Errorf("store: reading schema name: %w", err)
	}
	if string(name) != s.Name {
		return fmt.Errorf("store: the database holds schema %q, not %q", name, s.Name)
	}
	raw, err := meta.Get(metaVersionKey)
	if err != nil {
		return fmt.Errorf("store: reading schema version: %w", err)
	}
	if len(raw) != 8 {
		return fmt.Errorf("store: schema version record: %w", ErrCorrupt)
	}
	have, want := binary.BigEndian.Uint64(raw), s.Version()
	if have > want {
		return fmt.Errorf("store: the database has schema version %d but this qpchat knows only up to %d; use a newer qpchat: %w",
			have, want, ErrNewerVersion)
	}
	if have == want {
		return nil
	}
	for i := have; i < want; i++ {
		m := s.Migrations[i]
		if err := m.Apply(tx); err != nil {
			return fmt.Errorf("store: migration %d (%s): %w", i+1, m.Name, err)
		}
	}
	return meta.Put(metaVersionKey, SeqKey(want))
}

// SchemaVersion returns the schema version recorded in the file.
func (db *DB) SchemaVersion() (uint64, error) {
	var v uint64
	err := db.View(func(tx *Tx) error {
		meta, err := tx.metaBucket(false)
		if err != nil {
			return err
		}
		raw, err := meta.Get(metaVersionKey)
		if err != nil {
			return err
		}
		if len(raw) != 8 {
			return ErrCorrupt
		}
		v = binary.BigEndian.Uint64(raw)
		return nil
	})
	return v, err
}

// stampFetchRecords is server migration 2: fetch records of version 1
// (device, suite) gain the time of the fetch, set to the migration's
// time, so that PruneFetched can forget them once unused.
func stampFetchRecords(tx *Tx) error {
	b := tx.Bucket(bucketFetched)
	type rec struct{ k, v []byte }
	var recs []rec
	c := b.Cursor()
	for k, v, err := c.First(); k != nil; k, v, err = c.Next() {
		if err != nil {
			return err
		}
		s := cryptobyte.String(v)
		var f fetchRecord
		ok := readFormat(&s) && readBytes8(&s, &f.Device, 1) && s.ReadUint16(&f.Suite)
		if err := finish(s, ok, "fetch (version 1)"); err != nil {
			return err
		}
		f.At = time.Now().Unix()
		recs = append(recs, rec{k, f.marshal()})
	}
	for _, r := range recs {
		if err := b.Put(r.k, r.v); err != nil {
			return err
		}
	}
	return nil
}
