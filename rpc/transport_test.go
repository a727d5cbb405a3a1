package rpc

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	capnp "capnproto.org/go/capnp/v3"
	capnprpc "capnproto.org/go/capnp/v3/rpc"
	"github.com/quic-go/quic-go"
)

// echoNode is a minimal NodeService for testing the transport.
type echoNode struct{}

func (echoNode) Ping(ctx context.Context, call NodeService_ping) error {
	res, err := call.AllocResults()
	if err != nil {
		return err
	}
	res.SetNonce(call.Args().Nonce())
	return res.SetVersion("test")
}

// testNode is a node made of this package's pieces alone.
type testNode struct {
	addr      string
	bindings  chan []byte // each connection's channel binding, server side
	ctxCancel context.CancelFunc
}

func startTestNode(t *testing.T, cert tls.Certificate) *testNode {
	t.Helper()
	ln, err := Listen("127.0.0.1:0", cert, ServerQUICConfig(5*time.Second, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &testNode{addr: ln.Addr().String(), bindings: make(chan []byte, 16), ctxCancel: cancel}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			qc, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			go func() {
				if b, err := ChannelBinding(qc); err == nil {
					select {
					case n.bindings <- b:
					default:
					}
				}
				st, err := qc.AcceptStream(ctx)
				if err != nil {
					qc.CloseWithError(CodeTimeout, "no stream")
					return
				}
				rc := capnprpc.NewConn(NewStreamTransport(st, MessageLimits{}), &capnprpc.Options{
					BootstrapClient: capnp.Client(NodeService_ServerToClient(echoNode{})),
				})
				select {
				case <-rc.Done():
				case <-qc.Context().Done():
				case <-ctx.Done():
				}
				rc.Close()
				qc.CloseWithError(CodeClosed, "")
			}()
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		ln.Shutdown()
	})
	return n
}

func dialT(t *testing.T, addr string, opts DialOptions) (*Client, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, addr, opts)
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

func pingT(t *testing.T, c *Client, nonce uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fut, release := c.Node.Ping(ctx, func(p NodeService_ping_Params) error {
		p.SetNonce(nonce)
		return nil
	})
	defer release()
	res, err := fut.Struct()
	if err != nil {
		t.Fatalf("ping: %v", err)
	}
	if got := res.Nonce(); got != nonce {
		t.Errorf("ping nonce = %d, want %d", got, nonce)
	}
}

// memPins is an in-memory PinStore.
type memPins map[string]string

func (m memPins) Pin(s string) (string, bool, error) { fp, ok := m[s]; return fp, ok, nil }
func (m memPins) SetPin(s, fp string) error          { m[s] = fp; return nil }

