package bench_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
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

// TestRunParks: --park holds idle connections with a device in fetchWait
// through the run, and --metrics reads the node's memory and connection
// count from its admin listener.
func TestRunParks(t *testing.T) {
	srv, err := server.New(server.Config{
		Listen:  "127.0.0.1:0",
		DataDir: filepath.Join(t.TempDir(), "node"),
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		OPAQUE:  opaque.QPChatTest(),
		Admin:   server.AdminConfig{Listen: "127.0.0.1:0"},
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
		Clients: 1, GroupSize: 2, Batch: 5, PayloadSize: 64,
		Duration: 200 * time.Millisecond, DevicesPerUser: 4,
		Park: 6, Metrics: "http://" + srv.AdminAddr().String() + "/metrics",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res)
	if res.MemSetup == nil || res.MemParked == nil || res.MemEnd == nil {
		t.Fatalf("memory not read: %+v", res)
	}
	if got := res.MemParked.Conns - res.MemSetup.Conns; got != 6 {
		t.Errorf("parking added %d connections at the node, want 6", got)
	}
	if res.MemParked.RSS <= 0 || res.MemParked.HeapInuse <= 0 {
		t.Errorf("memory %v", res.MemParked)
	}
	if !strings.Contains(res.String(), "per parked connection") {
		t.Errorf("the report lacks the per-connection figure:\n%s", res)
	}
}

func TestParseMemoryRefusesNonsense(t *testing.T) {
	for _, in := range []string{
		"",
		"process_resident_memory_bytes 1e6\n",
		"process_resident_memory_bytes -5\ngo_memstats_heap_inuse_bytes 1\n",
		"process_resident_memory_bytes NaN\ngo_memstats_heap_inuse_bytes 1\n",
		"process_resident_memory_bytes 1e300\ngo_memstats_heap_inuse_bytes 1\n",
		"process_resident_memory_bytes " + strings.Repeat("9", 100000) + "\n",
	} {
		if m, err := bench.ParseMemory(strings.NewReader(in)); err == nil {
			t.Errorf("ParseMemory(%.40q) = %+v, want an error", in, m)
		}
	}
	m, err := bench.ParseMemory(strings.NewReader("# HELP x\nprocess_resident_memory_bytes 1.8e+07\ngo_memstats_heap_inuse_bytes 4096\nqpchat_connections 3\n"))
	if err != nil || m.RSS != 18_000_000 || m.HeapInuse != 4096 || m.Conns != 3 {
		t.Errorf("ParseMemory = %+v, %v", m, err)
	}
}

// FuzzParseMemory: any /metrics answer gives a result or an error.
func FuzzParseMemory(f *testing.F) {
	f.Add("process_resident_memory_bytes 1.8e+07\ngo_memstats_heap_inuse_bytes 4096\nqpchat_connections 3\n")
	f.Add("process_resident_memory_bytes NaN\n")
	f.Fuzz(func(t *testing.T, in string) {
		m, err := bench.ParseMemory(strings.NewReader(in))
		if err == nil && (m.RSS < 0 || m.HeapInuse < 0) {
			t.Fatalf("negative memory %+v accepted", m)
		}
	})
}
