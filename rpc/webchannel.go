package rpc

// The web channel: how Cap'n Proto RPC runs over a WebSocket
// (RFC 6455) when the client is a browser.
//
// A browser shows page code neither a TLS exporter (RFC 9266) nor the
// server's certificate, so the QUIC channel binding is not available.
// Instead the RPC bytes run inside a channel of qpchat's own, set up by
// a two-message handshake at the start of the socket:
//
//	ClientHello  client -> server  a fresh hybrid KEM public key
//	ServerHello  server -> client  the encapsulation to it, the node's
//	                               certificate chain (its QUIC identity)
//	                               and the node key's signature over
//	                               the transcript
//
// Both sides then derive, from the KEM shared secret and the transcript
// hash, one AEAD key per direction and a 32-byte binding value that
// plays the TLS exporter's part: login proofs and device signatures
// cover it, under labels of their own (node/proto, Binding), so an
// authentication made for a QUIC connection never verifies here and
// the other way round. A party in the middle of the socket (a TLS
// terminator, a certificate authority's mis-issued certificate) that
// runs the handshake with each side gets two different binding values
// and cannot authenticate; see docs/PROTOCOL.md, "The web channel".
//
// Records. Every message, the two hellos included, is a record:
//
//	uint32 length (big-endian, 1 .. maxRecordBody) || body
//
// The hellos travel in clear (inside the WebSocket's TLS); every later
// record body is ChaCha20-Poly1305 (RFC 8439) ciphertext of at most
// maxRecordPlain bytes of the RPC byte stream, with nonce 0^32 ||
// uint64 sequence number (per direction, from 0) and no associated
// data. A record that fails to open ends the channel: reordered,
// replayed, dropped and forged records all do.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/cryptobyte"

	"qpchat/kem"
)

// WebSubprotocol is the WebSocket subprotocol (RFC 6455, Section 1.9)
// of the web channel; like ALPN on QUIC, bump it on an incompatible
// change.
const WebSubprotocol = "qpchat.web.v1"

// WebPath is the HTTP path of the node's WebSocket endpoint.
const WebPath = "/rpc"

const (
	webVersion = 1

	// maxRecordPlain is the most RPC bytes one record carries: the
	// codec's write chunk, so each chunk is one record.
	maxRecordPlain = writeChunk
	// maxRecordBody bounds a record body: a sealed chunk, or a hello.
	maxRecordBody = maxRecordPlain + chacha20poly1305.Overhead
	// maxChainBytes bounds the certificate chain in a ServerHello.
	maxChainBytes = 48 << 10

	// Labels of the handshake (each used once, in one place).
	labelWebSignature = "qpchat web handshake v1"
	labelWebC2S       = "qpchat web v1 c2s"
	labelWebS2C       = "qpchat web v1 s2c"
	labelWebBinding   = "qpchat web v1 binding"
)

// webKEM is the KEM of the handshake: qpchat's hybrid X25519 +
// ML-KEM-768 (kem.HybridX25519MLKEM768), so that recorded traffic stays
// private against a later quantum computer even where the WebSocket's
// TLS is classical.
var webKEM = kem.HybridX25519MLKEM768()

// ErrWebHandshake is wrapped by every failed handshake whose cause is
// the peer's data (malformed hello, bad signature).
var ErrWebHandshake = errors.New("rpc: web channel handshake failed")

// clientHello is
//
//	struct {
//	    uint8  version = 1;
//	    uint16 kem_id;           // 0xFA01
//	    opaque share<0..2^16-1>; // KEM public key
//	} ClientHello;
type clientHello struct {
	kemID uint16
	share []byte
}

func (h *clientHello) marshal() []byte {
	var b cryptobyte.Builder
	b.AddUint8(webVersion)
	b.AddUint16(h.kemID)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(h.share) })
	return b.BytesOrPanic() // at most 2^16 bytes: the share is checked by callers
}

func parseClientHello(data []byte) (*clientHello, error) {
	s := cryptobyte.String(data)
	var (
		v     uint8
		h     clientHello
		share cryptobyte.String
	)
	if !s.ReadUint8(&v) || !s.ReadUint16(&h.kemID) || !s.ReadUint16LengthPrefixed(&share) || !s.Empty() {
		return nil, fmt.Errorf("%w: malformed ClientHello", ErrWebHandshake)
	}
	if v != webVersion {
		return nil, fmt.Errorf("%w: ClientHello version %d, want %d", ErrWebHandshake, v, webVersion)
	}
	h.share = bytes.Clone(share)
	return &h, nil
}

