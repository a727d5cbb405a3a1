package store

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

var blobLim = BlobLimits{MaxSize: 1000, Quota: 1500, TTL: time.Hour, ChunkSize: 300}

func blobID(b byte) []byte { return bytes.Repeat([]byte{b}, BlobIDLen) }

func TestBlobLifecycle(t *testing.T) {
	s, _ := newServer(t, Limits{})
	now := time.Unix(1_700_000_000, 0)
	data := make([]byte, 700)
	for i := range data {
		data[i] = byte(i * 7)
	}
	b, err := s.CreateBlob(ctx, "alice", blobID(1), uint64(len(data)), now, blobLim)
	if err != nil {
		t.Fatal(err)
	}
	if b.ChunkSize != 300 || b.Expires != now.Add(time.Hour).UnixMilli() {
		t.Fatalf("blob %+v", b)
	}
	if _, _, err := s.ReadBlob(ctx, blobID(1), 0, 1000, now); !errors.Is(err, ErrNotFound) {
		t.Errorf("reading an incomplete blob = %v, want ErrNotFound", err)
	}
	// Out of order, wrong size, someone else's: refused.
	if _, err := s.PutBlobChunk(ctx, "alice", blobID(1), 300, data[300:600], now); !errors.Is(err, ErrInvalid) {
		t.Errorf("chunk at the wrong offset = %v, want ErrInvalid", err)
	}
	if _, err := s.PutBlobChunk(ctx, "alice", blobID(1), 0, data[:200], now); !errors.Is(err, ErrInvalid) {
		t.Errorf("short chunk = %v, want ErrInvalid", err)
	}
	if _, err := s.PutBlobChunk(ctx, "mallory", blobID(1), 0, data[:300], now); !errors.Is(err, ErrNotFound) {
		t.Errorf("another user's chunk = %v, want ErrNotFound", err)
	}
	for off := 0; off < len(data); off += 300 {
		end := min(off+300, len(data))
		got, err := s.PutBlobChunk(ctx, "alice", blobID(1), uint64(off), data[off:end], now)
		if err != nil || got != uint64(end) {
			t.Fatalf("chunk at %d: %d, %v", off, got, err)
		}
	}
	if _, err := s.PutBlobChunk(ctx, "alice", blobID(1), 700, []byte{1}, now); !errors.Is(err, ErrExists) {
		t.Errorf("a chunk past the end = %v, want ErrExists", err)
	}
	var back []byte
	for off := uint64(0); off < 700; {
		part, size, err := s.ReadBlob(ctx, blobID(1), off, 250, now)
		if err != nil || size != 700 || len(part) == 0 {
			t.Fatalf("ReadBlob at %d: %d bytes, size %d, %v", off, len(part), size, err)
		}
		back = append(back, part...)
		off += uint64(len(part))
	}
	if !bytes.Equal(back, data) {
		t.Fatal("the blob read back differs")
	}
	if _, _, err := s.ReadBlob(ctx, blobID(1), 701, 10, now); !errors.Is(err, ErrInvalid) {
		t.Errorf("read past the end = %v, want ErrInvalid", err)
	}
	if _, _, err := s.ReadBlob(ctx, blobID(2), 0, 10, now); !errors.Is(err, ErrNotFound) {
		t.Errorf("read of an unknown blob = %v, want ErrNotFound", err)
	}

	// Limits: size, quota (700 used of 1500).
	if _, err := s.CreateBlob(ctx, "alice", blobID(3), 1001, now, blobLim); !errors.Is(err, ErrLimit) {
		t.Errorf("oversized blob = %v, want ErrLimit", err)
	}
	if _, err := s.CreateBlob(ctx, "alice", blobID(3), 801, now, blobLim); !errors.Is(err, ErrLimit) {
		t.Errorf("blob over quota = %v, want ErrLimit", err)
	} else if err != nil {
		t.Log(err)
	}
	if _, err := s.CreateBlob(ctx, "bob", blobID(3), 801, now, blobLim); err != nil {
		t.Errorf("bob's quota is his own: %v", err)
	}
	if _, err := s.CreateBlob(ctx, "alice", blobID(1), 10, now, blobLim); !errors.Is(err, ErrExists) {
		t.Errorf("reused id = %v, want ErrExists", err)
	}

	// Expiry: gone, and the quota comes back.
	later := now.Add(time.Hour)
	if _, _, err := s.ReadBlob(ctx, blobID(1), 0, 10, later); !errors.Is(err, ErrNotFound) {
		t.Errorf("read of an expired blob = %v, want ErrNotFound", err)
	}
	n, err := s.ExpireBlobs(ctx, later, 100)
	if err != nil || n != 2 {
		t.Fatalf("ExpireBlobs = %d, %v; want 2", n, err)
	}
	if used, err := s.BlobUsage(ctx, "alice"); err != nil || used != 0 {
		t.Errorf("alice's usage after expiry = %d, %v", used, err)
	}
	if _, err := s.CreateBlob(ctx, "alice", blobID(4), 1000, later, blobLim); err != nil {
		t.Errorf("after expiry the quota is free again: %v", err)
	}
}

func TestBlobSurvivesReopen(t *testing.T) {
	s, path := newServer(t, Limits{})
	now := time.Now()
	if _, err := s.CreateBlob(ctx, "alice", blobID(9), 5, now, blobLim); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutBlobChunk(ctx, "alice", blobID(9), 0, []byte("hello"), now); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2, err := openServerAt(t, path, Options{Passphrase: []byte("server pass"), KDF: fastKDF}, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	got, _, err := s2.ReadBlob(ctx, blobID(9), 0, 100, now)
	if err != nil || string(got) != "hello" {
		t.Fatalf("after reopening: %q, %v", got, err)
	}
}

func FuzzParseBlob(f *testing.F) {
	f.Add((&Blob{ID: blobID(1), Owner: "alice", Size: 10, Received: 3, ChunkSize: 4, Expires: 5}).marshal())
	f.Fuzz(func(t *testing.T, in []byte) {
		b, err := parseBlob(in)
		if err != nil {
			return
		}
		if !bytes.Equal(b.marshal(), in) {
			t.Fatalf("%x re-marshals differently", in)
		}
	})
}
