package server

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	capnp "capnproto.org/go/capnp/v3"
	capnprpc "capnproto.org/go/capnp/v3/rpc"
	"capnproto.org/go/capnp/v3/server"
	"github.com/quic-go/quic-go"

	"qpchat/node/proto"
	"qpchat/rpc"
)

// conn is one client connection. Its bootstrap object (nodeService) and
// the Session capabilities it hands out keep a pointer to it, so
// per-connection state (pending OPAQUE exchanges, sessions) lives here.
type conn struct {
	srv    *Server
	qc     peerConn
	remote net.Addr
	log    *slog.Logger
	opened time.Time

	// open, for a web connection, runs the web channel handshake and
	// returns the channel (webConn.open); nil for QUIC, whose stream
	// the client opens.
	open func(ctx context.Context) (*rpc.WebChannel, error)

	// exporter is the channel binding of this connection: the TLS
	// exporter on QUIC (rpc.ChannelBinding), the web channel's binding
	// value on a WebSocket; authentication proofs are bound to it, under
	// the labels of its kind, binding.
	exporter []byte
	binding  proto.Binding

	// inflight counts this connection's calls (Limits.MaxCallsPerConn).
	inflight atomic.Int32

	// pending and unfinished are this connection's byte budgets
	// (rpc.MessageLimits.Pending and Unfinished), children of its
	// address's, children of the node's (Config.MaxConnBuffer and so on).
	pending, unfinished *rpc.Budget
	addr                *addrBudget
	cut                 atomic.Bool // closed by cutUnfinished

	mu           sync.Mutex
	registration *pendingRegistration // between registerStart and registerFinish
	login        *pendingLogin        // between loginStart and loginFinish
	sessions     []*session           // handed out on this connection

	// waiting is the start delayed by the login rate limit, if any
	// (guarded by mu; delayLogin).
	waiting *delayedStart
}

// peerConn is the part of a client connection conn uses: a
// *quic.Conn, or a webConn.
type peerConn interface {
	RemoteAddr() net.Addr
	// Context is done when the connection ends.
	Context() context.Context
	CloseWithError(code quic.ApplicationErrorCode, reason string) error
}

func newConn(s *Server, pc peerConn) *conn {
	return &conn{
		srv:    s,
		qc:     pc,
		remote: pc.RemoteAddr(),
		log:    s.log.With("remote", pc.RemoteAddr().String()),
		opened: time.Now(),
	}
}

// serve runs the connection until the peer leaves, breaks the protocol,
// is too slow, or ctx is done. It never panics on peer input: every
// failure ends only this connection.
func (c *conn) serve(ctx context.Context) {
	c.log.Debug("connection opened")
	newTransport, ok := c.openTransport(ctx)
	if !ok {
		return
	}

	rlog := &rpcLogger{log: c.log}
	rc := capnprpc.NewConn(newTransport(rpc.MessageLimits{
		MaxMessageSize: c.srv.cfg.MaxMessageSize,
		FrameTimeout:   c.srv.cfg.FrameTimeout,
		WriteTimeout:   c.srv.cfg.WriteTimeout,
		MaxUnsent:      c.srv.cfg.MaxUnsent,
		// Config.MaxUnfinished is the connection level of Unfinished.
		Pending:       c.pending,
		AnswerReserve: c.srv.cfg.MaxMessageSize,
		Unfinished:    c.unfinished,
		OnUnfinished: func(err error) {
			c.log.Warn("connection closed: the client does not finish its calls", "max_bytes", c.srv.cfg.MaxUnfinished, "err", err)
			c.close(rpc.CodeProtocol, "too many answers left unfinished")
		},
		ClientShapesOnly: true,
		OnRefused: func(err error) {
			c.log.Info("connection closed: the client sent a message qpchat clients never send", "err", err)
			c.close(rpc.CodeProtocol, "message not allowed")
		},

		OnUnfinishedShared: c.srv.cutUnfinished,
		OnWriteStall: func(err error) {
			c.log.Warn("connection closed: the client stopped reading its answers", "timeout", c.srv.cfg.WriteTimeout, "err", err)
			c.close(rpc.CodeTimeout, "no write progress: stopped reading")
		},
	}), &capnprpc.Options{
		BootstrapClient: c.nodeServiceClient(),
		Logger:          rlog,
	})

	defer c.endSessions()
	select {
	case <-rc.Done():
		// The RPC layer ended: the peer closed the stream or sent
		// something it could not read (garbage, an oversized or
		// stalled frame).
		c.log.Debug("connection ended", "reason", rlog.lastErr(), "duration", time.Since(c.opened))
		c.close(rpc.CodeProtocol, "rpc connection ended")
	case <-c.qc.Context().Done():
		c.log.Debug("connection closed by peer", "cause", context.Cause(c.qc.Context()), "duration", time.Since(c.opened))
	case <-ctx.Done():
		c.close(rpc.CodeShuttingDown, "server shutting down")
	}
	rc.Close()
	<-rc.Done()
}

