package store

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

func openTest(t *testing.T, path string, opts Options) *DB {
	t.Helper()
	db, err := openDBAt(t, path, opts)
	if err != nil {
		t.Fatalf("Open(%s) = %v", path, err)
	}
	return db
}

func passOpts(pass string) Options {
	return Options{Passphrase: []byte(pass), KDF: fastKDF}
}

func TestPutGetCursor(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	db := openTest(t, path, passOpts("pw"))
	err := db.Update(func(tx *Tx) error {
		b, err := tx.CreateBucket([]byte("a"), []byte("b"))
		if err != nil {
			return err
		}
		for i := range 5 {
			if _, err := b.Append(fmt.Appendf(nil, "v%d", i)); err != nil {
				return err
			}
		}
		return b.Put([]byte("empty"), nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	db = openTest(t, path, passOpts("pw"))
	defer db.Close()
	err = db.Update(func(tx *Tx) error {
		b := tx.Bucket([]byte("a"), []byte("b"))
		if b == nil {
			return errors.New("bucket missing")
		}
		v, err := b.Get([]byte("empty"))
		if err != nil || v == nil || len(v) != 0 {
			t.Errorf("Get(empty) = %q, %v, want empty, nil", v, err)
		}
		if _, err := b.Get([]byte("nope")); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(nope) err = %v, want ErrNotFound", err)
		}
		// Delete every other record through the cursor; Next must not skip.
		c := b.Cursor()
		i := 0
		for k, v, err := c.Seek(SeqKey(1)); k != nil; k, v, err = c.Next() {
			if err != nil {
				return err
			}
			if n, ok := ParseSeqKey(k); !ok {
				break
			} else if want := fmt.Sprintf("v%d", n-1); string(v) != want {
				t.Errorf("value at %d = %q, want %q", n, v, want)
			}
			if i%2 == 0 {
				if err := c.Delete(); err != nil {
					return err
				}
			}
			i++
		}
		if i != 5 {
			t.Errorf("cursor visited %d sequence keys, want 5", i)
		}
		var left []string
		c = b.Cursor()
		for k, v, err := c.First(); k != nil; k, v, err = c.Next() {
			if err != nil {
				return err
			}
			left = append(left, string(v))
		}
		if got, want := strings.Join(left, ","), "v1,v3,"; got != want {
			t.Errorf("after deletes: %q, want %q", got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.View(func(tx *Tx) error { return tx.Bucket([]byte("a"), []byte("b")).Put([]byte("x"), nil) }); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Put in View = %v, want ErrReadOnly", err)
	}
	if tx := (&Tx{}); tx.Bucket([]byte("meta")) != nil {
		t.Error("meta bucket reachable through Tx.Bucket")
	}
}

// rawBolt edits the file under the store, as an attacker with the file would.
func rawEdit(t *testing.T, db *DB, fn func(tx *Tx) error) {
	t.Helper()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

func TestTamperDetected(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "db"), passOpts("pw"))
	defer db.Close()
	rawEdit(t, db, func(tx *Tx) error {
		for _, name := range []string{"one", "two"} {
			b, err := tx.CreateBucket([]byte(name))
			if err != nil {
				return err
			}
			if err := b.Put([]byte("k1"), []byte("secret one")); err != nil {
				return err
			}
			if err := b.Put([]byte("k2"), []byte("secret two")); err != nil {
				return err
			}
		}
		return nil
	})
	tests := []struct {
		name string
		edit func(tx *Tx) error
		read func(tx *Tx) error
	}{
		{"flipped bit", func(tx *Tx) error {
			b := tx.Bucket([]byte("one")).b
			v := bytes.Clone(b.Get([]byte("k1")))
			v[len(v)-20] ^= 1
			return b.Put([]byte("k1"), v)
		}, func(tx *Tx) error { _, err := tx.Bucket([]byte("one")).Get([]byte("k1")); return err }},
		{"flipped nonce", func(tx *Tx) error {
			b := tx.Bucket([]byte("one")).b
			v := bytes.Clone(b.Get([]byte("k2")))
			v[0] ^= 0x80
			return b.Put([]byte("k2"), v)
		}, func(tx *Tx) error { _, err := tx.Bucket([]byte("one")).Get([]byte("k2")); return err }},
		{"truncated", func(tx *Tx) error {
			b := tx.Bucket([]byte("two")).b
			return b.Put([]byte("k1"), bytes.Clone(b.Get([]byte("k1"))[:30]))
		}, func(tx *Tx) error { _, err := tx.Bucket([]byte("two")).Get([]byte("k1")); return err }},
		{"moved to another key", func(tx *Tx) error {
			b := tx.Bucket([]byte("two")).b
			return b.Put([]byte("k3"), bytes.Clone(b.Get([]byte("k2"))))
		}, func(tx *Tx) error { _, err := tx.Bucket([]byte("two")).Get([]byte("k3")); return err }},
		{"moved to another bucket", func(tx *Tx) error {
			v := bytes.Clone(tx.Bucket([]byte("two")).b.Get([]byte("k2")))
			return tx.Bucket([]byte("one")).b.Put([]byte("k2"), v)
		}, func(tx *Tx) error { _, err := tx.Bucket([]byte("one")).Get([]byte("k2")); return err }},
		{"moved seen through a cursor", func(tx *Tx) error {
			v := bytes.Clone(tx.Bucket([]byte("two")).b.Get([]byte("k2")))
			return tx.Bucket([]byte("two")).b.Put([]byte("k0"), v)
		}, func(tx *Tx) error { _, _, err := tx.Bucket([]byte("two")).Cursor().First(); return err }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rawEdit(t, db, tc.edit)
			if err := db.View(tc.read); !errors.Is(err, ErrCorrupt) {
				t.Errorf("reading after %s: err = %v, want ErrCorrupt", tc.name, err)
			}
		})
	}
}

func TestWrongPassphraseVersusCorruption(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "db")
	openTest(t, path, passOpts("right")).Close()

	if _, err := Open(path, passOpts("wrong")); !errors.Is(err, ErrWrongPassphrase) || errors.Is(err, ErrCorrupt) {
		t.Errorf("Open with wrong passphrase = %v, want ErrWrongPassphrase", err)
	}
	if _, err := Open(path, Options{KeyFile: filepath.Join(dir, "key")}); err == nil || !strings.Contains(err.Error(), "passphrase") {
		t.Errorf("Open with a key file of a passphrase database = %v, want an error naming the passphrase", err)
	}
	// Damage the header: every byte change is corruption, never a wrong passphrase.
	db := openTest(t, path, passOpts("right"))
	var hdr []byte
	db.View(func(tx *Tx) error { hdr = bytes.Clone(tx.btx.Bucket(headerBucket).Get(headerKey)); return nil })
	db.Close()
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, pos := range []int{0, len(aadLabel) + 3, len(hdr) - 40, len(hdr) - 1} {
		p := filepath.Join(dir, fmt.Sprintf("damaged-%d", pos))
		if err := os.WriteFile(p, good, 0o600); err != nil {
			t.Fatal(err)
		}
		db := openTest(t, p, passOpts("right"))
		bad := bytes.Clone(hdr)
		bad[pos] ^= 1
		db.Update(func(tx *Tx) error { return tx.btx.Bucket(headerBucket).Put(headerKey, bad) })
		db.Close()
		if _, err := Open(p, passOpts("right")); !errors.Is(err, ErrCorrupt) {
			t.Errorf("header byte %d flipped: Open = %v, want ErrCorrupt", pos, err)
		}
		if _, err := Open(p, passOpts("wrong")); !errors.Is(err, ErrCorrupt) {
			t.Errorf("header byte %d flipped, wrong passphrase: Open = %v, want ErrCorrupt", pos, err)
		}
	}
	// A sealed record damaged inside an intact file is corruption too, and
	// the passphrase is still reported right.
	db = openTest(t, path, passOpts("right"))
	db.Update(func(tx *Tx) error {
		m := tx.btx.Bucket(metaBucket)
		v := bytes.Clone(m.Get(metaVersionKey))
		v[30] ^= 1
		return m.Put(metaVersionKey, v)
	})
	db.Close()
	if _, err := Open(path, passOpts("right")); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Open with a damaged meta record = %v, want ErrCorrupt", err)
	}
	if _, err := Open(path, passOpts("wrong")); !errors.Is(err, ErrWrongPassphrase) {
		t.Errorf("Open with a damaged meta record and a wrong passphrase = %v, want ErrWrongPassphrase", err)
	}
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	path, kf := filepath.Join(dir, "db"), filepath.Join(dir, "key")
	openTest(t, path, Options{KeyFile: kf}).Close()
	fi, err := os.Stat(kf)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Size() != dataKeySize {
		t.Errorf("key file mode %v size %d, want 0600 and %d", fi.Mode().Perm(), fi.Size(), dataKeySize)
	}
	openTest(t, path, Options{KeyFile: kf}).Close()

	other := filepath.Join(dir, "other-key")
	if err := os.WriteFile(other, bytes.Repeat([]byte{7}, dataKeySize), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, Options{KeyFile: other}); !errors.Is(err, ErrWrongKeyFile) {
		t.Errorf("Open with another key file = %v, want ErrWrongKeyFile", err)
	}
	if err := os.Chmod(kf, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, Options{KeyFile: kf}); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("Open with a world-readable key file = %v, want a mode error", err)
	}
	if _, err := Open(path, passOpts("pw")); err == nil || !strings.Contains(err.Error(), "key file") {
		t.Errorf("Open with a passphrase of a key-file database = %v, want an error naming the key file", err)
	}
	if _, err := Open(path, Options{}); err == nil {
		t.Error("Open without a key source succeeded")
	}
}

