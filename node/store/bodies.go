package store

import (
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
)

// Shared message bodies (server migration 5).
//
// A message fanned out to more than one device (a commit to a group's
// members, a Welcome to the devices a commit adds, an application
// message to a group of three or more) is stored once: its Envelope
// goes to the bodies bucket under a number drawn from that bucket's
// sequence, and each device's queue entry holds a reference to it
// (bodyRef, 10 bytes before sealing) instead of a copy. The body's
// reference count lives beside it in body-refs. Every path that drops a
// queue entry (Ack, closeQueue for RevokeDevice, DeleteAccount and
// ExpireDevices, RetentionSweep) releases its reference in the same
// transaction, and the body and its count go with the last one. A
// message for one device stays inline in its queue, as before.
//
// Before, a Welcome of 350 KB for 250 added devices was sealed and
// written 250 times; now it is written once, plus 250 references.
//
// Limits: a shared body counts against every device that references it
// exactly as its own copy did: one message of MaxQueueLen, and its full
// size in a Fetch's byte limit. Sharing saves the node's disk and write
// time, never a device's quota.
//
// Damage: a body that fails authentication or does not parse is
// replaced by the lost marker (the sealed empty value) the first time a
// fetch meets it, and counted once in FetchResult.Damaged; every
// referencing entry is then reported in FetchResult.Lost until its
// device acks past it, like a damaged entry of its own. A reference
// whose body is missing is replaced by the lost marker in its queue. A
// damaged reference, or a damaged count, cannot be released: its body
// stays until the file is compacted by hand (doc.go, Caveats).
var (
	bucketBodies    = []byte("bodies")    // SeqKey(id) → Envelope, or the lost marker
	bucketBodyCount = []byte("body-refs") // SeqKey(id) → bodyCount
)

// bodyRefTag follows the format byte of a queue entry that is a
// reference. An Envelope has its kind there, which is never 0, so a
// queue entry is unambiguously one or the other.
const bodyRefTag = 0

// bodyRefLen is the length of an encoded bodyRef. No Envelope is this
// short (its smallest encoding has 18 bytes), so a queue entry of any
// other length needs no opening to be known not to be a reference.
const bodyRefLen = 10

// bodyRef is a queue entry that points at a shared body.
type bodyRef struct {
	ID uint64 // key of the body in bucketBodies; never 0
}

func (r *bodyRef) marshal() []byte {
	return build(func(b *cryptobyte.Builder) {
		b.AddUint8(bodyRefTag)
		b.AddUint64(r.ID)
	})
}

func parseBodyRef(data []byte) (bodyRef, error) {
	var r bodyRef
	var tag uint8
	s := cryptobyte.String(data)
	ok := readFormat(&s) && s.ReadUint8(&tag) && tag == bodyRefTag && s.ReadUint64(&r.ID) && r.ID != 0
	if err := finish(s, ok, "body reference"); err != nil {
		return bodyRef{}, err
	}
	return r, nil
}

// bodyCount is the number of queue entries referencing a body; a body
// without references is deleted, so a stored count is never 0.
type bodyCount struct {
	Refs uint64
}

func (c *bodyCount) marshal() []byte {
	return build(func(b *cryptobyte.Builder) { b.AddUint64(c.Refs) })
}

func parseBodyCount(data []byte) (bodyCount, error) {
	var c bodyCount
	s := cryptobyte.String(data)
	ok := readFormat(&s) && s.ReadUint64(&c.Refs) && c.Refs != 0
	if err := finish(s, ok, "body count"); err != nil {
		return bodyCount{}, err
	}
	return c, nil
}

// queuedRecord is a parsed queue entry: an inline Envelope, or a
// reference to a shared body (Ref.ID != 0).
type queuedRecord struct {
	Ref bodyRef
	Env Envelope
}

func (q *queuedRecord) marshal() []byte {
	if q.Ref.ID != 0 {
		return q.Ref.marshal()
	}
	return q.Env.marshal()
}

// parseQueued parses a queue entry (not the lost marker).
func parseQueued(data []byte) (queuedRecord, error) {
	if len(data) == bodyRefLen {
		r, err := parseBodyRef(data)
		if err != nil {
			return queuedRecord{}, err
		}
		return queuedRecord{Ref: r}, nil
	}
	e, err := parseEnvelope(data)
	if err != nil {
		return queuedRecord{}, err
	}
	return queuedRecord{Env: e}, nil
}

