package rpc

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	capnp "capnproto.org/go/capnp/v3"
	rpccp "capnproto.org/go/capnp/v3/std/capnp/rpc"
)

// waitForWaiters blocks until n reservations wait in b's tree, so that
// tests check "it waits" without timing.
func waitForWaiters(t *testing.T, b *Budget, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b.tree.mu.Lock()
		w := b.tree.waiters
		b.tree.mu.Unlock()
		if w == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d reservations waiting, want %d", w, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// reserveAsync starts b.Reserve(n) and returns the channel of its result.
func reserveAsync(b *Budget, n int64, stop <-chan struct{}) <-chan error {
	done := make(chan error, 1)
	go func() { done <- b.Reserve(n, stop, 0) }()
	return done
}

func notDone(t *testing.T, what string, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		t.Fatalf("%s returned (%v) while it should wait", what, err)
	default:
	}
}

func await(t *testing.T, what string, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("%s still waits", what)
		return nil
	}
}

// A reservation waits until it fits at every level: its own, its
// address's (shared with a sibling) and the total; releasing anywhere
// below the full level lets it through.
func TestBudgetReserveEveryLevel(t *testing.T) {
	total := NewBudget("total", 100)
	addrA := total.Child("address", 60)
	addrB := total.Child("address", 60)
	a1 := addrA.Child("connection", 40)
	a2 := addrA.Child("connection", 40)
	b1 := addrB.Child("connection", 40)

	must := func(b *Budget, n int64) {
		t.Helper()
		if err := b.Reserve(n, nil, 0); err != nil {
			t.Fatal(err)
		}
	}
	must(a1, 40)
	if got := total.Used(); got != 40 {
		t.Fatalf("total used %d after a reservation of 40 below it, want 40", got)
	}

	// The connection level is full.
	d := reserveAsync(a1, 1, nil)
	waitForWaiters(t, total, 1)
	notDone(t, "a reservation past its connection's limit", d)
	a1.Release(10)
	if err := await(t, "a reservation after its connection released", d); err != nil {
		t.Fatal(err)
	}

	// The address level: a2 has room of its own, but a1 and a2 share 60.
	must(a2, 20) // address 31 + 20 = 51
	d = reserveAsync(a2, 10, nil)
	waitForWaiters(t, total, 1)
	notDone(t, "a reservation past its address's limit", d)
	// Another address is not held up by this one.
	must(b1, 40)
	a1.Release(1)
	if err := await(t, "a reservation after its address had room", d); err != nil {
		t.Fatal(err)
	}

	// The total: 60 + 40 = 100 used.
	if got := total.Used(); got != 100 {
		t.Fatalf("total used %d, want 100", got)
	}
	stop := make(chan struct{})
	d = reserveAsync(a2, 5, stop)
	waitForWaiters(t, total, 1)
	notDone(t, "a reservation past the total", d)
	close(stop)
	if err := await(t, "a stopped reservation", d); err == nil {
		t.Fatal("a stopped reservation succeeded")
	}
	if got := total.Used(); got != 100 {
		t.Fatalf("total used %d after a stopped reservation, want 100", got)
	}
}

// A reservation that stays blocked past its timeout fails with ErrBudget
// naming the full level and charges nothing.
func TestBudgetReserveTimeout(t *testing.T) {
	total := NewBudget("total", 10)
	conn := total.Child("connection", 100)
	if err := conn.Reserve(8, nil, 0); err != nil {
		t.Fatal(err)
	}
	err := conn.Reserve(8, nil, time.Millisecond)
	if !errors.Is(err, ErrBudget) || !strings.Contains(err.Error(), "total") {
		t.Fatalf("Reserve past the total: %v, want ErrBudget naming the total", err)
	}
	if got := conn.Used(); got != 8 {
		t.Fatalf("used %d after a failed reservation, want 8", got)
	}
}

