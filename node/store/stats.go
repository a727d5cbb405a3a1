package store

import (
	"context"
	"fmt"
)

// QueueStats summarises the device queues without naming any device.
type QueueStats struct {
	Queues     int    // device queues
	Messages   uint64 // messages waiting in all of them
	Overflowed int    // queues marked overflowed (revoked devices included)
	// Bodies counts the shared message bodies (bodies.go), each stored
	// once for all the queues referencing it; BodyBytes is their size
	// before sealing. Messages counts each reference as one message.
	Bodies    int
	BodyBytes uint64
	// Buckets[i] counts the queues holding at most Bounds[i] messages
	// (cumulative, as a Prometheus histogram); queues above the last
	// bound are counted only in Queues.
	Bounds  []uint64
	Buckets []uint64
}

// QueueStats walks every queue's state record (not its messages) and the
// keys of the shared bodies in one read transaction and counts queue lengths into the given upper bounds,
// which must be ascending.
func (s *LocalStore) QueueStats(ctx context.Context, bounds []uint64) (QueueStats, error) {
	st := QueueStats{Bounds: bounds, Buckets: make([]uint64, len(bounds))}
	err := s.view(ctx, func(tx *Tx) error {
		st.Queues, st.Messages, st.Overflowed, st.Bodies, st.BodyBytes = 0, 0, 0, 0, 0
		clear(st.Buckets)
		if bodies := tx.Bucket(bucketBodies); bodies != nil {
			c := bodies.KeyCursor()
			for k, _, err := c.First(); k != nil; k, _, err = c.Next() {
				if err != nil {
					return err
				}
				st.Bodies++
				st.BodyBytes += uint64(max(c.ValueLen(), 0))
			}
		}
		qs := tx.Bucket(bucketQueues)
		if qs == nil {
			return nil
		}
		c := qs.KeyCursor()
		for k, _, err := c.First(); k != nil; k, _, err = c.Next() {
			if err != nil {
				return err
			}
			qb := qs.Bucket(k)
			if qb == nil {
				return fmt.Errorf("store: queue entry is not a bucket: %w", ErrCorrupt)
			}
			q, err := queueState(qb)
			if err != nil {
				return err
			}
			st.Queues++
			st.Messages += q.Len
			if q.Overflowed {
				st.Overflowed++
			}
			for i, b := range bounds {
				if q.Len <= b {
					st.Buckets[i]++
				}
			}
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		return nil
	})
	return st, err
}

// Size returns the size of the store's file in bytes.
func (s *LocalStore) Size() (int64, error) { return s.db.Size() }
