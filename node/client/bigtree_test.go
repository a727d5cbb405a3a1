package client

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"qpchat/node/proto"
	"qpchat/node/server"
	"qpchat/opaque"
)

// startRealNodeLimits starts a node with limits adjusted by tune. One
// address opens every connection of these tests.
func startRealNodeLimits(t testing.TB, tune func(*server.Limits)) (addr, fp string) {
	t.Helper()
	addr, fp, _ = startRealNodeDir(t, tune)
	return addr, fp
}

// startRealNodeDir is startRealNodeLimits that also returns the node's
// data directory (its store is node.db there).
func startRealNodeDir(t testing.TB, tune func(*server.Limits)) (addr, fp, dir string) {
	t.Helper()
	dir = t.TempDir()
	lim := server.Limits{MaxConnsPerAddr: 1000, LoginRateAddr: 100000}
	tune(&lim)
	srv, err := server.New(server.Config{Listen: "127.0.0.1:0", DataDir: dir, OPAQUE: opaque.QPChatTest(), Limits: lim,
		MaxConns: lim.MaxConnsPerAddr + 100,
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return srv.Addr().String(), srv.Fingerprint(), dir
}

// TestBigGroupThroughNode invites a few hundred devices in one call to a
// node whose --max-message-size is far below what one commit of them
// all, or a Welcome with their tree, would need: the invite is split
// (first by estimate, then by the node's refusals), the tree travels as
// a blob, every device joins, and the group works afterwards.
func TestBigGroupThroughNode(t *testing.T) {
	n := 300
	if testing.Short() {
		n = 40
	}
	addr, fp := startRealNodeLimits(t, func(l *server.Limits) { l.MaxMessageSize = 96 << 10 })
	ctx := context.Background()
	alice := newRealUser(t, addr, fp, "alice")
	// A budget above the node's limit: the node's refusals split the
	// batches further. A small inline limit: the tree goes out of band.
	alice.c.cfg.CommitBudget = 256 << 10
	alice.c.cfg.TreeInlineLimit = 8 << 10
	spy := &commitSpy{Session: alice.c.cfg.Session}
	alice.c.cfg.Session = spy
	var users []*realUser
	var names []string
	for i := range n {
		u := newRealUser(t, addr, fp, fmt.Sprintf("member%03d", i))
		users = append(users, u)
		names = append(names, u.name)
	}
	if _, err := alice.c.CreateGroup(ctx, "big", 0); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	added, err := alice.c.Invite(ctx, "big", names)
	if err != nil {
		t.Fatal(err)
	}
	if added != n {
		t.Fatalf("invited %d devices, want %d", added, n)
	}
	t.Logf("invited %d devices in %v: %d commits accepted, %d refused as too large, %d trees uploaded",
		n, time.Since(start), spy.accepted, spy.tooLarge, spy.blobs)
	if spy.accepted < 2 || spy.tooLarge == 0 || spy.blobs == 0 {
		t.Errorf("the invite did not split (%d commits, %d refusals) or kept the tree inline (%d blobs)", spy.accepted, spy.tooLarge, spy.blobs)
	}
	// The group is not stuck behind a refused commit.
	if err := alice.c.Send(ctx, "big", "welcome all"); err != nil {
		t.Fatal(err)
	}
	for i, u := range users {
		if i%(n/10) != 0 && i != n-1 {
			continue // a sample joins; the rest is the same path
		}
		evs, err := u.c.Recv(ctx, 0)
		if err != nil {
			t.Fatalf("%s: %v", u.name, err)
		}
		if got := texts(evs); len(got) != 1 || got[0] != "alice: welcome all" {
			t.Errorf("%s received %q", u.name, got)
		}
		if ms, err := u.c.Members(ctx, "big"); err != nil || len(ms) != n+1 {
			t.Errorf("%s sees %d members (%v), want %d", u.name, len(ms), err, n+1)
		}
	}
}

// commitSpy counts what an inviter's session does.
type commitSpy struct {
	Session
	accepted, tooLarge, blobs int
}

func (s *commitSpy) Commit(ctx context.Context, req CommitRequest) error {
	err := s.Session.Commit(ctx, req)
	switch {
	case err == nil:
		s.accepted++
	case proto.CodeOf(err) == proto.CodeLimit:
		s.tooLarge++
	}
	return err
}

func (s *commitSpy) CreateBlob(ctx context.Context, size uint64) ([]byte, int, error) {
	s.blobs++
	return s.Session.(BlobSession).CreateBlob(ctx, size)
}

func (s *commitSpy) PutBlob(ctx context.Context, id []byte, offset uint64, data []byte) (uint64, error) {
	return s.Session.(BlobSession).PutBlob(ctx, id, offset, data)
}

func (s *commitSpy) GetBlob(ctx context.Context, id []byte, offset uint64, n int) ([]byte, uint64, error) {
	return s.Session.(BlobSession).GetBlob(ctx, id, offset, n)
}

// BenchmarkBigGroupThroughNode builds a group of N devices through a real
// node with the default limits (--max-group-size raised to N) and reports
// the time to invite them all and for one of them to join, the bytes
// this process wrote during the invite (the node's store and the
// inviter's state; Linux only) and the size of the node's file after.
// N = 500 by default, or QPCHAT_BENCH_DEVICES. Every member is a full
// client in this process (its own state file, connection and
// KeyPackages), so 5 000 members take about 4 GB and two minutes:
//
//	QPCHAT_BENCH_DEVICES=5000 go test ./node/client -run XXX -bench BigGroupThroughNode -benchtime 1x -timeout 1h
func BenchmarkBigGroupThroughNode(b *testing.B) {
	sizes := []int{500}
	if v := os.Getenv("QPCHAT_BENCH_DEVICES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 2 {
			b.Fatalf("QPCHAT_BENCH_DEVICES=%q", v)
		}
		sizes = []int{n}
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("devices=%d", n), func(b *testing.B) {
			addr, fp, dir := startRealNodeDir(b, func(l *server.Limits) { l.MaxGroupSize, l.MaxConnsPerAddr = n+1, n+100 })
			ctx := context.Background()
			users := make([]*realUser, n)
			names := make([]string, n)
			var wg sync.WaitGroup
			for w := range 4 {
				wg.Go(func() {
					for i := w; i < n; i += 4 {
						users[i] = newRealUser(b, addr, fp, fmt.Sprintf("member%05d", i))
						names[i] = users[i].name
					}
				})
			}
			wg.Wait()
			for i := 0; b.Loop(); i++ {
				alice := newRealUser(b, addr, fp, fmt.Sprintf("alice%d", i))
				spy := &commitSpy{Session: alice.c.cfg.Session}
				alice.c.cfg.Session = spy
				name := fmt.Sprintf("big%d", i)
				if _, err := alice.c.CreateGroup(ctx, name, 0); err != nil {
					b.Fatal(err)
				}
				start, written := time.Now(), bytesWritten()
				if _, err := alice.c.Invite(ctx, name, names); err != nil {
					b.Fatal(err)
				}
				invite := time.Since(start)
				written = bytesWritten() - written
				last := users[n-1]
				start = time.Now()
				if _, err := last.c.Recv(ctx, 0); err != nil {
					b.Fatal(err)
				}
				join := time.Since(start)
				b.ReportMetric(invite.Seconds(), "invite-s")
				b.ReportMetric(join.Seconds(), "join-s")
				b.ReportMetric(float64(spy.accepted), "commits")
				b.ReportMetric(float64(spy.blobs), "tree-blobs")
				if written >= 0 {
					b.ReportMetric(float64(written)/(1<<20), "written-MiB")
				}
				if fi, err := os.Stat(filepath.Join(dir, "node.db")); err == nil {
					b.ReportMetric(float64(fi.Size())/(1<<20), "node-db-MiB")
				}
			}
		})
	}
}

