package mls

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"golang.org/x/crypto/cryptobyte"

	"qpchat/internal/vectors"
)

func TestVarintRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 63, 64, 16383, 16384, maxVarint} {
		b := cryptobyte.NewBuilder(nil)
		writeVarint(b, n)
		enc, err := b.Bytes()
		if err != nil {
			t.Fatalf("writeVarint(%d): %v", n, err)
		}
		s := cryptobyte.String(enc)
		got, ok := readVarint(&s)
		if !ok || got != n || !s.Empty() {
			t.Errorf("readVarint(writeVarint(%d) = %x) = %d, %v", n, enc, got, ok)
		}
	}
	for _, n := range []int{-1, maxVarint + 1} {
		b := cryptobyte.NewBuilder(nil)
		writeVarint(b, n)
		if _, err := b.Bytes(); err == nil {
			t.Errorf("writeVarint(%d) succeeded, want error", n)
		}
	}
}

func TestVarintRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"truncated 2-byte", []byte{0x40}},
		{"truncated 4-byte", []byte{0x80, 0x00, 0x40}},
		{"8-byte prefix", []byte{0xc0, 0, 0, 0, 0, 0, 0, 1}},
		{"non-minimal 2-byte 0", []byte{0x40, 0x00}},
		{"non-minimal 2-byte 63", []byte{0x40, 0x3f}},
		{"non-minimal 4-byte 0", []byte{0x80, 0, 0, 0}},
		{"non-minimal 4-byte 16383", []byte{0x80, 0, 0x3f, 0xff}},
	} {
		s := cryptobyte.String(tc.in)
		if n, ok := readVarint(&s); ok {
			t.Errorf("readVarint(%x) [%s] = %d, want failure", tc.in, tc.name, n)
		}
	}
}

func TestReadOpaqueBounded(t *testing.T) {
	// A header announcing 2^30-1 bytes with 3 bytes behind it must fail
	// without allocating the announced length.
	s := cryptobyte.String([]byte{0xbf, 0xff, 0xff, 0xff, 1, 2, 3})
	var out []byte
	allocs := testing.AllocsPerRun(10, func() {
		s2 := s
		if readOpaque(&s2, &out) {
			t.Fatal("readOpaque of a truncated vector succeeded")
		}
	})
	if allocs > 0 {
		t.Errorf("readOpaque of a truncated vector allocated %v times, want 0", allocs)
	}
	// readOpaque copies: changing the input must not change the result.
	in := []byte{3, 'a', 'b', 'c'}
	s = cryptobyte.String(in)
	if !readOpaque(&s, &out) || string(out) != "abc" {
		t.Fatalf("readOpaque(%x) = %q", in, out)
	}
	in[1] = 'x'
	if string(out) != "abc" {
		t.Errorf("readOpaque result aliases its input")
	}
}

func TestReadOptional(t *testing.T) {
	for _, tc := range []struct {
		in      byte
		ok, set bool
	}{{0, true, false}, {1, true, true}, {2, false, false}, {0xff, false, false}} {
		s := cryptobyte.String([]byte{tc.in})
		var present bool
		ok := readOptional(&s, &present)
		if ok != tc.ok || (ok && present != tc.set) {
			t.Errorf("readOptional(%02x) = %v, %v, want %v, %v", tc.in, present, ok, tc.set, tc.ok)
		}
	}
}

func TestReadListRejectsEmptyElement(t *testing.T) {
	// An element decoder that consumes nothing would loop forever on a
	// non-empty body; readList must stop it.
	s := cryptobyte.String([]byte{2, 0, 0})
	err := readList(&s, func(s *cryptobyte.String) error { return nil })
	if err == nil {
		t.Error("readList with a non-consuming element decoder succeeded")
	}
}

func TestUnmarshalAllRejectsTrailing(t *testing.T) {
	// A valid RemoveProposal followed by one extra byte.
	_, err := UnmarshalProposal([]byte{0, 3, 0, 0, 0, 7, 0})
	if err == nil {
		t.Error("UnmarshalProposal with a trailing byte succeeded")
	}
	p, err := UnmarshalProposal([]byte{0, 3, 0, 0, 0, 7})
	if err != nil || p.Remove == nil || p.Remove.Removed != 7 {
		t.Errorf("UnmarshalProposal(remove 7) = %+v, %v", p, err)
	}
}

// checkRoundTrip is the body of every fuzz target: when decode accepts
// data, encoding the result must reproduce data exactly (the encoding is
// canonical), and decoding that again must give an equal value; when decode
// fails it must return the zero value, never a partial one.
func checkRoundTrip[V any](t *testing.T, data []byte, decode func([]byte) (V, error), encode func(V) ([]byte, error)) {
	t.Helper()
	v, err := decode(data)
	if err != nil {
		if !reflect.ValueOf(&v).Elem().IsZero() {
			t.Fatalf("decode failed (%v) but returned a value: %+v", err, v)
		}
		return
	}
	got, err := encode(v)
	if err != nil {
		t.Fatalf("encode(decode(%x)): %v", data, err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("encode(decode(%x)) = %x", data, got)
	}
	v2, err := decode(got)
	if err != nil {
		t.Fatalf("decode(encode(decode(x))): %v", err)
	}
	if !reflect.DeepEqual(v, v2) {
		t.Fatalf("decode is not stable: %+v != %+v", v, v2)
	}
}

// fuzzSeedEntries is how many messages.json entries seed each fuzz target;
// a few keep the seed corpus small while covering every wire format.
const fuzzSeedEntries = 3

// addMessageSeeds adds pick's values from the first messages.json entries
// as fuzz seeds. Seeds are optional: without the vector folder the fuzz
// target still runs on its hand-written seeds, so this never skips (as
// vectors.Load would). The folder is found as vectors.Dir finds it, and a
// present folder without a readable messages.json fails the target. Only
// the entries used are decoded, not the whole 2.6 MB file, which every
// fuzz target and fuzz worker would otherwise parse.
func addMessageSeeds(f *testing.F, pick func(*messagesVector) [][]byte) {
	f.Helper()
	dir := os.Getenv("QPCHAT_MLS_VECTORS")
	if dir == "" {
		root := vectors.ModuleRoot()
		if root == "" {
			return
		}
		dir = filepath.Join(filepath.Dir(root), "shared", "mls-test-vectors")
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return
	}
	file, err := os.Open(filepath.Join(dir, "messages.json"))
	if err != nil {
		f.Fatalf("vectors: %v", err)
	}
	defer file.Close()
	dec := json.NewDecoder(file)
	dec.DisallowUnknownFields()
	if _, err := dec.Token(); err != nil {
		f.Fatalf("messages.json: %v", err)
	}
	for i := 0; i < fuzzSeedEntries && dec.More(); i++ {
		var tc messagesVector
		if err := dec.Decode(&tc); err != nil {
			f.Fatalf("messages.json: %v", err)
		}
		for _, seed := range pick(&tc) {
			f.Add(seed)
		}
	}
}

// seeds is shorthand for a pick function's result.
func seeds(bs ...[]byte) [][]byte { return bs }
