// Package server is the qpchat node: it accepts QUIC connections, runs
// Cap'n Proto RPC on each (one goroutine per connection) and serves the
// NodeService bootstrap capability of schemas/node.capnp.
//
// Layout: config.go (Config and its defaults), identity.go (the node's
// TLS identity), server.go (listening, shutdown, call accounting),
// conn.go (one connection), node_service.go (NodeService: ping),
// auth.go (OPAQUE registration and login, device authentication),
// sessions.go (the Session capability and its authorisation),
// devices.go, keypackages.go, groups.go, delivery.go (Session methods by
// concern), header.go (the MLSMessage header the node routes by),
// limits.go (limits and rate limiting), errors.go (mapping to wire
// errors), metrics.go (counters in the log).
//
// docs/PROTOCOL.md describes the protocol this package serves.
package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"qpchat/node/store"
	"qpchat/opaque"
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
	spkiHash    []byte // SHA-256 of the certificate's SubjectPublicKeyInfo
	created     bool

	store  store.Store
	closer io.Closer // the store, closed when Serve returns
	opaque *opaque.Server

	loginByName *rateLimiter // keyed by nameAddrKey
	loginByAddr *rateLimiter
	kpFetch     *rateLimiter
	// shared, in a cluster (Config.RateStore), replaces the three
	// limiters above with cluster-wide ones (limits_shared.go).
	shared  *sharedLimits
	flood   *floodDetector
	perAddr addrCounter
	// The node's byte budgets (Config.MaxTotalBuffer), parents of the
	// addresses' (addrBudgets), parents of the connections'.
	pendingTotal, unfinishedTotal *rpc.Budget
	addrBudgets                   addrBudgets
	parked                        atomic.Int64   // calls parked by conn.parkAnswer
	devices                       deviceSessions // live device sessions, ended on revocation
	deviceMu                      sync.Mutex     // serialises device registrations (MaxDevices)
	lowPools                      lowPools       // KeyPackage pools that ran low
	metrics                       metrics
	prom                          *promMetrics // Prometheus view of metrics (prommetrics.go)
	admin                         *adminServer // the admin listener, nil when off (admin.go)
	web                           *webServer   // the web listener, nil when off (web.go)
	accepting                     atomic.Bool  // the QUIC listener accepts (readiness)

	// loginWait waits out a login start's rate-limit delay (sleepCtx;
	// tests replace it to run on the fake clock).
	loginWait func(ctx context.Context, d time.Duration) error
	seen      seenDevices                      // when devices were last recorded as seen (policy.go)
	live      atomic.Pointer[store.LocalStore] // the store while Serve has it open
	ready     chan struct{}                    // closed once Serve accepts

	mu       sync.Mutex
	conns    map[*conn]struct{}
	closing  bool
	inflight int
	idle     chan struct{} // closed when closing and inflight drops to 0
	stopping chan struct{} // closed when shutdown begins: long polls answer
}

