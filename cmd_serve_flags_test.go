package main

import (
	"bytes"
	"strings"
	"testing"

	"qpchat/node/server"
)

func TestServeLimitFlags(t *testing.T) {
	f := ServeLimitFlags{MaxMessageSize: 1 << 20, MaxQueueLength: 7, MaxKeyPackages: 3, MaxGroupSize: 9,
		MaxDevices: 4, MaxBatch: 5, LoginRateName: 1, LoginRateAddr: 2, MaxLoginDelay: 1e9, KPFetchRate: 6,
		MaxConnsPerAddr: 8, MaxConns: 10, MaxCallsPerConn: 11, MaxFetchWait: 2e9, RetryAbove: -1, LoginSessionTTL: 3e9}
	var cfg server.Config
	if err := f.apply(&cfg); err != nil {
		t.Fatal(err)
	}
	l := cfg.Limits
	if l.MaxQueueLength != 7 || l.MaxKeyPackages != 3 || l.MaxGroupSize != 9 || l.MaxDevices != 4 || l.RetryAbove != -1 ||
		l.KeyPackageFetchRate != 6 || l.MaxConnsPerAddr != 8 || cfg.MaxConns != 10 || cfg.LoginSessionTTL != 3e9 {
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
