package rpc

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	capnprpc "capnproto.org/go/capnp/v3/rpc"
	"github.com/quic-go/quic-go"
)

// PinStore remembers the fingerprint a client trusts for each server
// address. The client's encrypted state store implements it later; until
// then FilePinStore does.
type PinStore interface {
	// Pin returns the pinned fingerprint of server, or ok == false.
	Pin(server string) (fingerprint string, ok bool, err error)
	// SetPin records fingerprint as the trusted key of server.
	SetPin(server, fingerprint string) error
}

// DialOptions say how a client decides to trust the server. In order:
//
//  1. Fingerprint set: the server's key must have it; the pin in Pins is
//     replaced by it (this is the only way to re-pin).
//  2. RootCAs set: the certificate chain must verify against it for the
//     host in the address; nothing is pinned.
//  3. A pin in Pins: the server's key must match it.
//  4. The chain verifies against the system roots: trusted, not pinned.
//  5. Otherwise trust on first use: the key is pinned in Pins and
//     OnFirstUse, if set, is told.
type DialOptions struct {
	Fingerprint string         // explicit pin (canonical form, see ParseFingerprint)
	RootCAs     *x509.CertPool // trust a CA-issued certificate instead of pinning
	Pins        PinStore       // may be nil: then nothing is remembered
	OnFirstUse  func(server, fingerprint string)
	// OnSuccession, if set, is told when a pinned key was replaced by
	// its committed successor (succession.go); it is told once, when the
	// pin moves.
	OnSuccession func(server, old, new string)

	// Zero values mean the package defaults.
	HandshakeTimeout time.Duration
	IdleTimeout      time.Duration
	KeepAlive        time.Duration
	Limits           MessageLimits
	// WebTLS, if set, verifies the TLS of a wss:// address (DialWeb);
	// nil means the system roots. It is not the node's authentication:
	// the pin or RootCAs above is.
	WebTLS *tls.Config

	// systemRoots replaces the system pool in tests; nil means the system's.
	systemRoots *x509.CertPool
}

// PinMismatchError is returned by Dial when the server's key differs from
// the pinned one. The client must refuse to talk to such a server.
type PinMismatchError struct {
	Server   string
	Pinned   string
	Got      string
	Explicit bool // the pin came from DialOptions.Fingerprint
}

func (e *PinMismatchError) Error() string {
	if e.Explicit {
		return fmt.Sprintf("rpc: server %s presented key %s, not the expected %s: refusing to connect", e.Server, e.Got, e.Pinned)
	}
	return fmt.Sprintf("rpc: server %s presented key %s, but %s is pinned for it: refusing to connect (possible impersonation; if the server's key really changed, confirm the new one out of band and pass it with --server-fingerprint)", e.Server, e.Got, e.Pinned)
}

// Client is an open connection to a node.
type Client struct {
	// Node is the node's bootstrap capability. Calls on it fail once the
	// connection is closed.
	Node NodeService
	// Fingerprint is the fingerprint of the server's key.
	Fingerprint string

	tr clientTransport
	rc *capnprpc.Conn
}

// clientTransport is what a Client runs on: QUIC (quicTransport) or the
// web channel over a WebSocket (webTransport).
type clientTransport interface {
	// channelBinding is the value authentications are bound to.
	channelBinding() ([]byte, error)
	// binding names the kind of channelBinding.
	binding() BindingType
	// context is done when the connection ends, with its cause.
	context() context.Context
	// close ends the connection.
	close()
	// explain turns the connection's end into words.
	explain(server string, err error) error
}

// BindingType names the kind of channel binding a connection has, so
// that an authentication is only ever checked against its own kind.
type BindingType uint8

// Binding types.
const (
	// BindingTLSExporter: the TLS exporter of a QUIC connection
	// (RFC 9266, ExporterLabel).
	BindingTLSExporter BindingType = 1
	// BindingWeb: the binding value of the web channel (webchannel.go).
	BindingWeb BindingType = 2
)

func (b BindingType) String() string {
	switch b {
	case BindingTLSExporter:
		return "tls-exporter"
	case BindingWeb:
		return "qpchat-web"
	}
	return fmt.Sprintf("binding(%d)", uint8(b))
}

// ChannelBinding returns the connection's channel binding: the TLS
// exporter on QUIC (see the package function of the same name), the
// web channel's binding value on a WebSocket.
func (c *Client) ChannelBinding() ([]byte, error) { return c.tr.channelBinding() }

// BindingType says which kind ChannelBinding returns.
func (c *Client) BindingType() BindingType { return c.tr.binding() }

// Done is closed when the connection ends.
func (c *Client) Done() <-chan struct{} { return c.tr.context().Done() }

// Close releases the bootstrap capability and closes the connection.
func (c *Client) Close() error {
	c.Node.Release()
	err := c.rc.Close()
	c.tr.close()
	return err
}

// quicTransport is a Client's QUIC connection.
type quicTransport struct{ qc *quic.Conn }

