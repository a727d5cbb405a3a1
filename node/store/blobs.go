package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/cryptobyte"
)

// Blobs are the files clients send: the client encrypts a file under a
// fresh key and uploads the ciphertext here; the key travels inside an MLS
// message. The node keeps opaque bytes and learns only their size, the
// uploading user, and when they expire.
//
// A blob is created with its final size (charged to its owner's quota at
// once), filled in order in chunks of the blob's chunk size (the last one
// shorter), readable once complete, and deleted when it expires, complete
// or not. Its id is 32 random bytes chosen by the node: whoever holds the
// id may download the ciphertext, as the members of the group that
// received the MLS message do.

var (
	bucketBlobs     = []byte("blobs")      // Ident(id) / {"b" → blobRecord, "d" / chunk index → bytes}
	bucketBlobUsage = []byte("blob-usage") // Ident(user) → uint64 bytes charged
	bucketBlobTimes = []byte("blob-times") // expiry (ms) ‖ id → "" (an index for ExpireBlobs)

	keyBlob       = []byte("b")
	keyBlobChunks = []byte("d")
)

const (
	domainBlob = "blob"
	// BlobIDLen is the length of a blob id.
	BlobIDLen = 32
	// MaxBlobChunk bounds a blob's chunk size.
	MaxBlobChunk = 4 << 20
)

// ErrInvalid is returned (wrapped, saying what) for a request that can
// never succeed as made, such as a blob chunk at the wrong offset.
var ErrInvalid = errors.New("store: invalid request")

// BlobStore keeps blobs (see the top of blobs.go).
type BlobStore interface {
	CreateBlob(ctx context.Context, user string, id []byte, size uint64, now time.Time, lim BlobLimits) (*Blob, error)
	PutBlobChunk(ctx context.Context, user string, id []byte, offset uint64, data []byte, now time.Time) (uint64, error)
	ReadBlob(ctx context.Context, id []byte, offset uint64, n int, now time.Time) ([]byte, uint64, error)
	ExpireBlobs(ctx context.Context, now time.Time, limit int) (int, error)
	BlobUsage(ctx context.Context, user string) (uint64, error)
}

// BlobLimits are the node's limits on files.
type BlobLimits struct {
	MaxSize   uint64        // bytes of one blob
	Quota     uint64        // bytes of unexpired blobs per user
	TTL       time.Duration // how long a blob is kept after its creation
	ChunkSize int           // bytes of one chunk (the last may be shorter)
}

// Blob describes a stored blob.
type Blob struct {
	ID        []byte
	Owner     string
	Size      uint64 // final size
	Received  uint64 // bytes uploaded so far
	ChunkSize uint32
	Expires   int64 // Unix milliseconds
}

// Complete says whether every byte has been uploaded.
func (b *Blob) Complete() bool { return b.Received == b.Size }

func (b *Blob) marshal() []byte {
	return build(func(c *cryptobyte.Builder) {
		addBytes8(c, b.ID)
		addBytes16(c, []byte(b.Owner))
		c.AddUint64(b.Size)
		c.AddUint64(b.Received)
		c.AddUint32(b.ChunkSize)
		c.AddUint64(uint64(b.Expires))
	})
}

func parseBlob(data []byte) (*Blob, error) {
	var b Blob
	var owner []byte
	var exp uint64
	s := cryptobyte.String(data)
	ok := readFormat(&s) && readBytes8(&s, &b.ID, BlobIDLen) && len(b.ID) == BlobIDLen &&
		readBytes16(&s, &owner, 1, MaxUserLen) && s.ReadUint64(&b.Size) && s.ReadUint64(&b.Received) &&
		s.ReadUint32(&b.ChunkSize) && s.ReadUint64(&exp) &&
		b.Received <= b.Size && b.ChunkSize > 0 && b.ChunkSize <= MaxBlobChunk && exp < 1<<62
	if err := finish(s, ok, "blob"); err != nil {
		return nil, err
	}
	b.Owner, b.Expires = string(owner), int64(exp)
	return &b, nil
}

func blobTimeKey(expires int64, id []byte) []byte {
	return append(SeqKey(uint64(expires)), id...)
}

