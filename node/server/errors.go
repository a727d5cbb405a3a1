package server

import (
	"context"
	"errors"
	"log/slog"
	"runtime/debug"
	"time"

	"capnproto.org/go/capnp/v3/server"

	"qpchat/node/proto"
	"qpchat/node/store"
)

// limitFlags names the `qpchat serve` flag of the store limit (store.ErrLimit)
// each method can hit, so the client's error says which limit it was.
var limitFlags = map[string]string{
	"commit":            " (--max-group-size)",
	"uploadKeyPackages": " (--max-keypackages)",
	"createBlob":        " (--max-file-size, --file-quota)",
}

// storeError turns an error of the store into the error a client sees
// (docs/PROTOCOL.md, Errors). Errors the client cannot have caused are
// logged and reported as internal, without details.
func storeError(log *slog.Logger, op string, err error) error {
	var pe *proto.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &pe):
		return err
	case errors.Is(err, store.ErrNotFound):
		return proto.Errorf(proto.CodeNotFound, "%s: not found", op)
	case errors.Is(err, store.ErrExists):
		return proto.Errorf(proto.CodeExists, "%s: already exists", op)
	case errors.Is(err, store.ErrNotMember):
		return proto.Errorf(proto.CodeNotMember, "%s: not a member of the group", op)
	case errors.Is(err, store.ErrStaleCommit):
		return proto.Errorf(proto.CodeStale, "%s: another commit was accepted for this epoch", op)
	case errors.Is(err, store.ErrWrongEpoch):
		return proto.Errorf(proto.CodeWrongEpoch, "%s: the commit's epoch is ahead of the group's", op)
	case errors.Is(err, store.ErrInvalidCommit):
		return proto.Errorf(proto.CodeInvalid, "%s: %v", op, err)
	case errors.Is(err, store.ErrInvalid):
		return proto.Errorf(proto.CodeInvalid, "%s: %v", op, err)
	case errors.Is(err, store.ErrLimit):
		return proto.Errorf(proto.CodeLimit, "%s: %v%s", op, err, limitFlags[op])
	case errors.Is(err, store.ErrStale):
		return proto.Errorf(proto.CodeStale, "%s: the account changed meanwhile; log in again", op)
	case errors.Is(err, store.ErrRevoked):
		return proto.Errorf(proto.CodeExpired, "%s: the device is revoked", op)
	case errors.Is(err, store.ErrUnavailable):
		log.Warn("cluster unavailable", "op", op, "err", err)
		return proto.Errorf(proto.CodeUnavailable, "%s: the cluster has no quorum: this node reaches too few of the other nodes", op)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return proto.Errorf(proto.CodeInternal, "%s: cancelled", op)
	case errors.Is(err, store.ErrClosed):
		return proto.Errorf(proto.CodeShuttingDown, "%s: the node is shutting down", op)
	}
	log.Error("store failure", "op", op, "err", err)
	return proto.Errorf(proto.CodeInternal, "%s failed", op)
}

// guarded wraps every method so that a panic in one (a bug some peer's
// input reached) fails that call with CodeInternal and is logged, instead
// of ending the node: go-capnp runs methods without recovering, and one
// connection's call must not take the others down. Deferred work of the
// method (its call accounting) still runs while the panic unwinds. Every
// answer is counted in prom (by method and result code, with its time).
func guarded(log *slog.Logger, prom *promMetrics, methods []server.Method) []server.Method {
	for i := range methods {
		impl, short := methods[i].Impl, methods[i].MethodName
		name := methods[i].InterfaceName + "." + short
		label := methodLabel(methods[i].InterfaceName, short)
		methods[i].Impl = func(ctx context.Context, call *server.Call) (err error) {
			start := time.Now()
			defer func() { prom.observeCall(label, time.Since(start), err) }()
			defer func() {
				if p := recover(); p != nil {
					log.Error("method panicked; the call fails, the node goes on", "method", name, "panic", p, "stack", string(debug.Stack()))
					err = proto.Errorf(proto.CodeInternal, "%s failed", short)
				}
			}()
			return impl(ctx, call)
		}
	}
	return methods
}
