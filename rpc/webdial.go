package rpc

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	capnprpc "capnproto.org/go/capnp/v3/rpc"
	"github.com/coder/websocket"
	"github.com/quic-go/quic-go"
)

// WebCloseBase is added to a QUIC application error code (CodeClosed
// and so on) to make the WebSocket close status (RFC 6455, Section
// 7.4.2: 4000-4999 are for applications) a node closes a web
// connection with.
const WebCloseBase = 4000

// IsWebAddress reports whether addr names a node's WebSocket endpoint
// (ws:// or wss://) rather than its QUIC address.
func IsWebAddress(addr string) bool {
	return strings.HasPrefix(addr, "wss://") || strings.HasPrefix(addr, "ws://")
}

// IsLoopbackHost reports whether host (a name or an IP address, without
// port) is the local machine: "localhost" or a loopback address. Only
// there may the web endpoint run without TLS: browsers treat such an
// origin as secure, and nothing crosses a network.
func IsLoopbackHost(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// webTransport is a Client's web channel.
type webTransport struct {
	wc *WebChannel
}

func (t webTransport) channelBinding() ([]byte, error) { return t.wc.Binding(), nil }
func (t webTransport) binding() BindingType            { return BindingWeb }
func (t webTransport) context() context.Context        { return t.wc.Context() }
func (t webTransport) close()                          { t.wc.Close() }
func (t webTransport) explain(server string, err error) error {
	return explainWebErr(server, err)
}

// DialWeb connects to the node's WebSocket endpoint at rawURL
// (wss://host[:port]/rpc, or ws:// to a loopback host only), runs the
// web channel handshake, checks the node's key as opts say (the same
// pins as Dial, keyed by the URL) and opens the RPC stream.
//
// The WebSocket's own TLS is verified by the system roots or
// opts.WebTLS; in a browser, by the browser. It is not what
// authenticates the node: the node key's signature in the handshake is.
func DialWeb(ctx context.Context, rawURL string, opts DialOptions) (*Client, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return nil, fmt.Errorf("rpc: web address %q is not ws://HOST/PATH or wss://HOST/PATH", rawURL)
	}
	if u.Scheme == "ws" && !IsLoopbackHost(u.Hostname()) {
		return nil, fmt.Errorf("rpc: web address %q: plain ws:// only to the local machine; use wss://", rawURL)
	}
	if u.Path == "" {
		u.Path = WebPath
	}
	if opts.Fingerprint != "" {
		if opts.Fingerprint, err = ParseFingerprint(opts.Fingerprint); err != nil {
			return nil, err
		}
	}
	v, succ, err := newVerifier(rawURL, u.Hostname(), &opts)
	if err != nil {
		return nil, err
	}
	if opts.WebTLS == nil && opts.RootCAs != nil {
		// A node verified against a CA (--ca) likely has its web
		// certificate from the same CA.
		opts.WebTLS = &tls.Config{RootCAs: opts.RootCAs}
	}
	timeout := orDefault(opts.HandshakeTimeout, DefaultHandshakeTimeout)
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ws, err := dialWebSocket(dctx, u.String(), opts.WebTLS)
	if err != nil {
		if dctx.Err() != nil {
			return nil, fmt.Errorf("rpc: cannot reach %s: no answer within %v", rawURL, timeout)
		}
		return nil, fmt.Errorf("rpc: cannot reach %s: %v", rawURL, err)
	}
	if ws.Subprotocol() != WebSubprotocol {
		ws.Close(websocket.StatusProtocolError, "subprotocol")
		return nil, fmt.Errorf("rpc: %s is not a qpchat node or speaks another protocol version (no subprotocol %q)", rawURL, WebSubprotocol)
	}
	// The net.Conn lives as long as the connection, not the dial.
	nc := websocket.NetConn(context.WithoutCancel(ctx), ws, websocket.MessageBinary)
	wc, err := webClientHandshake(nc, rand.Reader, timeout, func(chain []*x509.Certificate) error {
		return v.verify(tls.ConnectionState{PeerCertificates: chain})
	})
	if err != nil {
		nc.Close()
		if v.refusal != nil {
			return nil, v.refusal
		}
		return nil, explainWebErr(rawURL, err)
	}
	if err := v.record(succ); err != nil {
		wc.Close()
		return nil, err
	}
	rc := capnprpc.NewConn(NewWebTransport(wc, opts.Limits), nil)
	return newClient(ctx, rc, webTransport{wc}, v.got), nil
}

// explainWebErr turns the end of a web connection into words: a node's
// close status carries the same codes as QUIC's CONNECTION_CLOSE.
func explainWebErr(server string, err error) error {
	if st := websocket.CloseStatus(err); st >= WebCloseBase && st < WebCloseBase+1000 {
		var ce websocket.CloseError
		reason := ""
		if errors.As(err, &ce) {
			reason = ce.Reason
		}
		return explainConnErr(server, &quic.ApplicationError{Remote: true, ErrorCode: quic.ApplicationErrorCode(st - WebCloseBase), ErrorMessage: reason})
	}
	if errors.Is(err, ErrWebHandshake) {
		return fmt.Errorf("rpc: %s: %w", server, err)
	}
	return explainConnErr(server, err)
}

// NewWebTransport returns a Cap'n Proto RPC transport on a web channel
// that enforces lim, exactly as NewStreamTransport does on QUIC.
func NewWebTransport(wc *WebChannel, lim MessageLimits) capnprpc.Transport {
	if wc.BodyTimeout == 0 {
		wc.BodyTimeout = orDefault(lim.FrameTimeout, DefaultFrameTimeout)
	}
	return newSingleSegmentTransport(newStreamCodec(webStream{wc}, lim))
}

// webStream gives a WebChannel the stream interface of the codec; the
// channel has one stream, so cancelling either direction ends it.
type webStream struct{ *WebChannel }

func (s webStream) CancelRead(quic.StreamErrorCode)  { s.WebChannel.Close() }
func (s webStream) CancelWrite(quic.StreamErrorCode) { s.WebChannel.Close() }

var _ stream = webStream{}

// webHTTPClient is the HTTP client of a native WebSocket dial with the
// given TLS configuration (nil: Go's defaults, the system roots).
func webHTTPClient(tlsConf *tls.Config) *http.Client {
	if tlsConf == nil {
		return nil
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsConf
	return &http.Client{Transport: tr}
}
