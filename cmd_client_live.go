package main

import (
	"context"
	"fmt"
	"sync/atomic"

	nc "qpchat/node/client"
	"qpchat/rpc"
)

// liveClient is what a long-lived command (chat, recv --follow, the
// daemon) holds: the profile's open state, its device and a client on it.
type liveClient struct {
	st     *nc.State
	prof   *nc.Profile
	cl     *nc.Client
	redial atomic.Bool // set once the first connection is up
	// rot makes each redial try the --server list from the node after
	// the last one connected to: the one whose connection was lost, or
	// that refused the session (a cluster node without a quorum).
	rot serverRotation
}

// openLiveClient opens the profile's state for a long-lived command. The
// profile must have a device; the caller closes lc.st.
func openLiveClient(g *Globals, f *ClientFlags, p *ProfileFlags) (*liveClient, error) {
	st, err := openState(g, f, p, false)
	if err != nil {
		return nil, err
	}
	lc, err := newLiveClient(st, f, p)
	if err != nil {
		st.Close()
		return nil, err
	}
	return lc, nil
}

func newLiveClient(st *nc.State, f *ClientFlags, p *ProfileFlags) (*liveClient, error) {
	prof, err := st.Profile()
	if err != nil {
		return nil, err
	}
	if prof.Device == nil {
		return nil, fmt.Errorf("profile %q has no device yet (run register-state)", p.Profile)
	}
	if prof.Server != "" && f.Server == defaultServer {
		f.Server = prof.Server
	}
	cl, err := nc.New(nc.Config{State: st})
	if err != nil {
		return nil, err
	}
	return &liveClient{st: st, prof: prof, cl: cl}, nil
}

// dial opens one authenticated device session for the reconnecting
// session (client.Live). Connections stay open while idle; once the first
// one has been up, a redial gives up on a silent node sooner.
func (lc *liveClient) dial(g *Globals, f *ClientFlags) func(context.Context) (nc.Session, func(), error) {
	return func(ctx context.Context) (nc.Session, func(), error) {
		if lc.redial.Load() {
			lc.rot.next.Store(lc.rot.used.Load() + 1)
		}
		ctx = context.WithValue(ctx, serverRotationKey{}, &lc.rot)
		rc, err := dialStateWith(ctx, g, f, lc.st, false, func(o *rpc.DialOptions) {
			o.IdleTimeout, o.KeepAlive = chatIdleTimeout, chatKeepAlive
			if lc.redial.Load() {
				o.HandshakeTimeout = min(o.HandshakeTimeout, chatRedialTimeout)
			}
		})
		if err != nil {
			return nil, nil, err
		}
		sess, err := nc.AuthenticateDevice(ctx, &nc.RPCEntry{C: rc}, lc.prof)
		if err != nil {
			rc.Close()
			return nil, nil, err
		}
		return sess, func() { rc.Close() }, nil
	}
}

// start connects the reconnecting session within ctx (the first
// connection must succeed; later ones are retried with back-off).
func (lc *liveClient) start(ctx context.Context, g *Globals, f *ClientFlags) (*nc.Live, error) {
	lv, err := nc.StartLive(ctx, nc.LiveConfig{Client: lc.cl, Dial: lc.dial(g, f), Wait: chatWait, CallTimeout: f.Timeout})
	if err != nil {
		return nil, err
	}
	lc.redial.Store(true)
	// Follow a password change made on another device (best effort, as
	// one-shot commands do in connect).
	_ = lv.Do(ctx, func(ctx context.Context, c *nc.Client) error {
		if ok, err := c.SyncOwnKey(ctx); err == nil && ok {
			fmt.Fprintf(g.stderr, "qpchat: your password was changed (on another device, or by a change-password here that was interrupted); this device now holds the new user key %s\n", nc.Fingerprint(c.Profile().UserKey))
		}
		return nil
	})
	return lv, nil
}
