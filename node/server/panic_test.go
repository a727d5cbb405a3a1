package server

import (
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"qpchat/node/proto"
)

// TestPanicFailsOnlyTheCall makes the node's clock panic while one
// connection calls a NodeService method and a Session method: each call
// fails with CodeInternal, the panic is logged, and the node (the same
// session, other connections) goes on serving.
func TestPanicFailsOnlyTheCall(t *testing.T) {
	var broken atomic.Bool
	log := &logBuffer{}
	n := startNode(t, func(c *Config) {
		now := c.Now
		c.Now = func() time.Time {
			if broken.Load() {
				panic("test: the clock broke")
			}
			return now()
		}
		c.Logger = slog.New(slog.NewTextHandler(log, nil))
	})
	u := n.register("panicky")
	ctx := testCtx(t)
	info := func() error {
		fut, release := u.login.Info(ctx, nil)
		defer release()
		_, err := fut.Struct()
		return err
	}
	must(t, "info", info())
	c := n.dial() // before the clock breaks: handshakes read it too

	broken.Store(true)
	wantCode(t, "Session.info with a panicking clock", info(), proto.CodeInternal)
	_, err := c.LoginStart(ctx, n.cfg.OPAQUE, "panicky", []byte(testPassword))
	wantCode(t, "NodeService.loginStart with a panicking clock", err, proto.CodeInternal)
	broken.Store(false)

	must(t, "info after the panic", info())
	if _, err := n.dial().LoginStart(ctx, n.cfg.OPAQUE, "panicky", []byte(testPassword)); err != nil {
		t.Errorf("loginStart on a new connection after the panic: %v", err)
	}
	if got := log.String(); strings.Count(got, "method panicked") != 2 || !strings.Contains(got, "Session.info") || !strings.Contains(got, "loginStart") {
		t.Errorf("log does not report both panics:\n%s", got)
	}
	// The failed calls were counted out: shutdown does not wait for them.
	n.srv.mu.Lock()
	inflight := n.srv.inflight
	n.srv.mu.Unlock()
	if inflight != 0 {
		t.Errorf("%d calls still counted in flight", inflight)
	}
}
