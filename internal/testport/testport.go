// Package testport picks loopback ports for tests that must name a port
// before the listener that will use it exists: a cluster's route
// addresses (every peer's address goes on every node's command line) and
// a node restarted on the address its clients pinned.
//
// Asking the kernel for port 0 and closing the socket again is racy on a
// busy machine: the port goes back to the ephemeral range, where every
// outgoing TCP connection and every QUIC client socket of the other test
// processes draws its local port. CI runs the packages in parallel, and a
// NATS route listener once lost its port that way ("server n1 did not
// start within 10 s"). The ports handed out here come from below the
// ephemeral range, which the kernel never assigns on its own, and are
// checked free when picked; tests in other processes picking at random
// from the same range of about twelve thousand ports rarely collide.
package testport

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// lowest is the smallest port handed out.
const lowest = 20000

// given holds every port this process handed out: a test that picks two
// ports before binding either never gets the same one twice.
var given = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// ephemeralLow is the first port of the kernel's ephemeral range
// (Linux's ip_local_port_range; IANA's 49152 elsewhere).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if lo, err := strconv.Atoi(f[0]); err == nil && lo > lowest+1000 && lo <= 65535 {
				return lo
			}
		}
	}
	return 49152
}

// candidate is a random port in [lowest, ephemeralLow).
func candidate(hi int) (int, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, err
	}
	return lowest + int(binary.BigEndian.Uint32(b[:])%uint32(hi-lowest)), nil
}

// pick returns n distinct loopback addresses whose port is free for
// network ("tcp" or "udp") at the moment of the call.
func pick(network string, n int) ([]string, error) {
	hi := ephemeralLow()
	given.Lock()
	defer given.Unlock()
	var held []func() error
	defer func() {
		for _, c := range held {
			c()
		}
	}()
	var addrs []string
	for tries := 0; len(addrs) < n; tries++ {
		if tries > 1000 {
			return nil, fmt.Errorf("testport: no free %s port below %d after %d tries", network, hi, tries)
		}
		p, err := candidate(hi)
		if err != nil {
			return nil, err
		}
		if given.ports[p] {
			continue
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		switch network {
		case "tcp":
			l, err := net.Listen("tcp", addr)
			if err != nil {
				continue
			}
			held = append(held, l.Close)
		case "udp":
			pc, err := net.ListenPacket("udp", addr)
			if err != nil {
				continue
			}
			held = append(held, pc.Close)
		default:
			return nil, fmt.Errorf("testport: unknown network %q", network)
		}
		given.ports[p] = true
		addrs = append(addrs, addr)
	}
	return addrs, nil
}

// TCP returns n distinct loopback TCP addresses ("127.0.0.1:port") that
// were free a moment ago and lie outside the ephemeral range.
func TCP(t testing.TB, n int) []string {
	t.Helper()
	addrs, err := pick("tcp", n)
	if err != nil {
		t.Fatal(err)
	}
	return addrs
}

// UDP returns a loopback UDP address that was free a moment ago and lies
// outside the ephemeral range: for a QUIC node that must come back on
// the same address after a restart.
func UDP(t testing.TB) string {
	t.Helper()
	addrs, err := pick("udp", 1)
	if err != nil {
		t.Fatal(err)
	}
	return addrs[0]
}

// TCPAddrs is TCP without a testing.TB, for harnesses that report errors
// themselves.
func TCPAddrs(n int) ([]string, error) { return pick("tcp", n) }
