package server

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"
)

// Rate limits of a cluster (docs/PROTOCOL.md, "Rate limits in a
// cluster"). A single node keeps its token buckets in memory
// (rateLimiter); the nodes of a cluster share theirs, so that a client
// spreading its calls over three nodes gets the budget it would get
// from one. Each shared bucket is one small record of a RateStore (a
// JetStream stream with a subject per bucket, node/cluster) replaced with
// compare-and-set: a node reads the bucket, refills it for the time
// passed, takes its tokens and writes it back on the condition that no
// other node wrote it meanwhile; if one did, it reads again. Tokens are
// only ever taken by such a write, so the nodes together never admit
// more than the budget.
//
// Round trips are saved three ways. A node remembers the last record and
// revision it saw, and tries its write on them first (one round trip
// when no other node took from the bucket since). A node refused by a
// bucket refuses locally, with no round trip, until the bucket has
// refilled by a token: so a flood costs about one round trip per token
// interval per node, not one per call. And with a large budget (40 a
// minute or more) a node takes a lease of burst/20 tokens at once, kept for
// leaseTTL: what it does not use there is lost to the other nodes, so
// the cluster may admit up to (nodes × (lease − 1)) fewer calls than the
// budget in that time, never more.
//
// Keys are HMACs under a key derived from the store's index key
// (store.DB.Ident), the same on every node: no user name or address
// reaches NATS in clear.

// RateStore holds small records that the nodes of a cluster replace with
// compare-and-set. node/cluster implements it on a JetStream stream
// whose records expire an hour after their last write.
type RateStore interface {
	// Get returns the record under key and its revision; (nil, 0, nil)
	// if there is none.
	Get(ctx context.Context, key string) (value []byte, rev uint64, err error)
	// Swap writes value under key if its revision is still rev (0: if
	// there is no record) and returns the new revision. It returns 0 and
	// no error if another writer came first.
	Swap(ctx context.Context, key string, value []byte, rev uint64) (newRev uint64, err error)
}

// sharedRecordTTL is how long a RateStore keeps a record after its last
// write; a bucket gone is a full one, which is right only if every
// bucket refills in less time (checked by newSharedLimits).
const sharedRecordTTL = time.Hour

// Shared limiter tunables.
const (
	sharedTimeout  = 2 * time.Second // one Get or Swap
	sharedRetries  = 32              // compare-and-set attempts per call
	leaseTTL       = 10 * time.Second
	leaseDivisor   = 20 // lease = burst / leaseDivisor, at least 1
	sharedRecordSz = 16
)

// errRateStore wraps a failure to reach the shared buckets. Calls fail
// closed on it (docs/PROTOCOL.md): see sharedLimiter.reserve.
var errRateStore = errors.New("server: the cluster's rate-limit buckets are unreachable")

// sharedBucket is the record of one shared bucket: tokens (a float64,
// at least the floor, negative for reserved future tokens) as of at.
type sharedBucket struct {
	tokens float64
	at     time.Time
}

func (b sharedBucket) marshal() []byte {
	out := make([]byte, 0, sharedRecordSz)
	out = binary.BigEndian.AppendUint64(out, math.Float64bits(b.tokens))
	return binary.BigEndian.AppendUint64(out, uint64(b.at.UnixNano()))
}

// parseSharedBucket reads a record, clamping its tokens to
// [floor, burst]: a record is written by a node of the cluster, but a
// damaged one must neither panic nor grant more than the burst.
func parseSharedBucket(in []byte, floor, burst float64) (sharedBucket, error) {
	if len(in) != sharedRecordSz {
		return sharedBucket{}, fmt.Errorf("server: shared rate bucket of %d bytes", len(in))
	}
	t := math.Float64frombits(binary.BigEndian.Uint64(in))
	if math.IsNaN(t) || math.IsInf(t, 0) {
		return sharedBucket{}, errors.New("server: shared rate bucket holds no number")
	}
	at := int64(binary.BigEndian.Uint64(in[8:]))
	if at < 0 {
		return sharedBucket{}, errors.New("server: shared rate bucket from before 1970")
	}
	return sharedBucket{tokens: min(max(t, floor), burst), at: time.Unix(0, at)}, nil
}

// sharedLimiter is rateLimiter's cluster-wide twin: the same buckets
// (perMinute a minute, burst perMinute, debt down to maxDebt), kept in a
// RateStore.
type sharedLimiter struct {
	name     string // of the limit, part of every key
	rs       RateStore
	ident    func(key string) []byte // HMAC of a key
	interval time.Duration
	burst    float64
	floor    float64
	maxDebt  time.Duration
	lease    int
	now      func() time.Time

	mu    sync.Mutex
	local map[string]*sharedLocal // by record key
	sweep time.Time

	refunds sync.WaitGroup // refunds in flight (tests wait)
}

