// Package rpc holds qpchat's wire protocol: the Go code generated from
// schemas/*.capnp (node.capnp.go, never edited by hand) and the glue that
// runs Cap'n Proto RPC over QUIC.
//
// A connection is QUIC (RFC 9000) with TLS 1.3 (RFC 9001) and the ALPN
// protocol [ALPN]. The client opens one bidirectional stream and speaks
// Cap'n Proto RPC on it; the server's bootstrap capability is
// NodeService. The server's certificate is checked by pinning the SHA-256
// of its SubjectPublicKeyInfo (see [Fingerprint]) or, for a CA-issued
// certificate, against a root pool; see [Dial].
package rpc

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	capnp "capnproto.org/go/capnp/v3"
	capnprpc "capnproto.org/go/capnp/v3/rpc"
	rpccp "capnproto.org/go/capnp/v3/std/capnp/rpc"
	"github.com/quic-go/quic-go"
)

// ALPN is the TLS application protocol both sides must offer. Bump the
// suffix on an incompatible wire change so old peers fail in the
// handshake with a clear error instead of mid-call.
const ALPN = "qpchat/1"

// ExporterLabel is the TLS exporter label of the channel binding
// (RFC 9266, Section 2), used with an empty context and 32 bytes.
const ExporterLabel = "EXPORTER-Channel-Binding"

// ExporterLength is the length in bytes of the channel binding.
const ExporterLength = 32

// QUIC application error codes that a side puts in CONNECTION_CLOSE.
const (
	CodeClosed       quic.ApplicationErrorCode = 0 // orderly close
	CodeProtocol     quic.ApplicationErrorCode = 1 // the peer broke the RPC protocol
	CodeTimeout      quic.ApplicationErrorCode = 2 // the peer was too slow (no stream, stalled frame)
	CodeBusy         quic.ApplicationErrorCode = 3 // the server has too many connections
	CodeShuttingDown quic.ApplicationErrorCode = 4 // the server is stopping
)

// Default transport timeouts. The client's keep-alive stays well below
// the idle timeout so that a quiet connection (a long poll) survives.
const (
	DefaultIdleTimeout      = 60 * time.Second
	DefaultKeepAlive        = 15 * time.Second
	DefaultHandshakeTimeout = 10 * time.Second
)

const fingerprintPrefix = "sha256:"

// Fingerprint returns "sha256:" followed by the lower-case hex SHA-256 of
// the certificate's SubjectPublicKeyInfo. It names the key, not the
// certificate, so a re-issued certificate for the same key keeps it.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return fingerprintPrefix + hex.EncodeToString(sum[:])
}

// ParseFingerprint checks that s has the form Fingerprint returns and
// returns it in canonical (lower-case) form.
func ParseFingerprint(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	h, ok := strings.CutPrefix(s, fingerprintPrefix)
	if !ok {
		return "", fmt.Errorf("rpc: fingerprint %q does not start with %q", s, fingerprintPrefix)
	}
	if b, err := hex.DecodeString(h); err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("rpc: fingerprint %q is not %s followed by %d hex digits", s, fingerprintPrefix, 2*sha256.Size)
	}
	return s, nil
}

// ChannelBinding returns the tls-exporter channel binding of a connection
// (RFC 9266): ExporterLength bytes of the TLS exporter with label
// ExporterLabel and an empty context. Both ends get the same bytes.
func ChannelBinding(c *quic.Conn) ([]byte, error) {
	cs := c.ConnectionState().TLS
	b, err := cs.ExportKeyingMaterial(ExporterLabel, nil, ExporterLength)
	if err != nil {
		return nil, fmt.Errorf("rpc: channel binding: %w", err)
	}
	return b, nil
}

// ServerTLSConfig returns the TLS configuration of a node: TLS 1.3 only,
// ALPN only, no client certificates.
func ServerTLSConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS13,
		NextProtos:   []string{ALPN},
	}
}

