package main

// `qpchat client daemon`: one process per profile holds the profile's
// state and one reconnecting connection to the node (nc.Live, as chat
// uses), and answers JSON-RPC 2.0 (node/daemon) on a Unix socket or on
// stdin and stdout. The methods are the client commands (cmd_client_ops.go
// makes the objects both print); what arrives from the node comes as
// "receive" notifications. docs/DAEMON.md describes the protocol.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	nc "qpchat/node/client"
	"qpchat/node/daemon"
)

// DaemonCmd runs the JSON-RPC daemon of one profile.
type DaemonCmd struct {
	Socket string `type:"path" placeholder:"PATH" help:"Unix socket to listen on (created with mode 0600; a missing directory is created with mode 0700). Default: $XDG_RUNTIME_DIR/qpchat/PROFILE.sock, or PROFILE.sock in --state-dir when XDG_RUNTIME_DIR is unset. With --stdio, no socket unless this is given."`
	Stdio  bool   `help:"Speak JSON-RPC on stdin and stdout (one JSON object per line); the daemon stops at the end of stdin."`
}

// JSON-RPC error codes of the daemon, one per exit-code class of the
// client commands (cmd_client_errors.go): -32000 minus the exit code. A
// usage error is JSON-RPC's Invalid params.
const (
	rpcCodeFailed      = -32000 - exitError
	rpcCodeAuth        = -32000 - exitAuth
	rpcCodeUnreachable = -32000 - exitUnreachable
	rpcCodeUntrusted   = -32000 - exitUntrusted
	rpcCodeRefused     = -32000 - exitRefused
)

// rpcClasses names the classes in an error's data.
var rpcClasses = map[int]string{
	exitError: "failed", exitAuth: "auth", exitUnreachable: "unreachable",
	exitUntrusted: "untrusted-key", exitRefused: "refused", exitUsage: "usage",
}

// rpcError turns a command's error into a JSON-RPC error object: the
// code of its exit-code class, the message the command would print, and
// data {"class": ..., "exit_code": ...}.
func rpcError(err error) *daemon.Error {
	code := exitCode(err)
	rc := -32000 - code
	if code == exitUsage {
		rc = daemon.CodeInvalidParams
	}
	return &daemon.Error{Code: rc, Message: userMessage(err), Data: map[string]any{"class": rpcClasses[code], "exit_code": code}}
}

// daemonInfo is what a running daemon leaves in the state directory, as
// PROFILE.daemon, so that one-shot commands find it.
type daemonInfo struct {
	Socket string `json:"socket"`
	PID    int    `json:"pid"`
}

// daemonInfoPath is where the daemon of a profile leaves its daemonInfo.
func daemonInfoPath(stateDir, profile string) string {
	return filepath.Join(stateDir, profile+".daemon")
}

// defaultSocket is the socket of a profile's daemon without --socket.
func defaultSocket(stateDir, profile string) string {
	if rt := os.Getenv("XDG_RUNTIME_DIR"); filepath.IsAbs(rt) {
		return filepath.Join(rt, "qpchat", profile+".sock")
	}
	return filepath.Join(stateDir, profile+".sock")
}

// maxSocketPath is the longest path a Unix socket address holds
// (sun_path, with its terminating NUL).
const maxSocketPath = 107

// listenSocket creates the socket: its directory with mode 0700 if
// missing, the socket with mode 0600 (no moment with looser rights: the
// umask is narrowed while it is made). A stale socket file is replaced;
// the caller holds the profile's state, so no live daemon uses it.
func listenSocket(path string) (*net.UnixListener, error) {
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("socket path %s is %d bytes, longer than the %d a Unix socket allows; choose a shorter --socket", path, len(path), maxSocketPath)
	}
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("creating the socket's directory: %w", err)
		}
	} else if err != nil {
		return nil, err
	} else if fi.Mode().Perm()&0o002 != 0 && fi.Mode()&os.ModeSticky == 0 {
		// Anyone could put their own socket in its place.
		return nil, fmt.Errorf("the socket's directory %s is writable by everyone; choose another --socket", dir)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket; not replacing it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("removing the stale socket %s: %w", path, err)
		}
	}
	old := syscall.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// Run starts the daemon and serves until SIGINT or SIGTERM (or the end