// sharedLocal is what a node remembers of a shared bucket.
type sharedLocal struct {
	seen     sharedBucket // last record read or written
	rev      uint64       // its revision (0: none seen)
	leased   int          // tokens taken, not yet used
	leaseEnd time.Time
	refused  time.Time // refuse locally until then
}

func newSharedLimiter(name string, rs RateStore, ident func([]byte) []byte, perMinute int, maxDebt time.Duration, now func() time.Time) *sharedLimiter {
	interval := time.Minute / time.Duration(perMinute)
	l := &sharedLimiter{
		name: name, rs: rs,
		interval: interval,
		burst:    float64(perMinute),
		floor:    -float64(maxDebt) / float64(interval),
		maxDebt:  maxDebt,
		lease:    max(1, perMinute/leaseDivisor),
		now:      now,
		local:    map[string]*sharedLocal{},
	}
	l.ident = func(key string) []byte { return ident([]byte(name + "\x00" + key)) }
	return l
}

// recordKey is the RateStore key of key: "rl." and the hex HMAC.
func (l *sharedLimiter) recordKey(key string) string {
	h := l.ident(key)
	return "rl." + hex.EncodeToString(h[:min(16, len(h))])
}

// refill returns b refilled up to now.
func (l *sharedLimiter) refill(b sharedBucket, now time.Time) sharedBucket {
	if el := now.Sub(b.at); el > 0 {
		b.tokens = min(l.burst, b.tokens+float64(el)/float64(l.interval))
		b.at = now
	}
	return b
}

// reserve is rateLimiter.reserve on the shared bucket of key. An error
// means the bucket could not be reached: the caller refuses the call
// (fails closed). A node that cannot reach the cluster's buckets cannot
// reach its store either (both need the same JetStream quorum), so
// refusing costs no call that could have been answered, while answering
// would let a client that found a cut-off node guess passwords without
// any limit.
func (l *sharedLimiter) reserve(ctx context.Context, key string) (time.Duration, bool, error) {
	rk := l.recordKey(key)
	now := l.now()
	l.mu.Lock()
	l.maybeSweep(now)
	st := l.local[rk]
	if st == nil {
		st = &sharedLocal{}
		l.local[rk] = st
	}
	if st.leased > 0 && now.Before(st.leaseEnd) {
		st.leased--
		l.mu.Unlock()
		return 0, true, nil
	}
	st.leased = 0
	if now.Before(st.refused) {
		l.mu.Unlock()
		return l.maxDebt, false, nil
	}
	seen, rev := st.seen, st.rev
	l.mu.Unlock()

	fresh := rev == 0 // try a create first when nothing was seen
	for range sharedRetries {
		if !fresh {
			// Try the remembered revision first; read on conflict.
			fresh = true
		} else if v, r, err := l.get(ctx, rk); err != nil {
			return 0, false, err
		} else if v == nil {
			seen, rev = sharedBucket{tokens: l.burst, at: now}, 0
		} else if b, err := parseSharedBucket(v, l.floor, l.burst); err != nil {
			// A damaged record: start it again, full.
			seen, rev = sharedBucket{tokens: l.burst, at: now}, r
		} else {
			seen, rev = b, r
		}
		b := l.refill(seen, now)
		if b.tokens-1 < l.floor {
			l.mu.Lock()
			st.seen, st.rev = seen, rev
			st.refused = now.Add(time.Duration((l.floor + 1 - b.tokens) * float64(l.interval)))
			l.mu.Unlock()
			return l.maxDebt, false, nil
		}
		take := 1
		if b.tokens >= float64(l.lease) {
			take = l.lease
		}
		b.tokens -= float64(take)
		ok, nrev, err := l.swap(ctx, rk, b, rev)
		if err != nil {
			return 0, false, err
		}
		if !ok {
			continue
		}
		l.mu.Lock()
		st.seen, st.rev = b, nrev
		st.leased, st.leaseEnd = take-1, now.Add(leaseTTL)
		l.mu.Unlock()
		if b.tokens >= 0 {
			return 0, true, nil
		}
		return time.Duration(-b.tokens * float64(l.interval)), true, nil
	}
	return 0, false, fmt.Errorf("%w: gave up after %d conflicts with other nodes", errRateStore, sharedRetries)
}

// allow is rateLimiter.allow on the shared bucket (a limiter without
// debt refuses what reserve would delay).
func (l *sharedLimiter) allow(ctx context.Context, key string) (bool, error) {
	d, ok, err := l.reserve(ctx, key)
	if err != nil || !ok {
		return false, err
	}
	if d > 0 { // only with a debt, which allow's limiters never have
		l.refund(key)
		return false, nil
	}
	return true, nil
}