// New loads (or on first start creates) the node's TLS identity and binds
// the listening socket, so Addr and Fingerprint are known before Serve.
func New(cfg Config) (*Server, error) {
	cfg = populateConfig(cfg)
	cfg.Policy = cfg.Policy.withDefaults()
	if err := CheckRegistration(cfg.Policy.Registration); err != nil {
		return nil, err
	}
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
		if err = finishRotation(cfg.DataDir); err == nil { // key succession (succession.go)
			cert, created, err = loadOrCreateIdentity(cfg.DataDir)
		}
		if err == nil {
			cert, err = prepareSuccession(cfg, cert, cfg.Logger)
		}
	}
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("server: TLS certificate: %w", err)
	}
	if cfg.StorePath == "" {
		return nil, errors.New("server: no data directory for the store")
	}
	s := &Server{
		cfg:             cfg,
		log:             cfg.Logger,
		fingerprint:     rpc.Fingerprint(leaf),
		created:         created,
		conns:           make(map[*conn]struct{}),
		idle:            make(chan struct{}),
		stopping:        make(chan struct{}),
		loginByName:     newRateLimiter(cfg.Limits.LoginRateName, cfg.Limits.MaxLoginDelay, cfg.Now),
		loginByAddr:     newRateLimiter(cfg.Limits.LoginRateAddr, cfg.Limits.MaxLoginDelay, cfg.Now),
		kpFetch:         newRateLimiter(cfg.Limits.KeyPackageFetchRate, 0, cfg.Now),
		flood:           &floodDetector{above: cfg.Limits.RetryAbove, now: cfg.Now},
		perAddr:         addrCounter{n: make(map[string]int)},
		pendingTotal:    rpc.NewBudget("total", int64(cfg.MaxTotalBuffer)),
		unfinishedTotal: rpc.NewBudget("total", int64(cfg.MaxTotalBuffer)),
		addrBudgets:     addrBudgets{m: make(map[string]*addrBudget)},
		devices:         deviceSessions{m: make(map[string]map[*session]struct{})},
		lowPools:        lowPools{m: make(map[string]map[uint16]bool)},
		loginWait:       sleepCtx,
		ready:           make(chan struct{}),
	}
	s.prom = newPromMetrics(s)
	spki := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	s.spkiHash = spki[:]
	// The store is opened here to read (or create) the keys the listener
	// and OPAQUE need, and closed again: Serve opens it for good, so a
	// Server that is never served holds no lock on the file.
	if err := s.openStore(); err != nil {
		return nil, err
	}
	opts, err := s.transportOptions()
	s.closer.Close()
	s.store, s.closer = nil, nil
	if err == nil {
		s.ln, err = rpc.ListenWith(cfg.Listen, cert, rpc.ServerQUICConfig(cfg.HandshakeTimeout, cfg.IdleTimeout), opts)
	}
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if err := s.startAdmin(); err != nil {
		s.ln.Shutdown()
		return nil, err
	}
	if err := s.startWeb(cert); err != nil {
		s.ln.Shutdown()
		s.stopAdmin()
		return nil, err
	}
	return s, nil
}

// openStore opens the encrypted store and the OPAQUE server whose setup
// it keeps.
func (s *Server) openStore() error {
	opts := store.Options{Passphrase: s.cfg.StorePassphrase}
	if opts.Passphrase == nil {
		opts.KeyFile = s.cfg.StoreKeyFile
	}
	if err := os.MkdirAll(filepath.Dir(s.cfg.StorePath), 0o700); err != nil {
		return fmt.Errorf("server: store directory: %w", err)
	}
	lim := store.Limits{
		MaxQueueLen:    s.cfg.Limits.MaxQueueLength,
		MaxKeyPackages: s.cfg.Limits.MaxKeyPackages,
		MaxGroupSize:   s.cfg.Limits.MaxGroupSize,
	}
	var ls *store.LocalStore
	var err error
	if s.cfg.StoreLog != nil {
		ls, err = store.OpenClusterServer(s.cfg.StorePath, opts, lim, store.ClusterOptions{Log: timedLog{s.cfg.StoreLog, s.prom.clusterCalls}})
	} else {
		ls, err = store.OpenServer(s.cfg.StorePath, opts, lim)
	}
	if err != nil {
		return fmt.Errorf("server: opening %s: %w", s.cfg.StorePath, err)
	}
	s.store, s.closer = ls, ls
	ctx := context.Background()
	setupBytes, err := s.store.Secret(ctx, "opaque-server-setup", func() ([]byte, error) {
		setup, err := s.cfg.OPAQUE.GenerateServerSetup(rand.Reader)
		if err != nil {
			return nil, err
		}
		return setup.Marshal(), nil
	})
	if err == nil {
		var setup *opaque.ServerSetup
		if setup, err = s.cfg.OPAQUE.ParseServerSetup(setupBytes); err == nil {
			s.opaque, err = s.cfg.OPAQUE.NewServer(setup)
		}
		clear(setupBytes)
	}
	if err != nil {
		ls.Close()
		return fmt.Errorf("server: OPAQUE server setup: %w", err)
	}
	if s.cfg.RateStore != nil && s.shared == nil {
		s.shared, err = newSharedLimits(timedRateStore{s.cfg.RateStore, s.prom.clusterCalls}, ls.DB().Ident("rate-limits", nil), s.cfg.Limits, s.cfg.Now)
		if err != nil {
			ls.Close()
			return err
		}
	}
	return nil
}

