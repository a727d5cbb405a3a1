package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// KeyPackages of the server schema: a pool per device and suite, consumed
// on fetch, and a last resort that is handed out but never consumed.

func suiteKey(suite uint16) []byte { return binary.BigEndian.AppendUint16(nil, suite) }

// poolCount reads the pool size kept beside the pool, so neither uploads
// nor fetches walk the pool.
func poolCount(sb *Bucket) (int, error) {
	v, err := sb.Get(keyCount)
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n, ok := ParseSeqKey(v)
	if !ok || n > math.MaxInt32 {
		return 0, fmt.Errorf("store: KeyPackage count: %w", ErrCorrupt)
	}
	return int(n), nil
}

func setPoolCount(sb *Bucket, n int) error { return sb.Put(keyCount, SeqKey(uint64(n))) }

func (k *KeyPackage) check() error {
	return errors.Join(checkLen("KeyPackageRef", k.Ref, 1, MaxKeyLen), checkLen("KeyPackage", k.Data, 1, MaxMessageLen))
}

// PutKeyPackages implements Store.
func (s *LocalStore) PutKeyPackages(ctx context.Context, device []byte, suite uint16, pool []KeyPackage, lastResort *KeyPackage) (int, error) {
	recs := make([][]byte, len(pool))
	for i := range pool {
		if err := pool[i].check(); err != nil {
			return 0, err
		}
		recs[i] = pool[i].marshal()
	}
	var last []byte
	if lastResort != nil {
		if err := lastResort.check(); err != nil {
			return 0, err
		}
		last = lastResort.marshal()
	}
	var count int
	err := s.update(ctx, func(tx *Tx) error {
		count = 0 // this function may run again; start afresh
		d, err := getDevice(tx, device)
		if err != nil {
			return err
		}
		if d.Revoked {
			return ErrRevoked
		}
		if sb := tx.Bucket(bucketKeyPackages, tx.Ident(domainDevice, device), suiteKey(suite)); sb != nil {
			if count, err = poolCount(sb); err != nil {
				return err
			}
		}
		if count+len(recs) > s.limits.MaxKeyPackages {
			return fmt.Errorf("store: %d KeyPackages would exceed the limit of %d per device and suite: %w",
				count+len(recs), s.limits.MaxKeyPackages, ErrLimit)
		}
		sb, err := tx.CreateBucket(bucketKeyPackages, tx.Ident(domainDevice, device), suiteKey(suite))
		if err != nil {
			return err
		}
		pb, err := sb.CreateBucket(keyPool)
		if err != nil {
			return err
		}
		for _, r := range recs {
			if _, err := pb.Append(r); err != nil {
				return err
			}
		}
		count += len(recs)
		if err := setPoolCount(sb, count); err != nil {
			return err
		}
		if last != nil {
			return sb.Put(keyLast, last)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return count, nil
}

// KeyPackageCount implements Store.
func (s *LocalStore) KeyPackageCount(ctx context.Context, device []byte, suite uint16) (int, error) {
	var n int
	err := s.view(ctx, func(tx *Tx) (err error) {
		sb := tx.Bucket(bucketKeyPackages, tx.Ident(domainDevice, device), suiteKey(suite))
		if sb == nil {
			return nil
		}
		n, err = poolCount(sb)
		return err
	})
	return n, err
}

// fetchedID identifies (caller, ref) for the kp-fetched bucket.
func fetchedID(tx *Tx, caller, ref []byte) []byte {
	id := append([]byte{byte(len(caller))}, caller...)
	return tx.Ident(domainFetched, append(id, ref...))
}

// FetchKeyPackages implements Store.
func (s *LocalStore) FetchKeyPackages(ctx context.Context, caller []byte, user string, suite uint16) ([]FetchedKeyPackage, error) {
	if err := checkLen("caller", caller, 1, MaxKeyLen); err != nil {
		return nil, err
	}
	var out []FetchedKeyPackage
	now := time.Now().Unix()
	err := s.update(ctx, func(tx *Tx) error {
		out = nil // this function may run again; start afresh
		if _, err := tx.Bucket(bucketAccounts).Get(tx.Ident(domainUser, []byte(user))); err != nil {
			return err
		}
		devices, err := userDevices(tx, user)
		if err != nil {
			return err
		}
		fetched := tx.Bucket(bucketFetched)
		for _, d := range devices {
			if d.Revoked {
				continue
			}
			sb := tx.Bucket(bucketKeyPackages, tx.Ident(domainDevice, d.Key), suiteKey(suite))
			if sb == nil {
				continue
			}
			f, ok, err := takeKeyPackage(sb)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			f.Device = d.Key
			rec := fetchRecord{Device: d.Key, Suite: suite, At: now}
			if err := fetched.Put(fetchedID(tx, caller, f.Ref), rec.marshal()); err != nil {
				return err
			}
			out = append(out, f)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// takeKeyPackage consumes the first pool package of a device's suite
// bucket, or returns its last resort without consuming it.
func takeKeyPackage(sb *Bucket) (FetchedKeyPackage, bool, error) {
	var f FetchedKeyPackage
	if pb := sb.Bucket(keyPool); pb != nil {
		c := pb.Cursor()
		k, v, err := c.First()
		if err != nil {
			return f, false, err
		}
		if k != nil {
			if f.KeyPackage, err = parseKeyPackage(v); err != nil {
				return f, false, err
			}
			if err := c.Delete(); err != nil {
				return f, false, err
			}
			n, err := poolCount(sb)
			if err != nil {
				return f, false, err
			}
			f.Remaining = max(n-1, 0)
			return f, true, setPoolCount(sb, f.Remaining)
		}
	}
	v, err := sb.Get(keyLast)
	if errors.Is(err, ErrNotFound) {
		return f, false, nil
	}
	if err != nil {
		return f, false, err
	}
	if f.KeyPackage, err = parseKeyPackage(v); err != nil {
		return f, false, err
	}
	f.LastResort = true
	return f, true, nil
}

// FetchedKeyPackage implements Store.
func (s *LocalStore) FetchedKeyPackage(ctx context.Context, caller, ref []byte) ([]byte, uint16, error) {
	var rec fetchRecord
	err := s.view(ctx, func(tx *Tx) error {
		v, err := tx.Bucket(bucketFetched).Get(fetchedID(tx, caller, ref))
		if err != nil {
			return err
		}
		rec, err = parseFetchRecord(v)
		return err
	})
	return rec.Device, rec.Suite, err
}

// pruneChunk bounds the fetch records one PruneFetched transaction
// visits, so other writers are not held up behind a long sweep (a
// variable for the tests).
var pruneChunk = 1000

// PruneFetched implements Store.
func (s *LocalStore) PruneFetched(ctx context.Context, before time.Time) (int, error) {
	cut := before.Unix()
	total := 0
	var from []byte
	for {
		var (
			n    int
			next []byte
		)
		err := s.update(ctx, func(tx *Tx) error {
			n, next = 0, nil // this function may run again; start afresh
			c := tx.Bucket(bucketFetched).Cursor()
			k, v, err := c.First()
			if from != nil {
				k, v, err = c.Seek(from)
			}
			for seen := 0; k != nil; k, v, err = c.Next() {
				if err != nil {
					return err
				}
				if seen == pruneChunk {
					next = bytes.Clone(k)
					return nil
				}
				seen++
				rec, perr := parseFetchRecord(v)
				if perr != nil {
					return perr
				}
				if rec.At < cut {
					if err := c.Delete(); err != nil {
						return err
					}
					n++
				}
			}
			return err
		})
		if err != nil {
			return total, err
		}
		total += n
		if next == nil {
			return total, nil
		}
		from = next
	}
}
