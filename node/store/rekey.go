package store

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/crypto/chacha20poly1305"
)

// Rekey: changing the passphrase or key file that protects a database.
//
// The data key (from which the encryption and index keys are derived)
// stays the same: rewriting every value and every HMAC'd key would
// need the identifiers behind the HMACs, which the file does not hold.
// Instead the header gets the data key wrapped (XChaCha20-Poly1305) under
// the new source's key, and the header is replaced in one bbolt
// transaction: after a crash the file opens with the old key or the
// new one, never neither. So a rekey retires a passphrase or key file
// (a colleague leaves, a routine change); it does not protect copies of
// the file against someone who also holds the old key.

// wrapLabel is the associated data of the wrapped data key.
const wrapLabel = "qpchat-store-v1 wrapped data key"

const wrappedKeySize = chacha20poly1305.NonceSizeX + dataKeySize + chacha20poly1305.Overhead

// wrapKey seals dataKey under kek.
func wrapKey(kek, dataKey []byte, r io.Reader) ([]byte, error) {
	aead, err := chacha20poly1305.NewX(kek)
	if err != nil {
		return nil, err
	}
	out := make([]byte, chacha20poly1305.NonceSizeX, wrappedKeySize)
	if _, err := io.ReadFull(r, out); err != nil {
		return nil, fmt.Errorf("store: nonce: %v", err)
	}
	return aead.Seal(out, out, dataKey, []byte(wrapLabel)), nil
}

// unwrapKey opens the header's wrapped data key with kek (and clears
// kek). A failure means the wrong passphrase or key file.
func unwrapKey(h *header, kek []byte) ([]byte, error) {
	defer clear(kek)
	aead, err := chacha20poly1305.NewX(kek)
	if err != nil {
		return nil, err
	}
	n := chacha20poly1305.NonceSizeX
	dk, err := aead.Open(nil, h.wrapped[:n], h.wrapped[n:], []byte(wrapLabel))
	if err != nil {
		if h.source == keyFromPassphrase {
			return nil, ErrWrongPassphrase
		}
		return nil, ErrWrongKeyFile
	}
	return dk, nil
}

// Rekey changes what protects the database at path from old to new
// (each with exactly one of Passphrase and KeyFile; new's KeyFile is
// created with random bytes if it does not exist). The file must not be
// in use. Data is not rewritten; see above.
func Rekey(path string, old, new Options) error {
	for _, o := range []Options{old, new} {
		if (o.Passphrase == nil) == (o.KeyFile == "") {
			return errors.New("store: exactly one of a passphrase and a key file is required, for the old key and for the new")
		}
	}
	if old.KeyFile != "" {
		if _, err := os.Stat(old.KeyFile); err != nil {
			return fmt.Errorf("store: the current key file: %w", err)
		}
	}
	if new.KeyFile != "" && new.KeyFile == old.KeyFile {
		return errors.New("store: the new key file must differ from the current one")
	}
	r := new.Rand
	if r == nil {
		r = rand.Reader
	}
	return replaceHeader(path, func(raw []byte) ([]byte, error) {
		h, err := parseHeader(raw)
		if err != nil {
			return nil, err
		}
		kek, err := sourceKeyOf(h, &old)
		if err != nil {
			return nil, err
		}
		dataKey := kek
		if h.wrapped != nil {
			if dataKey, err = unwrapKey(h, kek); err != nil {
				return nil, err
			}
		}
		defer clear(dataKey)
		k, err := deriveKeys(dataKey)
		if err != nil {
			return nil, err
		}
		ok := h.checkKeys(k)
		k.zero()
		if !ok {
			if h.source == keyFromPassphrase {
				return nil, ErrWrongPassphrase
			}
			return nil, ErrWrongKeyFile
		}
		nh := &header{source: keyFromFile, check: h.check}
		if new.Passphrase != nil {
			nh.source = keyFromPassphrase
			nh.kdf = new.KDF.withDefaults()
			if !nh.kdf.valid() {
				return nil, fmt.Errorf("store: invalid Argon2id parameters %+v", nh.kdf)
			}
			nh.salt = make([]byte, saltSize)
			if _, err := io.ReadFull(r, nh.salt); err != nil {
				return nil, fmt.Errorf("store: reading salt: %v", err)
			}
		}
		nkek, err := sourceKeyOf(nh, &new)
		if err != nil {
			return nil, err
		}
		defer clear(nkek)
		if nh.wrapped, err = wrapKey(nkek, dataKey, r); err != nil {
			return nil, err
		}
		return nh.marshal(), nil
	})
}

// sourceKeyOf derives the key of the header's source from opts.
func sourceKeyOf(h *header, opts *Options) ([]byte, error) {
	r := opts.Rand
	if r == nil {
		r = rand.Reader
	}
	switch {
	case h.source == keyFromPassphrase && opts.Passphrase != nil:
		return passphraseKey(opts.Passphrase, h.salt, h.kdf), nil
	case h.source == keyFromFile && opts.KeyFile != "":
		return loadKeyFile(opts.KeyFile, r)
	case h.source == keyFromPassphrase:
		return nil, errors.New("store: the database is protected by a passphrase, not a key file")
	default:
		return nil, errors.New("store: the database is protected by a key file, not a passphrase")
	}
}
