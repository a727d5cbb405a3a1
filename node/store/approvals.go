package store

import (
	"context"
	"errors"
	"fmt"
)

// Device approvals and first devices of the server schema
// (docs/PROTOCOL.md, "Device approval"). The store keeps approval
// records as opaque bytes: the server parses and verifies them before
// PutApproval and hands them to inviters, who verify them again.

// FirstDevice implements Store.
func (s *LocalStore) FirstDevice(ctx context.Context, user string) ([]byte, error) {
	var key []byte
	err := s.view(ctx, func(tx *Tx) (err error) {
		key, err = tx.Bucket(bucketFirstDevice).Get(tx.Ident(domainUser, []byte(user)))
		return err
	})
	return key, err
}

// PutApproval implements Store.
func (s *LocalStore) PutApproval(ctx context.Context, user string, device, approver, record []byte, max int) error {
	if err := errors.Join(checkLen("user name", []byte(user), 1, MaxUserLen),
		checkLen("approved device key", device, 1, MaxKeyLen),
		checkLen("approver device key", approver, 1, MaxKeyLen),
		checkLen("approval record", record, 1, MaxBlobLen)); err != nil {
		return err
	}
	return s.update(ctx, func(tx *Tx) error {
		u := tx.Ident(domainUser, []byte(user))
		if _, err := tx.Bucket(bucketAccounts).Get(u); err != nil {
			return fmt.Errorf("store: account of approval: %w", err)
		}
		b, err := tx.CreateBucket(bucketApprovals, u)
		if err != nil {
			return err
		}
		k := approvalID(tx, device, approver)
		if err := absent(b, k); errors.Is(err, ErrExists) {
			return b.Put(k, record) // the same pair again: replace, not count
		} else if err != nil {
			return err
		}
		n := 0
		c := b.KeyCursor()
		for k, _, err := c.First(); k != nil; k, _, err = c.Next() {
			if err != nil {
				return err
			}
			n++
		}
		if n >= max {
			return fmt.Errorf("%w: the user has %d approval records, at most %d", ErrLimit, n, max)
		}
		return b.Put(k, record)
	})
}

// approvalID keys an approval by its (approved, approver) pair. Both keys
// have a fixed length (they are Ed25519 keys when they reach the store),
// so the concatenation is unambiguous; the server checks that.
func approvalID(tx *Tx, device, approver []byte) []byte {
	return tx.Ident(domainApproval, append(append([]byte{byte(len(device))}, device...), approver...))
}

// Approvals implements Store.
func (s *LocalStore) Approvals(ctx context.Context, user string) (records [][]byte, damaged int, err error) {
	err = s.view(ctx, func(tx *Tx) error {
		records, damaged = nil, 0
		b := tx.Bucket(bucketApprovals, tx.Ident(domainUser, []byte(user)))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v, err := c.First(); k != nil; k, v, err = c.Next() {
			switch {
			case errors.Is(err, ErrCorrupt):
				damaged++ // an inviter then trusts fewer devices, never more
			case err != nil:
				return err
			case v != nil:
				records = append(records, v)
			}
		}
		return nil
	})
	return records, damaged, err
}

// recordFirstDevices is server migration 3: the approvals and
// first-device buckets are created, and every account with exactly one
// device record gets that device as its first. An account with several
// devices already has no record of which came first (device records
// carry no time and are keyed by HMAC), so it gets none: inviters then
// add none of its devices and say why (fail closed; docs/PROTOCOL.md).
func recordFirstDevices(tx *Tx) error {
	if _, err := tx.CreateBucket(bucketApprovals); err != nil {
		return err
	}
	first, err := tx.CreateBucket(bucketFirstDevice)
	if err != nil {
		return err
	}
	users := tx.Bucket(bucketUserDevices)
	type rec struct{ user, device []byte }
	var recs []rec
	c := users.KeyCursor()
	for u, _, err := c.First(); u != nil; u, _, err = c.Next() {
		if err != nil {
			return err
		}
		list := users.Bucket(u)
		if list == nil {
			continue
		}
		var only []byte
		n := 0
		lc := list.Cursor()
		for k, v, err := lc.First(); k != nil; k, v, err = lc.Next() {
			if err != nil {
				return err
			}
			only = v
			n++
		}
		if n == 1 {
			recs = append(recs, rec{u, only})
		}
	}
	for _, r := range recs {
		if err := first.Put(r.user, r.device); err != nil {
			return err
		}
	}
	return nil
}
