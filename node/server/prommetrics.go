package server

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"qpchat/node/proto"
	"qpchat/node/store"
)

// Prometheus metrics of the node, served by the admin listener's
// /metrics (admin.go). README.md ("Operating a node") lists them.
//
// No label ever holds a user, group, device or address: labels are
// method names from the schema, result codes from node/proto, and fixed
// words. The registry is the node's own (not the global one), so tests
// can run several nodes in one process.

// queueDepthBounds are the upper bounds of the queue depth histogram.
var queueDepthBounds = []uint64{0, 1, 10, 100, 1000, 10000, 100000}

// queueStatsEvery bounds how often a scrape walks the queues.
const queueStatsEvery = 15 * time.Second

type promMetrics struct {
	reg *prometheus.Registry

	calls      *prometheus.CounterVec   // method, code
	callTime   *prometheus.HistogramVec // method
	commitTime prometheus.Histogram
	commitFns  prometheus.Histogram
	refused    counter // calls answered rate-limited or busy
	// clusterCalls, on a cluster node, times its calls to JetStream
	// (prommetrics_cluster.go); nil on a single node.
	clusterCalls *prometheus.HistogramVec

	mu         sync.Mutex
	queueStats store.QueueStats
	queueAt    time.Time
}

func newPromMetrics(s *Server) *promMetrics {
	p := &promMetrics{
		reg: prometheus.NewRegistry(),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "qpchat_calls_total",
			Help: "RPC calls answered, by method and result code (ok or a node error code).",
		}, []string{"method", "code"}),
		callTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "qpchat_call_duration_seconds",
			Help:    "Time to answer an RPC call, by method (fetchWait includes its wait).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"method"}),
		commitTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "qpchat_store_commit_duration_seconds",
			Help:    "Time of one store commit, its fsync included.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}),
		commitFns: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "qpchat_store_commit_writes",
			Help:    "Write operations carried by one store commit (group commit).",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024},
		}),
	}
	p.reg.MustRegister(p.calls, p.callTime, p.commitTime, p.commitFns,
		&nodeCollector{s: s, p: p},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	if s.cfg.StoreLog != nil || s.cfg.RateStore != nil || s.cfg.Cluster != nil {
		p.clusterCalls = newClusterCallTime()
		p.reg.MustRegister(p.clusterCalls, &clusterCollector{s: s})
	}
	return p
}

// observeCall counts one answered call of method ("NodeService.ping").
func (p *promMetrics) observeCall(method string, d time.Duration, err error) {
	code := "ok"
	if err != nil {
		code = string(proto.CodeOf(err))
		if code == "" {
			code = "error" // an RPC-level failure without a node code
		}
	}
	p.calls.WithLabelValues(method, code).Inc()
	p.callTime.WithLabelValues(method).Observe(d.Seconds())
	if code == string(proto.CodeRateLimited) || code == string(proto.CodeBusy) {
		p.refused.Add(1)
	}
}

// observeCommit is the store's commit observer.
func (p *promMetrics) observeCommit(d time.Duration, fns int) {
	p.commitTime.Observe(d.Seconds())
	p.commitFns.Observe(float64(fns))
}

// queues returns the queue statistics, walking the queues at most once
// per queueStatsEvery.
func (p *promMetrics) queues(ls *store.LocalStore, now time.Time) (store.QueueStats, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.queueAt.IsZero() || now.Sub(p.queueAt) >= queueStatsEvery {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		st, err := ls.QueueStats(ctx, queueDepthBounds)
		cancel()
		if err != nil {
			return p.queueStats, !p.queueAt.IsZero()
		}
		p.queueStats, p.queueAt = st, now
	}
	return p.queueStats, true
}

// nodeCollector reads the node's state at scrape time: the counters of
// metrics.go, connections, store size and queue statistics.
type nodeCollector struct {
	s *Server
	p *promMetrics
}

