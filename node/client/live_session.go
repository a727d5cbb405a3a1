package client

// The Session a Live installs in its Client: every call goes to the
// current connection under a deadline, and a call that fails for want of
// a connection marks that connection lost, which makes Live reconnect.

import (
	"context"
	"sync"
	"time"

	"qpchat/node/proto"
)

// connError marks a call that failed for want of a connection.
type connError struct{ err error }

func (e *connError) Error() string { return e.err.Error() }
func (e *connError) Unwrap() error { return e.err }

// connFailure says whether err from a call to the node means the
// connection is gone rather than that the node refused the request: no
// node error code (a closed connection, a deadline, a transport error),
// the node stopping or ending the session, or a cluster node without a
// quorum (another node of the --server list may have one).
func connFailure(err error) bool {
	if err == nil {
		return false
	}
	switch proto.CodeOf(err) {
	case "", proto.CodeShuttingDown, proto.CodeExpired, proto.CodeUnavailable:
		return true
	}
	return false
}

// liveSession is the Session a Live installs in its client: it forwards
// each call to the current connection under a deadline, and marks the
// connection lost when a call fails for want of it.
type liveSession struct {
	timeout time.Duration
	mu      sync.Mutex
	conn    *liveConn
}

func (s *liveSession) set(lc *liveConn) {
	s.mu.Lock()
	s.conn = lc
	s.mu.Unlock()
}

// call runs f on the current connection with the call deadline plus
// extra.
func (s *liveSession) call(ctx context.Context, extra time.Duration, f func(ctx context.Context, in Session) error) error {
	s.mu.Lock()
	lc := s.conn
	s.mu.Unlock()
	if lc == nil || lc.isLost() {
		return &connError{errNoConn}
	}
	cctx, cancel := context.WithTimeout(ctx, s.timeout+extra)
	defer cancel()
	err := f(cctx, lc.sess)
	if err != nil && ctx.Err() == nil && connFailure(err) {
		lc.fail(err)
		return &connError{err}
	}
	return err
}

func (s *liveSession) UploadKeyPackages(ctx context.Context, suite uint16, pool [][]byte, lastResort []byte) (n int, err error) {
	err = s.call(ctx, 0, func(ctx context.Context, in Session) (err error) {
		n, err = in.UploadKeyPackages(ctx, suite, pool, lastResort)
		return err
	})
	return n, err
}

func (s *liveSession) KeyPackageCount(ctx context.Context, suite uint16) (n int, err error) {
	err = s.call(ctx, 0, func(ctx context.Context, in Session) (err error) {
		n, err = in.KeyPackageCount(ctx, suite)
		return err
	})
	return n, err
}

func (s *liveSession) FetchKeyPackages(ctx context.Context, user string, suite uint16) (out *KeyPackages, err error) {
	err = s.call(ctx, 0, func(ctx context.Context, in Session) (err error) {
		out, err = in.FetchKeyPackages(ctx, user, suite)
		return err
	})
	return out, err
}

func (s *liveSession) PublishApproval(ctx context.Context, approval []byte) error {
	return s.call(ctx, 0, func(ctx context.Context, in Session) error {
		return in.PublishApproval(ctx, approval)
	})
}

func (s *liveSession) UserKey(ctx context.Context, user string) (key []byte, err error) {
	err = s.call(ctx, 0, func(ctx context.Context, in Session) (err error) {
		key, err = in.UserKey(ctx, user)
		return err
	})
	return key, err
}

func (s *liveSession) Devices(ctx context.Context) (out []DeviceInfo, err error) {
	err = s.call(ctx, 0, func(ctx context.Context, in Session) (err error) {
		out, err = in.Devices(ctx)
		return err
	})
	return out, err
}

func (s *liveSession) CreateGroup(ctx context.Context, group []byte) error {
	return s.call(ctx, 0, func(ctx context.Context, in Session) error { return in.CreateGroup(ctx, group) })
}

func (s *liveSession) Commit(ctx context.Context, req CommitRequest) error {
	return s.call(ctx, 0, func(ctx context.Context, in Session) error { return in.Commit(ctx, req) })
}

func (s *liveSession) Send(ctx context.Context, group []byte, msgs [][]byte) error {
	return s.call(ctx, 0, func(ctx context.Context, in Session) error { return in.Send(ctx, group, msgs) })
}

func (s *liveSession) Fetch(ctx context.Context, after uint64, limit int, wait time.Duration) (res *FetchResult, err error) {
	err = s.call(ctx, wait, func(ctx context.Context, in Session) (err error) {
		res, err = in.Fetch(ctx, after, limit, wait)
		return err
	})
	return res, err
}

func (s *liveSession) Ack(ctx context.Context, upTo uint64) error {
	return s.call(ctx, 0, func(ctx context.Context, in Session) error { return in.Ack(ctx, upTo) })
}

func (s *liveSession) ClearOverflow(ctx context.Context) error {
	return s.call(ctx, 0, func(ctx context.Context, in Session) error { return in.ClearOverflow(ctx) })
}

// KeyTransitions implements TransitionSession.
func (s *liveSession) KeyTransitions(ctx context.Context, user string) (out [][]byte, err error) {
	err = s.call(ctx, 0, func(ctx context.Context, in Session) error {
		ts, ok := in.(TransitionSession)
		if !ok {
			return nil
		}
		out, err = ts.KeyTransitions(ctx, user)
		return err
	})
	return out, err
}