// ServerQUICConfig returns the QUIC configuration of a node. The client
// opens exactly one bidirectional stream, so the peer may open one
// bidirectional and no unidirectional stream. 0-RTT stays off: the
// methods are not idempotent and 0-RTT data can be replayed. The receive
// windows are capped at ServerReceiveWindow.
func ServerQUICConfig(handshakeTimeout, idleTimeout time.Duration) *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout:       handshakeTimeout,
		MaxIdleTimeout:             idleTimeout,
		MaxIncomingStreams:         1,
		MaxIncomingUniStreams:      -1,
		MaxStreamReceiveWindow:     ServerReceiveWindow,
		MaxConnectionReceiveWindow: ServerReceiveWindow,
	}
}

// ServerReceiveWindow caps the QUIC flow-control windows a node grants a
// connection (quic-go's defaults grow to 6 MiB per stream and 15 MiB per
// connection). While the node pauses reading a connection (see
// MessageLimits.Pending), the peer can still send this much, which QUIC
// buffers; so it is a per-connection term of the node's memory bound
// (docs/PROTOCOL.md, Memory bounds). 2 MiB still carries a frame of the
// default size in one window: about 20 MB/s of upload at 100 ms of
// round-trip time.
const ServerReceiveWindow = 2 << 20

// Listener accepts a node's QUIC connections on its own UDP socket.
type Listener struct {
	ln *quic.Listener
	tr *quic.Transport
	uc *net.UDPConn
}

// Listen binds the UDP address addr ("host:port"; port 0 picks one) and
// accepts QUIC connections with cert and conf (see ServerTLSConfig and
// ServerQUICConfig).
func Listen(addr string, cert tls.Certificate, conf *quic.Config) (*Listener, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("rpc: listen address %q: %w", addr, err)
	}
	uc, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("rpc: %w", err)
	}
	tr := &quic.Transport{Conn: uc}
	ln, err := tr.Listen(ServerTLSConfig(cert), conf)
	if err != nil {
		tr.Close()
		uc.Close()
		return nil, fmt.Errorf("rpc: %w", err)
	}
	return &Listener{ln: ln, tr: tr, uc: uc}, nil
}

// Accept waits for the next connection whose handshake completed.
func (l *Listener) Accept(ctx context.Context) (*quic.Conn, error) { return l.ln.Accept(ctx) }

// Addr returns the bound UDP address.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Close stops accepting connections; established ones go on.
func (l *Listener) Close() error { return l.ln.Close() }

// Shutdown closes the socket, ending every connection still open
// without notice to the peers; close them first.
func (l *Listener) Shutdown() error {
	l.ln.Close()
	l.tr.Close()
	return l.uc.Close()
}

