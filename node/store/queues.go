package store

import (
	"context"
	"errors"
	"sync"
)

// Per-device queues of the server schema.

// enqueue appends encoded envelopes to a device's queue. A full queue is
// marked overflowed and drops this and later messages instead of failing
// the sender; the device is then appended to overflowed once.
func (s *LocalStore) enqueue(tx *Tx, device []byte, envs [][]byte, overflowed *[][]byte) error {
	id := tx.Ident(domainDevice, device)
	qb, err := tx.CreateBucket(bucketQueues, id)
	if err != nil {
		return err
	}
	st, err := queueState(qb)
	if err != nil {
		return err
	}
	if st.Overflowed {
		return nil
	}
	mb, err := qb.CreateBucket(keyMessages)
	if err != nil {
		return err
	}
	mb.AppendOnly() // sequence numbers only grow
	added := false
	for _, e := range envs {
		if st.Len >= uint64(s.limits.MaxQueueLen) {
			st.Overflowed = true
			*overflowed = append(*overflowed, device)
			break
		}
		st.Last++
		st.Len++
		if err := mb.Put(SeqKey(st.Last), e); err != nil {
			return err
		}
		added = true
	}
	if added {
		tx.OnCommit(func() { s.signals.notify(string(id)) })
	}
	return qb.Put(keyQueue, st.marshal())
}

// closeQueue deletes the waiting messages of a revoked device and leaves
// its queue marked overflowed, so that fan-out to it (it stays in its
// groups until another device of its user removes it) stores nothing
// more, at no extra cost per send, and its sequence numbers are never
// reused.
func closeQueue(tx *Tx, device []byte) error {
	qb, err := tx.CreateBucket(bucketQueues, tx.Ident(domainDevice, device))
	if err != nil {
		return err
	}
	st, err := queueState(qb)
	if err != nil {
		return err
	}
	if err := qb.DeleteBucket(keyMessages); err != nil {
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
// not a sequence number names no message; it is deleted.

// Fetch implements Store.
func (s *LocalStore) Fetch(ctx context.Context, device []byte, after uint64, limit, maxBytes int) (FetchResult, error) {
	if limit <= 0 {
		limit = 1000
	}
	var res FetchResult
	var damaged [][]byte // keys found damaged and not yet marked
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
			var e Envelope
			if err == nil {
				e, err = parseEnvelope(v)
			}
			if err != nil {
				damaged = append(damaged, k)
				res.Lost = append(res.Lost, seq)
				continue
			}
			n := e.answerSize()
			if maxBytes > 0 && len(res.Messages) > 0 && size+n > maxBytes {
				break
			}
			size += n
			res.Messages = append(res.Messages, QueuedMessage{Seq: seq, Envelope: e})
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

// lostMarker is the plaintext of a queued record marked lost: an
// envelope is never empty.
var lostMarker = []byte{}

// markLost replaces the damaged records under keys in device's queue by
// lostMarker (or deletes them, for keys that are no sequence numbers) and
// returns how many it changed: records another fetch marked meanwhile
// are not counted again.
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
				if _, perr := parseEnvelope(v); perr == nil {
					continue // not damaged after all
				}
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
		var n uint64
		c := mb.KeyCursor()
		for k, _, err := c.First(); k != nil; k, _, err = c.Next() {
			if err != nil {
				return err
			}
			seq, ok := ParseSeqKey(k)
			if ok && seq > upTo {
				break
			}
			if err := c.Delete(); err != nil {
				return err
			}
			n++
		}
		if n == 0 {
			return nil
		}
		st.Len -= min(n, st.Len)
		return qb.Put(keyQueue, st.marshal())
	})
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
