package server

// The web listener (--web-listen): HTTPS serving the embedded web app
// and a WebSocket endpoint that carries the same NodeService as QUIC,
// inside the web channel (rpc/webchannel.go). A web connection is a
// conn like a QUIC one: the same connection limits, byte budgets,
// frame limits and allow-list apply, through the same code.
//
// The HTTPS certificate is the web listener's own (files or ACME),
// never the node's QUIC identity: ACME renewals must not move the key
// CLI clients pin. The node's identity still authenticates the web
// channel: the handshake is signed with it.

import (
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/quic-go/quic-go"
	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"

	"qpchat/rpc"
)

// WebConfig configures the web listener. It is off while Listen is
// empty.
type WebConfig struct {
	// Listen is the TCP address ("host:port") of the web listener; empty
	// means no web listener.
	Listen string
	// TLSCertFile and TLSKeyFile name the PEM certificate chain and key
	// of the HTTPS listener. They are not the node's QUIC identity.
	TLSCertFile, TLSKeyFile string
	// ACMEDomain, instead of the files, gets the certificate for this
	// name from an ACME certificate authority (RFC 8555) with the
	// TLS-ALPN-01 challenge (RFC 8737), so Listen must be reachable as
	// DOMAIN:443. By using it the operator accepts the CA's terms.
	ACMEDomain string
	// ACMEDirectoryURL is the ACME directory; empty means autocert's
	// default (Let's Encrypt production).
	ACMEDirectoryURL string
	// ACMECacheDir keeps the ACME account key and certificates. Default
	// DataDir/acme.
	ACMECacheDir string
	// App holds the web app's files, index.html at its root; nil serves
	// a page saying that this binary has no web app.
	App fs.FS
}

// webServer is the running web listener.
type webServer struct {
	ln    net.Listener
	http  *http.Server
	tls   bool // HTTPS (else plain HTTP on loopback)
	cert  tls.Certificate
	app   fs.FS
	conns sync.WaitGroup // WebSocket connections being served
	// connCtx is the context of the connections, set by Serve before
	// the listener accepts; cancelled when connections must go.
	connCtx context.Context
}

// CheckWebAddr checks that the web listener may run as configured:
// HTTPS with a certificate (files or ACME), or plain HTTP only on a
// loopback address, where browsers treat the origin as secure.
func CheckWebAddr(wc WebConfig) error {
	host, _, err := net.SplitHostPort(wc.Listen)
	if err != nil {
		return fmt.Errorf("server: web address %q: %w", wc.Listen, err)
	}
	files := wc.TLSCertFile != "" || wc.TLSKeyFile != ""
	switch {
	case files && (wc.TLSCertFile == "" || wc.TLSKeyFile == ""):
		return errors.New("server: give both --web-tls-cert and --web-tls-key, or neither")
	case files && wc.ACMEDomain != "":
		return errors.New("server: --acme-domain and --web-tls-cert/--web-tls-key exclude each other")
	case files || wc.ACMEDomain != "":
		return nil
	case host != "" && rpc.IsLoopbackHost(host):
		return nil
	}
	return fmt.Errorf("server: web address %q is not loopback and has no certificate: plain HTTP is only allowed on 127.0.0.1, [::1] or localhost; give --web-tls-cert/--web-tls-key or --acme-domain", wc.Listen)
}

// webTLSConfig returns the HTTPS configuration of the web listener, or
// nil for plain HTTP.
func (s *Server) webTLSConfig() (*tls.Config, error) {
	wc := s.cfg.Web
	switch {
	case wc.ACMEDomain != "":
		m := &autocert.Manager{
			Prompt:     autocert.AcceptTOS,
			HostPolicy: autocert.HostWhitelist(wc.ACMEDomain),
			Cache:      autocert.DirCache(wc.ACMECacheDir),
		}
		if wc.ACMEDirectoryURL != "" {
			m.Client = &acme.Client{DirectoryURL: wc.ACMEDirectoryURL}
		}
		conf := m.TLSConfig()
		conf.MinVersion = tls.VersionTLS12
		return conf, nil
	case wc.TLSCertFile != "":
		cert, err := tls.LoadX509KeyPair(wc.TLSCertFile, wc.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("server: web certificate: %w", err)
		}
		return &tls.Config{
			Certificates: []tls.Certificate{cert},
			MinVersion:   tls.VersionTLS12,
			NextProtos:   []string{"h2", "http/1.1"},
		}, nil
	}
	return nil, nil
}

