package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"qpchat/opaque"
)

// Parked connections cost the node what idle chat clients cost it: each
// holds its own QUIC connection with one device Session and always one
// fetchWait outstanding. `qpchat bench --park N` keeps N of them for the
// whole run, so that the node's memory per idle client can be read from
// its metrics (README, "Sizing").

// parked is a set of parked connections.
type parked struct {
	conns  []*Conn
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	err    error // the first fetchWait failure
}

// park opens n connections to cfg.Addr, each with a device of a fresh
// benchmark user (registered over reg), and parks a fetchWait on each.
func park(ctx context.Context, cfg *Config, reg *Conn, n int) (*parked, error) {
	pctx, cancel := context.WithCancel(ctx)
	p := &parked{cancel: cancel}
	prefix := make([]byte, 4)
	rand.Read(prefix)
	ocfg := opaque.QPChat()
	for i := 0; i < n; {
		name := fmt.Sprintf("park-%s-%d", hex.EncodeToString(prefix), i)
		login, uk, err := reg.Register(ctx, ocfg, name, cfg.Password)
		if err != nil {
			p.close()
			return nil, fmt.Errorf("bench: registering %s: %w", name, err)
		}
		for k := 0; k < cfg.DevicesPerUser && i < n; k, i = k+1, i+1 {
			dk, err := NewDeviceKey(nil)
			if err == nil {
				err = reg.RegisterDevice(ctx, login, name, uk, dk)
			}
			var c *Conn
			if err == nil {
				c, err = Dial(ctx, cfg.Addr, cfg.Fingerprint)
			}
			if err != nil {
				login.Release()
				p.close()
				return nil, fmt.Errorf("bench: parking connection %d of %d: %w", i+1, n, err)
			}
			p.conns = append(p.conns, c)
			d, err := c.AuthenticateDevice(ctx, name, dk, c.Exporter)
			if err != nil {
				login.Release()
				p.close()
				return nil, fmt.Errorf("bench: parking connection %d of %d: %w", i+1, n, err)
			}
			p.wg.Add(1)
			go p.hold(pctx, d)
		}
		login.Release()
	}
	cfg.logf("parked %d connections in fetchWait", n)
	return p, nil
}

// hold keeps a fetchWait outstanding on d until ctx ends.
func (p *parked) hold(ctx context.Context, d *Device) {
	defer p.wg.Done()
	defer d.S.Release()
	for ctx.Err() == nil {
		if _, _, err := d.FetchWait(ctx, 0, 1, 30*time.Second); err != nil && ctx.Err() == nil {
			p.mu.Lock()
			if p.err == nil {
				p.err = err
			}
			p.mu.Unlock()
			return
		}
	}
}

// close ends the fetchWaits and the connections; it returns the first
// fetchWait failure, if any.
func (p *parked) close() error {
	p.cancel()
	p.wg.Wait()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// NodeMemory is what the node's /metrics says of its memory.
type NodeMemory struct {
	RSS, HeapInuse int64 // bytes
	Conns          int64 // open client connections (qpchat_connections)
}

func (m NodeMemory) String() string {
	return fmt.Sprintf("RSS %.1f MiB, Go heap in use %.1f MiB, %d connections", float64(m.RSS)/(1<<20), float64(m.HeapInuse)/(1<<20), m.Conns)
}

// maxMetricsSize bounds the /metrics answer read.
const maxMetricsSize = 4 << 20

// ScrapeMemory reads process_resident_memory_bytes and
// go_memstats_heap_inuse_bytes from a node's admin /metrics URL.
func ScrapeMemory(ctx context.Context, url string) (NodeMemory, error) {
	var m NodeMemory
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return m, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return m, fmt.Errorf("bench: reading the node's metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return m, fmt.Errorf("bench: reading the node's metrics: %s", resp.Status)
	}
	return ParseMemory(io.LimitReader(resp.Body, maxMetricsSize))
}

// ParseMemory picks the gauges out of Prometheus text format.
func ParseMemory(r io.Reader) (NodeMemory, error) {
	var m NodeMemory
	var rss, heap bool
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 64<<10)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		var dst *int64
		switch name {
		case "process_resident_memory_bytes":
			dst, rss = &m.RSS, true
		case "go_memstats_heap_inuse_bytes":
			dst, heap = &m.HeapInuse, true
		case "qpchat_connections":
			dst = &m.Conns
		default:
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil || !(f >= 0 && f <= 1<<50) { // also NaN
			return m, fmt.Errorf("bench: bad %s value %q in the node's metrics", name, val)
		}
		*dst = int64(f)
	}
	if err := sc.Err(); err != nil {
		return m, fmt.Errorf("bench: reading the node's metrics: %w", err)
	}
	if !rss || !heap {
		return m, errors.New("bench: the node's metrics lack process_resident_memory_bytes or go_memstats_heap_inuse_bytes")
	}
	return m, nil
}