// serverHello is
//
//	struct {
//	    uint8  version = 1;
//	    opaque enc<0..2^16-1>;                // KEM encapsulation
//	    opaque certificate_list<1..2^24-1>;   // DER certificates, leaf first,
//	                                          // each opaque cert<1..2^24-1>
//	    opaque signature<0..2^16-1>;          // node key, see webSignedContent
//	} ServerHello;
type serverHello struct {
	enc   []byte
	chain [][]byte
	sig   []byte
}

// marshalUnsigned encodes everything but the signature: what the
// signature covers.
func (h *serverHello) marshalUnsigned(b *cryptobyte.Builder) {
	b.AddUint8(webVersion)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(h.enc) })
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, c := range h.chain {
			b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(c) })
		}
	})
}

func (h *serverHello) unsigned() ([]byte, error) {
	var b cryptobyte.Builder
	h.marshalUnsigned(&b)
	return b.Bytes()
}

func (h *serverHello) marshal() ([]byte, error) {
	var b cryptobyte.Builder
	h.marshalUnsigned(&b)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(h.sig) })
	return b.Bytes()
}

func parseServerHello(data []byte) (*serverHello, error) {
	s := cryptobyte.String(data)
	var (
		v             uint8
		enc, list, sg cryptobyte.String
		h             serverHello
	)
	if !s.ReadUint8(&v) || !s.ReadUint16LengthPrefixed(&enc) || !s.ReadUint24LengthPrefixed(&list) ||
		!s.ReadUint16LengthPrefixed(&sg) || !s.Empty() {
		return nil, fmt.Errorf("%w: malformed ServerHello", ErrWebHandshake)
	}
	if v != webVersion {
		return nil, fmt.Errorf("%w: ServerHello version %d, want %d", ErrWebHandshake, v, webVersion)
	}
	if len(list) == 0 || len(list) > maxChainBytes {
		return nil, fmt.Errorf("%w: certificate list of %d bytes", ErrWebHandshake, len(list))
	}
	for !list.Empty() {
		var c cryptobyte.String
		if !list.ReadUint24LengthPrefixed(&c) || len(c) == 0 {
			return nil, fmt.Errorf("%w: malformed certificate list", ErrWebHandshake)
		}
		h.chain = append(h.chain, bytes.Clone(c))
	}
	h.enc, h.sig = bytes.Clone(enc), bytes.Clone(sg)
	return &h, nil
}

// webSignedContent is what the node key signs:
//
//	"qpchat web handshake v1" || 0x00 || SHA-256(ClientHello || unsigned ServerHello)
//
// The label keeps the signature from ever being a valid TLS 1.3
// CertificateVerify (RFC 8446, Section 4.4.3, whose content starts with
// 64 spaces) or any other use of the same key.
func webSignedContent(ch, shUnsigned []byte) []byte {
	h := sha256.New()
	h.Write(ch)
	h.Write(shUnsigned)
	out := append([]byte(labelWebSignature), 0)
	return h.Sum(out)
}

// webKeys derives the channel's keys and binding from the shared
// secret and the transcript (RFC 5869 HKDF with SHA-256):
//
//	prk     = HKDF-Extract(salt = SHA-256(ClientHello || ServerHello), ss)
//	c2s     = HKDF-Expand(prk, "qpchat web v1 c2s", 32)
//	s2c     = HKDF-Expand(prk, "qpchat web v1 s2c", 32)
//	binding = HKDF-Expand(prk, "qpchat web v1 binding", 32)
func webKeys(ss, ch, sh []byte) (c2s, s2c, binding []byte, err error) {
	th := sha256.New()
	th.Write(ch)
	th.Write(sh)
	prk, err := hkdf.Extract(sha256.New, ss, th.Sum(nil))
	if err != nil {
		return nil, nil, nil, err
	}
	defer clear(prk)
	if c2s, err = hkdf.Expand(sha256.New, prk, labelWebC2S, chacha20poly1305.KeySize); err != nil {
		return nil, nil, nil, err
	}
	if s2c, err = hkdf.Expand(sha256.New, prk, labelWebS2C, chacha20poly1305.KeySize); err != nil {
		return nil, nil, nil, err
	}
	if binding, err = hkdf.Expand(sha256.New, prk, labelWebBinding, ExporterLength); err != nil {
		return nil, nil, nil, err
	}
	return c2s, s2c, binding, nil
}

