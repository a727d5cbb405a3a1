package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"sync"
)

// memDB is the in-memory engine (kv.go) of a browser's state: the whole
// database lives in memory, a write transaction works on a copy that
// replaces the current one at commit, and every commit hands the new
// image (marshalMemImage) to persist, which stores it (IndexedDB) before
// the commit counts. Values are the sealed values of DB, so the image
// holds exactly what a bbolt file would: sealed values under clear or
// HMAC'd keys.
//
// TODO(web): a commit copies and writes the whole image, fine for a
// client's state of a few MiB; larger states want per-record writes.
type memDB struct {
	wmu     sync.Mutex // held by the one write transaction
	mu      sync.RWMutex
	root    *memBucket // immutable once published: writers copy it
	closed  bool
	persist func(image []byte) error
}

// memBucket is a bucket: values and nested buckets share one sorted key
// space, as in bbolt.
type memBucket struct {
	seq  uint64
	keys []string // sorted, each in vals or subs
	vals map[string][]byte
	subs map[string]*memBucket
}

func newMemBucket() *memBucket {
	return &memBucket{vals: map[string][]byte{}, subs: map[string]*memBucket{}}
}

func (b *memBucket) clone() *memBucket {
	c := &memBucket{seq: b.seq, keys: slices.Clone(b.keys), vals: make(map[string][]byte, len(b.vals)), subs: make(map[string]*memBucket, len(b.subs))}
	for k, v := range b.vals {
		c.vals[k] = v // values are never modified in place
	}
	for k, s := range b.subs {
		c.subs[k] = s.clone()
	}
	return c
}

func (b *memBucket) insertKey(k string) {
	i := sort.SearchStrings(b.keys, k)
	if i < len(b.keys) && b.keys[i] == k {
		return
	}
	b.keys = slices.Insert(b.keys, i, k)
}

func (b *memBucket) removeKey(k string) {
	i := sort.SearchStrings(b.keys, k)
	if i < len(b.keys) && b.keys[i] == k {
		b.keys = slices.Delete(b.keys, i, i+1)
	}
}

func (d *memDB) Begin(writable bool) (kvTx, error) {
	d.mu.RLock()
	closed := d.closed
	d.mu.RUnlock()
	if closed {
		return nil, errDatabaseNotOpen
	}
	if !writable {
		d.mu.RLock()
		defer d.mu.RUnlock()
		return &memTx{db: d, root: d.root}, nil
	}
	d.wmu.Lock()
	d.mu.RLock()
	root := d.root.clone()
	d.mu.RUnlock()
	return &memTx{db: d, root: root, writable: true}, nil
}

func (d *memDB) View(fn func(kvTx) error) error {
	tx, err := d.Begin(false)
	if err != nil {
		return err
	}
	return fn(tx)
}

func (d *memDB) Update(fn func(kvTx) error) error {
	tx, err := d.Begin(true)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

func (d *memDB) Close() error {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	return nil
}

type memTx struct {
	db       *memDB
	root     *memBucket
	writable bool
	done     bool
}

func (t *memTx) Bucket(name []byte) kvBucket {
	if b := t.root.subs[string(name)]; b != nil {
		return &memBucketRef{b: b, tx: t}
	}
	return nil
}

func (t *memTx) CreateBucketIfNotExists(name []byte) (kvBucket, error) {
	return (&memBucketRef{b: t.root, tx: t}).CreateBucketIfNotExists(name)
}

func (t *memTx) DeleteBucket(name []byte) error {
	return (&memBucketRef{b: t.root, tx: t}).DeleteBucket(name)
}

func (t *memTx) Empty() bool      { return len(t.root.keys) == 0 }
func (t *memTx) Cursor() kvCursor { return &memCursor{r: &memBucketRef{b: t.root, tx: t}} }
func (t *memTx) Writable() bool   { return t.writable }

func (t *memTx) Commit() error {
	if !t.writable || t.done {
		return errTxNotWritable
	}
	t.done = true
	defer t.db.wmu.Unlock()
	if t.db.persist != nil {
		if err := t.db.persist(marshalMemImage(t.root)); err != nil {
			return fmt.Errorf("store: saving the state: %w", err)
		}
	}
	t.db.mu.Lock()
	t.db.root = t.root
	t.db.mu.Unlock()
	return nil
}

func (t *memTx) Rollback() error {
	if t.writable && !t.done {
		t.done = true
		t.db.wmu.Unlock()
	}
	return nil
}

func (t *memTx) Size() int64 { return int64(len(marshalMemImage(t.root))) }

func (t *memTx) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(marshalMemImage(t.root))
	return int64(n), err
}

