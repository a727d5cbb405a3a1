package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"qpchat/node/proto"
	"qpchat/node/server"
	"qpchat/node/store"
)

// ServeLimitFlags are the limits of `qpchat serve` (docs/PROTOCOL.md,
// Limits and abuse). Each also reads its QPCHAT_* variable.
type ServeLimitFlags struct {
	MaxMessageSize  int           `default:"1048576" help:"Largest MLS message or KeyPackage accepted."`
	MaxQueueLength  int           `default:"100000" help:"Messages waiting per device before its queue is marked overflowed."`
	MaxKeyPackages  int           `name:"max-keypackages" default:"100" help:"KeyPackages per device and cipher suite."`
	MaxGroupSize    int           `default:"1000" help:"Member devices per group. Larger groups work through the same node: clients split invites into commits that fit --max-message-size and send large trees as blobs (docs/PROTOCOL.md, Large groups)."`
	MaxDevices      int           `default:"32" help:"Active devices per user (revoked ones do not count; a user keeps at most 32 times as many device records)."`
	MaxBatch        int           `default:"1000" help:"Messages per send call."`
	LoginRateName   int           `default:"10" help:"Login starts per minute per user name and client address before answers are delayed (never refused)."`
	LoginRateAddr   int           `default:"30" help:"Login and registration starts per minute per client address (IPv6 by /64) before answers are delayed."`
	MaxLoginDelay   time.Duration `default:"30s" help:"Longest delay of one rate-limited login start; also the longest debt a flood of starts leaves behind."`
	KPFetchRate     int           `name:"kp-fetch-rate" default:"30" help:"KeyPackage fetches per minute per calling device and target user."`
	MaxConnsPerAddr int           `default:"32" help:"Open connections per client address (IPv6 by /64)."`
	MaxConns        int           `default:"1024" help:"Open connections in total."`
	MaxCallsPerConn int           `default:"64" help:"Calls in flight per connection."`
	MaxFetchWait    time.Duration `default:"25s" help:"Longest wait of one fetchWait (keep it below the QUIC idle timeout)."`
	RetryAbove      int           `default:"100" help:"New connection attempts per second above which clients must pass a QUIC Retry first; -1: always."`
	LoginSessionTTL time.Duration `name:"login-session-ttl" default:"10m" help:"Lifetime of a login session (device management)."`
	MaxFileSize     int64         `default:"104857600" placeholder:"BYTES" help:"Largest file a client may upload (default 100 MiB; the node stores it encrypted by the client and learns only its size)."`
	FileQuota       int64         `default:"1073741824" placeholder:"BYTES" help:"Bytes of files one user may keep on the node at once (default 1 GiB)."`
	FileTTL         time.Duration `name:"file-ttl" default:"168h" help:"How long the node keeps an uploaded file before deleting it."`
	StoreKeyFile    string        `type:"path" placeholder:"FILE" help:"Key file of the encrypted store (created with mode 0600). Default: node.key in the data directory. With QPCHAT_STORE_PASSPHRASE set, the key comes from that passphrase instead."`

	// Byte budgets (docs/PROTOCOL.md, Memory bounds).
	MaxConnBuffer  int64 `default:"33554432" placeholder:"BYTES" help:"Bytes one connection may hold (default 32 MiB), separately for calls in progress (frames read plus one largest message per call until its answer is written; reading pauses when full) and for answers written but not yet finished by the client (the connection is closed past it). At least 2 x (max-message-size + 1 MiB)."`
	MaxAddrBuffer  int64 `default:"134217728" placeholder:"BYTES" help:"The same bound for all connections of one client address (IPv6 by /64) together (default 128 MiB); keep it well below --max-total-buffer so that one address cannot take the node's budget."`
	MaxTotalBuffer int64 `default:"1073741824" placeholder:"BYTES" help:"The same bound for all connections together (default 1 GiB): the node buffers at most twice this plus one QUIC receive window (2 MiB) per connection."`
}

// storePassphraseEnv names the variable that may hold the store
// passphrase; it is never a flag (flags are visible to every local user).
const storePassphraseEnv = "QPCHAT_STORE_PASSPHRASE"

