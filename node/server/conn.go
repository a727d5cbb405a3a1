package server

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"

	capnp "capnproto.org/go/capnp/v3"
	capnprpc "capnproto.org/go/capnp/v3/rpc"
	"github.com/quic-go/quic-go"

	"qpchat/rpc"
)

// conn is one client connection. Its bootstrap object (nodeService) and,
// later, the Session capabilities it hands out keep a pointer to it, so
// per-connection state such as the authenticated identity lives here.
type conn struct {
	srv    *Server
	qc     *quic.Conn
	remote net.Addr
	log    *slog.Logger
	opened time.Time

	// exporter is the TLS channel binding of this connection
	// (rpc.ChannelBinding); authentication proofs are bound to it.
	exporter []byte
}

func newConn(s *Server, qc *quic.Conn) *conn {
	return &conn{
		srv:    s,
		qc:     qc,
		remote: qc.RemoteAddr(),
		log:    s.log.With("remote", qc.RemoteAddr().String()),
		opened: time.Now(),
	}
}

// serve runs the connection until the peer leaves, breaks the protocol,
// is too slow, or ctx is done. It never panics on peer input: every
// failure ends only this connection.
func (c *conn) serve(ctx context.Context) {
	c.log.Debug("connection opened")
	exp, err := rpc.ChannelBinding(c.qc)
	if err != nil {
		c.log.Warn("connection dropped", "err", err)
		c.close(rpc.CodeProtocol, "no channel binding")
		return
	}
	c.exporter = exp

	sctx, cancel := context.WithTimeout(ctx, c.srv.cfg.StreamTimeout)
	st, err := c.qc.AcceptStream(sctx)
	cancel()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			c.log.Info("connection dropped: no RPC stream in time", "timeout", c.srv.cfg.StreamTimeout)
			c.close(rpc.CodeTimeout, "no RPC stream opened in time")
		} else {
			c.log.Debug("connection ended before its RPC stream", "err", err)
			c.close(rpc.CodeClosed, "")
		}
		return
	}

	rlog := &rpcLogger{log: c.log}
	rc := capnprpc.NewConn(rpc.NewStreamTransport(st, rpc.MessageLimits{
		MaxMessageSize: c.srv.cfg.MaxMessageSize,
		FrameTimeout:   c.srv.cfg.FrameTimeout,
	}), &capnprpc.Options{
		BootstrapClient: capnp.Client(rpc.NodeService_ServerToClient(&nodeService{c: c})),
		Logger:          rlog,
	})

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

// close ends the QUIC connection with code and reason; later calls do
// nothing.
func (c *conn) close(code quic.ApplicationErrorCode, reason string) {
	c.qc.CloseWithError(code, reason)
}
