package server

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/coder/websocket"

	"qpchat/rpc"
)

// testApp is a small stand-in for the embedded web app.
func testApp() fstest.MapFS {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("\x00asm wasm bytes"))
	zw.Close()
	return fstest.MapFS{
		"index.html":        {Data: []byte("<!doctype html><title>qpchat</title>")},
		"app.js":            {Data: []byte("console.log(1)")},
		"qpchat.wasm":       {Data: []byte("\x00asm wasm bytes")},
		"qpchat.wasm.gz":    {Data: gz.Bytes()},
		"sub/nested.txt":    {Data: []byte("x")},
		"secret/index.html": {Data: []byte("y")},
	}
}

func startWebNode(t *testing.T, edit func(*Config)) *node {
	t.Helper()
	return startNode(t, func(c *Config) {
		c.Web = WebConfig{Listen: "127.0.0.1:0", App: testApp()}
		if edit != nil {
			edit(c)
		}
	})
}

func TestWebHeaders(t *testing.T) {
	n := startWebNode(t, nil)
	base := "http://" + n.srv.WebAddr().String()
	get := func(path string, hdr map[string]string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", base+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		tr := &http.Transport{DisableCompression: true}
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}

	resp := get("/", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("GET / = %d, want 200", resp.StatusCode)
	}
	h := resp.Header
	csp := h.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self' 'wasm-unsafe-eval'", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	for _, bad := range []string{"unsafe-inline", "'unsafe-eval'", "http:", "https:", "*"} {
		if strings.Contains(csp, bad) {
			t.Errorf("CSP %q contains %q", csp, bad)
		}
	}
	for k, want := range map[string]string{
		"Cross-Origin-Opener-Policy":   "same-origin",
		"Cross-Origin-Embedder-Policy": "require-corp",
		"X-Content-Type-Options":       "nosniff",
		"X-Frame-Options":              "DENY",
		"Referrer-Policy":              "no-referrer",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if got := h.Get("Strict-Transport-Security"); got != "" {
		t.Errorf("plain HTTP sends Strict-Transport-Security %q", got)
	}
	if body, _ := io.ReadAll(resp.Body); !bytes.Contains(body, []byte("<title>qpchat")) {
		t.Errorf("GET / body = %q, want index.html", body)
	}

	resp = get("/qpchat.wasm", map[string]string{"Accept-Encoding": "gzip"})
	if resp.Header.Get("Content-Encoding") != "gzip" || resp.Header.Get("Content-Type") != "application/wasm" {
		t.Errorf("wasm with gzip: Content-Encoding %q, Content-Type %q; want gzip, application/wasm",
			resp.Header.Get("Content-Encoding"), resp.Header.Get("Content-Type"))
	}
	resp = get("/qpchat.wasm", nil)
	if resp.Header.Get("Content-Encoding") != "" || resp.Header.Get("Content-Type") != "application/wasm" {
		t.Errorf("wasm without gzip: Content-Encoding %q, Content-Type %q", resp.Header.Get("Content-Encoding"), resp.Header.Get("Content-Type"))
	}
	for _, p := range []string{"/sub/", "/sub", "/missing", "/qpchat.wasm.gz", "/../etc/passwd"} {
		if resp := get(p, nil); resp.StatusCode != 404 {
			t.Errorf("GET %s = %d, want 404 (no listings, no raw .gz)", p, resp.StatusCode)
		}
		if resp := get(p, nil); resp.Header.Get("Content-Security-Policy") == "" {
			t.Errorf("GET %s has no CSP", p)
		}
	}
	resp, err := http.Post(base+"/", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST / = %d, want 405", resp.StatusCode)
	}
}

