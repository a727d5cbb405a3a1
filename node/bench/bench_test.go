package bench_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"qpchat/node/bench"
	"qpchat/node/server"
	"qpchat/opaque"
)

// TestRunDeliversEverything runs the benchmark driver briefly against an
// in-process node and checks its accounting: every message sent reaches
// each receiver of its group once.
func TestRunDeliversEverything(t *testing.T) {
	srv, err := server.New(server.Config{
		Listen:  "127.0.0.1:0",
		DataDir: filepath.Join(t.TempDir(), "node"),
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		OPAQUE:  opaque.QPChatTest(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	res, err := bench.Run(context.Background(), bench.Config{
		Addr: srv.Addr().String(), Fingerprint: srv.Fingerprint(),
		Clients: 2, GroupSize: 3, Batch: 5, PayloadSize: 64,
		Duration: 300 * time.Millisecond, DevicesPerUser: 4, WakeProbes: 3,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent == 0 || res.Delivered != 2*res.Sent {
		t.Errorf("sent %d, delivered %d; want delivered = 2 × sent (two receivers per group)", res.Sent, res.Delivered)
	}
	if res.ParkedDelivery.Max == 0 {
		t.Error("no wake-up probe was measured")
	}
	t.Log(res)
}

func TestConfigValidate(t *testing.T) {
	good := bench.Config{Clients: 1, GroupSize: 2, Batch: 1, PayloadSize: 16, Duration: time.Second}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, edit := range []func(*bench.Config){
		func(c *bench.Config) { c.Clients = 0 },
		func(c *bench.Config) { c.GroupSize = 1 },
		func(c *bench.Config) { c.Batch = 0 },
		func(c *bench.Config) { c.PayloadSize = 8 },
		func(c *bench.Config) { c.Duration = 0 },
	} {
		c := good
		edit(&c)
		if c.Validate() == nil {
			t.Errorf("Validate accepted %+v", c)
		}
	}
}