// bytesWritten returns the bytes this process has passed to write calls
// (wchar of /proc/self/io), or -1 where that is not available.
func bytesWritten() int64 {
	raw, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "wchar: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return -1
			}
			return n
		}
	}
	return -1
}

// TestInviteBatches: batches stay within the budget, every batch holds
// at least one package, and later batches are as full as the first (a
// regression: the Welcome estimate once carried over from one batch to
// the next, making every batch after the second a single device).
func TestInviteBatches(t *testing.T) {
	kps := make([][]byte, 1000)
	devs := make([][]byte, 1000)
	for i := range kps {
		kps[i] = make([]byte, 2500)
		devs[i] = []byte{byte(i), byte(i >> 8)}
	}
	for _, inline := range []bool{false, true} {
		kb, db := inviteBatches(kps, devs, 0xFA01, 768<<10, 10<<10, inline)
		total := 0
		for i, b := range kb {
			total += len(b)
			if len(b) != len(db[i]) || len(b) == 0 {
				t.Fatalf("inline=%v: batch %d has %d packages for %d devices", inline, i, len(b), len(db[i]))
			}
			if !inline && i < len(kb)-1 && len(b) < len(kb[0])/2 {
				t.Errorf("inline=%v: batch %d holds %d packages, the first %d", inline, i, len(b), len(kb[0]))
			}
			if 1024+totalLen(b) > 768<<10 {
				t.Errorf("inline=%v: batch %d is over the budget", inline, i)
			}
		}
		if total != len(kps) {
			t.Errorf("inline=%v: %d packages in batches, want %d", inline, total, len(kps))
		}
		if !inline && len(kb) > 5 {
			t.Errorf("%d batches for 2.5 MB of packages at 768 KiB each", len(kb))
		}
	}
	// One package larger than the budget still gets a batch of its own.
	kb, _ := inviteBatches([][]byte{make([]byte, 2<<20)}, [][]byte{{1}}, 1, 768<<10, 0, false)
	if len(kb) != 1 || len(kb[0]) != 1 {
		t.Errorf("an oversized package: %d batches", len(kb))
	}
}
