// Package cluster runs qpchat's cluster store on NATS JetStream: an
// embedded nats-server with JetStream (Start), joined to its peers by
// routes, and the store's replicated log on a JetStream stream (Log,
// which implements store.Log). node/store holds the replicated engine;
// this package is the only one that imports NATS, and is not part of the
// browser build.
package cluster

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Config configures an embedded cluster server.
type Config struct {
	// Name names this server; it must be unique in the cluster and stay
	// the same across restarts (JetStream knows its peers by name).
	Name string
	// Cluster names the cluster; all its servers use the same name.
	Cluster string
	// Listen is the host:port this server takes routes from its peers on.
	Listen string
	// Advertise, if set, is the host:port the peers are told to reach
	// this server at instead of Listen (behind NAT, a port mapping or a
	// proxy). Servers connect to the addresses they are told only if
	// their Peers do not list them.
	Advertise string
	// Peers are the route addresses (host:port) of the cluster's servers;
	// this server's own address may be among them.
	Peers []string
	// DataDir holds JetStream's files (a "jetstream" directory is made
	// in it).
	DataDir string
	// RouteTLS secures the routes both ways (it must hold this server's
	// certificate); RoutePins, if set, are the SHA-256 fingerprints (hex
	// of the SubjectPublicKeyInfo) that peers' certificates must have.
	// Nil RouteTLS means plain routes: for tests on loopback only.
	RouteTLS  *tls.Config
	RoutePins []string
	// RouteUser and RoutePassword authenticate routes (both ways).
	RouteUser, RoutePassword string
	// MaxPayload bounds a message, hence a log entry; zero means 8 MiB.
	MaxPayload int32
	// Logger receives the server's notices, warnings and errors; nil
	// means silence.
	Logger *slog.Logger
}

// Node is a running embedded server.
type Node struct {
	srv   *server.Server
	cfg   Config
	token string // of the in-process client connections
}

