package store

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// DB's engine is kvDB (kv.go): bbolt on a machine (kv_bolt.go, the only
// file that imports it), memory persisted as an image in a browser
// (kv_mem.go).

// Options configure Open. Exactly one of Passphrase and KeyFile must be set.
type Options struct {
	// Passphrase derives the data key through Argon2id. It must come from a
	// prompt, a file descriptor or an environment variable, never from a
	// command-line flag (flags are visible to every local user).
	Passphrase []byte
	// KeyFile is the path of a file holding the 32-byte data key. Open
	// creates it with mode 0600 and random bytes when it does not exist and
	// refuses one that group or others can read.
	KeyFile string
	// KDF sets the Argon2id parameters of a new passphrase-protected file.
	// Zero fields take DefaultKDF's values. Existing files keep the
	// parameters in their header.
	KDF KDFParams
	// Timeout bounds the wait for the file lock held by another process.
	// Zero means one second; the wait never lasts forever.
	Timeout time.Duration
	// Schema names the file's contents and lists its migrations. The zero
	// value is an empty schema named "".
	Schema Schema
	// MaxBatch caps the write functions committed together. Zero means 1024.
	MaxBatch int
	// Rand supplies nonces, salts and new key files. Nil means crypto/rand.
	Rand io.Reader
}

// Reserved top-level bucket names.
var (
	headerBucket = []byte("qpchat-header") // plaintext: the header only
	headerKey    = []byte("header")
	metaBucket   = []byte("meta") // sealed: schema name and version
	// replicaBucket holds a cluster replica's own bookkeeping (the log it
	// follows, the entries applied), kv_repl.go; plaintext, never
	// replicated.
	replicaBucket = []byte("qpchat-replica")
	// Keys of replicaBucket.
	replicaLogKey     = []byte("log")     // the Log's ID
	replicaAppliedKey = []byte("applied") // SeqKey of the last entry applied
)

// DB is an encrypted bbolt file. It is safe for concurrent use. Reads run
// in parallel through View; writes go through Update, which commits
// concurrent callers together (group commit) and returns once the data is
// on disk.
type DB struct {
	kv       kvDB
	seal     *sealer
	maxBatch int

	mu     sync.RWMutex // guards closed; Update holds it shared while queueing
	closed bool
	writes chan *writeReq
	done   chan struct{} // closed when the writer goroutine exits

	commits atomic.Uint64 // transactions committed by the writer (for tests)

	// onCommit, if set, is told how long each commit (its fsync
	// included) took and how many write functions it carried.
	onCommit atomic.Pointer[func(d time.Duration, fns int)]
}

// fill checks opts and fills in the defaults.
func (opts *Options) fill() error {
	if (opts.Passphrase == nil) == (opts.KeyFile == "") {
		return errors.New("store: exactly one of a passphrase and a key file is required")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = time.Second
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 1024
	}
	if opts.Rand == nil {
		opts.Rand = rand.Reader
	}
	return nil
}

// openDB finishes Open on an engine: header, keys, migrations, writer.
// It closes the engine on failure.
func openDB(kv kvDB, opts Options) (*DB, error) {
	db := &DB{kv: kv, maxBatch: opts.MaxBatch}
	if err := db.init(&opts); err != nil {
		kv.Close()
		return nil, err
	}
	db.writes = make(chan *writeReq, opts.MaxBatch)
	db.done = make(chan struct{})
	go db.writer()
	return db, nil
}

