//go:build !js

package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// A write set is what one write transaction of a cluster replica changed
// (kv_repl.go), at the level of the key-value engine: the bucket names
// and keys as DB wrote them (clear schema names, HMAC'd identifiers,
// sequence keys) and the values already sealed. It is one entry of the
// cluster log; every replica applies it to reach the same state.
//
//	entry = magic op*
//	magic = "qpchat-ws-v1"
//	op    = kind:uint8 args
//
//	kind 1 path   count:uvarint (count × bytes)   the current bucket path (count 0 = the root)
//	kind 2 create bytes                           create the nested bucket (nothing if it exists)
//	kind 3 drop   bytes                           delete the nested bucket
//	kind 4 put    bytes bytes                     key, value
//	kind 5 delete bytes                           key
//	kind 6 seq    uint64 (big-endian)             the bucket's sequence
//	bytes = length:uvarint byte*  (minimal uvarint; names and keys not empty)
//
// Operations other than path act on the current bucket path, which
// starts at the root; put, delete and seq need a bucket (a path of at
// least one name).

const writeSetMagic = "qpchat-ws-v1"

const (
	opPath   = 1
	opCreate = 2
	opDrop   = 3
	opPut    = 4
	opDelete = 5
	opSeq    = 6
)

// Bounds of parseWriteSet.
const (
	maxWSDepth   = 16      // bucket nesting (qpchat nests three levels at most)
	maxWSNameLen = 1 << 15 // bytes of a bucket name or key (bbolt's limit)
)

// wsOp is one operation of a write set.
type wsOp struct {
	kind  uint8
	path  [][]byte // for opPath
	name  []byte   // bucket name or key
	value []byte   // for opPut
	seq   uint64   // for opSeq
}

// writeSet records operations in order, adding a path operation whenever
// the bucket changes.
type writeSet struct {
	ops  []wsOp
	cur  [][]byte // path of the last operation
	size int      // encoded size so far, magic included
}