// blobUsage reads the bytes charged to user.
func blobUsage(tx *Tx, user string) (*Bucket, []byte, uint64, error) {
	ub := tx.Bucket(bucketBlobUsage)
	if ub == nil {
		var err error
		if ub, err = tx.CreateBucket(bucketBlobUsage); err != nil {
			return nil, nil, 0, err
		}
	}
	key := tx.Ident(domainUser, []byte(user))
	v, err := ub.Get(key)
	if errors.Is(err, ErrNotFound) {
		return ub, key, 0, nil
	}
	if err != nil {
		return nil, nil, 0, err
	}
	n, ok := ParseSeqKey(v)
	if !ok {
		return nil, nil, 0, fmt.Errorf("store: malformed blob usage record: %w", ErrCorrupt)
	}
	return ub, key, n, nil
}

// CreateBlob makes an empty blob of size bytes owned by user, under id (32
// random bytes), charging size to the user's quota until it expires.
func (s *LocalStore) CreateBlob(ctx context.Context, user string, id []byte, size uint64, now time.Time, lim BlobLimits) (*Blob, error) {
	if len(id) != BlobIDLen || user == "" || len(user) > MaxUserLen {
		return nil, fmt.Errorf("store: blob id of %d bytes or bad owner: %w", len(id), ErrInvalid)
	}
	if lim.ChunkSize <= 0 || lim.ChunkSize > MaxBlobChunk {
		return nil, fmt.Errorf("store: blob chunk size %d out of range: %w", lim.ChunkSize, ErrInvalid)
	}
	if size == 0 {
		return nil, fmt.Errorf("store: an empty file: %w", ErrInvalid)
	}
	if size > lim.MaxSize {
		return nil, fmt.Errorf("a file of %d bytes is above the node's limit of %d bytes: %w", size, lim.MaxSize, ErrLimit)
	}
	b := &Blob{ID: bytes.Clone(id), Owner: user, Size: size, ChunkSize: uint32(lim.ChunkSize), Expires: now.Add(lim.TTL).UnixMilli()}
	err := s.update(ctx, func(tx *Tx) error {
		ub, ukey, used, err := blobUsage(tx, user)
		if err != nil {
			return err
		}
		if used > lim.Quota || size > lim.Quota-used {
			return fmt.Errorf("file quota: %d of %d bytes in use, this file needs %d: %w", used, lim.Quota, size, ErrLimit)
		}
		bb, err := tx.CreateBucket(bucketBlobs)
		if err != nil {
			return err
		}
		key := tx.Ident(domainBlob, id)
		if bb.Bucket(key) != nil {
			return ErrExists
		}
		nb, err := bb.CreateBucket(key)
		if err != nil {
			return err
		}
		if err := nb.Put(keyBlob, b.marshal()); err != nil {
			return err
		}
		tb, err := tx.CreateBucket(bucketBlobTimes)
		if err != nil {
			return err
		}
		if err := tb.Put(blobTimeKey(b.Expires, id), nil); err != nil {
			return err
		}
		return ub.Put(ukey, SeqKey(used+size))
	})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// blobBucket finds an unexpired blob.
func blobBucket(tx *Tx, id []byte, now time.Time) (*Bucket, *Blob, error) {
	if len(id) != BlobIDLen {
		return nil, nil, ErrNotFound
	}
	bb := tx.Bucket(bucketBlobs)
	if bb == nil {
		return nil, nil, ErrNotFound
	}
	nb := bb.Bucket(tx.Ident(domainBlob, id))
	if nb == nil {
		return nil, nil, ErrNotFound
	}
	v, err := nb.Get(keyBlob)
	if err != nil {
		return nil, nil, err
	}
	b, err := parseBlob(v)
	if err != nil {
		return nil, nil, err
	}
	if !bytes.Equal(b.ID, id) {
		return nil, nil, fmt.Errorf("store: blob record under another id: %w", ErrCorrupt)
	}
	if now.UnixMilli() >= b.Expires {
		return nil, nil, ErrNotFound
	}
	return nb, b, nil
}

// PutBlobChunk appends data at offset to user's blob id. Chunks come in
// order: offset must be the bytes received so far, and data a whole chunk
// (or the rest of the blob). It returns the bytes received after it.
func (s *LocalStore) PutBlobChunk(ctx context.Context, user string, id []byte, offset uint64, data []byte, now time.Time) (uint64, error) {
	var received uint64
	err := s.update(ctx, func(tx *Tx) error {
		nb, b, err := blobBucket(tx, id, now)
		if err != nil {
			return err
		}
		if b.Owner != user {
			return ErrNotFound // someone else's blob is none of this user's business
		}
		switch {
		case b.Complete():
			return fmt.Errorf("the file is complete: %w", ErrExists)
		case offset != b.Received:
			return fmt.Errorf("a chunk at offset %d, the node has %d bytes of this file: %w", offset, b.Received, ErrInvalid)
		case uint64(len(data)) != min(uint64(b.ChunkSize), b.Size-b.Received):
			return fmt.Errorf("a chunk of %d bytes, want %d: %w", len(data), min(uint64(b.ChunkSize), b.Size-b.Received), ErrInvalid)
		}
		cb, err := nb.CreateBucket(keyBlobChunks)
		if err != nil {
			return err
		}
		cb.AppendOnly()
		if err := cb.Put(SeqKey(offset/uint64(b.ChunkSize)), data); err != nil {
			return err
		}
		b.Received += uint64(len(data))
		received = b.Received
		return nb.Put(keyBlob, b.marshal())
	})
	return received, err
}

// ReadBlob returns up to n bytes of complete blob id from offset (never
// past the end of the chunk holding offset), and the blob's size.
func (s *LocalStore) ReadBlob(ctx context.Context, id []byte, offset uint64, n int, now time.Time) ([]byte, uint64, error) {
	var out []byte
	var size uint64
	err := s.view(ctx, func(tx *Tx) error {
		nb, b, err := blobBucket(tx, id, now)
		if err != nil {
			return err
		}
		if !b.Complete() {
			return ErrNotFound // not yet downloadable
		}
		size = b.Size
		if offset >= b.Size || n <= 0 {
			if offset > b.Size {
				return fmt.Errorf("offset %d past the file's %d bytes: %w", offset, b.Size, ErrInvalid)
			}
			return nil
		}
		cb := nb.Bucket(keyBlobChunks)
		if cb == nil {
			return fmt.Errorf("store: blob without chunks: %w", ErrCorrupt)
		}
		idx := offset / uint64(b.ChunkSize)
		chunk, err := cb.Get(SeqKey(idx))
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				return fmt.Errorf("store: blob chunk %d missing: %w", idx, ErrCorrupt)
			}
			return err
		}
		want := min(uint64(b.ChunkSize), b.Size-idx*uint64(b.ChunkSize))
		if uint64(len(chunk)) != want {
			return fmt.Errorf("store: blob chunk %d of %d bytes, want %d: %w", idx, len(chunk), want, ErrCorrupt)
		}
		chunk = chunk[offset-idx*uint64(b.ChunkSize):]
		out = bytes.Clone(chunk[:min(len(chunk), n)])
		return nil
	})
	return out, size, err
}