// An item larger than a limit goes through a level with nothing charged
// (alone), so a small budget cannot block a connection for ever.
func TestBudgetOversizedItemWhenEmpty(t *testing.T) {
	total := NewBudget("total", 10)
	conn := total.Child("connection", 5)
	if err := conn.Reserve(50, nil, time.Millisecond); err != nil {
		t.Fatalf("an oversized item on empty levels: %v", err)
	}
	if err := conn.Reserve(1, nil, time.Millisecond); !errors.Is(err, ErrBudget) {
		t.Fatalf("a second item past the limit: %v, want ErrBudget", err)
	}
}

// Charge never waits and reports the first level over its limit.
func TestBudgetChargeReportsOver(t *testing.T) {
	total := NewBudget("total", 100)
	addr := total.Child("address", 50)
	conn := addr.Child("connection", 30)
	if over := conn.Charge(30); over != nil {
		t.Fatalf("Charge to the limit reported %q over", over.Name())
	}
	if over := conn.Charge(1); over != conn {
		t.Fatalf("Charge past the connection's limit reported %v, want the connection", over)
	}
	other := addr.Child("connection", 30)
	if over := other.Charge(20); over != addr {
		t.Fatalf("Charge past the address's limit reported %v, want the address", over)
	}
	if got := total.Used(); got != 51 {
		t.Fatalf("total %d, want 51", got)
	}
}

// Detach gives back what a dead connection still holds, and its later
// releases no longer touch the ancestors.
func TestBudgetDetach(t *testing.T) {
	total := NewBudget("total", 100)
	addr := total.Child("address", 100)
	conn := addr.Child("connection", 100)
	conn.Charge(30)
	full := addr.Child("connection", 100)
	full.Charge(70)
	d := reserveAsync(full, 20, nil)
	waitForWaiters(t, total, 1)
	conn.Detach()
	if err := await(t, "a reservation after a detach made room", d); err != nil {
		t.Fatal(err)
	}
	if got := addr.Used(); got != 90 {
		t.Fatalf("address used %d after the detach, want 90", got)
	}
	conn.Release(30) // the RPC layer releasing late
	conn.Charge(5)
	if got := total.Used(); got != 90 {
		t.Fatalf("total used %d after a detached connection's release and charge, want 90", got)
	}
	if got := conn.Used(); got != 5 {
		t.Fatalf("detached connection used %d, want 5", got)
	}
}

// The nil Budget counts nothing and never waits.
func TestBudgetNil(t *testing.T) {
	var b *Budget
	if err := b.Reserve(1<<40, nil, 0); err != nil {
		t.Fatal(err)
	}
	if b.Charge(1<<40) != nil || b.Used() != 0 {
		t.Fatal("nil Budget counted")
	}
	b.Release(1)
	b.Detach()
}