// TestInUse holds the file in a second process (flock is per open file
// description, so a second open in this process would not be a real test).
func TestInUse(t *testing.T) {
	dir := t.TempDir()
	openTest(t, filepath.Join(dir, "db"), keyOpts(dir)).Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=hold", helperDir+"="+dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if line != "ready\n" {
		t.Fatalf("helper said %q", line)
	}
	opts := keyOpts(dir)
	opts.Timeout = 100_000_000 // 100ms
	_, err = Open(filepath.Join(dir, "db"), opts)
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "is in use by another qpchat process") {
		t.Errorf("second Open = %v, want ErrInUse naming the other process", err)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
	openTest(t, filepath.Join(dir, "db"), keyOpts(dir)).Close()
}

// TestGroupCommitBatches holds the writer inside one transaction, queues
// more writes meanwhile, and checks that they commit together, that a failing
// function is left out without failing the others, and that all of it
// survives a reopen.
func TestGroupCommitBatches(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	db := openTest(t, path, passOpts("pw"))
	rawEdit(t, db, func(tx *Tx) error { _, err := tx.CreateBucket([]byte("b")); return err })
	before := db.commits.Load()

	release := make(chan struct{})
	entered := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		err := db.Update(func(tx *Tx) error {
			close(entered)
			<-release
			return tx.Bucket([]byte("b")).Put([]byte("first"), []byte("1"))
		})
		if err != nil {
			t.Errorf("blocking write: %v", err)
		}
	})
	<-entered
	const n = 20
	errs := make([]error, n)
	runs := make([]int, n)
	var runsMu sync.Mutex
	var hooked [n]atomic.Int32
	for i := range n {
		wg.Go(func() {
			errs[i] = db.Update(func(tx *Tx) error {
				runsMu.Lock()
				runs[i]++
				runsMu.Unlock()
				if i == 3 {
					return errors.New("fail 3 before writing")
				}
				if err := tx.Bucket([]byte("b")).Put(fmt.Appendf(nil, "k%02d", i), []byte("v")); err != nil {
					return err
				}
				tx.OnCommit(func() { hooked[i].Add(1) })
				if i == 7 || i == 13 {
					return fmt.Errorf("fail %d", i)
				}
				return nil
			})
		})
	}
	for len(db.writes) < n {
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	if got := db.commits.Load() - before; got != 2 {
		t.Errorf("%d writes while the writer was busy took %d commits, want 2 (the busy one and one batch)", n, got)
	}
	failed := func(i int) bool { return i == 3 || i == 7 || i == 13 }
	for i, err := range errs {
		if failed(i) != (err != nil) {
			t.Errorf("write %d: err = %v", i, err)
		}
		if failed(i) && runs[i] != 1 {
			t.Errorf("failed write %d ran %d times, want 1", i, runs[i])
		}
		if want := !failed(i); (hooked[i].Load() == 1) != want || hooked[i].Load() > 1 {
			t.Errorf("write %d: OnCommit ran %d times (committed: %v)", i, hooked[i].Load(), want)
		}
	}
	db.Close()
	db = openTest(t, path, passOpts("pw"))
	defer db.Close()
	db.View(func(tx *Tx) error {
		b := tx.Bucket([]byte("b"))
		for i := range n {
			_, err := b.Get(fmt.Appendf(nil, "k%02d", i))
			if failed(i) != errors.Is(err, ErrNotFound) {
				t.Errorf("k%02d after reopen: err = %v (failed write: %v)", i, err, failed(i))
			}
		}
		if _, err := b.Get([]byte("first")); err != nil {
			t.Errorf("first write lost: %v", err)
		}
		return nil
	})
}