// apply checks the flags and copies them into cfg.
func (f *ServeLimitFlags) apply(cfg *server.Config) error {
	var errs []error
	pos := func(name string, v int) {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("--%s must be positive, got %d", name, v))
		}
	}
	pos("max-message-size", f.MaxMessageSize)
	pos("max-queue-length", f.MaxQueueLength)
	pos("max-keypackages", f.MaxKeyPackages)
	pos("max-group-size", f.MaxGroupSize)
	pos("max-devices", f.MaxDevices)
	pos("max-batch", f.MaxBatch)
	pos("login-rate-name", f.LoginRateName)
	pos("login-rate-addr", f.LoginRateAddr)
	pos("kp-fetch-rate", f.KPFetchRate)
	pos("max-conns-per-addr", f.MaxConnsPerAddr)
	pos("max-conns", f.MaxConns)
	pos("max-calls-per-conn", f.MaxCallsPerConn)
	if f.MaxMessageSize > store.MaxMessageLen {
		errs = append(errs, fmt.Errorf("--max-message-size %d is above the %d bytes the store keeps per message", f.MaxMessageSize, store.MaxMessageLen))
	} else if f.MaxMessageSize > proto.MaxMessageSize {
		errs = append(errs, fmt.Errorf("--max-message-size %d is above %d, the largest message clients can receive", f.MaxMessageSize, proto.MaxMessageSize))
	}
	frame := int64(max(1<<20, f.MaxMessageSize)) + 1<<20 // server.Config.MaxMessageSize
	switch {
	case f.MaxConnBuffer < 2*frame:
		errs = append(errs, fmt.Errorf("--max-conn-buffer %d is below 2 x (max-message-size + 1 MiB) = %d: a call and its answer would not fit", f.MaxConnBuffer, 2*frame))
	case f.MaxAddrBuffer < f.MaxConnBuffer:
		errs = append(errs, fmt.Errorf("--max-addr-buffer %d is below --max-conn-buffer %d", f.MaxAddrBuffer, f.MaxConnBuffer))
	case f.MaxTotalBuffer < f.MaxAddrBuffer:
		errs = append(errs, fmt.Errorf("--max-total-buffer %d is below --max-addr-buffer %d", f.MaxTotalBuffer, f.MaxAddrBuffer))
	}
	if f.RetryAbove == 0 || f.RetryAbove < -1 {
		errs = append(errs, fmt.Errorf("--retry-above must be positive or -1 (always), got %d", f.RetryAbove))
	}
	for name, d := range map[string]time.Duration{"max-login-delay": f.MaxLoginDelay, "max-fetch-wait": f.MaxFetchWait, "login-session-ttl": f.LoginSessionTTL} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("--%s must be positive, got %v", name, d))
		}
	}
	if f.MaxFileSize <= 0 || f.FileQuota <= 0 || f.FileTTL <= 0 {
		errs = append(errs, fmt.Errorf("--max-file-size, --file-quota and --file-ttl must be positive"))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	cfg.Limits = server.Limits{
		MaxMessageSize:      f.MaxMessageSize,
		MaxQueueLength:      f.MaxQueueLength,
		MaxKeyPackages:      f.MaxKeyPackages,
		MaxGroupSize:        f.MaxGroupSize,
		MaxDevices:          f.MaxDevices,
		MaxBatch:            f.MaxBatch,
		LoginRateName:       f.LoginRateName,
		LoginRateAddr:       f.LoginRateAddr,
		MaxLoginDelay:       f.MaxLoginDelay,
		KeyPackageFetchRate: f.KPFetchRate,
		MaxConnsPerAddr:     f.MaxConnsPerAddr,
		MaxCallsPerConn:     f.MaxCallsPerConn,
		MaxFetchWait:        f.MaxFetchWait,
		RetryAbove:          f.RetryAbove,
		MaxFileSize:         uint64(f.MaxFileSize),
		FileQuota:           uint64(f.FileQuota),
		FileTTL:             f.FileTTL,
	}
	cfg.MaxConns = f.MaxConns
	cfg.MaxConnBuffer = uint64(f.MaxConnBuffer)
	cfg.MaxAddrBuffer = uint64(f.MaxAddrBuffer)
	cfg.MaxTotalBuffer = uint64(f.MaxTotalBuffer)
	cfg.LoginSessionTTL = f.LoginSessionTTL
	cfg.StoreKeyFile = f.StoreKeyFile
	if p, ok := os.LookupEnv(storePassphraseEnv); ok {
		if p == "" {
			return fmt.Errorf("%s is set but empty", storePassphraseEnv)
		}
		cfg.StorePassphrase = []byte(p)
	}
	return nil
}