func (t quicTransport) channelBinding() ([]byte, error) { return ChannelBinding(t.qc) }
func (t quicTransport) binding() BindingType            { return BindingTLSExporter }
func (t quicTransport) context() context.Context        { return t.qc.Context() }
func (t quicTransport) close()                          { t.qc.CloseWithError(CodeClosed, "bye") }
func (t quicTransport) explain(server string, err error) error {
	return explainConnErr(server, err)
}

// Dial connects to the node at addr (host:port), checks its key as opts
// say and opens the RPC stream. Its errors say in plain words what went
// wrong: no answer, not a qpchat node, or an untrusted key
// (*PinMismatchError).
//
// An address of the form ws://HOST[:PORT]/PATH or wss://... dials the
// node's WebSocket endpoint instead (DialWeb).
func Dial(ctx context.Context, addr string, opts DialOptions) (*Client, error) {
	if IsWebAddress(addr) {
		return DialWeb(ctx, addr, opts)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("rpc: server address %q: %w", addr, err)
	}
	if opts.Fingerprint != "" {
		if opts.Fingerprint, err = ParseFingerprint(opts.Fingerprint); err != nil {
			return nil, err
		}
	}
	v, succ, err := newVerifier(addr, host, &opts)
	if err != nil {
		return nil, err
	}
	tlsConf := &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: []string{ALPN},
		ServerName: host,
		// Verification is done by v.verify (pin or CA), never skipped.
		InsecureSkipVerify: true,
		VerifyConnection:   v.verify,
	}
	if net.ParseIP(host) != nil {
		tlsConf.ServerName = ""
	}
	quicConf := &quic.Config{
		HandshakeIdleTimeout:  orDefault(opts.HandshakeTimeout, DefaultHandshakeTimeout),
		MaxIdleTimeout:        orDefault(opts.IdleTimeout, DefaultIdleTimeout),
		KeepAlivePeriod:       orDefault(opts.KeepAlive, DefaultKeepAlive),
		MaxIncomingStreams:    -1,
		MaxIncomingUniStreams: -1,
	}

	qc, err := quic.DialAddr(ctx, addr, tlsConf, quicConf)
	if err != nil {
		return nil, v.explain(err, quicConf.HandshakeIdleTimeout)
	}
	if err := v.record(succ); err != nil {
		qc.CloseWithError(CodeClosed, "bye")
		return nil, err
	}

	st, err := qc.OpenStreamSync(ctx)
	if err != nil {
		qc.CloseWithError(CodeClosed, "bye")
		return nil, explainConnErr(addr, err)
	}
	rc := capnprpc.NewConn(NewStreamTransport(st, opts.Limits), nil)
	return newClient(ctx, rc, quicTransport{qc}, v.got), nil
}

func newClient(ctx context.Context, rc *capnprpc.Conn, tr clientTransport, fingerprint string) *Client {
	// The bootstrap request is sent in the background; it must outlive
	// the dial's context, which callers often cancel once Dial returns.
	return &Client{
		Node:        NodeService(rc.Bootstrap(context.WithoutCancel(ctx))),
		Fingerprint: fingerprint,
		tr:          tr,
		rc:          rc,
	}
}

// newVerifier reads the pins for server and makes the verifier of opts.
func newVerifier(server, host string, opts *DialOptions) (*verifier, SuccessorStore, error) {
	var pinned, pinnedNext string
	succ, _ := opts.Pins.(SuccessorStore)
	if opts.Fingerprint == "" && opts.RootCAs == nil && opts.Pins != nil {
		p, ok, err := opts.Pins.Pin(server)
		if err != nil {
			return nil, nil, err
		}
		if ok {
			pinned = p
			if succ != nil {
				if pinnedNext, err = succ.Successor(server); err != nil {
					return nil, nil, err
				}
			}
		}
	}
	return &verifier{server: server, host: host, opts: opts, pinned: pinned, pinnedNext: pinnedNext}, succ, nil
}

// record stores what a successful verification decided: a key trusted on
// first use, an explicit re-pin, a succession.
func (v *verifier) record(succ SuccessorStore) error {
	opts := v.opts
	if v.firstUse && opts.Pins != nil {
		if err := opts.Pins.SetPin(v.server, v.got); err != nil {
			return err
		}
		if opts.OnFirstUse != nil {
			opts.OnFirstUse(v.server, v.got)
		}
	}
	if opts.Fingerprint != "" && opts.Pins != nil {
		if err := opts.Pins.SetPin(v.server, opts.Fingerprint); err != nil {
			return err
		}
	}
	return v.recordSuccession(succ)
}

// ExplainError turns an error of a call on a Client into words a user
// understands when the cause is the connection; others pass through.
func (c *Client) ExplainError(server string, err error) error {
	ctx := c.tr.context()
	select {
	case <-ctx.Done():
		return c.tr.explain(server, context.Cause(ctx))
	default:
		return err
	}
}

// verifier makes the trust decision of DialOptions during the handshake
// and remembers why it refused, so Dial can say so.
type verifier struct {
	server, host string
	opts         *DialOptions
	pinned       string
	pinnedNext   string // the successor committed with the pin

	leafNext  string // the successor the server's certificate commits to
	succeeded bool   // the key is the pinned one's committed successor

	got      string // fingerprint the server presented
	firstUse bool   // the key was accepted on first use
	refusal  error  // why the key was refused
}

