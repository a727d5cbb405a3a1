package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Per-device queues of the server schema.

// enqueue appends encoded queue entries (envelopes or body references)
// to a device's queue and returns how many it appended: all, or a prefix
// if the queue fills. A full queue is marked overflowed and drops this
// and later messages instead of failing the sender; the device is then
// appended to overflowed once.
func (s *LocalStore) enqueue(tx *Tx, device []byte, envs [][]byte, overflowed *[][]byte) (int, error) {
	id := tx.Ident(domainDevice, device)
	qb, err := tx.CreateBucket(bucketQueues, id)
	if err != nil {
		return 0, err
	}
	st, err := queueState(qb)
	if err != nil {
		return 0, err
	}
	if st.Overflowed {
		return 0, nil
	}
	mb, err := qb.CreateBucket(keyMessages)
	if err != nil {
		return 0, err
	}
	mb.AppendOnly() // sequence numbers only grow
	added := 0
	for _, e := range envs {
		if st.Len >= uint64(s.limits.MaxQueueLen) {
			st.Overflowed = true
			*overflowed = append(*overflowed, device)
			break
		}
		st.Last++
		st.Len++
		if err := mb.Put(SeqKey(st.Last), e); err != nil {
			return 0, err
		}
		added++
	}
	if added > 0 {
		tx.OnCommit(func() { s.signals.notify(string(id)) })
	}
	return added, qb.Put(keyQueue, st.marshal())
}

// closeQueue deletes the waiting messages of a revoked device (releasing
// the shared bodies they reference) and leaves its queue marked
// overflowed, so that fan-out to it (it stays in its groups until
// another device of its user removes it) stores nothing more, at no
// extra cost per send, and its sequence numbers are never reused.
func closeQueue(tx *Tx, device []byte) error {
	qb, err := tx.CreateBucket(bucketQueues, tx.Ident(domainDevice, device))
	if err != nil {
		return err
	}
	st, err := queueState(qb)
	if err != nil {
		return err
	}
	var ids []uint64
	if mb := qb.Bucket(keyMessages); mb != nil {
		c := mb.KeyCursor()
		for k, _, err := c.First(); k != nil; k, _, err = c.Next() {
			if err != nil {
				return err
			}
			id, err := refOf(c)
			if err != nil {
				return err
			}
			if id != 0 {
				ids = append(ids, id)
			}
		}
	}
	if err := qb.DeleteBucket(keyMessages); err != nil {
		return err
	}
	if err := releaseBodies(tx, ids); err != nil {
		return err
	}
	st.Len, st.Overflowed = 0, true
	return qb.Put(keyQueue, st.marshal())
}

func queueState(qb *Bucket) (QueueState, error) {
	v, err := qb.Get(keyQueue)
	if errors.Is(err, ErrNotFound) {
		return QueueState{}, nil
	}
	if err != nil {
		return QueueState{}, err
	}
	return parseQueueState(v)
}

// A damaged queued record (its value fails authentication or does not
// parse) costs its device that one message, not the queue: Fetch skips it
// and reports its sequence number in FetchResult.Lost, and marks it lost
// by replacing the value with the sealed empty value (lostMarker), so
// that the node reports each damaged record once (FetchResult.Damaged)
// while the device keeps being told until it acks past it. A key that is
// not a sequence number names no message; it is deleted. A damaged
// shared body (bodies.go) is marked lost in the bodies bucket instead,
// once for all the devices referencing it, and each of them sees its
// entry as lost.

