package server

import (
	"fmt"
	"log/slog"
	"sync"
)

// rpcLogger passes the Cap'n Proto RPC layer's messages to the
// connection's logger at debug level (a peer's garbage is not the node's
// error) and keeps the last one, which names why a connection ended.
type rpcLogger struct {
	log *slog.Logger

	mu   sync.Mutex
	last string
}

func (l *rpcLogger) record(msg string, args []any) {
	l.mu.Lock()
	l.last = msg
	if len(args) > 0 {
		l.last = fmt.Sprint(msg, " ", args)
	}
	l.mu.Unlock()
	l.log.Debug("capnp: "+msg, args...)
}

func (l *rpcLogger) lastErr() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}

func (l *rpcLogger) Debug(msg string, args ...any) { l.log.Debug("capnp: "+msg, args...) }
func (l *rpcLogger) Info(msg string, args ...any)  { l.log.Debug("capnp: "+msg, args...) }
func (l *rpcLogger) Warn(msg string, args ...any)  { l.record(msg, args) }
func (l *rpcLogger) Error(msg string, args ...any) { l.record(msg, args) }
