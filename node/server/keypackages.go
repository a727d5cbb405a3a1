package server

import (
	"context"
	"encoding/hex"
	"errors"
	"sync"
	"time"

	"qpchat/node/proto"
	"qpchat/node/store"
	"qpchat/rpc"
)

// KeyPackages (DESIGN, KeyPackages): validated uploads, fetches that
// consume pool packages exactly once and fall back to the last resort,
// rate limits per (caller, target), and the owner told when a pool runs
// low.

// lowPoolThreshold: a pool with fewer packages is reported to its owner.
const lowPoolThreshold = 10

// lowPools remembers, in memory, the (device, suite) pools that fell
// below lowPoolThreshold, until the device uploads. It is advisory: a
// restart forgets it, and clients check keyPackageCount at start.
type lowPools struct {
	mu sync.Mutex
	m  map[string]map[uint16]bool
}

func (l *lowPools) mark(device []byte, suite uint16) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m[string(device)] == nil {
		l.m[string(device)] = make(map[uint16]bool)
	}
	l.m[string(device)][suite] = true
}

func (l *lowPools) clear(device []byte, suite uint16) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m[string(device)], suite)
	if len(l.m[string(device)]) == 0 {
		delete(l.m, string(device))
	}
}

func (l *lowPools) forget(device []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m, string(device))
}

func (l *lowPools) suites(device []byte) []uint16 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []uint16
	for s := range l.m[string(device)] {
		out = append(out, s)
	}
	return out
}

func checkSuite(method string, suite uint16) error {
	if !proto.SuiteAllowed(suite) {
		return proto.Errorf(proto.CodeInvalid, "%s: cipher suite 0x%04x is not one of the Ed25519 suites qpchat devices sign with", method, suite)
	}
	return nil
}

// UploadKeyPackages implements Session.uploadKeyPackages.
func (s *session) UploadKeyPackages(ctx context.Context, call rpc.Session_uploadKeyPackages) error {
	done, err := s.enter("uploadKeyPackages")
	if err != nil {
		return err
	}
	defer done()
	call.Go()
	srv := s.c.srv
	args := call.Args()
	suite := args.Suite()
	if err := checkSuite("uploadKeyPackages", suite); err != nil {
		return err
	}
	lim := srv.cfg.Limits
	l, err := args.Packages()
	pool, err := dataList(l, err, "KeyPackages", lim.MaxKeyPackages, "--max-keypackages", lim.MaxMessageSize)
	if err != nil {
		return err
	}
	last, _ := args.LastResort()
	if len(last) > lim.MaxMessageSize {
		return proto.Errorf(proto.CodeLimit, "uploadKeyPackages: last-resort package of %d bytes, the limit (--max-message-size) is %d", len(last), lim.MaxMessageSize)
	}
	acct, err := srv.store.Account(ctx, s.user)
	if err != nil {
		return s.storeErr("uploadKeyPackages", err)
	}
	now := srv.cfg.Now()
	check := func(b []byte) (store.KeyPackage, error) {
		ref, err := checkKeyPackage(b, suite, s.device, s.user, acct.UserKey, now)
		if err != nil {
			return store.KeyPackage{}, proto.Errorf(proto.CodeNotAcceptable, "uploadKeyPackages: %v", err)
		}
		return store.KeyPackage{Ref: ref, Data: b}, nil
	}
	kps := make([]store.KeyPackage, len(pool))
	for i, b := range pool {
		if kps[i], err = check(b); err != nil {
			return err
		}
	}
	var lastKP *store.KeyPackage
	if len(last) > 0 {
		k, err := check(last)
		if err != nil {
			return err
		}
		lastKP = &k
	}
	n, err := srv.store.PutKeyPackages(ctx, s.device, suite, kps, lastKP)
	if err != nil {
		return s.storeErr("uploadKeyPackages", err)
	}
	if n >= lowPoolThreshold {
		srv.lowPools.clear(s.device, suite)
	}
	res, err := call.AllocResults()
	if err != nil {
		return err
	}
	res.SetPoolSize(uint32(n))
	return nil
}