func TestWebPlainHTTPOnlyOnLoopback(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeWebCert(t, dir)
	for _, tc := range []struct {
		cfg WebConfig
		ok  bool
	}{
		{WebConfig{Listen: "127.0.0.1:0"}, true},
		{WebConfig{Listen: "[::1]:8080"}, true},
		{WebConfig{Listen: "localhost:8080"}, true},
		{WebConfig{Listen: ":8080"}, false},
		{WebConfig{Listen: "0.0.0.0:8080"}, false},
		{WebConfig{Listen: "192.0.2.1:8080"}, false},
		{WebConfig{Listen: "example.com:443"}, false},
		{WebConfig{Listen: "nonsense"}, false},
		{WebConfig{Listen: ":443", TLSCertFile: certFile, TLSKeyFile: keyFile}, true},
		{WebConfig{Listen: ":443", ACMEDomain: "chat.example.com"}, true},
		{WebConfig{Listen: ":443", TLSCertFile: certFile}, false},
		{WebConfig{Listen: ":443", TLSCertFile: certFile, TLSKeyFile: keyFile, ACMEDomain: "chat.example.com"}, false},
	} {
		err := CheckWebAddr(tc.cfg)
		if (err == nil) != tc.ok {
			t.Errorf("CheckWebAddr(%+v) = %v, want ok=%v", tc.cfg, err, tc.ok)
		}
	}
	// New refuses it before binding anything.
	_, err := New(Config{Listen: "127.0.0.1:0", DataDir: filepath.Join(dir, "data"), Web: WebConfig{Listen: "0.0.0.0:0"}})
	if err == nil || !strings.Contains(err.Error(), "plain HTTP is only allowed") {
		t.Errorf("New with a plain non-loopback web listener: %v, want a refusal", err)
	}
}

func TestWebACMEConfig(t *testing.T) {
	s := &Server{cfg: populateConfig(Config{DataDir: t.TempDir(), Web: WebConfig{Listen: ":443", ACMEDomain: "chat.example.com"}})}
	conf, err := s.webTLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	if conf.GetCertificate == nil {
		t.Fatal("ACME TLS config has no GetCertificate")
	}
	hasALPN := false
	for _, p := range conf.NextProtos {
		hasALPN = hasALPN || p == "acme-tls/1"
	}
	if !hasALPN {
		t.Errorf("NextProtos %v lacks acme-tls/1 (TLS-ALPN-01)", conf.NextProtos)
	}
	// Another name never starts an order.
	_, err = conf.GetCertificate(&tls.ClientHelloInfo{ServerName: "other.example.com"})
	if err == nil {
		t.Error("GetCertificate for a name not configured succeeded")
	}
}

// writeWebCert writes a self-signed certificate for 127.0.0.1 and
// returns its files.
func writeWebCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: "qpchat web test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "web.crt"), filepath.Join(dir, "web.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestWebHTTPS runs the listener with its own certificate: HSTS, and a
// NodeService ping over wss:// whose node key is the QUIC identity, not
// the HTTPS certificate.
func TestWebHTTPS(t *testing.T) {
	certFile, keyFile := writeWebCert(t, t.TempDir())
	n := startNode(t, func(c *Config) {
		c.Web = WebConfig{Listen: "127.0.0.1:0", TLSCertFile: certFile, TLSKeyFile: keyFile, App: testApp()}
	})
	pemBytes, _ := os.ReadFile(certFile)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemBytes)
	tlsConf := &tls.Config{RootCAs: pool}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConf}}
	resp, err := hc.Get("https://" + n.srv.WebAddr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Strict-Transport-Security") == "" {
		t.Error("HTTPS answer without Strict-Transport-Security")
	}

	ctx := testCtx(t)
	cl, err := rpc.Dial(ctx, "wss://"+n.srv.WebAddr().String()+rpc.WebPath, rpc.DialOptions{Fingerprint: n.srv.Fingerprint(), WebTLS: tlsConf})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if cl.Fingerprint != n.srv.Fingerprint() || cl.BindingType() != rpc.BindingWeb {
		t.Errorf("web client: fingerprint %s binding %v, want the node's %s and %v", cl.Fingerprint, cl.BindingType(), n.srv.Fingerprint(), rpc.BindingWeb)
	}
	pingOnce(t, ctx, cl)

	// A plain ws:// to the HTTPS port fails, and plain ws:// elsewhere
	// than loopback is refused by the client before it dials.
	if _, err := rpc.Dial(ctx, "ws://192.0.2.1:80/rpc", rpc.DialOptions{}); err == nil || !strings.Contains(err.Error(), "only to the local machine") {
		t.Errorf("ws:// to a remote host: %v, want a refusal", err)
	}
}

