package server

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"qpchat/node/store"
)

// The admin listener: plain HTTP for the operator's tools, off unless
// AdminConfig.Listen is set.
//
//	GET  /healthz  200 while the process runs
//	GET  /readyz   200 when the store is open and takes a commit and the
//	               QUIC listener accepts; 503 otherwise (starting, stopping)
//	GET  /metrics  Prometheus text format (prommetrics.go)
//	POST /backup   a backup of the live store (store.WriteBackup); needs
//	               "Authorization: Bearer <token>" with the token the node
//	               wrote to AdminTokenFile in its data directory
//	POST /invite   mints a registration token (?ttl=168h); same token
//
// It is refused on a non-loopback address unless AllowRemote: metrics
// tell an observer how busy the node is, and the listener has no TLS.
// The backup stays sealed under the store key, and its token is only
// readable by whoever can read the data directory anyway.

// Files the node writes into its data directory while the admin listener
// runs, so `qpchat serve backup` and `qpchat serve health` find it.
const (
	AdminAddrFile  = "admin.addr"
	AdminTokenFile = "admin.token"
)

// AdminConfig configures the admin listener.
type AdminConfig struct {
	// Listen is the TCP address of the admin HTTP listener. Empty (the
	// default): no admin listener.
	Listen string
	// AllowRemote permits a Listen address that is not loopback.
	AllowRemote bool
	// Ready, if set, is called once the node accepts connections, and
	// Stopping once its shutdown begins (systemd's sd_notify READY=1 and
	// STOPPING=1). They run on Serve's goroutine and must be quick.
	Ready, Stopping func()
}

type adminServer struct {
	ln    net.Listener
	http  *http.Server
	token string
	files []string // written into the data directory; removed at the end

	mu        sync.Mutex
	probeAt   time.Time
	probeErr  error
	probeOnce bool
}

// CheckAdminAddr refuses a non-loopback admin address unless
// allowRemote: a host that is empty or unspecified (":9090",
// "0.0.0.0:9090") listens on every interface.
func CheckAdminAddr(addr string, allowRemote bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("server: admin address %q: %w", addr, err)
	}
	if allowRemote {
		return nil
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(strings.Trim(host, "[]")); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("server: admin address %q is not loopback; the admin listener has no TLS and no login (but /backup), so give 127.0.0.1:PORT, or --admin-allow-remote behind a firewall", addr)
}

// startAdmin binds the admin listener if configured.
func (s *Server) startAdmin() error {
	ac := s.cfg.Admin
	if ac.Listen == "" {
		return nil
	}
	if err := CheckAdminAddr(ac.Listen, ac.AllowRemote); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", ac.Listen)
	if err != nil {
		return fmt.Errorf("server: admin listener: %w", err)
	}
	tok := make([]byte, 32)
	if _, err := rand.Read(tok); err != nil {
		ln.Close()
		return err
	}
	a := &adminServer{ln: ln, token: hex.EncodeToString(tok)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", s.handleReady)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.prom.reg, promhttp.HandlerOpts{
		ErrorLog:            slogPrinter{s},
		MaxRequestsInFlight: 4,
		Timeout:             30 * time.Second,
	}))
	mux.HandleFunc("POST /backup", s.handleBackup)
	mux.HandleFunc("POST /invite", s.handleInvite)
	a.http = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	if s.cfg.DataDir != "" {
		for name, content := range map[string]string{
			AdminAddrFile:  ln.Addr().String() + "\n",
			AdminTokenFile: a.token + "\n",
		} {
			p := filepath.Join(s.cfg.DataDir, name)
			err := store.WriteFileAtomic(p, 0o600, func(w io.Writer) error {
				_, err := w.Write([]byte(content))
				return err
			})
			if err != nil {
				ln.Close()
				return fmt.Errorf("server: writing %s: %w", p, err)
			}
			a.files = append(a.files, p)
		}
	}
	s.admin = a
	return nil
}

// AdminAddr returns the admin listener's address, nil without one.
func (s *Server) AdminAddr() net.Addr {
	if s.admin == nil {
		return nil
	}
	return s.admin.ln.Addr()
}

// serveAdmin serves the admin listener until stopAdmin.
func (s *Server) serveAdmin() {
	if s.admin == nil {
		return
	}
	s.log.Info("admin listener", "addr", s.admin.ln.Addr().String())
	go func() {
		if err := s.admin.http.Serve(s.admin.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin listener failed", "err", err)
		}
	}()
}

