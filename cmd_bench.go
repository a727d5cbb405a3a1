package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"qpchat/node/bench"
)

// BenchCmd drives a running node over QUIC and reports throughput and
// latency (like nats bench or redis-benchmark). It creates throw-away
// accounts named bench-*.
type BenchCmd struct {
	Server            string        `default:"127.0.0.1:7000" placeholder:"HOST:PORT,..." help:"Address of the node, or the nodes of a cluster, comma-separated: the connections are spread over them, each receiver on another node than its sender, so the wake-up is measured across nodes."`
	ServerFingerprint string        `required:"" placeholder:"sha256:HEX" help:"Fingerprint of the node's key (printed by qpchat serve)."`
	Clients           int           `short:"c" default:"64" help:"Senders, each with its own group."`
	GroupSize         int           `short:"g" default:"2" help:"Devices per group: the sender and G-1 receivers."`
	Batch             int           `short:"b" default:"100" help:"Messages per send call."`
	Payload           int           `default:"256" help:"Payload bytes per message."`
	Duration          time.Duration `short:"d" default:"10s" help:"How long to send."`
	Conns             int           `default:"0" help:"QUIC connections shared by the devices (0: min(clients, 16)), rounded up to a multiple of the --server addresses."`
	DevicesPerUser    int           `default:"32" help:"Devices per benchmark account (at most the node's --max-devices)."`
	WakeProbes        int           `default:"200" help:"After the run, single messages sent to a receiver parked in fetchWait, to measure the wake-up alone."`
	Park              int           `default:"0" placeholder:"N" help:"Also hold N idle connections, each with one device parked in fetchWait, for the whole run (raise the node's --max-conns-per-addr to match)."`
	Metrics           string        `placeholder:"URL" help:"The node's admin metrics URL (http://127.0.0.1:9090/metrics): report its memory after setup, with the parked connections, and after the run."`
}

// Run sets up and runs the benchmark, then prints the result.
func (c *BenchCmd) Run(g *Globals) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	addrs, err := splitServers(c.Server)
	if err != nil {
		return err
	}
	cfg := bench.Config{
		Addr: addrs[0], Addrs: addrs, Fingerprint: c.ServerFingerprint,
		Clients: c.Clients, GroupSize: c.GroupSize, Batch: c.Batch,
		PayloadSize: c.Payload, Duration: c.Duration,
		Conns: c.Conns, DevicesPerUser: c.DevicesPerUser, WakeProbes: c.WakeProbes,
		Park: c.Park, Metrics: c.Metrics, Log: g.stderr,
	}
	against := addrs[0]
	if len(addrs) > 1 {
		against = fmt.Sprintf("%d nodes %s (each receiver on another node than its sender)", len(addrs), strings.Join(addrs, ","))
	}
	fmt.Fprintf(g.stdout, "qpchat bench: C=%d G=%d B=%d payload=%d B for %v against %s\n",
		c.Clients, c.GroupSize, c.Batch, c.Payload, c.Duration, against)
	before := loadAverage()
	res, err := bench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprint(g.stdout, res)
	if before != "" {
		// Other work on the machine moves the figures: say how busy it was.
		fmt.Fprintf(g.stdout, "load average (1, 5, 15 min): %s before, %s after\n", before, loadAverage())
	}
	return nil
}

// loadAverage returns the machine's load averages from /proc/loadavg
// (Linux), or "" where there is none.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