// signWeb signs content with the node's key: Ed25519 as is, ECDSA over
// SHA-256, RSA with PSS over SHA-256 (the schemes x509's CheckSignature
// verifies as PureEd25519, ECDSAWithSHA256 and SHA256WithRSAPSS).
func signWeb(rnd io.Reader, key crypto.PrivateKey, content []byte) ([]byte, error) {
	switch k := key.(type) {
	case ed25519.PrivateKey:
		return ed25519.Sign(k, content), nil
	case *ecdsa.PrivateKey:
		d := sha256.Sum256(content)
		return ecdsa.SignASN1(rnd, k, d[:])
	case *rsa.PrivateKey:
		d := sha256.Sum256(content)
		return rsa.SignPSS(rnd, k, crypto.SHA256, d[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	case crypto.Signer:
		// A key behind a signer (an HSM): try its public key's scheme.
		switch k.Public().(type) {
		case ed25519.PublicKey:
			return k.Sign(rnd, content, crypto.Hash(0))
		case *ecdsa.PublicKey:
			d := sha256.Sum256(content)
			return k.Sign(rnd, d[:], crypto.SHA256)
		case *rsa.PublicKey:
			d := sha256.Sum256(content)
			return k.Sign(rnd, d[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256})
		}
	}
	return nil, fmt.Errorf("rpc: web channel: cannot sign with a %T node key", key)
}

// verifyWeb checks a signature of signWeb against the leaf certificate.
func verifyWeb(leaf *x509.Certificate, content, sig []byte) error {
	var alg x509.SignatureAlgorithm
	switch leaf.PublicKey.(type) {
	case ed25519.PublicKey:
		alg = x509.PureEd25519
	case *ecdsa.PublicKey:
		alg = x509.ECDSAWithSHA256
	case *rsa.PublicKey:
		alg = x509.SHA256WithRSAPSS
	default:
		return fmt.Errorf("%w: unsupported node key %T", ErrWebHandshake, leaf.PublicKey)
	}
	if err := leaf.CheckSignature(alg, content, sig); err != nil {
		return fmt.Errorf("%w: the node's signature does not verify", ErrWebHandshake)
	}
	return nil
}

// readRecord reads one record body (1..maxRecordBody bytes) into buf's
// storage.
func readRecord(r io.Reader, buf []byte) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > maxRecordBody {
		return nil, fmt.Errorf("rpc: web channel record of %d bytes (limit %d)", n, maxRecordBody)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf, nil
}

// appendRecordHeader appends the length prefix of a body of n bytes.
func appendRecordHeader(b []byte, n int) []byte {
	return binary.BigEndian.AppendUint32(b, uint32(n))
}

func writeRecord(w io.Writer, body []byte) error {
	_, err := w.Write(append(appendRecordHeader(make([]byte, 0, 4+len(body)), len(body)), body...))
	return err
}

// WebServerHandshake runs the server side of the handshake on nc: it
// reads the ClientHello, answers with the ServerHello signed by cert's
// key, and returns the channel. timeout bounds the whole handshake.
func WebServerHandshake(nc net.Conn, cert tls.Certificate, rnd io.Reader, timeout time.Duration) (*WebChannel, error) {
	if timeout > 0 {
		nc.SetDeadline(time.Now().Add(timeout))
		defer nc.SetDeadline(time.Time{})
	}
	chb, err := readRecord(nc, nil)
	if err != nil {
		return nil, fmt.Errorf("rpc: reading ClientHello: %w", err)
	}
	ch, err := parseClientHello(chb)
	if err != nil {
		return nil, err
	}
	if ch.kemID != webKEM.ID() {
		return nil, fmt.Errorf("%w: KEM 0x%04x, want 0x%04x", ErrWebHandshake, ch.kemID, webKEM.ID())
	}
	pk, err := webKEM.NewPublicKey(ch.share)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrWebHandshake, err)
	}
	ss, enc, err := webKEM.Encap(rnd, pk)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrWebHandshake, err)
	}
	defer clear(ss)
	sh := &serverHello{enc: enc, chain: cert.Certificate}
	unsigned, err := sh.unsigned()
	if err != nil {
		return nil, fmt.Errorf("rpc: web channel: %w", err)
	}
	if sh.sig, err = signWeb(rnd, cert.PrivateKey, webSignedContent(chb, unsigned)); err != nil {
		return nil, err
	}
	shb, err := sh.marshal()
	if err != nil || len(shb) > maxRecordBody {
		return nil, fmt.Errorf("rpc: web channel: ServerHello too large (certificate chain of %d certificates)", len(cert.Certificate))
	}
	c2s, s2c, binding, err := webKeys(ss, chb, shb)
	if err != nil {
		return nil, err
	}
	if err := writeRecord(nc, shb); err != nil {
		return nil, fmt.Errorf("rpc: writing ServerHello: %w", err)
	}
	return newWebChannel(nc, s2c, c2s, binding, nil)
}