func (v *verifier) verify(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		v.refusal = fmt.Errorf("rpc: server %s sent no certificate", v.server)
		return v.refusal
	}
	leaf := cs.PeerCertificates[0]
	v.got = Fingerprint(leaf)
	next, err := Successor(leaf)
	if err != nil {
		v.refusal = fmt.Errorf("rpc: server %s: %w", v.server, err)
		return v.refusal
	}
	v.leafNext = next
	switch {
	case v.opts.Fingerprint != "":
		if !sameFingerprint(v.got, v.opts.Fingerprint) {
			v.refusal = &PinMismatchError{Server: v.server, Pinned: v.opts.Fingerprint, Got: v.got, Explicit: true}
		}
	case v.opts.RootCAs != nil:
		if err := v.verifyChain(cs, v.opts.RootCAs); err != nil {
			v.refusal = fmt.Errorf("rpc: certificate of server %s is not trusted by the given CA: %w", v.server, err)
		}
	case v.pinned != "":
		if sameFingerprint(v.got, v.pinned) {
			break
		}
		if _, err := followSuccession(cs.PeerCertificates, v.pinnedNext); err == nil {
			v.succeeded = true
			break
		}
		v.refusal = &PinMismatchError{Server: v.server, Pinned: v.pinned, Got: v.got}
	default:
		if v.verifyChain(cs, v.opts.systemRoots) != nil {
			v.firstUse = true
		}
	}
	return v.refusal
}

func (v *verifier) verifyChain(cs tls.ConnectionState, roots *x509.CertPool) error {
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
		DNSName:       v.host,
		Roots:         roots,
		Intermediates: inter,
	})
	return err
}

// sameFingerprint compares in constant time; fingerprints are public, but
// it costs nothing.
func sameFingerprint(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// explain turns a failed handshake into the reason a user can act on.
func (v *verifier) explain(err error, handshakeTimeout time.Duration) error {
	if v.refusal != nil {
		return v.refusal
	}
	var te *quic.TransportError
	if errors.As(err, &te) && te.Remote && te.ErrorCode == quic.TransportErrorCode(0x100+120) {
		// TLS alert no_application_protocol (RFC 8446 Section 6, 120; RFC 9001 Section 4.8).
		return fmt.Errorf("rpc: %s is not a qpchat node or speaks another protocol version (it refused ALPN %q)", v.server, ALPN)
	}
	var (
		he *quic.HandshakeTimeoutError
		ie *quic.IdleTimeoutError
	)
	if errors.As(err, &he) || errors.As(err, &ie) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("rpc: cannot reach %s: no answer within %v (is the node running and its UDP port open?)", v.server, handshakeTimeout)
	}
	return explainConnErr(v.server, err)
}

func explainConnErr(server string, err error) error {
	var ae *quic.ApplicationError
	if errors.As(err, &ae) && ae.Remote {
		switch ae.ErrorCode {
		case CodeShuttingDown:
			return fmt.Errorf("rpc: server %s is shutting down", server)
		case CodeBusy:
			return fmt.Errorf("rpc: server %s is busy (too many connections), try again later", server)
		case CodeTimeout:
			return fmt.Errorf("rpc: server %s closed the connection: %s", server, ae.ErrorMessage)
		}
	}
	var ie *quic.IdleTimeoutError
	if errors.As(err, &ie) {
		return fmt.Errorf("rpc: connection to %s timed out (no answer)", server)
	}
	var ne *net.OpError
	if errors.As(err, &ne) {
		return fmt.Errorf("rpc: cannot reach %s: %v", server, ne.Err)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") {
		msg = strings.ReplaceAll(msg, "\n", " ")
	}
	return fmt.Errorf("rpc: connection to %s failed: %s", server, msg)
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// recordSuccession updates the pins after a successful handshake: a key
// reached by succession replaces the pin (with its own commitment) and
// OnSuccession is told; a newly pinned key stores its commitment; a key
// pinned before keeps the first commitment stored for it (a stolen
// current key cannot redirect the succession).
func (v *verifier) recordSuccession(succ SuccessorStore) error {
	if v.opts.Pins == nil || v.opts.RootCAs != nil {
		return nil
	}
	switch {
	case v.succeeded:
		if err := v.opts.Pins.SetPin(v.server, v.got); err != nil {
			return err
		}
		if succ != nil {
			if err := succ.SetSuccessor(v.server, v.leafNext); err != nil {
				return err
			}
		}
		if v.opts.OnSuccession != nil {
			v.opts.OnSuccession(v.server, v.pinned, v.got)
		}
	case succ == nil:
	case v.firstUse || v.opts.Fingerprint != "":
		return succ.SetSuccessor(v.server, v.leafNext)
	case v.pinnedNext == "" && v.leafNext != "":
		return succ.SetSuccessor(v.server, v.leafNext)
	}
	return nil
}
