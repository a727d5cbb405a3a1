package store

import (
	"errors"
	"io"
)

// The ordered key-value engine under DB. On a machine it is bbolt
// (kv_bolt.go); in a browser, where there is no file to map, it is an
// in-memory copy persisted as a whole image after each commit
// (kv_mem.go, OpenMemory). Everything above it (the header, the key
// derivation, sealing, migrations, group commit) is the same code, so a
// browser's state has the same record layout and encryption as a file.
//
// The interfaces mirror the part of bbolt's API that DB uses: a key of
// a bucket holds either a value or a nested bucket; cursors walk keys
// in byte order and return a nil value for a nested bucket.

type kvDB interface {
	Begin(writable bool) (kvTx, error)
	View(fn func(kvTx) error) error
	Update(fn func(kvTx) error) error
	Close() error
}

type kvTx interface {
	Bucket(name []byte) kvBucket // nil if missing
	CreateBucketIfNotExists(name []byte) (kvBucket, error)
	DeleteBucket(name []byte) error
	// Empty reports whether the transaction sees no top-level bucket.
	Empty() bool
	// Cursor walks the names of the top-level buckets.
	Cursor() kvCursor
	Writable() bool
	Commit() error
	Rollback() error
	// Size is the size of the database image in bytes.
	Size() int64
	// WriteTo writes a consistent image of the database.
	WriteTo(w io.Writer) (int64, error)
}

type kvBucket interface {
	Bucket(name []byte) kvBucket // nil if missing
	CreateBucketIfNotExists(name []byte) (kvBucket, error)
	DeleteBucket(name []byte) error
	Get(key []byte) []byte // nil if missing or a nested bucket
	Put(key, value []byte) error
	Delete(key []byte) error
	Sequence() uint64
	NextSequence() (uint64, error)
	// SetSequence sets the sequence (a replica replaying NextSequence).
	SetSequence(n uint64) error
	Cursor() kvCursor
	// AppendOnly hints that keys are only added in increasing order.
	AppendOnly()
}

type kvCursor interface {
	First() (k, v []byte)
	Last() (k, v []byte)
	Next() (k, v []byte)
	Prev() (k, v []byte)
	Seek(seek []byte) (k, v []byte)
	Delete() error
}

// retryBeginner is a kvDB whose write transaction that failed with
// errConflict can be run again sooner than a fresh one starts
// (kv_repl.go): DB's writer uses it for the retry of a batch.
type retryBeginner interface {
	beginRetry() (kvTx, error)
}

// Errors of the engines, mapped from bbolt's by kv_bolt.go.
var (
	errBucketNotFound  = errors.New("store: bucket not found")
	errTxNotWritable   = errors.New("store: transaction not writable")
	errDatabaseNotOpen = errors.New("store: database not open")
	errIncompatible    = errors.New("store: incompatible value (a bucket where a value is, or the reverse)")

	// errConflict: a cluster replica's write transaction lost the race
	// to the log (another node appended first); run it again on the new
	// state (kv_repl.go).
	errConflict = errors.New("store: another cluster node wrote first")
	// errTooLarge: a transaction's changes do not fit one cluster log
	// entry.
	errTooLarge = errors.New("store: the transaction is too large for one cluster log entry")
)
