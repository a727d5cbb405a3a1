package opaque

import (
	"bytes"
	"errors"
	"testing"
)

func TestKSFEncoding(t *testing.T) {
	for _, k := range []KSF{IdentityKSF{}, DefaultArgon2id, TestArgon2id, Argon2id{Time: 0xffffffff, MemoryKiB: 0xffffffff, Threads: 0xff}} {
		b, err := k.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseKSF(b)
		if err != nil {
			t.Errorf("ParseKSF(%v) = %v", k, err)
			continue
		}
		if got != k {
			t.Errorf("ParseKSF(MarshalBinary(%v)) = %v", k, got)
		}
	}
	want := []byte{0x01, 0, 0, 0, 3, 0, 1, 0, 0, 4}
	if b, _ := DefaultArgon2id.MarshalBinary(); !bytes.Equal(b, want) {
		t.Errorf("DefaultArgon2id encodes as %x, want %x", b, want)
	}
	for _, bad := range [][]byte{
		nil,
		{0x00, 0x00},
		{0x02},
		{0x01, 0, 0, 0, 3, 0, 1, 0, 0},       // short
		{0x01, 0, 0, 0, 3, 0, 1, 0, 0, 4, 0}, // long
		{0x01, 0, 0, 0, 0, 0, 1, 0, 0, 4},    // t = 0
		{0x01, 0, 0, 0, 3, 0, 1, 0, 0, 0},    // p = 0
		{0x01, 0, 0, 0, 3, 0, 0, 0, 0x1f, 4}, // m < 8p
	} {
		if k, err := ParseKSF(bad); err == nil || k != nil {
			t.Errorf("ParseKSF(%x) = %v, %v; want an error", bad, k, err)
		}
	}
}

func TestArgon2idStretch(t *testing.T) {
	msg := []byte("oprf output")
	a, err := TestArgon2id.Stretch(msg, 64)
	if err != nil || len(a) != 64 {
		t.Fatalf("Stretch = %d bytes, %v", len(a), err)
	}
	for _, other := range []Argon2id{{2, 64, 1}, {1, 128, 1}, {1, 64, 2}} {
		b, err := other.Stretch(msg, 64)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(a, b) {
			t.Errorf("%v and %v stretch alike", TestArgon2id, other)
		}
	}
	if _, err := (Argon2id{Time: 0, MemoryKiB: 64, Threads: 1}).Stretch(msg, 64); err == nil {
		t.Error("Stretch with t=0 succeeded")
	}
	if id, _ := (IdentityKSF{}).Stretch(msg, 64); !bytes.Equal(id, msg) {
		t.Error("identity KSF changed its input")
	}
}

func TestKSFBoundsCheck(t *testing.T) {
	if err := DefaultKSFBounds.Check(DefaultArgon2id); err != nil {
		t.Errorf("default parameters refused: %v", err)
	}
	for _, k := range []KSF{
		IdentityKSF{},
		nil,
		TestArgon2id,
		Argon2id{Time: 1, MemoryKiB: 64 * 1024, Threads: 4},
		Argon2id{Time: 3, MemoryKiB: 1024 * 1024, Threads: 4},
		Argon2id{Time: 100, MemoryKiB: 64 * 1024, Threads: 4},
		Argon2id{Time: 3, MemoryKiB: 64 * 1024, Threads: 64},
	} {
		if err := DefaultKSFBounds.Check(k); !errors.Is(err, ErrKSFOutOfBounds) {
			t.Errorf("DefaultKSFBounds.Check(%v) = %v, want ErrKSFOutOfBounds", k, err)
		}
	}
	if err := TestKSFBounds.Check(TestArgon2id); err != nil {
		t.Errorf("TestKSFBounds refuses TestArgon2id: %v", err)
	}
	if !TestArgon2id.Below(DefaultArgon2id) || DefaultArgon2id.Below(DefaultArgon2id) ||
		!(Argon2id{Time: 4, MemoryKiB: 64 * 1024, Threads: 2}).Below(DefaultArgon2id) {
		t.Error("Below is wrong")
	}
}
