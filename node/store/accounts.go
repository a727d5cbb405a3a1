package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
)

// Accounts and devices of the server schema.

// CreateAccount implements Store.
func (s *LocalStore) CreateAccount(ctx context.Context, a Account) error {
	if err := a.check(); err != nil {
		return err
	}
	rec := a.marshal()
	return s.update(ctx, func(tx *Tx) error {
		b := tx.Bucket(bucketAccounts)
		k := tx.Ident(domainUser, []byte(a.User))
		if err := absent(b, k); err != nil {
			return err
		}
		return b.Put(k, rec)
	})
}

// absent returns nil if key is not in b, ErrExists if it is.
func absent(b *Bucket, key []byte) error {
	_, err := b.Get(key)
	switch {
	case err == nil:
		return ErrExists
	case errors.Is(err, ErrNotFound):
		return nil
	default:
		return err
	}
}

// Account implements Store.
func (s *LocalStore) Account(ctx context.Context, user string) (Account, error) {
	var a Account
	err := s.view(ctx, func(tx *Tx) error {
		v, err := tx.Bucket(bucketAccounts).Get(tx.Ident(domainUser, []byte(user)))
		if err != nil {
			return err
		}
		a, err = parseAccount(v)
		return err
	})
	return a, err
}

// ReplaceAccount implements Store.
func (s *LocalStore) ReplaceAccount(ctx context.Context, a Account) error {
	if err := a.check(); err != nil {
		return err
	}
	rec := a.marshal()
	return s.update(ctx, func(tx *Tx) error {
		b := tx.Bucket(bucketAccounts)
		k := tx.Ident(domainUser, []byte(a.User))
		if _, err := b.Get(k); err != nil {
			return err
		}
		return b.Put(k, rec)
	})
}

// AddDevice implements Store.
func (s *LocalStore) AddDevice(ctx context.Context, d Device) error {
	if err := errors.Join(checkLen("user name", []byte(d.User), 1, MaxUserLen),
		checkLen("device key", d.Key, 1, MaxKeyLen),
		checkLen("device certificate", d.Certificate, 0, MaxBlobLen)); err != nil {
		return err
	}
	rec := d.marshal()
	return s.update(ctx, func(tx *Tx) error {
		user := tx.Ident(domainUser, []byte(d.User))
		if _, err := tx.Bucket(bucketAccounts).Get(user); err != nil {
			return fmt.Errorf("store: account of device: %w", err)
		}
		devices := tx.Bucket(bucketDevices)
		k := tx.Ident(domainDevice, d.Key)
		if err := absent(devices, k); err != nil {
			return err
		}
		if err := devices.Put(k, rec); err != nil {
			return err
		}
		if tx.Bucket(bucketUserDevices, user) == nil {
			// The user's first device: the root of its approvals.
			if err := tx.Bucket(bucketFirstDevice).Put(user, d.Key); err != nil {
				return err
			}
		}
		list, err := tx.CreateBucket(bucketUserDevices, user)
		if err != nil {
			return err
		}
		return list.Put(k, d.Key)
	})
}

func getDevice(tx *Tx, key []byte) (Device, error) {
	v, err := tx.Bucket(bucketDevices).Get(tx.Ident(domainDevice, key))
	if err != nil {
		return Device{}, err
	}
	return parseDevice(v)
}

// Device implements Store.
func (s *LocalStore) Device(ctx context.Context, key []byte) (Device, error) {
	var d Device
	err := s.view(ctx, func(tx *Tx) (err error) {
		d, err = getDevice(tx, key)
		return err
	})
	return d, err
}