// A frame read through a transport with Pending is charged from its
// first byte (MaxMessageSize plus AnswerReserve), then its own size until
// the message is released; a Bootstrap (a call) keeps AnswerReserve
// until its Return is written. While the budget leaves no room for a
// frame, the next one is not read.
func TestPendingBudget(t *testing.T) {
	const (
		maxFrame = 4096
		reserve  = 1000
	)
	frame := bootstrapFrame(t)
	st := &flowStream{byteStream: byteStream{bytes.NewReader(append(append([]byte{}, frame...), frame...))}, budget: 1 << 30}
	// Room for one frame in reading and its answer, not for a second
	// frame next to an unanswered call.
	total := NewBudget("total", maxFrame+2*reserve-1)
	conn := total.Child("connection", 1<<20)
	codec := newStreamCodec(st, MessageLimits{MaxMessageSize: maxFrame, AnswerReserve: reserve, Pending: conn})
	tr := newSingleSegmentTransport(codec)

	in, err := tr.RecvMessage()
	if err != nil {
		t.Fatal(err)
	}
	if in.Message().Which() != rpccp.Message_Which_bootstrap {
		t.Fatalf("read a %v, want a bootstrap", in.Message().Which())
	}
	size := int64(len(frame) - 8) // the frame minus its header
	if got := conn.Used(); got != size+reserve {
		t.Fatalf("used %d with one bootstrap held, want its %d bytes + %d reserved for the answer", got, size, reserve)
	}
	in.Release()
	in.Release() // twice is harmless
	if got := conn.Used(); got != reserve {
		t.Fatalf("used %d after the bootstrap was released, want the %d reserved for its answer", got, reserve)
	}

	// Another frame would need maxFrame + reserve on top of the
	// unanswered call: it waits for the Return.
	got := make(chan error, 1)
	go func() {
		in, err := tr.RecvMessage()
		if err == nil {
			in.Release()
		}
		got <- err
	}()
	waitForWaiters(t, total, 1)
	notDone(t, "reading a frame with no room in the budget", got)

	ret, err := tr.NewMessage()
	if err != nil {
		t.Fatal(err)
	}
	r, err := ret.Message().NewReturn()
	if err != nil {
		t.Fatal(err)
	}
	r.SetAnswerId(7)
	if err := ret.Send(); err != nil {
		t.Fatal(err)
	}
	if err := await(t, "reading after the Return was written", got); err != nil {
		t.Fatal(err)
	}
	ret.Release()
	// The second bootstrap's answer is still reserved.
	if got := conn.Used(); got != reserve {
		t.Fatalf("used %d with the second call unanswered, want %d", got, reserve)
	}

	// The stream is at its end: a failed read charges nothing, and an
	// unsent message released does not release a call's reservation
	// unless it is a Return.
	if _, err := tr.RecvMessage(); err == nil {
		t.Fatal("read past the end of the stream")
	}
	other, err := tr.NewMessage()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Message().NewAbort(); err != nil {
		t.Fatal(err)
	}
	other.Release()
	if got := conn.Used(); got != reserve {
		t.Fatalf("used %d after an Abort was dropped, want %d", got, reserve)
	}
	unsent, err := tr.NewMessage()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unsent.Message().NewReturn(); err != nil {
		t.Fatal(err)
	}
	unsent.Release() // a Return dropped unsent (connection ending)
	if got := conn.Used(); got != 0 {
		t.Fatalf("used %d after every call was answered, want 0", got)
	}
}

// Closing the codec ends a read waiting for the budget.
func TestPendingBudgetClose(t *testing.T) {
	st := &flowStream{byteStream: byteStream{bytes.NewReader(bootstrapFrame(t))}, budget: 1 << 30}
	conn := NewBudget("connection", 100)
	conn.Charge(100)
	codec := newStreamCodec(st, MessageLimits{MaxMessageSize: 1000, Pending: conn})
	got := make(chan error, 1)
	go func() {
		_, err := codec.Decode()
		got <- err
	}()
	waitForWaiters(t, conn, 1)
	codec.Close()
	if err := await(t, "a read waiting for the budget after Close", got); err == nil {
		t.Fatal("Decode after Close returned no error")
	}
	if got := conn.Used(); got != 100 {
		t.Fatalf("used %d after a cancelled read, want the 100 charged before", got)
	}
}

// Unfinished sums the written, unreleased answers of a connection into
// its ancestors; past an ancestor's limit OnUnfinished is called.
func TestUnfinishedBudget(t *testing.T) {
	total := NewBudget("total", 2500)
	var over []error
	conns := make([]*streamCodec, 2)
	for i := range conns {
		st := &flowStream{byteStream: byteStream{bytes.NewReader(nil)}, budget: 1 << 30}
		conns[i] = newStreamCodec(st, MessageLimits{Unfinished: total.Child("connection", 0), OnUnfinished: func(err error) { over = append(over, err) }})
	}
	send := func(c *streamCodec) {
		t.Helper()
		tr := newSingleSegmentTransport(c)
		m, err := tr.NewMessage()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Message().NewReturn(); err != nil {
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
	}
	send(conns[0])
	send(conns[1])
	if len(over) != 0 {
		t.Fatalf("OnUnfinished under the total: %v", over)
	}
	send(conns[1])
	if len(over) != 1 || !errors.Is(over[0], ErrUnfinished) || !strings.Contains(over[0].Error(), "total") {
		t.Fatalf("OnUnfinished calls past the total: %v", over)
	}
}
