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
	"bytes"
	"errors"
	"fmt"
	"sync"

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

// varintLen is the length of the variable-length vector header of n
// (RFC 9420, Section 2.1.2); writeVarint refuses n above maxVarint.
func varintLen(n int) int {
	switch {
	case n < 1<<6:
		return 1
	case n < 1<<14:
		return 2
	default:
		return 4
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

// readShared reads an opaque<V> into out without copying it: out aliases
// the input (its capacity ends with the value). An empty value is nil, as
// readOpaque gives it.
func readShared(s *cryptobyte.String, out *[]byte) bool {
	var v cryptobyte.String
	if !readVector(s, &v) {
		return false
	}
	*out = nil
	if len(v) > 0 {
		*out = v[:len(v):len(v)]
	}
	return true
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

// writeVector appends a vector<V> whose body f writes. The body is built
// in a scratch buffer, since its length header comes first and has a
// variable size, and then copied into b.
func writeVector(b *cryptobyte.Builder, f func(b *cryptobyte.Builder)) {
	buf := getScratch()
	child := cryptobyte.NewBuilder(*buf)
	f(child)
	body, err := child.Bytes()
	if err != nil {
		b.SetError(err)
		return
	}
	writeOpaque(b, body)
	putScratch(buf, body)
}

// writeList writes a vector<V> of n elements, element i encoded by elem
// (RFC 9420, Section 2.1.2). Each element is encoded into a small scratch
// buffer and appended to the body, which grows by doubling: a long list
// (the Adds of a commit building a large group, the ratchet tree, the
// secrets of its Welcome) is copied about twice, where a builder's append
// growth (a quarter at a time for large buffers) copies it about five
// times.
func writeList(b *cryptobyte.Builder, n int, elem func(i int, b *cryptobyte.Builder)) {
	ebuf, bbuf := getScratch(), getScratch()
	e, body := *ebuf, *bbuf
	for i := 0; i < n; i++ {
		eb := cryptobyte.NewBuilder(e[:0])
		elem(i, eb)
		enc, err := eb.Bytes()
		if err != nil {
			b.SetError(err)
			break
		}
		if cap(body)-len(body) < len(enc) {
			grown := make([]byte, len(body), 2*cap(body)+len(enc))
			copy(grown, body)
			clear(body)
			body = grown
		}
		body = append(body, enc...)
		clear(enc)
		e = enc
	}
	writeOpaque(b, body)
	putScratch(ebuf, e)
	putScratch(bbuf, body)
}

// scratchPool holds buffers for encodings that are consumed at once (vector
// bodies copied into their parent, inputs to a hash or signature), so that
// encoding a large message does not allocate a new, doubling buffer at every
// nesting level.
var scratchPool = sync.Pool{New: func() any { return new([]byte) }}

// maxScratch is the largest buffer kept in scratchPool.
const maxScratch = 1 << 20

// getScratch returns an empty scratch buffer.
func getScratch() *[]byte {
	buf := scratchPool.Get().(*[]byte)
	*buf = (*buf)[:0]
	return buf
}

// putScratch returns buf to the pool once used is done with; used is what
// was written into it (it may have been reallocated while growing). The
// bytes are zeroed first: an encoding may hold secrets.
func putScratch(buf *[]byte, used []byte) {
	clear(used)
	if cap(used) > cap(*buf) {
		*buf = used[:0]
	}
	if cap(*buf) > maxScratch {
		return
	}
	scratchPool.Put(buf)
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

// readList reads a vector<V> and calls f once per element until the body is
// consumed. An element that consumes no bytes is an error, so the number of
// elements, and with it every allocation, is bounded by the input length.
func readList(s *cryptobyte.String, f func(s *cryptobyte.String) error) error {
	var body cryptobyte.String
	if !readVector(s, &body) {
		return errDecode
	}
	for !body.Empty() {
		n := len(body)
		if err := f(&body); err != nil {
			return err
		}
		if len(body) == n {
			return errDecode
		}
	}
	return nil
}

// writeUint16List appends a vector<V> of 16-bit values (cipher suites,
// extension types, ...).
func writeUint16List[T ~uint16](b *cryptobyte.Builder, vs []T) {
	// The length is known up front: no scratch builder (writeVector).
	writeVarint(b, 2*len(vs))
	for _, v := range vs {
		b.AddUint16(uint16(v))
	}
}

// opaqueListLen returns the length of the body of a vector<V> of opaque<V>
// values, for writing its header without a scratch builder.
func opaqueListLen(vs [][]byte) int {
	n := 0
	for _, v := range vs {
		n += varintLen(len(v)) + len(v)
	}
	return n
}

// readUint16List reads a vector<V> of 16-bit values. Unknown values are kept:
// the lists it reads (capabilities, required capabilities) are open
// registries that may carry GREASE values (RFC 9420, Section 13.5).
func readUint16List[T ~uint16](s *cryptobyte.String, out *[]T) error {
	var body cryptobyte.String
	if !readVector(s, &body) || len(body)%2 != 0 {
		return errDecode
	}
	// The count is known from the length: one allocation, no appends.
	var vs []T
	if len(body) > 0 {
		vs = make([]T, len(body)/2)
		for i := range vs {
			vs[i] = T(uint16(body[2*i])<<8 | uint16(body[2*i+1]))
		}
	}
	*out = vs
	return nil
}

// unmarshalAll runs f over data and rejects trailing bytes.
func unmarshalAll(data []byte, f func(s *cryptobyte.String) error) error {
	s := cryptobyte.String(data)
	if err := f(&s); err != nil {
		return err
	}
	if !s.Empty() {
		return fmt.Errorf("%w: %d trailing bytes", errDecode, len(s))
	}
	return nil
}

// marshalWith runs f on a fresh builder and returns the bytes or the first
// error f recorded.
//
// The encoding is built in a scratch buffer and copied out at its exact
// size; an empty encoding is nil.
func marshalWith(f func(b *cryptobyte.Builder)) ([]byte, error) {
	buf := getScratch()
	b := cryptobyte.NewBuilder(*buf)
	f(b)
	enc, err := b.Bytes()
	if err != nil {
		return nil, err
	}
	// A buffer too large for the pool is handed over instead of copied:
	// the ratchet tree of a large group is tens of megabytes.
	if cap(enc) > maxScratch {
		return enc, nil
	}
	var out []byte
	if len(enc) > 0 {
		out = bytes.Clone(enc)
	}
	putScratch(buf, enc)
	return out, nil
}

// ProtocolVersion is the MLS protocol version (RFC 9420, Section 6).
type ProtocolVersion uint16

// ProtocolVersionMLS10 is the only version RFC 9420 defines.
const ProtocolVersionMLS10 ProtocolVersion = 1

// CipherSuite identifies an MLS cipher suite (RFC 9420, Section 5.1 and
// Section 17.1). The values are an open IANA registry, so unknown suites
// decode and round-trip; the operations behind a suite live in
// ciphersuite.go.
type CipherSuite uint16

// The cipher suites of RFC 9420, Section 17.1.
const (
	CipherSuiteMLS128DHKEMX25519AES128GCMSHA256Ed25519        CipherSuite = 0x0001
	CipherSuiteMLS128DHKEMP256AES128GCMSHA256P256             CipherSuite = 0x0002
	CipherSuiteMLS128DHKEMX25519ChaCha20Poly1305SHA256Ed25519 CipherSuite = 0x0003
	CipherSuiteMLS256DHKEMX448AES256GCMSHA512Ed448            CipherSuite = 0x0004
	CipherSuiteMLS256DHKEMP521AES256GCMSHA512P521             CipherSuite = 0x0005
	CipherSuiteMLS256DHKEMX448ChaCha20Poly1305SHA512Ed448     CipherSuite = 0x0006
	CipherSuiteMLS256DHKEMP384AES256GCMSHA384P384             CipherSuite = 0x0007
)

// codec is implemented by every wire struct: marshal appends the TLS
// encoding, unmarshal reads it and fails without panicking on bad input.
type codec interface {
	marshal(b *cryptobyte.Builder)
	unmarshal(s *cryptobyte.String) error
}