func samePath(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func uvarintLen(n uint64) int {
	l := 1
	for n >= 0x80 {
		n >>= 7
		l++
	}
	return l
}

func bytesLen(b []byte) int { return uvarintLen(uint64(len(b))) + len(b) }

// at makes path the current one.
func (w *writeSet) at(path [][]byte) {
	if w.size == 0 {
		w.size = len(writeSetMagic)
	}
	if samePath(w.cur, path) { // the root at first
		return
	}
	p := make([][]byte, len(path))
	for i, n := range path {
		p[i] = bytes.Clone(n)
	}
	w.cur = p
	w.ops = append(w.ops, wsOp{kind: opPath, path: p})
	w.size += 1 + uvarintLen(uint64(len(p)))
	for _, n := range p {
		w.size += bytesLen(n)
	}
}

func (w *writeSet) add(path [][]byte, op wsOp) {
	w.at(path)
	op.name = bytes.Clone(op.name)
	if op.kind == opPut {
		op.value = bytes.Clone(op.value)
		if op.value == nil {
			op.value = []byte{}
		}
	}
	w.ops = append(w.ops, op)
	w.size += 1
	switch op.kind {
	case opSeq:
		w.size += 8
	case opPut:
		w.size += bytesLen(op.name) + bytesLen(op.value)
	default:
		w.size += bytesLen(op.name)
	}
}

// empty reports whether nothing was written.
func (w *writeSet) empty() bool { return len(w.ops) == 0 }

func (w *writeSet) marshal() []byte {
	out := make([]byte, 0, max(w.size, len(writeSetMagic)))
	out = append(out, writeSetMagic...)
	appendBytes := func(b []byte) {
		out = binary.AppendUvarint(out, uint64(len(b)))
		out = append(out, b...)
	}
	for _, op := range w.ops {
		out = append(out, op.kind)
		switch op.kind {
		case opPath:
			out = binary.AppendUvarint(out, uint64(len(op.path)))
			for _, n := range op.path {
				appendBytes(n)
			}
		case opPut:
			appendBytes(op.name)
			appendBytes(op.value)
		case opSeq:
			out = binary.BigEndian.AppendUint64(out, op.seq)
		default:
			appendBytes(op.name)
		}
	}
	return out
}

var errBadWriteSet = errors.New("store: malformed cluster log entry")

// parseWriteSet decodes an entry. It never panics and bounds everything
// by the input's length.
func parseWriteSet(in []byte) (*writeSet, error) {
	rest, ok := bytes.CutPrefix(in, []byte(writeSetMagic))
	if !ok {
		return nil, fmt.Errorf("%w: no magic", errBadWriteSet)
	}
	bad := func(what string) (*writeSet, error) {
		return nil, fmt.Errorf("%w: %s", errBadWriteSet, what)
	}
	uvarint := func() (uint64, bool) {
		n, l := binary.Uvarint(rest)
		if l <= 0 || l != uvarintLen(n) { // overflow, truncated or not minimal
			return 0, false
		}
		rest = rest[l:]
		return n, true
	}
	readBytes := func(allowEmpty bool) ([]byte, bool) {
		n, ok := uvarint()
		if !ok || n > uint64(len(rest)) || (n == 0 && !allowEmpty) {
			return nil, false
		}
		b := rest[:n:n]
		rest = rest[n:]
		return b, true
	}
	w := &writeSet{}
	depth := 0
	for len(rest) > 0 {
		kind := rest[0]
		rest = rest[1:]
		op := wsOp{kind: kind}
		switch kind {
		case opPath:
			n, ok := uvarint()
			if !ok || n > maxWSDepth {
				return bad("bucket path too deep")
			}
			op.path = make([][]byte, n)
			for i := range op.path {
				if op.path[i], ok = readBytes(false); !ok || len(op.path[i]) > maxWSNameLen {
					return bad("bucket name")
				}
			}
			depth = len(op.path)
		case opCreate, opDrop, opDelete:
			if op.name, ok = readBytes(false); !ok || len(op.name) > maxWSNameLen {
				return bad("name")
			}
			if kind == opDelete && depth == 0 {
				return bad("delete outside a bucket")
			}
			if kind == opCreate && depth >= maxWSDepth {
				return bad("bucket nested too deep")
			}
		case opPut:
			if op.name, ok = readBytes(false); !ok || len(op.name) > maxWSNameLen {
				return bad("key")
			}
			if op.value, ok = readBytes(true); !ok {
				return bad("value")
			}
			if depth == 0 {
				return bad("put outside a bucket")
			}
		case opSeq:
			if len(rest) < 8 {
				return bad("truncated sequence")
			}
			op.seq = binary.BigEndian.Uint64(rest)
			rest = rest[8:]
			if depth == 0 {
				return bad("sequence outside a bucket")
			}
		default:
			return bad(fmt.Sprintf("unknown operation %d", kind))
		}
		w.ops = append(w.ops, op)
	}
	w.size = len(in)
	return w, nil
}

// apply replays the write set in a write transaction of a replica and
// tells put, once per bucket, the path of every bucket it put values in.
// It refuses operations on the replica's own bookkeeping bucket. A
// failure means the replica no longer matches the log.
func (w *writeSet) apply(tx kvTx, put func(path [][]byte)) error {
	var cur kvBucket // nil: the root
	var path [][]byte
	reported := map[string]bool{}
	pathKey := func(p [][]byte) string {
		var k []byte
		for _, n := range p {
			k = binary.AppendUvarint(k, uint64(len(n)))
			k = append(k, n...)
		}
		return string(k)
	}
	for i, op := range w.ops {
		var err error
		switch op.kind {
		case opPath:
			path, cur = op.path, nil
			if len(path) > 0 && bytes.Equal(path[0], replicaBucket) {
				return fmt.Errorf("operation %d: the replica's own bucket", i)
			}
			for j, n := range path {
				if j == 0 {
					cur = tx.Bucket(n)
				} else {
					cur = cur.Bucket(n)
				}
				if cur == nil {
					return fmt.Errorf("operation %d: bucket %d of the path missing", i, j)
				}
			}
		case opCreate:
			if cur == nil {
				if bytes.Equal(op.name, replicaBucket) {
					return fmt.Errorf("operation %d: the replica's own bucket", i)
				}
				_, err = tx.CreateBucketIfNotExists(op.name)
			} else {
				_, err = cur.CreateBucketIfNotExists(op.name)
			}
		case opDrop:
			if cur == nil {
				if bytes.Equal(op.name, replicaBucket) {
					return fmt.Errorf("operation %d: the replica's own bucket", i)
				}
				err = tx.DeleteBucket(op.name)
			} else {
				err = cur.DeleteBucket(op.name)
			}
		case opPut:
			err = cur.Put(op.name, op.value)
			if k := pathKey(path); err == nil && put != nil && !reported[k] {
				reported[k] = true
				put(path)
			}
		case opDelete:
			err = cur.Delete(op.name)
		case opSeq:
			err = cur.SetSequence(op.seq)
		}
		if err != nil {
			return fmt.Errorf("operation %d: %w", i, err)
		}
	}
	return nil
}
