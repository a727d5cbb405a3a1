package testport

import (
	"net"
	"strconv"
	"testing"
)

func TestPortsBelowEphemeralRangeAndFree(t *testing.T) {
	hi := ephemeralLow()
	addrs := TCP(t, 5)
	seen := map[string]bool{}
	for _, a := range addrs {
		_, ps, err := net.SplitHostPort(a)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := strconv.Atoi(ps)
		if p < lowest || p >= hi {
			t.Errorf("port %d outside [%d, %d)", p, lowest, hi)
		}
		if seen[a] {
			t.Errorf("%s handed out twice", a)
		}
		seen[a] = true
		l, err := net.Listen("tcp", a)
		if err != nil {
			t.Errorf("%s is not free: %v", a, err)
			continue
		}
		l.Close()
	}
	u := UDP(t)
	pc, err := net.ListenPacket("udp", u)
	if err != nil {
		t.Fatalf("%s is not free: %v", u, err)
	}
	pc.Close()
}

func TestBusyPortNotHandedOut(t *testing.T) {
	// Hold most of a tiny range and check pick never returns a held port:
	// pick's bind check is what keeps a port in use from being handed out.
	addrs := TCP(t, 50)
	var held []net.Listener
	busy := map[string]bool{}
	for _, a := range addrs {
		l, err := net.Listen("tcp", a)
		if err != nil {
			continue
		}
		held = append(held, l)
		busy[a] = true
	}
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for range 20 {
		for _, a := range TCP(t, 3) {
			if busy[a] {
				t.Fatalf("%s is in use but was handed out", a)
			}
		}
	}
}

func TestNeverTheSamePortTwice(t *testing.T) {
	// Two picks before either port is bound must differ: a test starting
	// two nodes on two picked addresses relies on it.
	seen := map[string]bool{}
	for range 300 {
		a := UDP(t)
		if seen[a] {
			t.Fatalf("%s handed out twice in one process", a)
		}
		seen[a] = true
	}
}
