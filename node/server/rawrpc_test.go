package server

import (
	"context"
	"crypto/tls"
	"errors"
	"sync"
	"testing"
	"time"

	capnp "capnproto.org/go/capnp/v3"
	rpccp "capnproto.org/go/capnp/v3/std/capnp/rpc"
	"github.com/quic-go/quic-go"

	"qpchat/rpc"
)

// Helpers for tests that speak Cap'n Proto RPC to the node frame by
// frame, as a hostile peer would: no go-capnp on our side.

// rawPeer is a QUIC connection to the node with its RPC stream, written
// frame by frame; a goroutine reads the node's messages and records the
// answer ids of its Returns.
type rawPeer struct {
	qc *quic.Conn
	st *quic.Stream

	mu         sync.Mutex
	cond       sync.Cond
	returns    map[uint32]bool // answer id -> returned
	exceptions []string        // reasons of the exceptions returned
	ended      bool            // the node's side of the stream ended
}

// quicDialRaw opens a QUIC connection to the node at addr, trusting any
// certificate: these peers attack the node, not the other way round.
func quicDialRaw(ctx context.Context, addr string) (*quic.Conn, error) {
	return quic.DialAddr(ctx, addr, &tls.Config{
		InsecureSkipVerify: true,
		MinVersion:         tls.VersionTLS13,
		NextProtos:         []string{rpc.ALPN},
	}, &quic.Config{MaxIdleTimeout: 30 * time.Second})
}

// dialRaw opens a connection to the node at addr (see quicDialRaw) and
// its RPC stream.
func dialRaw(ctx context.Context, addr string) (*rawPeer, error) {
	qc, err := quicDialRaw(ctx, addr)
	if err != nil {
		return nil, err
	}
	st, err := qc.OpenStreamSync(ctx)
	if err != nil {
		qc.CloseWithError(0, "")
		return nil, err
	}
	p := &rawPeer{qc: qc, st: st, returns: make(map[uint32]bool)}
	p.cond.L = &p.mu
	go p.read()
	return p, nil
}

func (p *rawPeer) read() {
	dec := capnp.NewDecoder(p.st)
	dec.MaxMessageSize = 64 << 20
	for {
		m, err := dec.Decode()
		if err != nil {
			break
		}
		if root, err := rpccp.ReadRootMessage(m); err == nil && root.Which() == rpccp.Message_Which_return {
			if ret, err := root.Return(); err == nil {
				p.mu.Lock()
				if ret.Which() == rpccp.Return_Which_exception {
					e, _ := ret.Exception()
					r, _ := e.Reason()
					p.exceptions = append(p.exceptions, r)
				}
				p.returns[ret.AnswerId()] = true
				p.cond.Broadcast()
				p.mu.Unlock()
			}
		}
	}
	p.mu.Lock()
	p.ended = true
	p.cond.Broadcast()
	p.mu.Unlock()
}

// send writes one frame.
func (p *rawPeer) send(frame []byte) error {
	_, err := p.st.Write(frame)
	return err
}

// waitReturn waits until the node returned question q or ended the
// stream, or ctx is done; it reports whether the Return came.
func (p *rawPeer) waitReturn(ctx context.Context, q uint32) bool {
	stop := context.AfterFunc(ctx, func() {
		p.mu.Lock()
		p.cond.Broadcast()
		p.mu.Unlock()
	})
	defer stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	for !p.returns[q] && !p.ended && ctx.Err() == nil {
		p.cond.Wait()
	}
	return p.returns[q]
}

// waitEnd waits until the node ended the stream or ctx is done.
func (p *rawPeer) waitEnd(ctx context.Context) bool {
	stop := context.AfterFunc(ctx, func() {
		p.mu.Lock()
		p.cond.Broadcast()
		p.mu.Unlock()
	})
	defer stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	for !p.ended && ctx.Err() == nil {
		p.cond.Wait()
	}
	return p.ended
}

func (p *rawPeer) close() { p.qc.CloseWithError(0, "") }

// closeCode waits for the connection to end and returns the node's
// application error code, or ok == false if the node did not close it.
func (p *rawPeer) closeCode(ctx context.Context) (code quic.ApplicationErrorCode, ok bool) {
	code, _, ok = p.closeReason(ctx)
	return code, ok
}

// closeReason is closeCode with the node's reason phrase.
func (p *rawPeer) closeReason(ctx context.Context) (code quic.ApplicationErrorCode, reason string, ok bool) {
	select {
	case <-p.qc.Context().Done():
	case <-ctx.Done():
		return 0, "", false
	}
	var ae *quic.ApplicationError
	if err := context.Cause(p.qc.Context()); errors.As(err, &ae) && ae.Remote {
		return ae.ErrorCode, ae.ErrorMessage, true
	}
	return 0, "", false
}

// rpcFrame builds one RPC message with fill and returns its frame.
func rpcFrame(t testing.TB, fill func(m rpccp.Message) error) []byte {
	t.Helper()
	_, seg, err := capnp.NewMessage(capnp.SingleSegment(nil))
	if err != nil {
		t.Fatal(err)
	}
	m, err := rpccp.NewRootMessage(seg)
	if err != nil {
		t.Fatal(err)
	}
	if err := fill(m); err != nil {
		t.Fatal(err)
	}
	b, err := m.Message().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func bootstrapFrame(t testing.TB, q uint32) []byte {
	return rpcFrame(t, func(m rpccp.Message) error {
		b, err := m.NewBootstrap()
		b.SetQuestionId(q)
		return err
	})
}

// callFrame is a call of question q to method (iface, method) on import
// imp or, if pa >= 0, on the promised answer of question pa with the
// transform ops; params, if set, fills the parameters, which are
// otherwise an empty struct.
func callFrame(t testing.TB, q uint32, iface uint64, method uint16, imp uint32, pa int64, params func(*capnp.Segment) (capnp.Ptr, error), ops ...uint16) []byte {
	return rpcFrame(t, func(m rpccp.Message) error {
		c, err := m.NewCall()
		if err != nil {
			return err
		}
		c.SetQuestionId(q)
		c.SetInterfaceId(iface)
		c.SetMethodId(method)
		tgt, err := c.NewTarget()
		if err != nil {
			return err
		}
		if pa < 0 {
			tgt.SetImportedCap(imp)
		} else {
			a, err := tgt.NewPromisedAnswer()
			if err != nil {
				return err
			}
			a.SetQuestionId(uint32(pa))
			if len(ops) > 0 {
				l, err := a.NewTransform(int32(len(ops)))
				if err != nil {
					return err
				}
				for i, op := range ops {
					l.At(i).SetGetPointerField(op)
				}
			}
		}
		p, err := c.NewParams()
		if err != nil {
			return err
		}
		if params == nil {
			params = func(seg *capnp.Segment) (capnp.Ptr, error) {
				s, err := capnp.NewStruct(seg, capnp.ObjectSize{DataSize: 8})
				return s.ToPtr(), err
			}
		}
		args, err := params(p.Segment())
		if err != nil {
			return err
		}
		return p.SetContent(args)
	})
}

func finishFrame(t testing.TB, q uint32) []byte {
	return rpcFrame(t, func(m rpccp.Message) error {
		f, err := m.NewFinish()
		f.SetQuestionId(q)
		f.SetReleaseResultCaps(false)
		return err
	})
}

func releaseFrame(t testing.TB, id, count uint32) []byte {
	return rpcFrame(t, func(m rpccp.Message) error {
		r, err := m.NewRelease()
		r.SetId(id)
		r.SetReferenceCount(count)
		return err
	})
}