// KeyPackageCount implements Session.keyPackageCount.
func (s *session) KeyPackageCount(ctx context.Context, call rpc.Session_keyPackageCount) error {
	done, err := s.enter("keyPackageCount")
	if err != nil {
		return err
	}
	defer done()
	call.Go()
	n, err := s.c.srv.store.KeyPackageCount(ctx, s.device, call.Args().Suite())
	if err != nil {
		return s.storeErr("keyPackageCount", err)
	}
	res, err := call.AllocResults()
	if err != nil {
		return err
	}
	res.SetPoolSize(uint32(n))
	return nil
}

// FetchKeyPackages implements Session.fetchKeyPackages.
func (s *session) FetchKeyPackages(ctx context.Context, call rpc.Session_fetchKeyPackages) error {
	done, err := s.enter("fetchKeyPackages")
	if err != nil {
		return err
	}
	defer done()
	call.Go()
	srv := s.c.srv
	args := call.Args()
	user, err := normalizeUser(args.User())
	if err != nil {
		return err
	}
	suite := args.Suite()
	if err := checkSuite("fetchKeyPackages", suite); err != nil {
		return err
	}
	key := hex.EncodeToString(s.device) + "/" + user
	refund := func() { srv.kpFetch.refund(key) }
	allowed := false
	if sh := srv.shared; sh != nil {
		if allowed, err = sh.kpFetch.allow(ctx, key); err != nil {
			s.c.log.Warn("KeyPackage fetch refused: the cluster's rate-limit buckets are unreachable", "err", err)
			return proto.Errorf(proto.CodeUnavailable, "fetchKeyPackages: the cluster's rate limits are unreachable (no quorum?); nothing was handed out, retry (or another node)")
		}
		refund = func() { sh.kpFetch.refund(key) }
	} else {
		allowed = srv.kpFetch.allow(key)
	}
	if !allowed {
		return proto.Errorf(proto.CodeRateLimited, "fetchKeyPackages: more than %d fetches a minute for this user (--kp-fetch-rate); retry later", srv.cfg.Limits.KeyPackageFetchRate)
	}
	got, err := srv.store.FetchKeyPackages(ctx, s.device, user, suite)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			// Cancelled, or a fault of the node: nothing was handed out.
			refund()
		}
		return s.storeErr("fetchKeyPackages", err)
	}
	approvals, first, err := srv.approvalsFor(ctx, user)
	if err != nil {
		// The packages are handed out already; the inviter then trusts
		// no device and says so, so this is only worth a log line.
		s.c.log.Warn("reading device approvals for a KeyPackage fetch failed", "err", err)
		approvals, first = nil, nil
	}
	res, err := call.AllocResults()
	if err != nil {
		return err
	}
	if err := res.SetFirstDevice(first); err != nil {
		return err
	}
	al, err := res.NewApprovals(int32(len(approvals)))
	if err != nil {
		return err
	}
	for i, a := range approvals {
		if err := al.Set(i, a); err != nil {
			return err
		}
	}
	out, err := res.NewPackages(int32(len(got)))
	if err != nil {
		return err
	}
	for i, f := range got {
		if f.LastResort || f.Remaining < lowPoolThreshold {
			srv.lowPools.mark(f.Device, suite)
		}
		e := out.At(i)
		if err := e.SetDevice(f.Device); err != nil {
			return err
		}
		if err := e.SetKeyPackage(f.Data); err != nil {
			return err
		}
		e.SetLastResort(f.LastResort)
	}
	return nil
}

// fetchRecordTTL is how long the node remembers a KeyPackage fetch that
// no commit used: a KeyPackage lives at most 90 days and an hour (uploads
// are checked against that), so no Welcome can use it after this.
const fetchRecordTTL = (90*24 + 2) * time.Hour

// pruneInterval is how often the node forgets unused fetches.
const pruneInterval = time.Hour

// pruneFetches forgets unused KeyPackage fetches at start and then every
// pruneInterval, until ctx ends. The store stamps fetches with the real
// clock, so this uses it too.
func (s *Server) pruneFetches(ctx context.Context) {
	for {
		n, err := s.store.PruneFetched(ctx, time.Now().Add(-fetchRecordTTL))
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Warn("forgetting unused KeyPackage fetches failed", "err", err)
		case n > 0:
			s.log.Info("forgot unused KeyPackage fetches", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(pruneInterval):
		}
	}
}
