package server

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	capnp "capnproto.org/go/capnp/v3"
	capnprpc "capnproto.org/go/capnp/v3/rpc"
	"capnproto.org/go/capnp/v3/rpc/transport"
	rpccp "capnproto.org/go/capnp/v3/std/capnp/rpc"
	"github.com/quic-go/quic-go"

	"qpchat/rpc"
)

// deafTransport sends like the real transport but never reads the
// stream: the peer of a node that keeps calling and ignores the answers.
// It hears only the end of the QUIC connection.
type deafTransport struct {
	capnprpc.Transport
	gone      <-chan struct{} // the QUIC connection's end
	closed    chan struct{}
	closeOnce sync.Once
}

func (d *deafTransport) RecvMessage() (transport.IncomingMessage, error) {
	select {
	case <-d.closed:
	case <-d.gone:
	}
	return nil, io.EOF
}

func (d *deafTransport) Close() error {
	d.closeOnce.Do(func() { close(d.closed) })
	return d.Transport.Close()
}

// A client that sends calls and never reads their answers is cut off
// once the node's writes make no progress for Config.WriteTimeout, with
// rpc.CodeTimeout and a log line; the node serves other clients
// meanwhile and forgets the connection afterwards.
func TestDeafClientClosed(t *testing.T) {
	const writeTimeout = time.Second
	cfg := testConfig(t)
	lb := &logBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server log:\n%s", lb)
		}
	})
	cfg.WriteTimeout = writeTimeout
	s := startServer(t, cfg)
	good := dial(t, s)

	// Small receive windows so that the answers fill them quickly; the
	// deaf client never reads, so they never grow.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	qc, err := quic.DialAddr(ctx, s.Addr().String(), &tls.Config{
		InsecureSkipVerify: true,
		MinVersion:         tls.VersionTLS13,
		NextProtos:         []string{rpc.ALPN},
	}, &quic.Config{
		KeepAlivePeriod:                100 * time.Millisecond,
		InitialStreamReceiveWindow:     8 << 10,
		MaxStreamReceiveWindow:         8 << 10,
		InitialConnectionReceiveWindow: 16 << 10,
		MaxConnectionReceiveWindow:     16 << 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer qc.CloseWithError(0, "")
	st, err := qc.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	deaf := &deafTransport{Transport: rpc.NewStreamTransport(st, rpc.MessageLimits{}), gone: qc.Context().Done(), closed: make(chan struct{})}
	rc := capnprpc.NewConn(deaf, nil)
	defer rc.Close()
	node := rpc.NodeService(rc.Bootstrap(ctx))
	defer node.Release()

	// Far more answers than the windows hold (a ping answer is about
	// 100 bytes), sent without waiting: pipelined on the bootstrap.
	const calls = 2000
	var releases []capnp.ReleaseFunc
	defer func() {
		for _, r := range releases {
			r()
		}
	}()
	start := time.Now()
	for i := range calls {
		_, rel := node.Ping(ctx, func(p rpc.NodeService_ping_Params) error {
			p.SetNonce(uint64(i))
			return nil
		})
		releases = append(releases, rel)
	}

	// While the deaf connection stalls, another client is served.
	if _, err := ping(good, 7); err != nil {
		t.Fatalf("ping by another client during the stall: %v", err)
	}
	if code := closedWith(t, "deaf client", qc); code != rpc.CodeTimeout {
		t.Fatalf("deaf client closed with code %d, want rpc.CodeTimeout (%d)", code, rpc.CodeTimeout)
	}
	// The bound: the stall begins at once (the windows hold a small part
	// of the answers), so the close comes one WriteTimeout later; the
	// slack is for a loaded machine.
	if took := time.Since(start); took > 10*writeTimeout {
		t.Fatalf("deaf client closed after %v, write timeout %v", took, writeTimeout)
	}
	if !strings.Contains(lb.String(), "stopped reading its answers") {
		t.Fatal("no log line names the reason of the close")
	}

	// The node forgets the connection, and with it the unsent answers.
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		n := len(s.conns)
		s.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections tracked after the deaf one was closed, want 1", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("closed after %v", time.Since(start))
	if _, err := ping(good, 8); err != nil {
		t.Fatalf("ping after the deaf client was closed: %v", err)
	}
}

// unfinishingTransport reads answers but never sends Finish: the node
// must keep every answer.
type unfinishingTransport struct{ capnprpc.Transport }

func (u unfinishingTransport) NewMessage() (transport.OutgoingMessage, error) {
	m, err := u.Transport.NewMessage()
	return dropFinish{m}, err
}

type dropFinish struct{ transport.OutgoingMessage }

// Send fails for a Finish, so that the library keeps the question ID
// and the next call uses a new one, as a hostile peer would.
func (d dropFinish) Send() error {
	if d.Message().Which() == rpccp.Message_Which_finish {
		return errors.New("finish withheld")
	}
	return d.OutgoingMessage.Send()
}

// A client that reads its answers but never finishes its calls is cut
// off once the answers it leaves unfinished pass Config.MaxUnfinished.
func TestUnfinishingClientClosed(t *testing.T) {
	cfg := testConfig(t)
	lb := &logBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server log:\n%s", lb)
		}
	})
	// Far above what an honest client leaves unfinished: go-capnp sends
	// Finish 250 ms after the Return, so the good client below holds at
	// most the ping answers of 250 ms (some 100 bytes each).
	cfg.MaxUnfinished = 256 << 10
	s := startServer(t, cfg)
	good := dial(t, s)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	qc, err := quic.DialAddr(ctx, s.Addr().String(), &tls.Config{
		InsecureSkipVerify: true,
		MinVersion:         tls.VersionTLS13,
		NextProtos:         []string{rpc.ALPN},
	}, &quic.Config{KeepAlivePeriod: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer qc.CloseWithError(0, "")
	st, err := qc.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	rc := capnprpc.NewConn(unfinishingTransport{rpc.NewStreamTransport(st, rpc.MessageLimits{})}, nil)
	defer rc.Close()
	node := rpc.NodeService(rc.Bootstrap(ctx))
	defer node.Release()

	// One at a time, each answer read: only the missing Finish grows
	// what the node keeps (a ping answer is some 100 bytes).
	for i := range 20000 {
		f, rel := node.Ping(ctx, func(p rpc.NodeService_ping_Params) error {
			p.SetNonce(uint64(i))
			return nil
		})
		_, err := f.Struct()
		rel()
		if err != nil {
			break
		}
	}
	if code := closedWith(t, "unfinishing client", qc); code != rpc.CodeProtocol {
		t.Fatalf("unfinishing client closed with code %d, want rpc.CodeProtocol (%d)", code, rpc.CodeProtocol)
	}
	if !strings.Contains(lb.String(), "does not finish its calls") {
		t.Fatal("no log line names the reason of the close")
	}
	// Honest clients finish their calls and are never cut off.
	for i := range 1000 {
		if _, err := ping(good, uint64(i)); err != nil {
			t.Fatalf("ping %d by an honest client: %v", i, err)
		}
	}
}