func TestUpdatePanicIsolated(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "db"), passOpts("pw"))
	defer db.Close()
	err := db.Update(func(tx *Tx) error { panic("boom") })
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("Update with a panicking fn = %v", err)
	}
	if err := db.Update(func(tx *Tx) error { _, err := tx.CreateBucket([]byte("x")); return err }); err != nil {
		t.Errorf("Update after a panic = %v", err)
	}
	db.Close()
	if err := db.Update(func(*Tx) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Errorf("Update after Close = %v, want ErrClosed", err)
	}
}

func TestConcurrentWritersDurable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	db := openTest(t, path, passOpts("pw"))
	rawEdit(t, db, func(tx *Tx) error { _, err := tx.CreateBucket([]byte("b")); return err })
	const writers, each = 32, 20
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				err := db.Update(func(tx *Tx) error {
					return tx.Bucket([]byte("b")).Put(fmt.Appendf(nil, "%d-%d", w, i), []byte("x"))
				})
				if err != nil {
					t.Errorf("write %d-%d: %v", w, i, err)
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d writes in %d commits", writers*each, db.commits.Load())
	db.Close()
	db = openTest(t, path, passOpts("pw"))
	defer db.Close()
	db.View(func(tx *Tx) error {
		n, err := countKeys(tx.Bucket([]byte("b")))
		if err != nil || n != writers*each {
			t.Errorf("after reopen: %d keys, %v; want %d", n, err, writers*each)
		}
		return nil
	})
}

