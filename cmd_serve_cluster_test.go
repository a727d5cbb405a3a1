package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeClusterFlagsChecked: contradictory or incomplete cluster flags
// are refused before anything starts, and the route files must be
// private.
func TestServeClusterFlagsChecked(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		f    ServeClusterFlags
		want string
	}{
		{ServeClusterFlags{ClusterName: "c", NATS: "nats://x", ClusterReplicas: 3}, "not both"},
		{ServeClusterFlags{ClusterName: "c", ClusterReplicas: 0}, "--cluster-replicas"},
		{ServeClusterFlags{NATSCreds: "x", ClusterReplicas: 3, ClusterName: "c"}, "need --nats"},
		{ServeClusterFlags{ClusterName: "c", ClusterReplicas: 3, ClusterListen: "127.0.0.1:0"}, "needs --cluster-peers"},
		{ServeClusterFlags{ClusterName: "c", ClusterReplicas: 3, ClusterListen: "127.0.0.1:0", ClusterPeers: "127.0.0.1:1"}, "route.pem"},
	} {
		if _, _, err := tc.f.startCluster(context.Background(), dir, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error naming %q", tc.f, err, tc.want)
		}
	}
	pem, err := newRouteKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, routeKeyFile), pem, 0o644); err != nil {
		t.Fatal(err)
	}
	f := ServeClusterFlags{ClusterName: "c", ClusterReplicas: 3, ClusterListen: "127.0.0.1:0", ClusterPeers: "127.0.0.1:1"}
	if _, err := f.embeddedConfig(dir, nil); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a world-readable route.pem: %v, want a mode error", err)
	}
	os.Chmod(filepath.Join(dir, routeKeyFile), 0o600)
	if err := os.WriteFile(filepath.Join(dir, routePasswordFile), []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := f.embeddedConfig(dir, nil); err == nil || !strings.Contains(err.Error(), "too short") {
		t.Errorf("a short route password: %v", err)
	}
	os.WriteFile(filepath.Join(dir, routePasswordFile), []byte(strings.Repeat("ab", 32)+"\n"), 0o600)
	cfg, err := f.embeddedConfig(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RouteTLS == nil || len(cfg.RoutePins) != 1 || len(cfg.RoutePins[0]) != 64 || cfg.RoutePassword != strings.Repeat("ab", 32) || !strings.HasPrefix(cfg.Name, "qpchat-") {
		t.Errorf("config %+v", cfg)
	}
	again, _ := f.embeddedConfig(dir, nil)
	if again.Name != cfg.Name {
		t.Errorf("node name changed from %s to %s across starts", cfg.Name, again.Name)
	}
}