// startWeb binds the web listener if configured; cert is the node's
// identity, which signs web channel handshakes.
func (s *Server) startWeb(cert tls.Certificate) error {
	wc := s.cfg.Web
	if wc.Listen == "" {
		return nil
	}
	if err := CheckWebAddr(wc); err != nil {
		return err
	}
	tlsConf, err := s.webTLSConfig()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", wc.Listen)
	if err != nil {
		return fmt.Errorf("server: web listener: %w", err)
	}
	w := &webServer{ln: ln, tls: tlsConf != nil, cert: cert, app: wc.App}
	w.http = &http.Server{
		Handler:           s.webHandler(w),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    16 << 10,
		TLSConfig:         tlsConf,
	}
	if tlsConf != nil {
		w.ln = tls.NewListener(ln, tlsConf)
	}
	s.web = w
	return nil
}

// WebAddr returns the web listener's address, nil without one.
func (s *Server) WebAddr() net.Addr {
	if s.web == nil {
		return nil
	}
	return s.web.ln.Addr()
}

// serveWeb serves the web listener until stopWeb; connCtx is the
// context of its connections.
func (s *Server) serveWeb(connCtx context.Context) {
	w := s.web
	if w == nil {
		return
	}
	w.connCtx = connCtx
	scheme := "http"
	if w.tls {
		scheme = "https"
	}
	s.log.Info("web listener", "addr", w.ln.Addr().String(), "scheme", scheme)
	go func() {
		if err := w.http.Serve(w.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("web listener failed", "err", err)
		}
	}()
}

// stopWeb stops accepting web requests. The WebSocket connections are
// conns: Serve closes them with the others, then waits in waitWeb.
func (s *Server) stopWeb() {
	if s.web == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.web.http.Shutdown(ctx); err != nil {
		s.web.http.Close()
	}
}

// waitWeb waits for the WebSocket connections to end.
func (s *Server) waitWeb() {
	if s.web != nil {
		s.web.conns.Wait()
	}
}

// webHandler routes the web listener: the WebSocket endpoint and the
// app's files, every answer with the security headers.
func (s *Server) webHandler(w *webServer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+rpc.WebPath, func(rw http.ResponseWriter, r *http.Request) { s.serveWebSocket(w, rw, r) })
	mux.HandleFunc("GET /", w.serveApp)
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		setSecurityHeaders(rw.Header(), w.tls)
		mux.ServeHTTP(rw, r)
	})
}

// ContentSecurityPolicy is the web app's policy: its own scripts and
// styles only (no inline code, no third party), wasm compilation
// ('wasm-unsafe-eval', which does not allow eval), connections to its
// own origin only (the WebSocket), no framing, no plugins, and
// Trusted Types so that no string reaches an HTML sink.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; " +
	"style-src 'self'; img-src 'self'; connect-src 'self'; manifest-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'; " +
	"require-trusted-types-for 'script'; trusted-types 'none'"

// setSecurityHeaders sets the headers every web answer carries.
func setSecurityHeaders(h http.Header, https bool) {
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Embedder-Policy", "require-corp")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()")
	h.Set("Cache-Control", "no-cache")
	if https {
		h.Set("Strict-Transport-Security", "max-age=63072000")
	}
}

// serveApp serves a file of the app: regular files only (no directory
// listings), "/" as index.html, and NAME.gz instead of NAME when the
// app has it and the browser takes gzip.
func (w *webServer) serveApp(rw http.ResponseWriter, r *http.Request) {
	if w.app == nil {
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		rw.WriteHeader(http.StatusNotFound)
		io.WriteString(rw, "this qpchat node was built without its web app\n")
		return
	}
	name := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
	if name == "" {
		name = "index.html"
	}
	if !fs.ValidPath(name) || strings.HasSuffix(name, ".gz") {
		http.NotFound(rw, r)
		return
	}
	serve := name
	if acceptsGzip(r) {
		if fi, err := fs.Stat(w.app, name+".gz"); err == nil && fi.Mode().IsRegular() {
			serve = name + ".gz"
		}
	}
	f, err := w.app.Open(serve)
	if errors.Is(err, fs.ErrNotExist) && serve == name {
		// Only NAME.gz is kept (the wasm): unpack it for a browser
		// that takes no gzip.
		w.serveGunzipped(rw, r, name)
		return
	}
	if err != nil {
		http.NotFound(rw, r)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	rs, seekable := f.(io.ReadSeeker)
	if err != nil || !fi.Mode().IsRegular() || !seekable {
		http.NotFound(rw, r)
		return
	}
	rw.Header().Add("Vary", "Accept-Encoding")
	if serve != name {
		rw.Header().Set("Content-Encoding", "gzip")
		if ct := contentType(name); ct != "" {
			rw.Header().Set("Content-Type", ct)
		}
	}
	http.ServeContent(rw, r, name, fi.ModTime(), rs)
}

// serveGunzipped serves NAME from NAME.gz, decompressed.
func (w *webServer) serveGunzipped(rw http.ResponseWriter, r *http.Request, name string) {
	f, err := w.app.Open(name + ".gz")
	if err != nil {
		http.NotFound(rw, r)
		return
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		http.Error(rw, "damaged app file", http.StatusInternalServerError)
		return
	}
	if ct := contentType(name); ct != "" {
		rw.Header().Set("Content-Type", ct)
	}
	rw.Header().Add("Vary", "Accept-Encoding")
	if r.Method == http.MethodHead {
		return
	}
	io.Copy(rw, zr)
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, q, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(enc), "gzip") && strings.ReplaceAll(q, " ", "") != "q=0" {
			return true
		}
	}
	return false
}

