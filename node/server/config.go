package server

import (
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"qpchat/node/proto"
	"qpchat/node/store"
	"qpchat/opaque"
	"qpchat/rpc"
)

// Config configures a Server. The zero value of every field but DataDir
// means the default named in its comment; populateConfig fills them.
type Config struct {
	// Listen is the UDP address to listen on. Default ":7000".
	Listen string
	// DataDir holds the node's files (its TLS identity). Required. It is
	// created with mode 0700.
	DataDir string
	// TLSCertFile and TLSKeyFile, when both set, name a PEM certificate
	// (chain) and key to use instead of the self-signed identity in
	// DataDir; clients then verify it against a CA.
	TLSCertFile, TLSKeyFile string
	// Version is what ping reports. Default "dev".
	Version string
	// Logger receives the node's log. Default: discard.
	Logger *slog.Logger

	// MaxConns bounds the open connections; more are closed at once with
	// rpc.CodeBusy. Default 1024.
	MaxConns int
	// HandshakeTimeout bounds the QUIC handshake. Default
	// rpc.DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// IdleTimeout closes a connection with no packets for this long
	// (clients send keep-alives). Default rpc.DefaultIdleTimeout.
	IdleTimeout time.Duration
	// StreamTimeout is how long a connection may stay without opening its
	// RPC stream (sending its first bytes) before it is closed. Default 10s.
	StreamTimeout time.Duration
	// FrameTimeout bounds the arrival of one Cap'n Proto frame once its
	// first byte came. Default rpc.DefaultFrameTimeout.
	FrameTimeout time.Duration
	// WriteTimeout closes a connection whose client makes the node's
	// writes wait this long without progress (it stopped reading its
	// answers), so unsent answers cannot pile up. Default
	// rpc.DefaultWriteTimeout.
	WriteTimeout time.Duration
	// MaxUnsent pauses reading a connection's calls while this many of
	// its answers are in progress or queued unwritten
	// (rpc.MessageLimits.MaxUnsent), so a client that reads slowly is
	// slowed down instead of growing the queue. Default
	// 2 × Limits.MaxCallsPerConn.
	MaxUnsent int
	// MaxUnfinished closes a connection whose written answers not yet
	// released by the client's Finish exceed this many bytes (the
	// connection level of rpc.MessageLimits.Unfinished): the library
	// keeps each answer until then. Honest go-capnp clients send Finish
	// 250 ms after the Return, so they hold the answers of the last
	// 250 ms or so. Default MaxConnBuffer.
	MaxUnfinished uint64
	// MaxConnBuffer, MaxAddrBuffer and MaxTotalBuffer bound in bytes,
	// per connection, per client address (IPv6 by /64) and for the whole
	// node, two kinds of buffered data (docs/PROTOCOL.md, Memory bounds):
	// calls in progress (each frame read until released, plus
	// MaxMessageSize per call until its answer is written;
	// rpc.MessageLimits.Pending), for which reading pauses while a frame
	// would not fit, and answers written but not finished
	// (rpc.MessageLimits.Unfinished), past which the connection that
	// passes a bound is closed (MaxUnfinished replaces MaxConnBuffer
	// there). Defaults 32 MiB, 128 MiB and 1 GiB.
	MaxConnBuffer, MaxAddrBuffer, MaxTotalBuffer uint64
	// MaxMessageSize bounds one Cap'n Proto frame, in bytes. Default
	// Limits.MaxMessageSize plus 1 MiB, at least
	// proto.MinClientFrameSize.
	MaxMessageSize uint64
	// ShutdownTimeout bounds how long Serve waits, once its context is
	// done, for calls in flight before closing connections. Default 10s.
	ShutdownTimeout time.Duration

	// StorePath is the node's encrypted database. Default
	// DataDir/node.db.
	StorePath string
	// StoreKeyFile holds the database's 32-byte key (created with mode
	// 0600). Used unless StorePassphrase is set. Default DataDir/node.key.
	StoreKeyFile string
	// StorePassphrase, if set, derives the database key through Argon2id
	// instead of a key file. It never comes from a flag.
	StorePassphrase []byte
	// StoreLog, if set, makes the store a replica of a cluster store
	// whose log this is (node/cluster): StorePath is then this node's
	// replica (default DataDir/replica.db), and every node of the cluster
	// needs the same store key and TLS identity.
	StoreLog store.Log
	// RateStore, if set, holds the login and KeyPackage-fetch rate
	// limits that the nodes of a cluster share (limits_shared.go); nil
	// keeps them in this process.
	RateStore RateStore
	// Cluster, if set, tells the admin listener's /metrics about the
	// cluster this node is part of (prommetrics_cluster.go).
	Cluster ClusterInfo
	// Limits bound what clients can make the node do.
	Limits Limits
	// LoginSessionTTL is the lifetime of a login Session. Default 10m.
	LoginSessionTTL time.Duration
	// OPAQUE is the OPAQUE configuration; its KSF is what new
	// registrations and unknown users get. Default opaque.QPChat().
	OPAQUE *opaque.Config
	// MetricsInterval is how often the node logs its counters. Default 1m.
	MetricsInterval time.Duration
	// Now is the clock (KeyPackage lifetimes, expiry, rate limits).
	// Default time.Now.
	Now func() time.Time
	// Admin configures the admin HTTP listener (health, metrics,
	// backup); off by default (admin.go).
	Admin AdminConfig
	// Policy sets who may register, device expiry and retention
	// (policy.go).
	Policy PolicyConfig
	// Identity configures key succession (succession.go).
	Identity IdentityConfig
	// Web configures the web listener (web.go); off by default.
	Web WebConfig
}

