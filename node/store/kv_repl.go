//go:build !js

package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// The replicated engine: a cluster store is a replicated state machine.
// Every node keeps a whole copy of the database in its own bbolt file
// (the replica) and the cluster keeps one totally ordered log of write
// sets (writeset.go), on NATS JetStream in node/cluster. The replica
// records, in the same bbolt transaction as the data, the sequence number
// of the last log entry it applied.
//
// A write transaction runs on the replica's bbolt write transaction and
// records what it changes. Its commit appends the write set to the log
// on the condition that the log's last entry is still the one the replica
// had applied when the transaction began (an expected-last-sequence
// append: one compare-and-set for the whole cluster). Only once the log
// has it on a quorum does the replica commit the same changes with the
// new sequence number. If another node appended first, the append is
// refused: the transaction is rolled back, the replica catches up, and
// DB's writer runs the batch again on the new state (errConflict). So
// transactions are serialisable cluster-wide: a pool KeyPackage is
// consumed once, one commit per epoch wins, queue sequence numbers stay
// dense and ordered, whichever node is asked.
//
// A follower goroutine reads the log in order and applies the other
// nodes' entries (its own are already applied; the sequence check skips
// them), then tells the store which buckets got values, so that
// QueueSignal wakes a fetchWait on this node when another node queued a
// message.
//
// Reads and the start of every write transaction first wait until the
// replica has applied the log's last entry as of the call (one round trip
// to the log's leader, shared by the readers that arrive together): what
// a node returns includes every write acknowledged by any node before
// the call began. When the log is unreachable (no quorum), reads and
// writes fail after ClusterOptions.Timeout instead of answering from a
// stale replica.
//
// Crashes: an entry acknowledged by the log but not yet committed to the
// replica (a crash in between) is in the log, and the follower applies it
// when the node restarts; applying is idempotent because the applied
// sequence number is committed with the data. A new, empty replica
// replays the whole log from its first entry; the log is never truncated
// (snapshots are future work).

// Log is the replicated, totally ordered log under a cluster store.
// Entries are numbered from 1 without gaps. node/cluster implements it on
// a NATS JetStream stream.
type Log interface {
	// ID names the log for its whole life: a replica refuses to follow
	// another log (a stream deleted and made again restarts its numbers).
	ID(ctx context.Context) (string, error)
	// Last returns the number of the last entry (0 for an empty log),
	// reflecting every Append that returned before Last was called.
	Last(ctx context.Context) (uint64, error)
	// Append stores entry as number expect+1 if the last entry is number
	// expect, returning when a quorum has it durably. If another entry
	// is there already it returns appended false and no error.
	Append(ctx context.Context, entry []byte, expect uint64) (seq uint64, appended bool, err error)
	// Follow calls fn with the entries numbered after after, in order,
	// in runs of consecutive entries (first is the number of entries[0]),
	// until ctx ends, fn fails or the log does. fn owns the slices.
	Follow(ctx context.Context, after uint64, fn func(first uint64, entries [][]byte) error) error
	// MaxEntry is the size in bytes of the largest entry Append takes.
	MaxEntry() int
}

// errGap: the log delivered an entry beyond the next one (a follower
// restart resumes from the replica's position).
var errGap = errors.New("store: the cluster log skipped entries")

// divergence is an entry the replica cannot apply: the replica no longer
// matches the log and stops.
type divergence struct {
	seq uint64
	err error
}

func (d *divergence) Error() string {
	return fmt.Sprintf("store: cannot apply cluster log entry %d: %v", d.seq, d.err)
}

func (d *divergence) Unwrap() error { return d.err }

// replDB is the replicated kvDB.
type replDB struct {
	local   kvDB
	log     Log
	timeout time.Duration

	mu       sync.Mutex
	applied  uint64        // last entry committed to the replica
	advanced chan struct{} // closed (and replaced) when applied grows or failed is set
	failed   error
	wanted   uint64    // the highest entry a caller waits for
	lost     uint64    // the entry of the last append that another node won
	progress time.Time // when applied last grew, or waiting began

	// onPut, if set, is told after each commit of other nodes' entries the
	// path of every bucket that got values.
	onPut atomic.Pointer[func(path [][]byte)]

	// Last calls in flight: readers that arrive while one is running
	// share the next one (so each gets an answer from after its arrival).
	bmu       sync.Mutex
	cur, next *lastRound

	cancel context.CancelFunc
	done   chan struct{} // closed when the follower exits

	applyMu sync.Mutex // held while the follower applies entries
	closed  bool       // under applyMu: the replica is closed, apply nothing
}

