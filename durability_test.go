package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"qpchat/internal/testport"
	"qpchat/mls"
	"qpchat/node/bench"
	"qpchat/opaque"
	"qpchat/rpc"
)

// TestDurabilityUnderSIGKILL runs the real `qpchat serve` binary, drives
// concurrent sends, kills the node with SIGKILL at 20 moments drawn from
// a seeded random source, restarts it each time, and checks that every
// send that returned success is fetchable, in order, exactly once, and
// that acknowledged messages stay deleted. QPCHAT_DURABILITY_SEED
// replays a run.
func TestDurabilityUnderSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills the node binary 20 times")
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("QPCHAT_DURABILITY_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("QPCHAT_DURABILITY_SEED: %v", err)
		}
		seed = v
	}
	t.Logf("seed %d (replay with QPCHAT_DURABILITY_SEED=%d)", seed, seed)
	rng := mrand.New(mrand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	dir := t.TempDir()
	bin := filepath.Join(dir, "qpchat")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	addr := freeUDPAddr(t)
	data := filepath.Join(dir, "node")
	n := &killableNode{t: t, bin: bin, addr: addr, data: data}

	n.start()
	w := setupDurabilityWorld(t, n)
	check := newOrderChecker(len(w.senders))

	const rounds = 20
	for round := range rounds {
		// Drain and verify what survived the last kill, then ack it; the
		// ack returned before the next kill, so those must never return.
		w.connect(t, n)
		w.receiveAndAck(t, check)
		// Concurrent senders until the kill.
		killAfter := time.Duration(20+rng.IntN(280)) * time.Millisecond
		var wg sync.WaitGroup
		for i := range w.senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				w.sendUntilError(i, check)
			}()
		}
		time.Sleep(killAfter)
		n.kill()
		// The clients would only notice the dead node at a timeout:
		// close their connections so the sends in flight fail now.
		for _, c := range w.conns {
			c.Close()
		}
		wg.Wait()
		t.Logf("round %d: killed after %v; %d sends acknowledged so far", round, killAfter, check.acknowledged())
		n.start()
	}
	w.connect(t, n)
	w.receiveAndAck(t, check)
	if err := check.allAcknowledgedSeen(); err != nil {
		t.Fatal(err)
	}
	if check.acknowledged() == 0 {
		t.Fatal("no send was acknowledged in 20 rounds")
	}
	t.Logf("%d acknowledged sends, %d messages received, each exactly once and in order", check.acknowledged(), check.received)
	n.kill()
}

// freeUDPAddr returns a loopback UDP address for a node restarted on
// the same address, outside the ephemeral range where other processes'
// QUIC clients could take it while the node is down (internal/testport).
func freeUDPAddr(t *testing.T) string {
	t.Helper()
	return testport.UDP(t)
}

// killableNode is a `qpchat serve` process.
type killableNode struct {
	t               *testing.T
	bin, addr, data string
	cmd             *exec.Cmd
	fingerprint     string
}

