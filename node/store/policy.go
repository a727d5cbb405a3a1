package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// The node's policies on who may register and what is kept: invitation
// tokens, the last time each device was seen (device expiry) and the
// sequence marks that date queued messages (retention). Their buckets
// are made on first use, so no migration is needed and older files open
// unchanged.
var (
	bucketInvites = []byte("invites")     // SHA-256(token) → expiry (unix seconds)
	bucketSeen    = []byte("device-seen") // Ident(device) → last seen (unix seconds)
	bucketMarks   = []byte("queue-marks") // queue key / SeqKey(unix seconds) → SeqKey(last sequence then)
)

// ErrNoInvite is returned for a registration token that is unknown,
// used or expired.
var ErrNoInvite = errors.New("store: no such invitation (unknown, used or expired)")

func unixValue(t time.Time) []byte { return binary.BigEndian.AppendUint64(nil, uint64(t.Unix())) }

func parseUnix(v []byte) (time.Time, error) {
	if len(v) != 8 {
		return time.Time{}, fmt.Errorf("store: time record of %d bytes: %w", len(v), ErrCorrupt)
	}
	return time.Unix(int64(binary.BigEndian.Uint64(v)), 0), nil
}

// AddInvite stores an invitation by the hash of its token, valid until
// expires.
func (s *LocalStore) AddInvite(ctx context.Context, hash []byte, expires time.Time) error {
	if err := checkLen("invitation hash", hash, 32, 32); err != nil {
		return err
	}
	return s.update(ctx, func(tx *Tx) error {
		b, err := tx.CreateBucket(bucketInvites)
		if err != nil {
			return err
		}
		return b.Put(hash, unixValue(expires))
	})
}

// checkInvite returns ErrNoInvite unless the invitation exists and has
// not expired at now; it removes an expired one it finds (in a write
// transaction).
func checkInvite(tx *Tx, hash []byte, now time.Time) error {
	b := tx.Bucket(bucketInvites)
	if b == nil {
		return ErrNoInvite
	}
	v, err := b.Get(hash)
	if errors.Is(err, ErrNotFound) {
		return ErrNoInvite
	}
	if err != nil {
		return err
	}
	exp, err := parseUnix(v)
	if err != nil {
		return err
	}
	if !now.Before(exp) {
		return ErrNoInvite
	}
	return nil
}

// InviteValid returns nil if the invitation can still be used at now,
// ErrNoInvite otherwise. It does not use it up.
func (s *LocalStore) InviteValid(ctx context.Context, hash []byte, now time.Time) error {
	return s.view(ctx, func(tx *Tx) error { return checkInvite(tx, hash, now) })
}

// CreateAccountInvited creates the account and uses up the invitation in
// one transaction: both happen or neither. Errors: ErrNoInvite, ErrExists.
func (s *LocalStore) CreateAccountInvited(ctx context.Context, a Account, hash []byte, now time.Time) error {
	if err := a.check(); err != nil {
		return err
	}
	rec := a.marshal()
	return s.update(ctx, func(tx *Tx) error {
		if err := checkInvite(tx, hash, now); err != nil {
			return err
		}
		b := tx.Bucket(bucketAccounts)
		k := tx.Ident(domainUser, []byte(a.User))
		if err := absent(b, k); err != nil {
			return err
		}
		if err := b.Put(k, rec); err != nil {
			return err
		}
		return tx.Bucket(bucketInvites).Delete(hash)
	})
}

// PruneInvites deletes the invitations expired at now and returns how
// many.
func (s *LocalStore) PruneInvites(ctx context.Context, now time.Time) (int, error) {
	n := 0
	err := s.update(ctx, func(tx *Tx) error {
		n = 0
		b := tx.Bucket(bucketInvites)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v, err := c.First(); k != nil; k, v, err = c.Next() {
			if err != nil {
				return err
			}
			exp, err := parseUnix(v)
			if err != nil {
				return err
			}
			if !now.Before(exp) {
				if err := c.Delete(); err != nil {
					return err
				}
				n++
			}
		}
		return nil
	})
	return n, err
}

// TouchDevice records that device was seen (fetched or authenticated)
// at now.
func (s *LocalStore) TouchDevice(ctx context.Context, device []byte, now time.Time) error {
	return s.update(ctx, func(tx *Tx) error {
		b, err := tx.CreateBucket(bucketSeen)
		if err != nil {
			return err
		}
		return b.Put(tx.Ident(domainDevice, device), unixValue(now))
	})
}