func TestFingerprint(t *testing.T) {
	cert := issue(t, nil)
	spki, err := x509.MarshalPKIXPublicKey(cert.Leaf.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(spki)
	want := "sha256:" + hex.EncodeToString(sum[:])
	if got := Fingerprint(cert.Leaf); got != want {
		t.Errorf("Fingerprint = %s, want %s", got, want)
	}
	if got, err := ParseFingerprint(" " + strings.ToUpper(want) + "\n"); err != nil || got != want {
		t.Errorf("ParseFingerprint(upper case) = %q, %v; want %q", got, err, want)
	}
	for _, bad := range []string{"", "sha256:", want[7:], "sha1:" + want[7:], want[:len(want)-2], want + "00", want[:len(want)-1] + "g"} {
		if got, err := ParseFingerprint(bad); err == nil {
			t.Errorf("ParseFingerprint(%q) = %q, want an error", bad, got)
		}
	}
}

func TestDialTrustOnFirstUseThenPinned(t *testing.T) {
	cert := issue(t, nil)
	n := startTestNode(t, cert)
	pins := memPins{}
	var told []string
	opts := DialOptions{Pins: pins, OnFirstUse: func(s, fp string) { told = append(told, s+" "+fp) }}

	c, err := dialT(t, n.addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	pingT(t, c, 1)
	fp := Fingerprint(cert.Leaf)
	if c.Fingerprint != fp || pins[n.addr] != fp {
		t.Errorf("after first use: client fingerprint %s, pin %q; want %s", c.Fingerprint, pins[n.addr], fp)
	}
	if len(told) != 1 || told[0] != n.addr+" "+fp {
		t.Errorf("OnFirstUse calls = %q, want one for %s", told, n.addr)
	}

	c2, err := dialT(t, n.addr, opts)
	if err != nil {
		t.Fatalf("second dial with the pin: %v", err)
	}
	pingT(t, c2, 2)
	if len(told) != 1 {
		t.Errorf("OnFirstUse called again on a pinned server: %q", told)
	}
}

func TestDialRefusesChangedKey(t *testing.T) {
	cert := issue(t, nil)
	n := startTestNode(t, cert)
	other := Fingerprint(issue(t, nil).Leaf)
	pins := memPins{n.addr: other}

	_, err := dialT(t, n.addr, DialOptions{Pins: pins})
	var pm *PinMismatchError
	if !errors.As(err, &pm) {
		t.Fatalf("dial with a different pin: err = %v, want *PinMismatchError", err)
	}
	if pm.Pinned != other || pm.Got != Fingerprint(cert.Leaf) || pm.Explicit {
		t.Errorf("PinMismatchError = %+v", pm)
	}
	if !strings.Contains(err.Error(), "--server-fingerprint") {
		t.Errorf("error %q does not say how to re-pin", err)
	}
	if pins[n.addr] != other {
		t.Errorf("a refused dial changed the pin to %s", pins[n.addr])
	}
}

func TestDialExplicitFingerprint(t *testing.T) {
	cert := issue(t, nil)
	n := startTestNode(t, cert)
	fp := Fingerprint(cert.Leaf)
	old := Fingerprint(issue(t, nil).Leaf)
	pins := memPins{n.addr: old}

	// A wrong explicit fingerprint is refused and leaves the pin alone.
	_, err := dialT(t, n.addr, DialOptions{Pins: pins, Fingerprint: Fingerprint(issue(t, nil).Leaf)})
	var pm *PinMismatchError
	if !errors.As(err, &pm) || !pm.Explicit {
		t.Fatalf("dial with a wrong --server-fingerprint: err = %v, want an explicit *PinMismatchError", err)
	}
	if pins[n.addr] != old {
		t.Errorf("refused dial changed the pin")
	}

	// The right one connects and re-pins.
	c, err := dialT(t, n.addr, DialOptions{Pins: pins, Fingerprint: strings.ToUpper(fp)})
	if err != nil {
		t.Fatal(err)
	}
	pingT(t, c, 3)
	if pins[n.addr] != fp {
		t.Errorf("pin after explicit fingerprint = %s, want %s", pins[n.addr], fp)
	}

	if _, err := dialT(t, n.addr, DialOptions{Fingerprint: "sha256:beef"}); err == nil || !strings.Contains(err.Error(), "hex digits") {
		t.Errorf("malformed fingerprint: err = %v", err)
	}
}

func TestDialCA(t *testing.T) {
	ca := newTestCA(t)
	n := startTestNode(t, issue(t, ca))

	pins := memPins{}
	c, err := dialT(t, n.addr, DialOptions{RootCAs: ca.pool, Pins: pins})
	if err != nil {
		t.Fatalf("dial with the right CA: %v", err)
	}
	pingT(t, c, 4)
	if len(pins) != 0 {
		t.Errorf("CA-verified dial pinned %v", pins)
	}

	_, err = dialT(t, n.addr, DialOptions{RootCAs: newTestCA(t).pool, Pins: pins})
	if err == nil || !strings.Contains(err.Error(), "not trusted by the given CA") {
		t.Errorf("dial with another CA: err = %v, want a refusal", err)
	}

	// Without --ca and without a pin, a chain valid for the system roots
	// is trusted and not pinned.
	c, err = dialT(t, n.addr, DialOptions{Pins: pins, systemRoots: ca.pool})
	if err != nil {
		t.Fatalf("dial verified by the system roots: %v", err)
	}
	pingT(t, c, 5)
	if len(pins) != 0 {
		t.Errorf("system-root-verified dial pinned %v", pins)
	}
}

func TestDialWrongALPN(t *testing.T) {
	conf := ServerTLSConfig(issue(t, nil))
	conf.NextProtos = []string{"other/1"}
	ln, err := quic.ListenAddr("127.0.0.1:0", conf, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = dialT(t, ln.Addr().String(), DialOptions{})
	if err == nil || !strings.Contains(err.Error(), "not a qpchat node") {
		t.Errorf("dial to a server without %s: err = %v", ALPN, err)
	}
}

func TestDialUnreachable(t *testing.T) {
	// A UDP socket that never answers.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	_, err = dialT(t, pc.LocalAddr().String(), DialOptions{HandshakeTimeout: 300 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "cannot reach") {
		t.Errorf("dial to a silent address: err = %v, want cannot reach", err)
	}
	if _, err := dialT(t, "no-port", DialOptions{}); err == nil {
		t.Error("dial to an address without a port succeeded")
	}
}

func TestChannelBinding(t *testing.T) {
	n := startTestNode(t, issue(t, nil))
	c, err := dialT(t, n.addr, DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pingT(t, c, 6)
	mine, err := c.ChannelBinding()
	if err != nil {
		t.Fatal(err)
	}
	theirs := <-n.bindings
	if len(mine) != ExporterLength || string(mine) != string(theirs) {
		t.Errorf("channel binding: client %x, server %x; want the same %d bytes", mine, theirs, ExporterLength)
	}
	c2, err := dialT(t, n.addr, DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	other, _ := c2.ChannelBinding()
	if string(other) == string(mine) {
		t.Error("two connections have the same channel binding")
	}
}
