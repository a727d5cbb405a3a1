package main

// A harness for tests that run a cluster of `qpchat serve` processes and
// kill, restart or cut them off: clusterProc is one node process,
// testCluster three of them sharing the files of serve cluster-init, and
// foClient a device that fails over between the nodes as the client's
// --server list does.

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"qpchat/internal/testport"
	"qpchat/node/bench"
	"qpchat/rpc"
)

// clusterProc is one node of a test cluster, a `qpchat serve` process
// that can be killed and started again on the same addresses and data.
type clusterProc struct {
	t           *testing.T
	bin, data   string
	addr        string   // QUIC (UDP) address clients use
	route       string   // --cluster-listen
	args        []string // cluster flags
	fingerprint string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	stderr *syncBuffer
	starts int
}

// launch starts the process; the returned function waits until it has
// printed its fingerprint (so nodes waiting for each other can start
// together).
func (p *clusterProc) launch() func() {
	p.t.Helper()
	cmd := exec.Command(p.bin, append([]string{"serve", "--listen", p.addr, "--data", p.data, "--log-level", "warn"}, p.args...)...)
	cmd.Env = testEnv(p.t)
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		p.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	exited := make(chan struct{})
	fp := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sent := false
		for sc.Scan() {
			if f, ok := strings.CutPrefix(sc.Text(), "fingerprint "); ok && !sent {
				fp <- f
				sent = true
			}
		}
		io.Copy(io.Discard, out)
		if !sent {
			close(fp)
		}
	}()
	go func() {
		cmd.Wait()
		close(exited)
	}()
	p.mu.Lock()
	p.cmd, p.exited, p.stderr = cmd, exited, stderr
	p.starts++
	p.mu.Unlock()
	return func() {
		p.t.Helper()
		select {
		case f, ok := <-fp:
			if !ok {
				p.t.Fatalf("node %s exited before printing its fingerprint; stderr:\n%s", p.addr, stderr)
			}
			// Set once, at the first start: clients read it while a node
			// restarts, and a restarted node must keep its key.
			if p.fingerprint == "" {
				p.fingerprint = f
			} else if f != p.fingerprint {
				p.t.Fatalf("node %s came back with key %s, had %s", p.addr, f, p.fingerprint)
			}
		case <-time.After(2 * time.Minute):
			p.t.Fatalf("node %s printed no fingerprint within 2 minutes; stderr:\n%s", p.addr, stderr)
		}
	}
}

// start launches the process and waits until it answers a ping.
func (p *clusterProc) start() {
	p.t.Helper()
	p.launch()()
	p.waitPing()
}

