package rpc

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	capnp "capnproto.org/go/capnp/v3"
	capnprpc "capnproto.org/go/capnp/v3/rpc"
	rpccp "capnproto.org/go/capnp/v3/std/capnp/rpc"
	"github.com/quic-go/quic-go"
)

// wireMsg builds an RPC message with fill and returns it as the node's
// decoder would: marshalled to a frame and read back.
func wireMsg(t testing.TB, fill func(m rpccp.Message) error) *capnp.Message {
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
	out, err := capnp.Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func bootstrapMsg(q uint32) func(rpccp.Message) error {
	return func(m rpccp.Message) error {
		b, err := m.NewBootstrap()
		b.SetQuestionId(q)
		return err
	}
}

func finishMsg(q uint32) func(rpccp.Message) error {
	return func(m rpccp.Message) error {
		f, err := m.NewFinish()
		f.SetQuestionId(q)
		return err
	}
}

// callMsg is a call of question q to the promised answer of question
// target (with ops getPointerField ops) or, if target < 0, to import 0;
// edit adjusts it further.
func callMsg(q uint32, target int64, ops []uint16, edit func(rpccp.Call) error) func(rpccp.Message) error {
	return func(m rpccp.Message) error {
		c, err := m.NewCall()
		if err != nil {
			return err
		}
		c.SetQuestionId(q)
		c.SetInterfaceId(NodeService_TypeID)
		tgt, err := c.NewTarget()
		if err != nil {
			return err
		}
		if target < 0 {
			tgt.SetImportedCap(0)
		} else {
			pa, err := tgt.NewPromisedAnswer()
			if err != nil {
				return err
			}
			pa.SetQuestionId(uint32(target))
			if ops != nil {
				l, err := pa.NewTransform(int32(len(ops)))
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
		args, err := capnp.NewStruct(p.Segment(), capnp.ObjectSize{DataSize: 8})
		if err != nil {
			return err
		}
		if err := p.SetContent(args.ToPtr()); err != nil {
			return err
		}
		if edit != nil {
			return edit(c)
		}
		return nil
	}
}

// runAllowList feeds msgs to a fresh allow-list and returns the index
// and error of the first refused one, or -1.
func runAllowList(t *testing.T, msgs ...func(rpccp.Message) error) (int, error) {
	t.Helper()
	a := newAllowList()
	for i, fill := range msgs {
		if err := a.check(wireMsg(t, fill)); err != nil {
			if !errors.Is(err, ErrNotAllowed) {
				t.Fatalf("message %d: error %v does not wrap ErrNotAllowed", i, err)
			}
			return i, err
		}
	}
	return -1, nil
}

// TestAllowListHonestShapes lets through what qpchat's client sends:
// a bootstrap, calls on its promise before it resolves, its finish,
// calls on imported capabilities, releases and an abort.
func TestAllowListHonestShapes(t *testing.T) {
	i, err := runAllowList(t,
		bootstrapMsg(0),
		callMsg(1, 0, nil, nil),        // first call: on the bootstrap promise
		callMsg(2, 0, []uint16{}, nil), // empty transform list, not null
		finishMsg(1),
		finishMsg(0),
		callMsg(0, -1, nil, nil), // question id 0 reused after its finish
		func(m rpccp.Message) error {
			r, err := m.NewRelease()
			r.SetId(0)
			r.SetReferenceCount(1)
			return err
		},
		bootstrapMsg(7), // a second bootstrap on the same connection
		callMsg(8, 7, nil, nil),
		func(m rpccp.Message) error {
			e, err := m.NewAbort()
			if err != nil {
				return err
			}
			return e.SetReason("bye")
		},
	)
	if i >= 0 {
		t.Fatalf("honest message %d refused: %v", i, err)
	}
}

// TestAllowListRefuses tries each shape a qpchat client never sends;
// each is refused, whatever came before it.
func TestAllowListRefuses(t *testing.T) {
	union := func(which uint16) func(rpccp.Message) error {
		return func(m rpccp.Message) error {
			capnp.Struct(m).SetUint16(0, which)
			return nil
		}
	}
	cases := []struct {
		name string
		msgs []func(rpccp.Message) error
	}{
		// The go-capnp crash: a call pipelined on an answer that has no
		// results yet (here: a call still running).
		{"call on the promised answer of a call", []func(rpccp.Message) error{
			bootstrapMsg(0), callMsg(1, -1, nil, nil), callMsg(2, 1, nil, nil)}},
		{"call on the promised answer of an unknown question", []func(rpccp.Message) error{
			callMsg(1, 5, nil, nil)}},
		{"call on the promised answer of a finished bootstrap", []func(rpccp.Message) error{
			bootstrapMsg(0), finishMsg(0), callMsg(1, 0, nil, nil)}},
		{"call on the bootstrap promise with a transform", []func(rpccp.Message) error{
			bootstrapMsg(0), callMsg(1, 0, []uint16{0}, nil)}},
		{"call reusing an open bootstrap question", []func(rpccp.Message) error{
			bootstrapMsg(0), callMsg(0, -1, nil, nil)}},
		{"call with results to yourself", []func(rpccp.Message) error{
			callMsg(1, -1, nil, func(c rpccp.Call) error { c.SendResultsTo().SetYourself(); return nil })}},
		{"call with results to a third party", []func(rpccp.Message) error{
			callMsg(1, -1, nil, func(c rpccp.Call) error { return c.SendResultsTo().SetThirdParty(capnp.Ptr{}) })}},
		{"call allowing a third-party tail call", []func(rpccp.Message) error{
			callMsg(1, -1, nil, func(c rpccp.Call) error { c.SetAllowThirdPartyTailCall(true); return nil })}},
		{"call only for pipelining", []func(rpccp.Message) error{
			callMsg(1, -1, nil, func(c rpccp.Call) error { c.SetOnlyPromisePipeline(true); return nil })}},
		{"call passing a capability", []func(rpccp.Message) error{
			callMsg(1, -1, nil, func(c rpccp.Call) error {
				p, err := c.Params()
				if err != nil {
					return err
				}
				ct, err := p.NewCapTable(1)
				if err != nil {
					return err
				}
				ra, err := ct.At(0).NewReceiverAnswer()
				ra.SetQuestionId(1)
				return err
			})}},
		{"call with an unknown target type", []func(rpccp.Message) error{
			callMsg(1, -1, nil, func(c rpccp.Call) error {
				tgt, err := c.Target()
				capnp.Struct(tgt).SetUint16(4, 9)
				return err
			})}},
		{"bootstrap with a deprecated object id", []func(rpccp.Message) error{
			func(m rpccp.Message) error {
				b, err := m.NewBootstrap()
				if err != nil {
					return err
				}
				txt, err := capnp.NewText(b.Segment(), "x")
				if err != nil {
					return err
				}
				return b.SetDeprecatedObjectId(txt.ToPtr())
			}}},
		{"bootstrap reusing an open question", []func(rpccp.Message) error{
			bootstrapMsg(3), bootstrapMsg(3)}},
		{"too many bootstraps", []func(rpccp.Message) error{
			bootstrapMsg(0), bootstrapMsg(1), bootstrapMsg(2), bootstrapMsg(3), bootstrapMsg(4)}},
		{"return", []func(rpccp.Message) error{func(m rpccp.Message) error { _, err := m.NewReturn(); return err }}},
		{"resolve", []func(rpccp.Message) error{func(m rpccp.Message) error { _, err := m.NewResolve(); return err }}},
		{"disembargo", []func(rpccp.Message) error{func(m rpccp.Message) error {
			d, err := m.NewDisembargo()
			d.Context().SetSenderLoopback(0)
			return err
		}}},
		{"unimplemented", []func(rpccp.Message) error{func(m rpccp.Message) error { _, err := m.NewUnimplemented(); return err }}},
		{"provide", []func(rpccp.Message) error{func(m rpccp.Message) error { _, err := m.NewProvide(); return err }}},
		{"accept", []func(rpccp.Message) error{func(m rpccp.Message) error { _, err := m.NewAccept(); return err }}},
		{"join", []func(rpccp.Message) error{func(m rpccp.Message) error { _, err := m.NewJoin(); return err }}},
		{"third-party answer", []func(rpccp.Message) error{func(m rpccp.Message) error { _, err := m.NewThirdPartyAnswer(); return err }}},
		{"obsolete save", []func(rpccp.Message) error{union(uint16(rpccp.Message_Which_obsoleteSave))}},
		{"obsolete delete", []func(rpccp.Message) error{union(uint16(rpccp.Message_Which_obsoleteDelete))}},
		{"unknown message type", []func(rpccp.Message) error{union(200)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			i, err := runAllowList(t, tc.msgs...)
			if i != len(tc.msgs)-1 {
				t.Fatalf("refused message %d (%v), want the last one, %d", i, err, len(tc.msgs)-1)
			}
			t.Log(err)
		})
	}
}

// TestAllowListBoundedRead refuses a message whose root struct alone is
// past the allow-list's read limit, and restores the library's read
// limit after an allowed message with big parameters.
func TestAllowListBoundedRead(t *testing.T) {
	_, seg, _ := capnp.NewMessage(capnp.SingleSegment(nil))
	if _, err := capnp.NewRootStruct(seg, capnp.ObjectSize{DataSize: allowListReadLimit + 8}); err != nil {
		t.Fatal(err)
	}
	b, _ := seg.Message().Marshal()
	big, _ := capnp.Unmarshal(b)
	if err := newAllowList().check(big); !errors.Is(err, ErrNotAllowed) {
		t.Fatalf("huge root struct: %v, want refusal", err)
	}

	const size = 4 << 20
	m := wireMsg(t, callMsg(1, -1, nil, func(c rpccp.Call) error {
		p, err := c.Params()
		if err != nil {
			return err
		}
		d, err := capnp.NewData(p.Segment(), make([]byte, size))
		if err != nil {
			return err
		}
		return p.SetContent(d.ToPtr())
	}))
	if err := newAllowList().check(m); err != nil {
		t.Fatal(err)
	}
	root, _ := rpccp.ReadRootMessage(m)
	c, _ := root.Call()
	p, _ := c.Params()
	content, err := p.Content()
	if err != nil || len(content.Data()) != size {
		t.Fatalf("parameters after the check: %d bytes, %v; want %d bytes", len(content.Data()), err, size)
	}
}

// pipeStream is one end of an in-memory connection with the codec's
// stream methods; it tees what it reads into rec.
type pipeStream struct {
	net.Conn
	mu   sync.Mutex
	rec  bytes.Buffer
	gate chan struct{} // if not nil, reads wait until it is closed
}

func (s *pipeStream) Read(p []byte) (int, error) {
	if s.gate != nil {
		<-s.gate
	}
	n, err := s.Conn.Read(p)
	s.mu.Lock()
	s.rec.Write(p[:n])
	s.mu.Unlock()
	return n, err
}
func (s *pipeStream) CancelRead(quic.StreamErrorCode)  { s.Conn.Close() }
func (s *pipeStream) CancelWrite(quic.StreamErrorCode) { s.Conn.Close() }

// frameShapes splits recorded frames and names each message's shape.
func frameShapes(t *testing.T, b []byte) []string {
	t.Helper()
	var shapes []string
	dec := capnp.NewDecoder(bytes.NewReader(b))
	for {
		m, err := dec.Decode()
		if errors.Is(err, io.EOF) {
			return shapes
		}
		if err != nil {
			t.Fatal(err)
		}
		root, _ := rpccp.ReadRootMessage(m)
		s := root.Which().String()
		if root.Which() == rpccp.Message_Which_call {
			c, _ := root.Call()
			tgt, _ := c.Target()
			s += "/" + tgt.Which().String()
		}
		shapes = append(shapes, s)
	}
}

// TestAllowListRealClient runs go-capnp's client against a server whose
// codec has ClientShapesOnly: calls on the bootstrap promise before it
// resolves, calls on the resolved capability, concurrent calls, and the
// client's close all pass, and nothing is refused.
func TestAllowListRealClient(t *testing.T) {
	a, b := net.Pipe()
	// The node reads nothing until the first calls are issued, so they
	// surely target the unresolved Bootstrap promise.
	srvSide, cliSide := &pipeStream{Conn: a, gate: make(chan struct{})}, &pipeStream{Conn: b}
	var refused []error
	var mu sync.Mutex
	srv := capnprpc.NewConn(newSingleSegmentTransport(newStreamCodec(srvSide, MessageLimits{
		ClientShapesOnly: true,
		OnRefused: func(err error) {
			mu.Lock()
			refused = append(refused, err)
			mu.Unlock()
		},
	})), &capnprpc.Options{BootstrapClient: capnp.Client(NodeService_ServerToClient(echoNode{}))})
	cli := capnprpc.NewConn(newSingleSegmentTransport(newStreamCodec(cliSide, MessageLimits{})), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	node := NodeService(cli.Bootstrap(ctx))
	issued := make(chan struct{}, 8)
	ping := func(nonce uint64) error {
		f, rel := node.Ping(ctx, func(p NodeService_ping_Params) error { p.SetNonce(nonce); return nil })
		defer rel()
		issued <- struct{}{}
		r, err := f.Struct()
		if err == nil && r.Nonce() != nonce {
			err = errors.New("wrong nonce")
		}
		return err
	}
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range uint64(8) { // sent before the bootstrap resolves
		wg.Add(1)
		go func() { defer wg.Done(); errs <- ping(i) }()
	}
	for range 8 {
		<-issued
	}
	close(srvSide.gate)
	wg.Wait()
	if err := node.Resolve(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range uint64(8) {
		errs <- ping(100 + i)
		<-issued
	}
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("ping: %v", err)
		}
	}
	node.Release()
	cli.Close()
	<-srv.Done()

	mu.Lock()
	defer mu.Unlock()
	if len(refused) > 0 {
		t.Fatalf("honest client refused: %v", refused)
	}
	srvSide.mu.Lock()
	rec := bytes.Clone(srvSide.rec.Bytes())
	srvSide.mu.Unlock()
	shapes := frameShapes(t, rec)
	seen := map[string]int{}
	for _, s := range shapes {
		seen[s]++
	}
	t.Logf("client sent: %v", seen)
	if seen["bootstrap"] != 1 || seen["call/importedCap"] == 0 || seen["call/promisedAnswer"] == 0 {
		t.Errorf("conversation %v lacks a bootstrap, a call on its promise or a call on the import", seen)
	}
}

// TestDecodeRefusedIsFinal: after a refused message the codec calls
// OnRefused once and every later Decode fails, even for an honest frame.
func TestDecodeRefusedIsFinal(t *testing.T) {
	var frames []byte
	for _, fill := range []func(rpccp.Message) error{
		bootstrapMsg(0),
		callMsg(1, 5, nil, nil), // refused
		bootstrapMsg(2),
	} {
		b, err := wireMsg(t, fill).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, b...)
	}
	calls := 0
	c := newStreamCodec(byteStream{bytes.NewReader(frames)}, MessageLimits{
		ClientShapesOnly: true,
		OnRefused:        func(error) { calls++ },
	})
	if _, err := c.Decode(); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	for range 2 {
		if _, err := c.Decode(); !errors.Is(err, ErrNotAllowed) {
			t.Fatalf("Decode = %v, want ErrNotAllowed", err)
		}
	}
	if calls != 1 {
		t.Errorf("OnRefused called %d times, want 1", calls)
	}
}

// FuzzAllowList feeds arbitrary frames through a codec with
// ClientShapesOnly: it never panics, it refuses with ErrNotAllowed or
// lets a message through, and a message it lets through that targets a
// promised answer names an open bootstrap question with no transform.
func FuzzAllowList(f *testing.F) {
	for _, seq := range [][]func(rpccp.Message) error{
		{bootstrapMsg(0), callMsg(1, 0, nil, nil), finishMsg(0), callMsg(2, -1, nil, nil)},
		{bootstrapMsg(0), callMsg(1, -1, nil, nil), callMsg(2, 1, nil, nil)},
		{bootstrapMsg(0), callMsg(1, 0, []uint16{0, 1}, nil)},
		{func(m rpccp.Message) error { _, err := m.NewDisembargo(); return err }},
	} {
		var b []byte
		for _, fill := range seq {
			fb, err := wireMsg(f, fill).Marshal()
			if err != nil {
				f.Fatal(err)
			}
			b = append(b, fb...)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c := newStreamCodec(byteStream{bytes.NewReader(in)}, MessageLimits{ClientShapesOnly: true, MaxMessageSize: 1 << 16})
		open := map[uint32]bool{}
		for range 64 {
			m, err := c.Decode()
			if err != nil {
				return
			}
			root, err := rpccp.ReadRootMessage(m)
			if err != nil {
				t.Fatalf("allowed message unreadable: %v", err)
			}
			switch root.Which() {
			case rpccp.Message_Which_bootstrap:
				b, _ := root.Bootstrap()
				open[b.QuestionId()] = true
			case rpccp.Message_Which_finish:
				fin, _ := root.Finish()
				delete(open, fin.QuestionId())
			case rpccp.Message_Which_call:
				call, _ := root.Call()
				tgt, err := call.Target()
				if err != nil {
					t.Fatalf("allowed call with unreadable target: %v", err)
				}
				if tgt.Which() == rpccp.MessageTarget_Which_promisedAnswer {
					pa, _ := tgt.PromisedAnswer()
					ops, _ := pa.Transform()
					if !open[pa.QuestionId()] || ops.Len() != 0 {
						t.Fatalf("allowed call on promised answer %d (open bootstraps %v, %d ops)", pa.QuestionId(), open, ops.Len())
					}
				}
			case rpccp.Message_Which_release, rpccp.Message_Which_abort:
			default:
				t.Fatalf("allowed message type %v", root.Which())
			}
		}
	})
}
