package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"qpchat/mls"
	"qpchat/node/bench"
	"qpchat/node/store"
)

func TestAdminAddressMustBeLoopback(t *testing.T) {
	for _, tc := range []struct {
		addr   string
		remote bool
		ok     bool
	}{
		{"127.0.0.1:9090", false, true},
		{"[::1]:9090", false, true},
		{"localhost:9090", false, true},
		{":9090", false, false},
		{"0.0.0.0:9090", false, false},
		{"[::]:9090", false, false},
		{"192.0.2.7:9090", false, false},
		{"example.org:9090", false, false},
		{":9090", true, true},
		{"192.0.2.7:9090", true, true},
		{"no-port", true, false},
	} {
		err := CheckAdminAddr(tc.addr, tc.remote)
		if (err == nil) != tc.ok {
			t.Errorf("CheckAdminAddr(%q, %v) = %v, want ok=%v", tc.addr, tc.remote, err, tc.ok)
		}
	}
	cfg := Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), Admin: AdminConfig{Listen: "0.0.0.0:0"}}
	if s, err := New(cfg); err == nil {
		s.ln.Shutdown()
		t.Fatal("New with a non-loopback admin address succeeded")
	}
}

func TestAdminListenerOffByDefault(t *testing.T) {
	n := startNode(t, nil)
	if a := n.srv.AdminAddr(); a != nil {
		t.Fatalf("admin listener on %v without Admin.Listen", a)
	}
	if _, err := os.Stat(filepath.Join(n.cfg.DataDir, AdminAddrFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s written without an admin listener: %v", AdminAddrFile, err)
	}
}

func adminNode(t *testing.T, edit func(*Config)) func(*Config) {
	return func(c *Config) {
		c.Admin.Listen = "127.0.0.1:0"
		if edit != nil {
			edit(c)
		}
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// metricValue returns the value of the sample line name{labels} (labels
// as Prometheus prints them, sorted), or -1.
func metricValue(text, series string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return -1
			}
			return f
		}
	}
	return -1
}

