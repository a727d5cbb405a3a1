package server

import (
	"net"
	"net/netip"
	"qpchat/node/store"
	"sync"
	"time"
)

// Limits bound what one client can make the node do. Every field is a
// `qpchat serve` flag (docs/PROTOCOL.md, Limits and abuse); zero fields
// take the defaults below.
type Limits struct {
	// MaxMessageSize bounds one MLS message (and KeyPackage). Default 1 MiB.
	MaxMessageSize int
	// MaxQueueLength bounds the messages waiting for one device; beyond it
	// the device is marked overflowed. Default 100000.
	MaxQueueLength int
	// MaxKeyPackages bounds a device's pool per suite. Default 100.
	MaxKeyPackages int
	// MaxGroupSize bounds the member devices of a group. Default 1000.
	MaxGroupSize int
	// MaxDevices bounds the active (not revoked) devices of one user;
	// its records, revoked ones included, are bounded by 32 × MaxDevices.
	// Default 32.
	MaxDevices int
	// MaxBatch bounds the messages of one send. Default 1000.
	MaxBatch int
	// LoginRateName and LoginRateAddr are the login starts per minute
	// allowed per (user name, client address) and per client address
	// (IPv6 by /64) before answers are delayed. Defaults 10 and 30.
	// docs/PROTOCOL.md, "Login rate limits", says why the name's budget
	// is kept per address.
	LoginRateName, LoginRateAddr int
	// MaxLoginDelay caps the delay of one rate-limited login start, and
	// so the debt a flood leaves behind. Default 30s.
	MaxLoginDelay time.Duration
	// KeyPackageFetchRate is the fetches per minute allowed per (calling
	// device, target user). Default 30.
	KeyPackageFetchRate int
	// MaxConnsPerAddr bounds the connections of one client address (IPv6
	// by /64). Default 32.
	MaxConnsPerAddr int
	// MaxCallsPerConn bounds the calls in flight on one connection.
	// Default 64.
	MaxCallsPerConn int
	// MaxFetchWait caps fetchWait's timeout. Default 25s, below the QUIC
	// idle timeout.
	MaxFetchWait time.Duration
	// RetryAbove is the rate of new connection attempts per second above
	// which clients must validate their address with a QUIC Retry first.
	// Default 100; negative means always.
	RetryAbove int
	// MaxFileSize bounds one uploaded file (blob). Default 100 MiB.
	MaxFileSize uint64
	// FileQuota bounds the bytes of one user's unexpired files. Default
	// 1 GiB.
	FileQuota uint64
	// FileTTL is how long an uploaded file is kept. Default 7 days.
	FileTTL time.Duration
}

// BlobChunk is the size of the chunks files are uploaded and downloaded
// in: 256 KiB, or half the largest message if that is smaller.
func (l Limits) BlobChunk() int { return min(256<<10, l.MaxMessageSize/2) }

func (l Limits) blobLimits() store.BlobLimits {
	return store.BlobLimits{MaxSize: l.MaxFileSize, Quota: l.FileQuota, TTL: l.FileTTL, ChunkSize: l.BlobChunk()}
}

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.MaxMessageSize, 1<<20)
	if l.MaxFileSize == 0 {
		l.MaxFileSize = 100 << 20
	}
	if l.FileQuota == 0 {
		l.FileQuota = 1 << 30
	}
	if l.FileTTL <= 0 {
		l.FileTTL = 7 * 24 * time.Hour
	}
	def(&l.MaxQueueLength, 100000)
	def(&l.MaxKeyPackages, 100)
	def(&l.MaxGroupSize, 1000)
	def(&l.MaxDevices, 32)
	def(&l.MaxBatch, 1000)
	def(&l.LoginRateName, 10)
	def(&l.LoginRateAddr, 30)
	def(&l.KeyPackageFetchRate, 30)
	def(&l.MaxConnsPerAddr, 32)
	def(&l.MaxCallsPerConn, 64)
	if l.RetryAbove == 0 {
		l.RetryAbove = 100
	}
	if l.MaxLoginDelay <= 0 {
		l.MaxLoginDelay = 30 * time.Second
	}
	if l.MaxFetchWait <= 0 {
		l.MaxFetchWait = 25 * time.Second
	}
	return l
}

