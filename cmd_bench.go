package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"qpchat/node/bench"
)

// BenchCmd drives a running node over QUIC and reports throughput and
// latency (like nats bench or redis-benchmark). It creates throw-away
// accounts named bench-*.
type BenchCmd struct {
	Server            string        `default:"127.0.0.1:7000" placeholder:"HOST:PORT" help:"Address of the node."`
	ServerFingerprint string        `required:"" placeholder:"sha256:HEX" help:"Fingerprint of the node's key (printed by qpchat serve)."`
	Clients           int           `short:"c" default:"64" help:"Senders, each with its own group."`
	GroupSize         int           `short:"g" default:"2" help:"Devices per group: the sender and G-1 receivers."`
	Batch             int           `short:"b" default:"100" help:"Messages per send call."`
	Payload           int           `default:"256" help:"Payload bytes per message."`
	Duration          time.Duration `short:"d" default:"10s" help:"How long to send."`
	Conns             int           `default:"0" help:"QUIC connections shared by the devices (0: min(clients, 16))."`
	DevicesPerUser    int           `default:"32" help:"Devices per benchmark account (at most the node's --max-devices)."`
	WakeProbes        int           `default:"200" help:"After the run, single messages sent to a receiver parked in fetchWait, to measure the wake-up alone."`
	Park              int           `default:"0" placeholder:"N" help:"Also hold N idle connections, each with one device parked in fetchWait, for the whole run (raise the node's --max-conns-per-addr to match)."`
	Metrics           string        `placeholder:"URL" help:"The node's admin metrics URL (http://127.0.0.1:9090/metrics): report its memory after setup, with the parked connections, and after the run."`
}

// Run sets up and runs the benchmark, then prints the result.
func (c *BenchCmd) Run(g *Globals) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := bench.Config{
		Addr: c.Server, Fingerprint: c.ServerFingerprint,
		Clients: c.Clients, GroupSize: c.GroupSize, Batch: c.Batch,
		PayloadSize: c.Payload, Duration: c.Duration,
		Conns: c.Conns, DevicesPerUser: c.DevicesPerUser, WakeProbes: c.WakeProbes,
		Park: c.Park, Metrics: c.Metrics, Log: g.stderr,
	}
	fmt.Fprintf(g.stdout, "qpchat bench: C=%d G=%d B=%d payload=%d B for %v against %s\n",
		c.Clients, c.GroupSize, c.Batch, c.Payload, c.Duration, c.Server)
	res, err := bench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprint(g.stdout, res)
	return nil
}
