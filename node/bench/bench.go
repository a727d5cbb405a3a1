package bench

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"qpchat/mls"
	"qpchat/opaque"
)

// Config describes a benchmark run: Clients senders, each sending to its
// own group of GroupSize devices (itself and GroupSize-1 receivers) in
// batches of Batch messages of PayloadSize bytes, for Duration. Every
// receiver loops fetchWait → ack, so a message counts as delivered once
// it was sent, fetched and acknowledged, all durably.
type Config struct {
	Addr, Fingerprint string
	// Addrs, if set, are the nodes of a cluster (sharing Fingerprint),
	// used instead of Addr: the connections are spread over them so that
	// each receiver is on another node than its sender (Conns is rounded
	// up to a multiple of len(Addrs)), and the wake-up is measured from a
	// write on one node to a fetchWait returning on another.
	Addrs       []string
	Clients     int
	GroupSize   int
	Batch       int
	PayloadSize int
	Duration    time.Duration
	// Conns is the number of QUIC connections the devices share (the node
	// limits connections per address). Zero means min(Clients, 16).
	Conns int
	// DevicesPerUser is how many devices one benchmark account gets; it
	// must not exceed the node's --max-devices. Zero means 32.
	DevicesPerUser int
	// Password of the benchmark accounts. Nil means a random one.
	Password []byte
	// WakeProbes is the number of single messages sent, after the run,
	// to a receiver parked in fetchWait, to measure the wake-up alone.
	WakeProbes int
	// Park is the number of extra connections, each with one device
	// parked in fetchWait for the whole run (idle clients).
	Park int
	// Metrics is the node's admin /metrics URL. If set, the node's memory
	// is read before parking, after parking and at the end.
	Metrics string
	// Log receives progress lines. Nil means none.
	Log io.Writer
}

// Result is what a run measured.
type Result struct {
	Elapsed         time.Duration
	Sent, Delivered int64 // messages
	SendLatency     Percentiles
	WakeLatency     Percentiles // under load: from the send's return to fetchWait's (clamped at 0)
	DeliveryLatency Percentiles // under load: from the send's start to fetchWait's return
	ParkedWake      Percentiles // probes: send's return to a parked fetchWait's return (clamped at 0)
	ParkedDelivery  Percentiles // probes: send's start to a parked fetchWait's return
	ProbeSend       Percentiles // probes: one single-message send, nothing else running
	Parked          int         // connections parked in fetchWait during the run
	// The node's memory (with Config.Metrics): after setup, after parking,
	// and after the run with the parked connections still open.
	MemSetup, MemParked, MemEnd *NodeMemory
}

// Percentiles of a latency sample.
type Percentiles struct{ P50, P90, P99, Max time.Duration }

func percentiles(s []time.Duration) Percentiles {
	if len(s) == 0 {
		return Percentiles{}
	}
	slices.Sort(s)
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return Percentiles{at(0.50), at(0.90), at(0.99), s[len(s)-1]}
}

func (p Percentiles) String() string {
	r := func(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }
	return fmt.Sprintf("p50 %v  p90 %v  p99 %v  max %v", r(p.P50), r(p.P90), r(p.P99), r(p.Max))
}

// String formats the result as `qpchat bench` prints it.
func (r *Result) String() string {
	secs := r.Elapsed.Seconds()
	return fmt.Sprintf("sent %d, delivered %d messages in %v\n"+
		"delivered: %.0f msgs/s (send+fetch+ack, durable)\n"+
		"send latency:               %v\n"+
		"fetchWait wake-up (load):   %v\n"+
		"delivery latency (load):    %v\n"+
		"single send (idle node):    %v\n"+
		"fetchWait wake-up (parked): %v\n"+
		"delivery (parked, 1 msg):   %v\n",
		r.Sent, r.Delivered, r.Elapsed.Round(time.Millisecond), float64(r.Delivered)/secs,
		r.SendLatency, r.WakeLatency, r.DeliveryLatency, r.ProbeSend, r.ParkedWake, r.ParkedDelivery) + r.memory()
}

func (r *Result) memory() string {
	var b strings.Builder
	if r.Parked > 0 {
		fmt.Fprintf(&b, "parked connections:         %d (each one device in fetchWait)\n", r.Parked)
	}
	for _, m := range []struct {
		what string
		m    *NodeMemory
	}{{"node after setup:          ", r.MemSetup}, {"node with parked conns:    ", r.MemParked}, {"node after the run:        ", r.MemEnd}} {
		if m.m != nil {
			fmt.Fprintf(&b, "%s %v\n", m.what, m.m)
		}
	}
	if r.MemSetup != nil && r.MemParked != nil && r.Parked > 0 {
		fmt.Fprintf(&b, "per parked connection:      %.1f KiB RSS\n", float64(r.MemParked.RSS-r.MemSetup.RSS)/1024/float64(r.Parked))
	}
	return b.String()
}

