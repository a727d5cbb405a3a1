package client

// The history of a group, read back from the state's events bucket
// (state.go), where every message shown or sent and every change of a
// group is stored, in the same transaction that applies it (sync.go), and
// kept until the profile is deleted (logout). There is no cap per group
// today: the history grows with the state file.

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"qpchat/node/store"
)

// HistoryOptions select entries of a group's history. Zero fields select
// everything.
type HistoryOptions struct {
	// Limit keeps only the newest Limit entries (0: all).
	Limit int
	// Since keeps only entries stored at or after Since (zero: all).
	Since time.Time
}

// History returns the history of the group named name, oldest first, and
// the number of damaged entries skipped (State.Check replaces damaged
// entries when the state opens, so this is 0 unless damage appeared
// since; the caller says so). It reads only the state.
func (c *Client) History(name string, opts HistoryOptions) ([]*Event, int, error) {
	var out []*Event
	skipped := 0
	err := c.st.db.View(func(tx *store.Tx) error {
		id, err := getGroupByName(tx, name)
		if errors.Is(err, store.ErrNotFound) {
			return ErrUnknownGroup
		}
		if err != nil {
			return err
		}
		cur := tx.Bucket(bEvents).Cursor()
		for k, v, err := cur.Last(); k != nil; k, v, err = cur.Prev() {
			if errors.Is(err, store.ErrCorrupt) {
				skipped++
				continue
			}
			if err != nil {
				return err
			}
			e, perr := parseEvent(v)
			if perr != nil {
				skipped++
				continue
			}
			if !bytes.Equal(e.Group, id) {
				continue
			}
			if !opts.Since.IsZero() && e.Time < opts.Since.Unix() {
				continue
			}
			e.Seq, _ = store.ParseSeqKey(k)
			out = append(out, e)
			if opts.Limit > 0 && len(out) >= opts.Limit {
				break
			}
		}
		return nil
	})
	if errors.Is(err, ErrUnknownGroup) {
		return nil, 0, fmt.Errorf("%w %q", ErrUnknownGroup, name)
	}
	// Newest first above: turn around.
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, skipped, err
}
