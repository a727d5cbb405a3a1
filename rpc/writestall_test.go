package rpc

import (
	"bytes"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	capnp "capnproto.org/go/capnp/v3"
	"capnproto.org/go/capnp/v3/rpc/transport"
	"github.com/quic-go/quic-go"
)

// flowStream is a stream whose writes are paced like QUIC flow control:
// each Write takes delay, and after budget bytes it blocks until the
// write deadline, failing like quic-go with a timeout error.
type flowStream struct {
	byteStream
	delay  time.Duration
	budget int

	mu          sync.Mutex
	deadline    time.Time
	written     int
	deadlines   int
	cancelWrite bool
}

func (s *flowStream) SetWriteDeadline(t time.Time) error {
	s.mu.Lock()
	s.deadline = t
	s.deadlines++
	s.mu.Unlock()
	return nil
}

func (s *flowStream) CancelWrite(quic.StreamErrorCode) {
	s.mu.Lock()
	s.cancelWrite = true
	s.mu.Unlock()
}

func (s *flowStream) Write(p []byte) (int, error) {
	s.mu.Lock()
	deadline, room := s.deadline, s.budget-s.written
	s.mu.Unlock()
	if room < len(p) {
		if !deadline.IsZero() {
			time.Sleep(time.Until(deadline))
		}
		s.mu.Lock()
		s.written += room
		s.mu.Unlock()
		return room, os.ErrDeadlineExceeded
	}
	time.Sleep(s.delay)
	if !deadline.IsZero() && time.Now().After(deadline) {
		return 0, os.ErrDeadlineExceeded
	}
	s.mu.Lock()
	s.written += len(p)
	s.mu.Unlock()
	return len(p), nil
}

// bigMessage returns a message of about n bytes.
func bigMessage(t *testing.T, n int) *capnp.Message {
	t.Helper()
	msg, seg, err := capnp.NewMessage(capnp.SingleSegment(nil))
	if err != nil {
		t.Fatal(err)
	}
	root, err := capnp.NewRootStruct(seg, capnp.ObjectSize{PointerCount: 1})
	if err != nil {
		t.Fatal(err)
	}
	data, err := capnp.NewData(seg, make([]byte, n))
	if err != nil {
		t.Fatal(err)
	}
	if err := root.SetPtr(0, data.ToPtr()); err != nil {
		t.Fatal(err)
	}
	return msg
}

// A slow reader that keeps making progress is never cut off, even when
// one frame takes several write timeouts to go out: the deadline is
// renewed for every chunk.
func TestWriteTimeoutSlowReader(t *testing.T) {
	const timeout = 200 * time.Millisecond
	st := &flowStream{delay: 80 * time.Millisecond, budget: 1 << 30}
	stalls := 0
	c := newStreamCodec(st, MessageLimits{WriteTimeout: timeout, OnWriteStall: func(error) { stalls++ }})
	start := time.Now()
	if err := c.Encode(bigMessage(t, 6*writeChunk)); err != nil {
		t.Fatalf("Encode to a slow reader: %v", err)
	}
	if took := time.Since(start); took <= timeout {
		t.Fatalf("the frame took %v, not more than the timeout %v: the test proves nothing", took, timeout)
	}
	if stalls != 0 {
		t.Fatalf("OnWriteStall called %d times for a slow reader", stalls)
	}
	if st.deadlines < 6 {
		t.Fatalf("%d write deadlines set for a frame of 6 chunks, want one per chunk", st.deadlines)
	}
}

// A peer that stops reading stalls the write; the codec reports it once,
// cancels the stream and fails every later frame at once.
func TestWriteTimeoutStalledReader(t *testing.T) {
	const timeout = 100 * time.Millisecond
	st := &flowStream{budget: 100 << 10}
	var stallErr []error
	c := newStreamCodec(st, MessageLimits{WriteTimeout: timeout, OnWriteStall: func(err error) { stallErr = append(stallErr, err) }})
	start := time.Now()
	err := c.Encode(bigMessage(t, 4*writeChunk))
	if !errors.Is(err, ErrWriteStalled) {
		t.Fatalf("Encode to a stalled reader = %v, want ErrWriteStalled", err)
	}
	if took := time.Since(start); took > 20*timeout {
		t.Fatalf("the stall was noticed after %v, timeout %v", took, timeout)
	}
	if len(stallErr) != 1 || !errors.Is(stallErr[0], ErrWriteStalled) {
		t.Fatalf("OnWriteStall calls: %v, want one with ErrWriteStalled", stallErr)
	}
	if !st.cancelWrite {
		t.Fatal("the stream's send side was not cancelled after the stall")
	}
	written := st.written
	if err := c.Encode(bigMessage(t, 8)); !errors.Is(err, ErrWriteStalled) {
		t.Fatalf("Encode after a stall = %v, want ErrWriteStalled", err)
	}
	if st.written != written || len(stallErr) != 1 {
		t.Fatalf("Encode after a stall wrote %d bytes and called OnWriteStall %d times", st.written-written, len(stallErr))
	}
}

