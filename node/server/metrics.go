package server

import (
	"context"
	"sync/atomic"
	"time"
)

// metrics are the node's counters, logged every Config.MetricsInterval
// (DESIGN: metrics in the log) as the change since the last line, and
// exported in total on the admin listener's /metrics (prommetrics.go).
// They count events, never who caused them.
type metrics struct {
	logins, loginFailures counter
	registrations         counter
	deviceAuths           counter
	sends, sentMessages   counter
	commits               counter
	fetchedMessages       counter
	acks                  counter
	overflows             counter
	refusedConns          counter
	loginDelays           counter // login starts delayed by a rate limit
	refusedRegistrations  counter // registrations refused by --registration
	expiredDevices        counter // devices made stale by --device-expiry
	retentionDropped      counter // messages dropped by --retention
}

// counter is a monotonic count that also remembers what the log line
// last reported.
type counter struct {
	total, logged atomic.Uint64
}

// Add counts n more events.
func (c *counter) Add(n uint64) { c.total.Add(n) }

// Load returns the total since the node started.
func (c *counter) Load() uint64 { return c.total.Load() }

// sinceLogged returns the events since its last call (one caller: the
// metrics log line).
func (c *counter) sinceLogged() uint64 {
	t := c.total.Load()
	return t - c.logged.Swap(t)
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
			"refused_connections", m.refusedConns.sinceLogged(),
			"registrations", m.registrations.sinceLogged(),
			"logins", m.logins.sinceLogged(),
			"login_failures", m.loginFailures.sinceLogged(),
			"delayed_logins", m.loginDelays.sinceLogged(),
			"device_auths", m.deviceAuths.sinceLogged(),
			"sends", m.sends.sinceLogged(),
			"sent_messages", m.sentMessages.sinceLogged(),
			"commits", m.commits.sinceLogged(),
			"fetched_messages", m.fetchedMessages.sinceLogged(),
			"acks", m.acks.sinceLogged(),
			"overflowed_devices", m.overflows.sinceLogged(),
			"refused_registrations", m.refusedRegistrations.sinceLogged(),
			"expired_devices", m.expiredDevices.sinceLogged(),
			"retention_dropped", m.retentionDropped.sinceLogged(),
		)
	}
}