// webClientHandshake runs the client side on nc. verify is given the
// node's certificate chain after the signature over the transcript was
// checked against its leaf; its error ends the handshake.
func webClientHandshake(nc net.Conn, rnd io.Reader, timeout time.Duration, verify func(chain []*x509.Certificate) error) (*WebChannel, error) {
	if timeout > 0 {
		nc.SetDeadline(time.Now().Add(timeout))
		defer nc.SetDeadline(time.Time{})
	}
	sk, err := webKEM.GenerateKeyPair(rnd)
	if err != nil {
		return nil, err
	}
	chb := (&clientHello{kemID: webKEM.ID(), share: sk.PublicKey().Bytes()}).marshal()
	if err := writeRecord(nc, chb); err != nil {
		return nil, fmt.Errorf("rpc: writing ClientHello: %w", err)
	}
	shb, err := readRecord(nc, nil)
	if err != nil {
		return nil, fmt.Errorf("rpc: reading ServerHello: %w", err)
	}
	sh, err := parseServerHello(shb)
	if err != nil {
		return nil, err
	}
	chain := make([]*x509.Certificate, len(sh.chain))
	for i, der := range sh.chain {
		if chain[i], err = x509.ParseCertificate(der); err != nil {
			return nil, fmt.Errorf("%w: node certificate: %v", ErrWebHandshake, err)
		}
	}
	unsigned, err := sh.unsigned()
	if err != nil {
		return nil, err
	}
	if err := verifyWeb(chain[0], webSignedContent(chb, unsigned), sh.sig); err != nil {
		return nil, err
	}
	if err := verify(chain); err != nil {
		return nil, err
	}
	ss, err := webKEM.Decap(sk, sh.enc)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrWebHandshake, err)
	}
	defer clear(ss)
	c2s, s2c, binding, err := webKeys(ss, chb, shb)
	if err != nil {
		return nil, err
	}
	return newWebChannel(nc, c2s, s2c, binding, chain)
}

// WebChannel is an established web channel: a byte stream of sealed
// records over a net.Conn (a WebSocket's, see websocket.NetConn). It is
// what the RPC codec reads and writes, as a QUIC stream on the other
// transport, so every limit of MessageLimits applies unchanged.
//
// Deadlines are the net.Conn's. A WebSocket's net.Conn ends the socket
// when a deadline passes during a read or write, which is what the codec
// wants anyway (a stalled frame or writer ends the connection).
type WebChannel struct {
	nc      net.Conn
	binding []byte
	chain   []*x509.Certificate // the node's, on the client side

	// BodyTimeout, if positive, bounds how long the rest of a record may
	// take once its length arrived, while the caller set no read
	// deadline: a peer cannot park half a record (up to maxRecordBody
	// bytes of buffer) forever.
	BodyTimeout time.Duration

	rmu      sync.Mutex // the receive side: one reader at a time
	open     cipherState
	rbuf     []byte      // record storage
	pending  []byte      // opened plaintext not yet read
	rerr     error       // sticky
	deadline atomic.Bool // the caller set a read deadline

	wmu  sync.Mutex // the send side
	seal cipherState
	wbuf []byte
	werr error // sticky

	closeOnce sync.Once
	ctx       context.Context
	end       context.CancelCauseFunc
}

// cipherState is one direction: its AEAD and the next sequence number.
type cipherState struct {
	aead interface {
		Seal(dst, nonce, plaintext, ad []byte) []byte
		Open(dst, nonce, ciphertext, ad []byte) ([]byte, error)
	}
	seq uint64
}