// stopAdmin ends the admin listener, letting requests in progress (a
// backup) finish for a while, and removes its files.
func (s *Server) stopAdmin() {
	a := s.admin
	if a == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := a.http.Shutdown(ctx); err != nil {
		a.http.Close()
	}
	a.ln.Close()
	for _, p := range a.files {
		os.Remove(p)
	}
}

// localStore returns the open store, or nil before Serve opened it.
func (s *Server) localStore() *store.LocalStore {
	return s.live.Load()
}

// Ready is closed once Serve has opened the store and accepts
// connections.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// handleReady answers 200 once the node accepts connections and its
// store takes a commit, 503 otherwise.
func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	var reason string
	switch {
	case closing:
		reason = "shutting down"
	case !s.accepting.Load():
		reason = "not accepting connections yet"
	default:
		if err := s.probeStore(); err != nil {
			reason = "store not writable: " + err.Error()
		}
	}
	if reason != "" {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "not ready:", reason)
		return
	}
	fmt.Fprintln(w, "ready")
}

// probeStore commits an empty transaction (which writes and fsyncs the
// meta page), at most once a second however often it is asked.
func (s *Server) probeStore() error {
	a := s.admin
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	if a.probeOnce && now.Sub(a.probeAt) < time.Second {
		return a.probeErr
	}
	ls := s.localStore()
	if ls == nil {
		return errors.New("store not open")
	}
	done := make(chan error, 1)
	go func() { done <- ls.DB().Update(func(*store.Tx) error { return nil }) }()
	var err error
	select {
	case err = <-done:
	case <-time.After(5 * time.Second):
		err = errors.New("a commit took longer than 5s")
	}
	a.probeAt, a.probeErr, a.probeOnce = now, err, true
	return err
}

// authorized checks the bearer token of an operator's request.
func (s *Server) authorized(w http.ResponseWriter, r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(s.admin.token)) != 1 {
		http.Error(w, "this needs the token in the data directory's "+AdminTokenFile, http.StatusUnauthorized)
		return false
	}
	return true
}

// handleInvite mints an invitation token (?ttl=DURATION, default 7 days).
func (s *Server) handleInvite(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(w, r) {
		return
	}
	ttl := 7 * 24 * time.Hour
	if v := r.URL.Query().Get("ttl"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			http.Error(w, "ttl must be a positive duration", http.StatusBadRequest)
			return
		}
		ttl = d
	}
	tok, err := s.MintInvite(r.Context(), ttl)
	if err != nil {
		s.log.Error("minting an invitation failed", "err", err)
		http.Error(w, "minting an invitation failed", http.StatusInternalServerError)
		return
	}
	s.log.Info("invitation minted", "ttl", ttl)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprintln(w, tok)
}

// handleBackup streams a backup of the live store.
func (s *Server) handleBackup(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(w, r) {
		return
	}
	ls := s.localStore()
	if ls == nil {
		http.Error(w, "store not open", http.StatusServiceUnavailable)
		return
	}
	files, err := s.IdentityFiles()
	if err != nil {
		s.log.Error("backup: reading the identity", "err", err)
		http.Error(w, "reading the node's identity failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	start := time.Now()
	h, err := ls.DB().WriteBackup(w, s.cfg.Version, files, s.cfg.Now())
	if err != nil {
		// The status is sent already; the client sees a missing or
		// wrong checksum.
		s.log.Error("backup failed", "err", err)
		return
	}
	s.log.Info("backup written", "db_bytes", h.DBBytes, "duration", time.Since(start))
}

// IdentityFiles returns the self-signed identity files of the data
// directory (none when the node uses --tls-cert), for backups.
func (s *Server) IdentityFiles() (map[string][]byte, error) {
	return IdentityFiles(s.cfg.DataDir, s.cfg.TLSCertFile != "")
}

// IdentityFiles reads the node's identity files from dataDir; external
// says the node uses a CA-issued certificate kept elsewhere.
func IdentityFiles(dataDir string, external bool) (map[string][]byte, error) {
	files := map[string][]byte{}
	if external || dataDir == "" {
		return files, nil
	}
	for _, name := range IdentityFileNames() {
		b, err := readBounded(filepath.Join(dataDir, name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		files[name] = b
	}
	return files, nil
}

// IdentityFileNames are the names IdentityFiles may return; a restore
// writes only these.
// The next key is never among them: it is kept apart.
func IdentityFileNames() []string { return []string{certFileName, keyFileName, retiredFileName} }

// slogPrinter sends promhttp's errors to the node's log.
type slogPrinter struct{ s *Server }

func (p slogPrinter) Println(v ...any) { p.s.log.Warn("metrics: " + fmt.Sprint(v...)) }