// refund gives a token back to the shared bucket, in the background
// (callers hold locks; the token is worth no round trip on their path).
// A refund that cannot reach the bucket is dropped: the budget only
// shrinks.
func (l *sharedLimiter) refund(key string) {
	rk := l.recordKey(key)
	l.refunds.Add(1)
	go func() {
		defer l.refunds.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 2*sharedTimeout)
		defer cancel()
		for range sharedRetries {
			v, rev, err := l.get(ctx, rk)
			if err != nil || v == nil {
				return // gone: the bucket is full
			}
			b, err := parseSharedBucket(v, l.floor, l.burst)
			if err != nil {
				return
			}
			b = l.refill(b, l.now())
			b.tokens = min(l.burst, b.tokens+1)
			ok, nrev, err := l.swap(ctx, rk, b, rev)
			if err != nil {
				return
			}
			if ok {
				l.mu.Lock()
				if st := l.local[rk]; st != nil {
					st.seen, st.rev, st.refused = b, nrev, time.Time{}
				}
				l.mu.Unlock()
				return
			}
		}
	}()
}

func (l *sharedLimiter) get(ctx context.Context, key string) ([]byte, uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, sharedTimeout)
	defer cancel()
	v, rev, err := l.rs.Get(ctx, key)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %v", errRateStore, err)
	}
	return v, rev, nil
}

// swap writes b if the record is still at rev: ok false if another node
// wrote first, else the record's new revision.
func (l *sharedLimiter) swap(ctx context.Context, key string, b sharedBucket, rev uint64) (bool, uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, sharedTimeout)
	defer cancel()
	nrev, err := l.rs.Swap(ctx, key, b.marshal(), rev)
	if err != nil {
		return false, 0, fmt.Errorf("%w: %v", errRateStore, err)
	}
	return nrev != 0, nrev, nil
}

// maybeSweep forgets, at most once a minute, the buckets this node has
// not used for a minute (they keep their record in the RateStore).
func (l *sharedLimiter) maybeSweep(now time.Time) {
	if now.Sub(l.sweep) < time.Minute {
		return
	}
	l.sweep = now
	for k, st := range l.local {
		if now.Sub(st.seen.at) > time.Minute && now.After(st.refused) && (st.leased == 0 || now.After(st.leaseEnd)) {
			delete(l.local, k)
		}
	}
}

// sharedLimits are the cluster-wide twins of the node's login and
// KeyPackage-fetch limiters (Server.shared, nil on a single node).
type sharedLimits struct {
	loginByName, loginByAddr, kpFetch *sharedLimiter
}

// newSharedLimits makes the shared limiters of lim on rs, their keys
// HMAC'd under indexKey (derived from the store key, the same on every
// node of a cluster).
func newSharedLimits(rs RateStore, indexKey []byte, lim Limits, now func() time.Time) (*sharedLimits, error) {
	if lim.MaxLoginDelay+time.Minute > sharedRecordTTL {
		return nil, fmt.Errorf("server: in a cluster, --max-login-delay must be at most %v (a shared bucket must refill before its record expires)", sharedRecordTTL-time.Minute)
	}
	key := bytes.Clone(indexKey)
	ident := func(b []byte) []byte {
		m := hmac.New(sha256.New, key)
		m.Write(b)
		return m.Sum(nil)
	}
	return &sharedLimits{
		loginByName: newSharedLimiter("login-name", rs, ident, lim.LoginRateName, lim.MaxLoginDelay, now),
		loginByAddr: newSharedLimiter("login-addr", rs, ident, lim.LoginRateAddr, lim.MaxLoginDelay, now),
		kpFetch:     newSharedLimiter("kp-fetch", rs, ident, lim.KeyPackageFetchRate, 0, now),
	}, nil
}

// wait waits for the refunds in flight (tests).
func (s *sharedLimits) wait() {
	s.loginByName.refunds.Wait()
	s.loginByAddr.refunds.Wait()
	s.kpFetch.refunds.Wait()
}

// reserveLogin is Server.reserveLocalLogin on the shared buckets.
func (s *sharedLimits) reserveLogin(ctx context.Context, user, addr string) (time.Duration, func(), error) {
	d, byAddr, err := s.loginByAddr.reserve(ctx, addr)
	if err != nil {
		return 0, nil, err
	}
	byName := false
	if user != "" && byAddr {
		var dn time.Duration
		dn, byName, err = s.loginByName.reserve(ctx, nameAddrKey(user, addr))
		if err != nil {
			s.loginByAddr.refund(addr)
			return 0, nil, err
		}
		d = max(d, dn)
	}
	var once sync.Once
	return d, func() {
		once.Do(func() {
			if byAddr {
				s.loginByAddr.refund(addr)
			}
			if byName {
				s.loginByName.refund(nameAddrKey(user, addr))
			}
		})
	}, nil
}