// waitPing waits until the node answers a ping over QUIC.
func (p *clusterProc) waitPing() {
	p.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c, err := bench.Dial(ctx, p.addr, p.fingerprint)
		if err == nil {
			f, rel := c.Node.Ping(ctx, func(p rpc.NodeService_ping_Params) error { p.SetNonce(1); return nil })
			_, err = f.Struct()
			rel()
			c.Close()
		}
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("node %s does not answer: %v; stderr:\n%s", p.addr, err, p.stderrText())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill sends SIGKILL and waits for the process to end.
func (p *clusterProc) kill() {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

func (p *clusterProc) stderrText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stderr == nil {
		return ""
	}
	return p.stderr.String()
}

// testCluster is three nodes of one cluster on loopback.
type testCluster struct {
	t     *testing.T
	procs []*clusterProc
}

// freeTCPAddr returns a loopback TCP address that was free a moment ago,
// outside the ephemeral range (see internal/testport).
func freeTCPAddr(t *testing.T) string {
	t.Helper()
	return testport.TCP(t, 1)[0]
}

// newTestCluster makes the shared files and the data directories of n
// nodes. peersOf gives the --cluster-peers of node i from the route
// addresses; nil means all of them. extra gives more flags of node i.
// The nodes are not started.
func newTestCluster(t *testing.T, n int, peersOf func(i int, routes []string) []string, extra func(i int, routes []string) []string) *testCluster {
	t.Helper()
	dir := t.TempDir()
	bin := qpchatBinary(t)
	shared := filepath.Join(dir, "shared")
	cmd := exec.Command(bin, "serve", "cluster-init", "--out", shared)
	cmd.Env = testEnv(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("serve cluster-init: %v\n%s", err, out)
	}
	var routes []string
	for range n {
		routes = append(routes, freeTCPAddr(t))
	}
	c := &testCluster{t: t}
	for i := range n {
		data := filepath.Join(dir, fmt.Sprintf("node%d", i+1))
		if err := os.Mkdir(data, 0o700); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"node.key", "server-cert.pem", "server-key.pem", "route.pem", "route-password"} {
			b, err := os.ReadFile(filepath.Join(shared, f))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(data, f), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		peers := routes
		if peersOf != nil {
			peers = peersOf(i, routes)
		}
		args := []string{"--cluster-name", "fail", "--cluster-listen", routes[i], "--cluster-peers", strings.Join(peers, ",")}
		if extra != nil {
			args = append(args, extra(i, routes)...)
		}
		c.procs = append(c.procs, &clusterProc{t: t, bin: bin, data: data, addr: freeUDPAddr(t), route: routes[i], args: args})
	}
	t.Cleanup(func() {
		for _, p := range c.procs {
			p.kill()
		}
		if t.Failed() {
			for i, p := range c.procs {
				s := p.stderrText()
				if len(s) > 8000 {
					s = "..." + s[len(s)-8000:]
				}
				t.Logf("node %d (%s) stderr:\n%s", i+1, p.addr, s)
			}
		}
	})
	return c
}

// start starts every node together and waits until all answer.
func (c *testCluster) start() {
	c.t.Helper()
	var waits []func()
	for _, p := range c.procs {
		waits = append(waits, p.launch())
	}
	for _, w := range waits {
		w()
	}
	for _, p := range c.procs[1:] {
		if p.fingerprint != c.procs[0].fingerprint {
			c.t.Fatalf("nodes with different keys: %s, %s", p.fingerprint, c.procs[0].fingerprint)
		}
	}
	for _, p := range c.procs {
		p.waitPing()
	}
}

// foClient is one device that fails over between the nodes: it uses
// its current node until a call fails, then the next one in the list
// (as the client's --server list does).
type foClient struct {
	user  string
	key   ed25519.PrivateKey
	procs []*clusterProc

	mu    sync.Mutex
	at    int // index of the current node
	conn  *bench.Conn
	dev   *bench.Device
	moves int // failovers
	nodes map[int]bool
}

func newFOClient(user string, key ed25519.PrivateKey, procs []*clusterProc, home int) *foClient {
	return &foClient{user: user, key: key, procs: procs, at: home, nodes: map[int]bool{}}
}

// device returns the device session on the current node, connecting
// (and failing over) if there is none, until ctx ends.
func (c *foClient) device(ctx context.Context) (*bench.Device, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.dev == nil {
		p := c.procs[c.at]
		dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		conn, err := bench.Dial(dctx, p.addr, p.fingerprint)
		if err == nil {
			var d *bench.Device
			if d, err = conn.AuthenticateDevice(dctx, c.user, c.key, conn.Exporter); err == nil {
				c.conn, c.dev = conn, d
				c.nodes[c.at] = true
			} else {
				conn.Close()
			}
		}
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			c.at = (c.at + 1) % len(c.procs)
			c.moves++
			time.Sleep(20 * time.Millisecond)
		}
	}
	return c.dev, nil
}

// node returns the index of the node the client uses now.
func (c *foClient) node() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.at
}

// failed drops the connection d came on (if it is still the current
// one) and moves to the next node.
func (c *foClient) failed(d *bench.Device) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dev != nil && c.dev == d {
		c.conn.Close()
		c.conn, c.dev = nil, nil
		c.at = (c.at + 1) % len(c.procs)
		c.moves++
	}
}

// dropIfOn closes the connection if it is to node k: a killed node's
// clients would notice only at a timeout (QUIC gets no reset from a dead
// process), and the test need not wait for it.
func (c *foClient) dropIfOn(k int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dev != nil && c.at == k {
		c.conn.Close()
		c.conn, c.dev = nil, nil
		c.at = (c.at + 1) % len(c.procs)
		c.moves++
	}
}

// moveTo connects the client to node k next.
func (c *foClient) moveTo(k int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dev != nil {
		c.conn.Close()
		c.conn, c.dev = nil, nil
	}
	c.at = k
}

func (c *foClient) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		c.conn.Close()
		c.conn, c.dev = nil, nil
	}
}

func (c *foClient) stats() (moves int, nodes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.moves, len(c.nodes)
}