func pingOnce(t *testing.T, ctx context.Context, cl *rpc.Client) {
	t.Helper()
	f, rel := cl.Node.Ping(ctx, func(p rpc.NodeService_ping_Params) error { p.SetNonce(42); return nil })
	defer rel()
	res, err := f.Struct()
	if err != nil {
		t.Fatal(cl.ExplainError("node", err))
	}
	if res.Nonce() != 42 {
		t.Errorf("ping nonce = %d, want 42", res.Nonce())
	}
}

// TestWebSocketOriginChecked: a page of another site cannot open the
// endpoint from a visitor's browser.
func TestWebSocketOriginChecked(t *testing.T) {
	n := startWebNode(t, nil)
	ctx := testCtx(t)
	u := "ws://" + n.srv.WebAddr().String() + rpc.WebPath
	_, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{
		Subprotocols: []string{rpc.WebSubprotocol},
		HTTPHeader:   http.Header{"Origin": {"https://evil.example"}},
	})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		code := 0
		if resp != nil {
			code = resp.StatusCode
		}
		t.Errorf("cross-origin WebSocket: err %v, status %d; want 403", err, code)
	}
	// Without the subprotocol the node closes at once.
	ws, _, err := websocket.Dial(ctx, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = ws.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
		t.Errorf("WebSocket without subprotocol: %v, want policy violation", err)
	}
}

// TestWebSocketSharesConnectionLimits: web connections count against
// the same per-address limit as QUIC ones.
func TestWebSocketSharesConnectionLimits(t *testing.T) {
	n := startWebNode(t, func(c *Config) { c.Limits.MaxConnsPerAddr = 1 })
	ctx := testCtx(t)
	u := "ws://" + n.srv.WebAddr().String() + rpc.WebPath
	first, err := rpc.Dial(ctx, u, rpc.DialOptions{Fingerprint: n.srv.Fingerprint()})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	pingOnce(t, ctx, first)
	// The second connection from the same address is closed as busy:
	// during the handshake (no ServerHello) or at its first call.
	second, err := rpc.Dial(ctx, u, rpc.DialOptions{Fingerprint: n.srv.Fingerprint()})
	if err == nil {
		defer second.Close()
		f, rel := second.Node.Ping(ctx, nil)
		_, err = f.Struct()
		rel()
		if err != nil {
			err = second.ExplainError(u, err)
		}
	}
	if err == nil || !strings.Contains(err.Error(), "busy") {
		t.Errorf("second connection from one address: %v, want busy", err)
	}
}

// TestWebSocketRefusesGarbage: after the handshake, bytes that are not
// sealed records end the connection with a protocol error.
func TestWebSocketRefusesGarbage(t *testing.T) {
	n := startWebNode(t, nil)
	ctx := testCtx(t)
	ws, _, err := websocket.Dial(ctx, "ws://"+n.srv.WebAddr().String()+rpc.WebPath, &websocket.DialOptions{Subprotocols: []string{rpc.WebSubprotocol}})
	if err != nil {
		t.Fatal(err)
	}
	// A ClientHello record whose body is not one.
	if err := ws.Write(ctx, websocket.MessageBinary, []byte{0, 0, 0, 3, 1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	_, _, err = ws.Read(ctx)
	if got := websocket.CloseStatus(err); got != websocket.StatusCode(rpc.WebCloseBase+int(rpc.CodeProtocol)) {
		t.Errorf("bad ClientHello: close status %d (%v), want %d", got, err, rpc.WebCloseBase+int(rpc.CodeProtocol))
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Error("node did not close")
	}
}