// openTransport gets the connection ready for RPC: its channel binding
// and its byte stream. On failure it has closed the connection.
func (c *conn) openTransport(ctx context.Context) (func(rpc.MessageLimits) capnprpc.Transport, bool) {
	if c.open != nil {
		wc, err := c.open(ctx)
		if err != nil {
			c.log.Info("web connection dropped: handshake failed", "err", err)
			c.close(rpc.CodeProtocol, "web channel handshake failed")
			return nil, false
		}
		c.exporter, c.binding = wc.Binding(), proto.BindingWeb
		return func(lim rpc.MessageLimits) capnprpc.Transport { return rpc.NewWebTransport(wc, lim) }, true
	}
	qc := c.qc.(*quic.Conn)
	exp, err := rpc.ChannelBinding(qc)
	if err != nil {
		c.log.Warn("connection dropped", "err", err)
		c.close(rpc.CodeProtocol, "no channel binding")
		return nil, false
	}
	c.exporter, c.binding = exp, proto.BindingTLSExporter

	sctx, cancel := context.WithTimeout(ctx, c.srv.cfg.StreamTimeout)
	st, err := qc.AcceptStream(sctx)
	cancel()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			c.log.Info("connection dropped: no RPC stream in time", "timeout", c.srv.cfg.StreamTimeout)
			c.close(rpc.CodeTimeout, "no RPC stream opened in time")
		} else {
			c.log.Debug("connection ended before its RPC stream", "err", err)
			c.close(rpc.CodeClosed, "")
		}
		return nil, false
	}
	return func(lim rpc.MessageLimits) capnprpc.Transport { return rpc.NewStreamTransport(st, lim) }, true
}

// nodeService makes the bootstrap capability of the connection, its
// methods guarded against panics.
func (c *conn) nodeServiceClient() capnp.Client {
	ns := &nodeService{c: c}
	return capnp.NewClient(server.New(guarded(c.log, c.srv.prom, rpc.NodeService_Methods(nil, ns)), ns, nil))
}

// parkAnswer gives back the answer reservation the transport holds for
// the current call (rpc.MessageLimits.AnswerReserve) while the call
// waits with nothing to answer (fetchWait), so that parked long polls
// do not fill the address and node budgets. The returned unpark takes it
// back, waiting for room; call it before building the answer. It returns
// an error only if the connection ended meanwhile; later calls return
// the first result.
func (c *conn) parkAnswer() (unpark func() error) {
	if c.pending == nil || c.qc == nil {
		return func() error { return nil } // no byte budget on this connection
	}
	n := int64(c.srv.cfg.MaxMessageSize)
	c.pending.Release(n)
	c.srv.parked.Add(1)
	var once sync.Once
	var err error
	return func() error {
		once.Do(func() {
			c.srv.parked.Add(-1)
			if rerr := c.pending.Reserve(n, c.qc.Context().Done(), 0); rerr != nil {
				// Keep the books balanced: the Return releases n.
				c.pending.Charge(n)
				err = proto.Errorf(proto.CodeShuttingDown, "the connection is closing")
			}
		})
		return err
	}
}