// MessageLimits bound what one side accepts on the RPC stream.
type MessageLimits struct {
	// MaxMessageSize is the largest Cap'n Proto frame accepted, in bytes.
	// Zero means DefaultMaxMessageSize.
	MaxMessageSize uint64
	// FrameTimeout is how long a frame may take to arrive once its first
	// byte has: a peer that sends half a frame and stalls is cut off.
	// Waiting for the first byte of a frame has no limit (an idle
	// connection is fine; QUIC's idle timeout ends dead ones).
	// Zero means DefaultFrameTimeout.
	FrameTimeout time.Duration
	// WriteTimeout, if positive, bounds how long one chunk (writeChunk
	// bytes) of an outgoing frame may take to be accepted by the stream.
	// A peer that stops reading makes QUIC flow control block our
	// writes; past WriteTimeout without progress the stream is given up
	// (see streamCodec.Encode). Zero means no limit: the client uses
	// that, since it only queues its own calls, while the node sets it.
	WriteTimeout time.Duration
	// OnWriteStall, if set, is called once, from the RPC send goroutine,
	// when a write made no progress for WriteTimeout; the owner is
	// expected to close the QUIC connection. The codec cancels both
	// directions of the stream afterwards either way.
	OnWriteStall func(error)
	// MaxUnsent, if positive, pauses reading incoming frames while this
	// many outgoing messages are allocated but not yet written. go-capnp
	// allocates the answer of a call when the call arrives, so this
	// bounds the calls in progress plus the answers waiting in the
	// library's unbounded send queue: a peer that reads slowly is slowed
	// down in turn instead of making the queue grow. Zero means no
	// pause; the client must leave it zero (if both sides paused, each
	// could wait for the other to read).
	MaxUnsent int
	// MaxUnfinished, if positive, bounds the bytes of answers written
	// but not yet released by the peer's Finish: go-capnp keeps an answer
	// until then (for pipelining), and its own clients send Finish 250 ms
	// after the Return arrives (capnp v3.1.0-alpha.1, rpc.go). A peer far
	// past what that delay explains is refusing to finish its calls; OnUnfinished is called once (the owner should
	// close the connection), and the stream is cancelled either way.
	// Zero means no bound. Pausing would not help here: the Finish
	// messages that free the answers come in on the stream.
	MaxUnfinished uint64
	// OnUnfinished, if set, is called once when MaxUnfinished is passed,
	// or when Unfinished or one of its ancestors is over its limit.
	OnUnfinished func(error)
	// ClientShapesOnly, set by the node, lets through only the Cap'n
	// Proto RPC messages qpchat's own clients send (see allowList and
	// docs/CAPNP.md); anything else ends the connection before go-capnp
	// reads it. The client leaves it false.
	ClientShapesOnly bool
	// OnRefused, if set, is called once with the error (wrapping
	// ErrNotAllowed) of the first refused message; the owner is expected
	// to close the connection with CodeProtocol. Every later read fails.
	OnRefused func(error)

	// Pending, if set, is the connection's budget (a child of its
	// address's and the node's, see Budget) for the bytes of calls in
	// progress: each frame read, from its first byte (charged
	// MaxMessageSize until decoded) until the RPC layer releases it (a
	// call's parameters live until its method returns), and, for each
	// Call and Bootstrap, AnswerReserve bytes for its answer until the
	// Return is written. A frame is read only once its reservation fits
	// at every level: that is the back-pressure. Pending bytes are freed
	// by the node's own work and writes, never by reading, so the pause
	// cannot wait for the peer; a peer that stops reading is cut off by
	// WriteTimeout. See docs/PROTOCOL.md, Memory bounds.
	Pending *Budget
	// AnswerReserve is what Pending holds for the answer of each call
	// until it is written: the largest answer the owner builds (with its
	// working data). Zero means MaxMessageSize.
	AnswerReserve uint64
	// Unfinished, if set, is charged the size of every message written
	// until the peer releases it (what MaxUnfinished counts, summed per
	// address and in total by its ancestors). It never waits: past a
	// limit at any level, OnUnfinished is called and the stream
	// cancelled, as for MaxUnfinished; except that past an ancestor's
	// limit, OnUnfinishedShared is called instead when set.
	Unfinished *Budget
	// OnUnfinishedShared, if set, is called with the ancestor of
	// Unfinished that a written message took past its limit; the owner
	// is expected to close the connection holding the most of it, which
	// may be another one. This connection goes on.
	OnUnfinishedShared func(over *Budget)
}

// Defaults for MessageLimits.
const (
	DefaultMaxMessageSize = 1 << 20
	DefaultFrameTimeout   = 30 * time.Second
	// DefaultWriteTimeout is the write-progress bound a node uses.
	DefaultWriteTimeout = 30 * time.Second
)

// writeChunk is the most bytes handed to the stream under one write
// deadline. At the default WriteTimeout a peer must read at least about
// 2 KiB/s to keep the connection, so slow links are fine while a frame
// of several MiB still gets the deadline renewed as it makes progress.
const writeChunk = 64 << 10