// transportOptions loads (or creates) the QUIC keys kept in the store.
func (s *Server) transportOptions() (rpc.TransportOptions, error) {
	ctx := context.Background()
	random32 := func() ([]byte, error) {
		b := make([]byte, 32)
		_, err := rand.Read(b)
		return b, err
	}
	reset, err := s.store.Secret(ctx, "quic-stateless-reset-key", random32)
	if err != nil {
		return rpc.TransportOptions{}, err
	}
	token, err := s.store.Secret(ctx, "quic-token-key", random32)
	if err != nil {
		return rpc.TransportOptions{}, err
	}
	if len(reset) != 32 || len(token) != 32 {
		return rpc.TransportOptions{}, errors.New("stored QUIC keys have the wrong length")
	}
	var rk quic.StatelessResetKey
	var tk quic.TokenGeneratorKey
	copy(rk[:], reset)
	copy(tk[:], token)
	return rpc.TransportOptions{StatelessResetKey: &rk, TokenKey: &tk, VerifySourceAddress: s.flood.verify}, nil
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
	if err := s.openStore(); err != nil {
		s.ln.Shutdown()
		s.stopAdmin()
		s.stopWeb()
		return err
	}
	if ls, ok := s.store.(*store.LocalStore); ok {
		ls.DB().ObserveCommits(s.prom.observeCommit)
		s.live.Store(ls)
	}
	s.accepting.Store(true)
	close(s.ready)
	s.serveAdmin()
	if s.cfg.Admin.Ready != nil {
		s.cfg.Admin.Ready()
	}
	// The fingerprint is logged at debug level only: `qpchat serve`
	// prints it on stdout, once.
	s.log.Info("node listening", "addr", s.Addr().String(), "version", s.cfg.Version)
	s.log.Debug("node key", "fingerprint", s.fingerprint)
	connCtx, cancelConns := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelConns()
	go s.logMetrics(ctx, s.cfg.MetricsInterval)
	s.serveWeb(connCtx)

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.pruneFetches(ctx)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.policySweeps(ctx)
	}()
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
		// Accept also returns when ctx ends; both cases can be ready at
		// once, and that is a normal stop.
		if ctx.Err() != nil {
			err = nil
		} else {
			err = fmt.Errorf("server: accept: %w", err)
		}
	}
	s.accepting.Store(false)
	if s.cfg.Admin.Stopping != nil {
		s.cfg.Admin.Stopping()
	}
	s.ln.Close()
	s.stopWeb()
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
	s.waitWeb()
	s.ln.Shutdown()
	s.stopAdmin()
	s.live.Store(nil)
	if cerr := s.closer.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("server: closing the store: %w", cerr)
	}
	s.log.Info("node stopped")
	return err
}

// track registers a new connection, or closes it if the node is full or
// stopping.
func (s *Server) track(qc peerConn) (*conn, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closing:
		qc.CloseWithError(rpc.CodeShuttingDown, "server shutting down")
		return nil, false
	case len(s.conns) >= s.cfg.MaxConns:
		s.log.Warn("connection refused: too many connections", "remote", qc.RemoteAddr().String(), "max", s.cfg.MaxConns)
		qc.CloseWithError(rpc.CodeBusy, "too many connections")
		s.metrics.refusedConns.Add(1)
		return nil, false
	case !s.perAddr.add(addrKey(qc.RemoteAddr()), s.cfg.Limits.MaxConnsPerAddr):
		s.log.Warn("connection refused: too many connections from one address", "remote", qc.RemoteAddr().String(), "max", s.cfg.Limits.MaxConnsPerAddr)
		qc.CloseWithError(rpc.CodeBusy, "too many connections from your address")
		s.metrics.refusedConns.Add(1)
		return nil, false
	}
	c := newConn(s, qc)
	s.attachBudgets(c)
	s.conns[c] = struct{}{}
	return c, true
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.perAddr.remove(addrKey(c.remote))
	s.detachBudgets(c)
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
	if !s.closing {
		close(s.stopping)
	}
	s.closing = true
	if s.inflight == 0 {
		close(s.idle)
	}
	return s.inflight
}
