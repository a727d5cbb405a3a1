//go:build !js

package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"
)

// Backups of a cluster, and restoring one into a fresh cluster.
//
// Every node of a cluster holds a whole replica of the store, and a
// backup taken on a node (WriteBackup, through its admin listener) is one
// read transaction of that replica after the read barrier: the state of
// the store as of one log entry (BackupHeader.ClusterEntry), with every
// write acknowledged by any node before the backup began. It has the
// format of a single node's backup; its image also holds the replica's
// own bucket (the log it followed, the entry it was at), which
// DetachReplica removes when the backup is restored.
//
// A restored image becomes a single node's database as it is. To make it
// a cluster's again, SeedLog writes it into the empty log of a fresh
// cluster as ordinary write sets, in key order, cut to the log's entry
// size: deterministic, so that several nodes given the same backup write
// the same entries, and whichever appends an entry first, the others find
// theirs there and go on. The first entry creates restoreBucket and the
// last one drops it: a replica that sees it knows the log holds only
// part of the restore, and OpenCluster waits until it is complete.

// restoreBucket marks a cluster log whose restore is not complete yet.
var restoreBucket = []byte("qpchat-restore")

// DetachReplica removes the replica bookkeeping from the database file
// at path (a backup of a cluster node, restored), making it a single
// node's file. A single node's file is left as it is.
func DetachReplica(path string) error {
	bdb, err := openBolt(path, Options{Timeout: time.Second})
	if err != nil {
		return err
	}
	kv := boltDB{bdb}
	err = kv.Update(func(tx kvTx) error {
		if tx.Bucket(replicaBucket) == nil {
			return nil
		}
		return tx.DeleteBucket(replicaBucket)
	})
	return errors.Join(err, kv.Close())
}

// SeedLog writes the single node's database at path into the cluster
// log l, which must be empty or hold a prefix of the same seed (a seed
// cut short, or written by another node from the same backup). It
// returns the number of entries of the seed.
func SeedLog(ctx context.Context, l Log, path string) (int, error) {
	bdb, err := openBolt(path, Options{Timeout: time.Second})
	if err != nil {
		return 0, err
	}
	kv := boltDB{bdb}
	defer kv.Close()
	last, err := l.Last(ctx)
	if err != nil {
		return 0, fmt.Errorf("store: cluster log: %w", err)
	}
	var n uint64
	emit := func(entry []byte) error {
		n++
		for {
			if n <= last {
				got, err := logEntry(ctx, l, n)
				if err != nil {
					return err
				}
				if !bytes.Equal(got, entry) {
					return fmt.Errorf("store: the cluster log already holds entries that are not this restore (entry %d differs); restore into a fresh cluster, every node from the same backup", n)
				}
				return nil
			}
			_, ok, err := l.Append(ctx, entry, n-1)
			if err != nil {
				return fmt.Errorf("store: cluster log: %w", err)
			}
			if ok {
				last = n
				return nil
			}
			// Another node appended first: compare with what it wrote.
			if last, err = l.Last(ctx); err != nil {
				return fmt.Errorf("store: cluster log: %w", err)
			}
		}
	}
	err = kv.View(func(tx kvTx) error {
		if tx.Bucket(headerBucket) == nil {
			return fmt.Errorf("store: %s holds no qpchat database", path)
		}
		return seedEntries(tx, l.MaxEntry(), emit)
	})
	return int(n), err
}

// logEntry reads entry n of l.
func logEntry(ctx context.Context, l Log, n uint64) ([]byte, error) {
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var got []byte
	errFound := errors.New("found")
	err := l.Follow(fctx, n-1, func(first uint64, entries [][]byte) error {
		if first <= n && n < first+uint64(len(entries)) {
			got = entries[n-first]
			return errFound
		}
		return nil
	})
	if got != nil {
		return got, nil
	}
	if err == nil || errors.Is(err, errFound) {
		err = errors.New("no entry")
	}
	return nil, fmt.Errorf("store: reading cluster log entry %d: %w", n, err)
}

// seedEntries cuts the database of tx into write sets of at most
// maxEntry bytes, in key order, handing each to emit.
func seedEntries(tx kvTx, maxEntry int, emit func([]byte) error) error {
	ws := &writeSet{}
	add := func(path [][]byte, op wsOp) error {
		cost := 1 + uvarintLen(uint64(len(path))) + 1 + bytesLen(op.name) + bytesLen(op.value) + 8
		for _, p := range path {
			cost += bytesLen(p)
		}
		if ws.size > 0 && ws.size+cost > maxEntry {
			if err := emit(ws.marshal()); err != nil {
				return err
			}
			ws = &writeSet{}
		}
		if len(writeSetMagic)+cost > maxEntry {
			return errTooLarge
		}
		ws.add(path, op)
		return nil
	}
	var walk func(path [][]byte, b kvBucket) error
	walk = func(path [][]byte, b kvBucket) error {
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if v == nil {
				nb := b.Bucket(k)
				if nb == nil {
					return fmt.Errorf("store: key %x is neither a value nor a bucket: %w", k, ErrCorrupt)
				}
				if err := add(path, wsOp{kind: opCreate, name: k}); err != nil {
					return err
				}
				if err := walk(append(path[:len(path):len(path)], k), nb); err != nil {
					return err
				}
				continue
			}
			if err := add(path, wsOp{kind: opPut, name: k, value: v}); err != nil {
				return err
			}
		}
		if s := b.Sequence(); s != 0 {
			return add(path, wsOp{kind: opSeq, seq: s})
		}
		return nil
	}
	if err := add(nil, wsOp{kind: opCreate, name: restoreBucket}); err != nil {
		return err
	}
	c := tx.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if bytes.Equal(k, replicaBucket) || bytes.Equal(k, restoreBucket) {
			continue
		}
		b := tx.Bucket(k)
		if b == nil {
			return fmt.Errorf("store: top-level key %x is not a bucket: %w", k, ErrCorrupt)
		}
		if err := add(nil, wsOp{kind: opCreate, name: k}); err != nil {
			return err
		}
		if err := walk([][]byte{k}, b); err != nil {
			return err
		}
	}
	if err := add(nil, wsOp{kind: opDrop, name: restoreBucket}); err != nil {
		return err
	}
	return emit(ws.marshal())
}

// restoring reports whether the replica holds a restore not complete yet.
func restoring(kv kvDB) (bool, error) {
	var r bool
	err := kv.View(func(tx kvTx) error {
		r = tx.Bucket(restoreBucket) != nil
		return nil
	})
	return r, err
}