var (
	descConns       = prometheus.NewDesc("qpchat_connections", "Open client connections.", nil, nil)
	descRefused     = prometheus.NewDesc("qpchat_connections_refused_total", "Connections refused (node or address full).", nil, nil)
	descLogins      = prometheus.NewDesc("qpchat_logins_total", "Successful password logins.", nil, nil)
	descLoginFails  = prometheus.NewDesc("qpchat_login_failures_total", "Failed password logins.", nil, nil)
	descRegs        = prometheus.NewDesc("qpchat_registrations_total", "Accounts registered.", nil, nil)
	descDevAuths    = prometheus.NewDesc("qpchat_device_auths_total", "Device sessions opened.", nil, nil)
	descSends       = prometheus.NewDesc("qpchat_sends_total", "Send calls accepted.", nil, nil)
	descSent        = prometheus.NewDesc("qpchat_sent_messages_total", "Messages accepted by send calls.", nil, nil)
	descCommits     = prometheus.NewDesc("qpchat_commits_total", "MLS commits accepted.", nil, nil)
	descFetched     = prometheus.NewDesc("qpchat_fetched_messages_total", "Messages handed out by fetch and fetchWait.", nil, nil)
	descAcks        = prometheus.NewDesc("qpchat_acks_total", "Ack calls.", nil, nil)
	descOverflows   = prometheus.NewDesc("qpchat_overflowed_devices_total", "Device queues that overflowed (--max-queue-length).", nil, nil)
	descStoreSize   = prometheus.NewDesc("qpchat_store_size_bytes", "Size of the node's database file.", nil, nil)
	descQueueDepth  = prometheus.NewDesc("qpchat_queue_depth", "Messages waiting per device queue (all queues, sampled at most every 15s).", nil, nil)
	descQueuedMsgs  = prometheus.NewDesc("qpchat_queued_messages", "Messages waiting in all device queues.", nil, nil)
	descQueuesOver  = prometheus.NewDesc("qpchat_queues_overflowed", "Device queues marked overflowed (revoked devices included).", nil, nil)
	descBodies      = prometheus.NewDesc("qpchat_shared_bodies", "Messages stored once for several device queues (sampled with the queues).", nil, nil)
	descBodyBytes   = prometheus.NewDesc("qpchat_shared_body_bytes", "Bytes of the shared message bodies, before sealing.", nil, nil)
	descReady       = prometheus.NewDesc("qpchat_ready", "1 while the node accepts connections, 0 while starting or stopping.", nil, nil)
	descBuild       = prometheus.NewDesc("qpchat_build_info", "The node's version; always 1.", []string{"version"}, nil)
	descRateLimited = prometheus.NewDesc("qpchat_rate_limited_total", "Requests held back by a rate limit: delayed (login starts) or refused (calls answered rate-limited or busy).", []string{"how"}, nil)
	descRegRefused  = prometheus.NewDesc("qpchat_registrations_refused_total", "Registrations refused by --registration (closed, or no valid invitation).", nil, nil)
	descExpired     = prometheus.NewDesc("qpchat_expired_devices_total", "Devices made stale by --device-expiry (queue dropped).", nil, nil)
	descRetention   = prometheus.NewDesc("qpchat_retention_dropped_messages_total", "Queued messages dropped by --retention.", nil, nil)
	descExpiryCfg   = prometheus.NewDesc("qpchat_device_expiry_seconds", "The --device-expiry setting (0: never).", nil, nil)
	descRetainCfg   = prometheus.NewDesc("qpchat_retention_seconds", "The --retention setting (0: forever).", nil, nil)
	descRegMode     = prometheus.NewDesc("qpchat_registration_mode", "The --registration setting: 1 for the mode in force.", []string{"mode"}, nil)
	descCallsFlight = prometheus.NewDesc("qpchat_calls_in_flight", "Calls being answered.", nil, nil)
)

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	prometheus.DescribeByCollect(c, ch)
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	m := &s.metrics
	s.mu.Lock()
	conns, inflight, closing := len(s.conns), s.inflight, s.closing
	s.mu.Unlock()
	gauge := func(d *prometheus.Desc, v float64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, lv...)
	}
	count := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	gauge(descConns, float64(conns))
	gauge(descCallsFlight, float64(inflight))
	ready := 0.0
	if s.accepting.Load() && !closing {
		ready = 1
	}
	gauge(descReady, ready)
	gauge(descBuild, 1, s.cfg.Version)
	count(descRefused, m.refusedConns.Load())
	count(descLogins, m.logins.Load())
	count(descLoginFails, m.loginFailures.Load())
	count(descRegs, m.registrations.Load())
	count(descDevAuths, m.deviceAuths.Load())
	count(descSends, m.sends.Load())
	count(descSent, m.sentMessages.Load())
	count(descCommits, m.commits.Load())
	count(descFetched, m.fetchedMessages.Load())
	count(descAcks, m.acks.Load())
	count(descOverflows, m.overflows.Load())
	count(descRegRefused, m.refusedRegistrations.Load())
	count(descExpired, m.expiredDevices.Load())
	count(descRetention, m.retentionDropped.Load())
	pol := s.cfg.Policy
	gauge(descExpiryCfg, max(pol.DeviceExpiry, 0).Seconds())
	gauge(descRetainCfg, max(pol.Retention, 0).Seconds())
	for _, mode := range []string{RegistrationOpen, RegistrationInvite, RegistrationClosed} {
		v := 0.0
		if pol.Registration == mode {
			v = 1
		}
		gauge(descRegMode, v, mode)
	}
	ch <- prometheus.MustNewConstMetric(descRateLimited, prometheus.CounterValue, float64(m.loginDelays.Load()), "delayed")
	ch <- prometheus.MustNewConstMetric(descRateLimited, prometheus.CounterValue, float64(c.p.refused.Load()), "refused")

	ls := s.localStore()
	if ls == nil {
		return
	}
	if n, err := ls.Size(); err == nil {
		gauge(descStoreSize, float64(n))
	}
	if st, ok := c.p.queues(ls, s.cfg.Now()); ok {
		buckets := make(map[float64]uint64, len(st.Bounds))
		for i, b := range st.Bounds {
			buckets[float64(b)] = st.Buckets[i]
		}
		ch <- prometheus.MustNewConstHistogram(descQueueDepth, uint64(st.Queues), float64(st.Messages), buckets)
		gauge(descQueuedMsgs, float64(st.Messages))
		gauge(descQueuesOver, float64(st.Overflowed))
		gauge(descBodies, float64(st.Bodies))
		gauge(descBodyBytes, float64(st.BodyBytes))
	}
}

// methodLabel is the label of a method: "Interface.method" without the
// schema's file prefix ("node.capnp:").
func methodLabel(iface, method string) string {
	if i := strings.LastIndexAny(iface, ":"); i >= 0 {
		iface = iface[i+1:]
	}
	return iface + "." + method
}