// userDevices lists the device records of user (none if unknown).
func userDevices(tx *Tx, user string) ([]Device, error) {
	list := tx.Bucket(bucketUserDevices, tx.Ident(domainUser, []byte(user)))
	if list == nil {
		return nil, nil
	}
	var out []Device
	c := list.Cursor()
	for k, v, err := c.First(); k != nil; k, v, err = c.Next() {
		if err != nil {
			return nil, err
		}
		d, err := getDevice(tx, v)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// Devices implements Store.
func (s *LocalStore) Devices(ctx context.Context, user string) ([]Device, error) {
	var out []Device
	err := s.view(ctx, func(tx *Tx) (err error) {
		out, err = userDevices(tx, user)
		return err
	})
	return out, err
}

// RevokeDevice implements Store.
func (s *LocalStore) RevokeDevice(ctx context.Context, key []byte) error {
	return s.update(ctx, func(tx *Tx) error {
		d, err := getDevice(tx, key)
		if err != nil {
			return err
		}
		if err := tx.DeleteBucket(bucketKeyPackages, tx.Ident(domainDevice, key)); err != nil {
			return err
		}
		if d.Revoked {
			return nil
		}
		if err := closeQueue(tx, key); err != nil {
			return err
		}
		d.Revoked = true
		return tx.Bucket(bucketDevices).Put(tx.Ident(domainDevice, key), d.marshal())
	})
}

// dropTransitionsV1 is server migration 4: key-transition statements of
// the first format (signed by the old key only, 128 bytes) cannot be
// verified by the rule that both keys sign (node/proto/transition.go),
// so they are dropped; contacts who pinned a key from before such a
// change see a changed key and verify it by hand.
func dropTransitionsV1(tx *Tx) error {
	b := tx.Bucket(bucketAccounts)
	type rec struct {
		k []byte
		a Account
	}
	var recs []rec
	c := b.Cursor()
	for k, v, err := c.First(); k != nil; k, v, err = c.Next() {
		if err != nil {
			return err
		}
		a, err := parseAccountWith(v, transitionLenV1)
		if err != nil {
			return err
		}
		if len(a.Transitions) > 0 {
			a.Transitions = nil
			recs = append(recs, rec{bytes.Clone(k), a})
		}
	}
	for _, r := range recs {
		if err := b.Put(r.k, r.a.marshal()); err != nil {
			return err
		}
	}
	return nil
}

// ChangeAccount implements Store.
func (s *LocalStore) ChangeAccount(ctx context.Context, oldKey []byte, a Account, certs map[string][]byte) error {
	if err := a.check(); err != nil {
		return err
	}
	for k, c := range certs {
		if err := errors.Join(checkLen("device key", []byte(k), 1, MaxKeyLen),
			checkLen("device certificate", c, 0, MaxBlobLen)); err != nil {
			return err
		}
	}
	rec := a.marshal()
	return s.update(ctx, func(tx *Tx) error {
		accounts := tx.Bucket(bucketAccounts)
		k := tx.Ident(domainUser, []byte(a.User))
		v, err := accounts.Get(k)
		if err != nil {
			return err
		}
		cur, err := parseAccount(v)
		if err != nil {
			return err
		}
		if !bytes.Equal(cur.UserKey, oldKey) {
			return ErrStale
		}
		ds, err := userDevices(tx, a.User)
		if err != nil {
			return err
		}
		devices := tx.Bucket(bucketDevices)
		used := 0
		for _, d := range ds {
			if d.Revoked {
				continue
			}
			c, ok := certs[string(d.Key)]
			if !ok {
				return fmt.Errorf("store: no new certificate for a device: %w", ErrInvalid)
			}
			used++
			d.Certificate = c
			if err := devices.Put(tx.Ident(domainDevice, d.Key), d.marshal()); err != nil {
				return err
			}
		}
		if used != len(certs) {
			return fmt.Errorf("store: a certificate for a device that is not an active device of the user: %w", ErrInvalid)
		}
		return accounts.Put(k, rec)
	})
}

// DeleteAccount implements Store.
func (s *LocalStore) DeleteAccount(ctx context.Context, user string) error {
	return s.update(ctx, func(tx *Tx) error {
		u := tx.Ident(domainUser, []byte(user))
		accounts := tx.Bucket(bucketAccounts)
		if _, err := accounts.Get(u); err != nil {
			return err
		}
		ds, err := userDevices(tx, user)
		if err != nil {
			return err
		}
		devices := tx.Bucket(bucketDevices)
		for _, d := range ds {
			if err := tx.DeleteBucket(bucketKeyPackages, tx.Ident(domainDevice, d.Key)); err != nil {
				return err
			}
			if d.Revoked {
				continue
			}
			if err := closeQueue(tx, d.Key); err != nil {
				return err
			}
			d.Revoked = true
			if err := devices.Put(tx.Ident(domainDevice, d.Key), d.marshal()); err != nil {
				return err
			}
		}
		for _, path := range [][][]byte{{bucketUserDevices, u}, {bucketApprovals, u}} {
			if err := tx.DeleteBucket(path...); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketFirstDevice).Delete(u); err != nil {
			return err
		}
		return accounts.Delete(u)
	})
}
