package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"

	"qpchat/node/server"
)

// runCLI runs the command line in-process and returns exit code and output.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// oneErrorLine checks that stderr is exactly one line.
func oneErrorLine(t *testing.T, stderr string) {
	t.Helper()
	if strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "\n") {
		t.Errorf("stderr = %q, want exactly one line", stderr)
	}
}

// silentAddr returns a UDP address where nothing answers.
func silentAddr(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}

func TestVersion(t *testing.T) {
	code, out, errs := runCLI(t, "version")
	if code != 0 || errs != "" {
		t.Fatalf("version: exit %d, stderr %q", code, errs)
	}
	if !strings.HasPrefix(out, "qpchat "+version+" (commit ") || !strings.Contains(out, runtime.Version()) {
		t.Errorf("version printed %q", out)
	}
}

func TestHelpNamesEnvVars(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"serve", "--help"}, []string{"QPCHAT_LISTEN", "QPCHAT_DATA", "QPCHAT_TLS_CERT", "QPCHAT_TLS_KEY", "QPCHAT_LOG_FORMAT"}},
		{[]string{"client", "ping", "--help"}, []string{"QPCHAT_SERVER", "QPCHAT_STATE_DIR", "QPCHAT_SERVER_FINGERPRINT", "QPCHAT_CA", "QPCHAT_COUNT", "$XDG_DATA_HOME/qpchat"}},
	} {
		code, out, _ := runCLI(t, tc.args...)
		if code != 0 {
			t.Errorf("%v: exit %d", tc.args, code)
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("%v: help does not name %s", tc.args, w)
			}
		}
	}
}

func TestUsageError(t *testing.T) {
	code, _, errs := runCLI(t, "bogus")
	if code != 80 {
		t.Errorf("unknown command: exit %d, want 80", code)
	}
	oneErrorLine(t, errs)
	code, _, errs = runCLI(t, "serve", "--log-format", "yaml")
	if code != 80 || !strings.Contains(errs, "yaml") {
		t.Errorf("bad --log-format: exit %d, stderr %q", code, errs)
	}
}

func TestClientErrors(t *testing.T) {
	state := t.TempDir()
	addr := silentAddr(t)
	code, out, errs := runCLI(t, "client", "--server", addr, "--state-dir", state, "--timeout", "300ms", "ping")
	if code != exitUnreachable || out != "" || !strings.Contains(errs, "cannot reach "+addr) {
		t.Errorf("ping to a silent address: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	oneErrorLine(t, errs)

	// The environment stands in for flags.
	t.Setenv("QPCHAT_SERVER", addr)
	t.Setenv("QPCHAT_STATE_DIR", state)
	t.Setenv("QPCHAT_TIMEOUT", "300ms")
	code, _, errs = runCLI(t, "client", "ping")
	if code != exitUnreachable || !strings.Contains(errs, "cannot reach "+addr) {
		t.Errorf("ping with QPCHAT_SERVER: exit %d, stderr %q", code, errs)
	}

	code, _, errs = runCLI(t, "client", "--server-fingerprint", "md5:00", "ping")
	if code != exitError || !strings.Contains(errs, "fingerprint") {
		t.Errorf("malformed --server-fingerprint: exit %d, stderr %q", code, errs)
	}
	oneErrorLine(t, errs)
}

func TestServeErrors(t *testing.T) {
	code, _, errs := runCLI(t, "serve", "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--tls-cert", "x.pem")
	if code != exitError || !strings.Contains(errs, "key") {
		t.Errorf("serve with --tls-cert only: exit %d, stderr %q", code, errs)
	}
	oneErrorLine(t, errs)
}

func TestLogFormat(t *testing.T) {
	for format, want := range map[string]string{"json": `{"time":`, "text": "time="} {
		var buf bytes.Buffer
		g := &Globals{LogFormat: format, LogLevel: "info", stderr: &buf}
		g.logger().Debug("hidden")
		g.logger().Info("shown", "k", "v")
		if got := buf.String(); !strings.HasPrefix(got, want) || strings.Contains(got, "hidden") || strings.Count(got, "\n") != 1 {
			t.Errorf("--log-format %s --log-level info wrote %q", format, got)
		}
	}
}

// writeCAIssued writes a CA certificate, and a node certificate for
// 127.0.0.1 signed by it, as PEM files in dir.
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

func TestClientCA(t *testing.T) {
	dir := t.TempDir()
	caFile, certFile, keyFile := writeCAIssued(t, dir)
	srv, err := server.New(server.Config{Listen: "127.0.0.1:0", DataDir: filepath.Join(dir, "data"), TLSCertFile: certFile, TLSKeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve = %v", err)
		}
	}()
	addr, state := srv.Addr().String(), filepath.Join(dir, "state")

	code, out, errs := runCLI(t, "client", "--server", addr, "--state-dir", state, "--ca", caFile, "ping")
	if code != 0 || !strings.HasPrefix(out, "pong from "+addr) || errs != "" {
		t.Fatalf("ping with --ca: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if _, err := os.Stat(filepath.Join(state, "server-pins.json")); err == nil {
		t.Error("a CA-verified ping pinned the key")
	}

	otherCA, _, _ := writeCAIssued(t, t.TempDir())
	code, _, errs = runCLI(t, "client", "--server", addr, "--state-dir", state, "--ca", otherCA, "ping")
	if code != exitUntrusted || !strings.Contains(errs, "not trusted by the given CA") {
		t.Errorf("ping with another --ca: exit %d, stderr %q", code, errs)
	}
	code, _, errs = runCLI(t, "client", "--server", addr, "--state-dir", state, "--ca", keyFile, "ping")
	if code != exitError || !strings.Contains(errs, "no PEM certificate") {
		t.Errorf("ping with a --ca that holds no certificate: exit %d, stderr %q", code, errs)
	}
	oneErrorLine(t, errs)
}

// TestEveryCommandAndFlagDocumented walks the whole command tree: every
// command, flag and positional argument has help text, and every flag
// reads a QPCHAT_* variable.
func TestEveryCommandAndFlagDocumented(t *testing.T) {
	var cli CLI
	k, err := kong.New(&cli, kong.Name("qpchat"), kong.DefaultEnvars("QPCHAT"), kong.Exit(func(int) {}))
	if err != nil {
		t.Fatal(err)
	}
	commands, flags := 0, 0
	var walk func(n *kong.Node)
	walk = func(n *kong.Node) {
		path := n.FullPath()
		if n.Parent != nil {
			commands++
			if strings.TrimSpace(n.Help) == "" {
				t.Errorf("command %q has no help", path)
			}
		}
		for _, f := range n.Flags {
			if f.Name == "help" {
				continue
			}
			flags++
			if strings.TrimSpace(f.Help) == "" {
				t.Errorf("%s --%s has no help", path, f.Name)
			}
			if len(f.Envs) == 0 || !strings.HasPrefix(f.Envs[0], "QPCHAT_") {
				t.Errorf("%s --%s reads no QPCHAT_* variable (%v)", path, f.Name, f.Envs)
			}
		}
		for _, p := range n.Positional {
			if strings.TrimSpace(p.Help) == "" {
				t.Errorf("%s <%s> has no help", path, p.Name)
			}
		}
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(k.Model.Node)
	t.Logf("%d commands, %d flags checked", commands, flags)
	if commands < 4 || flags < 10 {
		t.Errorf("walked only %d commands and %d flags", commands, flags)
	}
}
