//go:build !js

package store

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// This file and kv.go's interfaces are the only place qpchat touches
// bbolt.

// Open opens or creates the encrypted database file at path, derives and
// checks its key, applies pending migrations of opts.Schema in one
// transaction and starts the group-commit writer.
//
// Errors: ErrInUse when another process holds the file, ErrWrongPassphrase
// or ErrWrongKeyFile for a key that does not match, ErrCorrupt for a
// damaged header, ErrNewerVersion for a file from a newer schema.
func Open(path string, opts Options) (*DB, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	bdb, err := openBolt(path, opts)
	if err != nil {
		return nil, err
	}
	replica := false
	bdb.View(func(tx *bolt.Tx) error { replica = tx.Bucket(replicaBucket) != nil; return nil })
	if replica {
		bdb.Close()
		return nil, fmt.Errorf("store: %s is the replica of a cluster node; open it with the node's cluster settings", path)
	}
	return openDB(boltDB{bdb}, opts)
}

// openBolt opens the bbolt file at path for Open and OpenCluster.
func openBolt(path string, opts Options) (*bolt.DB, error) {
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: opts.Timeout,
		// The freelist is rebuilt at open instead of written by every
		// commit: fewer pages per fsync, same crash safety.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
		// Growing the mapping waits for every reader; start with room
		// for a busy node's queues (address space only, not memory).
		InitialMmapSize: 64 << 20,
	})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("store: %s is in use by another qpchat process (waited %v): %w", path, opts.Timeout, ErrInUse)
	}
	if err != nil {
		return nil, fmt.Errorf("store: opening %s: %w", path, err)
	}
	return bdb, nil
}

// boltErr maps bbolt's errors to the engine-neutral ones.
func boltErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, bolterrors.ErrBucketNotFound):
		return errBucketNotFound
	case errors.Is(err, bolterrors.ErrTxNotWritable):
		return errTxNotWritable
	case errors.Is(err, bolterrors.ErrDatabaseNotOpen):
		return errDatabaseNotOpen
	case errors.Is(err, bolterrors.ErrIncompatibleValue):
		return errIncompatible
	}
	return err
}

type boltDB struct{ db *bolt.DB }

func (d boltDB) Begin(writable bool) (kvTx, error) {
	tx, err := d.db.Begin(writable)
	if err != nil {
		return nil, boltErr(err)
	}
	return boltTx{tx}, nil
}

func (d boltDB) View(fn func(kvTx) error) error {
	return boltErr(d.db.View(func(tx *bolt.Tx) error { return fn(boltTx{tx}) }))
}

func (d boltDB) Update(fn func(kvTx) error) error {
	return boltErr(d.db.Update(func(tx *bolt.Tx) error { return fn(boltTx{tx}) }))
}

func (d boltDB) Close() error { return d.db.Close() }

type boltTx struct{ tx *bolt.Tx }

func (t boltTx) Bucket(name []byte) kvBucket {
	if b := t.tx.Bucket(name); b != nil {
		return boltBucket{b}
	}
	return nil
}

func (t boltTx) CreateBucketIfNotExists(name []byte) (kvBucket, error) {
	b, err := t.tx.CreateBucketIfNotExists(name)
	if err != nil {
		return nil, boltErr(err)
	}
	return boltBucket{b}, nil
}

func (t boltTx) DeleteBucket(name []byte) error { return boltErr(t.tx.DeleteBucket(name)) }

func (t boltTx) Empty() bool {
	empty := true
	t.tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
	return empty
}

func (t boltTx) Cursor() kvCursor                   { return boltCursor{t.tx.Cursor()} }
func (t boltTx) Writable() bool                     { return t.tx.Writable() }
func (t boltTx) Commit() error                      { return boltErr(t.tx.Commit()) }
func (t boltTx) Rollback() error                    { return boltErr(t.tx.Rollback()) }
func (t boltTx) Size() int64                        { return t.tx.Size() }
func (t boltTx) WriteTo(w io.Writer) (int64, error) { return t.tx.WriteTo(w) }

type boltBucket struct{ b *bolt.Bucket }

func (b boltBucket) Bucket(name []byte) kvBucket {
	if nb := b.b.Bucket(name); nb != nil {
		return boltBucket{nb}
	}
	return nil
}

func (b boltBucket) CreateBucketIfNotExists(name []byte) (kvBucket, error) {
	nb, err := b.b.CreateBucketIfNotExists(name)
	if err != nil {
		return nil, boltErr(err)
	}
	return boltBucket{nb}, nil
}

