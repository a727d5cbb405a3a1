package rpc

import (
	"sync"
	"sync/atomic"

	capnp "capnproto.org/go/capnp/v3"
	capnprpc "capnproto.org/go/capnp/v3/rpc"
	"capnproto.org/go/capnp/v3/rpc/transport"
	rpccp "capnproto.org/go/capnp/v3/std/capnp/rpc"
)

// singleSegmentTransport is the library's stream transport with one
// change: outgoing messages use a single-segment arena.
//
// The library's transport builds them on a MultiSegmentArena, whose
// Allocate appends to a slice of Segment values and hands out pointers
// into it (capnp v3.1.0-alpha.1, arena.go). When the slice grows, the
// pointers held by structs and lists built earlier point into the old
// array, and the next allocation that prefers such a segment fails with
// "preferred segment is not part of the arena". Any message past its
// first 1 KiB segment with fields of mixed sizes (a fetch answer, a send
// of varied messages) can hit it. A SingleSegmentArena keeps one Segment
// whose buffer grows by copying, so the pointers stay valid.
type singleSegmentTransport struct {
	capnprpc.Transport // the library's: RecvMessage and Close
	codec              transport.Codec
	sc                 *streamCodec // c, when it is one
	out                *backlog     // unsent messages, likewise
	held               *heldBytes   // written, unreleased bytes, likewise
}

func newSingleSegmentTransport(c transport.Codec) capnprpc.Transport {
	t := &singleSegmentTransport{Transport: transport.New(c), codec: c}
	if sc, ok := c.(*streamCodec); ok {
		t.sc, t.out, t.held = sc, sc.out, sc.held
	}
	return t
}

// RecvMessage hands the Pending charges of each incoming frame
// (MessageLimits.Pending) on: the frame's bytes to the message, released
// with it; a call's answer reservation to the connection, released when
// a Return is written (see outgoing.sent). Every Call and Bootstrap gets
// exactly one Return (Cap'n Proto rpc.capnp), so the reservations still
// held are one per call whose answer is not written yet.
func (t *singleSegmentTransport) RecvMessage() (transport.IncomingMessage, error) {
	m, err := t.Transport.RecvMessage()
	if t.sc == nil || t.sc.pending == nil {
		return m, err
	}
	frame, call := t.sc.takeCharges()
	if err != nil || m == nil {
		t.sc.pending.Release(frame + call)
		return m, err
	}
	return &incoming{IncomingMessage: m, budget: t.sc.pending, n: frame}, nil
}

// incoming releases its charge in the Pending budget with the message.
type incoming struct {
	transport.IncomingMessage
	budget *Budget
	n      int64
	once   sync.Once
}

func (m *incoming) Release() {
	m.once.Do(func() {
		m.IncomingMessage.Release()
		m.budget.Release(m.n)
	})
}

// NewMessage allocates an outgoing message on a single-segment arena.
func (t *singleSegmentTransport) NewMessage() (transport.OutgoingMessage, error) {
	_, seg, err := capnp.NewMessage(capnp.SingleSegment(nil))
	if err != nil {
		return nil, err
	}
	m, err := rpccp.NewRootMessage(seg)
	if err != nil {
		return nil, err
	}
	t.out.add()
	o := &outgoing{msg: m, codec: t.codec, out: t.out, held: t.held}
	if t.sc != nil && t.sc.pending != nil {
		o.pending, o.answerReserve = t.sc.pending, t.sc.answerReserve
	}
	o.unsent.Store(true)
	return o, nil
}

// outgoing implements transport.OutgoingMessage.
type outgoing struct {
	msg      rpccp.Message
	codec    transport.Codec
	released bool
	out      *backlog
	unsent   atomic.Bool // counted in out until written or released
	held     *heldBytes
	size     atomic.Uint64 // counted in held from written to released

	pending       *Budget // MessageLimits.Pending, or nil
	answerReserve int64
}

// sent takes the message out of the backlog count, once, and, for a
// Return, releases the answer reservation of one call.
func (o *outgoing) sent() {
	if o.unsent.CompareAndSwap(true, false) {
		o.out.done()
		if o.pending != nil && o.msg.Which() == rpccp.Message_Which_return {
			o.pending.Release(o.answerReserve)
		}
	}
}

func (o *outgoing) Message() rpccp.Message { return o.msg }

func (o *outgoing) Send() error {
	if o.released {
		panic("rpc: Send after Release")
	}
	defer o.sent()
	m := o.msg.Message()
	if err := o.codec.Encode(m); err != nil {
		return err
	}
	if o.held != nil {
		if size, err := m.TotalSize(); err == nil && size > 0 {
			o.size.Store(size)
			o.held.add(size)
		}
	}
	return nil
}

func (o *outgoing) Release() {
	if o.released {
		return
	}
	o.released = true
	o.sent()
	if size := o.size.Swap(0); size > 0 {
		o.held.remove(size)
	}
	if m := o.msg.Message(); m != nil {
		m.Release()
	}
}
