package server

import (
	"context"
	"errors"
	"log/slog"

	"qpchat/node/proto"
	"qpchat/node/store"
)

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
	case errors.Is(err, store.ErrLimit):
		return proto.Errorf(proto.CodeLimit, "%s: %v", op, err)
	case errors.Is(err, store.ErrRevoked):
		return proto.Errorf(proto.CodeExpired, "%s: the device is revoked", op)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return proto.Errorf(proto.CodeInternal, "%s: cancelled", op)
	case errors.Is(err, store.ErrClosed):
		return proto.Errorf(proto.CodeShuttingDown, "%s: the node is shutting down", op)
	}
	log.Error("store failure", "op", op, "err", err)
	return proto.Errorf(proto.CodeInternal, "%s failed", op)
}
