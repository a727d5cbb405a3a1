package store

import (
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"

	"golang.org/x/crypto/chacha20poly1305"
)

// aadLabel starts the associated data of every sealed value. It names the
// format, so a later format with other rules can never open these records.
const aadLabel = "qpchat-store-v1"

// sealOverhead is what sealing adds to a value: the nonce and the tag.
const sealOverhead = chacha20poly1305.NonceSizeX + chacha20poly1305.Overhead

// sealer encrypts and authenticates every value the store writes, and
// computes the HMACs that stand in for identifiers in keys.
//
// Why the value is bound to where it lives: bbolt keeps keys and the bucket
// tree in clear, so an attacker who can edit the file could otherwise move a
// valid ciphertext to another key or bucket (give Bob's device record to
// Mallory's key, replay an old queue entry under a new sequence number,
// turn one account's record into another's). The associated data
//
//	"qpchat-store-v1" ‖ uint32(len(path)) ‖ path ‖ uint32(len(key)) ‖ key
//
// where path is the bucket path (each level as uint16(len(name)) ‖ name), makes
// such a move fail authentication exactly like a flipped bit.
//
// Why random nonces: XChaCha20's 192-bit nonce makes random nonces safe for
// any number of records under one key. A nonce derived from bucket and key
// would repeat when a bucket is deleted and re-created (bbolt's sequences
// restart from zero) and a value is rewritten, which breaks the cipher.
//
// Whole-file rollback is not detected: every old record still authenticates.
// doc.go says so under Caveats.
type sealer struct {
	aead  cipher.AEAD
	index []byte // HMAC-SHA256 key for identifiers
	rand  io.Reader
}

func newSealer(encKey, indexKey []byte, r io.Reader) (*sealer, error) {
	aead, err := chacha20poly1305.NewX(encKey)
	if err != nil {
		return nil, fmt.Errorf("store: %v", err)
	}
	if r == nil {
		r = rand.Reader
	}
	return &sealer{aead: aead, index: indexKey, rand: r}, nil
}

// appendPath appends one bucket name to an encoded bucket path.
func appendPath(path, name []byte) []byte {
	path = binary.BigEndian.AppendUint16(path, uint16(len(name)))
	return append(path, name...)
}

// aad builds the associated data for key in the bucket with encoded path.
func aad(dst, path, key []byte) []byte {
	dst = append(dst, aadLabel...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(path)))
	dst = append(dst, path...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(key)))
	return append(dst, key...)
}

// seal encrypts value for key in the bucket at path: nonce ‖ ciphertext ‖ tag.
func (s *sealer) seal(path, key, value []byte) ([]byte, error) {
	out := make([]byte, chacha20poly1305.NonceSizeX, sealOverhead+len(value))
	if _, err := io.ReadFull(s.rand, out); err != nil {
		return nil, fmt.Errorf("store: reading nonce: %v", err)
	}
	var buf [128]byte
	ad := aad(buf[:0], path, key)
	return s.aead.Seal(out, out, value, ad), nil
}

// open authenticates and decrypts a sealed value stored under key in the
// bucket at path. Every failure is ErrCorrupt: a flipped bit, a truncated
// record and a record moved from elsewhere look the same.
func (s *sealer) open(path, key, sealed []byte) ([]byte, error) {
	if len(sealed) < sealOverhead {
		return nil, ErrCorrupt
	}
	var buf [128]byte
	ad := aad(buf[:0], path, key)
	nonce := sealed[:chacha20poly1305.NonceSizeX]
	out, err := s.aead.Open(nil, nonce, sealed[chacha20poly1305.NonceSizeX:], ad)
	if err != nil {
		return nil, ErrCorrupt
	}
	if out == nil {
		out = []byte{}
	}
	return out, nil
}

// ident returns HMAC-SHA256(index key, uint16(len(domain)) ‖ domain ‖ id): the
// key under which an identifier (a user name, a group id, a device key) is
// stored, so the file never shows the identifier itself. The domain keeps
// equal bytes used as different kinds of identifier apart.
func (s *sealer) ident(domain string, id []byte) []byte {
	m := hmac.New(sha256.New, s.index)
	var l [2]byte
	binary.BigEndian.PutUint16(l[:], uint16(len(domain)))
	m.Write(l[:])
	m.Write([]byte(domain))
	m.Write(id)
	return m.Sum(nil)
}