// ErrWriteStalled is wrapped by the error of a write that made no
// progress within MessageLimits.WriteTimeout.
var ErrWriteStalled = errors.New("rpc: peer stopped reading: no write progress")

// ErrUnfinished is wrapped by the error given to OnUnfinished.
var ErrUnfinished = errors.New("rpc: peer leaves too many answers unfinished")

// NewStreamTransport returns a Cap'n Proto RPC transport on a QUIC stream
// that enforces lim. Closing it aborts both directions of the stream
// (quic-go's Stream.Close alone only closes the send side).
func NewStreamTransport(st *quic.Stream, lim MessageLimits) capnprpc.Transport {
	return newSingleSegmentTransport(newStreamCodec(st, lim))
}

// stream is the part of *quic.Stream the codec uses.
type stream interface {
	io.ReadWriter
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
	CancelRead(quic.StreamErrorCode)
	CancelWrite(quic.StreamErrorCode)
	Close() error
}

// streamCodec frames Cap'n Proto messages (standard, unpacked
// serialization) on a QUIC stream.
type streamCodec struct {
	st   stream
	r    *frameReader
	dec  *capnp.Decoder
	enc  *capnp.Encoder
	w    *progressWriter
	out  *backlog
	held *heldBytes

	// allow, if set, checks each decoded message (ClientShapesOnly);
	// refused is the sticky error of the first refused one, and
	// onRefused is told about it. All three are used by the receive
	// goroutine only.
	allow     *allowList
	refused   error
	onRefused func(error)

	pending       *Budget       // MessageLimits.Pending
	unfinished    *Budget       // MessageLimits.Unfinished
	maxFrame      int64         // MessageLimits.MaxMessageSize
	answerReserve int64         // MessageLimits.AnswerReserve
	reserved      int64         // held in pending for the frame being read (receive goroutine)
	frameCharge   int64         // charged for the last decoded frame, until RecvMessage takes it
	callCharge    int64         // AnswerReserve if that frame was a Call or Bootstrap, likewise
	closed        chan struct{} // closed by Close: reservations stop waiting

	closeOnce sync.Once
}

func newStreamCodec(st stream, lim MessageLimits) *streamCodec {
	if lim.MaxMessageSize == 0 {
		lim.MaxMessageSize = DefaultMaxMessageSize
	}
	if lim.FrameTimeout == 0 {
		lim.FrameTimeout = DefaultFrameTimeout
	}
	r := &frameReader{st: st, timeout: lim.FrameTimeout}
	dec := capnp.NewDecoder(r)
	dec.MaxMessageSize = lim.MaxMessageSize
	w := &progressWriter{st: st, timeout: lim.WriteTimeout, onStall: lim.OnWriteStall}
	out := newBacklog(lim.MaxUnsent)
	if lim.AnswerReserve == 0 {
		lim.AnswerReserve = lim.MaxMessageSize
	}
	c := &streamCodec{st: st, r: r, dec: dec, enc: capnp.NewEncoder(w), w: w, out: out,
		pending: lim.Pending, unfinished: lim.Unfinished,
		maxFrame: int64(lim.MaxMessageSize), answerReserve: int64(lim.AnswerReserve),
		closed: make(chan struct{})}
	if c.pending != nil {
		r.onFirstByte = c.reserveFrame
	}
	if lim.MaxUnfinished > 0 || lim.Unfinished != nil {
		c.held = &heldBytes{max: lim.MaxUnfinished, onOver: lim.OnUnfinished, codec: c, budget: lim.Unfinished, onShared: lim.OnUnfinishedShared}
	}
	if lim.ClientShapesOnly {
		c.allow, c.onRefused = newAllowList(), lim.OnRefused
	}
	return c
}

