// Package server is the qpchat node: it accepts QUIC connections, runs
// Cap'n Proto RPC on each (one goroutine per connection) and serves the
// NodeService bootstrap capability of schemas/node.capnp.
//
// Layout: config.go (Config and its defaults), identity.go (the node's
// TLS identity), server.go (listening, shutdown, call accounting),
// conn.go (one connection), node_service.go (NodeService methods).
package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"qpchat/rpc"
)

// ErrShuttingDown is returned by methods called after shutdown began.
var ErrShuttingDown = errors.New("server: shutting down")

// Server is a qpchat node. Make one with New, then call Serve.
type Server struct {
	cfg         Config
	log         *slog.Logger
	ln          *rpc.Listener
	fingerprint string
	created     bool

	mu       sync.Mutex
	conns    map[*conn]struct{}
	closing  bool
	inflight int
	idle     chan struct{} // closed when closing and inflight drops to 0
}

// New loads (or on first start creates) the node's TLS identity and binds
// the listening socket, so Addr and Fingerprint are known before Serve.
func New(cfg Config) (*Server, error) {
	cfg = populateConfig(cfg)
	var (
		cert    tls.Certificate
		created bool
		err     error
	)
	switch {
	case cfg.TLSCertFile != "" && cfg.TLSKeyFile != "":
		cert, err = loadIdentityFiles(cfg.TLSCertFile, cfg.TLSKeyFile)
	case cfg.TLSCertFile != "" || cfg.TLSKeyFile != "":
		err = errors.New("server: give both a TLS certificate and its key, or neither")
	case cfg.DataDir == "":
		err = errors.New("server: no data directory")
	default:
		cert, created, err = loadOrCreateIdentity(cfg.DataDir)
	}
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("server: TLS certificate: %w", err)
	}
	ln, err := rpc.Listen(cfg.Listen, cert, rpc.ServerQUICConfig(cfg.HandshakeTimeout, cfg.IdleTimeout))
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	return &Server{
		cfg:         cfg,
		log:         cfg.Logger,
		ln:          ln,
		fingerprint: rpc.Fingerprint(leaf),
		created:     created,
		conns:       make(map[*conn]struct{}),
		idle:        make(chan struct{}),
	}, nil
}

// Addr returns the UDP address the node listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Fingerprint returns the fingerprint of the node's key (rpc.Fingerprint).
func (s *Server) Fingerprint() string { return s.fingerprint }

// CreatedIdentity reports whether New made a new identity in DataDir.
func (s *Server) CreatedIdentity() bool { return s.created }

// Serve accepts connections until ctx is done. Then it stops accepting,
// waits up to Config.ShutdownTimeout for calls in flight, closes every
// connection and returns nil. It returns an error only if accepting
// fails for another reason.
func (s *Server) Serve(ctx context.Context) error {
	s.log.Info("node listening", "addr", s.Addr().String(), "fingerprint", s.fingerprint, "version", s.cfg.Version)
	connCtx, cancelConns := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelConns()

	var wg sync.WaitGroup
	acceptErr := make(chan error, 1)
	go func() {
		for {
			qc, err := s.ln.Accept(ctx)
			if err != nil {
				acceptErr <- err
				return
			}
			c, ok := s.track(qc)
			if !ok {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer s.untrack(c)
				c.serve(connCtx)
			}()
		}
	}()

	var err error
	select {
	case <-ctx.Done():
		<-acceptErr // Accept returns once ctx is done
	case err = <-acceptErr:
		err = fmt.Errorf("server: accept: %w", err)
	}
	s.ln.Close()
	s.log.Info("node stopping", "calls_in_flight", s.beginShutdown())

	select {
	case <-s.idle:
	case <-time.After(s.cfg.ShutdownTimeout):
		s.log.Warn("calls still in flight after the shutdown timeout; closing anyway", "timeout", s.cfg.ShutdownTimeout)
	}
	cancelConns()
	s.mu.Lock()
	for c := range s.conns {
		c.close(rpc.CodeShuttingDown, "server shutting down")
	}
	s.mu.Unlock()
	wg.Wait()
	s.ln.Shutdown()
	s.log.Info("node stopped")
	return err
}

// track registers a new connection, or closes it if the node is full or
// stopping.
func (s *Server) track(qc *quic.Conn) (*conn, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closing:
		qc.CloseWithError(rpc.CodeShuttingDown, "server shutting down")
		return nil, false
	case len(s.conns) >= s.cfg.MaxConns:
		s.log.Warn("connection refused: too many connections", "remote", qc.RemoteAddr().String(), "max", s.cfg.MaxConns)
		qc.CloseWithError(rpc.CodeBusy, "too many connections")
		return nil, false
	}
	c := newConn(s, qc)
	s.conns[c] = struct{}{}
	return c, true
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// beginCall counts a method call in flight; every method calls it first
// and the returned function when it is done. After shutdown began it
// refuses with ErrShuttingDown.
func (s *Server) beginCall() (done func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return nil, ErrShuttingDown
	}
	s.inflight++
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.inflight--
			if s.closing && s.inflight == 0 {
				close(s.idle)
			}
		})
	}, nil
}

// beginShutdown refuses new calls and returns the number in flight.
func (s *Server) beginShutdown() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing = true
	if s.inflight == 0 {
		close(s.idle)
	}
	return s.inflight
}
