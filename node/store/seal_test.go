package store

import (
	"bytes"
	"errors"
	"testing"
)

func testSealer(t testing.TB) *sealer {
	t.Helper()
	k, err := deriveKeys(bytes.Repeat([]byte{0x42}, dataKeySize))
	if err != nil {
		t.Fatal(err)
	}
	s, err := newSealer(k.enc, k.index, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSealBinding(t *testing.T) {
	s := testSealer(t)
	path := appendPath(appendPath(nil, []byte("queues")), []byte("dev"))
	sealed, err := s.seal(path, []byte("k"), []byte("value"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.open(path, []byte("k"), sealed); err != nil || string(got) != "value" {
		t.Fatalf("open = %q, %v", got, err)
	}
	again, _ := s.seal(path, []byte("k"), []byte("value"))
	if bytes.Equal(sealed, again) {
		t.Error("sealing twice gave the same bytes: nonces are not random")
	}
	// The length prefixes keep path and key apart: ("ab","c") ≠ ("a","bc").
	cases := []struct {
		name      string
		path, key []byte
	}{
		{"other key", path, []byte("k2")},
		{"other bucket", appendPath(appendPath(nil, []byte("queues")), []byte("dev2")), []byte("k")},
		{"parent bucket", appendPath(nil, []byte("queues")), []byte("k")},
		{"key moved into path", appendPath(appendPath(nil, []byte("queues")), []byte("devk")), nil},
	}
	for _, tc := range cases {
		if _, err := s.open(tc.path, tc.key, sealed); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: open = %v, want ErrCorrupt", tc.name, err)
		}
	}
	if a, b := s.ident("user", []byte("x")), s.ident("group", []byte("x")); bytes.Equal(a, b) {
		t.Error("ident does not separate domains")
	}
	other := testSealer(t)
	other.index = []byte("another key")
	if bytes.Equal(s.ident("user", []byte("x")), other.ident("user", []byte("x"))) {
		t.Error("ident does not depend on the index key")
	}
}

// FuzzSealedRecord feeds arbitrary bytes to the opener (which must fail
// cleanly: the fuzzer cannot forge a tag) and checks that any plaintext
// seals and opens back to itself.
func FuzzSealedRecord(f *testing.F) {
	s := testSealer(f)
	path := appendPath(nil, []byte("b"))
	good, _ := s.seal(path, []byte("k"), sampleEnv.marshal())
	f.Add(good, []byte("k"))
	f.Add(good[:sealOverhead], []byte("k"))
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, data, key []byte) {
		if v, err := s.open(path, key, data); err == nil {
			// Only the seed itself may open (fuzz workers are separate
			// processes with their own good, so compare the plaintext).
			if !bytes.Equal(v, sampleEnv.marshal()) || !bytes.Equal(key, []byte("k")) {
				t.Fatalf("opened a forged record: %x", v)
			}
		} else if v != nil {
			t.Errorf("failed open returned %x", v)
		}
		sealed, err := s.seal(path, key, data)
		if err != nil {
			t.Fatal(err)
		}
		if len(sealed) != len(data)+sealOverhead {
			t.Errorf("sealed %d bytes to %d", len(data), len(sealed))
		}
		if got, err := s.open(path, key, sealed); err != nil || !bytes.Equal(got, data) {
			t.Errorf("open(seal(x)) = %x, %v; want %x", got, err, data)
		}
	})
}
