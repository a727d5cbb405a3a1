package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// clearQPChatEnv unsets every QPCHAT_* variable for the test.
func clearQPChatEnv(t *testing.T) {
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "QPCHAT_") {
			t.Setenv(name, "")
			os.Unsetenv(name)
		}
	}
}

func writeConfig(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "qpchat.toml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// printedConfig runs serve --print-config and parses its key = value lines.
func printedConfig(t *testing.T, args ...string) (map[string]string, string) {
	t.Helper()
	code, out, errs := runCLI(t, append([]string{"serve", "--print-config"}, args...)...)
	if code != 0 {
		t.Fatalf("serve --print-config %v: exit %d, stderr %q", args, code, errs)
	}
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, " = "); ok && !strings.HasPrefix(l, "#") {
			m[k] = v
		}
	}
	return m, out
}

func TestServeConfigPrecedence(t *testing.T) {
	clearQPChatEnv(t)
	cfg := writeConfig(t, `
listen = "127.0.0.1:7777"   # file only
max-conns = 5               # file only
max_devices = 6             # file, and the variable
max-batch = 7               # file, the variable and a flag
shutdown-timeout = "3s"
admin-listen = "127.0.0.1:9191"
`)
	t.Setenv("QPCHAT_MAX_DEVICES", "60")
	t.Setenv("QPCHAT_MAX_BATCH", "70")
	got, out := printedConfig(t, "--config", cfg, "--max-batch", "700")
	for k, want := range map[string]string{
		"listen":           `"127.0.0.1:7777"`,
		"max-conns":        "5",
		"max-devices":      "60",
		"max-batch":        "700",
		"shutdown-timeout": `"3s"`,
		"admin-listen":     `"127.0.0.1:9191"`,
		"max-group-size":   "1000", // default
	} {
		if got[k] != want {
			t.Errorf("%s = %s, want %s", k, got[k], want)
		}
	}
	if strings.Contains(out, "config =") || strings.Contains(out, "print-config") {
		t.Errorf("printed configuration names --config or --print-config:\n%s", out)
	}

	// QPCHAT_CONFIG names the file as well; the printed configuration
	// is itself a valid file giving the same result.
	t.Setenv("QPCHAT_CONFIG", cfg)
	viaEnv, _ := printedConfig(t, "--max-batch", "700")
	if viaEnv["listen"] != `"127.0.0.1:7777"` || viaEnv["max-devices"] != "60" {
		t.Errorf("QPCHAT_CONFIG not read: %v", viaEnv)
	}
	os.Unsetenv("QPCHAT_CONFIG")
	os.Unsetenv("QPCHAT_MAX_DEVICES")
	os.Unsetenv("QPCHAT_MAX_BATCH")
	again, _ := printedConfig(t, "--config", writeConfig(t, out))
	for k, v := range got {
		if again[k] != v {
			t.Errorf("printed configuration read back: %s = %s, want %s", k, again[k], v)
		}
	}
}

func TestServeConfigSecretsPassphraseNotPrinted(t *testing.T) {
	clearQPChatEnv(t)
	t.Setenv(storePassphraseEnv, "very secret words")
	_, out := printedConfig(t)
	if strings.Contains(out, "very secret words") {
		t.Errorf("--print-config shows the passphrase:\n%s", out)
	}
}

func TestServeConfigErrors(t *testing.T) {
	clearQPChatEnv(t)
	for name, tc := range map[string]struct{ content, want string }{
		"unknown key":    {`max-con = 5`, "unknown keys max-con"},
		"secret":         {`store-passphrase = "hunter2"`, "looks like a secret"},
		"password":       {`admin_password = "x"`, "looks like a secret"},
		"table":          {"[serve]\nlisten = \":1\"", "must be a string"},
		"syntax":         {`listen = `, "qpchat.toml"},
		"bad value":      {`max-conns = "many"`, "max-conns"},
		"subcommand key": {`out = "x"`, "unknown keys out"},
	} {
		code, _, errs := runCLI(t, "serve", "--print-config", "--config", writeConfig(t, tc.content))
		if code == 0 || !strings.Contains(errs, tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want an error with %q", name, code, errs, tc.want)
		}
		oneErrorLine(t, errs)
	}
	code, _, errs := runCLI(t, "serve", "--config", filepath.Join(t.TempDir(), "missing.toml"))
	if code != 80 || !strings.Contains(errs, "missing.toml") {
		t.Errorf("missing file: exit %d, stderr %q", code, errs)
	}
	// The client commands do not read it.
	t.Setenv("QPCHAT_CONFIG", filepath.Join(t.TempDir(), "missing.toml"))
	if code, _, errs := runCLI(t, "client", "ping", "--help"); code != 0 {
		t.Errorf("client with QPCHAT_CONFIG set: exit %d, stderr %q", code, errs)
	}
}

func TestIsServe(t *testing.T) {
	for args, want := range map[string]bool{
		"serve":                          true,
		"--log-format json serve":        true,
		"--log-level=debug serve backup": true,
		"client ping":                    false,
		"client send g serve":            false,
		"-- serve":                       false,
		"":                               false,
	} {
		if got := isServe(strings.Fields(args)); got != want {
			t.Errorf("isServe(%q) = %v, want %v", args, got, want)
		}
	}
}

// FuzzParseConfig: no file content panics, and what is accepted maps
// only to non-secret keys.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("listen = \":7000\"\nmax-conns = 5\nadmin-allow-remote = true\nx = 1.5\n"))
	f.Add([]byte("[serve]\nlisten = 1"))
	f.Add([]byte("a = [1, 2]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseConfig("fuzz.toml", b)
		if err != nil {
			return
		}
		for k := range m {
			if secretKey(k) {
				t.Fatalf("accepted secret-looking key %q", k)
			}
		}
	})
}