// memBucketRef is a bucket seen through a transaction (for the
// read-only check).
type memBucketRef struct {
	b  *memBucket
	tx *memTx
}

func (r *memBucketRef) Bucket(name []byte) kvBucket {
	if b := r.b.subs[string(name)]; b != nil {
		return &memBucketRef{b: b, tx: r.tx}
	}
	return nil
}

func (r *memBucketRef) CreateBucketIfNotExists(name []byte) (kvBucket, error) {
	if !r.tx.writable {
		return nil, errTxNotWritable
	}
	k := string(name)
	if len(k) == 0 {
		return nil, errors.New("store: bucket name required")
	}
	if _, ok := r.b.vals[k]; ok {
		return nil, errIncompatible
	}
	b := r.b.subs[k]
	if b == nil {
		b = newMemBucket()
		r.b.subs[k] = b
		r.b.insertKey(k)
	}
	return &memBucketRef{b: b, tx: r.tx}, nil
}

func (r *memBucketRef) DeleteBucket(name []byte) error {
	if !r.tx.writable {
		return errTxNotWritable
	}
	k := string(name)
	if _, ok := r.b.subs[k]; !ok {
		if _, isVal := r.b.vals[k]; isVal {
			return errIncompatible
		}
		return errBucketNotFound
	}
	delete(r.b.subs, k)
	r.b.removeKey(k)
	return nil
}

func (r *memBucketRef) Get(key []byte) []byte { return r.b.vals[string(key)] }

func (r *memBucketRef) Put(key, value []byte) error {
	if !r.tx.writable {
		return errTxNotWritable
	}
	k := string(key)
	if len(k) == 0 {
		return errors.New("store: key required")
	}
	if _, ok := r.b.subs[k]; ok {
		return errIncompatible
	}
	r.b.vals[k] = bytes.Clone(value)
	r.b.insertKey(k)
	return nil
}

func (r *memBucketRef) Delete(key []byte) error {
	if !r.tx.writable {
		return errTxNotWritable
	}
	k := string(key)
	if _, ok := r.b.subs[k]; ok {
		return errIncompatible
	}
	if _, ok := r.b.vals[k]; ok {
		delete(r.b.vals, k)
		r.b.removeKey(k)
	}
	return nil
}

func (r *memBucketRef) Sequence() uint64 { return r.b.seq }

func (r *memBucketRef) NextSequence() (uint64, error) {
	if !r.tx.writable {
		return 0, errTxNotWritable
	}
	r.b.seq++
	return r.b.seq, nil
}

func (r *memBucketRef) SetSequence(n uint64) error {
	if !r.tx.writable {
		return errTxNotWritable
	}
	r.b.seq = n
	return nil
}

func (r *memBucketRef) Cursor() kvCursor { return &memCursor{r: r} }
func (r *memBucketRef) AppendOnly()      {}

// memCursor walks a bucket's keys; it remembers the key it is on, so
// that deletions under it keep Next and Prev right.
type memCursor struct {
	r   *memBucketRef
	cur string
	on  bool
}

func (c *memCursor) at(i int) ([]byte, []byte) {
	keys := c.r.b.keys
	if i < 0 || i >= len(keys) {
		c.on = false
		return nil, nil
	}
	c.cur, c.on = keys[i], true
	return []byte(c.cur), c.r.b.vals[c.cur]
}

func (c *memCursor) First() ([]byte, []byte) { return c.at(0) }
func (c *memCursor) Last() ([]byte, []byte)  { return c.at(len(c.r.b.keys) - 1) }

func (c *memCursor) Seek(s []byte) ([]byte, []byte) {
	return c.at(sort.SearchStrings(c.r.b.keys, string(s)))
}

func (c *memCursor) Next() ([]byte, []byte) {
	if !c.on {
		return nil, nil
	}
	keys := c.r.b.keys
	return c.at(sort.Search(len(keys), func(i int) bool { return keys[i] > c.cur }))
}

func (c *memCursor) Prev() ([]byte, []byte) {
	if !c.on {
		return nil, nil
	}
	return c.at(sort.SearchStrings(c.r.b.keys, c.cur) - 1)
}

func (c *memCursor) Delete() error {
	if !c.on {
		return errors.New("store: cursor is not on a key")
	}
	return c.r.Delete([]byte(c.cur))
}