// addrKey returns the rate-limiting key of a client address: the IPv4
// address, or the /64 prefix of an IPv6 address (one subscriber usually
// owns a whole /64).
func addrKey(a net.Addr) string {
	var ip netip.Addr
	switch a := a.(type) {
	case *net.UDPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	default:
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			return a.String()
		}
		ip = ap.Addr()
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// rateLimiter is a set of token buckets keyed by string, refilled at
// perMinute tokens a minute with a burst of perMinute. Idle buckets are
// dropped once full, so memory follows the active keys.
//
// A bucket may go into debt (negative tokens: reservations of future
// tokens, each answered after a delay), but never below its floor of
// -maxDebt worth of tokens. So the debt, and the delay of the next
// caller, follow the rate of the last maxDebt only: however long a flood
// lasted, maxDebt after it stops the bucket is back at zero and an honest
// caller is answered within one token interval. A caller that finds the
// bucket at its floor takes nothing (see reserve).
type rateLimiter struct {
	interval time.Duration // time per token
	burst    float64
	floor    float64 // lowest token count: -(maxDebt / interval)
	maxDebt  time.Duration
	now      func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
	sweep   time.Time
}

type bucket struct {
	tokens float64   // ≥ floor; negative: reserved future tokens
	at     time.Time // when tokens was computed
}

// newRateLimiter returns buckets of perMinute tokens a minute that may
// owe at most maxDebt of future tokens (0: never in debt, as allow needs).
func newRateLimiter(perMinute int, maxDebt time.Duration, now func() time.Time) *rateLimiter {
	interval := time.Minute / time.Duration(perMinute)
	return &rateLimiter{
		interval: interval,
		burst:    float64(perMinute),
		floor:    -float64(maxDebt) / float64(interval),
		maxDebt:  maxDebt,
		now:      now,
		buckets:  make(map[string]*bucket),
	}
}

// reserve takes a token for key and returns how long the caller must
// wait before using it (0 if one was available), and whether a token was
// taken. Waiting callers queue: each reservation pushes the next one a
// token interval further, up to maxDebt. A caller that would push the
// bucket below its floor takes nothing and is told to wait maxDebt: it
// is answered after the longest delay but does not deepen the debt, so
// a flood, however long, costs later callers at most maxDebt.
// A reservation whose call then fails or is cancelled is given back with
// refund.
func (r *rateLimiter) reserve(key string) (time.Duration, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	r.maybeSweep(now)
	b := r.refill(key, now)
	if b.tokens-1 < r.floor {
		return r.maxDebt, false
	}
	b.tokens--
	if b.tokens >= 0 {
		return 0, true
	}
	return time.Duration(-b.tokens * float64(r.interval)), true
}

// refund gives back a token taken by reserve or allow for a call that
// did not use it (cancelled, or failed in the node).
func (r *rateLimiter) refund(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b, ok := r.buckets[key]; ok {
		b.tokens = min(r.burst, b.tokens+1)
	}
}

// allow takes a token for key if one is available now; a refused caller
// takes nothing.
func (r *rateLimiter) allow(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	r.maybeSweep(now)
	b := r.refill(key, now)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func (r *rateLimiter) refill(key string, now time.Time) *bucket {
	b, ok := r.buckets[key]
	if !ok {
		b = &bucket{tokens: r.burst, at: now}
		r.buckets[key] = b
		return b
	}
	if el := now.Sub(b.at); el > 0 {
		b.tokens = min(r.burst, b.tokens+float64(el)/float64(r.interval))
		b.at = now
	}
	return b
}

// maybeSweep drops full buckets at most once a minute.
func (r *rateLimiter) maybeSweep(now time.Time) {
	if now.Sub(r.sweep) < time.Minute {
		return
	}
	r.sweep = now
	for k, b := range r.buckets {
		if b.tokens+float64(now.Sub(b.at))/float64(r.interval) >= r.burst {
			delete(r.buckets, k)
		}
	}
}

// floodDetector decides whether new connection attempts must validate
// their address with a QUIC Retry: when more than `above` attempts came
// in the last second. Attempts are counted whatever their claimed
// address, since under a flood those are spoofed.
type floodDetector struct {
	above int // < 0: always
	now   func() time.Time

	mu       sync.Mutex
	window   time.Time
	count    int
	previous int
}

func (f *floodDetector) verify(net.Addr) bool {
	if f.above < 0 {
		return true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	if el := now.Sub(f.window); el >= time.Second {
		if el < 2*time.Second {
			f.previous = f.count
		} else {
			f.previous = 0
		}
		f.window = now.Truncate(time.Second)
		f.count = 0
	}
	f.count++
	// Weight the previous second by how much of it is still within one
	// second of now (a sliding window).
	frac := 1 - float64(now.Sub(f.window))/float64(time.Second)
	return float64(f.count)+frac*float64(f.previous) > float64(f.above)
}

// addrCounter counts open connections per address key.
type addrCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (a *addrCounter) add(key string, max int) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n[key] >= max {
		return false
	}
	a.n[key]++
	return true
}

func (a *addrCounter) remove(key string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n[key] <= 1 {
		delete(a.n, key)
	} else {
		a.n[key]--
	}
}
