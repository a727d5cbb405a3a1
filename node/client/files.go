package client

// Files. A file goes to a group in two parts:
//
//  1. The client encrypts it under a fresh random 32-byte key and uploads
//     the ciphertext to the node as a blob (Session.createBlob, putBlob).
//     The node learns the ciphertext's size and nothing else.
//  2. An MLS application message to the group carries a file reference:
//
//     payload kind 4, text = fileRef
//     fileRef = id<V> ‖ key<V> ‖ hash<V> ‖ name<V> ‖ uint64 size ‖ uint64 segment
//
//     (the state records' uint32-prefixed fields): the blob id, the key,
//     SHA-256 of the whole ciphertext, the file name as sent, the
//     plaintext size and the plaintext bytes per sealed segment.
//
// The ciphertext is the file in segments of `segment` bytes (at least one
// segment, the last possibly shorter or empty), each sealed with
// AES-256-GCM under the key with the 96-bit nonce 0^32 ‖ uint64 index and
// additional data "qpchat file v1" ‖ uint8 last, so segments cannot be
// reordered, dropped or cut off at a segment boundary (the STREAM
// construction of Hoang, Reyhanitabar, Rogaway and Vizár, "Online
// Authenticated-Encryption and its Nonce-Reuse Misuse-Resistance"). Each
// key encrypts exactly one file. A receiver downloads the blob, checks
// its length and hash, opens every segment, and only then moves the file
// into place: a changed blob is refused and nothing is written.

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"unicode"
	"unicode/utf8"

	"qpchat/rpc"
)

const (
	payloadFile = 4
	// fileSegment is the plaintext size of one sealed segment.
	fileSegment = 64 << 10
	// maxFileSegment bounds the segment size a received reference may name.
	maxFileSegment = 4 << 20
	// MaxFileSize bounds the files this client sends or accepts (the node
	// has its own, usually smaller, limit: --max-file-size).
	MaxFileSize = 4 << 30
	fileAAD     = "qpchat file v1"
	// maxFileName bounds a file name in bytes.
	maxFileName = 255
)

// FileRef is what a file message carries.
type FileRef struct {
	ID      []byte // the node's blob id
	Key     []byte // AES-256-GCM key, 32 bytes
	Hash    []byte // SHA-256 of the ciphertext
	Name    string // as the sender named it (see SafeFileName)
	Size    uint64 // plaintext bytes
	Segment uint64 // plaintext bytes per segment
}

func (f *FileRef) marshal() []byte {
	return newRec().bytes(f.ID).bytes(f.Key).bytes(f.Hash).str(f.Name).u64(f.Size).u64(f.Segment).done()
}

// ParseFileRef decodes a file reference, checking every bound.
func ParseFileRef(b []byte) (*FileRef, error) {
	r := readRec(b)
	f := &FileRef{ID: r.bytes(), Key: r.bytes(), Hash: r.bytes(), Name: r.str(), Size: r.u64(), Segment: r.u64()}
	if err := r.end(); err != nil {
		return nil, err
	}
	if len(f.ID) != 32 || len(f.Key) != 32 || len(f.Hash) != sha256.Size || len(f.Name) > maxFileName ||
		f.Size > MaxFileSize || f.Segment == 0 || f.Segment > maxFileSegment {
		return nil, errRecord
	}
	return f, nil
}

// segments is the number of sealed segments of a file of size bytes.
func (f *FileRef) segments() uint64 { return max(1, (f.Size+f.Segment-1)/f.Segment) }

// BlobSize is the ciphertext's size.
func (f *FileRef) BlobSize() uint64 { return f.Size + f.segments()*16 }

func fileNonce(i uint64) []byte {
	n := make([]byte, 12)
	binary.BigEndian.PutUint64(n[4:], i)
	return n
}

func fileAD(last bool) []byte {
	ad := []byte(fileAAD)
	if last {
		return append(ad, 1)
	}
	return append(ad, 0)
}