func (c *cipherState) nonce() ([]byte, error) {
	if c.seq == ^uint64(0) {
		return nil, errors.New("rpc: web channel sequence numbers exhausted")
	}
	n := make([]byte, chacha20poly1305.NonceSize)
	binary.BigEndian.PutUint64(n[4:], c.seq)
	c.seq++
	return n, nil
}

func newWebChannel(nc net.Conn, sendKey, recvKey, binding []byte, chain []*x509.Certificate) (*WebChannel, error) {
	s, err := chacha20poly1305.New(sendKey)
	if err != nil {
		return nil, err
	}
	r, err := chacha20poly1305.New(recvKey)
	if err != nil {
		return nil, err
	}
	clear(sendKey)
	clear(recvKey)
	w := &WebChannel{nc: nc, binding: binding, chain: chain, seal: cipherState{aead: s}, open: cipherState{aead: r}}
	w.ctx, w.end = context.WithCancelCause(context.Background())
	return w, nil
}

// Context is done once the channel failed (a read or write error, the
// peer gone) or was closed; its cause is the first such error.
func (w *WebChannel) Context() context.Context { return w.ctx }

// Binding returns the channel's 32-byte binding value (see the file
// comment); both ends get the same bytes, and no other channel does.
func (w *WebChannel) Binding() []byte { return bytes.Clone(w.binding) }

// Read reads the RPC byte stream, opening records as needed.
func (w *WebChannel) Read(p []byte) (int, error) {
	w.rmu.Lock()
	defer w.rmu.Unlock()
	if len(w.pending) == 0 {
		if w.rerr != nil {
			return 0, w.rerr
		}
		if err := w.readRecordLocked(); err != nil {
			w.rerr = err
			w.end(err)
			return 0, err
		}
	}
	n := copy(p, w.pending)
	w.pending = w.pending[n:]
	return n, nil
}

func (w *WebChannel) readRecordLocked() error {
	var hdr [4]byte
	if _, err := io.ReadFull(w.nc, hdr[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n <= chacha20poly1305.Overhead || n > maxRecordBody {
		return fmt.Errorf("rpc: web channel record of %d bytes (limit %d)", n, maxRecordBody)
	}
	if w.BodyTimeout > 0 && !w.deadline.Load() {
		w.nc.SetReadDeadline(time.Now().Add(w.BodyTimeout))
		defer w.nc.SetReadDeadline(time.Time{})
	}
	if cap(w.rbuf) < int(n) {
		w.rbuf = make([]byte, maxRecordBody)
	}
	body := w.rbuf[:n]
	if _, err := io.ReadFull(w.nc, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	nonce, err := w.open.nonce()
	if err != nil {
		return err
	}
	pt, err := w.open.aead.Open(body[:0], nonce, body, nil)
	if err != nil {
		return errors.New("rpc: web channel record does not authenticate")
	}
	w.pending = pt
	return nil
}

// Write seals p into records of at most maxRecordPlain bytes, each
// written with one Write of the net.Conn (one WebSocket message).
func (w *WebChannel) Write(p []byte) (int, error) {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if w.werr != nil {
		return 0, w.werr
	}
	n := 0
	for n < len(p) {
		chunk := p[n:min(len(p), n+maxRecordPlain)]
		nonce, err := w.seal.nonce()
		if err != nil {
			w.werr = err
			return n, err
		}
		b := appendRecordHeader(w.wbuf[:0], len(chunk)+chacha20poly1305.Overhead)
		b = w.seal.aead.Seal(b, nonce, chunk, nil)
		w.wbuf = b
		if _, err := w.nc.Write(b); err != nil {
			// A record half written cannot be taken back: the channel
			// is done.
			w.werr = err
			w.end(err)
			return n, err
		}
		n += len(chunk)
	}
	return n, nil
}

// SetReadDeadline sets the net.Conn's read deadline.
func (w *WebChannel) SetReadDeadline(t time.Time) error {
	w.deadline.Store(!t.IsZero())
	return w.nc.SetReadDeadline(t)
}

// SetWriteDeadline sets the net.Conn's write deadline.
func (w *WebChannel) SetWriteDeadline(t time.Time) error { return w.nc.SetWriteDeadline(t) }

// Close closes the underlying connection.
func (w *WebChannel) Close() error {
	var err error
	w.closeOnce.Do(func() {
		err = w.nc.Close()
		w.end(net.ErrClosed)
	})
	return err
}