// TestCrashKeepsAcknowledged kills (SIGKILL) a process that sends from 8
// goroutines at different moments and checks that every Send that returned
// before the kill is in the receiver's queue after a reopen, in order, once.
func TestCrashKeepsAcknowledged(t *testing.T) {
	for _, killAfter := range []int{1, 60, 400} {
		t.Run(fmt.Sprint(killAfter), func(t *testing.T) { testCrash(t, killAfter) })
	}
}

func testCrash(t *testing.T, killAfter int) {
	dir := t.TempDir()
	path := filepath.Join(dir, "db")
	s, err := OpenServer(path, keyOpts(dir), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range [][]byte{crashSender, crashReceiver} {
		user := fmt.Sprint("user", i)
		if err := s.CreateAccount(ctx, Account{User: user}); err != nil {
			t.Fatal(err)
		}
		if err := s.AddDevice(ctx, Device{User: user, Key: d}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateGroup(ctx, crashGroup, crashSender); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(ctx, CommitRequest{Group: crashGroup, Committer: crashSender, Message: []byte("c"), Added: [][]byte{crashReceiver}, Welcome: []byte("w"),
		KeyPackageRefs: [][]byte{fetchedRef(t, s, crashSender, "user1", crashReceiver)}}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=send", helperDir+"="+dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[int]int{} // writer → highest acknowledged message number
	sc := bufio.NewScanner(stdout)
	for n := 0; n < killAfter && sc.Scan(); n++ {
		var w, i int
		if _, err := fmt.Sscanf(sc.Text(), "ok %d %d", &w, &i); err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("helper said %q", sc.Text())
		}
		acked[w] = i
	}
	cmd.Process.Kill() // SIGKILL: no deferred Close, no flush
	cmd.Wait()

	s, err = OpenServer(path, keyOpts(dir), Limits{})
	if err != nil {
		t.Fatalf("reopen after SIGKILL: %v", err)
	}
	defer s.Close()
	r, err := s.Fetch(ctx, crashReceiver, 1, 1<<30, 0)
	msgs := r.Messages // after the Welcome
	if err != nil {
		t.Fatal(err)
	}
	next := map[int]int{}
	for _, m := range msgs {
		var w, i int
		if _, err := fmt.Sscanf(string(m.Data), "%d %d", &w, &i); err != nil {
			t.Fatalf("message %q", m.Data)
		}
		if i != next[w] {
			t.Fatalf("writer %d: message %d where %d was expected (lost, repeated or out of order)", w, i, next[w])
		}
		next[w]++
	}
	for w, i := range acked {
		if next[w] <= i {
			t.Errorf("writer %d: acknowledged message %d, only %d survived", w, i, next[w])
		}
	}
	t.Logf("killed after %d acknowledgements; %d messages survived", killAfter, len(msgs))
}

func countKeys(b *Bucket) (int, error) {
	if b == nil {
		return 0, nil
	}
	n := 0
	c := b.KeyCursor()
	for k, _, err := c.First(); k != nil; k, _, err = c.Next() {
		if err != nil {
			return 0, err
		}
		n++
	}
	return n, nil
}

// TestGroupCommitCleanFailure: a function that fails before writing is left
// out without rolling back, so no other function runs twice.
func TestGroupCommitCleanFailure(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "db"), passOpts("pw"))
	defer db.Close()
	rawEdit(t, db, func(tx *Tx) error { _, err := tx.CreateBucket([]byte("b")); return err })
	release, entered := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		db.Update(func(tx *Tx) error { close(entered); <-release; return nil })
	})
	<-entered
	const n = 10
	var runs [n]atomic.Int32
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			errs[i] = db.Update(func(tx *Tx) error {
				runs[i].Add(1)
				if _, err := tx.Bucket([]byte("b")).Get([]byte("missing")); i%3 == 0 {
					return err // ErrNotFound, after a read only
				}
				return tx.Bucket([]byte("b")).Put([]byte{byte(i)}, nil)
			})
		})
	}
	for len(db.writes) < n {
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	for i := range n {
		if got := runs[i].Load(); got != 1 {
			t.Errorf("write %d ran %d times, want 1", i, got)
		}
		if (i%3 == 0) != errors.Is(errs[i], ErrNotFound) {
			t.Errorf("write %d: err = %v", i, errs[i])
		}
	}
}

func TestBackup(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, filepath.Join(dir, "db"), passOpts("pw"))
	rawEdit(t, db, func(tx *Tx) error {
		b, err := tx.CreateBucket([]byte("b"))
		if err != nil {
			return err
		}
		return b.Put([]byte("k"), []byte("kept"))
	})
	var buf bytes.Buffer
	if err := db.Backup(&buf); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if bytes.Contains(buf.Bytes(), []byte("kept")) {
		t.Error("backup holds a value in clear")
	}
	copyPath := filepath.Join(dir, "copy")
	if err := os.WriteFile(copyPath, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	db = openTest(t, copyPath, passOpts("pw"))
	defer db.Close()
	db.View(func(tx *Tx) error {
		if v, err := tx.Bucket([]byte("b")).Get([]byte("k")); err != nil || string(v) != "kept" {
			t.Errorf("value in backup = %q, %v", v, err)
		}
		return nil
	})
}
