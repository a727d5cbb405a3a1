package mls

import (
	"bytes"
	"testing"

	"golang.org/x/crypto/cryptobyte"

	"qpchat/internal/vectors"
)

// deserializationVector mirrors one entry of deserialization.json
// (FORMAT.md, "Vector Deserialization").
type deserializationVector struct {
	VLBytesHeader vectors.Hex `json:"vlbytes_header"`
	Length        int         `json:"length"`
}

func TestDeserialization(t *testing.T) {
	var tests []deserializationVector
	vectors.Load(t, "QPCHAT_MLS_VECTORS", "mls-test-vectors", "deserialization.json", &tests)
	if len(tests) == 0 {
		t.Fatal("deserialization.json has no entries")
	}
	passed := 0
	for _, tc := range tests {
		s := cryptobyte.String(tc.VLBytesHeader)
		n, ok := readVarint(&s)
		if !ok || !s.Empty() || n != tc.Length {
			t.Errorf("readVarint(%x) = %d, %v (%d bytes left), want %d", []byte(tc.VLBytesHeader), n, ok, len(s), tc.Length)
			continue
		}
		b := cryptobyte.NewBuilder(nil)
		writeVarint(b, n)
		got, err := b.Bytes()
		if err != nil || !bytes.Equal(got, tc.VLBytesHeader) {
			t.Errorf("writeVarint(%d) = %x, %v, want %x", n, got, err, []byte(tc.VLBytesHeader))
			continue
		}
		passed++
	}
	t.Logf("deserialization.json: %d/%d entries passed", passed, len(tests))
}