// ExpireBlobs deletes the blobs that expired by now (at most limit of them
// in one transaction) and gives their bytes back to their owners' quotas.
// It returns how many it deleted.
func (s *LocalStore) ExpireBlobs(ctx context.Context, now time.Time, limit int) (int, error) {
	n := 0
	err := s.update(ctx, func(tx *Tx) error {
		n = 0
		tb := tx.Bucket(bucketBlobTimes)
		if tb == nil {
			return nil
		}
		var due [][]byte
		c := tb.KeyCursor()
		for k, _, err := c.First(); k != nil && len(due) < limit; k, _, err = c.Next() {
			if err != nil {
				return err
			}
			exp, ok := ParseSeqKey(k[:min(len(k), 8)])
			if !ok || len(k) != 8+BlobIDLen {
				return fmt.Errorf("store: malformed blob expiry key: %w", ErrCorrupt)
			}
			if int64(exp) > now.UnixMilli() {
				break
			}
			due = append(due, bytes.Clone(k))
		}
		bb := tx.Bucket(bucketBlobs)
		for _, k := range due {
			if err := tb.Delete(k); err != nil {
				return err
			}
			id := k[8:]
			if bb == nil {
				continue
			}
			key := tx.Ident(domainBlob, id)
			nb := bb.Bucket(key)
			if nb == nil {
				continue
			}
			if v, err := nb.Get(keyBlob); err == nil {
				if b, err := parseBlob(v); err == nil {
					ub, ukey, used, err := blobUsage(tx, b.Owner)
					if err != nil {
						return err
					}
					if err := ub.Put(ukey, SeqKey(used-min(used, b.Size))); err != nil {
						return err
					}
				}
			}
			if err := bb.DeleteBucket(key); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// BlobUsage returns the bytes charged to user's quota.
func (s *LocalStore) BlobUsage(ctx context.Context, user string) (uint64, error) {
	var used uint64
	err := s.view(ctx, func(tx *Tx) error {
		if tx.Bucket(bucketBlobUsage) == nil {
			return nil
		}
		_, _, n, err := blobUsage(tx, user)
		used = n
		return err
	})
	return used, err
}
