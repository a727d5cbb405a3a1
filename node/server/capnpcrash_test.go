package server

import (
	"context"
	"crypto/rand"
	"sync"
	"testing"
	"time"

	capnp "capnproto.org/go/capnp/v3"
	rpccp "capnproto.org/go/capnp/v3/std/capnp/rpc"

	"qpchat/rpc"
)

// gatedClock is a clock whose Now blocks while the gate is shut.
type gatedClock struct {
	now func() time.Time

	mu   sync.Mutex
	gate chan struct{} // nil: open
}

func (g *gatedClock) Now() time.Time {
	g.mu.Lock()
	gate := g.gate
	g.mu.Unlock()
	if gate != nil {
		<-gate
	}
	return g.now()
}

func (g *gatedClock) shut() {
	g.mu.Lock()
	g.gate = make(chan struct{})
	g.mu.Unlock()
}

func (g *gatedClock) open() {
	g.mu.Lock()
	if g.gate != nil {
		close(g.gate)
		g.gate = nil
	}
	g.mu.Unlock()
}

// crashShape returns the frames of the go-capnp v3.1.0-alpha.1 remote
// crash, after a bootstrap (question 0) and an honest call on its promise
// (question 1): question 2 is a call still running on the node
// (loginStart, held by the clock while the test wants), question 3 a call
// pipelined on question 2's promised answer, and question 4 a ping that
// tells the test the node read question 3. When question 2 returns,
// go-capnp delivers the queued call 3 to the results, which hold no
// capability; the delivery yields a nil pipeline caller, which the
// library dereferences in its own goroutine (capnp answerqueue.go,
// AnswerQueue.Fulfill; upstream go-capnp #617), ending the process.
func crashShape(t testing.TB, ke1 []byte) [][]byte {
	ns := uint64(rpc.NodeService_TypeID)
	loginStart := func(seg *capnp.Segment) (capnp.Ptr, error) {
		p, err := rpc.NewNodeService_loginStart_Params(seg)
		if err != nil {
			return capnp.Ptr{}, err
		}
		if err := p.SetUser("nobody"); err != nil {
			return capnp.Ptr{}, err
		}
		return p.ToPtr(), p.SetKe1(ke1)
	}
	const ping, login = 0, 3 // NodeService method ordinals (schemas/node.capnp)
	return [][]byte{
		bootstrapFrame(t, 0),
		callFrame(t, 1, ns, ping, 0, 0, nil),          // honest: on the bootstrap promise
		callFrame(t, 2, ns, login, 0, -1, loginStart), // on import 0, the bootstrap capability
		callFrame(t, 3, ns, ping, 0, 2, nil),          // pipelined on question 2: the crash
		callFrame(t, 4, ns, ping, 0, -1, nil),
	}
}

// TestCapnpPromisedAnswerCrash replays the remote crash of go-capnp
// v3.1.0-alpha.1 against a node: a call pipelined on the promised answer
// of a call still running. Without the node's allow-list
// (rpc.MessageLimits.ClientShapesOnly) the library panics in its own
// goroutine when the first call returns, which kills this test binary;
// with it, the node closes the connection with CodeProtocol as soon as
// it reads the pipelined call, and goes on serving.
func TestCapnpPromisedAnswerCrash(t *testing.T) {
	clock := &gatedClock{}
	n := startNode(t, func(c *Config) {
		clock.now = c.Now
		c.Now = clock.Now
	})
	t.Cleanup(clock.open)
	honest := n.dial()
	_, ke1, err := n.cfg.OPAQUE.NewClientLogin(rand.Reader, []byte(testPassword))
	must(t, "KE1", err)
	frames := crashShape(t, ke1.Marshal())

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := dialRaw(ctx, n.srv.Addr().String())
	must(t, "dial", err)
	defer p.close()
	must(t, "bootstrap", p.send(frames[0]))
	must(t, "call on the bootstrap promise", p.send(frames[1]))
	if !p.waitReturn(ctx, 1) {
		t.Fatal("the honest call on the bootstrap promise got no answer")
	}

	clock.shut() // loginStart's rate limiter reads the clock: question 2 stays running
	for _, f := range frames[2:] {
		if err := p.send(f); err != nil {
			break // the node may already have closed the stream
		}
	}
	// The node has read question 3 once it answers question 4 or ends
	// the stream.
	p.waitReturn(ctx, 4)
	clock.open() // question 2 returns: without the allow-list, the crash
	p.waitReturn(ctx, 2)

	code, reason, ok := p.closeReason(ctx)
	if !ok || code != rpc.CodeProtocol || reason != "message not allowed" {
		t.Errorf("connection ended with code %d, reason %q (closed by the node: %v), want CodeProtocol, \"message not allowed\"", code, reason, ok)
	}
	if v, err := pingConn(honest); err != nil || v != "test" {
		t.Fatalf("honest ping after the attack: %q, %v", v, err)
	}
	if v, err := pingConn(n.dial()); err != nil || v != "test" {
		t.Fatalf("honest ping on a new connection after the attack: %q, %v", v, err)
	}
}

// TestRefusedShapesCloseConnection sends, after an honest bootstrap,
// each of a few message shapes qpchat clients never send: the node
// closes that connection with CodeProtocol and serves the others.
func TestRefusedShapesCloseConnection(t *testing.T) {
	n := startNode(t, nil)
	honest := n.dial()
	ns := uint64(rpc.NodeService_TypeID)
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"call on the promised answer of a call", callFrame(t, 2, ns, 0, 0, 1, nil)},
		{"call on the bootstrap promise with a transform", callFrame(t, 2, ns, 0, 0, 0, nil, 0)},
		{"return", rpcFrame(t, func(m rpccp.Message) error {
			r, err := m.NewReturn()
			r.SetAnswerId(0)
			return err
		})},
		{"resolve", rpcFrame(t, func(m rpccp.Message) error { _, err := m.NewResolve(); return err })},
		{"disembargo", rpcFrame(t, func(m rpccp.Message) error {
			d, err := m.NewDisembargo()
			if err != nil {
				return err
			}
			d.Context().SetSenderLoopback(1)
			tgt, err := d.NewTarget()
			tgt.SetImportedCap(0)
			return err
		})},
		{"unknown message type", rpcFrame(t, func(m rpccp.Message) error {
			capnp.Struct(m).SetUint16(0, 77)
			return nil
		})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			p, err := dialRaw(ctx, n.srv.Addr().String())
			must(t, "dial", err)
			defer p.close()
			must(t, "bootstrap", p.send(bootstrapFrame(t, 0)))
			must(t, "call", p.send(callFrame(t, 1, ns, 0, 0, -1, nil)))
			if !p.waitReturn(ctx, 1) {
				t.Fatal("the honest call got no answer")
			}
			must(t, "send", p.send(tc.frame))
			// The reason says the allow-list refused it; the library
			// would close some of these too, for other reasons.
			if code, reason, ok := p.closeReason(ctx); !ok || code != rpc.CodeProtocol || reason != "message not allowed" {
				t.Errorf("connection ended with code %d, reason %q (closed by the node: %v), want CodeProtocol, \"message not allowed\"", code, reason, ok)
			}
			if _, err := pingConn(honest); err != nil {
				t.Fatalf("honest ping: %v", err)
			}
		})
	}
}