// init reads or creates the header, derives the keys and runs migrations,
// all in one write transaction.
func (db *DB) init(opts *Options) error {
	return db.kv.Update(func(btx kvTx) error {
		var h *header
		hb := btx.Bucket(headerBucket)
		fresh := hb == nil
		if fresh {
			if !btx.Empty() {
				return fmt.Errorf("store: header missing: %w", ErrCorrupt)
			}
			h = &header{source: keyFromFile}
			if opts.Passphrase != nil {
				h.source = keyFromPassphrase
				h.kdf = opts.KDF.withDefaults()
				if !h.kdf.valid() {
					return fmt.Errorf("store: invalid Argon2id parameters %+v", h.kdf)
				}
				h.salt = make([]byte, saltSize)
				if _, err := io.ReadFull(opts.Rand, h.salt); err != nil {
					return fmt.Errorf("store: reading salt: %v", err)
				}
			}
		} else {
			var err error
			if h, err = parseHeader(hb.Get(headerKey)); err != nil {
				return err
			}
		}
		var dataKey []byte
		switch {
		case h.source == keyFromPassphrase && opts.Passphrase != nil:
			dataKey = passphraseKey(opts.Passphrase, h.salt, h.kdf)
		case h.source == keyFromFile && opts.KeyFile != "":
			var err error
			if dataKey, err = loadKeyFile(opts.KeyFile, opts.Rand); err != nil {
				return err
			}
		case h.source == keyFromPassphrase:
			return errors.New("store: the database is protected by a passphrase, not a key file")
		default:
			return errors.New("store: the database is protected by a key file, not a passphrase")
		}
		if h.wrapped != nil { // after a rekey (rekey.go)
			var err error
			if dataKey, err = unwrapKey(h, dataKey); err != nil {
				return err
			}
		}
		k, err := deriveKeys(dataKey)
		clear(dataKey)
		if err != nil {
			return err
		}
		defer k.zero()
		if fresh {
			h.check = bytes.Clone(k.check)
			hb, err := btx.CreateBucketIfNotExists(headerBucket)
			if err != nil {
				return fmt.Errorf("store: %w", err)
			}
			if err := hb.Put(headerKey, h.marshal()); err != nil {
				return fmt.Errorf("store: %w", err)
			}
		} else if !h.checkKeys(k) {
			if h.source == keyFromPassphrase {
				return ErrWrongPassphrase
			}
			return ErrWrongKeyFile
		}
		if db.seal, err = newSealer(k.enc, bytes.Clone(k.index), opts.Rand); err != nil {
			return err
		}
		return migrate(&Tx{btx: btx, seal: db.seal}, opts.Schema, fresh)
	})
}

// Close waits for queued writes to commit and closes the file. Further
// calls return ErrClosed.
func (db *DB) Close() error {
	db.mu.Lock()
	if db.closed {
		db.mu.Unlock()
		return ErrClosed
	}
	db.closed = true
	db.mu.Unlock()
	close(db.writes)
	<-db.done
	clear(db.seal.index)
	return db.kv.Close()
}

// View runs fn in a read-only transaction. Reads run concurrently with each
// other and with the writer, and see every write whose Update has returned.
func (db *DB) View(fn func(*Tx) error) error {
	db.mu.RLock()
	closed := db.closed
	db.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	err := db.kv.View(func(btx kvTx) error {
		return fn(&Tx{btx: btx, seal: db.seal})
	})
	if errors.Is(err, errDatabaseNotOpen) {
		return ErrClosed // Close ran concurrently
	}
	return err
}

// Backup writes a consistent copy of the (still encrypted) file to w while
// the database stays in use.
func (db *DB) Backup(w io.Writer) error {
	return db.kv.View(func(btx kvTx) error {
		_, err := btx.WriteTo(w)
		return err
	})
}