func (n *killableNode) start() {
	n.t.Helper()
	cmd := exec.Command(n.bin, "serve", "--listen", n.addr, "--data", n.data, "--log-level", "warn")
	out, err := cmd.StdoutPipe()
	if err != nil {
		n.t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.cmd = cmd
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if fp, ok := strings.CutPrefix(sc.Text(), "fingerprint "); ok {
			n.fingerprint = fp
			break
		}
	}
	if n.fingerprint == "" {
		n.t.Fatal("the node did not print its fingerprint")
	}
	go func() {
		for sc.Scan() {
		}
	}()
	// Wait until it answers (the store opens in Serve).
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c, err := bench.Dial(ctx, n.addr, n.fingerprint)
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
			n.t.Fatalf("the node does not answer after a restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (n *killableNode) kill() {
	n.cmd.Process.Signal(syscall.SIGKILL)
	n.cmd.Wait()
}

// durabilityWorld is one user with three sender devices and a receiver
// in one group.
type durabilityWorld struct {
	user     string
	keys     []ed25519.PrivateKey // senders, then the receiver
	group    []byte
	senders  []*bench.Device
	receiver *bench.Device
	conns    []*bench.Conn
	next     []int // next message index per sender
	after    uint64
}

const durabilitySenders = 3

func setupDurabilityWorld(t *testing.T, n *killableNode) *durabilityWorld {
	t.Helper()
	ctx := context.Background()
	c, err := bench.Dial(ctx, n.addr, n.fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w := &durabilityWorld{user: "durable", group: make([]byte, 32), next: make([]int, durabilitySenders)}
	rand.Read(w.group)
	login, uk, err := c.Register(ctx, opaque.QPChat(), w.user, []byte("a durable password"))
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	for range durabilitySenders + 1 {
		dk, _ := bench.NewDeviceKey(nil)
		if err := c.RegisterDevice(ctx, login, w.user, uk, dk); err != nil {
			t.Fatalf("register device: %v", err)
		}
		w.keys = append(w.keys, dk)
	}
	w.connect(t, n)
	devs := append(append([]*bench.Device{}, w.senders...), w.receiver)
	for _, d := range devs[1:] {
		kp, _, err := bench.KeyPackage(0x0001, w.user, uk, d.Key, time.Now(), 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.UploadKeyPackages(ctx, 0x0001, [][]byte{kp}, nil); err != nil {
			t.Fatalf("upload: %v", err)
		}
	}
	creator := devs[0]
	if err := creator.CreateGroup(ctx, w.group); err != nil {
		t.Fatal(err)
	}
	got, err := creator.FetchKeyPackages(ctx, w.user, 0x0001)
	if err != nil {
		t.Fatal(err)
	}
	var added, refs [][]byte
	for _, f := range got {
		m, err := mls.UnmarshalMLSMessage(f.KeyPackage)
		if err != nil {
			t.Fatal(err)
		}
		r, _ := mls.MakeKeyPackageRef(m.KeyPackage)
		added, refs = append(added, f.Device), append(refs, r)
	}
	if _, err := creator.Commit(ctx, w.group, bench.PrivateMessage(w.group, 0, mls.ContentTypeCommit, []byte("add")), added, nil, bench.Welcome(0x0001, refs)); err != nil {
		t.Fatalf("commit: %v", err)
	}
	// The receiver skips the Welcome.
	msgs, _, err := w.receiver.Fetch(ctx, 0, 0)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("receiver's Welcome: %d messages, %v", len(msgs), err)
	}
	if err := w.receiver.Ack(ctx, msgs[0].Seq); err != nil {
		t.Fatal(err)
	}
	w.after = msgs[0].Seq
	return w
}

// connect opens a fresh connection and device session per device.
func (w *durabilityWorld) connect(t *testing.T, n *killableNode) {
	t.Helper()
	for _, c := range w.conns {
		c.Close()
	}
	w.conns, w.senders = nil, nil
	ctx := context.Background()
	for i, k := range w.keys {
		c, err := bench.Dial(ctx, n.addr, n.fingerprint)
		if err != nil {
			t.Fatal(err)
		}
		d, err := c.AuthenticateDevice(ctx, w.user, k, c.Exporter)
		if err != nil {
			t.Fatalf("authenticate device %d: %v", i, err)
		}
		w.conns = append(w.conns, c)
		if i < durabilitySenders {
			w.senders = append(w.senders, d)
		} else {
			w.receiver = d
		}
	}
}

// sendUntilError sends one message at a time until the node dies.
func (w *durabilityWorld) sendUntilError(i int, check *orderChecker) {
	for {
		idx := w.next[i]
		w.next[i]++
		payload := fmt.Appendf(nil, "%d:%d", i, idx)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := w.senders[i].Send(ctx, w.group, [][]byte{bench.PrivateMessage(w.group, 1, mls.ContentTypeApplication, payload)})
		cancel()
		if err != nil {
			return // the node died: this send is unknown, not acknowledged
		}
		check.ack(i, idx)
	}
}

// receiveAndAck fetches everything queued, checks it and acks it.
func (w *durabilityWorld) receiveAndAck(t *testing.T, check *orderChecker) {
	t.Helper()
	ctx := context.Background()
	for {
		msgs, _, err := w.receiver.Fetch(ctx, 0, 0)
		if err != nil {
			t.Fatalf("fetch: %v", err)
		}
		if len(msgs) == 0 {
			return
		}
		for _, m := range msgs {
			if m.Seq <= w.after {
				t.Fatalf("message %d came back after it was acknowledged (ack up to %d)", m.Seq, w.after)
			}
			pm, err := mls.UnmarshalMLSMessage(m.Data)
			if err != nil || pm.PrivateMessage == nil {
				t.Fatalf("a queued message does not decode: %v", err)
			}
			var s, idx int
			if _, err := fmt.Sscanf(string(pm.PrivateMessage.Ciphertext), "%d:%d", &s, &idx); err != nil {
				t.Fatalf("payload %q: %v", pm.PrivateMessage.Ciphertext, err)
			}
			if err := check.receive(s, idx); err != nil {
				t.Fatal(err)
			}
			w.after = m.Seq
		}
		if err := w.receiver.Ack(ctx, w.after); err != nil {
			t.Fatalf("ack: %v", err)
		}
	}
}

// orderChecker tracks acknowledged and received messages per sender.
type orderChecker struct {
	mu       sync.Mutex
	acked    []map[int]bool
	last     []int // highest index received per sender
	seen     []map[int]bool
	received int
}

func newOrderChecker(senders int) *orderChecker {
	c := &orderChecker{last: make([]int, senders)}
	for i := range senders {
		c.acked = append(c.acked, map[int]bool{})
		c.seen = append(c.seen, map[int]bool{})
		c.last[i] = -1
	}
	return c
}

func (c *orderChecker) ack(s, idx int) {
	c.mu.Lock()
	c.acked[s][idx] = true
	c.mu.Unlock()
}

func (c *orderChecker) acknowledged() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, a := range c.acked {
		n += len(a)
	}
	return n
}

// receive checks order (increasing per sender) and uniqueness, and that
// no acknowledged message of the sender was skipped.
func (c *orderChecker) receive(s, idx int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s < 0 || s >= len(c.last) {
		return fmt.Errorf("message from unknown sender %d", s)
	}
	if c.seen[s][idx] {
		return fmt.Errorf("message %d of sender %d received twice", idx, s)
	}
	if idx <= c.last[s] {
		return fmt.Errorf("message %d of sender %d received after %d: out of order", idx, s, c.last[s])
	}
	for skipped := c.last[s] + 1; skipped < idx; skipped++ {
		if c.acked[s][skipped] {
			return fmt.Errorf("acknowledged message %d of sender %d is missing (got %d next)", skipped, s, idx)
		}
	}
	c.seen[s][idx] = true
	c.last[s] = idx
	c.received++
	return nil
}

func (c *orderChecker) allAcknowledgedSeen() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for s, a := range c.acked {
		for idx := range a {
			if !c.seen[s][idx] {
				return fmt.Errorf("acknowledged message %d of sender %d was never received", idx, s)
			}
		}
	}
	return nil
}
