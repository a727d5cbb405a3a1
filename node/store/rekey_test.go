package store

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"
)

func TestRekey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "db")
	file1 := Options{KeyFile: filepath.Join(dir, "key1")}
	db, err := Open(path, file1)
	if err != nil {
		t.Fatal(err)
	}
	rawEdit(t, db, func(tx *Tx) error {
		b, err := tx.CreateBucket([]byte("b"))
		if err != nil {
			return err
		}
		return b.Put(tx.Ident("user", []byte("alice")), []byte("kept"))
	})
	db.Close()
	check := func(opts Options) {
		t.Helper()
		db, err := Open(path, opts)
		if err != nil {
			t.Fatalf("open after rekey: %v", err)
		}
		defer db.Close()
		db.View(func(tx *Tx) error {
			if v, err := tx.Bucket([]byte("b")).Get(tx.Ident("user", []byte("alice"))); err != nil || string(v) != "kept" {
				t.Errorf("value after rekey = %q, %v", v, err)
			}
			return nil
		})
	}
	pass1 := passOpts("first passphrase")
	pass2 := passOpts("second passphrase")
	file2 := Options{KeyFile: filepath.Join(dir, "key2")}
	steps := []struct{ from, to Options }{{file1, pass1}, {pass1, pass2}, {pass2, file2}}
	for i, s := range steps {
		// The wrong current key changes nothing.
		wrong := passOpts("wrong")
		if s.from.KeyFile != "" {
			wrong = Options{KeyFile: filepath.Join(dir, "other-key")}
			if _, err := loadKeyFile(wrong.KeyFile, bytes.NewReader(bytes.Repeat([]byte{9}, 32))); err != nil {
				t.Fatal(err)
			}
		}
		if err := Rekey(path, wrong, s.to); !errors.Is(err, ErrWrongPassphrase) && !errors.Is(err, ErrWrongKeyFile) {
			t.Errorf("step %d: rekey with the wrong current key: %v", i, err)
		}
		check(s.from)
		if err := Rekey(path, s.from, s.to); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		check(s.to)
		if _, err := Open(path, s.from); err == nil {
			t.Errorf("step %d: the old key still opens the file", i)
		}
	}
	if err := Rekey(path, file2, file2); err == nil {
		t.Error("rekey to the same key file succeeded")
	}
}

func TestRekeyNeedsTheCurrentKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "db")
	db := openTest(t, path, passOpts("pw"))
	defer db.Close()
	if err := Rekey(path, Options{KeyFile: filepath.Join(dir, "missing")}, passOpts("x")); err == nil {
		t.Error("rekey with a missing current key file succeeded")
	}
}

func FuzzWrappedHeader(f *testing.F) {
	h := header{source: keyFromPassphrase, salt: bytes.Repeat([]byte{1}, saltSize), kdf: DefaultKDF,
		check: bytes.Repeat([]byte{2}, checkSize), wrapped: bytes.Repeat([]byte{3}, wrappedKeySize)}
	kf := header{source: keyFromFile, check: bytes.Repeat([]byte{4}, checkSize), wrapped: bytes.Repeat([]byte{5}, wrappedKeySize)}
	f.Add(h.marshal())
	f.Add(kf.marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseHeader(b)
		if err != nil {
			if h != nil {
				t.Fatal("failed parse returned a header")
			}
			return
		}
		if got := h.marshal(); !bytes.Equal(got, b) {
			t.Fatalf("re-marshal = %x, want %x", got, b)
		}
	})
}
