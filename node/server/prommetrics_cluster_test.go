package server

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"qpchat/node/cluster"
	"qpchat/node/cluster/clustertest"
)

// logStatus is main's adapter of cluster.Log to ClusterInfo.
type logStatus struct{ l *cluster.Log }

func (s logStatus) ClusterStatus(ctx context.Context) (ClusterStatus, error) {
	st, err := s.l.Status(ctx)
	out := ClusterStatus{Node: st.Server, Leader: st.Leader, LastEntry: st.LastSeq}
	for _, r := range st.Replicas {
		out.Peers = append(out.Peers, ClusterPeer{Name: r.Name, Current: r.Current, Offline: r.Offline, Active: r.Active, Lag: r.Lag})
	}
	return out, err
}

// clusterMetric returns the value of the series (name and labels as
// exposed) in a /metrics text, and whether it is there.
func clusterMetric(text, series string) (float64, bool) {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(text)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[1], 64)
	return v, err == nil
}

// TestClusterNodeMetrics: the /metrics of a node of a 3-node cluster
// name the node, tell whether the log has a leader and whether this node
// is it, how far every member and this node's replica are, and time the
// node's calls to JetStream.
func TestClusterNodeMetrics(t *testing.T) {
	c := clustertest.Start(t, 3)
	l := c.Log(t, 0, cluster.DefaultStream)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	rs, err := cluster.OpenRateStore(ctx, c.Conns[0], cluster.DefaultRateStream, 3)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	n := startNode(t, adminNode(t, func(cfg *Config) {
		cfg.StoreLog, cfg.RateStore, cfg.Cluster = l, rs, logStatus{l}
	}))
	n.register("alice") // log appends, a shared login budget
	base := "http://" + n.srv.AdminAddr().String()

	var text string
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, text = httpGet(t, base+"/metrics")
		if v, _ := clusterMetric(text, "qpchat_cluster_peers_current"); v == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("members never all current:\n%s", grepCluster(text))
		}
		time.Sleep(100 * time.Millisecond)
	}
	want := map[string]func(float64) bool{
		`qpchat_cluster_status_up`:                                    func(v float64) bool { return v == 1 },
		`qpchat_cluster_node_info{node="n0"}`:                         func(v float64) bool { return v == 1 },
		`qpchat_cluster_log_has_leader`:                               func(v float64) bool { return v == 1 },
		`qpchat_cluster_log_leader`:                                   func(v float64) bool { return v == 0 || v == 1 },
		`qpchat_cluster_log_last_entry`:                               func(v float64) bool { return v > 0 },
		`qpchat_cluster_replica_applied_entry`:                        func(v float64) bool { return v > 0 },
		`qpchat_cluster_replica_behind_entries`:                       func(v float64) bool { return v == 0 },
		`qpchat_cluster_call_duration_seconds_count{op="log_append"}`: func(v float64) bool { return v > 0 },
		`qpchat_cluster_call_duration_seconds_count{op="log_last"}`:   func(v float64) bool { return v > 0 },
		`qpchat_cluster_call_duration_seconds_count{op="rate_swap"}`:  func(v float64) bool { return v > 0 },
	}
	for series, ok := range want {
		v, found := clusterMetric(text, series)
		if !found || !ok(v) {
			t.Errorf("/metrics %s = %v (found %v)", series, v, found)
		}
	}
	// Two peer members other than the leader, each current, with a lag.
	peers := regexp.MustCompile(`(?m)^qpchat_cluster_peer_current\{peer="(n[0-2])"\} 1$`).FindAllStringSubmatch(text, -1)
	if len(peers) != 2 {
		t.Errorf("current peers in /metrics: %v\n%s", peers, grepCluster(text))
	}
	leaderIs0, _ := clusterMetric(text, `qpchat_cluster_log_leader`)
	listed0 := false
	for _, p := range peers {
		listed0 = listed0 || p[1] == "n0"
		if _, ok := clusterMetric(text, `qpchat_cluster_peer_lag_entries{peer="`+p[1]+`"}`); !ok {
			t.Errorf("no lag for peer %s", p[1])
		}
	}
	if listed0 == (leaderIs0 == 1) {
		t.Errorf("n0 listed among the peers: %v, but log_leader = %v on n0", listed0, leaderIs0)
	}
}

// grepCluster returns the cluster lines of a /metrics text.
func grepCluster(text string) string {
	return strings.Join(regexp.MustCompile(`(?m)^qpchat_cluster.*$`).FindAllString(text, -1), "\n")
}