// Defaults of the byte budgets (Config.MaxConnBuffer and so on).
const (
	DefaultMaxConnBuffer  = 32 << 20
	DefaultMaxAddrBuffer  = 128 << 20
	DefaultMaxTotalBuffer = 1 << 30
)

func populateConfig(c Config) Config {
	if c.Listen == "" {
		c.Listen = ":7000"
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.MaxConns <= 0 {
		c.MaxConns = 1024
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = rpc.DefaultHandshakeTimeout
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = rpc.DefaultIdleTimeout
	}
	if c.StreamTimeout <= 0 {
		c.StreamTimeout = 10 * time.Second
	}
	if c.FrameTimeout <= 0 {
		c.FrameTimeout = rpc.DefaultFrameTimeout
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = rpc.DefaultWriteTimeout
	}
	c.Limits = c.Limits.withDefaults()
	if c.MaxUnsent <= 0 {
		c.MaxUnsent = 2 * c.Limits.MaxCallsPerConn
	}
	if c.MaxMessageSize == 0 {
		// Room for one MLS message of the largest allowed size and the
		// call around it, and at least what clients accept: a message
		// above --max-message-size (but within proto.MaxMessageSize)
		// then reaches the handler, which refuses it with its size and
		// the limit, instead of the connection failing.
		frame := max(rpc.DefaultMaxMessageSize, uint64(c.Limits.MaxMessageSize)+1<<20)
		c.MaxMessageSize = max(proto.MinClientFrameSize, frame)
		if c.MaxUnfinished == 0 {
			c.MaxUnfinished = 32 * frame
		}
	}
	if c.MaxConnBuffer == 0 {
		c.MaxConnBuffer = DefaultMaxConnBuffer
	}
	if c.MaxAddrBuffer == 0 {
		c.MaxAddrBuffer = DefaultMaxAddrBuffer
	}
	if c.MaxTotalBuffer == 0 {
		c.MaxTotalBuffer = DefaultMaxTotalBuffer
	}
	if c.MaxUnfinished == 0 {
		c.MaxUnfinished = c.MaxConnBuffer
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = 10 * time.Second
	}
	if c.StorePath == "" && c.DataDir != "" {
		c.StorePath = filepath.Join(c.DataDir, "node.db")
		if c.StoreLog != nil {
			c.StorePath = filepath.Join(c.DataDir, "replica.db")
		}
	}
	if c.StoreKeyFile == "" && c.DataDir != "" {
		c.StoreKeyFile = filepath.Join(c.DataDir, "node.key")
	}
	if c.LoginSessionTTL <= 0 {
		c.LoginSessionTTL = 10 * time.Minute
	}
	if c.OPAQUE == nil {
		c.OPAQUE = opaque.QPChat()
	}
	if c.MetricsInterval <= 0 {
		c.MetricsInterval = time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Web.ACMECacheDir == "" && c.DataDir != "" {
		c.Web.ACMECacheDir = filepath.Join(c.DataDir, "acme")
	}
	return c
}