// of stdin with --stdio).
func (c *DaemonCmd) Run(g *Globals, f *ClientFlags, p *ProfileFlags) (err error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	lc, err := openLiveClient(g, f, p)
	if err != nil {
		return err
	}
	defer lc.st.Close()
	st, prof, cl := lc.st, lc.prof, lc.cl
	startCtx, cancel := opContext(f)
	lv, err := lc.start(startCtx, g, f)
	cancel()
	if err != nil {
		return err
	}
	d := &daemonState{g: g, f: f, p: p, st: st, lv: lv, cl: cl, user: prof.User, device: nc.Fingerprint(prof.DeviceKey()), wake: make(chan struct{})}
	d.connected.Store(true)
	srv := &daemon.Server{
		Methods: d.methods(),
		ErrorOf: func(err error) *daemon.Error { return rpcError(d.explain(err)) },
		Dropped: func(n int) (string, any) {
			return "receive", map[string]any{"event": "dropped", "count": n,
				"text": fmt.Sprintf("%d notifications were dropped: this connection read too slowly (recv and history still have them)", n)}
		},
		Logger: g.logger(),
	}
	notified := make(chan struct{})
	go func() {
		defer close(notified)
		for e := range lv.Events() {
			r, ok := liveRecord(cl, e)
			if !ok {
				continue
			}
			switch e.State {
			case nc.LiveConnected:
				d.connected.Store(true)
			case nc.LiveReconnecting, nc.LiveStopped:
				d.connected.Store(false)
			}
			if e.Event != nil {
				d.add(r.obj)
			}
			srv.Notify("receive", r.obj)
		}
	}()
	defer func() {
		srv.Close()
		srv.Wait()
		if cerr := lv.Close(); err == nil && cerr != nil {
			err = cerr
		}
		<-notified
	}()

	log := g.logger()
	stdioDone := make(chan struct{})
	if c.Stdio {
		go func() {
			defer close(stdioDone)
			srv.ServeConn(ctx, stdioConn{os.Stdin, g.stdout})
		}()
	}
	var ln *net.UnixListener
	path := ""
	if !c.Stdio || c.Socket != "" {
		path = c.Socket
		if path == "" {
			path = defaultSocket(f.StateDir, p.Profile)
		}
		if ln, err = listenSocket(path); err != nil {
			return err
		}
		ln.SetUnlinkOnClose(true)
		defer ln.Close() // removes the socket file
	}
	// Tell one-shot commands where the daemon is (with --stdio alone,
	// only that it runs).
	info := daemonInfoPath(f.StateDir, p.Profile)
	b, _ := json.Marshal(daemonInfo{Socket: path, PID: os.Getpid()})
	if err := os.WriteFile(info, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", info, err)
	}
	defer os.Remove(info)
	if ln != nil {
		go srv.Serve(ctx, ln)
		log.Info("daemon listening", "profile", p.Profile, "socket", path)
	}
	select {
	case <-ctx.Done():
		log.Info("daemon stopping", "profile", p.Profile)
	case <-stdioDone:
	case <-lv.Done():
	}
	return nil
}

// stdioConn is stdin and stdout as one connection.
type stdioConn struct {
	io.Reader
	io.Writer
}

func (stdioConn) Close() error { return os.Stdin.Close() }

// daemonState is what the methods share.
type daemonState struct {
	g  *Globals
	f  *ClientFlags
	p  *ProfileFlags
	st *nc.State // shared with the Live's client: only for dialing (pins)
	lv *nc.Live
	cl *nc.Client // only through lv.Do, except GroupName

	user, device string // who the daemon is

	connected atomic.Bool

	// The events applied since the last recv (at most maxBacklog of
	// them, holding at most maxBacklogBytes of text).
	mu      sync.Mutex
	backlog []map[string]any
	bytes   int
	dropped int
	wake    chan struct{} // closed when an event is added
}

// maxBacklog and maxBacklogBytes bound the events kept for recv.
const (
	maxBacklog      = 1000
	maxBacklogBytes = 32 << 20
)

// textSize is what an event's texts weigh in the backlog.
func textSize(obj map[string]any) int { return len(str(obj, "text")) + len(str(obj, "text_base64")) }

func (d *daemonState) add(obj map[string]any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for len(d.backlog) > 0 && (len(d.backlog) >= maxBacklog || d.bytes+textSize(obj) > maxBacklogBytes) {
		d.bytes -= textSize(d.backlog[0])
		d.backlog = d.backlog[1:]
		d.dropped++
	}
	d.backlog = append(d.backlog, obj)
	d.bytes += textSize(obj)
	close(d.wake)
	d.wake = make(chan struct{})
}

// take returns the backlog and empties it, waiting up to wait for an
// event when there is none.
func (d *daemonState) take(ctx context.Context, wait time.Duration) []map[string]any {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		d.mu.Lock()
		evs, dropped, wake := d.backlog, d.dropped, d.wake
		if len(evs) > 0 || wait <= 0 {
			d.backlog, d.bytes, d.dropped = nil, 0, 0
			d.mu.Unlock()
			out := []map[string]any{}
			if dropped > 0 {
				out = append(out, map[string]any{"event": "lost", "text": fmt.Sprintf(
					"%d older events were dropped from the daemon's buffer since the last recv (the receive notifications carried them)", dropped)})
			}
			return append(out, evs...)
		}
		d.mu.Unlock()
		select {
		case <-wake:
		case <-timer.C:
			wait = 0
		case <-ctx.Done():
			wait = 0
		}
	}
}

// explain says what a failed call means for a client of the daemon: a
// call that ran out of time while the node is unreachable is an
// unreachable node, not a failure.
func (d *daemonState) explain(err error) error {
	if (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nc.ErrLiveClosed)) && !d.connected.Load() {
		return &unreachableError{fmt.Errorf("the node is unreachable (the daemon keeps reconnecting): %w", err)}
	}
	return err
}

// liveRecord is the record of what a Live reports (printLive prints
// it; the daemon sends its object as a receive notification).
func liveRecord(cl *nc.Client, e nc.LiveEvent) (record, bool) {
	errText := ""
	if e.Err != nil {
		errText = e.Err.Error()
	}
	switch {
	case e.Event != nil:
		return eventRecord(cl, e.Event), true
	case e.State == nc.LiveReconnecting:
		return record{map[string]any{"event": "reconnecting", "state": e.State.String(), "error": errText}, "-- lost the connection to the node; reconnecting…"}, true
	case e.State == nc.LiveConnected:
		return record{map[string]any{"event": "reconnected", "state": e.State.String()}, "-- reconnected"}, true
	case e.State == nc.LiveStopped:
		return record{map[string]any{"event": "disconnected", "state": e.State.String(), "error": errText}, "-- disconnected: " + errText}, true
	case e.Failed != nil:
		return record{map[string]any{"event": "error", "error": errText, "group": e.Failed.Group, "text": e.Failed.Text},
			fmt.Sprintf("could not send %q: %s", e.Failed.Text, errText)}, true
	case e.Err != nil:
		return record{map[string]any{"event": "error", "error": errText}, "-- " + errText}, true
	}
	return record{}, false
}
