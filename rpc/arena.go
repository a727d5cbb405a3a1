package rpc

import (
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
	out                *backlog   // unsent messages, when c is a *streamCodec
	held               *heldBytes // written, unreleased bytes, likewise
}

func newSingleSegmentTransport(c transport.Codec) capnprpc.Transport {
	t := &singleSegmentTransport{Transport: transport.New(c), codec: c}
	if sc, ok := c.(*streamCodec); ok {
		t.out, t.held = sc.out, sc.held
	}
	return t
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
}

// sent takes the message out of the backlog count, once.
func (o *outgoing) sent() {
	if o.unsent.CompareAndSwap(true, false) {
		o.out.done()
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
