package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// routeProxy forwards the routes node from opens to node to: the test
// cuts a node off by closing the proxies to and from it.
type routeProxy struct {
	from, to int
	l        net.Listener
	target   string

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]bool
}

func newRouteProxy(t *testing.T, from, to int, target string) *routeProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &routeProxy{from: from, to: to, l: l, target: target, conns: map[net.Conn]bool{}}
	t.Cleanup(func() {
		l.Close()
		p.setCut(true)
	})
	go p.serve()
	return p
}

func (p *routeProxy) addr() string { return p.l.Addr().String() }

func (p *routeProxy) serve() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		go p.forward(c)
	}
}

// track adds c to the open connections, or closes it if the link is cut.
func (p *routeProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		p.conns[c] = true
	}
	return true
}

func (p *routeProxy) forward(c net.Conn) {
	if !p.track(c) {
		return
	}
	up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	if !p.track(up) {
		c.Close()
		return
	}
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		io.Copy(dst, src)
		dst.Close()
		src.Close()
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
	<-done
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}

// setCut cuts the link (closing its connections and refusing new ones)
// or restores it.
func (p *routeProxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			c.Close()
		}
	}
}

// proxiedCluster is a test cluster whose nodes reach each other only
// through routeProxies, one per direction of each pair.
type proxiedCluster struct {
	*testCluster
	proxies []*routeProxy
}

// newProxiedCluster makes n nodes whose --cluster-peers are proxies to
// the others. Each node advertises an address nobody listens on, so
// that no node learns another's real route address from the routes'
// gossip and connects past the proxies.
func newProxiedCluster(t *testing.T, n int) *proxiedCluster {
	t.Helper()
	pc := &proxiedCluster{}
	via := map[[2]int]string{}
	peersOf := func(i int, routes []string) []string {
		if len(pc.proxies) == 0 {
			for from := range routes {
				for to := range routes {
					if from != to {
						p := newRouteProxy(t, from, to, routes[to])
						pc.proxies = append(pc.proxies, p)
						via[[2]int{from, to}] = p.addr()
					}
				}
			}
		}
		var peers []string
		for to := range routes {
			if to != i {
				peers = append(peers, via[[2]int{i, to}])
			}
		}
		return peers
	}
	extra := func(i int, routes []string) []string {
		return []string{"--cluster-advertise", freeTCPAddr(t)}
	}
	pc.testCluster = newTestCluster(t, n, peersOf, extra)
	return pc
}

// isolate cuts node k off from the others (or, with false, reconnects it).
func (pc *proxiedCluster) isolate(k int, cut bool) {
	for _, p := range pc.proxies {
		if p.from == k || p.to == k {
			p.setCut(cut)
		}
	}
}