// The image of a memDB, what persist stores:
//
//	image  = "qpchat-mem-v1" || bucket
//	bucket = uint64 sequence || uint32 count || count * entry   (keys strictly increasing)
//	entry  = uint8 kind || uint32 key_length || key || (kind 0: uint32 value_length || value
//	                                                    kind 1: bucket)
//
// Integers are big-endian.
const memImageMagic = "qpchat-mem-v1"

// maxMemDepth bounds bucket nesting in an image (qpchat nests three
// levels at most).
const maxMemDepth = 16

func marshalMemImage(root *memBucket) []byte {
	out := []byte(memImageMagic)
	return appendMemBucket(out, root)
}

func appendMemBucket(out []byte, b *memBucket) []byte {
	out = binary.BigEndian.AppendUint64(out, b.seq)
	out = binary.BigEndian.AppendUint32(out, uint32(len(b.keys)))
	for _, k := range b.keys {
		if sub, ok := b.subs[k]; ok {
			out = append(out, 1)
			out = binary.BigEndian.AppendUint32(out, uint32(len(k)))
			out = append(out, k...)
			out = appendMemBucket(out, sub)
			continue
		}
		v := b.vals[k]
		out = append(out, 0)
		out = binary.BigEndian.AppendUint32(out, uint32(len(k)))
		out = append(out, k...)
		out = binary.BigEndian.AppendUint32(out, uint32(len(v)))
		out = append(out, v...)
	}
	return out
}

// parseMemImage parses an image; an empty one is an empty database.
func parseMemImage(img []byte) (*memBucket, error) {
	if len(img) == 0 {
		return newMemBucket(), nil
	}
	rest, ok := bytes.CutPrefix(img, []byte(memImageMagic))
	if !ok {
		return nil, fmt.Errorf("store: not a qpchat state image: %w", ErrCorrupt)
	}
	b, rest, err := parseMemBucket(rest, 0)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("store: %d trailing bytes in the state image: %w", len(rest), ErrCorrupt)
	}
	return b, nil
}

func parseMemBucket(in []byte, depth int) (*memBucket, []byte, error) {
	bad := func(what string) (*memBucket, []byte, error) {
		return nil, nil, fmt.Errorf("store: state image: %s: %w", what, ErrCorrupt)
	}
	if depth > maxMemDepth {
		return bad("buckets nested too deep")
	}
	if len(in) < 12 {
		return bad("truncated bucket")
	}
	b := newMemBucket()
	b.seq = binary.BigEndian.Uint64(in)
	n := binary.BigEndian.Uint32(in[8:])
	in = in[12:]
	if uint64(n) > uint64(len(in))/9 { // an entry takes at least 9 bytes
		return bad("entry count beyond the image")
	}
	readLen := func() ([]byte, bool) {
		if len(in) < 4 {
			return nil, false
		}
		l := binary.BigEndian.Uint32(in)
		if uint64(l) > uint64(len(in)-4) {
			return nil, false
		}
		v := in[4 : 4+l]
		in = in[4+l:]
		return v, true
	}
	for range n {
		if len(in) < 1 {
			return bad("truncated entry")
		}
		kind := in[0]
		in = in[1:]
		k, ok := readLen()
		if !ok || len(k) == 0 {
			return bad("bad key")
		}
		key := string(k)
		if len(b.keys) > 0 && key <= b.keys[len(b.keys)-1] {
			return bad("keys out of order")
		}
		switch kind {
		case 0:
			v, ok := readLen()
			if !ok {
				return bad("bad value")
			}
			b.vals[key] = bytes.Clone(v)
		case 1:
			sub, rest, err := parseMemBucket(in, depth+1)
			if err != nil {
				return nil, nil, err
			}
			in = rest
			b.subs[key] = sub
		default:
			return bad("unknown entry kind")
		}
		b.keys = append(b.keys, key)
	}
	return b, in, nil
}

// OpenMemory opens the encrypted database held in image (empty for a new
// one) in memory, as Open does a file: same header, key derivation,
// sealing and migrations. After every commit persist is given the new
// image and must store it durably before returning; its error fails the
// commit, which then leaves the database as it was. This is the state
// store of the browser client, which keeps the image in IndexedDB.
// opts.KeyFile is not supported here: use a passphrase.
func OpenMemory(image []byte, persist func(image []byte) error, opts Options) (*DB, error) {
	if opts.KeyFile != "" {
		return nil, errors.New("store: an in-memory database takes a passphrase, not a key file")
	}
	if err := opts.fill(); err != nil {
		return nil, err
	}
	root, err := parseMemImage(image)
	if err != nil {
		return nil, err
	}
	return openDB(&memDB{root: root, persist: persist}, opts)
}