func TestAdminHealthReadyAndMetrics(t *testing.T) {
	w := newWorld(t, adminNode(t, nil))
	base := "http://" + w.n.srv.AdminAddr().String()

	if code, body := httpGet(t, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q, want 200 ok", code, body)
	}
	if code, body := httpGet(t, base+"/readyz"); code != 200 {
		t.Errorf("/readyz = %d %q, want 200", code, body)
	}
	_, err := w.a1.Send(testCtx(t), w.group, [][]byte{
		bench.PrivateMessage(w.group, 1, mls.ContentTypeApplication, []byte("one")),
		bench.PrivateMessage(w.group, 1, mls.ContentTypeApplication, []byte("two")),
	})
	must(t, "send", err)
	// A login relayed to another connection: one login failure (a wrong
	// password fails in the client, before the node could tell).
	c := w.n.dial()
	lp, err := c.LoginStart(testCtx(t), w.n.cfg.OPAQUE, "alice", []byte(testPassword))
	must(t, "loginStart", err)
	_, err = c.LoginFinish(testCtx(t), lp, make([]byte, len(c.Exporter)))
	wantCode(t, "relayed login", err, "auth-failed")
	// A call refused by a node error: send to a group that does not exist.
	other := newGroupID(t)
	_, err = w.a1.Send(testCtx(t), other, [][]byte{bench.PrivateMessage(other, 1, mls.ContentTypeApplication, nil)})
	wantCode(t, "send to an unknown group", err, "not-found")

	code, text := httpGet(t, base+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	for series, want := range map[string]float64{
		`qpchat_registrations_total`:                                 2,
		`qpchat_device_auths_total`:                                  4,
		`qpchat_login_failures_total`:                                1,
		`qpchat_sends_total`:                                         1,
		`qpchat_sent_messages_total`:                                 2,
		`qpchat_commits_total`:                                       1,
		`qpchat_calls_total{code="ok",method="Session.send"}`:        1,
		`qpchat_calls_total{code="not-found",method="Session.send"}`: 1,
		`qpchat_calls_total{code="ok",method="Session.commit"}`:      1,
		`qpchat_call_duration_seconds_count{method="Session.send"}`:  2,
		`qpchat_rate_limited_total{how="refused"}`:                   0,
		`qpchat_ready`:                               1,
		`qpchat_queue_depth_count`:                   3,     // a2, b1, b2; the creator a1 never received
		`qpchat_queued_messages`:                     3 + 6, // the Welcome to each, then 2 messages each
		`qpchat_shared_bodies`:                       3,     // the Welcome and the 2 messages, each stored once
		`qpchat_queue_depth_bucket{le="0"}`:          -2,    // checked below
		`qpchat_build_info{version="test"}`:          1,
		`qpchat_connections`:                         -2,
		`qpchat_store_commit_duration_seconds_count`: -2,
		`qpchat_store_size_bytes`:                    -2,
		`process_resident_memory_bytes`:              -2,
		`qpchat_calls_total{code="auth-failed",method="NodeService.loginFinish"}`: 1,
	} {
		got := metricValue(text, series)
		switch {
		case want == -2 && got < 0:
			t.Errorf("/metrics has no %s", series)
		case want >= 0 && got != want:
			t.Errorf("/metrics %s = %v, want %v", series, got, want)
		}
	}
	if got := metricValue(text, "qpchat_store_commit_duration_seconds_count"); got < 5 {
		t.Errorf("store commits observed: %v, want several", got)
	}
	for _, secret := range []string{"alice", "bob", string(w.group)} {
		if strings.Contains(text, secret) {
			t.Errorf("/metrics names %q", secret)
		}
	}
}

func TestReadyzIs503WhileShuttingDown(t *testing.T) {
	n := startNode(t, adminNode(t, func(c *Config) { c.ShutdownTimeout = time.Minute }))
	url := "http://" + n.srv.AdminAddr().String() + "/readyz"
	if code, _ := httpGet(t, url); code != 200 {
		t.Fatalf("/readyz = %d before shutdown, want 200", code)
	}
	// A call in flight holds the shutdown open, with the admin listener up.
	done, err := n.srv.beginCall()
	must(t, "beginCall", err)
	stopped := make(chan struct{})
	go func() { n.stop(); close(stopped) }()
	for {
		code, body := httpGet(t, url)
		if code == http.StatusServiceUnavailable {
			if !strings.Contains(body, "shutting down") {
				t.Errorf("/readyz body %q, want the reason", body)
			}
			break
		}
		time.Sleep(5 * time.Millisecond) // waiting for Serve to notice the cancel
	}
	done()
	<-stopped
	if _, err := http.Get(url); err == nil {
		t.Error("admin listener still answers after Serve returned")
	}
	if _, err := os.Stat(filepath.Join(n.cfg.DataDir, AdminTokenFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s left behind after Serve returned: %v", AdminTokenFile, err)
	}
}

func TestBackupNeedsTheToken(t *testing.T) {
	n := startNode(t, adminNode(t, nil))
	addr := n.srv.AdminAddr().String()
	for _, tok := range []string{"", "00", strings.Repeat("a", 64)} {
		err := FetchBackup(testCtx(t), addr, tok, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "401") {
			t.Errorf("backup with token %q: %v, want 401", tok, err)
		}
	}
	gotAddr, tok, err := ReadAdminFiles(n.cfg.DataDir)
	must(t, "reading the admin files", err)
	if gotAddr != addr {
		t.Errorf("%s holds %q, want %q", AdminAddrFile, gotAddr, addr)
	}
	fi, err := os.Stat(filepath.Join(n.cfg.DataDir, AdminTokenFile))
	must(t, "stat token", err)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", AdminTokenFile, fi.Mode().Perm())
	}
	var buf bytes.Buffer
	must(t, "backup with the token", FetchBackup(testCtx(t), addr, tok, &buf))
	if _, _, err := store.ReadBackup(bytes.NewReader(buf.Bytes()), io.Discard); err != nil {
		t.Errorf("backup does not verify: %v", err)
	}
	// The node's key never travels in a backup, in any form.
	key, err := os.ReadFile(filepath.Join(n.cfg.DataDir, "node.key"))
	must(t, "reading node.key", err)
	if bytes.Contains(buf.Bytes(), key) {
		t.Error("the backup holds the store key")
	}
	pem, err := os.ReadFile(filepath.Join(n.cfg.DataDir, keyFileName))
	must(t, "reading the identity key", err)
	if bytes.Contains(buf.Bytes(), pem[40:80]) {
		t.Error("the backup holds the identity key in clear")
	}
}

// TestBackupUnderLoadRestores backs up a node while a member sends, and
// checks that a node started on the restored data has every message
// whose send was acknowledged before the backup began.
func TestBackupUnderLoadRestores(t *testing.T) {
	w := newWorld(t, adminNode(t, nil))
	addr, tok, err := ReadAdminFiles(w.n.cfg.DataDir)
	must(t, "reading the admin files", err)

	var (
		mu    sync.Mutex
		acked [][]byte // messages whose send returned
	)
	ctx, cancel := context.WithCancel(testCtx(t))
	loadDone := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			m := bench.PrivateMessage(w.group, 1, mls.ContentTypeApplication, []byte("message "+strconv.Itoa(i)))
			if _, err := w.a1.Send(ctx, w.group, [][]byte{m}); err != nil {
				if ctx.Err() != nil {
					loadDone <- nil
				} else {
					loadDone <- err
				}
				return
			}
			mu.Lock()
			acked = append(acked, m)
			mu.Unlock()
		}
	}()
	// Let some sends through, then take the backup while they go on.
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 20 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	mu.Lock()
	before := append([][]byte(nil), acked...)
	mu.Unlock()
	var buf bytes.Buffer
	must(t, "backup", FetchBackup(testCtx(t), addr, tok, &buf))
	mu.Lock()
	after := len(acked)
	mu.Unlock()
	cancel()
	must(t, "send load", <-loadDone)
	t.Logf("%d sends acknowledged before the backup, %d when it ended; %d bytes", len(before), after, buf.Len())

	// Restore into a new data directory that holds only the store key.
	dir := filepath.Join(t.TempDir(), "restored")
	must(t, "mkdir", os.MkdirAll(dir, 0o700))
	key, err := os.ReadFile(filepath.Join(w.n.cfg.DataDir, "node.key"))
	must(t, "reading node.key", err)
	must(t, "copying node.key", os.WriteFile(filepath.Join(dir, "node.key"), key, 0o600))
	res, err := Restore(Config{DataDir: dir}, bytes.NewReader(buf.Bytes()), false)
	must(t, "restore", err)
	if len(res.Files) != 2 {
		t.Errorf("restore wrote %v, want the two identity files", res.Files)
	}
	w.n.stop()

	n2 := startNode(t, func(c *Config) { c.DataDir = dir })
	if n2.srv.Fingerprint() != w.n.srv.Fingerprint() {
		t.Fatalf("restored node has key %s, want %s", n2.srv.Fingerprint(), w.n.srv.Fingerprint())
	}
	c := n2.dial()
	b1, err := c.AuthenticateDevice(testCtx(t), w.bob.name, w.b1.Key, c.Exporter)
	must(t, "bob's device on the restored node", err)
	got := map[string]bool{}
	for _, m := range drain(t, b1, 0) {
		got[string(m.Data)] = true
	}
	for i, m := range before {
		if !got[string(m)] {
			t.Errorf("acknowledged message %d of %d is missing after the restore", i, len(before))
		}
	}
}