// Encode is called only from the RPC connection's send goroutine.
//
// Why a write-progress deadline: go-capnp queues outgoing messages
// without limit (TECH-NOTES 1.5), and a call stops counting against the
// node's per-connection call limit when its method returns, not when its
// answer is written. A client that keeps calling but never reads blocks
// the send goroutine in Write (QUIC flow control), while answers (fetch
// answers of several MiB) pile up in the queue and keep-alives hold the
// connection open. Two bounds, both outside the library: MaxUnsent
// (see backlog) stops reading calls while many answers are unwritten, so
// the queue holds at most that many messages, and the deadline per
// chunk ends a connection whose peer stopped reading altogether. The
// queue's bytes are not counted: a message's size is only settled once
// it is queued, which the transport does not see. Neither bound hurts an
// honest slow reader, which keeps making progress. After a stall the
// frame is half-written, so the stream cannot be used again: every later
// Encode fails at once and the stream is cancelled.
func (c *streamCodec) Encode(m *capnp.Message) error {
	err := c.enc.Encode(m)
	if err != nil && c.w.stalled() {
		c.Close()
	}
	return err
}

// Decode is called only from the RPC connection's receive goroutine.
// Beyond the library's checks it requires the frame header's padding
// word half to be zero, so that every accepted frame has one encoding,
// and, with MessageLimits.ClientShapesOnly, the message to be one of the
// shapes the allow-list lets through: a refused message is never handed
// to go-capnp, and neither is anything after it.
func (c *streamCodec) Decode() (*capnp.Message, error) {
	if c.refused != nil {
		return nil, c.refused
	}
	if err := c.out.wait(); err != nil {
		return nil, err
	}
	c.r.startFrame()
	m, err := c.dec.Decode()
	c.r.endFrame()
	c.settleFrame(m, err)
	if err != nil {
		return nil, err
	}
	if !c.r.paddingZero() {
		return nil, errors.New("rpc: non-zero padding in frame header")
	}
	if c.allow != nil {
		if err := c.allow.check(m); err != nil {
			c.refused = err
			if c.onRefused != nil {
				c.onRefused(err)
			}
			return nil, err
		}
	}
	return m, nil
}

// reserveFrame is frameReader.onFirstByte when MessageLimits.Pending is
// set: it waits until the largest frame and the answer of a call fit.
// Waiting at the first byte, not before the read, means that an idle
// connection holds no reservation; the rest of the frame waits in the
// QUIC stream's receive window meanwhile.
func (c *streamCodec) reserveFrame() error {
	n := c.maxFrame + c.answerReserve
	if err := c.pending.Reserve(n, c.closed, 0); err != nil {
		return err
	}
	c.reserved = n
	return nil
}

// settleFrame turns the reservation of the frame just read into a charge
// of its size plus, for a Call or Bootstrap, AnswerReserve (both kept for
// RecvMessage to hand on), or drops it on error.
func (c *streamCodec) settleFrame(m *capnp.Message, err error) {
	if c.pending == nil || c.reserved == 0 {
		return
	}
	var frame, call int64
	if err == nil {
		frame = frameBytes(m)
		if isCall(m) {
			call = c.answerReserve
		}
	}
	if keep := frame + call; keep > c.reserved {
		c.pending.Charge(keep - c.reserved)
	} else {
		c.pending.Release(c.reserved - keep)
	}
	c.reserved = 0
	c.frameCharge += frame
	c.callCharge += call
}

// takeCharges hands the charges of the last decoded frame to
// singleSegmentTransport.RecvMessage.
func (c *streamCodec) takeCharges() (frame, call int64) {
	frame, call = c.frameCharge, c.callCharge
	c.frameCharge, c.callCharge = 0, 0
	return frame, call
}

// frameBytes is the memory of a decoded message: its segments.
func frameBytes(m *capnp.Message) int64 {
	var n int64
	for i := int64(0); i < m.NumSegments(); i++ {
		seg, err := m.Segment(capnp.SegmentID(i))
		if err != nil {
			break
		}
		n += int64(len(seg.Data()))
	}
	return n
}