// snapshot runs fn in one read transaction with the file's size, its
// schema version and a function writing the consistent copy (bbolt
// Tx.WriteTo); writers go on meanwhile.
//
// On a cluster replica, entry is the cluster log entry the snapshot is
// at (0 on a single node).
func (db *DB) snapshot(fn func(size int64, schema, entry uint64, writeTo func(io.Writer) (int64, error)) error) error {
	db.mu.RLock()
	closed := db.closed
	db.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	err := db.kv.View(func(btx kvTx) error {
		tx := &Tx{btx: btx, seal: db.seal}
		meta, err := tx.metaBucket(false)
		if err != nil {
			return err
		}
		raw, err := meta.Get(metaVersionKey)
		if err != nil {
			return err
		}
		if len(raw) != 8 {
			return fmt.Errorf("store: schema version record: %w", ErrCorrupt)
		}
		var entry uint64
		if rb := btx.Bucket(replicaBucket); rb != nil {
			var ok bool
			if entry, ok = ParseSeqKey(rb.Get(replicaAppliedKey)); !ok {
				return fmt.Errorf("store: replica position damaged: %w", ErrCorrupt)
			}
		}
		return fn(btx.Size(), binary.BigEndian.Uint64(raw), entry, btx.WriteTo)
	})
	if errors.Is(err, errDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

// Size returns the size of the database file in bytes, as of the last
// commit.
func (db *DB) Size() (int64, error) {
	var n int64
	err := db.kv.View(func(btx kvTx) error {
		n = btx.Size()
		return nil
	})
	if errors.Is(err, errDatabaseNotOpen) {
		return 0, ErrClosed
	}
	return n, err
}

// ObserveCommits makes fn be called after every commit with its duration
// (the fsync included) and the number of write functions it carried. It
// runs on the writer goroutine, so it must be quick. Nil stops it.
func (db *DB) ObserveCommits(fn func(d time.Duration, fns int)) {
	if fn == nil {
		db.onCommit.Store(nil)
		return
	}
	db.onCommit.Store(&fn)
}

// Ident returns the HMAC that stands in for an identifier in keys and
// bucket names; see Tx.Ident.
func (db *DB) Ident(domain string, id []byte) []byte { return db.seal.ident(domain, id) }

// writeReq is one Update call waiting for the writer.
type writeReq struct {
	fn   func(*Tx) error
	done chan error
}

// Update runs fn in a write transaction and returns after that transaction
// is committed and fsynced, or with fn's error (nothing of fn is then
// written).
//
// Group commit: Update calls made while the previous commit is being
// fsynced are run together in the next transaction, which starts as soon as
// that fsync ends (no timer), so concurrent writers share one fsync.
//
// A failing fn does not fail the others. If it failed before writing
// anything it is just left out; if it had written, the batch is rolled back
// and run again without it. So fn may run more than once, but only the last
// run's writes are ever committed, and a run is repeated only after the
// transaction it ran in was rolled back; a run whose transaction committed
// is never repeated, and a failed fn is never run again. Check before
// writing where you can: it keeps the others from running twice. fn must therefore set its results afresh on every run
// and have no effects outside the transaction (use Tx.OnCommit for those).
// fn must not call Update or View itself.
func (db *DB) Update(fn func(*Tx) error) error {
	req := &writeReq{fn: fn, done: make(chan error, 1)}
	db.mu.RLock()
	if db.closed {
		db.mu.RUnlock()
		return ErrClosed
	}
	db.writes <- req
	db.mu.RUnlock()
	return <-req.done
}

// writer is the single goroutine that commits. It takes whatever requests
// queued up during the last commit, up to maxBatch, and commits them at once.
func (db *DB) writer() {
	defer close(db.done)
	batch := make([]*writeReq, 0, db.maxBatch)
	for req := range db.writes {
		batch = append(batch[:0], req)
	drain:
		for len(batch) < db.maxBatch {
			select {
			case r, ok := <-db.writes:
				if !ok {
					break drain
				}
				batch = append(batch, r)
			default:
				break drain
			}
		}
		db.commit(batch)
		clear(batch)
	}
}

// commit runs a batch in one transaction. A function that fails before
// writing anything is simply left out. A function that fails after writing
// cannot be undone alone (bbolt has no savepoints), so the transaction is
// rolled back, that function gets its error, and the functions that had
// succeeded and those not yet run are run again in a fresh transaction.
//
// On a cluster replica (kv_repl.go) the commit can also lose the race to
// the cluster log against another node: the transaction is then rolled
// back, the replica catches up, and the functions that had succeeded are
// run again on the new state (so, as above, a function runs again only
// after the transaction of its previous run was rolled back). A batch
// whose changes do not fit one log entry is split in two.
func (db *DB) commit(batch []*writeReq) {
	pending := batch
	conflicts := 0
	for len(pending) > 0 {
		var btx kvTx
		var err error
		if rb, ok := db.kv.(retryBeginner); ok && conflicts > 0 {
			btx, err = rb.beginRetry()
		} else {
			btx, err = db.kv.Begin(true)
		}
		if err != nil {
			for _, r := range pending {
				r.done <- fmt.Errorf("store: %w", err)
			}
			return
		}
		tx := &Tx{btx: btx, seal: db.seal}
		var ok []*writeReq
		failed := -1
		var ferr error
		for i, r := range pending {
			writes, hooks := tx.writes, len(tx.hooks)
			panicked, err := runFn(r.fn, tx)
			if err == nil {
				ok = append(ok, r)
				continue
			}
			if !panicked && tx.writes == writes {
				tx.hooks = tx.hooks[:hooks]
				r.done <- err
				continue
			}
			failed, ferr = i, err
			break
		}
		if failed >= 0 {
			btx.Rollback()
			pending[failed].done <- ferr
			pending = append(ok, pending[failed+1:]...)
			continue
		}
		start := time.Now()
		err = btx.Commit()
		if f := db.onCommit.Load(); f != nil {
			(*f)(time.Since(start), len(ok))
		}
		if errors.Is(err, errConflict) && conflicts < maxCommitConflicts {
			conflicts++
			pending = ok
			continue
		}
		if errors.Is(err, errTooLarge) && len(ok) > 1 {
			h := len(ok) / 2
			db.commit(slices.Clone(ok[:h]))
			db.commit(slices.Clone(ok[h:]))
			return
		}
		if errors.Is(err, errTooLarge) {
			err = fmt.Errorf("%w: %w", err, ErrLimit)
		}
		if err != nil {
			err = fmt.Errorf("store: commit: %w", err)
			for _, r := range ok {
				r.done <- err
			}
			return
		}
		db.commits.Add(1)
		for _, h := range tx.hooks {
			h()
		}
		for _, r := range ok {
			r.done <- nil
		}
		return
	}
}

// maxCommitConflicts bounds how often a batch is run again after losing
// the race to the cluster log.
const maxCommitConflicts = 1000

// runFn runs one write function, turning a panic into an error so that one
// broken caller cannot take the writer, and every other caller, down. After
// a panic the transaction may be half-changed, whatever tx.writes says.
func runFn(fn func(*Tx) error, tx *Tx) (panicked bool, err error) {
	defer func() {
		if p := recover(); p != nil {
			panicked, err = true, fmt.Errorf("store: internal error: write function panicked: %v", p)
		}
	}()
	return false, fn(tx)
}

// Tx is a transaction. It is valid only inside the function it was given
// to, and only on that goroutine.
type Tx struct {
	btx    kvTx
	seal   *sealer
	hooks  []func()
	writes int // write calls so far; a function that failed before writing needs no rollback
}

// Ident returns the HMAC-SHA256, under the index key, of an identifier in a
// domain ("user", "group", ...). Use it instead of the identifier as a key
// or bucket name, so the file never shows user names or group ids.
func (tx *Tx) Ident(domain string, id []byte) []byte { return tx.seal.ident(domain, id) }

// OnCommit registers fn to run after the transaction is durably committed
// (never if it is rolled back). Only valid in Update.
func (tx *Tx) OnCommit(fn func()) { tx.hooks = append(tx.hooks, fn) }

func reserved(name []byte) bool {
	return bytes.Equal(name, headerBucket) || bytes.Equal(name, metaBucket) || bytes.Equal(name, replicaBucket)
}

// Bucket returns the bucket at path (one name per level), or nil if any
// level does not exist. The top-level names "meta" and "qpchat-header" are
// reserved for the store itself.
func (tx *Tx) Bucket(path ...[]byte) *Bucket {
	if len(path) == 0 || reserved(path[0]) {
		return nil
	}
	return tx.bucket(path...)
}

func (tx *Tx) bucket(path ...[]byte) *Bucket {
	b := tx.btx.Bucket(path[0])
	if b == nil {
		return nil
	}
	bk := &Bucket{b: b, path: appendPath(nil, path[0]), tx: tx}
	for _, name := range path[1:] {
		if bk = bk.Bucket(name); bk == nil {
			return nil
		}
	}
	return bk
}

// CreateBucket returns the bucket at path, creating missing levels.
func (tx *Tx) CreateBucket(path ...[]byte) (*Bucket, error) {
	if len(path) == 0 || reserved(path[0]) {
		return nil, fmt.Errorf("store: invalid bucket path %q", path)
	}
	return tx.createBucket(path...)
}

func (tx *Tx) createBucket(path ...[]byte) (*Bucket, error) {
	tx.writes++
	if !tx.btx.Writable() {
		return nil, ErrReadOnly
	}
	b, err := tx.btx.CreateBucketIfNotExists(path[0])
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	bk := &Bucket{b: b, path: appendPath(nil, path[0]), tx: tx}
	for _, name := range path[1:] {
		if bk, err = bk.CreateBucket(name); err != nil {
			return nil, err
		}
	}
	return bk, nil
}

// DeleteBucket deletes the bucket at path and everything in it. Deleting a
// missing bucket is not an error.
func (tx *Tx) DeleteBucket(path ...[]byte) error {
	tx.writes++
	if len(path) == 0 || reserved(path[0]) {
		return fmt.Errorf("store: invalid bucket path %q", path)
	}
	if len(path) == 1 {
		return ignoreMissing(tx.btx.DeleteBucket(path[0]))
	}
	parent := tx.Bucket(path[:len(path)-1]...)
	if parent == nil {
		return nil
	}
	return parent.DeleteBucket(path[len(path)-1])
}

func ignoreMissing(err error) error {
	if err == nil || errors.Is(err, errBucketNotFound) {
		return nil
	}
	if errors.Is(err, errTxNotWritable) {
		return ErrReadOnly
	}
	return fmt.Errorf("store: %w", err)
}

// Bucket is a bucket of sealed values. Keys are stored in clear (use
// Tx.Ident for identifiers); values are sealed to the bucket path and key.
type Bucket struct {
	b    kvBucket
	path []byte // encoded bucket path, bound into every value's AAD
	tx   *Tx
}

// Bucket returns the nested bucket name, or nil.
func (b *Bucket) Bucket(name []byte) *Bucket {
	nb := b.b.Bucket(name)
	if nb == nil {
		return nil
	}
	return &Bucket{b: nb, path: appendPath(bytes.Clone(b.path), name), tx: b.tx}
}

// CreateBucket returns the nested bucket name, creating it if needed.
func (b *Bucket) CreateBucket(name []byte) (*Bucket, error) {
	b.tx.writes++
	nb, err := b.b.CreateBucketIfNotExists(name)
	if err != nil {
		if errors.Is(err, errTxNotWritable) {
			return nil, ErrReadOnly
		}
		return nil, fmt.Errorf("store: %w", err)
	}
	return &Bucket{b: nb, path: appendPath(bytes.Clone(b.path), name), tx: b.tx}, nil
}

// DeleteBucket deletes the nested bucket name; a missing one is no error.
func (b *Bucket) DeleteBucket(name []byte) error {
	b.tx.writes++
	return ignoreMissing(b.b.DeleteBucket(name))
}

// Get returns the opened value of key: ErrNotFound if there is none (or key
// names a nested bucket), ErrCorrupt if it fails authentication. The value
// is a fresh copy, usable after the transaction.
func (b *Bucket) Get(key []byte) ([]byte, error) {
	v := b.b.Get(key)
	if v == nil {
		return nil, ErrNotFound
	}
	return b.tx.seal.open(b.path, key, v)
}

// Put seals value to this bucket and key and stores it.
func (b *Bucket) Put(key, value []byte) error {
	b.tx.writes++
	sealed, err := b.tx.seal.seal(b.path, key, value)
	if err != nil {
		return err
	}
	if err := b.b.Put(key, sealed); err != nil {
		if errors.Is(err, errTxNotWritable) {
			return ErrReadOnly
		}
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// Delete removes key; a missing key is no error.
func (b *Bucket) Delete(key []byte) error {
	b.tx.writes++
	if err := b.b.Delete(key); err != nil {
		if errors.Is(err, errTxNotWritable) {
			return ErrReadOnly
		}
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// Sequence returns the bucket's current sequence number.
func (b *Bucket) Sequence() uint64 { return b.b.Sequence() }

// NextSequence increments and returns the bucket's sequence number.
func (b *Bucket) NextSequence() (uint64, error) {
	b.tx.writes++
	n, err := b.b.NextSequence()
	if err != nil {
		if errors.Is(err, errTxNotWritable) {
			return 0, ErrReadOnly
		}
		return 0, fmt.Errorf("store: %w", err)
	}
	return n, nil
}

// Append stores value under the next sequence number (as SeqKey) and
// returns that number: a queue whose cursor order is insertion order.
func (b *Bucket) Append(value []byte) (uint64, error) {
	n, err := b.NextSequence()
	if err != nil {
		return 0, err
	}
	return n, b.Put(SeqKey(n), value)
}

// SeqKey encodes a sequence number as an 8-byte big-endian key, so byte
// order is numeric order.
func SeqKey(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

// ParseSeqKey decodes a SeqKey; ok is false if key is not 8 bytes.
func ParseSeqKey(key []byte) (n uint64, ok bool) {
	if len(key) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(key), true
}

// AppendOnly tells bbolt that keys of this bucket are only ever added in
// increasing order (a queue), so that splitting a page fills it completely
// instead of at bbolt's default 50%: the pages of a queue are then full, and
// a queued message costs half the disk. It lasts for this transaction.
func (b *Bucket) AppendOnly() { b.b.AppendOnly() }

// Cursor returns a cursor over the bucket that opens values.
func (b *Bucket) Cursor() *Cursor { return &Cursor{c: b.b.Cursor(), b: b} }

// KeyCursor returns a cursor that skips opening values: every value it
// returns is nil. Use it to count or delete.
func (b *Bucket) KeyCursor() *Cursor { return &Cursor{c: b.b.Cursor(), b: b, keysOnly: true} }

// Cursor walks a bucket's keys in byte order and opens the values. Each
// method returns key == nil at the end. For a nested bucket the value is
// nil. A value that fails authentication is returned as ErrCorrupt with its
// key, so a loop can stop on it. Keys and values are fresh copies.
type Cursor struct {
	c        kvCursor
	b        *Bucket
	keysOnly bool
	last     []byte // key under the cursor
	raw      []byte // its sealed value, as the engine holds it (nil for a bucket)
	deleted  bool   // last was deleted: the next move must re-seek
}

func (c *Cursor) result(k, v []byte) ([]byte, []byte, error) {
	c.deleted = false
	c.raw = v
	if k == nil {
		c.last = nil
		return nil, nil, nil
	}
	k = bytes.Clone(k)
	c.last = k
	if v == nil || c.keysOnly {
		return k, nil, nil
	}
	v, err := c.b.tx.seal.open(c.b.path, k, v)
	return k, v, err
}

// ValueLen returns the length the value under the cursor has once
// opened, computed from its sealed size without opening it (a value too
// short to have been sealed gives a negative length); -1 for a nested
// bucket or no key. It lets a KeyCursor pick the values worth opening.
func (c *Cursor) ValueLen() int {
	if c.raw == nil || c.deleted {
		return -1
	}
	return len(c.raw) - sealOverhead
}

// Value opens the value under the cursor, as a cursor that is not a
// KeyCursor would have returned it: ErrNotFound for a nested bucket or
// no key, ErrCorrupt if it fails authentication. Call it before
// changing the bucket.
func (c *Cursor) Value() ([]byte, error) {
	if c.raw == nil || c.deleted {
		return nil, ErrNotFound
	}
	return c.b.tx.seal.open(c.b.path, c.last, c.raw)
}

// First moves to the first key.
func (c *Cursor) First() (key, value []byte, err error) { return c.result(c.c.First()) }

// Last moves to the last key.
func (c *Cursor) Last() (key, value []byte, err error) { return c.result(c.c.Last()) }

// Next moves to the next key.
func (c *Cursor) Next() (key, value []byte, err error) {
	if c.deleted {
		// bbolt's cursor already points past a deleted key; Next would
		// skip one. Seeking the deleted key lands on its successor.
		return c.result(c.c.Seek(c.last))
	}
	return c.result(c.c.Next())
}

// Prev moves to the previous key.
func (c *Cursor) Prev() (key, value []byte, err error) {
	if c.deleted {
		if k, _ := c.c.Seek(c.last); k == nil {
			return c.result(c.c.Last())
		}
	}
	return c.result(c.c.Prev())
}

// Seek moves to the first key ≥ seek.
func (c *Cursor) Seek(seek []byte) (key, value []byte, err error) { return c.result(c.c.Seek(seek)) }

// Delete removes the key under the cursor. Next and Prev continue from
// where it was.
func (c *Cursor) Delete() error {
	c.b.tx.writes++
	if err := c.c.Delete(); err != nil {
		if errors.Is(err, errTxNotWritable) {
			return ErrReadOnly
		}
		return fmt.Errorf("store: %w", err)
	}
	c.deleted, c.raw = true, nil
	return nil
}

// metaBucket returns the meta bucket, creating it in a write transaction.
func (tx *Tx) metaBucket(create bool) (*Bucket, error) {
	if create {
		return tx.createBucket(metaBucket)
	}
	b := tx.bucket(metaBucket)
	if b == nil {
		return nil, fmt.Errorf("store: meta bucket missing: %w", ErrCorrupt)
	}
	return b, nil
}