// Start starts an embedded nats-server with JetStream, every write
// fsynced before it is acknowledged (sync_interval: always), and routes
// to the peers. qpchat connects to it in-process (Connect); its client
// port is on loopback and needs a random token only this process has. It returns once the server accepts connections; the JetStream
// cluster may still be electing its leader (OpenLog waits for it).
func Start(cfg Config) (*Node, error) {
	opts, err := cfg.options()
	if err != nil {
		return nil, err
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	// The server reports why it cannot start (a route port in use, a
	// data directory it cannot write) only to its logger: keep the last
	// error for the message below, whether or not cfg.Logger is set.
	lastErr := &lastError{}
	var l *slog.Logger
	if cfg.Logger != nil {
		l = cfg.Logger.With("nats", cfg.Name)
	}
	srv.SetLoggerV2(slogAdapter{l: l, last: lastErr}, false, false, false)
	srv.Start()
	// A fatal error (a listener that cannot bind) ends the wait at once.
	ready := false
	for deadline := time.Now().Add(10 * time.Second); !ready && time.Now().Before(deadline); {
		if _, fatal := lastErr.get(); fatal {
			break
		}
		ready = srv.ReadyForConnections(100 * time.Millisecond)
	}
	if !ready {
		srv.Shutdown()
		switch msg, fatal := lastErr.get(); {
		case fatal:
			return nil, fmt.Errorf("cluster: server %s cannot start: %s", cfg.Name, msg)
		case msg != "":
			return nil, fmt.Errorf("cluster: server %s did not start within 10 s (its last error: %s)", cfg.Name, msg)
		default:
			return nil, fmt.Errorf("cluster: server %s did not start within 10 s", cfg.Name)
		}
	}
	return &Node{srv: srv, cfg: cfg, token: opts.Authorization}, nil
}

// options builds the nats-server options of cfg.
func (cfg Config) options() (*server.Options, error) {
	if cfg.Name == "" || cfg.Cluster == "" || cfg.DataDir == "" {
		return nil, errors.New("cluster: a server needs a name, a cluster name and a data directory")
	}
	host, portStr, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("cluster: listen address %q: %w", cfg.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 || port > 65535 {
		return nil, fmt.Errorf("cluster: listen address %q: bad port", cfg.Listen)
	}
	maxPayload := cfg.MaxPayload
	if maxPayload == 0 {
		maxPayload = 8 << 20
	}
	// qpchat connects in-process, but nats-server starts its routes only
	// after its client listener (DontListen would leave it without
	// routes): listen on a random loopback port, behind a random token
	// that only this process knows.
	token := make([]byte, 32)
	if _, err := rand.Read(token); err != nil {
		return nil, err
	}
	opts := &server.Options{
		ServerName:    cfg.Name,
		Host:          "127.0.0.1",
		Port:          server.RANDOM_PORT,
		Authorization: hex.EncodeToString(token),
		NoSigs:        true,
		NoLog:         cfg.Logger == nil,
		MaxPayload:    maxPayload,
		// The routes carry whole log entries.
		MaxPending: 4 * int64(maxPayload),
		JetStream:  true,
		StoreDir:   filepath.Join(cfg.DataDir, "jetstream"),
		// Every write is fsynced before it is acknowledged.
		SyncAlways: true,
		Cluster: server.ClusterOpts{
			Name:     cfg.Cluster,
			Host:     host,
			Port:     port,
			Username: cfg.RouteUser,
			Password: cfg.RoutePassword,
		},
	}
	if cfg.RouteTLS != nil {
		opts.Cluster.TLSConfig = cfg.RouteTLS
		opts.Cluster.TLSTimeout = 5
		if len(cfg.RoutePins) > 0 {
			opts.Cluster.TLSPinnedCerts = server.PinnedCertSet{}
			for _, p := range cfg.RoutePins {
				opts.Cluster.TLSPinnedCerts[p] = struct{}{}
			}
		}
	}
	if cfg.Advertise != "" {
		if _, _, err := net.SplitHostPort(cfg.Advertise); err != nil {
			return nil, fmt.Errorf("cluster: advertised address %q: %w", cfg.Advertise, err)
		}
		opts.Cluster.Advertise = cfg.Advertise
	}
	for _, p := range cfg.Peers {
		if _, _, err := net.SplitHostPort(p); err != nil {
			return nil, fmt.Errorf("cluster: peer address %q: %w", p, err)
		}
		u := &url.URL{Scheme: "nats-route", Host: p}
		if cfg.RouteUser != "" {
			u.User = url.UserPassword(cfg.RouteUser, cfg.RoutePassword)
		}
		opts.Routes = append(opts.Routes, u)
	}
	return opts, nil
}

// Connect opens an in-process client connection to the server.
func (n *Node) Connect() (*nats.Conn, error) {
	nc, err := nats.Connect("", nats.InProcessServer(n.srv), nats.Name("qpchat "+n.cfg.Name), nats.Token(n.token),
		nats.MaxReconnects(-1))
	if err != nil {
		return nil, fmt.Errorf("cluster: connecting to the embedded server: %w", err)
	}
	return nc, nil
}

// Server returns the embedded server (for tests and metrics).
func (n *Node) Server() *server.Server { return n.srv }

// Shutdown stops the server and waits for it.
func (n *Node) Shutdown() {
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
}

// lastError keeps the server's most recent error or fatal message.
type lastError struct {
	mu    sync.Mutex
	msg   string
	fatal bool
}

func (e *lastError) set(m string, fatal bool) {
	e.mu.Lock()
	e.msg = m
	e.fatal = e.fatal || fatal
	e.mu.Unlock()
}

// get returns the last error and whether a fatal one was seen.
func (e *lastError) get() (msg string, fatal bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.msg, e.fatal
}

// maxLoggedError bounds the error kept for a start failure's message.
const maxLoggedError = 512

// slogAdapter passes the server's log to slog (l may be nil: silence)
// and keeps its last error in last.
type slogAdapter struct {
	l    *slog.Logger
	last *lastError
}

func (a slogAdapter) log(level slog.Level, f string, v []any) {
	if a.l != nil {
		a.l.Log(context.Background(), level, fmt.Sprintf(f, v...))
	}
}

func (a slogAdapter) keep(f string, v []any, fatal bool) {
	m := fmt.Sprintf(f, v...)
	if len(m) > maxLoggedError {
		m = m[:maxLoggedError] + "…"
	}
	a.last.set(m, fatal)
}

func (a slogAdapter) Noticef(f string, v ...any) { a.log(slog.LevelDebug, f, v) }
func (a slogAdapter) Warnf(f string, v ...any)   { a.log(slog.LevelWarn, f, v) }
func (a slogAdapter) Fatalf(f string, v ...any)  { a.keep(f, v, true); a.log(slog.LevelError, f, v) }
func (a slogAdapter) Errorf(f string, v ...any)  { a.keep(f, v, false); a.log(slog.LevelError, f, v) }
func (a slogAdapter) Debugf(f string, v ...any)  { a.log(slog.LevelDebug, f, v) }
func (a slogAdapter) Tracef(f string, v ...any)  { a.log(slog.LevelDebug, f, v) }