// Fetch implements Store.
func (s *LocalStore) Fetch(ctx context.Context, device []byte, after uint64, limit, maxBytes int) (FetchResult, error) {
	if limit <= 0 {
		limit = 1000
	}
	var res FetchResult
	var damaged [][]byte // keys found damaged (or pointing at a damaged body) and not yet marked
	err := s.view(ctx, func(tx *Tx) error {
		res, damaged = FetchResult{}, nil
		qb := tx.Bucket(bucketQueues, tx.Ident(domainDevice, device))
		if qb == nil {
			return nil
		}
		var err error
		if res.Queue, err = queueState(qb); err != nil {
			return err
		}
		mb := qb.Bucket(keyMessages)
		if mb == nil || after == ^uint64(0) {
			return nil
		}
		size := 0
		c := mb.Cursor()
		for k, v, err := c.Seek(SeqKey(after + 1)); k != nil && len(res.Messages)+len(res.Lost) < limit; k, v, err = c.Next() {
			if err != nil && !errors.Is(err, ErrCorrupt) {
				return err
			}
			seq, ok := ParseSeqKey(k)
			if !ok {
				damaged = append(damaged, k)
				continue
			}
			if err == nil && len(v) == 0 {
				res.Lost = append(res.Lost, seq) // marked lost before
				continue
			}
			var q queuedRecord
			if err == nil {
				q, err = parseQueued(v)
			}
			if err == nil && q.Ref.ID != 0 {
				var body []byte
				body, err = readBody(tx, q.Ref.ID)
				if err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrNotFound) {
					return err
				}
				if err == nil && len(body) == 0 {
					res.Lost = append(res.Lost, seq) // its body was marked lost before
					continue
				}
				if err == nil {
					q.Env, err = parseEnvelope(body)
				}
			}
			if err != nil {
				damaged = append(damaged, k)
				res.Lost = append(res.Lost, seq)
				continue
			}
			n := q.Env.answerSize()
			if maxBytes > 0 && len(res.Messages) > 0 && size+n > maxBytes {
				break
			}
			size += n
			res.Messages = append(res.Messages, QueuedMessage{Seq: seq, Envelope: q.Env})
		}
		return nil
	})
	if err != nil {
		return FetchResult{}, err
	}
	if len(damaged) > 0 {
		// Failing to mark costs nothing but a repeated report; the fetch
		// itself stands.
		res.Damaged, _ = s.markLost(ctx, device, damaged)
	}
	return res, nil
}

// lostMarker is the plaintext of a queued record or shared body marked
// lost: an envelope is never empty.
var lostMarker = []byte{}