// begin counts a call of this connection: it refuses calls during
// shutdown and beyond Limits.MaxCallsPerConn. Call done when finished.
func (c *conn) begin() (done func(), err error) {
	sdone, err := c.srv.beginCall()
	if err != nil {
		return nil, proto.Errorf(proto.CodeShuttingDown, "the node is shutting down")
	}
	if n := c.inflight.Add(1); int(n) > c.srv.cfg.Limits.MaxCallsPerConn {
		c.inflight.Add(-1)
		sdone()
		return nil, proto.Errorf(proto.CodeBusy, "more than %d calls in flight on one connection (--max-calls-per-conn)", c.srv.cfg.Limits.MaxCallsPerConn)
	}
	return func() {
		c.inflight.Add(-1)
		sdone()
	}, nil
}

// addSession records a session handed out on this connection.
func (c *conn) addSession(s *session) {
	c.mu.Lock()
	c.sessions = append(c.sessions, s)
	c.mu.Unlock()
}

// endSessions ends every session of the connection once it is gone.
func (c *conn) endSessions() {
	c.mu.Lock()
	ss := c.sessions
	c.sessions = nil
	c.registration, c.login = nil, nil
	c.mu.Unlock()
	for _, s := range ss {
		s.end()
		if s.kind == rpc.SessionKind_device {
			c.srv.devices.remove(s)
		}
	}
}

// close ends the QUIC connection with code and reason; later calls do
// nothing.
func (c *conn) close(code quic.ApplicationErrorCode, reason string) {
	c.qc.CloseWithError(code, reason)
}

// addrBudget is the byte budgets shared by the connections of one client
// address (IPv6 by /64), Config.MaxAddrBuffer each.
type addrBudget struct {
	key                 string
	pending, unfinished *rpc.Budget
	conns               int // guarded by addrBudgets.mu
}

// addrBudgets holds the budgets of the addresses with open connections.
type addrBudgets struct {
	mu sync.Mutex
	m  map[string]*addrBudget
}

// attach gives c its budgets: children of its address's, which are
// children of the node's.
func (s *Server) attachBudgets(c *conn) {
	key := addrKey(c.remote)
	s.addrBudgets.mu.Lock()
	a := s.addrBudgets.m[key]
	if a == nil {
		a = &addrBudget{
			key:        key,
			pending:    s.pendingTotal.Child("address", int64(s.cfg.MaxAddrBuffer)),
			unfinished: s.unfinishedTotal.Child("address", int64(s.cfg.MaxAddrBuffer)),
		}
		s.addrBudgets.m[key] = a
	}
	a.conns++
	s.addrBudgets.mu.Unlock()
	c.addr = a
	c.pending = a.pending.Child("connection", int64(s.cfg.MaxConnBuffer))
	c.unfinished = a.unfinished.Child("connection", int64(s.cfg.MaxUnfinished))
}

// detachBudgets returns to the address and the node whatever c still
// holds (answers the RPC layer never released once the connection
// died), and forgets the address's budgets with its last connection.
func (s *Server) detachBudgets(c *conn) {
	c.pending.Detach()
	c.unfinished.Detach()
	s.addrBudgets.mu.Lock()
	defer s.addrBudgets.mu.Unlock()
	if a := c.addr; a != nil {
		a.conns--
		if a.conns == 0 {
			delete(s.addrBudgets.m, a.key)
		}
	}
}

// cutUnfinished is called when a written answer takes the unfinished
// budget over of an address or of the node (over) past its limit. It
// closes the connection under that budget that holds the most unfinished
// answers, which need not be the one whose answer crossed: an honest
// client holds the answers of about 250 ms, a client that withholds its
// Finish messages all it can. One connection at a time: while one cut
// off is still open (its bytes about to be freed), nothing more is cut.
func (s *Server) cutUnfinished(over *rpc.Budget) {
	s.mu.Lock()
	var victim *conn
	var most int64
	for c := range s.conns {
		if c.unfinished == nil || (over != s.unfinishedTotal && c.addr.unfinished != over) {
			continue
		}
		if c.cut.Load() {
			s.mu.Unlock()
			return
		}
		if n := c.unfinished.Used(); n > most {
			victim, most = c, n
		}
	}
	if victim != nil {
		victim.cut.Store(true)
	}
	s.mu.Unlock()
	if victim != nil {
		victim.log.Warn("connection closed: it holds the most unfinished answers of a full budget", "budget", over.Name(), "limit", over.Limit(), "bytes", most)
		victim.close(rpc.CodeProtocol, "too many answers left unfinished")
	}
}