func (b boltBucket) DeleteBucket(name []byte) error { return boltErr(b.b.DeleteBucket(name)) }
func (b boltBucket) Get(key []byte) []byte          { return b.b.Get(key) }
func (b boltBucket) Put(key, value []byte) error    { return boltErr(b.b.Put(key, value)) }
func (b boltBucket) Delete(key []byte) error        { return boltErr(b.b.Delete(key)) }
func (b boltBucket) Sequence() uint64               { return b.b.Sequence() }
func (b boltBucket) NextSequence() (uint64, error) {
	n, err := b.b.NextSequence()
	return n, boltErr(err)
}
func (b boltBucket) SetSequence(n uint64) error { return boltErr(b.b.SetSequence(n)) }
func (b boltBucket) Cursor() kvCursor           { return boltCursor{b.b.Cursor()} }
func (b boltBucket) AppendOnly()                { b.b.FillPercent = 1.0 }

type boltCursor struct{ c *bolt.Cursor }

func (c boltCursor) First() ([]byte, []byte)        { return c.c.First() }
func (c boltCursor) Last() ([]byte, []byte)         { return c.c.Last() }
func (c boltCursor) Next() ([]byte, []byte)         { return c.c.Next() }
func (c boltCursor) Prev() ([]byte, []byte)         { return c.c.Prev() }
func (c boltCursor) Seek(s []byte) ([]byte, []byte) { return c.c.Seek(s) }
func (c boltCursor) Delete() error                  { return boltErr(c.c.Delete()) }

// InUse reports whether another process (a running node) holds the
// database file at path. A missing file is not in use. It waits up to
// timeout for the lock.
func InUse(path string, timeout time.Duration) (bool, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: timeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("store: opening %s: %w", path, err)
	}
	return false, bdb.Close()
}

// CheckFile opens the bbolt file at path read-only and walks every page,
// without any key: it finds a truncated or damaged file, not a wrong key.
func CheckFile(path string) error {
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return fmt.Errorf("store: %s is in use by another qpchat process: %w", path, ErrInUse)
	}
	if err != nil {
		return fmt.Errorf("store: opening %s: %w: %w", path, err, ErrCorrupt)
	}
	defer bdb.Close()
	return bdb.View(func(btx *bolt.Tx) error {
		if btx.Bucket(headerBucket) == nil {
			return fmt.Errorf("store: %s has no qpchat header: %w", path, ErrCorrupt)
		}
		var errs []error
		for err := range btx.Check() { // drained: the checker stops only at the end
			if len(errs) < 10 {
				errs = append(errs, err)
			}
		}
		if len(errs) > 0 {
			return fmt.Errorf("store: %s fails its consistency check: %w: %w", path, errors.Join(errs...), ErrCorrupt)
		}
		return nil
	})
}

// replaceHeader opens the (unused) file at path and replaces its header
// with fn's result in one transaction (rekey.go).
func replaceHeader(path string, fn func(raw []byte) ([]byte, error)) error {
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return fmt.Errorf("store: %s is in use by another qpchat process: %w", path, ErrInUse)
	}
	if err != nil {
		return fmt.Errorf("store: opening %s: %w", path, err)
	}
	defer bdb.Close()
	return bdb.Update(func(btx *bolt.Tx) error {
		hb := btx.Bucket(headerBucket)
		if hb == nil {
			return fmt.Errorf("store: header missing: %w", ErrCorrupt)
		}
		nh, err := fn(hb.Get(headerKey))
		if err != nil {
			return err
		}
		return hb.Put(headerKey, nh)
	})
}

// Compact copies the database at src into a new file dst (which must not
// exist), leaving out free pages, and returns both sizes. Values are
// copied sealed, as they are; no key is needed. src must not be in use.
func Compact(dst, src string) (before, after int64, err error) {
	sdb, err := bolt.Open(src, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return 0, 0, fmt.Errorf("store: %s is in use by another qpchat process: %w", src, ErrInUse)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("store: opening %s: %w", src, err)
	}
	defer sdb.Close()
	if _, err := os.Stat(dst); err == nil {
		return 0, 0, fmt.Errorf("store: %s already exists", dst)
	}
	ddb, err := bolt.Open(dst, 0o600, &bolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return 0, 0, fmt.Errorf("store: creating %s: %w", dst, err)
	}
	if err := bolt.Compact(ddb, sdb, 64<<20); err != nil {
		ddb.Close()
		os.Remove(dst)
		return 0, 0, fmt.Errorf("store: compacting: %w", err)
	}
	if err := ddb.Close(); err != nil {
		os.Remove(dst)
		return 0, 0, fmt.Errorf("store: closing %s: %w", dst, err)
	}
	fi, err := os.Stat(src)
	if err != nil {
		return 0, 0, err
	}
	fo, err := os.Stat(dst)
	if err != nil {
		return 0, 0, err
	}
	return fi.Size(), fo.Size(), nil
}