// markLost replaces the damaged records under keys in device's queue by
// lostMarker (or deletes them, for keys that are no sequence numbers),
// and the damaged shared bodies they reference by lostMarker too, and
// returns how many records it changed: records another fetch marked
// meanwhile are not counted again.
func (s *LocalStore) markLost(ctx context.Context, device []byte, keys [][]byte) (int, error) {
	n := 0
	err := s.update(ctx, func(tx *Tx) error {
		n = 0
		qb := tx.Bucket(bucketQueues, tx.Ident(domainDevice, device))
		if qb == nil {
			return nil
		}
		mb := qb.Bucket(keyMessages)
		if mb == nil {
			return nil
		}
		for _, k := range keys {
			v, err := mb.Get(k)
			switch {
			case errors.Is(err, ErrNotFound):
				continue // acknowledged meanwhile
			case err == nil && len(v) == 0:
				continue // marked meanwhile
			case err == nil:
				q, perr := parseQueued(v)
				if perr != nil {
					break // the entry is damaged
				}
				if q.Ref.ID == 0 {
					continue // not damaged after all
				}
				changed, err := markBodyLost(tx, q.Ref.ID)
				if errors.Is(err, errDangling) {
					// The entry itself is damaged; a count left without
					// its body goes with it.
					if err := releaseBodies(tx, []uint64{q.Ref.ID}); err != nil {
						return err
					}
					break
				}
				if err != nil {
					return err
				}
				if changed {
					n++
				}
				continue
			case !errors.Is(err, ErrCorrupt):
				return err
			}
			if _, ok := ParseSeqKey(k); !ok {
				err = mb.Delete(k)
			} else {
				err = mb.Put(k, lostMarker)
			}
			if err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// markBodyLost replaces shared body id by lostMarker if it is damaged,
// so that every device referencing it sees its entry as lost and the
// damage is reported once, and reports whether it changed it. A body
// that is missing altogether (errDangling) makes the reference itself
// damaged.
func markBodyLost(tx *Tx, id uint64) (bool, error) {
	bodies := tx.Bucket(bucketBodies)
	if bodies == nil {
		return false, fmt.Errorf("store: bodies bucket missing: %w", ErrCorrupt)
	}
	k := SeqKey(id)
	v, err := bodies.Get(k)
	switch {
	case err == nil && len(v) == 0:
		return false, nil // marked meanwhile
	case err == nil:
		if _, perr := parseEnvelope(v); perr == nil {
			return false, nil // not damaged after all
		}
	case errors.Is(err, ErrNotFound):
		return false, errDangling
	case !errors.Is(err, ErrCorrupt):
		return false, err
	}
	return true, bodies.Put(k, lostMarker)
}

// errDangling is markBodyLost's answer for a reference to a body that
// does not exist.
var errDangling = errors.New("store: reference to a missing body")

// answerSize is what a message takes in a fetch answer besides framing:
// its data and its stamp (group, sender, added and removed device keys),
// each list element with 8 bytes of Cap'n Proto pointer.
func (e *Envelope) answerSize() int {
	n := len(e.Data) + len(e.Group) + len(e.Sender) + 64
	for _, k := range e.Added {
		n += len(k) + 8
	}
	for _, k := range e.Removed {
		n += len(k) + 8
	}
	return n
}

// Ack implements Store.
func (s *LocalStore) Ack(ctx context.Context, device []byte, upTo uint64) error {
	return s.update(ctx, func(tx *Tx) error {
		qb := tx.Bucket(bucketQueues, tx.Ident(domainDevice, device))
		if qb == nil {
			return nil
		}
		mb := qb.Bucket(keyMessages)
		if mb == nil {
			return nil
		}
		st, err := queueState(qb)
		if err != nil {
			return err
		}
		n, ids, err := dropQueued(mb, upTo)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if err := releaseBodies(tx, ids); err != nil {
			return err
		}
		st.Len -= min(n, st.Len)
		return qb.Put(keyQueue, st.marshal())
	})
}

// dropQueued deletes the entries of a queue's message bucket up to
// sequence upTo (and keys that are no sequence numbers among them) and
// returns how many, with the shared bodies they referenced, for the
// caller to release.
func dropQueued(mb *Bucket, upTo uint64) (n uint64, ids []uint64, err error) {
	c := mb.KeyCursor()
	for k, _, err := c.First(); k != nil; k, _, err = c.Next() {
		if err != nil {
			return 0, nil, err
		}
		seq, ok := ParseSeqKey(k)
		if ok && seq > upTo {
			break
		}
		id, err := refOf(c)
		if err != nil {
			return 0, nil, err
		}
		if id != 0 {
			ids = append(ids, id)
		}
		if err := c.Delete(); err != nil {
			return 0, nil, err
		}
		n++
	}
	return n, ids, nil
}

// ClearOverflow implements Store.
func (s *LocalStore) ClearOverflow(ctx context.Context, device []byte) error {
	return s.update(ctx, func(tx *Tx) error {
		qb := tx.Bucket(bucketQueues, tx.Ident(domainDevice, device))
		if qb == nil {
			return nil
		}
		st, err := queueState(qb)
		if err != nil || !st.Overflowed {
			return err
		}
		st.Overflowed = false
		return qb.Put(keyQueue, st.marshal())
	})
}

// QueueSignal implements Store.
func (s *LocalStore) QueueSignal(device []byte) <-chan struct{} {
	return s.signals.wait(string(s.db.Ident(domainDevice, device)))
}

// signals wakes fetchWait callers: one channel per device (by the HMAC
// that names its queue bucket, so that a cluster replica can wake them
// from the bucket paths of another node's writes), closed (and replaced)
// when a message for it is durably queued.
type signals struct {
	mu sync.Mutex
	m  map[string]chan struct{}
}

func (s *signals) wait(dev string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, ok := s.m[dev]
	if !ok {
		ch = make(chan struct{})
		s.m[dev] = ch
	}
	return ch
}

func (s *signals) notify(dev string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ch, ok := s.m[dev]; ok {
		close(ch)
		delete(s.m, dev)
	}
}