func TestRestoreRefusals(t *testing.T) {
	n := startNode(t, adminNode(t, nil))
	addr, tok, err := ReadAdminFiles(n.cfg.DataDir)
	must(t, "reading the admin files", err)
	var buf bytes.Buffer
	must(t, "backup", FetchBackup(testCtx(t), addr, tok, &buf))
	backup := buf.Bytes()

	// Over the running node.
	_, err = Restore(n.cfg, bytes.NewReader(backup), true)
	if !errors.Is(err, store.ErrInUse) {
		t.Errorf("restore over a running node: %v, want ErrInUse", err)
	}
	n.stop()
	// Over a stopped node's data, without --force.
	if _, err := Restore(n.cfg, bytes.NewReader(backup), false); err == nil || !strings.Contains(err.Error(), "already holds") {
		t.Errorf("restore over existing data: %v, want a refusal", err)
	}
	// Without the key file.
	empty := Config{DataDir: filepath.Join(t.TempDir(), "d")}
	if _, err := Restore(empty, bytes.NewReader(backup), false); err == nil || !strings.Contains(err.Error(), "key file") {
		t.Errorf("restore without node.key: %v, want a refusal naming the key file", err)
	}
	// Damaged: a flipped bit in the middle, a cut end.
	flipped := bytes.Clone(backup)
	flipped[len(flipped)/2] ^= 1
	for name, b := range map[string][]byte{"flipped": flipped, "truncated": backup[:len(backup)-10], "empty": nil} {
		_, err := Restore(n.cfg, bytes.NewReader(b), true)
		if !errors.Is(err, store.ErrBadBackup) {
			t.Errorf("restore of a %s backup: %v, want ErrBadBackup", name, err)
		}
	}
	// The data is untouched by the refusals; with --force it is replaced
	// and the old file kept.
	res, err := Restore(n.cfg, bytes.NewReader(backup), true)
	must(t, "restore --force", err)
	if _, err := os.Stat(res.Moved); err != nil {
		t.Errorf("the replaced database was not kept: %v", err)
	}
	// A different key refuses.
	other := Config{DataDir: filepath.Join(t.TempDir(), "o")}
	must(t, "mkdir", os.MkdirAll(other.DataDir, 0o700))
	must(t, "other key", os.WriteFile(filepath.Join(other.DataDir, "node.key"), bytes.Repeat([]byte{7}, 32), 0o600))
	if _, err := Restore(other, bytes.NewReader(backup), false); !errors.Is(err, store.ErrWrongKeyFile) {
		t.Errorf("restore with another key: %v, want ErrWrongKeyFile", err)
	}
	if _, err := os.Stat(filepath.Join(other.DataDir, "node.db")); !errors.Is(err, os.ErrNotExist) {
		t.Error("a refused restore left a database behind")
	}
}