func fileAEAD(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// BlobSession is the part of a node Session that moves files; the rpc
// adapter implements it.
type BlobSession interface {
	CreateBlob(ctx context.Context, size uint64) (id []byte, chunk int, err error)
	PutBlob(ctx context.Context, id []byte, offset uint64, data []byte) (uint64, error)
	GetBlob(ctx context.Context, id []byte, offset uint64, n int) ([]byte, uint64, error)
}

func (c *Client) blobs() (BlobSession, error) {
	if b, ok := c.cfg.Session.(BlobSession); ok {
		return b, nil
	}
	return nil, errNoBlobs
}

// Progress is told the bytes done of a total while a file moves.
type Progress func(done, total uint64)

// SendFile encrypts the file at path, uploads it and sends a reference to
// the group named name. It returns the reference sent.
func (c *Client) SendFile(ctx context.Context, name, path string, progress Progress) (*FileRef, error) {
	if err := c.needDevice(); err != nil {
		return nil, err
	}
	bs, err := c.blobs()
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("client: %s is not a regular file", path)
	}
	if fi.Size() > MaxFileSize {
		return nil, fmt.Errorf("client: %s has %d bytes; files of at most %d bytes can be sent", path, fi.Size(), int64(MaxFileSize))
	}
	if _, err := c.Sync(ctx, 0); err != nil {
		return nil, err
	}
	g, err := c.loadGroupByName(ctx, name)
	if err != nil {
		return nil, err
	}
	if g.g == nil {
		return nil, fmt.Errorf("client: this device was removed from %s", g.rec.Name)
	}
	ref := &FileRef{Name: SafeFileName(filepath.Base(path)), Size: uint64(fi.Size()), Segment: fileSegment}
	if err := c.uploadSealed(ctx, bs, ref, f, progress); err != nil {
		if errors.Is(err, errSourceShort) {
			return nil, fmt.Errorf("client: reading %s: %w (did it change while it was sent?)", path, err)
		}
		return nil, err
	}
	ev := &Event{Kind: EventFile, Group: g.rec.ID, Sender: c.prof.User, DeviceID: devID(c.devKey), Outgoing: true,
		Time: c.now().Unix(), Epoch: g.g.Epoch(), Text: ref.Name, File: ref.marshal()}
	if err := c.sendPayloadWith(ctx, g, &payload{Kind: payloadFile, Text: string(ref.marshal())}, ev); err != nil {
		return nil, err
	}
	return ref, nil
}

// errSourceShort: the plaintext ended before ref.Size bytes.
var errSourceShort = errors.New("client: the source ended early")

// uploadSealed encrypts ref.Size bytes from r under a fresh key (STREAM-
// style AES-256-GCM segments of ref.Segment bytes) into a new blob at the
// node, and fills in ref's ID, Key and Hash.
func (c *Client) uploadSealed(ctx context.Context, bs BlobSession, ref *FileRef, r io.Reader, progress Progress) error {
	ref.Key = make([]byte, 32)
	if _, err := io.ReadFull(c.cfg.Rand, ref.Key); err != nil {
		return err
	}
	aead, err := fileAEAD(ref.Key)
	if err != nil {
		return err
	}
	total := ref.BlobSize()
	id, chunk, err := bs.CreateBlob(ctx, total)
	if err != nil {
		return fmt.Errorf("client: uploading %s: %w", ref.Name, err)
	}
	if chunk <= 0 || chunk > 64<<20 {
		return fmt.Errorf("client: the node asks for chunks of %d bytes", chunk)
	}
	ref.ID = id
	h := sha256.New()
	var out []byte // ciphertext not yet uploaded
	var sent uint64
	flush := func(all bool) error {
		for len(out) >= chunk || (all && len(out) > 0) {
			n := min(len(out), chunk)
			got, err := bs.PutBlob(ctx, id, sent, out[:n])
			if err != nil {
				return fmt.Errorf("client: uploading %s: %w", ref.Name, err)
			}
			sent += uint64(n)
			if got != sent {
				return fmt.Errorf("client: uploading %s: the node has %d bytes, %d were sent", ref.Name, got, sent)
			}
			out = out[n:]
			if progress != nil {
				progress(sent, total)
			}
		}
		out = append([]byte(nil), out...) // let the uploaded part go
		return nil
	}
	buf := make([]byte, ref.Segment)
	var read uint64
	for i := range ref.segments() {
		n := min(ref.Segment, ref.Size-read)
		if _, err := io.ReadFull(r, buf[:n]); err != nil {
			return fmt.Errorf("%w: %w", errSourceShort, err)
		}
		read += n
		sealed := aead.Seal(nil, fileNonce(i), buf[:n], fileAD(i == ref.segments()-1))
		h.Write(sealed)
		out = append(out, sealed...)
		if err := flush(false); err != nil {
			return err
		}
	}
	if err := flush(true); err != nil {
		return err
	}
	ref.Hash = h.Sum(nil)
	return nil
}

