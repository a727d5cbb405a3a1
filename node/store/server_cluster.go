//go:build !js

package store

import (
	"bytes"
	"fmt"
	"time"
)

// ClusterOptions make a store a replica of a cluster store (kv_repl.go).
type ClusterOptions struct {
	// Log is the cluster's log (node/cluster opens one on NATS
	// JetStream). The store does not close it.
	Log Log
	// Timeout bounds each round trip to the log and the wait for the
	// replica to catch up; zero means 10 seconds. When it passes, the
	// call fails rather than answering from a stale replica.
	Timeout time.Duration
	// RestoreWait bounds how long opening waits for a restore that
	// another node is writing into the log (SeedLog); zero means two
	// minutes.
	RestoreWait time.Duration
}

// OpenCluster opens the replica file at path of the cluster store whose
// log is c.Log, as Open opens a single node's file: it first replays the
// log entries the replica has not applied (a new replica replays the whole
// log), then reads the shared header, checks the key, and applies pending
// migrations through the log. Every node of a cluster must use the same
// data key: the same passphrase, or a copy of the same key file.
func OpenCluster(path string, opts Options, c ClusterOptions) (*DB, error) {
	if c.Log == nil {
		return nil, fmt.Errorf("store: a cluster store needs its log")
	}
	if err := opts.fill(); err != nil {
		return nil, err
	}
	bdb, err := openBolt(path, opts)
	if err != nil {
		return nil, err
	}
	r, err := newReplica(boltDB{bdb}, c.Log, c.Timeout)
	if err != nil {
		bdb.Close()
		return nil, err
	}
	if err := waitRestored(r, c.RestoreWait); err != nil {
		r.Close()
		return nil, err
	}
	return openDB(r, opts)
}

// OpenClusterServer opens a node's replica of a cluster store (see
// OpenCluster); the result is a Store with cluster-wide semantics, and
// QueueSignal also wakes for messages that other nodes queued.
func OpenClusterServer(path string, opts Options, limits Limits, c ClusterOptions) (*LocalStore, error) {
	opts.Schema = ServerSchema
	db, err := OpenCluster(path, opts, c)
	if err != nil {
		return nil, err
	}
	s := &LocalStore{db: db, limits: limits.withDefaults(), signals: signals{m: map[string]chan struct{}{}}}
	if r, ok := db.kv.(*replDB); ok {
		notify := func(path [][]byte) {
			// queues / Ident(device) / "m" / seq → Envelope
			if len(path) == 3 && bytes.Equal(path[0], bucketQueues) && bytes.Equal(path[2], keyMessages) {
				s.signals.notify(string(path[1]))
			}
		}
		r.onPut.Store(&notify)
	}
	return s, nil
}

// ReplicaApplied returns the number of the last cluster log entry this
// node's replica has applied; false for a single node's store.
func (s *LocalStore) ReplicaApplied() (uint64, bool) {
	r, ok := s.db.kv.(*replDB)
	if !ok {
		return 0, false
	}
	applied, _ := r.state()
	return applied, true
}

// waitRestored waits while the log holds only part of a restore
// (backup_cluster.go): nothing may read or migrate a half-written store.
func waitRestored(r *replDB, wait time.Duration) error {
	if wait <= 0 {
		wait = 2 * time.Minute
	}
	deadline := time.Now().Add(wait)
	for {
		busy, err := restoring(r)
		if err != nil || !busy {
			return err
		}
		if time.Now().After(deadline) {
			applied, _ := r.state()
			return fmt.Errorf("store: the cluster log holds a restore that is not complete (at entry %d after %v); start a node that holds the restore (serve restore) so it finishes writing it", applied, wait)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