type lastRound struct {
	done chan struct{}
	seq  uint64
	err  error
}

// newReplica opens the replica on local (a fresh one is bound to the
// log), starts the follower and waits until it has caught up with the
// log.
func newReplica(local kvDB, log Log, timeout time.Duration) (*replDB, error) {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	id, err := log.ID(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: cluster log: %w", err)
	}
	var applied uint64
	err = local.Update(func(tx kvTx) error {
		rb := tx.Bucket(replicaBucket)
		if rb == nil {
			if !tx.Empty() {
				return errors.New("store: this file is a single node's store, not a cluster replica; a cluster node starts from an empty replica and replays the cluster log")
			}
			var err error
			if rb, err = tx.CreateBucketIfNotExists(replicaBucket); err != nil {
				return err
			}
			if err := rb.Put(replicaLogKey, []byte(id)); err != nil {
				return err
			}
			return rb.Put(replicaAppliedKey, SeqKey(0))
		}
		if got := rb.Get(replicaLogKey); string(got) != id {
			return fmt.Errorf("store: this replica follows the cluster log %q, not %q (remove the replica file to replay the new log from the start)", got, id)
		}
		var err error
		applied, err = readApplied(tx)
		return err
	})
	if err != nil {
		return nil, err
	}
	fctx, fcancel := context.WithCancel(context.Background())
	r := &replDB{local: local, log: log, timeout: timeout, applied: applied,
		advanced: make(chan struct{}), cancel: fcancel, done: make(chan struct{})}
	go r.follow(fctx)
	if err := r.barrier(); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func readApplied(tx kvTx) (uint64, error) {
	rb := tx.Bucket(replicaBucket)
	if rb == nil {
		return 0, fmt.Errorf("store: replica bookkeeping missing: %w", ErrCorrupt)
	}
	n, ok := ParseSeqKey(rb.Get(replicaAppliedKey))
	if !ok {
		return 0, fmt.Errorf("store: replica position damaged: %w", ErrCorrupt)
	}
	return n, nil
}

func writeApplied(tx kvTx, seq uint64) error {
	rb := tx.Bucket(replicaBucket)
	if rb == nil {
		return fmt.Errorf("store: replica bookkeeping missing: %w", ErrCorrupt)
	}
	return rb.Put(replicaAppliedKey, SeqKey(seq))
}

func (r *replDB) setApplied(seq uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if seq > r.applied {
		r.applied = seq
		r.progress = time.Now()
		close(r.advanced)
		r.advanced = make(chan struct{})
	}
}

// stalled reports whether callers have waited for entries for longer
// than d without the replica applying any.
func (r *replDB) stalled(d time.Duration) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.wanted > r.applied && time.Since(r.progress) > d
}

func (r *replDB) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failed == nil {
		r.failed = fmt.Errorf("store: this node's replica stopped: %w", err)
		close(r.advanced)
		r.advanced = make(chan struct{})
	}
}

func (r *replDB) state() (applied uint64, failed error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.applied, r.failed
}

// waitApplied waits until the replica has applied entry seq.
func (r *replDB) waitApplied(ctx context.Context, seq uint64) error {
	for {
		r.mu.Lock()
		applied, ch, failed := r.applied, r.advanced, r.failed
		r.mu.Unlock()
		if failed != nil {
			return failed
		}
		if applied >= seq {
			return nil
		}
		r.mu.Lock()
		if r.wanted <= r.applied { // waiting begins
			r.progress = time.Now()
		}
		r.wanted = max(r.wanted, seq)
		r.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%w: this node's replica is behind the cluster log (at entry %d of %d): %w", ErrUnavailable, applied, seq, ctx.Err())
		}
	}
}

