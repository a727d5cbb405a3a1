package server

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"qpchat/rpc"
)

// rawDial opens a QUIC connection to s without the RPC layer, offering
// alpn. It trusts any certificate: these peers attack the node, not the
// other way round.
func rawDial(t *testing.T, s *testServer, alpn string) (*quic.Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	qc, err := quic.DialAddr(ctx, s.Addr().String(), &tls.Config{
		InsecureSkipVerify: true,
		MinVersion:         tls.VersionTLS13,
		NextProtos:         []string{alpn},
	}, &quic.Config{KeepAlivePeriod: 100 * time.Millisecond})
	if err == nil {
		t.Cleanup(func() { qc.CloseWithError(0, "") })
	}
	return qc, err
}

// rawStream opens a connection and writes b on its first stream.
func rawStream(t *testing.T, s *testServer, b []byte) *quic.Conn {
	t.Helper()
	qc, err := rawDial(t, s, rpc.ALPN)
	if err != nil {
		t.Fatal(err)
	}
	st, err := qc.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write(b); err != nil {
		t.Fatal(err)
	}
	return qc
}

// closedWith waits until the node closes qc and returns its error code.
func closedWith(t *testing.T, name string, qc *quic.Conn) quic.ApplicationErrorCode {
	t.Helper()
	select {
	case <-qc.Context().Done():
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: the node did not close the connection", name)
	}
	var ae *quic.ApplicationError
	if err := context.Cause(qc.Context()); !errors.As(err, &ae) || !ae.Remote {
		t.Fatalf("%s: connection ended with %v, want a close by the node", name, err)
	}
	return ae.ErrorCode
}

func TestBadPeers(t *testing.T) {
	cfg := testConfig(t)
	cfg.StreamTimeout = time.Second
	cfg.FrameTimeout = time.Second
	cfg.MaxMessageSize = 64 << 10
	s := startServer(t, cfg)
	good := dial(t, s)
	if _, err := ping(good, 1); err != nil {
		t.Fatal(err)
	}

	// Wrong ALPN: refused in the handshake (TLS alert 120,
	// no_application_protocol, as QUIC error 0x100+120).
	_, err := rawDial(t, s, "other/1")
	var te *quic.TransportError
	if !errors.As(err, &te) || te.ErrorCode != quic.TransportErrorCode(0x100+120) {
		t.Errorf("wrong ALPN: dial error %v, want CRYPTO_ERROR 0x178", err)
	}

	// A handshake and then silence: no stream is ever opened.
	silent, err := rawDial(t, s, rpc.ALPN)
	if err != nil {
		t.Fatal(err)
	}

	// Garbage: a frame header claiming 2^32 segments.
	garbage := rawStream(t, s, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3})

	// An oversized frame: one segment of 1 Mi words.
	oversized := rawStream(t, s, []byte{0, 0, 0, 0, 0, 0, 0x10, 0})

	// Half a frame, then a stall: one segment of 16 words, 8 bytes sent.
	half := make([]byte, 8+8)
	binary.LittleEndian.PutUint32(half[4:], 16)
	stalled := rawStream(t, s, half)

	// The node keeps serving while they are open: on the old
	// connection and on a new one.
	for i := range uint64(5) {
		if _, err := ping(good, 10+i); err != nil {
			t.Fatalf("ping while bad peers are connected: %v", err)
		}
	}
	if _, err := ping(dial(t, s), 20); err != nil {
		t.Fatalf("ping on a new connection while bad peers are connected: %v", err)
	}

	for _, tc := range []struct {
		name string
		qc   *quic.Conn
		want quic.ApplicationErrorCode
	}{
		{"no stream", silent, rpc.CodeTimeout},
		{"garbage", garbage, rpc.CodeProtocol},
		{"oversized frame", oversized, rpc.CodeProtocol},
		{"half a frame", stalled, rpc.CodeProtocol},
	} {
		if got := closedWith(t, tc.name, tc.qc); got != tc.want {
			t.Errorf("%s: closed with code %d, want %d", tc.name, got, tc.want)
		}
	}

	if _, err := ping(good, 30); err != nil {
		t.Fatalf("ping after the bad peers were dropped: %v", err)
	}

	// The dropped connections' goroutines end and are forgotten.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		s.mu.Lock()
		open := len(s.conns)
		s.mu.Unlock()
		if open <= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node still tracks %d connections, want the 2 good ones", open)
		}
	}
}