// Without WriteTimeout (the client's setting) no deadline is set.
func TestWriteTimeoutOff(t *testing.T) {
	st := &flowStream{budget: 1 << 30}
	c := newStreamCodec(st, MessageLimits{})
	if err := c.Encode(bigMessage(t, 3*writeChunk)); err != nil {
		t.Fatal(err)
	}
	if st.deadlines != 0 {
		t.Fatalf("%d write deadlines set with WriteTimeout zero", st.deadlines)
	}
}

// With MaxUnsent, the transport stops reading frames while that many
// outgoing messages are unsent, and reads again once one is written;
// closing it ends a wait.
func TestMaxUnsentPausesReading(t *testing.T) {
	st := &flowStream{byteStream: byteStream{bytes.NewReader(bootstrapFrame(t))}, budget: 1 << 30}
	codec := newStreamCodec(st, MessageLimits{MaxUnsent: 2})
	tr := newSingleSegmentTransport(codec)
	a, err := tr.NewMessage()
	if err != nil {
		t.Fatal(err)
	}
	b, err := tr.NewMessage()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release()

	decoded := make(chan error, 1)
	decode := func() {
		_, err := codec.Decode()
		decoded <- err
	}
	go decode()
	select {
	case err := <-decoded:
		t.Fatalf("a frame was read (err %v) while 2 messages were unsent (MaxUnsent 2)", err)
	case <-time.After(100 * time.Millisecond):
	}
	if err := a.Send(); err != nil {
		t.Fatal(err)
	}
	a.Release()
	select {
	case err := <-decoded:
		if err != nil {
			t.Fatalf("frame after a message was sent: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("reading did not resume after a message was sent")
	}

	// Unsent again at the limit: the next Decode waits until Close.
	c, err := tr.NewMessage()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Release()
	go decode()
	select {
	case err := <-decoded:
		t.Fatalf("Decode returned %v with 2 messages unsent", err)
	case <-time.After(50 * time.Millisecond):
	}
	codec.Close()
	select {
	case err := <-decoded:
		if err == nil {
			t.Fatal("Decode after Close returned no error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end a Decode waiting for room")
	}
}

// Written messages count against MaxUnfinished until released; passing
// it reports ErrUnfinished once.
func TestMaxUnfinished(t *testing.T) {
	st := &flowStream{byteStream: byteStream{bytes.NewReader(nil)}, budget: 1 << 30}
	var over []error
	codec := newStreamCodec(st, MessageLimits{MaxUnfinished: 3000, OnUnfinished: func(err error) { over = append(over, err) }})
	tr := newSingleSegmentTransport(codec)
	send := func() transport.OutgoingMessage {
		t.Helper()
		m, err := tr.NewMessage()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Message().NewBootstrap(); err != nil {
			t.Fatal(err)
		}
		seg, err := m.Message().Message().Segment(0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := capnp.NewData(seg, make([]byte, 1000)); err != nil {
			t.Fatal(err)
		}
		if err := m.Send(); err != nil {
			t.Fatal(err)
		}
		return m
	}
	// Released messages never add up.
	for range 10 {
		send().Release()
	}
	if len(over) != 0 {
		t.Fatalf("OnUnfinished called for released messages: %v", over)
	}
	// Held ones do.
	var held []transport.OutgoingMessage
	for range 4 {
		held = append(held, send())
	}
	if len(over) != 1 || !errors.Is(over[0], ErrUnfinished) {
		t.Fatalf("OnUnfinished calls after 4 held messages of about 1 KiB (max 3000): %v", over)
	}
	for _, m := range held {
		m.Release()
	}
	if codec.held.n != 0 {
		t.Fatalf("%d bytes still counted after every message was released", codec.held.n)
	}
}
