package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"qpchat/mls"
	"qpchat/node/bench"
)

func TestRegistrationClosed(t *testing.T) {
	n := startNode(t, func(c *Config) { c.Policy.Registration = RegistrationClosed })
	c := n.dial()
	_, _, err := c.Register(testCtx(t), n.cfg.OPAQUE, "alice", []byte(testPassword))
	wantCode(t, "register on a closed node", err, "forbidden")
	if got := n.srv.metrics.refusedRegistrations.Load(); got != 1 {
		t.Errorf("refused registrations = %d, want 1", got)
	}
}

func TestRegistrationByInvitation(t *testing.T) {
	n := startNode(t, func(c *Config) { c.Policy.Registration = RegistrationInvite })
	register := func(name, token string) error {
		c := n.dial()
		c.InviteToken = token
		_, _, err := c.Register(testCtx(t), n.cfg.OPAQUE, name, []byte(testPassword))
		return err
	}
	wantCode(t, "register without a token", register("alice", ""), "forbidden")
	wantCode(t, "register with a made-up token", register("alice", "qpi-"+strings.Repeat("00", 32)), "forbidden")
	wantCode(t, "register with an oversized token", register("alice", strings.Repeat("x", 4096)), "forbidden")

	<-n.srv.Ready()
	tok, err := n.srv.MintInvite(testCtx(t), time.Hour)
	must(t, "MintInvite", err)
	must(t, "register with the token", register("alice", tok))
	wantCode(t, "register again with the used token", register("bob", tok), "forbidden")

	// The token is kept hashed: its text is nowhere in the file.
	tok2, err := n.srv.MintInvite(testCtx(t), time.Hour)
	must(t, "MintInvite", err)
	n.clock.Advance(2 * time.Hour)
	wantCode(t, "register with an expired token", register("bob", tok2), "forbidden")

	// A name taken meanwhile does not use the token up.
	tok3, err := n.srv.MintInvite(testCtx(t), time.Hour)
	must(t, "MintInvite", err)
	wantCode(t, "register a taken name", register("alice", tok3), "exists")
	must(t, "register with the token after a refusal", register("carol", tok3))
	if got := n.srv.metrics.refusedRegistrations.Load(); got < 5 {
		t.Errorf("refused registrations = %d, want at least 5", got)
	}
}

func TestInviteTokensStoredHashed(t *testing.T) {
	n := startNode(t, func(c *Config) { c.Policy.Registration = RegistrationInvite })
	<-n.srv.Ready()
	tok, err := n.srv.MintInvite(testCtx(t), time.Hour)
	must(t, "MintInvite", err)
	n.stop()
	raw, err := os.ReadFile(filepath.Join(n.cfg.DataDir, "node.db"))
	must(t, "reading the database", err)
	if strings.Contains(string(raw), tok) || strings.Contains(string(raw), strings.TrimPrefix(tok, "qpi-")) {
		t.Error("the invitation token is in the database file")
	}
}

// TestDeviceExpiryAndRetention: a device that stops fetching becomes
// stale after DeviceExpiry; a message left unacknowledged is dropped
// after Retention; both are counted.
func TestDeviceExpiryAndRetention(t *testing.T) {
	day := 24 * time.Hour
	w := newWorld(t, func(c *Config) {
		c.Policy = PolicyConfig{DeviceExpiry: 10 * day, Retention: 3 * day, SweepInterval: time.Hour}
	})
	n := w.n
	send := func(text string) {
		t.Helper()
		_, err := w.a1.Send(testCtx(t), w.group, [][]byte{bench.PrivateMessage(w.group, 1, mls.ContentTypeApplication, []byte(text))})
		must(t, "send", err)
	}
	// Day 0: a first sweep dates what is there.
	n.srv.sweep(testCtx(t))
	send("old")
	n.clock.Advance(2 * day)
	n.srv.sweep(testCtx(t))
	send("new")
	// b2 keeps fetching (and acking) every day; the others do not.
	for range 9 {
		n.clock.Advance(day)
		msgs := drain(t, w.b2, 0)
		if len(msgs) > 0 {
			must(t, "ack", w.b2.Ack(testCtx(t), msgs[len(msgs)-1].Seq))
		}
		n.srv.sweep(testCtx(t))
	}
	// Day 11: retention (3 days) dropped everything b1 had, and marked it.
	msgs, q, err := w.b1.Fetch(testCtx(t), 0, 0)
	must(t, "fetch b1", err)
	if len(msgs) != 0 || !q.Overflowed {
		t.Errorf("b1 after retention: %d messages, overflowed %v; want none, overflowed", len(msgs), q.Overflowed)
	}
	if got := n.srv.metrics.retentionDropped.Load(); got == 0 {
		t.Error("no message counted as dropped by retention")
	}
	// b1 fetched just now, so it is not stale; a2 never fetched: after
	// 10 days it is.
	n.clock.Advance(day)
	n.srv.sweep(testCtx(t))
	if got := n.srv.metrics.expiredDevices.Load(); got == 0 {
		t.Error("no device expired")
	}
	_, q, err = w.b2.Fetch(testCtx(t), 0, 0)
	must(t, "fetch b2", err)
	if q.Overflowed {
		t.Error("b2, which fetched every day, was made stale")
	}
	ls := n.srv.localStore()
	st, err := ls.QueueStats(testCtx(t), nil)
	must(t, "QueueStats", err)
	if st.Overflowed < 2 {
		t.Errorf("%d queues overflowed, want a2 (expired) and b1 (retention) at least", st.Overflowed)
	}
}
