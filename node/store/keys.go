package store

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/cryptobyte"
)

// KDFParams are the Argon2id parameters (RFC 9106) that turn a passphrase into
// the data key. They are stored in the file's plaintext header, so a file
// keeps opening after the defaults change.
type KDFParams struct {
	Time      uint32 // passes; zero means DefaultKDF.Time
	MemoryKiB uint32 // memory in KiB; zero means DefaultKDF.MemoryKiB
	Threads   uint8  // lanes; zero means DefaultKDF.Threads
}

// DefaultKDF follows RFC 9106, Section 4, second recommended option
// (t=3, 64 MiB), with four lanes.
var DefaultKDF = KDFParams{Time: 3, MemoryKiB: 64 * 1024, Threads: 4}

// Bounds checked when a header is read, so a crafted file cannot make open
// spend unbounded memory or time.
const (
	maxKDFTime      = 64
	maxKDFMemoryKiB = 4 << 20 // 4 GiB
)

func (p KDFParams) withDefaults() KDFParams {
	if p.Time == 0 {
		p.Time = DefaultKDF.Time
	}
	if p.MemoryKiB == 0 {
		p.MemoryKiB = DefaultKDF.MemoryKiB
	}
	if p.Threads == 0 {
		p.Threads = DefaultKDF.Threads
	}
	return p
}

func (p KDFParams) valid() bool {
	return p.Time >= 1 && p.Time <= maxKDFTime && p.Threads >= 1 &&
		p.MemoryKiB >= 8*uint32(p.Threads) && p.MemoryKiB <= maxKDFMemoryKiB
}

// Key sources recorded in the header.
const (
	keyFromPassphrase uint8 = 1
	keyFromFile       uint8 = 2
)

const (
	dataKeySize  = 32
	saltSize     = 16
	checkSize    = 32
	headerFormat = 1
	// headerWrapped is the format of a header whose data key is wrapped
	// under the passphrase's or key file's key (rekey.go).
	headerWrapped = 2
)

// HKDF labels (RFC 5869 info strings) for the keys derived from the data key.
// Each key has one job, so a weakness in one use cannot leak another.
const (
	labelEncryption = "qpchat-store-v1 encryption key"
	labelIndex      = "qpchat-store-v1 index key"
	labelCheck      = "qpchat-store-v1 check value"
)

// header is the plaintext record that lets open derive and verify the data
// key. It holds no secret: the salt and parameters are public and the check
// value is a one-way function of the data key.
type header struct {
	source uint8
	salt   []byte    // source == keyFromPassphrase only
	kdf    KDFParams // source == keyFromPassphrase only
	check  []byte    // HKDF(data key, labelCheck)
	// wrapped, if set, is the data key sealed under the key the source
	// gives (format headerWrapped); else that key is the data key.
	wrapped []byte
}

// marshal encodes the header followed by a SHA-256 of the encoding, which
// tells a damaged header (ErrCorrupt) from a wrong key (ErrWrongPassphrase).
func (h *header) marshal() []byte {
	var b cryptobyte.Builder
	b.AddBytes([]byte(aadLabel))
	if h.wrapped != nil {
		b.AddUint8(headerWrapped)
	} else {
		b.AddUint8(headerFormat)
	}
	b.AddUint8(h.source)
	if h.source == keyFromPassphrase {
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(h.salt) })
		b.AddUint32(h.kdf.Time)
		b.AddUint32(h.kdf.MemoryKiB)
		b.AddUint8(h.kdf.Threads)
	}
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(h.check) })
	if h.wrapped != nil {
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(h.wrapped) })
	}
	body := b.BytesOrPanic()
	sum := sha256.Sum256(body)
	return append(body, sum[:]...)
}