// fanOut queues the encoded envelopes envs, in order, for every device
// of devs, storing each envelope once as a shared body when there is
// more than one device. Devices whose queues overflow get a prefix of
// envs or nothing (enqueue); a body no queue took is not written.
func (s *LocalStore) fanOut(tx *Tx, devs [][]byte, envs [][]byte, overflowed *[][]byte) error {
	if len(devs) == 0 || len(envs) == 0 {
		return nil
	}
	if len(devs) == 1 {
		_, err := s.enqueue(tx, devs[0], envs, overflowed)
		return err
	}
	bodies := tx.Bucket(bucketBodies)
	if bodies == nil {
		return fmt.Errorf("store: bodies bucket missing: %w", ErrCorrupt)
	}
	ids := make([]uint64, len(envs))
	refs := make([][]byte, len(envs))
	for i := range envs {
		id, err := bodies.NextSequence()
		if err != nil {
			return err
		}
		ids[i] = id
		refs[i] = (&bodyRef{ID: id}).marshal()
	}
	counts := make([]uint64, len(envs))
	for _, d := range devs {
		n, err := s.enqueue(tx, d, refs, overflowed)
		if err != nil {
			return err
		}
		for i := range n {
			counts[i]++
		}
	}
	bodies.AppendOnly()
	countB := tx.Bucket(bucketBodyCount)
	if countB == nil {
		return fmt.Errorf("store: body-refs bucket missing: %w", ErrCorrupt)
	}
	countB.AppendOnly()
	for i, id := range ids {
		if counts[i] == 0 {
			continue // every queue was full; the number stays unused
		}
		if err := bodies.Put(SeqKey(id), envs[i]); err != nil {
			return err
		}
		if err := countB.Put(SeqKey(id), (&bodyCount{Refs: counts[i]}).marshal()); err != nil {
			return err
		}
	}
	return nil
}

// releaseBodies drops one reference to each body of ids, deleting a body
// and its count with the last reference. A missing count (released
// already, or never written after damage) is skipped; a damaged count
// cannot be trusted either way, so its body is kept.
func releaseBodies(tx *Tx, ids []uint64) error {
	if len(ids) == 0 {
		return nil
	}
	bodies, countB := tx.Bucket(bucketBodies), tx.Bucket(bucketBodyCount)
	if bodies == nil || countB == nil {
		return fmt.Errorf("store: bodies bucket missing: %w", ErrCorrupt)
	}
	for _, id := range ids {
		k := SeqKey(id)
		v, err := countB.Get(k)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		var c bodyCount
		if err == nil {
			c, err = parseBodyCount(v)
		}
		if errors.Is(err, ErrCorrupt) {
			continue
		}
		if err != nil {
			return err
		}
		if c.Refs > 1 {
			c.Refs--
			if err := countB.Put(k, c.marshal()); err != nil {
				return err
			}
			continue
		}
		if err := bodies.Delete(k); err != nil {
			return err
		}
		if err := countB.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// refOf returns the body a queue entry under the cursor references, if
// it is a reference that opens. Entries of any other length are not
// opened (see bodyRefLen).
func refOf(c *Cursor) (uint64, error) {
	if c.ValueLen() != bodyRefLen {
		return 0, nil
	}
	v, err := c.Value()
	if errors.Is(err, ErrCorrupt) {
		return 0, nil // a damaged entry: its body, if any, cannot be named
	}
	if err != nil {
		return 0, err
	}
	r, err := parseBodyRef(v)
	if err != nil {
		return 0, nil
	}
	return r.ID, nil
}

// readBody returns the shared body id. A body marked lost returns
// lostMarker, nil.
func readBody(tx *Tx, id uint64) ([]byte, error) {
	bodies := tx.Bucket(bucketBodies)
	if bodies == nil {
		return nil, fmt.Errorf("store: bodies bucket missing: %w", ErrCorrupt)
	}
	return bodies.Get(SeqKey(id))
}

// createBodyBuckets is server migration 5: the buckets of shared
// bodies. Queue entries written before stay inline and keep working;
// the version step keeps an older binary, which would take references
// for damaged records, from opening the file.
func createBodyBuckets(tx *Tx) error {
	for _, name := range [][]byte{bucketBodies, bucketBodyCount} {
		if _, err := tx.CreateBucket(name); err != nil {
			return err
		}
	}
	return nil
}
