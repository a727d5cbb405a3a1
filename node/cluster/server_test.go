package cluster

import (
	"net"
	"strings"
	"testing"
)

// TestStartReportsWhy: a route address another process holds makes Start
// fail with the server's own reason in the error (it was "did not start
// within 10 s" alone, which left a CI failure unexplained).
func TestStartReportsWhy(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	n, err := Start(Config{Name: "n0", Cluster: "c", Listen: l.Addr().String(), Peers: []string{l.Addr().String()}, DataDir: t.TempDir()})
	if err == nil {
		n.Shutdown()
		t.Fatal("a server started on a route address in use")
	}
	if !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("error %q does not say the address is in use", err)
	}
	t.Log(err)
}