// parseHeader decodes a header; any malformation is ErrCorrupt.
func parseHeader(data []byte) (*header, error) {
	if len(data) < sha256.Size {
		return nil, fmt.Errorf("store: header too short: %w", ErrCorrupt)
	}
	body, sum := data[:len(data)-sha256.Size], data[len(data)-sha256.Size:]
	if want := sha256.Sum256(body); !bytes.Equal(sum, want[:]) {
		return nil, fmt.Errorf("store: header checksum mismatch: %w", ErrCorrupt)
	}
	s := cryptobyte.String(body)
	var label []byte
	var format uint8
	h := new(header)
	if !s.ReadBytes(&label, len(aadLabel)) || string(label) != aadLabel ||
		!s.ReadUint8(&format) || (format != headerFormat && format != headerWrapped) || !s.ReadUint8(&h.source) {
		return nil, fmt.Errorf("store: unknown header format: %w", ErrCorrupt)
	}
	switch h.source {
	case keyFromPassphrase:
		var salt cryptobyte.String
		if !s.ReadUint8LengthPrefixed(&salt) || len(salt) != saltSize ||
			!s.ReadUint32(&h.kdf.Time) || !s.ReadUint32(&h.kdf.MemoryKiB) || !s.ReadUint8(&h.kdf.Threads) {
			return nil, fmt.Errorf("store: malformed header: %w", ErrCorrupt)
		}
		if !h.kdf.valid() {
			return nil, fmt.Errorf("store: header has out-of-range Argon2id parameters %+v: %w", h.kdf, ErrCorrupt)
		}
		h.salt = bytes.Clone(salt)
	case keyFromFile:
	default:
		return nil, fmt.Errorf("store: unknown key source %d: %w", h.source, ErrCorrupt)
	}
	var check cryptobyte.String
	if !s.ReadUint8LengthPrefixed(&check) || len(check) != checkSize {
		return nil, fmt.Errorf("store: malformed header: %w", ErrCorrupt)
	}
	h.check = bytes.Clone(check)
	if format == headerWrapped {
		var w cryptobyte.String
		if !s.ReadUint8LengthPrefixed(&w) || len(w) != wrappedKeySize {
			return nil, fmt.Errorf("store: malformed wrapped key: %w", ErrCorrupt)
		}
		h.wrapped = bytes.Clone(w)
	}
	if !s.Empty() {
		return nil, fmt.Errorf("store: malformed header: %w", ErrCorrupt)
	}
	return h, nil
}

// keys are the working keys derived from the data key.
type keys struct {
	enc, index, check []byte
}

// deriveKeys expands the data key into separate encryption, index and check
// keys with HKDF-SHA256 (RFC 5869), one info label each.
func deriveKeys(dataKey []byte) (*keys, error) {
	var k keys
	var err error
	if k.enc, err = hkdf.Key(sha256.New, dataKey, nil, labelEncryption, 32); err != nil {
		return nil, fmt.Errorf("store: %v", err)
	}
	if k.index, err = hkdf.Key(sha256.New, dataKey, nil, labelIndex, 32); err != nil {
		return nil, fmt.Errorf("store: %v", err)
	}
	if k.check, err = hkdf.Key(sha256.New, dataKey, nil, labelCheck, checkSize); err != nil {
		return nil, fmt.Errorf("store: %v", err)
	}
	return &k, nil
}

func (k *keys) zero() {
	clear(k.enc)
	clear(k.index)
	clear(k.check)
}

// passphraseKey derives the data key with Argon2id (RFC 9106).
func passphraseKey(passphrase, salt []byte, p KDFParams) []byte {
	return argon2.IDKey(passphrase, salt, p.Time, p.MemoryKiB, p.Threads, dataKeySize)
}

// loadKeyFile reads the data key from path, creating the file with mode 0600
// and fresh random bytes when it does not exist. A key file readable by group
// or others is refused, as ssh refuses such private keys.
func loadKeyFile(path string, r io.Reader) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		key := make([]byte, dataKeySize)
		if _, err := io.ReadFull(r, key); err != nil {
			f.Close()
			os.Remove(path)
			return nil, fmt.Errorf("store: generating key: %v", err)
		}
		_, werr := f.Write(key)
		serr := f.Sync()
		cerr := f.Close()
		if err := errors.Join(werr, serr, cerr); err != nil {
			os.Remove(path)
			return nil, fmt.Errorf("store: writing key file: %w", err)
		}
		return key, nil
	}
	if !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("store: creating key file: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("store: key file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("store: key file %s has mode %v; it must not be readable by group or others (chmod 600)", path, fi.Mode().Perm())
	}
	key, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("store: key file: %w", err)
	}
	if len(key) != dataKeySize {
		clear(key)
		return nil, fmt.Errorf("store: key file %s holds %d bytes, want %d", path, len(key), dataKeySize)
	}
	return key, nil
}

// checkKeys compares the check value derived from the candidate data key
// with the header's, in constant time.
func (h *header) checkKeys(k *keys) bool {
	return subtle.ConstantTimeCompare(h.check, k.check) == 1
}
