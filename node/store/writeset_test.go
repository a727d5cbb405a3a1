//go:build !js

package store

import (
	"bytes"
	"testing"
)

func sampleWriteSet() *writeSet {
	var w writeSet
	w.add(nil, wsOp{kind: opCreate, name: []byte("queues")})
	w.add([][]byte{[]byte("queues")}, wsOp{kind: opCreate, name: []byte("dev")})
	w.add([][]byte{[]byte("queues"), []byte("dev")}, wsOp{kind: opPut, name: []byte("s"), value: []byte("state")})
	w.add([][]byte{[]byte("queues"), []byte("dev")}, wsOp{kind: opSeq, seq: 7})
	w.add([][]byte{[]byte("queues"), []byte("dev")}, wsOp{kind: opPut, name: []byte("empty"), value: nil})
	w.add([][]byte{[]byte("queues")}, wsOp{kind: opDelete, name: []byte("old")})
	w.add(nil, wsOp{kind: opDrop, name: []byte("gone")})
	return &w
}

// TestWriteSetRoundTrip: marshal and parse agree, the size kept while
// recording is the encoded size, and path operations are only emitted
// when the bucket changes.
func TestWriteSetRoundTrip(t *testing.T) {
	w := sampleWriteSet()
	enc := w.marshal()
	if len(enc) != w.size {
		t.Errorf("encoded %d bytes, recorded size %d", len(enc), w.size)
	}
	paths := 0
	for _, op := range w.ops {
		if op.kind == opPath {
			paths++
		}
	}
	if paths != 4 { // queues, queues/dev, queues, root
		t.Errorf("%d path operations, want 4", paths)
	}
	p, err := parseWriteSet(enc)
	if err != nil {
		t.Fatal(err)
	}
	if again := p.marshal(); !bytes.Equal(again, enc) {
		t.Errorf("parse+marshal changed the entry:\n%x\n%x", again, enc)
	}
	for _, bad := range [][]byte{
		nil, []byte("qpchat-ws-v0"), append([]byte(writeSetMagic), 9),
		append([]byte(writeSetMagic), opPut, 1, 'k', 0),            // put at the root
		append([]byte(writeSetMagic), opPath, 1, 0x81, 0x00, 'x'),  // non-minimal length
		append([]byte(writeSetMagic), opPath, 17),                  // too deep
		append([]byte(writeSetMagic), opPath, 1, 5, 'a'),           // truncated name
		append([]byte(writeSetMagic), opPath, 1, 1, 'a', opSeq, 1), // truncated sequence
		append([]byte(writeSetMagic), opCreate, 0),                 // empty name
	} {
		if _, err := parseWriteSet(bad); err == nil {
			t.Errorf("parseWriteSet(%x) succeeded", bad)
		}
	}
}

// TestWriteSetApply replays a write set on another database and refuses
// one that touches the replica's own bucket.
func TestWriteSetApply(t *testing.T) {
	db := &memDB{root: newMemBucket()}
	tx, _ := db.Begin(true)
	tx.CreateBucketIfNotExists([]byte("gone"))
	var puts []string
	if err := sampleWriteSet().apply(tx, func(p [][]byte) { puts = append(puts, string(bytes.Join(p, []byte("/")))) }); err != nil {
		t.Fatal(err)
	}
	if len(puts) != 1 || puts[0] != "queues/dev" {
		t.Errorf("puts reported %q, want [queues/dev]", puts)
	}
	b := tx.Bucket([]byte("queues")).Bucket([]byte("dev"))
	if string(b.Get([]byte("s"))) != "state" || b.Sequence() != 7 || b.Get([]byte("empty")) == nil {
		t.Error("applied state differs")
	}
	if tx.Bucket([]byte("gone")) != nil {
		t.Error("dropped bucket still there")
	}
	var w writeSet
	w.add(nil, wsOp{kind: opCreate, name: replicaBucket})
	if err := w.apply(tx, nil); err == nil {
		t.Error("a write set creating the replica's bucket was applied")
	}
	tx.Rollback()
}

func FuzzWriteSet(f *testing.F) {
	f.Add(sampleWriteSet().marshal())
	f.Add([]byte(writeSetMagic))
	f.Fuzz(func(t *testing.T, in []byte) {
		w, err := parseWriteSet(in)
		if err != nil {
			return
		}
		if out := w.marshal(); !bytes.Equal(out, in) {
			t.Fatalf("round trip changed the entry:\n%x\n%x", in, out)
		}
		db := &memDB{root: newMemBucket()}
		tx, _ := db.Begin(true)
		w.apply(tx, nil) // errors are fine; no panic
		tx.Rollback()
	})
}
