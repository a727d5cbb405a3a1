package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"

	"qpchat/node/server"
)

func TestServeLimitFlags(t *testing.T) {
	f := ServeLimitFlags{MaxMessageSize: 1 << 20, MaxQueueLength: 7, MaxKeyPackages: 3, MaxGroupSize: 9,
		MaxDevices: 4, MaxBatch: 5, LoginRateName: 1, LoginRateAddr: 2, MaxLoginDelay: 1e9, KPFetchRate: 6,
		MaxConnsPerAddr: 8, MaxConns: 10, MaxCallsPerConn: 11, MaxFetchWait: 2e9, RetryAbove: -1, LoginSessionTTL: 3e9,
		MaxConnBuffer: 5 << 20, MaxAddrBuffer: 6 << 20, MaxTotalBuffer: 7 << 20,
		MaxFileSize: 12, FileQuota: 13, FileTTL: 14e9}
	var cfg server.Config
	if err := f.apply(&cfg); err != nil {
		t.Fatal(err)
	}
	l := cfg.Limits
	if l.MaxQueueLength != 7 || l.MaxKeyPackages != 3 || l.MaxGroupSize != 9 || l.MaxDevices != 4 || l.RetryAbove != -1 ||
		l.KeyPackageFetchRate != 6 || l.MaxConnsPerAddr != 8 || cfg.MaxConns != 10 || cfg.LoginSessionTTL != 3e9 ||
		cfg.MaxConnBuffer != 5<<20 || cfg.MaxAddrBuffer != 6<<20 || cfg.MaxTotalBuffer != 7<<20 ||
		l.MaxFileSize != 12 || l.FileQuota != 13 || l.FileTTL != 14e9 {
		t.Errorf("flags not applied: %+v", cfg)
	}

	bad := f
	bad.MaxQueueLength, bad.RetryAbove, bad.MaxMessageSize = 0, 0, 1<<30
	err := bad.apply(&cfg)
	if err == nil {
		t.Fatal("invalid limits accepted")
	}
	for _, want := range []string{"--max-queue-length", "--retry-above", "--max-message-size"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}

	for _, c := range []struct {
		conn, addr, total int64
		want              string
	}{
		{4<<20 - 1, 8 << 20, 16 << 20, "--max-conn-buffer"},
		{4 << 20, 4<<20 - 1, 16 << 20, "--max-addr-buffer"},
		{4 << 20, 8 << 20, 8<<20 - 1, "--max-total-buffer"},
	} {
		bad := f
		bad.MaxConnBuffer, bad.MaxAddrBuffer, bad.MaxTotalBuffer = c.conn, c.addr, c.total
		if err := bad.apply(&cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("buffers %d/%d/%d: error %v, want one naming %s", c.conn, c.addr, c.total, err, c.want)
		}
	}

	t.Setenv(storePassphraseEnv, "")
	if err := f.apply(&cfg); err == nil {
		t.Error("an empty store passphrase was accepted")
	}
	t.Setenv(storePassphraseEnv, "secret words")
	if err := f.apply(&cfg); err != nil || string(cfg.StorePassphrase) != "secret words" {
		t.Errorf("store passphrase from the environment: %v", err)
	}
}

func TestServeFlagsParse(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"serve", "--data", t.TempDir(), "--listen", "127.0.0.1:notaport", "--max-devices", "0"}, &out, &errb)
	if code == 0 || !strings.Contains(errb.String(), "--max-devices must be positive") {
		t.Errorf("exit %d, stderr %q; want a clear error for --max-devices 0", code, errb.String())
	}
}

// TestServeFlagDefaults: the defaults of `qpchat serve` are the ones
// docs/PROTOCOL.md (Limits and abuse) documents.
func TestServeFlagDefaults(t *testing.T) {
	var cli CLI
	k, err := kong.New(&cli, kong.Name("qpchat"), kong.DefaultEnvars("QPCHAT"), kong.Exit(func(int) {}))
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "QPCHAT_") {
			t.Setenv(name, "")
			os.Unsetenv(name)
		}
	}
	if _, err := k.Parse([]string{"serve"}); err != nil {
		t.Fatal(err)
	}
	var cfg server.Config
	if err := cli.Serve.ServeLimitFlags.apply(&cfg); err != nil {
		t.Fatal(err)
	}
	want := server.Limits{
		MaxMessageSize: 1 << 20, MaxQueueLength: 100000, MaxKeyPackages: 100, MaxGroupSize: 1000,
		MaxDevices: 32, MaxBatch: 1000, LoginRateName: 10, LoginRateAddr: 30, MaxLoginDelay: 30 * time.Second,
		KeyPackageFetchRate: 30, MaxConnsPerAddr: 32, MaxCallsPerConn: 64, MaxFetchWait: 25 * time.Second,
		RetryAbove: 100, MaxFileSize: 100 << 20, FileQuota: 1 << 30, FileTTL: 7 * 24 * time.Hour,
	}
	if cfg.Limits != want {
		t.Errorf("default limits\n got %+v\nwant %+v", cfg.Limits, want)
	}
	if cfg.MaxConnBuffer != server.DefaultMaxConnBuffer || cfg.MaxAddrBuffer != server.DefaultMaxAddrBuffer || cfg.MaxTotalBuffer != server.DefaultMaxTotalBuffer {
		t.Errorf("default buffers %d/%d/%d, want the server's defaults", cfg.MaxConnBuffer, cfg.MaxAddrBuffer, cfg.MaxTotalBuffer)
	}
	if cfg.MaxConns != 1024 || cfg.LoginSessionTTL != 10*time.Minute || cli.Serve.Listen != ":7000" || cli.Serve.ShutdownTimeout != 10*time.Second {
		t.Errorf("defaults: max-conns %d, login-session-ttl %v, listen %q, shutdown-timeout %v",
			cfg.MaxConns, cfg.LoginSessionTTL, cli.Serve.Listen, cli.Serve.ShutdownTimeout)
	}
}
