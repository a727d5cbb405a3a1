package server

import (
	"io"
	"log/slog"
	"time"

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
	// MaxMessageSize bounds one Cap'n Proto frame, in bytes. Default
	// rpc.DefaultMaxMessageSize.
	MaxMessageSize uint64
	// ShutdownTimeout bounds how long Serve waits, once its context is
	// done, for calls in flight before closing connections. Default 10s.
	ShutdownTimeout time.Duration
}

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
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = rpc.DefaultMaxMessageSize
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = 10 * time.Second
	}
	return c
}
