// Package mls implements the Messaging Layer Security protocol, [RFC 9420].
//
// The package does no I/O, reads no clock and uses no global randomness:
// callers pass an io.Reader for randomness and the current time, so every
// operation is deterministic under test.
//
// This file holds the TLS presentation language helpers of RFC 9420,
// Section 2.1, in particular the variable-length vector header of
// Section 2.1.2. Every wire struct has a hand-written marshal/unmarshal pair
// built on these helpers and golang.org/x/crypto/cryptobyte.
//
// [RFC 9420]: https://www.rfc-editor.org/rfc/rfc9420
package mls

import (
	"errors"

	"golang.org/x/crypto/cryptobyte"
)

// errDecode is returned for any malformed encoding. Decoders never say which
// byte was wrong beyond the struct they were reading.
var errDecode = errors.New("mls: malformed encoding")

// maxVarint is the largest length a variable-length vector header may carry
// (RFC 9420, Section 2.1.2: the 8-byte form is invalid, so 30 bits remain).
const maxVarint = 1<<30 - 1

// writeVarint appends n as a variable-length integer with the minimal
// encoding (RFC 9420, Section 2.1.2).
func writeVarint(b *cryptobyte.Builder, n int) {
	switch {
	case n < 0 || n > maxVarint:
		b.SetError(errors.New("mls: vector too long to encode"))
	case n < 1<<6:
		b.AddUint8(uint8(n))
	case n < 1<<14:
		b.AddUint16(uint16(n) | 0x4000)
	default:
		b.AddUint32(uint32(n) | 0x80000000)
	}
}

// readVarint reads a variable-length integer, rejecting the reserved 8-byte
// prefix and non-minimal encodings (RFC 9420, Section 2.1.2).
func readVarint(s *cryptobyte.String) (int, bool) {
	if len(*s) == 0 {
		return 0, false
	}
	prefix := (*s)[0] >> 6
	var n uint32
	switch prefix {
	case 0:
		var v uint8
		if !s.ReadUint8(&v) {
			return 0, false
		}
		n = uint32(v)
	case 1:
		var v uint16
		if !s.ReadUint16(&v) {
			return 0, false
		}
		n = uint32(v & 0x3fff)
		if n < 1<<6 {
			return 0, false
		}
	case 2:
		var v uint32
		if !s.ReadUint32(&v) {
			return 0, false
		}
		n = v & 0x3fffffff
		if n < 1<<14 {
			return 0, false
		}
	default:
		return 0, false
	}
	return int(n), true
}

// writeOpaque appends data as opaque<V>.
func writeOpaque(b *cryptobyte.Builder, data []byte) {
	writeVarint(b, len(data))
	b.AddBytes(data)
}

// readOpaque reads an opaque<V> into out, copying it so the result does not
// alias the input.
func readOpaque(s *cryptobyte.String, out *[]byte) bool {
	var v cryptobyte.String
	if !readVector(s, &v) {
		return false
	}
	*out = append([]byte(nil), v...)
	return true
}

// writeVector appends a vector<V> whose body f writes.
func writeVector(b *cryptobyte.Builder, f func(b *cryptobyte.Builder)) {
	child := cryptobyte.NewBuilder(nil)
	f(child)
	body, err := child.Bytes()
	if err != nil {
		b.SetError(err)
		return
	}
	writeOpaque(b, body)
}

// readVector reads the body of a vector<V> into out without copying. The
// length is checked against the input before anything is allocated.
func readVector(s *cryptobyte.String, out *cryptobyte.String) bool {
	n, ok := readVarint(s)
	if !ok {
		return false
	}
	return s.ReadBytes((*[]byte)(out), n)
}

// readOptional reads the presence octet of optional<T> (RFC 9420,
// Section 2.1.1) and reports whether a value follows.
func readOptional(s *cryptobyte.String, present *bool) bool {
	var v uint8
	if !s.ReadUint8(&v) || v > 1 {
		return false
	}
	*present = v == 1
	return true
}

// writeOptional appends the presence octet of optional<T>.
func writeOptional(b *cryptobyte.Builder, present bool) {
	if present {
		b.AddUint8(1)
	} else {
		b.AddUint8(0)
	}
}
