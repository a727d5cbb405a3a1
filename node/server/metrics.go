package server

import (
	"context"
	"sync/atomic"
	"time"
)

// metrics are the node's counters, logged every Config.MetricsInterval
// (DESIGN: metrics in the log). They count events, never who caused them.
type metrics struct {
	logins, loginFailures atomic.Uint64
	registrations         atomic.Uint64
	deviceAuths           atomic.Uint64
	sends, sentMessages   atomic.Uint64
	commits               atomic.Uint64
	fetchedMessages       atomic.Uint64
	acks                  atomic.Uint64
	overflows             atomic.Uint64
	refusedConns          atomic.Uint64
}

// logMetrics logs the counters since the last line every interval until
// ctx is done.
func (s *Server) logMetrics(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	m := &s.metrics
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		conns := len(s.conns)
		s.mu.Unlock()
		s.log.Info("node metrics",
			"interval", interval,
			"connections", conns,
			"refused_connections", m.refusedConns.Swap(0),
			"registrations", m.registrations.Swap(0),
			"logins", m.logins.Swap(0),
			"login_failures", m.loginFailures.Swap(0),
			"device_auths", m.deviceAuths.Swap(0),
			"sends", m.sends.Swap(0),
			"sent_messages", m.sentMessages.Swap(0),
			"commits", m.commits.Swap(0),
			"fetched_messages", m.fetchedMessages.Swap(0),
			"acks", m.acks.Swap(0),
			"overflowed_devices", m.overflows.Swap(0),
		)
	}
}