// ExpireDevices drops the queued messages of every device not seen
// since before and marks its queue overflowed: the device is stale and
// must be re-added to its groups (and clear its overflow) to receive
// again. A device never seen is taken as seen at now, so devices from
// before this feature get the full period. It returns the devices newly
// made stale.
func (s *LocalStore) ExpireDevices(ctx context.Context, before, now time.Time) (int, error) {
	n := 0
	err := s.update(ctx, func(tx *Tx) error {
		n = 0
		seen, err := tx.CreateBucket(bucketSeen)
		if err != nil {
			return err
		}
		var stale [][]byte
		c := tx.Bucket(bucketDevices).Cursor()
		for k, v, err := c.First(); k != nil; k, v, err = c.Next() {
			if err != nil {
				return err
			}
			d, err := parseDevice(v)
			if err != nil {
				return err
			}
			if d.Revoked {
				continue
			}
			sv, err := seen.Get(k)
			if errors.Is(err, ErrNotFound) {
				if err := seen.Put(k, unixValue(now)); err != nil {
					return err
				}
				continue
			}
			if err != nil {
				return err
			}
			at, err := parseUnix(sv)
			if err != nil {
				return err
			}
			if at.Before(before) {
				stale = append(stale, d.Key)
			}
		}
		for _, dev := range stale {
			qb := tx.Bucket(bucketQueues, tx.Ident(domainDevice, dev))
			if qb != nil {
				st, err := queueState(qb)
				if err != nil {
					return err
				}
				if st.Overflowed && st.Len == 0 {
					continue // stale already
				}
			}
			if err := closeQueue(tx, dev); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// RetentionSweep bounds how long a message stays queued. A sweep
// records, per queue, the highest sequence number assigned so far with
// the time (a mark; at most one per retention/64, so a queue holds about
// 65 marks), then deletes the messages at or below the newest mark at
// least retention old, marking that queue overflowed (the device lost
// messages and must be re-added). A mark dates messages no earlier than
// they came, so none is dropped early; a message is kept at most
// retention plus retention/64 plus the sweep interval. It returns the
// messages deleted and the queues they were in.
func (s *LocalStore) RetentionSweep(ctx context.Context, now time.Time, retention time.Duration) (dropped uint64, queues int, err error) {
	cutoff := now.Add(-retention).Unix()
	step := int64(max(retention/64, time.Second) / time.Second)
	err = s.update(ctx, func(tx *Tx) error {
		dropped, queues = 0, 0
		qs := tx.Bucket(bucketQueues)
		if qs == nil {
			return nil
		}
		var keys [][]byte
		kc := qs.KeyCursor()
		for k, _, err := kc.First(); k != nil; k, _, err = kc.Next() {
			if err != nil {
				return err
			}
			keys = append(keys, k)
		}
		for _, k := range keys {
			n, err := retainQueue(tx, qs.Bucket(k), k, now, cutoff, step)
			if err != nil {
				return err
			}
			if n > 0 {
				dropped += n
				queues++
			}
		}
		return nil
	})
	return dropped, queues, err
}

// retainQueue applies RetentionSweep to one queue.
func retainQueue(tx *Tx, qb *Bucket, key []byte, now time.Time, cutoff, step int64) (uint64, error) {
	if qb == nil {
		return 0, fmt.Errorf("store: queue entry is not a bucket: %w", ErrCorrupt)
	}
	st, err := queueState(qb)
	if err != nil {
		return 0, err
	}
	marks, err := tx.CreateBucket(bucketMarks, key)
	if err != nil {
		return 0, err
	}
	mc := marks.Cursor()
	lastKey, last, err := mc.Last()
	if err != nil {
		return 0, err
	}
	lastAt, _ := ParseSeqKey(lastKey)
	if !bytes.Equal(last, SeqKey(st.Last)) && (lastKey == nil || now.Unix()-int64(lastAt) >= step) {
		if err := marks.Put(SeqKey(uint64(now.Unix())), SeqKey(st.Last)); err != nil {
			return 0, err
		}
	}
	// The newest mark at or before the cutoff.
	var upTo uint64
	var markKey []byte
	for k, v, err := mc.First(); k != nil; k, v, err = mc.Next() {
		if err != nil {
			return 0, err
		}
		t, ok := ParseSeqKey(k)
		if !ok {
			return 0, fmt.Errorf("store: queue mark key: %w", ErrCorrupt)
		}
		if int64(t) > cutoff {
			break
		}
		seq, ok := ParseSeqKey(v)
		if !ok {
			return 0, fmt.Errorf("store: queue mark: %w", ErrCorrupt)
		}
		upTo, markKey = seq, k
	}
	if markKey == nil {
		return 0, nil
	}
	// Older marks are no longer needed.
	for k, _, err := mc.First(); k != nil && bytes.Compare(k, markKey) < 0; k, _, err = mc.Next() {
		if err != nil {
			return 0, err
		}
		if err := mc.Delete(); err != nil {
			return 0, err
		}
	}
	mb := qb.Bucket(keyMessages)
	if mb == nil {
		return 0, nil
	}
	n, ids, err := dropQueued(mb, upTo)
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, nil
	}
	if err := releaseBodies(tx, ids); err != nil {
		return 0, err
	}
	st.Len -= min(n, st.Len)
	st.Overflowed = true
	return n, qb.Put(keyQueue, st.marshal())
}