// lastSeq asks the log for its last entry, sharing the call with the
// other callers waiting for one that started after they arrived.
func (r *replDB) lastSeq(ctx context.Context) (uint64, error) {
	r.bmu.Lock()
	var rd *lastRound
	if r.cur == nil {
		rd = &lastRound{done: make(chan struct{})}
		r.cur = rd
		go r.runRounds(rd)
	} else {
		if r.next == nil {
			r.next = &lastRound{done: make(chan struct{})}
		}
		rd = r.next
	}
	r.bmu.Unlock()
	select {
	case <-rd.done:
		return rd.seq, rd.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (r *replDB) runRounds(rd *lastRound) {
	for rd != nil {
		ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
		rd.seq, rd.err = r.log.Last(ctx)
		cancel()
		close(rd.done)
		r.bmu.Lock()
		rd, r.cur, r.next = r.next, r.next, nil
		r.bmu.Unlock()
	}
}

// barrier waits until the replica has applied everything the log held
// when barrier was called.
func (r *replDB) barrier() error {
	if _, failed := r.state(); failed != nil {
		return failed
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	last, err := r.lastSeq(ctx)
	if err != nil {
		return fmt.Errorf("%w (the log does not answer: %w)", ErrUnavailable, err)
	}
	return r.waitApplied(ctx, last)
}

// followerStall is how long callers may wait for entries, with none
// applied, before the follower is restarted.
const followerStall = 3 * time.Second

// follow applies the log to the replica until ctx ends, restarting the
// log's Follow after transient failures.
func (r *replDB) follow(ctx context.Context) {
	defer close(r.done)
	backoff := 20 * time.Millisecond
	gaps := 0
	for ctx.Err() == nil {
		applied, _ := r.state()
		// A follower that delivers nothing while callers wait for
		// entries the log has (its consumer lost with a server that
		// died, say) is restarted from the replica's position.
		fctx, cancel := context.WithCancel(ctx)
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-fctx.Done():
					return
				case <-t.C:
					if r.stalled(followerStall) {
						cancel()
						return
					}
				}
			}
		}()
		err := r.log.Follow(fctx, applied, r.applyEntries)
		cancel()
		if ctx.Err() != nil {
			return
		}
		var div *divergence
		if errors.As(err, &div) {
			r.fail(err)
			return
		}
		if now, _ := r.state(); now > applied {
			backoff, gaps = 20*time.Millisecond, 0
		} else if errors.Is(err, errGap) {
			if gaps++; gaps > 5 {
				r.fail(fmt.Errorf("the cluster log no longer holds entry %d (it was truncated; this replica needs a snapshot)", applied+1))
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// applyEntries applies a run of log entries in one replica transaction,
// skipping those already applied.
func (r *replDB) applyEntries(first uint64, entries [][]byte) error {
	if len(entries) == 0 {
		return nil
	}
	if applied, _ := r.state(); first+uint64(len(entries))-1 <= applied {
		return nil // this node's own entries
	}
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	if r.closed {
		return errDatabaseNotOpen
	}
	tx, err := r.local.Begin(true)
	if err != nil {
		return err
	}
	applied, err := readApplied(tx)
	if err != nil {
		tx.Rollback()
		return &divergence{seq: first, err: err}
	}
	var puts [][][]byte
	n := 0
	for i, e := range entries {
		seq := first + uint64(i)
		if seq <= applied {
			continue
		}
		if seq != applied+1 {
			tx.Rollback()
			return fmt.Errorf("%w: entry %d follows %d", errGap, seq, applied)
		}
		ws, err := parseWriteSet(e)
		if err == nil {
			err = ws.apply(tx, func(p [][]byte) { puts = append(puts, p) })
		}
		if err != nil {
			tx.Rollback()
			return &divergence{seq: seq, err: err}
		}
		applied = seq
		n++
	}
	if n == 0 {
		tx.Rollback()
		return nil
	}
	if err := writeApplied(tx, applied); err != nil {
		tx.Rollback()
		return &divergence{seq: applied, err: err}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	r.setApplied(applied)
	if f := r.onPut.Load(); f != nil {
		for _, p := range puts {
			(*f)(p)
		}
	}
	return nil
}

func (r *replDB) Begin(writable bool) (kvTx, error) {
	if err := r.barrier(); err != nil {
		return nil, err
	}
	tx, err := r.local.Begin(writable)
	if err != nil || !writable {
		return tx, err
	}
	snap, err := readApplied(tx)
	if err != nil {
		tx.Rollback()
		return nil, err
	}
	return &replTx{r: r, tx: tx, snap: snap}, nil
}

// beginRetry begins the write transaction that runs a batch again after
// it lost the race to the log (errConflict): the log has then at least
// the entry that won, and the transaction waits only until the replica
// has applied it, without the round trip to the log's leader that Begin
// makes. The retry holds only requests that arrived before the first
// attempt's barrier, so its reads still include every write
// acknowledged before they arrived; and if the log has grown further,
// the append is refused again as for any stale transaction.
func (r *replDB) beginRetry() (kvTx, error) {
	r.mu.Lock()
	lost := r.lost
	r.mu.Unlock()
	if lost == 0 {
		return r.Begin(true)
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	err := r.waitApplied(ctx, lost)
	cancel()
	if err != nil {
		return nil, err
	}
	tx, err := r.local.Begin(true)
	if err != nil {
		return nil, err
	}
	snap, err := readApplied(tx)
	if err != nil {
		tx.Rollback()
		return nil, err
	}
	return &replTx{r: r, tx: tx, snap: snap}, nil
}

func (r *replDB) View(fn func(kvTx) error) error {
	tx, err := r.Begin(false)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	return fn(tx)
}

// maxConflicts bounds the retries of one transaction that keeps losing
// the race to the log.
const maxConflicts = 1000

func (r *replDB) Update(fn func(kvTx) error) error {
	for range maxConflicts {
		tx, err := r.Begin(true)
		if err != nil {
			return err
		}
		if err := fn(tx); err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); !errors.Is(err, errConflict) {
			return err
		}
	}
	return fmt.Errorf("store: gave up after %d conflicts with other cluster nodes", maxConflicts)
}

// Close stops the follower and closes the replica. It waits for an
// apply in progress, but not long for the follower's calls to the log
// (which, without a quorum, can take seconds to give up): once closed,
// the follower applies nothing.
func (r *replDB) Close() error {
	r.cancel()
	r.applyMu.Lock()
	r.closed = true
	r.applyMu.Unlock()
	select {
	case <-r.done:
	case <-time.After(time.Second):
	}
	return r.local.Close()
}

// replTx is a write transaction of a replica: the local one, recording
// its changes.
type replTx struct {
	r    *replDB
	tx   kvTx
	snap uint64 // entry applied when it began
	ws   writeSet
	done bool
}

func (t *replTx) record(path [][]byte, op wsOp) { t.ws.add(path, op) }

func (t *replTx) Bucket(name []byte) kvBucket {
	b := t.tx.Bucket(name)
	if b == nil {
		return nil
	}
	return &replBucket{t: t, b: b, path: [][]byte{bytes.Clone(name)}}
}

func (t *replTx) CreateBucketIfNotExists(name []byte) (kvBucket, error) {
	if b := t.Bucket(name); b != nil {
		return b, nil
	}
	b, err := t.tx.CreateBucketIfNotExists(name)
	if err != nil {
		return nil, err
	}
	t.record(nil, wsOp{kind: opCreate, name: name})
	return &replBucket{t: t, b: b, path: [][]byte{bytes.Clone(name)}}, nil
}

func (t *replTx) DeleteBucket(name []byte) error {
	if err := t.tx.DeleteBucket(name); err != nil {
		return err
	}
	t.record(nil, wsOp{kind: opDrop, name: name})
	return nil
}

// Empty ignores the replica's own bucket.
func (t *replTx) Empty() bool {
	c := t.tx.Cursor()
	k, _ := c.First()
	if bytes.Equal(k, replicaBucket) {
		k, _ = c.Next()
	}
	return k == nil
}

func (t *replTx) Cursor() kvCursor                   { return readCursor{t.tx.Cursor()} }
func (t *replTx) Writable() bool                     { return true }
func (t *replTx) Size() int64                        { return t.tx.Size() }
func (t *replTx) WriteTo(w io.Writer) (int64, error) { return t.tx.WriteTo(w) }

func (t *replTx) Rollback() error {
	if t.done {
		return nil
	}
	t.done = true
	return t.tx.Rollback()
}

// Commit appends the write set to the log, then commits the replica. A
// transaction that changed nothing appends nothing.
func (t *replTx) Commit() error {
	if t.done {
		return errTxNotWritable
	}
	if t.ws.empty() {
		return t.Rollback()
	}
	if t.ws.size > t.r.log.MaxEntry() {
		t.Rollback()
		return errTooLarge
	}
	entry := t.ws.marshal()
	ctx, cancel := context.WithTimeout(context.Background(), t.r.timeout)
	seq, appended, err := t.r.log.Append(ctx, entry, t.snap)
	cancel()
	if err != nil {
		t.Rollback()
		return fmt.Errorf("%w (appending to the log: %w)", ErrUnavailable, err)
	}
	if !appended {
		t.Rollback()
		t.r.mu.Lock()
		t.r.lost = max(t.r.lost, t.snap+1)
		t.r.mu.Unlock()
		return errConflict
	}
	if seq != t.snap+1 {
		t.Rollback()
		err := fmt.Errorf("the log put the entry expected after %d at %d", t.snap, seq)
		t.r.fail(err)
		return err
	}
	t.done = true
	// From here the write is durable in the cluster. If the replica fails
	// to commit it, the follower applies it from the log.
	if err := writeApplied(t.tx, seq); err != nil {
		t.tx.Rollback()
		return nil
	}
	if err := t.tx.Commit(); err != nil {
		return nil
	}
	t.r.setApplied(seq)
	return nil
}

type replBucket struct {
	t    *replTx
	b    kvBucket
	path [][]byte
}

func (b *replBucket) child(name []byte, nb kvBucket) *replBucket {
	p := make([][]byte, len(b.path)+1)
	copy(p, b.path)
	p[len(b.path)] = bytes.Clone(name)
	return &replBucket{t: b.t, b: nb, path: p}
}

func (b *replBucket) Bucket(name []byte) kvBucket {
	nb := b.b.Bucket(name)
	if nb == nil {
		return nil
	}
	return b.child(name, nb)
}

func (b *replBucket) CreateBucketIfNotExists(name []byte) (kvBucket, error) {
	if nb := b.b.Bucket(name); nb != nil {
		return b.child(name, nb), nil
	}
	nb, err := b.b.CreateBucketIfNotExists(name)
	if err != nil {
		return nil, err
	}
	b.t.record(b.path, wsOp{kind: opCreate, name: name})
	return b.child(name, nb), nil
}

func (b *replBucket) DeleteBucket(name []byte) error {
	if err := b.b.DeleteBucket(name); err != nil {
		return err
	}
	b.t.record(b.path, wsOp{kind: opDrop, name: name})
	return nil
}

func (b *replBucket) Get(key []byte) []byte { return b.b.Get(key) }

func (b *replBucket) Put(key, value []byte) error {
	if err := b.b.Put(key, value); err != nil {
		return err
	}
	b.t.record(b.path, wsOp{kind: opPut, name: key, value: value})
	return nil
}

func (b *replBucket) Delete(key []byte) error {
	if err := b.b.Delete(key); err != nil {
		return err
	}
	b.t.record(b.path, wsOp{kind: opDelete, name: key})
	return nil
}

func (b *replBucket) Sequence() uint64 { return b.b.Sequence() }

func (b *replBucket) NextSequence() (uint64, error) {
	n, err := b.b.NextSequence()
	if err != nil {
		return 0, err
	}
	b.t.record(b.path, wsOp{kind: opSeq, seq: n})
	return n, nil
}

func (b *replBucket) SetSequence(n uint64) error {
	if err := b.b.SetSequence(n); err != nil {
		return err
	}
	b.t.record(b.path, wsOp{kind: opSeq, seq: n})
	return nil
}

func (b *replBucket) Cursor() kvCursor { return &replCursor{c: b.b.Cursor(), b: b} }
func (b *replBucket) AppendOnly()      { b.b.AppendOnly() }

// replCursor records deletions through the cursor.
type replCursor struct {
	c   kvCursor
	b   *replBucket
	key []byte // key under the cursor
}

func (c *replCursor) at(k, v []byte) ([]byte, []byte) {
	c.key = k
	return k, v
}

func (c *replCursor) First() ([]byte, []byte)        { return c.at(c.c.First()) }
func (c *replCursor) Last() ([]byte, []byte)         { return c.at(c.c.Last()) }
func (c *replCursor) Next() ([]byte, []byte)         { return c.at(c.c.Next()) }
func (c *replCursor) Prev() ([]byte, []byte)         { return c.at(c.c.Prev()) }
func (c *replCursor) Seek(s []byte) ([]byte, []byte) { return c.at(c.c.Seek(s)) }

func (c *replCursor) Delete() error {
	key := bytes.Clone(c.key)
	if err := c.c.Delete(); err != nil {
		return err
	}
	c.b.t.record(c.b.path, wsOp{kind: opDelete, name: key})
	return nil
}

// readCursor is a cursor that cannot delete (the root cursor of a
// replica's write transaction, which only Empty uses).
type readCursor struct{ kvCursor }

func (readCursor) Delete() error {
	return errors.New("store: deleting through the root cursor of a replica")
}