// TestClusterPartition cuts one node of three off from the others at the
// network level (its routes go through proxies the test closes): a
// client of the isolated node gets a clear error ("no quorum") for a
// write, and the write is never delivered; clients of the majority go on,
// and a live recv --follow and a one-shot recv whose --server list has
// the isolated node first move to the next; once the partition heals,
// the node catches up (the acknowledgements made meanwhile included) and
// serves again.
func TestClusterPartition(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three nodes")
	}
	pc := newProxiedCluster(t, 3)
	pc.start()
	state := filepath.Join(t.TempDir(), "state")
	mk := func(k int, name string) *cliUser {
		p := pc.procs[k]
		return newCLIUser(t, &node{addr: p.addr, fingerprint: p.fingerprint}, state, name)
	}
	alice, carol := mk(0, "alice"), mk(2, "carol")
	// Dave (state of his own) follows live on node 3, listing node 1 too.
	dave := newCLIUser(t, &node{addr: pc.procs[2].addr, fingerprint: pc.procs[2].fingerprint}, filepath.Join(t.TempDir(), "dave"), "dave")
	alice.run("create-group", "friends")
	alice.run("invite", "friends", "carol", "dave")
	carol.run("join")
	dave.run("join")
	alice.run("send", "friends", "before the partition")
	carol.wantMessages("friends alice: before the partition")
	dave.wantMessages("friends alice: before the partition")
	follow := exec.Command(qpchatBinary(t), append([]string{"client"}, dave.args([]string{"recv", "--follow", "--json"})...)...)
	follow.Env = append(dave.env[:len(dave.env):len(dave.env)], "QPCHAT_SERVER="+pc.procs[2].addr+","+pc.procs[0].addr,
		"QPCHAT_SERVER_FINGERPRINT="+pc.procs[0].fingerprint)
	pr, pw := io.Pipe()
	follow.Stdout = pw
	var ferr syncBuffer
	follow.Stderr = &ferr
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		follow.Process.Signal(syscall.SIGTERM)
		follow.Wait()
		pw.Close()
	}()
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// Once it printed a message, the follow is connected to node 3.
	alice.run("send", "friends", "while dave follows")
	select {
	case l := <-lines:
		if !strings.Contains(l, "while dave follows") {
			t.Fatalf("dave's recv --follow printed %q", l)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("dave's recv --follow printed nothing within 60 s; stderr:\n%s", ferr.String())
	}

	pc.isolate(2, true)
	start := time.Now()
	code, out, errs := carol.try("send", "friends", "from the minority")
	t.Logf("send on the isolated node: exit %d after %v: %s", code, time.Since(start).Round(time.Millisecond), strings.TrimSpace(errs))
	if code == 0 {
		t.Fatalf("a send on the isolated node succeeded: %s", out)
	}
	if !strings.Contains(errs, "no quorum") {
		t.Errorf("the isolated node's refusal does not say the cluster has no quorum: %q", errs)
	}
	// The majority goes on (after electing leaders for what node 3 led).
	eventually(t, alice, "send", "friends", "during the partition")
	// Dave's live recv leaves node 3, which has no quorum, for node 1:
	// it says why it reconnects, then gets the message.
	var said []string
	timeout := time.After(90 * time.Second)
	for got := false; !got; {
		select {
		case l := <-lines:
			said = append(said, l)
			got = strings.Contains(l, "during the partition")
		case <-timeout:
			t.Fatalf("dave's recv --follow, on the isolated node 3 with node 1 listed after it, did not get alice's message within 90 s; it printed %q; stderr:\n%s", said, ferr.String())
		}
	}
	if !strings.Contains(strings.Join(said, "\n"), `"event":"reconnecting"`) || !strings.Contains(strings.Join(said, "\n"), "no quorum") {
		t.Errorf("dave's recv --follow did not say it reconnects because node 3 has no quorum: %q", said)
	}
	t.Logf("dave's recv --follow moved to node 1: %q", said)

	// A one-shot recv whose --server list has the isolated node first
	// cannot authenticate there (no quorum: unavailable) and goes on to
	// node 1, where it gets both of alice's messages and acknowledges them.
	listed := *carol
	listed.env = append(carol.env[:len(carol.env):len(carol.env)], "QPCHAT_SERVER="+pc.procs[2].addr+","+pc.procs[0].addr,
		"QPCHAT_SERVER_FINGERPRINT="+pc.procs[0].fingerprint)
	var recvd []string
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(300 * time.Millisecond) {
		code, out, errs := listed.try("recv", "--json")
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) == nil && m["event"] == "message" {
				recvd = append(recvd, fmt.Sprint(m["sender"], ": ", m["text"]))
			}
		}
		if code == 0 {
			if !strings.Contains(errs, "trying the next node of --server") || !strings.Contains(errs, "no quorum") {
				t.Errorf("carol's recv with node 3 listed first did not say it left node 3 for lack of quorum: %q", errs)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("carol's recv with node 3 listed first still fails after 60 s: %s", errs)
		}
	}
	if strings.Join(recvd, "|") != "alice: while dave follows|alice: during the partition" {
		t.Errorf("carol's recv through the --server list received %q, want alice's two messages", recvd)
	}

	pc.isolate(2, false)
	// Healed: node 3 catches up and takes writes again.
	var got []string
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(300 * time.Millisecond) {
		code, _, errs := carol.try("send", "friends", "after the partition")
		if code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node 3 takes no write 90 s after the partition healed: %s", errs)
		}
	}
	for _, l := range carol.jsonLines("recv") {
		if l["event"] == "message" {
			got = append(got, fmt.Sprint(l["sender"], ": ", l["text"]))
		}
	}
	if len(got) != 0 {
		t.Errorf("carol on node 3 after the partition received %q again: her acknowledgements on node 1 did not reach node 3", got)
	}
	// Alice gets carol's message after the partition, and never the
	// refused one.
	got = nil
	for _, l := range alice.jsonLines("recv") {
		if l["event"] == "message" {
			got = append(got, fmt.Sprint(l["sender"], ": ", l["text"]))
		}
	}
	if strings.Join(got, "|") != "carol: after the partition" {
		t.Errorf("alice received %q, want only carol's message sent after the partition", got)
	}
}

// eventually runs a client command until it succeeds (a cluster that
// lost a node elects new leaders within seconds; calls fail meanwhile).
func eventually(t *testing.T, u *cliUser, args ...string) string {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		code, out, errs := u.try(args...)
		if code == 0 {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s: still failing after 60 s: %s", u.name, strings.Join(args, " "), errs)
		}
	}
}
