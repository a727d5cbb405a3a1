package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	capnprpc "capnproto.org/go/capnp/v3/rpc"
	"capnproto.org/go/capnp/v3/rpc/transport"
	"github.com/quic-go/quic-go"

	"qpchat/mls"
	"qpchat/node/bench"
	"qpchat/rpc"
)

// switchDeaf reads answers like the real transport until deaf is set,
// then never again: a client that authenticates and then stops reading.
type switchDeaf struct {
	capnprpc.Transport
	deaf      atomic.Bool
	noFinish  atomic.Bool // reads answers but withholds every Finish
	gone      <-chan struct{}
	closed    chan struct{}
	closeOnce sync.Once
}

func (d *switchDeaf) RecvMessage() (transport.IncomingMessage, error) {
	if !d.deaf.Load() {
		return d.Transport.RecvMessage()
	}
	select {
	case <-d.closed:
	case <-d.gone:
	}
	return nil, io.EOF
}

func (d *switchDeaf) NewMessage() (transport.OutgoingMessage, error) {
	m, err := d.Transport.NewMessage()
	if err == nil && d.noFinish.Load() {
		return dropFinish{m}, nil
	}
	return m, err
}

func (d *switchDeaf) Close() error {
	d.closeOnce.Do(func() { close(d.closed) })
	return d.Transport.Close()
}

// deafClient is a connection from a given local address whose device
// session is authenticated before it turns deaf.
type deafClient struct {
	qc  *quic.Conn
	tr  *switchDeaf
	rc  *capnprpc.Conn
	dev *bench.Device
}