// contentType is the type of the app's files by extension.
func contentType(name string) string {
	switch filepath.Ext(name) {
	case ".wasm":
		return "application/wasm"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".html":
		return "text/html; charset=utf-8"
	case ".json", ".webmanifest":
		return "application/json"
	}
	return ""
}

// serveWebSocket accepts a WebSocket on the endpoint and serves it as a
// conn. The library checks that a browser's Origin is this host (so no
// other site's page can use a visitor's browser as a client).
func (s *Server) serveWebSocket(w *webServer, rw http.ResponseWriter, r *http.Request) {
	ws, err := websocket.Accept(rw, r, &websocket.AcceptOptions{Subprotocols: []string{rpc.WebSubprotocol}})
	if err != nil {
		s.log.Debug("web socket refused", "remote", r.RemoteAddr, "err", err)
		return
	}
	if ws.Subprotocol() != rpc.WebSubprotocol {
		ws.Close(websocket.StatusPolicyViolation, "subprotocol "+rpc.WebSubprotocol+" required")
		return
	}
	remote := net.Addr(&net.TCPAddr{})
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		remote = net.TCPAddrFromAddrPort(ap)
	}
	ctx := w.connCtx
	if ctx == nil {
		ctx = context.Background()
	}
	wc := newWebConn(ctx, ws, remote)
	c, ok := s.track(wc)
	if !ok {
		return
	}
	w.conns.Add(1)
	defer w.conns.Done()
	defer s.untrack(c)
	c.open = func(ctx context.Context) (*rpc.WebChannel, error) {
		ch, err := rpc.WebServerHandshake(wc.nc, w.cert, rand.Reader, s.cfg.HandshakeTimeout)
		if err != nil {
			return nil, err
		}
		wc.established(ch)
		return ch, nil
	}
	c.serve(ctx)
}

// webConn is a WebSocket connection as conn sees it (peerConn).
type webConn struct {
	ws     *websocket.Conn
	nc     net.Conn
	remote net.Addr
	ctx    context.Context
	cancel context.CancelCauseFunc
	once   sync.Once
}

func newWebConn(ctx context.Context, ws *websocket.Conn, remote net.Addr) *webConn {
	w := &webConn{ws: ws, remote: remote}
	w.ctx, w.cancel = context.WithCancelCause(context.WithoutCancel(ctx))
	// The socket's reads and writes are not tied to w.ctx: cancelling
	// them would end the socket before CloseWithError's close frame.
	w.nc = websocket.NetConn(context.Background(), ws, websocket.MessageBinary)
	return w
}

// established ties the connection's end to the channel's: once the
// channel fails (the peer left), Context is done.
func (w *webConn) established(ch *rpc.WebChannel) {
	go func() {
		select {
		case <-ch.Context().Done():
			w.cancel(context.Cause(ch.Context()))
		case <-w.ctx.Done():
		}
	}()
}

func (w *webConn) RemoteAddr() net.Addr     { return w.remote }
func (w *webConn) Context() context.Context { return w.ctx }

// CloseWithError closes the socket with close status WebCloseBase+code
// and reason. The closing handshake runs in the background (the library
// waits up to five seconds for the peer's answer).
func (w *webConn) CloseWithError(code quic.ApplicationErrorCode, reason string) error {
	w.once.Do(func() {
		if len(reason) > 120 { // a close frame's reason is at most 123 bytes
			reason = reason[:120]
		}
		go w.ws.Close(websocket.StatusCode(rpc.WebCloseBase+int(code)), reason)
		w.cancel(errors.New("closed: " + reason))
	})
	return nil
}
