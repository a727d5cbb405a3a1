package server

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"qpchat/node/store"
)

// Metrics of a cluster node (README.md, "Running a cluster"): which
// node this is, whether it leads the store's log, how far each member of
// the log is behind, how far this node's replica is, and how long the
// store's and the rate limits' calls to JetStream take. Labels hold NATS
// server names (random, made by the nodes) and operation names only.

// ClusterInfo tells a cluster node's metrics about the cluster (main
// adapts node/cluster's Log.Status to it).
type ClusterInfo interface {
	ClusterStatus(ctx context.Context) (ClusterStatus, error)
}

// ClusterStatus is a node's view of the cluster's log.
type ClusterStatus struct {
	Node      string // this node's NATS server name
	Leader    string // the log's leader ("" without a quorum)
	LastEntry uint64 // the log's last entry
	Peers     []ClusterPeer
}

// ClusterPeer is a member of the log other than its leader.
type ClusterPeer struct {
	Name    string
	Current bool          // caught up with the leader
	Offline bool          // not heard from
	Active  time.Duration // since the leader last heard from it
	Lag     uint64        // entries behind the leader
}

// clusterStatusTimeout bounds the status request of one scrape.
const clusterStatusTimeout = 2 * time.Second

var (
	descClusterUp      = prometheus.NewDesc("qpchat_cluster_status_up", "1 if the log's state could be read at this scrape, 0 if not (no quorum, or NATS unreachable).", nil, nil)
	descClusterNode    = prometheus.NewDesc("qpchat_cluster_node_info", "This node's NATS server name; always 1.", []string{"node"}, nil)
	descClusterLeader  = prometheus.NewDesc("qpchat_cluster_log_leader", "1 if this node leads the store's log, else 0.", nil, nil)
	descClusterHasLead = prometheus.NewDesc("qpchat_cluster_log_has_leader", "1 if the store's log has a leader (a quorum), else 0.", nil, nil)
	descClusterLast    = prometheus.NewDesc("qpchat_cluster_log_last_entry", "Number of the log's last entry.", nil, nil)
	descClusterApplied = prometheus.NewDesc("qpchat_cluster_replica_applied_entry", "Number of the last log entry this node's replica applied.", nil, nil)
	descClusterBehind  = prometheus.NewDesc("qpchat_cluster_replica_behind_entries", "Log entries this node's replica has yet to apply.", nil, nil)
	descClusterCurrent = prometheus.NewDesc("qpchat_cluster_peers_current", "Members of the log caught up with its leader, the leader included.", nil, nil)
	descPeerCurrent    = prometheus.NewDesc("qpchat_cluster_peer_current", "1 if the member is caught up with the log's leader, else 0.", []string{"peer"}, nil)
	descPeerOffline    = prometheus.NewDesc("qpchat_cluster_peer_offline", "1 if the log's leader does not hear from the member, else 0.", []string{"peer"}, nil)
	descPeerLag        = prometheus.NewDesc("qpchat_cluster_peer_lag_entries", "Log entries the member is behind the leader.", []string{"peer"}, nil)
	descPeerActive     = prometheus.NewDesc("qpchat_cluster_peer_last_seen_seconds", "Seconds since the log's leader last heard from the member.", []string{"peer"}, nil)
)

// clusterCollector reads the cluster's state at scrape time.
type clusterCollector struct {
	s *Server
}

func (c *clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	prometheus.DescribeByCollect(c, ch)
}

func (c *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, lv...)
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	applied, haveApplied := uint64(0), false
	if ls := c.s.localStore(); ls != nil {
		applied, haveApplied = ls.ReplicaApplied()
	}
	if haveApplied {
		gauge(descClusterApplied, float64(applied))
	}
	info := c.s.cfg.Cluster
	if info == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterStatusTimeout)
	st, err := info.ClusterStatus(ctx)
	cancel()
	if st.Node != "" {
		gauge(descClusterNode, 1, st.Node)
	}
	if err != nil {
		gauge(descClusterUp, 0)
		return
	}
	gauge(descClusterUp, 1)
	gauge(descClusterLeader, b2f(st.Leader != "" && st.Leader == st.Node))
	gauge(descClusterHasLead, b2f(st.Leader != ""))
	gauge(descClusterLast, float64(st.LastEntry))
	if haveApplied {
		gauge(descClusterBehind, float64(st.LastEntry-min(applied, st.LastEntry)))
	}
	current := 0
	if st.Leader != "" {
		current = 1
	}
	for _, p := range st.Peers {
		if p.Current {
			current++
		}
		gauge(descPeerCurrent, b2f(p.Current), p.Name)
		gauge(descPeerOffline, b2f(p.Offline), p.Name)
		gauge(descPeerLag, float64(p.Lag), p.Name)
		gauge(descPeerActive, p.Active.Seconds(), p.Name)
	}
	gauge(descClusterCurrent, float64(current))
}

// clusterCallTime is the histogram of a cluster node's calls to
// JetStream, by operation: the log's append and last (the barrier every
// read starts with), the rate limits' get and swap.
func newClusterCallTime() *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "qpchat_cluster_call_duration_seconds",
		Help:    "Time of one call of this node to the cluster (JetStream), by operation: log_append, log_last, rate_get, rate_swap.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"op"})
}

// timedLog times a store.Log's appends and last-entry calls.
type timedLog struct {
	store.Log
	h *prometheus.HistogramVec
}

func (l timedLog) Last(ctx context.Context) (uint64, error) {
	t := time.Now()
	n, err := l.Log.Last(ctx)
	l.h.WithLabelValues("log_last").Observe(time.Since(t).Seconds())
	return n, err
}

func (l timedLog) Append(ctx context.Context, entry []byte, expect uint64) (uint64, bool, error) {
	t := time.Now()
	seq, ok, err := l.Log.Append(ctx, entry, expect)
	l.h.WithLabelValues("log_append").Observe(time.Since(t).Seconds())
	return seq, ok, err
}

// timedRateStore times a RateStore's calls.
type timedRateStore struct {
	RateStore
	h *prometheus.HistogramVec
}

func (r timedRateStore) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	t := time.Now()
	v, rev, err := r.RateStore.Get(ctx, key)
	r.h.WithLabelValues("rate_get").Observe(time.Since(t).Seconds())
	return v, rev, err
}

func (r timedRateStore) Swap(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	t := time.Now()
	n, err := r.RateStore.Swap(ctx, key, value, rev)
	r.h.WithLabelValues("rate_swap").Observe(time.Since(t).Seconds())
	return n, err
}
