package server

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"qpchat/rpc"
)

// logBuffer collects a test server's log and prints it if the test fails.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func testConfig(t testing.TB) Config {
	lb := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server log:\n%s", lb)
		}
	})
	return Config{
		Listen:  "127.0.0.1:0",
		DataDir: filepath.Join(t.TempDir(), "data"),
		Version: "test",
		Logger:  slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// testServer is a Server running Serve in the background.
type testServer struct {
	*Server
	cancel context.CancelFunc
	errc   chan error
	once   sync.Once
	err    error
}

func startServer(t testing.TB, cfg Config) *testServer {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{Server: s, cancel: cancel, errc: make(chan error, 1)}
	go func() { ts.errc <- s.Serve(ctx) }()
	t.Cleanup(func() {
		if err := ts.stop(); err != nil {
			t.Errorf("Serve = %v", err)
		}
	})
	return ts
}

// stop cancels Serve's context and returns what Serve returned.
func (ts *testServer) stop() error {
	ts.once.Do(func() {
		ts.cancel()
		select {
		case ts.err = <-ts.errc:
		case <-time.After(30 * time.Second):
			ts.err = errors.New("Serve did not return within 30s of its context ending")
		}
	})
	return ts.err
}

func dial(t testing.TB, s *testServer) *rpc.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := rpc.Dial(ctx, s.Addr().String(), rpc.DialOptions{Fingerprint: s.Fingerprint()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// ping calls NodeService.ping and checks the echoed nonce.
func ping(c *rpc.Client, nonce uint64) (version string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fut, release := c.Node.Ping(ctx, func(p rpc.NodeService_ping_Params) error {
		p.SetNonce(nonce)
		return nil
	})
	defer release()
	res, err := fut.Struct()
	if err != nil {
		return "", err
	}
	if got := res.Nonce(); got != nonce {
		return "", errors.New("ping: wrong nonce in the answer")
	}
	return res.Version()
}

func TestPing(t *testing.T) {
	s := startServer(t, testConfig(t))
	a, b := dial(t, s), dial(t, s)
	for i := range uint64(3) {
		for _, c := range []*rpc.Client{a, b} {
			v, err := ping(c, 1000+i)
			if err != nil {
				t.Fatalf("ping: %v", err)
			}
			if v != "test" {
				t.Errorf("ping version = %q, want %q", v, "test")
			}
		}
	}
}

func TestIdentityPersists(t *testing.T) {
	cfg := testConfig(t)
	s1, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	fp := s1.Fingerprint()
	if !s1.CreatedIdentity() || !strings.HasPrefix(fp, "sha256:") {
		t.Errorf("first New: created %v, fingerprint %q", s1.CreatedIdentity(), fp)
	}
	s1.ln.Shutdown()

	s2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.ln.Shutdown()
	if s2.CreatedIdentity() || s2.Fingerprint() != fp {
		t.Errorf("second New: created %v, fingerprint %s; want reuse of %s", s2.CreatedIdentity(), s2.Fingerprint(), fp)
	}

	for path, want := range map[string]os.FileMode{
		cfg.DataDir:                              0o700,
		filepath.Join(cfg.DataDir, certFileName): 0o600,
		filepath.Join(cfg.DataDir, keyFileName):  0o600,
	} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("mode of %s = %v, want %v", path, st.Mode().Perm(), want)
		}
	}

	// Half an identity is an error, not a silent new key.
	if err := os.Remove(filepath.Join(cfg.DataDir, certFileName)); err != nil {
		t.Fatal(err)
	}
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "only one of") {
		t.Errorf("New with the key but no certificate: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	cfg := testConfig(t)
	cfg.TLSCertFile = "cert.pem"
	if _, err := New(cfg); err == nil {
		t.Error("New with --tls-cert but no --tls-key succeeded")
	}
	cfg = testConfig(t)
	cfg.DataDir = ""
	if _, err := New(cfg); err == nil {
		t.Error("New without a data directory succeeded")
	}
	cfg = testConfig(t)
	cfg.Listen = "127.0.0.1:notaport"
	if _, err := New(cfg); err == nil {
		t.Error("New with a bad listen address succeeded")
	}
}

// writeCAIssued writes a CA certificate, and a node certificate for
// 127.0.0.1 it signed with its key, as PEM files in dir.
func writeCAIssued(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	caPub, caPriv, _ := ed25519.GenerateKey(rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caPub, caPriv)
	if err != nil {
		t.Fatal(err)
	}
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "node"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caTmpl, pub, caPriv)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(priv)
	write := func(name, typ string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("cert.pem", "CERTIFICATE", der), write("key.pem", "PRIVATE KEY", pkcs8)
}

func TestTLSCertFiles(t *testing.T) {
	caFile, certFile, keyFile := writeCAIssued(t, t.TempDir())
	cfg := testConfig(t)
	cfg.TLSCertFile, cfg.TLSKeyFile = certFile, keyFile
	s := startServer(t, cfg)
	if s.CreatedIdentity() {
		t.Error("a node with --tls-cert made its own identity")
	}

	caPEM, _ := os.ReadFile(caFile)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := rpc.Dial(ctx, s.Addr().String(), rpc.DialOptions{RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := ping(c, 7); err != nil {
		t.Fatal(err)
	}
	if c.Fingerprint != s.Fingerprint() {
		t.Errorf("client saw key %s, server has %s", c.Fingerprint, s.Fingerprint())
	}
}

func TestShutdownWaitsForCallsInFlight(t *testing.T) {
	cfg := testConfig(t)
	cfg.ShutdownTimeout = time.Minute
	s := startServer(t, cfg)
	c := dial(t, s)
	if _, err := ping(c, 1); err != nil {
		t.Fatal(err)
	}

	done, err := s.beginCall() // a call in flight
	if err != nil {
		t.Fatal(err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- s.stop() }()

	// New calls are refused while the old one finishes.
	deadline := time.Now().Add(10 * time.Second)
	for {
		d, err := s.beginCall()
		if errors.Is(err, ErrShuttingDown) {
			break
		}
		d()
		if time.Now().After(deadline) {
			t.Fatal("beginCall still accepted calls 10s after shutdown began")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := ping(c, 2); err == nil {
		t.Error("a ping during shutdown succeeded")
	}
	select {
	case err := <-stopped:
		t.Fatalf("Serve returned (%v) with a call in flight", err)
	case <-time.After(100 * time.Millisecond):
	}

	done()
	if err := <-stopped; err != nil {
		t.Errorf("Serve = %v, want nil after a graceful stop", err)
	}
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("client connection still open after Serve returned")
	}
	if _, err := ping(c, 3); err == nil || !strings.Contains(c.ExplainError("node", err).Error(), "shutting down") {
		t.Errorf("ping after shutdown: %v, explained as %v; want shutting down", err, c.ExplainError("node", err))
	}
}

func TestShutdownTimeout(t *testing.T) {
	cfg := testConfig(t)
	cfg.ShutdownTimeout = 50 * time.Millisecond
	s := startServer(t, cfg)
	if _, err := s.beginCall(); err != nil { // never finishes
		t.Fatal(err)
	}
	if err := s.stop(); err != nil {
		t.Errorf("Serve = %v, want nil after the shutdown timeout", err)
	}
}

func TestMaxConns(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxConns = 1
	s := startServer(t, cfg)
	a := dial(t, s)
	if _, err := ping(a, 1); err != nil {
		t.Fatal(err)
	}
	b := dial(t, s)
	_, err := ping(b, 2)
	if err == nil {
		t.Fatal("a connection over MaxConns was served")
	}
	<-b.Done()
	if msg := b.ExplainError("node", err).Error(); !strings.Contains(msg, "busy") {
		t.Errorf("refused connection explained as %q, want busy", msg)
	}
	if _, err := ping(a, 3); err != nil {
		t.Errorf("ping on the first connection after the refusal: %v", err)
	}
}
