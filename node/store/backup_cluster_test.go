//go:build !js

package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// dumpKV lists every bucket, key, value and sequence of kv, the
// replica's own bucket left out, one line each in key order.
func dumpKV(t testing.TB, kv kvDB) string {
	t.Helper()
	var lines []string
	var walk func(prefix string, b kvBucket)
	walk = func(prefix string, b kvBucket) {
		if s := b.Sequence(); s != 0 {
			lines = append(lines, fmt.Sprintf("%s seq=%d", prefix, s))
		}
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if v == nil {
				walk(fmt.Sprintf("%s/%x", prefix, k), b.Bucket(k))
				continue
			}
			lines = append(lines, fmt.Sprintf("%s/%x=%x", prefix, k, v))
		}
	}
	err := kv.View(func(tx kvTx) error {
		c := tx.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if bytes.Equal(k, replicaBucket) {
				continue
			}
			walk(fmt.Sprintf("%x", k), tx.Bucket(k))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// smallLog cuts a log's entries to a few KiB, so a seed takes several.
type smallLog struct {
	Log
	failAfter atomic.Int64 // appends to allow before failing (< 0: all)
}

func (l *smallLog) MaxEntry() int { return 1 << 10 }

func (l *smallLog) Append(ctx context.Context, e []byte, expect uint64) (uint64, bool, error) {
	if l.failAfter.Load() == 0 {
		return 0, false, errors.New("test: the node died")
	}
	l.failAfter.Add(-1)
	return l.Log.Append(ctx, e, expect)
}

var clusterPass = Options{Passphrase: []byte("cluster pass"), KDF: fastKDF}

// openReplicas opens a replica of log stream name per node of the shared
// cluster, under dir.
func openReplicas(t *testing.T, name, dir string, wait time.Duration) ([]*LocalStore, error) {
	t.Helper()
	c := sharedTestCluster(t)
	var out []*LocalStore
	for i := range c.Nodes {
		s, err := OpenClusterServer(filepath.Join(dir, fmt.Sprintf("replica-%d.db", i)), clusterPass, Limits{},
			ClusterOptions{Log: openLog(t, c, i, name), RestoreWait: wait})
		if err != nil {
			for _, o := range out {
				o.Close()
			}
			return nil, err
		}
		t.Cleanup(func() { s.Close() })
		out = append(out, s)
	}
	return out, nil
}

// TestClusterBackupRestore: a backup taken from one node of a 3-node
// cluster while the other nodes write is a consistent snapshot (each
// writer's records a gapless prefix, holding every write acknowledged
// before it began); it restores into a single node and, through the log,
// into a fresh cluster (even when the restoring node dies half-way),
// with the same data; a damaged copy is refused.
func TestClusterBackupRestore(t *testing.T) {
	c := sharedTestCluster(t)
	stamp := time.Now().UnixNano()
	src, err := openReplicas(t, fmt.Sprintf("bk-a-%d", stamp), t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	// Writers on nodes 0 and 2, each appending records 1, 2, 3, ...
	const writers = 4
	var acked [writers]atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			db := src[[]int{0, 2}[w%2]].DB()
			for i := int64(1); ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				err := db.Update(func(tx *Tx) error {
					b, err := tx.CreateBucket([]byte("bk"), []byte(fmt.Sprint("w", w)))
					if err != nil {
						return err
					}
					return b.Put(SeqKey(uint64(i)), []byte(fmt.Sprint(i)))
				})
				if err != nil {
					t.Errorf("writer %d record %d: %v", w, i, err)
					return
				}
				acked[w].Store(i)
			}
		})
	}
	// Let them write, then back up from node 1 while they go on.
	for acked[0].Load() < 5 || acked[writers-1].Load() < 5 {
		time.Sleep(5 * time.Millisecond)
	}
	var before [writers]int64
	for w := range writers {
		before[w] = acked[w].Load()
	}
	var mid bytes.Buffer
	h, err := src[1].DB().WriteBackup(&mid, "test", nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if h.ClusterEntry == 0 {
		t.Errorf("backup of a cluster node without its log entry: %+v", h)
	}
	for acked[0].Load() < before[0]+5 {
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	wg.Wait()

	dir := t.TempDir()
	restore := func(backup []byte, name string) string {
		t.Helper()
		path := filepath.Join(dir, name)
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := ReadBackup(bytes.NewReader(backup), f); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if _, err := Open(path, clusterPass); err == nil || !strings.Contains(err.Error(), "replica") {
			t.Errorf("a cluster backup opened as a single node's file before DetachReplica: %v", err)
		}
		if err := DetachReplica(path); err != nil {
			t.Fatal(err)
		}
		return path
	}

	// The backup taken under writes: restored into a single node, every
	// writer's records are a gapless prefix holding all acknowledged
	// before the backup.
	midPath := restore(mid.Bytes(), "mid.db")
	single, err := OpenServer(midPath, clusterPass, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	err = single.DB().View(func(tx *Tx) error {
		for w := range writers {
			b := tx.Bucket([]byte("bk"), []byte(fmt.Sprint("w", w)))
			n := int64(0)
			if b != nil {
				cur := b.Cursor()
				for k, _, err := cur.First(); k != nil; k, _, err = cur.Next() {
					if err != nil {
						return err
					}
					if n++; !bytes.Equal(k, SeqKey(uint64(n))) {
						return fmt.Errorf("writer %d: record %x where %d was due (a gap)", w, k, n)
					}
				}
			}
			if n < before[w] {
				t.Errorf("writer %d: backup has %d records, %d were acknowledged before it began", w, n, before[w])
			}
			if n > acked[w].Load() {
				t.Errorf("writer %d: backup has %d records, more than the %d written", w, n, acked[w].Load())
			}
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	single.Close()

	// A backup of the final state restores to the same data, into a
	// single node and into a fresh cluster.
	var final bytes.Buffer
	if _, err := src[2].DB().WriteBackup(&final, "test", nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	want := dumpKV(t, src[0].DB().kv)
	finalPath := restore(final.Bytes(), "final.db")
	s1, err := OpenServer(finalPath, clusterPass, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if got := dumpKV(t, s1.DB().kv); got != want {
		t.Errorf("single node restored from the cluster's backup differs from the cluster")
	}
	s1.Close()

	// Into a fresh cluster, in small entries, the seeding node dying
	// after the first: the replicas wait for the rest, the seed resumes
	// (from another node, as a node given the same backup does).
	fresh := fmt.Sprintf("bk-b-%d", stamp)
	l0 := &smallLog{Log: openLog(t, c, 0, fresh)}
	l0.failAfter.Store(1)
	if _, err := SeedLog(context.Background(), l0, finalPath); err == nil {
		t.Fatal("seeding through a dying node succeeded")
	}
	rdir := t.TempDir()
	if _, err := openReplicas(t, fresh, rdir, time.Second); err == nil || !strings.Contains(err.Error(), "not complete") {
		t.Fatalf("opening a replica of a half-seeded log: %v; want a wait for the restore", err)
	}
	l1 := &smallLog{Log: openLog(t, c, 1, fresh)}
	l1.failAfter.Store(-1)
	n, err := SeedLog(context.Background(), l1, finalPath)
	if err != nil {
		t.Fatal(err)
	}
	if n < 3 {
		t.Errorf("seed of %d entries; the small log should cut it in more", n)
	}
	// A third node given the same backup finds the seed there.
	l2 := &smallLog{Log: openLog(t, c, 2, fresh)}
	l2.failAfter.Store(-1)
	if n2, err := SeedLog(context.Background(), l2, finalPath); err != nil || n2 != n {
		t.Errorf("seeding again = %d, %v; want %d, nil", n2, err, n)
	}
	dst, err := openReplicas(t, fresh, rdir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range dst {
		if got := dumpKV(t, s.DB().kv); got != want {
			t.Errorf("node %d of the restored cluster differs from the backed-up cluster", i)
		}
	}
	// The restored cluster takes writes.
	if err := dst[1].DB().Update(func(tx *Tx) error {
		b, err := tx.CreateBucket([]byte("bk"), []byte("after"))
		if err != nil {
			return err
		}
		return b.Put([]byte("k"), []byte("v"))
	}); err != nil {
		t.Errorf("write to the restored cluster: %v", err)
	}
	// A log that holds other entries is not seeded.
	used := &smallLog{Log: openLog(t, c, 0, fmt.Sprintf("bk-a-%d", stamp))}
	used.failAfter.Store(-1)
	if _, err := SeedLog(context.Background(), used, finalPath); err == nil || !strings.Contains(err.Error(), "fresh cluster") {
		t.Errorf("seeding a used log: %v", err)
	}

	// A damaged copy is refused.
	bad := bytes.Clone(final.Bytes())
	bad[len(bad)/2] ^= 1
	if _, _, err := ReadBackup(bytes.NewReader(bad), &bytes.Buffer{}); !errors.Is(err, ErrBadBackup) {
		t.Errorf("damaged backup: %v; want ErrBadBackup", err)
	}
}