func (c *Config) logf(format string, args ...any) {
	if c.Log != nil {
		fmt.Fprintf(c.Log, format+"\n", args...)
	}
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Clients < 1:
		return errors.New("bench: at least one client")
	case c.GroupSize < 2:
		return errors.New("bench: a group needs at least 2 devices (a sender and a receiver)")
	case c.Batch < 1:
		return errors.New("bench: batch size must be at least 1")
	case c.PayloadSize < 16:
		return errors.New("bench: payload size must be at least 16 bytes (it carries a timestamp)")
	case c.Duration <= 0:
		return errors.New("bench: duration must be positive")
	case c.Park < 0:
		return errors.New("bench: parked connections must not be negative")
	}
	return nil
}

// Run sets up the accounts, devices and groups, then drives the node for
// cfg.Duration and returns what it measured.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Conns <= 0 {
		cfg.Conns = min(cfg.Clients, 16)
	}
	addrs := cfg.Addrs
	if len(addrs) == 0 {
		addrs = []string{cfg.Addr}
	}
	if r := cfg.Conns % len(addrs); r != 0 {
		cfg.Conns += len(addrs) - r
	}
	if cfg.DevicesPerUser <= 0 {
		cfg.DevicesPerUser = 32
	}
	if cfg.Password == nil {
		cfg.Password = make([]byte, 16)
		rand.Read(cfg.Password)
	}
	conns := make([]*Conn, cfg.Conns)
	for i := range conns {
		c, err := Dial(ctx, addrs[i%len(addrs)], cfg.Fingerprint)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		conns[i] = c
	}
	devices, users, err := setupDevices(ctx, &cfg, conns)
	if err != nil {
		return nil, err
	}
	groups, err := setupGroups(ctx, &cfg, devices, users)
	if err != nil {
		return nil, err
	}
	cfg.logf("setup done: %d devices in %d groups over %d connections", len(devices), len(groups), len(conns))
	mem := func(dst **NodeMemory) error {
		if cfg.Metrics == "" {
			return nil
		}
		m, err := ScrapeMemory(ctx, cfg.Metrics)
		*dst = &m
		return err
	}
	var memSetup, memParked *NodeMemory
	if err := mem(&memSetup); err != nil {
		return nil, err
	}
	if cfg.Park > 0 {
		p, err := park(ctx, &cfg, conns[0], cfg.Park)
		if err != nil {
			return nil, err
		}
		defer p.close()
		time.Sleep(time.Second) // let every fetchWait reach the node
		if err := mem(&memParked); err != nil {
			return nil, err
		}
	}
	res, err := drive(ctx, &cfg, groups)
	if err != nil {
		return nil, err
	}
	res.Parked, res.MemSetup, res.MemParked = cfg.Park, memSetup, memParked
	if err := mem(&res.MemEnd); err != nil {
		return nil, err
	}
	if cfg.WakeProbes > 0 {
		if res.ParkedWake, res.ParkedDelivery, res.ProbeSend, err = wakeProbes(ctx, groups[0], cfg.WakeProbes); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// wakeProbes sends n single messages, each once the receiver has been
// parked in fetchWait for a moment, and measures when it wakes.
func wakeProbes(ctx context.Context, g *group, n int) (wake, deliv, send Percentiles, err error) {
	r := g.receivers[0]
	msgs, q, err := r.Fetch(ctx, 0, 0)
	if err != nil {
		return wake, deliv, send, err
	}
	after := q.Last
	if len(msgs) > 0 {
		if err := r.Ack(ctx, q.Last); err != nil {
			return wake, deliv, send, err
		}
	}
	msg := [][]byte{PrivateMessage(g.id, 1, mls.ContentTypeApplication, make([]byte, 16))}
	var wl, dl, sl []time.Duration
	for range n {
		type answer struct {
			at   time.Time
			last uint64
			err  error
		}
		got := make(chan answer, 1)
		go func() {
			m, _, err := r.FetchWait(ctx, after, 0, 10*time.Second)
			a := answer{at: time.Now(), err: err}
			if err == nil && len(m) == 0 {
				a.err = errors.New("bench: a parked fetchWait returned nothing")
			}
			if a.err == nil {
				a.last = m[len(m)-1].Seq
			}
			got <- a
		}()
		time.Sleep(5 * time.Millisecond) // let it park
		t0 := time.Now()
		if _, err := g.sender.Send(ctx, g.id, msg); err != nil {
			return wake, deliv, send, err
		}
		t1 := time.Now()
		a := <-got
		if a.err != nil {
			return wake, deliv, send, a.err
		}
		after = a.last
		sl = append(sl, t1.Sub(t0))
		wl = append(wl, max(0, a.at.Sub(t1)))
		dl = append(dl, a.at.Sub(t0))
	}
	if err := r.Ack(ctx, after); err != nil {
		return wake, deliv, send, err
	}
	return percentiles(wl), percentiles(dl), percentiles(sl), nil
}

type benchUser struct {
	name string
	key  ed25519.PrivateKey
}

// setupDevices registers the accounts and devices and opens a device
// session for each, spreading them over conns.
func setupDevices(ctx context.Context, cfg *Config, conns []*Conn) ([]*Device, []benchUser, error) {
	total := cfg.Clients * cfg.GroupSize
	prefix := make([]byte, 4)
	rand.Read(prefix)
	var users []benchUser
	var devices []*Device
	ocfg := opaque.QPChat() // the node announces its KSF; the rest is fixed
	for len(devices) < total {
		c := conns[len(users)%len(conns)]
		name := fmt.Sprintf("bench-%s-%d", hex.EncodeToString(prefix), len(users))
		login, uk, err := c.Register(ctx, ocfg, name, cfg.Password)
		if err != nil {
			return nil, nil, fmt.Errorf("bench: registering %s: %w", name, err)
		}
		users = append(users, benchUser{name, uk})
		for k := 0; k < cfg.DevicesPerUser && len(devices) < total; k++ {
			dk, err := NewDeviceKey(nil)
			if err != nil {
				return nil, nil, err
			}
			if err := c.RegisterDevice(ctx, login, name, uk, dk); err != nil {
				return nil, nil, fmt.Errorf("bench: registering a device: %w", err)
			}
			dc := conns[len(devices)%len(conns)]
			d, err := dc.AuthenticateDevice(ctx, name, dk, dc.Exporter)
			if err != nil {
				return nil, nil, fmt.Errorf("bench: authenticating a device: %w", err)
			}
			devices = append(devices, d)
		}
		login.Release()
	}
	cfg.logf("registered %d users with %d devices", len(users), len(devices))
	return devices, users, nil
}

// group is one sender and its receivers.
type group struct {
	id        []byte
	sender    *Device
	receivers []*Device
}

// benchSuite is the suite of the setup's KeyPackages.
const benchSuite = uint16(mls.CipherSuiteMLS128DHKEMX25519AES128GCMSHA256Ed25519)

// setupGroups makes one group per client: the sender creates it, its
// receivers publish one KeyPackage each, the sender fetches them and
// commits their addition with a Welcome.
func setupGroups(ctx context.Context, cfg *Config, devices []*Device, users []benchUser) ([]*group, error) {
	keyOf := map[string]ed25519.PrivateKey{}
	for _, u := range users {
		keyOf[u.name] = u.key
	}
	var groups []*group
	now := time.Now()
	for i := range cfg.Clients {
		g := &group{id: make([]byte, 32), sender: devices[i*cfg.GroupSize], receivers: devices[i*cfg.GroupSize+1 : (i+1)*cfg.GroupSize]}
		rand.Read(g.id)
		if err := g.sender.CreateGroup(ctx, g.id); err != nil {
			return nil, err
		}
		targets := map[string]bool{}
		for _, r := range g.receivers {
			kp, _, err := KeyPackage(benchSuite, r.User, keyOf[r.User], r.Key, now, 0)
			if err != nil {
				return nil, err
			}
			if _, err := r.UploadKeyPackages(ctx, benchSuite, [][]byte{kp}, nil); err != nil {
				return nil, fmt.Errorf("bench: uploading a KeyPackage: %w", err)
			}
			targets[r.User] = true
		}
		var added, refs [][]byte
		for u := range targets {
			got, err := g.sender.FetchKeyPackages(ctx, u, benchSuite)
			if err != nil {
				return nil, fmt.Errorf("bench: fetching KeyPackages: %w", err)
			}
			for _, f := range got {
				m, err := mls.UnmarshalMLSMessage(f.KeyPackage)
				if err != nil {
					return nil, err
				}
				ref, err := mls.MakeKeyPackageRef(m.KeyPackage)
				if err != nil {
					return nil, err
				}
				added, refs = append(added, f.Device), append(refs, ref)
			}
		}
		if len(added) != len(g.receivers) {
			return nil, fmt.Errorf("bench: fetched %d KeyPackages for %d receivers", len(added), len(g.receivers))
		}
		commit := PrivateMessage(g.id, 0, mls.ContentTypeCommit, []byte("bench add"))
		if _, err := g.sender.Commit(ctx, g.id, commit, added, nil, Welcome(benchSuite, refs)); err != nil {
			return nil, fmt.Errorf("bench: adding receivers: %w", err)
		}
		for _, r := range g.receivers {
			// Consume the Welcome so the run counts only its messages.
			msgs, _, err := r.Fetch(ctx, 0, 0)
			if err != nil {
				return nil, err
			}
			if len(msgs) > 0 {
				if err := r.Ack(ctx, msgs[len(msgs)-1].Seq); err != nil {
					return nil, err
				}
			}
		}
		groups = append(groups, g)
	}
	return groups, nil
}

// drive runs the senders and receivers for cfg.Duration.
func drive(ctx context.Context, cfg *Config, groups []*group) (*Result, error) {
	var (
		sent, delivered atomic.Int64
		mu              sync.Mutex
		sendLat         []time.Duration
		wakeLat         []time.Duration
		delivLat        []time.Duration
		firstErr        error
		sendDone        sync.Map // batch id → time the send returned (unix ns)
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	deadline := start.Add(cfg.Duration)
	var senders, receivers sync.WaitGroup
	var batchIDs atomic.Uint64
	for _, g := range groups {
		senders.Add(1)
		go func() {
			defer senders.Done()
			var local []time.Duration
			for time.Now().Before(deadline) && runCtx.Err() == nil {
				id := batchIDs.Add(1)
				t0 := time.Now()
				msgs := make([][]byte, cfg.Batch)
				for i := range msgs {
					payload := make([]byte, cfg.PayloadSize)
					binary.BigEndian.PutUint64(payload, uint64(t0.UnixNano()))
					binary.BigEndian.PutUint64(payload[8:], id)
					msgs[i] = PrivateMessage(g.id, 1, mls.ContentTypeApplication, payload)
				}
				if _, err := g.sender.Send(runCtx, g.id, msgs); err != nil {
					if runCtx.Err() == nil {
						fail(fmt.Errorf("bench: send: %w", err))
					}
					return
				}
				t1 := time.Now()
				sendDone.Store(id, t1.UnixNano())
				local = append(local, t1.Sub(t0))
				sent.Add(int64(cfg.Batch))
			}
			mu.Lock()
			sendLat = append(sendLat, local...)
			mu.Unlock()
		}()
		for _, r := range g.receivers {
			receivers.Add(1)
			go func() {
				defer receivers.Done()
				var after uint64
				var wl, dl []time.Duration
				defer func() {
					mu.Lock()
					wakeLat = append(wakeLat, wl...)
					delivLat = append(delivLat, dl...)
					mu.Unlock()
				}()
				for runCtx.Err() == nil {
					msgs, _, err := r.FetchWait(runCtx, after, 0, 2*time.Second)
					now := time.Now()
					if err != nil {
						if runCtx.Err() == nil {
							fail(fmt.Errorf("bench: fetchWait: %w", err))
						}
						return
					}
					if len(msgs) == 0 {
						continue
					}
					seenBatch := map[uint64]bool{}
					for _, m := range msgs {
						pm, err := mls.UnmarshalMLSMessage(m.Data)
						if err != nil || pm.PrivateMessage == nil || len(pm.PrivateMessage.Ciphertext) < 16 {
							fail(errors.New("bench: a received message is not the benchmark's"))
							return
						}
						p := pm.PrivateMessage.Ciphertext
						sentAt := int64(binary.BigEndian.Uint64(p))
						id := binary.BigEndian.Uint64(p[8:])
						if !seenBatch[id] {
							seenBatch[id] = true
							dl = append(dl, now.Sub(time.Unix(0, sentAt)))
							if v, ok := sendDone.Load(id); ok {
								wl = append(wl, max(0, now.Sub(time.Unix(0, v.(int64)))))
							} else {
								wl = append(wl, 0) // woke before the sender's reply arrived
							}
						}
					}
					after = msgs[len(msgs)-1].Seq
					if err := r.Ack(runCtx, after); err != nil {
						if runCtx.Err() == nil {
							fail(fmt.Errorf("bench: ack: %w", err))
						}
						return
					}
					delivered.Add(int64(len(msgs)))
				}
			}()
		}
	}
	senders.Wait()
	// Let the receivers drain what was sent, then stop them.
	drainBy := time.Now().Add(10 * time.Second)
	want := sent.Load() * int64(len(groups[0].receivers))
	for delivered.Load() < want && time.Now().Before(drainBy) && firstErr == nil {
		time.Sleep(5 * time.Millisecond)
	}
	elapsed := time.Since(start)
	cancel()
	receivers.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	return &Result{
		Elapsed:         elapsed,
		Sent:            sent.Load(),
		Delivered:       delivered.Load(),
		SendLatency:     percentiles(sendLat),
		WakeLatency:     percentiles(wakeLat),
		DeliveryLatency: percentiles(delivLat),
	}, nil
}
