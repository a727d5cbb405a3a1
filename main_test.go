package main

import (
	"bytes"
	"net"
	"runtime"
	"strings"
	"testing"
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
		{[]string{"client", "ping", "--help"}, []string{"QPCHAT_SERVER", "QPCHAT_STATE_DIR", "QPCHAT_SERVER_FINGERPRINT", "QPCHAT_CA", "QPCHAT_COUNT"}},
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
	if code != exitError || out != "" || !strings.Contains(errs, "cannot reach "+addr) {
		t.Errorf("ping to a silent address: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	oneErrorLine(t, errs)

	// The environment stands in for flags.
	t.Setenv("QPCHAT_SERVER", addr)
	t.Setenv("QPCHAT_STATE_DIR", state)
	t.Setenv("QPCHAT_TIMEOUT", "300ms")
	code, _, errs = runCLI(t, "client", "ping")
	if code != exitError || !strings.Contains(errs, "cannot reach "+addr) {
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