// isCall reports whether m is an RPC message that the other side answers
// with exactly one Return: a Call or a Bootstrap (Cap'n Proto rpc.capnp).
func isCall(m *capnp.Message) bool {
	rm, err := rpccp.ReadRootMessage(m)
	if err != nil {
		return false
	}
	w := rm.Which()
	return w == rpccp.Message_Which_call || w == rpccp.Message_Which_bootstrap
}

func (c *streamCodec) Close() error {
	var err error
	c.closeOnce.Do(func() {
		close(c.closed)
		c.out.close()
		c.st.CancelRead(0)
		if c.w.stalled() || c.held.over() {
			c.st.CancelWrite(0)
			return
		}
		err = c.st.Close()
	})
	return err
}

// progressWriter writes to the stream in chunks of at most writeChunk
// bytes, each under a fresh write deadline of timeout (when positive).
// It is used only from the send goroutine, but stalled may be read by
// Close from another one, hence the mutex.
type progressWriter struct {
	st      stream
	timeout time.Duration
	onStall func(error)

	mu  sync.Mutex
	err error // set once a write stalled; every later write returns it
}

func (w *progressWriter) stalled() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err != nil
}

func (w *progressWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	err := w.err
	w.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if w.timeout <= 0 {
		return w.st.Write(p)
	}
	n := 0
	for n < len(p) {
		chunk := p[n:min(len(p), n+writeChunk)]
		w.st.SetWriteDeadline(time.Now().Add(w.timeout))
		k, err := w.st.Write(chunk)
		n += k
		if err != nil {
			if isTimeout(err) {
				err = fmt.Errorf("%w for %v: %w", ErrWriteStalled, w.timeout, err)
				w.mu.Lock()
				w.err = err
				w.mu.Unlock()
				if w.onStall != nil {
					w.onStall(err)
				}
			}
			return n, err
		}
	}
	return n, nil
}

// frameReader reads a QUIC stream with the frame deadline: no deadline
// until the first byte of a frame, then FrameTimeout for the rest of it.
type frameReader struct {
	st      stream
	timeout time.Duration
	waiting bool // no byte of the current frame has arrived yet
	// onFirstByte, if set, is called when the first byte of a frame
	// arrives, before the frame deadline starts; an error ends the read
	// and every later one (the bytes already read are dropped: callers
	// such as io.ReadFull ignore an error that comes with enough bytes).
	onFirstByte func() error
	err         error

	// hdr collects the frame header (Cap'n Proto encoding spec,
	// "Serialization over a stream"): a 32-bit segment
	// count minus one, a 32-bit size per segment, and 32 bits of padding
	// when the count is even.
	hdr []byte
}

func (r *frameReader) startFrame() {
	r.waiting = true
	r.hdr = r.hdr[:0]
	r.st.SetReadDeadline(time.Time{})
}

// collectHeader keeps the bytes of b that belong to the frame header.
func (r *frameReader) collectHeader(b []byte) {
	for len(b) > 0 {
		want := r.headerLen()
		if len(r.hdr) >= want {
			return
		}
		k := min(want-len(r.hdr), len(b))
		r.hdr = append(r.hdr, b[:k]...)
		b = b[k:]
	}
}

// headerLen returns the length of the header being collected; it is 4
// until the segment count is known.
func (r *frameReader) headerLen() int {
	if len(r.hdr) < 4 {
		return 4
	}
	segs := int(binary.LittleEndian.Uint32(r.hdr)) + 1
	if segs <= 0 || segs > maxFrameSegments {
		return 4 // the decoder refuses it; collect no more
	}
	return (4 + 4*segs + 7) &^ 7
}

// paddingZero reports whether the collected header's padding is zero.
func (r *frameReader) paddingZero() bool {
	n := r.headerLen()
	if n < 8 || len(r.hdr) < n {
		return false
	}
	segs := int(binary.LittleEndian.Uint32(r.hdr)) + 1
	if segs%2 == 1 {
		return true // 4 + 4*segs is a multiple of 8: no padding
	}
	return binary.LittleEndian.Uint32(r.hdr[n-4:]) == 0
}