// dialDeaf connects from localIP with small QUIC receive windows (the
// node's answers fill them at once) and opens a session of device d.
func dialDeaf(t *testing.T, n *node, localIP string, u *user, d *bench.Device) *deafClient {
	t.Helper()
	ctx := testCtx(t)
	uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(localIP)})
	if err != nil {
		t.Fatal(err)
	}
	qtr := &quic.Transport{Conn: uc}
	t.Cleanup(func() { qtr.Close(); uc.Close() })
	raddr, err := net.ResolveUDPAddr("udp", n.srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	qc, err := qtr.Dial(ctx, raddr, &tls.Config{
		InsecureSkipVerify: true,
		MinVersion:         tls.VersionTLS13,
		NextProtos:         []string{rpc.ALPN},
	}, &quic.Config{
		KeepAlivePeriod:                time.Second,
		InitialStreamReceiveWindow:     8 << 10,
		MaxStreamReceiveWindow:         8 << 10,
		InitialConnectionReceiveWindow: 16 << 10,
		MaxConnectionReceiveWindow:     16 << 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { qc.CloseWithError(0, "") })
	st, err := qc.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	dt := &switchDeaf{Transport: rpc.NewStreamTransport(st, rpc.MessageLimits{MaxMessageSize: 4 << 20}), gone: qc.Context().Done(), closed: make(chan struct{})}
	rc := capnprpc.NewConn(dt, nil)
	t.Cleanup(func() { rc.Close() })
	exp, err := rpc.ChannelBinding(qc)
	if err != nil {
		t.Fatal(err)
	}
	bc := &bench.Conn{Client: &rpc.Client{Node: rpc.NodeService(rc.Bootstrap(ctx))}, Exporter: exp, SPKIHash: n.srv.spkiHash}
	dev, err := bc.AuthenticateDevice(ctx, u.name, d.Key, exp)
	if err != nil {
		t.Fatalf("device session from %s: %v", localIP, err)
	}
	return &deafClient{qc: qc, tr: dt, rc: rc, dev: &bench.Device{S: dev.S, Key: d.Key, User: u.name}}
}

// heapAlloc returns the live Go heap after garbage collection (twice:
// pools keep a victim generation for one cycle).
func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// Deaf readers at the limits: connections from two addresses pipeline
// fetch calls (answers of about 200 KiB) and pings, and never read the
// answers. The node pauses reading them once their calls in progress
// fill the connection and address budgets, so its heap grows by less
// than the documented bound (docs/PROTOCOL.md, Memory bounds: twice
// MaxTotalBuffer plus one QUIC receive window per connection), far below
// what the calls asked for, and an honest client from a third address is
// served meanwhile. Closing the deaf connections gives every byte back.
func TestDeafReadersBounded(t *testing.T) {
	const (
		frame       = 256 << 10 // Config.MaxMessageSize: the largest frame, and a call's answer reservation
		connBuffer  = 1 << 20
		addrBuffer  = 2 << 20
		totalBuffer = 6 << 20 // room for both attacking addresses and an honest client
		attackers   = 2       // addresses
		perAddr     = 8       // deaf connections per address
		callsEach   = 24      // fetches per deaf connection, each with a ping
		payload     = 48 << 10
		queued      = 16 // messages of payload bytes in the victim device's queue
		fetchLimit  = 4  // messages per fetch answer: about 200 KiB
	)
	w := newWorld(t, func(c *Config) {
		c.MaxMessageSize = frame
		c.Limits.MaxMessageSize = 64 << 10
		c.MaxConnBuffer, c.MaxAddrBuffer, c.MaxTotalBuffer = connBuffer, addrBuffer, totalBuffer
		// Long enough that no deaf connection is cut off while the
		// test measures (TestDeafClientClosed covers the cut).
		c.WriteTimeout = 10 * time.Minute
	})
	n, s := w.n, w.n.srv
	for i := 0; i < queued; i += 4 {
		var batch [][]byte
		for range 4 {
			batch = append(batch, bench.PrivateMessage(w.group, 1, mls.ContentTypeApplication, make([]byte, payload)))
		}
		_, err := w.a1.Send(testCtx(t), w.group, batch)
		must(t, "send", err)
	}
	// The honest client (from 127.0.0.1) is connected before the flood.
	honest := n.dial()

	var deaf []*deafClient
	for a := range attackers {
		ip := net.IPv4(127, 0, 0, byte(2+a)).String()
		for range perAddr {
			deaf = append(deaf, dialDeaf(t, n, ip, w.bob, w.b1))
		}
	}
	before := heapAlloc()

	ctx := testCtx(t)
	for _, d := range deaf {
		d.tr.deaf.Store(true)
	}
	var sent atomic.Int64
	for _, d := range deaf {
		for range callsEach {
			_, rel := d.dev.S.Fetch(ctx, func(p rpc.Session_fetch_Params) error {
				p.SetAfter(0)
				p.SetLimit(fetchLimit)
				return nil
			})
			t.Cleanup(rel)
			node := rpc.NodeService(d.rc.Bootstrap(ctx))
			_, prel := node.Ping(ctx, func(p rpc.NodeService_ping_Params) error { p.SetNonce(1); return nil })
			t.Cleanup(prel)
			t.Cleanup(node.Release)
			sent.Add(2)
		}
	}

	// At the limits: every deaf connection's reading is paused.
	deadline := time.Now().Add(60 * time.Second)
	for s.pendingTotal.Waiting() < len(deaf) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d deaf connections paused; pending %d bytes", s.pendingTotal.Waiting(), len(deaf), s.pendingTotal.Used())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if used := s.pendingTotal.Used(); used > totalBuffer {
		t.Errorf("calls in progress hold %d bytes, over MaxTotalBuffer %d", used, totalBuffer)
	}
	s.addrBudgets.mu.Lock()
	for key, a := range s.addrBudgets.m {
		if used := a.pending.Used(); used > addrBuffer {
			t.Errorf("address %s holds %d bytes of calls in progress, over MaxAddrBuffer %d", key, used, addrBuffer)
		}
	}
	s.addrBudgets.mu.Unlock()

	// The honest client is served while the deaf ones wait.
	if _, err := pingConn(honest); err != nil {
		t.Fatalf("honest ping during the flood: %v", err)
	}
	msgs, _, err := w.a2.Fetch(testCtx(t), 0, fetchLimit)
	if err != nil || len(msgs) == 0 {
		t.Fatalf("honest fetch during the flood: %d messages, %v", len(msgs), err)
	}

	after := heapAlloc()
	grew := int64(after) - int64(before)
	bound := int64(2*totalBuffer + (len(deaf)+1)*rpc.ServerReceiveWindow)
	asked := int64(len(deaf)*callsEach) * int64(fetchLimit*payload)
	t.Logf("%d deaf connections from %d addresses, %d calls sent (fetch answers asked for: %d MiB); heap grew %.1f MiB (before %.1f MiB, after %.1f MiB); pending %d KiB; bound %d MiB",
		len(deaf), attackers, sent.Load(), asked>>20, float64(grew)/(1<<20), float64(before)/(1<<20), float64(after)/(1<<20), s.pendingTotal.Used()>>10, bound>>20)
	if grew > bound {
		t.Errorf("the heap grew by %d bytes under deaf readers, over the documented bound %d", grew, bound)
	}

	// Closing the deaf connections returns every byte they held.
	for _, d := range deaf {
		d.qc.CloseWithError(0, "")
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		s.addrBudgets.mu.Lock()
		addrs := len(s.addrBudgets.m)
		s.addrBudgets.mu.Unlock()
		if s.pendingTotal.Used() == 0 && s.unfinishedTotal.Used() == 0 && addrs <= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the deaf connections closed: %d bytes pending, %d unfinished, %d addresses tracked",
				s.pendingTotal.Used(), s.unfinishedTotal.Used(), addrs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := pingConn(honest); err != nil {
		t.Fatalf("honest ping after the flood: %v", err)
	}
}

// Parked calls, fetchWaits with nothing to answer and login starts
// delayed by the rate limit, give their answer room back while they wait:
// many of them fit in a node budget that holds only a few answers, and a
// new client is still served. Without parking, they would fill it and
// pause every connection's reading until they ended.
func TestParkedCallsHoldNoAnswerRoom(t *testing.T) {
	const (
		frame   = 256 << 10
		budget  = 4 * frame // room for two frames with their answers
		waiters = 8
		logins  = 4
	)
	w := newWorld(t, func(c *Config) {
		c.MaxMessageSize = frame
		c.Limits.MaxMessageSize = 64 << 10
		c.MaxConnBuffer, c.MaxAddrBuffer, c.MaxTotalBuffer = budget, budget, budget
		c.Limits.LoginRateName = 1 // every login start for one name after the first is delayed
		c.Limits.MaxLoginDelay = time.Minute
	})
	n, s := w.n, w.n.srv
	last := drain(t, w.b1, 0)
	after := uint64(0)
	if len(last) > 0 {
		after = last[len(last)-1].Seq
	}

	ctx, cancel := context.WithCancel(testCtx(t))
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	for range waiters {
		c := n.dial()
		d, err := c.AuthenticateDevice(testCtx(t), w.bob.name, w.b1.Key, c.Exporter)
		must(t, "device session", err)
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.FetchWait(ctx, after, 0, time.Minute)
		}()
	}
	for i := range logins {
		c := n.dial()
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.LoginStart(ctx, n.cfg.OPAQUE, "nobody", []byte(fmt.Sprint(testPassword, i)))
		}()
	}

	// Every fetchWait and every delayed login start (all but the first)
	// is parked.
	want := int64(waiters + logins - 1)
	deadline := time.Now().Add(30 * time.Second)
	for s.parked.Load() < want {
		t.Logf("parked %d pending %d waiting %d", s.parked.Load(), s.pendingTotal.Used(), s.pendingTotal.Waiting())
		time.Sleep(time.Second)
		if time.Now().After(deadline) {
			t.Fatalf("%d calls parked, want %d; %d bytes pending", s.parked.Load(), want, s.pendingTotal.Used())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if used := s.pendingTotal.Used(); used >= frame {
		t.Errorf("%d parked calls hold %d bytes, want less than one answer reservation (%d)", want, used, frame)
	}
	if _, err := pingConn(n.dial()); err != nil {
		t.Fatalf("a new client's ping while %d calls are parked: %v", want, err)
	}

	// A parked fetchWait takes its room back when a message arrives and
	// answers.
	_, err := w.a1.Send(testCtx(t), w.group, [][]byte{bench.PrivateMessage(w.group, 1, mls.ContentTypeApplication, []byte("wake"))})
	must(t, "send", err)
	deadline = time.Now().Add(30 * time.Second)
	for s.parked.Load() > int64(logins-1) {
		if time.Now().After(deadline) {
			t.Fatalf("%d calls parked after a message arrived, want the %d login starts", s.parked.Load(), logins-1)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// When the answers left unfinished fill the node's budget, the
// connection holding the most of them is closed, not the one whose answer
// crossed the limit: a client from one address withholds its Finish
// messages until it holds just under the node's unfinished budget, and
// the honest client whose next answer crosses it goes on.
func TestUnfinishedCutsBiggestHolder(t *testing.T) {
	const (
		frame   = 256 << 10
		total   = 1 << 20
		payload = 54 << 10 // fetch answers of 4 messages: about 217 KiB, 4 fit in total and 5 do not
	)
	w := newWorld(t, func(c *Config) {
		c.MaxMessageSize = frame
		c.Limits.MaxMessageSize = 64 << 10
		c.MaxConnBuffer, c.MaxAddrBuffer, c.MaxTotalBuffer = 4<<20, 4<<20, total
	})
	s := w.n.srv
	lastSeq := func(d *bench.Device) uint64 {
		m := drain(t, d, 0)
		if len(m) == 0 {
			return 0
		}
		return m[len(m)-1].Seq
	}
	// Both devices fetch the same 4 big messages, after the group's setup.
	afterA, afterB := lastSeq(w.a2), lastSeq(w.b1)
	var batch [][]byte
	for range 4 {
		batch = append(batch, bench.PrivateMessage(w.group, 1, mls.ContentTypeApplication, make([]byte, payload)))
	}
	_, err := w.a1.Send(testCtx(t), w.group, batch)
	must(t, "send", err)

	bad := dialDeaf(t, w.n, "127.0.0.2", w.bob, w.b1)
	bad.tr.noFinish.Store(true)
	fetch := func() {
		t.Helper()
		msgs, _, err := bad.dev.Fetch(testCtx(t), afterB, 4)
		if err != nil || len(msgs) != 4 {
			t.Fatalf("unfinishing client's fetch: %d messages, %v", len(msgs), err)
		}
	}
	// Honest clients finish their calls 250 ms after the answer: wait
	// until only the bootstrap answers are left unfinished (a client
	// keeps its bootstrap capability), so the counts below are the
	// unfinishing client's fetches.
	deadline := time.Now().Add(30 * time.Second)
	for s.unfinishedTotal.Used() > 4<<10 {
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes still unfinished with no client holding answers", s.unfinishedTotal.Used())
		}
		time.Sleep(10 * time.Millisecond)
	}
	base := s.unfinishedTotal.Used()
	fetch()
	answer := s.unfinishedTotal.Used() - base // one fetch answer, left unfinished
	if answer < 3*payload {
		t.Fatalf("a fetch answer of 4 messages of %d bytes left %d bytes unfinished", payload, answer)
	}
	for s.unfinishedTotal.Used()+answer <= total {
		fetch()
	}
	if held := s.unfinishedTotal.Used(); held > total || bad.qc.Context().Err() != nil {
		t.Fatalf("the unfinishing client was cut off under the total (%d of %d bytes)", held, total)
	}

	// The honest client's answer takes the total past its limit.
	for i := range 3 {
		msgs, _, err := w.a2.Fetch(testCtx(t), afterA, 4)
		if err != nil || len(msgs) != 4 {
			t.Fatalf("honest fetch %d: %d messages, %v", i, len(msgs), err)
		}
	}
	if code := closedWith(t, "unfinishing client", bad.qc); code != rpc.CodeProtocol {
		t.Fatalf("unfinishing client closed with code %d, want rpc.CodeProtocol (%d)", code, rpc.CodeProtocol)
	}
	if _, _, err := w.a2.Fetch(testCtx(t), afterA, 4); err != nil {
		t.Fatalf("honest fetch after the cut: %v", err)
	}
}