// ErrFileTampered is returned (wrapped) when a downloaded file does not
// match its reference: the node, or someone who can write to it, changed
// the blob.
var ErrFileTampered = errors.New("client: the file was changed at the node: it does not match what the sender sent")

// DownloadFile fetches the file of ref, checks it and writes it into dir
// under a free name derived from ref.Name. It returns the path written.
// Nothing is left in dir unless the whole file checked out.
func (c *Client) DownloadFile(ctx context.Context, ref *FileRef, dir string, progress Progress) (string, error) {
	bs, err := c.blobs()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, ".qpchat-download-*")
	if err != nil {
		return "", err
	}
	keep := false
	defer func() {
		if !keep {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := downloadSealed(ctx, bs, ref, tmp, progress); err != nil {
		return "", err
	}
	if err := tmp.Sync(); err != nil {
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	dst, err := freeName(dir, SafeFileName(ref.Name))
	if err != nil {
		return "", err
	}
	// Link, not rename: a name that appeared meanwhile is never replaced.
	if err := os.Link(tmp.Name(), dst); err != nil {
		return "", err
	}
	os.Remove(tmp.Name())
	keep = true
	return dst, nil
}

// downloadSealed fetches the blob of ref, checks its hash and segments and
// writes the plaintext to w (ErrFileTampered when it does not match).
func downloadSealed(ctx context.Context, bs BlobSession, ref *FileRef, w io.Writer, progress Progress) error {
	aead, err := fileAEAD(ref.Key)
	if err != nil {
		return err
	}
	total := ref.BlobSize()
	h := sha256.New()
	var got uint64
	var pending []byte // ciphertext not yet opened
	seg := ref.Segment + 16
	var idx uint64
	open := func(n uint64, last bool) error {
		pt, err := aead.Open(nil, fileNonce(idx), pending[:n], fileAD(last))
		if err != nil {
			return fmt.Errorf("%w (segment %d does not open)", ErrFileTampered, idx)
		}
		if _, err := w.Write(pt); err != nil {
			return err
		}
		pending = append(pending[:0], pending[n:]...)
		idx++
		return nil
	}
	for got < total {
		data, size, err := bs.GetBlob(ctx, ref.ID, got, int(min(total-got, 1<<20)))
		if err != nil {
			return fmt.Errorf("client: downloading %s: %w", ref.Name, err)
		}
		if size != total {
			return fmt.Errorf("%w (the node holds %d bytes, the sender sent %d)", ErrFileTampered, size, total)
		}
		if len(data) == 0 || uint64(len(data)) > total-got {
			return fmt.Errorf("client: downloading %s: the node sent %d bytes at offset %d of %d", ref.Name, len(data), got, total)
		}
		got += uint64(len(data))
		h.Write(data)
		pending = append(pending, data...)
		for uint64(len(pending)) > seg || (uint64(len(pending)) == seg && got < total) {
			if err := open(seg, false); err != nil {
				return err
			}
		}
		if progress != nil {
			progress(got, total)
		}
	}
	if subtle.ConstantTimeCompare(h.Sum(nil), ref.Hash) != 1 {
		return fmt.Errorf("%w (its hash differs)", ErrFileTampered)
	}
	if err := open(uint64(len(pending)), true); err != nil {
		return err
	}
	if idx != ref.segments() {
		return fmt.Errorf("%w (%d segments, want %d)", ErrFileTampered, idx, ref.segments())
	}
	return nil
}

// freeName finds a name in dir that does not exist: name, then
// "stem (1).ext", "stem (2).ext", …
func freeName(dir, name string) (string, error) {
	ext := filepath.Ext(name)
	stem := strings.TrimSuffix(name, ext)
	for i := 0; i < 10000; i++ {
		cand := name
		if i > 0 {
			cand = fmt.Sprintf("%s (%d)%s", stem, i, ext)
		}
		p := filepath.Join(dir, cand)
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			return p, nil
		}
	}
	return "", fmt.Errorf("client: no free name for %s in %s", name, dir)
}

// SafeFileName makes a received (or sent) file name safe to create in a
// download directory and to show: no directory parts, no control or
// invisible formatting characters, valid UTF-8, not hidden, not "." or
// "..", at most 255 bytes. An empty result becomes "file".
func SafeFileName(name string) string {
	name = strings.ToValidUTF8(name, "_")
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	var b strings.Builder
	for _, r := range name {
		switch {
		case unicode.IsControl(r), unicode.Is(unicode.Cf, r), r == utf8.RuneError:
			b.WriteByte('_')
		default:
			b.WriteRune(r)
		}
	}
	// No leading dot (hidden files, "." and ".."), also behind spaces.
	name = strings.TrimRightFunc(strings.TrimLeftFunc(b.String(), func(r rune) bool {
		return r == '.' || unicode.IsSpace(r)
	}), unicode.IsSpace)
	for len(name) > maxFileName {
		_, n := utf8.DecodeLastRuneInString(name)
		name = name[:len(name)-n]
	}
	if name == "" {
		return "file"
	}
	return name
}

// CreateBlob implements BlobSession.
func (s *rpcSession) CreateBlob(ctx context.Context, size uint64) ([]byte, int, error) {
	var id []byte
	var chunk int
	f, rel := s.s.CreateBlob(ctx, func(p rpc.Session_createBlob_Params) error { p.SetSize(size); return nil })
	err := await(f, rel, func(r rpc.Session_createBlob_Results) error {
		b, err := r.Id()
		id, chunk = bytes.Clone(b), int(r.ChunkSize())
		return err
	})
	return id, chunk, err
}

// PutBlob implements BlobSession.
func (s *rpcSession) PutBlob(ctx context.Context, id []byte, offset uint64, data []byte) (uint64, error) {
	var n uint64
	f, rel := s.s.PutBlob(ctx, func(p rpc.Session_putBlob_Params) error {
		p.SetOffset(offset)
		if err := p.SetId(id); err != nil {
			return err
		}
		return p.SetData(data)
	})
	err := await(f, rel, func(r rpc.Session_putBlob_Results) error { n = r.Received(); return nil })
	return n, err
}

// GetBlob implements BlobSession.
func (s *rpcSession) GetBlob(ctx context.Context, id []byte, offset uint64, n int) ([]byte, uint64, error) {
	var data []byte
	var size uint64
	f, rel := s.s.GetBlob(ctx, func(p rpc.Session_getBlob_Params) error {
		p.SetOffset(offset)
		p.SetLength(uint32(min(n, 1<<30)))
		return p.SetId(id)
	})
	err := await(f, rel, func(r rpc.Session_getBlob_Results) error {
		b, err := r.Data()
		data, size = bytes.Clone(b), r.Size()
		return err
	})
	return data, size, err
}

// errNoBlobs: the connection under a Live cannot move files.
var errNoBlobs = errors.New("client: this connection to the node cannot move files")

func asBlobs(in Session) (BlobSession, error) {
	if b, ok := in.(BlobSession); ok {
		return b, nil
	}
	return nil, errNoBlobs
}

// CreateBlob implements BlobSession over the current connection.
func (s *liveSession) CreateBlob(ctx context.Context, size uint64) (id []byte, chunk int, err error) {
	err = s.call(ctx, 0, func(ctx context.Context, in Session) error {
		bs, err := asBlobs(in)
		if err == nil {
			id, chunk, err = bs.CreateBlob(ctx, size)
		}
		return err
	})
	return id, chunk, err
}

// PutBlob implements BlobSession over the current connection.
func (s *liveSession) PutBlob(ctx context.Context, id []byte, offset uint64, data []byte) (n uint64, err error) {
	err = s.call(ctx, 0, func(ctx context.Context, in Session) error {
		bs, err := asBlobs(in)
		if err == nil {
			n, err = bs.PutBlob(ctx, id, offset, data)
		}
		return err
	})
	return n, err
}

// GetBlob implements BlobSession over the current connection.
func (s *liveSession) GetBlob(ctx context.Context, id []byte, offset uint64, max int) (data []byte, size uint64, err error) {
	err = s.call(ctx, 0, func(ctx context.Context, in Session) error {
		bs, err := asBlobs(in)
		if err == nil {
			data, size, err = bs.GetBlob(ctx, id, offset, max)
		}
		return err
	})
	return data, size, err
}