// maxFrameSegments mirrors the library's limit on segments per frame.
const maxFrameSegments = 512

func (r *frameReader) endFrame() {
	r.waiting = false
	r.st.SetReadDeadline(time.Time{})
}

func (r *frameReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	n, err := r.st.Read(p)
	r.collectHeader(p[:n])
	if n > 0 && r.waiting {
		r.waiting = false
		if r.onFirstByte != nil {
			if ferr := r.onFirstByte(); ferr != nil {
				r.err = ferr
				return 0, ferr
			}
		}
		r.st.SetReadDeadline(time.Now().Add(r.timeout))
	}
	if err != nil && isTimeout(err) {
		err = fmt.Errorf("rpc: frame not completed within %v: %w", r.timeout, err)
	}
	return n, err
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

var _ stream = (*quic.Stream)(nil)

// backlog counts the outgoing messages allocated but not yet written, and
// makes the receive goroutine wait while there are limit of them
// (MessageLimits.MaxUnsent). A nil *backlog counts nothing.
type backlog struct {
	limit int

	mu     sync.Mutex
	cond   sync.Cond
	unsent int
	closed bool
}

func newBacklog(limit int) *backlog {
	if limit <= 0 {
		return nil
	}
	b := &backlog{limit: limit}
	b.cond.L = &b.mu
	return b
}

func (b *backlog) add() {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.unsent++
	b.mu.Unlock()
}

// done is called once per add, when the message was written (or failed
// to be) or released unsent.
func (b *backlog) done() {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.unsent--
	if b.unsent < b.limit {
		b.cond.Broadcast()
	}
	b.mu.Unlock()
}

// wait returns once fewer than limit messages are unsent, or an error
// once the codec is closed.
func (b *backlog) wait() error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.unsent >= b.limit && !b.closed {
		b.cond.Wait()
	}
	if b.closed {
		return errors.New("rpc: transport closed")
	}
	return nil
}

func (b *backlog) close() {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.closed = true
	b.cond.Broadcast()
	b.mu.Unlock()
}

// heldBytes counts the bytes of messages written but not yet released
// (MessageLimits.MaxUnfinished). A nil *heldBytes counts nothing.
type heldBytes struct {
	max      uint64 // 0: no per-connection bound
	onOver   func(error)
	codec    *streamCodec
	budget   *Budget // MessageLimits.Unfinished, or nil
	onShared func(*Budget)

	mu     sync.Mutex
	n      uint64
	passed bool
}

// add counts a written message of size bytes.
func (h *heldBytes) add(size uint64) {
	if h == nil {
		return
	}
	over := h.budget.Charge(int64(size))
	if over != nil && over != h.budget && h.onShared != nil {
		// A shared level is full: the owner cuts off its biggest holder,
		// which need not be this connection.
		h.onShared(over)
		over = nil
	}
	h.mu.Lock()
	h.n += size
	first := ((h.max > 0 && h.n > h.max) || over != nil) && !h.passed
	if first {
		h.passed = true
	}
	h.mu.Unlock()
	if first {
		limit, what := h.max, "this connection"
		if over != nil {
			limit, what = uint64(over.Limit()), "the "+over.Name()+" budget"
		}
		err := fmt.Errorf("%w: more than %d bytes of answers written and not finished (%s)", ErrUnfinished, limit, what)
		if h.onOver != nil {
			h.onOver(err)
		}
		h.codec.Close()
	}
}

// remove uncounts a released message counted by add.
func (h *heldBytes) remove(size uint64) {
	if h == nil {
		return
	}
	h.mu.Lock()
	h.n -= size
	h.mu.Unlock()
	h.budget.Release(int64(size))
}

func (h *heldBytes) over() bool {
	if h == nil {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.passed
}
