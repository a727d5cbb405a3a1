package store

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
)

// TestMemoryReopen: an in-memory database survives through its image,
// keeps its key check (a wrong passphrase is told apart) and holds no
// plaintext.
func TestMemoryReopen(t *testing.T) {
	var image []byte
	persist := func(b []byte) error { image = bytes.Clone(b); return nil }
	opts := Options{Passphrase: []byte("pass"), KDF: fastKDF}
	db, err := OpenMemory(nil, persist, opts)
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("a message nobody may read in the image")
	err = db.Update(func(tx *Tx) error {
		b, err := tx.CreateBucket([]byte("msgs"), tx.Ident("user", []byte("alice")))
		if err != nil {
			return err
		}
		_, err = b.Append(secret)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if bytes.Contains(image, secret) || bytes.Contains(image, []byte("alice")) {
		t.Fatal("the image holds plaintext")
	}
	if _, err := OpenMemory(image, persist, Options{Passphrase: []byte("wrong"), KDF: fastKDF}); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: %v, want ErrWrongPassphrase", err)
	}
	db, err = OpenMemory(image, persist, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.View(func(tx *Tx) error {
		v, err := tx.Bucket([]byte("msgs"), tx.Ident("user", []byte("alice"))).Get(SeqKey(1))
		if err != nil || !bytes.Equal(v, secret) {
			return fmt.Errorf("after reopening: %q, %v", v, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestMemoryPersistFailure: a commit whose image cannot be saved fails
// and leaves the database as it was.
func TestMemoryPersistFailure(t *testing.T) {
	fail := false
	db, err := OpenMemory(nil, func([]byte) error {
		if fail {
			return errors.New("quota exceeded")
		}
		return nil
	}, Options{Passphrase: []byte("p"), KDF: fastKDF})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	fail = true
	err = db.Update(func(tx *Tx) error {
		b, err := tx.CreateBucket([]byte("b"))
		if err != nil {
			return err
		}
		return b.Put([]byte("k"), []byte("v"))
	})
	if err == nil {
		t.Fatal("a commit whose image was not saved succeeded")
	}
	db.View(func(tx *Tx) error {
		if tx.Bucket([]byte("b")) != nil {
			t.Error("the failed commit is visible")
		}
		return nil
	})
}

// TestMemoryMatchesBolt applies the same random operations to a bbolt
// file and an in-memory database through the store API and compares
// every cursor walk, deletions under the cursor included.
func TestMemoryMatchesBolt(t *testing.T) {
	opts := Options{Passphrase: []byte("p"), KDF: fastKDF}
	fdb, err := Open(filepath.Join(t.TempDir(), "f.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer fdb.Close()
	mdb, err := OpenMemory(nil, nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer mdb.Close()
	r := rand.New(rand.NewPCG(1, 2))
	key := func() []byte { return []byte{byte(r.IntN(40))} }
	for round := range 60 {
		op, k, nested := r.IntN(6), key(), r.IntN(2) == 0
		do := func(tx *Tx) error {
			b, err := tx.CreateBucket([]byte("top"))
			if err != nil {
				return err
			}
			if nested {
				if b, err = b.CreateBucket([]byte{0xff, 1}); err != nil {
					return err
				}
			}
			switch op {
			case 0, 1:
				return b.Put(k, []byte{byte(round)})
			case 2:
				return b.Delete(k)
			case 3:
				_, err := b.Append([]byte("queued"))
				return err
			case 4: // delete every other key while walking
				c := b.KeyCursor()
				i := 0
				for k, _, err := c.First(); k != nil; k, _, err = c.Next() {
					if err != nil {
						return err
					}
					if i%2 == 0 && len(k) == 1 {
						if err := c.Delete(); err != nil {
							return err
						}
					}
					i++
				}
			case 5:
				return tx.DeleteBucket([]byte("top"), []byte{0xff, 1})
			}
			return nil
		}
		errF, errM := fdb.Update(do), mdb.Update(do)
		if (errF == nil) != (errM == nil) {
			t.Fatalf("round %d op %d: bolt %v, memory %v", round, op, errF, errM)
		}
		if a, b := walk(t, fdb), walk(t, mdb); a != b {
			t.Fatalf("round %d op %d: contents differ\nbolt:   %s\nmemory: %s", round, op, a, b)
		}
	}
}

// walk lists a database's "top" bucket both ways.
func walk(t *testing.T, db *DB) string {
	var out bytes.Buffer
	err := db.View(func(tx *Tx) error {
		var rec func(b *Bucket, depth int) error
		rec = func(b *Bucket, depth int) error {
			fmt.Fprintf(&out, "seq=%d[", b.Sequence())
			c := b.Cursor()
			for k, v, err := c.First(); k != nil; k, v, err = c.Next() {
				if err != nil {
					return err
				}
				fmt.Fprintf(&out, "%x=%x ", k, v)
				if v == nil && depth < 2 {
					if err := rec(b.Bucket(k), depth+1); err != nil {
						return err
					}
				}
			}
			out.WriteString("] back[")
			for k, _, _ := c.Last(); k != nil; k, _, _ = c.Prev() {
				fmt.Fprintf(&out, "%x ", k)
			}
			k, _, _ := c.Seek([]byte{20})
			fmt.Fprintf(&out, "] seek20=%x", k)
			return nil
		}
		if b := tx.Bucket([]byte("top")); b != nil {
			return rec(b, 0)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func FuzzMemImage(f *testing.F) {
	root := newMemBucket()
	sub := newMemBucket()
	sub.seq = 3
	sub.vals["k"] = []byte("v")
	sub.keys = []string{"k"}
	root.subs["b"] = sub
	root.vals["a"] = []byte{}
	root.keys = []string{"a", "b"}
	f.Add(marshalMemImage(root))
	f.Add([]byte(memImageMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := parseMemImage(data)
		if err != nil {
			if b != nil {
				t.Fatal("partial value on error")
			}
			return
		}
		if len(data) == 0 {
			return
		}
		if !bytes.Equal(marshalMemImage(b), data) {
			t.Fatal("image does not re-marshal to its input")
		}
	})
}
