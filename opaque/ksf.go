package opaque

// This file holds the key-stretching functions (KSF, RFC 9807, Sections 2
// and 7): the identity of the test vectors and Argon2id (RFC 9106)
// with parameters that a server stores per record and sends with every
// login response, and the bounds a client enforces on them.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/crypto/argon2"
)

// KSF is a key-stretching function. Its parameters travel as bytes
// (MarshalBinary, ParseKSF): the server stores them with each record and
// sends them with the login response, and for unknown users sends the
// Config's KSF.
type KSF interface {
	// Stretch implements Stretch(msg) of RFC 9807, Section 2, with an
	// output of n bytes (Nh) where the function has a length parameter.
	Stretch(msg []byte, n int) ([]byte, error)
	// MarshalBinary encodes the function and its parameters for ParseKSF.
	MarshalBinary() ([]byte, error)
	String() string
}

// KSF identifiers, the first byte of an encoded KSF.
const (
	ksfIdentity byte = 0x00
	ksfArgon2id byte = 0x01
)

// argon2idEncodedSize is 1 (id) + 4 (t) + 4 (m) + 1 (p).
const argon2idEncodedSize = 10

// argon2idSaltSize is the length of the all-zero salt, as in opaque-ke.
// A per-user salt is unnecessary: the OPRF output is already unique per
// user and server.
const argon2idSaltSize = 16

var errInvalidKSF = errors.New("opaque: invalid KSF parameters")

// IdentityKSF is Stretch(msg) = msg, used by the RFC 9807 test vectors. It
// stretches nothing: an offline attacker who steals a record pays one OPRF
// evaluation per guess. Clients refuse it (KSFBounds.Check).
type IdentityKSF struct{}

// Stretch returns a copy of msg.
func (IdentityKSF) Stretch(msg []byte, _ int) ([]byte, error) { return bytes.Clone(msg), nil }

// MarshalBinary returns the one byte 0x00.
func (IdentityKSF) MarshalBinary() ([]byte, error) { return []byte{ksfIdentity}, nil }

func (IdentityKSF) String() string { return "Identity" }

// Argon2id is Argon2id (RFC 9106) version 0x13 with a 16-byte all-zero
// salt, no secret and no associated data, producing Nh bytes: the KSF of
// opaque-ke's argon2 feature. Its encoding is 0x01 ‖ t (uint32) ‖ m
// (uint32) ‖ p (uint8), big-endian, 10 bytes.
type Argon2id struct {
	// Time is the number of passes t, at least 1.
	Time uint32
	// MemoryKiB is the memory size m in KiB, at least 8·Threads.
	MemoryKiB uint32
	// Threads is the degree of parallelism p, at least 1.
	Threads uint8
}

func (a Argon2id) valid() bool {
	return a.Time >= 1 && a.Threads >= 1 && uint64(a.MemoryKiB) >= 8*uint64(a.Threads)
}

// Stretch computes Argon2id(msg, salt = 16 zero bytes, t, m, p, n).
func (a Argon2id) Stretch(msg []byte, n int) ([]byte, error) {
	if !a.valid() {
		return nil, fmt.Errorf("%w: %v", errInvalidKSF, a)
	}
	if n < 4 || n > 1024 {
		return nil, fmt.Errorf("opaque: internal error: Argon2id output length %d", n)
	}
	var salt [argon2idSaltSize]byte
	return argon2.IDKey(msg, salt[:], a.Time, a.MemoryKiB, a.Threads, uint32(n)), nil
}

// MarshalBinary encodes the parameters (10 bytes).
func (a Argon2id) MarshalBinary() ([]byte, error) {
	b := make([]byte, argon2idEncodedSize)
	b[0] = ksfArgon2id
	binary.BigEndian.PutUint32(b[1:5], a.Time)
	binary.BigEndian.PutUint32(b[5:9], a.MemoryKiB)
	b[9] = a.Threads
	return b, nil
}

func (a Argon2id) String() string {
	return fmt.Sprintf("Argon2id(t=%d, m=%d KiB, p=%d)", a.Time, a.MemoryKiB, a.Threads)
}

// Below reports whether any parameter of a is lower than the same parameter
// of b. A client that logged in with parameters Below the current default
// re-registers so that records converge (DESIGN, OPAQUE).
func (a Argon2id) Below(b Argon2id) bool {
	return a.Time < b.Time || a.MemoryKiB < b.MemoryKiB || a.Threads < b.Threads
}

// ParseKSF decodes a KSF encoded by MarshalBinary: 0x00 for IdentityKSF,
// or the 10-byte Argon2id form with valid parameters. It checks the form
// only; a client applies KSFBounds before stretching.
func ParseKSF(b []byte) (KSF, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty", errInvalidKSF)
	}
	switch b[0] {
	case ksfIdentity:
		if len(b) != 1 {
			return nil, fmt.Errorf("%w: identity KSF is %d bytes, want 1", errInvalidKSF, len(b))
		}
		return IdentityKSF{}, nil
	case ksfArgon2id:
		if len(b) != argon2idEncodedSize {
			return nil, fmt.Errorf("%w: Argon2id is %d bytes, want %d", errInvalidKSF, len(b), argon2idEncodedSize)
		}
		a := Argon2id{
			Time:      binary.BigEndian.Uint32(b[1:5]),
			MemoryKiB: binary.BigEndian.Uint32(b[5:9]),
			Threads:   b[9],
		}
		if !a.valid() {
			return nil, fmt.Errorf("%w: %v", errInvalidKSF, a)
		}
		return a, nil
	default:
		return nil, fmt.Errorf("%w: unknown KSF id %#02x", errInvalidKSF, b[0])
	}
}

// KSFBounds is what a client accepts from a server: Argon2id whose every
// parameter lies between Floor and Ceiling (inclusive). The floor keeps a
// malicious or misconfigured server from making the client's password
// cheap to guess from the records; the ceiling keeps it from making the
// client allocate or compute without bound.
type KSFBounds struct {
	Floor, Ceiling Argon2id
}

var (
	// DefaultKSFBounds: at least OWASP's minimum for Argon2id (t=2, m=19 MiB,
	// p=1), at most t=10, m=256 MiB, p=16.
	DefaultKSFBounds = KSFBounds{
		Floor:   Argon2id{Time: 2, MemoryKiB: 19 * 1024, Threads: 1},
		Ceiling: Argon2id{Time: 10, MemoryKiB: 256 * 1024, Threads: 16},
	}
	// TestKSFBounds admits TestArgon2id; for tests only.
	TestKSFBounds = KSFBounds{Floor: TestArgon2id, Ceiling: DefaultKSFBounds.Ceiling}
)

// ErrKSFOutOfBounds is returned by KSFBounds.Check for a KSF the client
// must not run: not Argon2id, or parameters outside the bounds.
var ErrKSFOutOfBounds = errors.New("opaque: key-stretching parameters outside the accepted bounds")

// Check returns ErrKSFOutOfBounds (wrapped) unless k is an Argon2id within
// the bounds.
func (b KSFBounds) Check(k KSF) error {
	a, ok := k.(Argon2id)
	if !ok {
		return fmt.Errorf("%w: %v is not Argon2id", ErrKSFOutOfBounds, k)
	}
	if !a.valid() || a.Below(b.Floor) ||
		a.Time > b.Ceiling.Time || a.MemoryKiB > b.Ceiling.MemoryKiB || a.Threads > b.Ceiling.Threads {
		return fmt.Errorf("%w: %v not within %v and %v", ErrKSFOutOfBounds, a, b.Floor, b.Ceiling)
	}
	return nil
}
