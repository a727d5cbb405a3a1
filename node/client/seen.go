package client

// Duplicates. A sender that lost the node's answer to a send cannot tell
// whether the message arrived, so it sends the very same MLSMessage again
// (live.go). A receiver that applied the first copy finds the second one
// replays a key generation it already used and deleted (RFC 9420,
// Section 9.2: mls.ErrReplay). That copy is dropped silently when its
// exact bytes were applied before; any other replay is still reported as
// refused.
//
// The hashes are kept (HMACed keys in bucket "seen", 32 bytes of
// plaintext hash each) as long as the history is: nothing prunes either.
// TODO: prune hashes of epochs the group has left, whose keys are gone.

import (
	"crypto/sha256"
	"errors"

	"qpchat/node/store"
)

// errDuplicate refuses a delivery that is an exact copy of an applied
// message; applyBatch skips it without a history entry.
var errDuplicate = errors.New("client: duplicate of an applied message")

func seenKey(tx *store.Tx, data []byte) []byte {
	h := sha256.Sum256(data)
	return tx.Ident("seen", h[:])
}

// seenBefore says whether data is an application message applied before
// (in the state, or earlier in this batch).
func (c *Client) seenBefore(b *batch, data []byte) bool {
	h := sha256.Sum256(data)
	for _, s := range b.seen {
		if s == h {
			return true
		}
	}
	found := false
	_ = c.st.db.View(func(tx *store.Tx) error {
		_, err := tx.Bucket(bSeen).Get(seenKey(tx, data))
		found = err == nil
		return nil
	})
	return found
}

// putSeen records the batch's applied application messages.
func putSeen(tx *store.Tx, b *batch) error {
	for _, h := range b.seen {
		if err := tx.Bucket(bSeen).Put(tx.Ident("seen", h[:]), []byte{}); err != nil {
			return err
		}
	}
	return nil
}
