package main

// Shared plumbing of the client commands: profile and state, secrets from
// the terminal or the environment, dialing with the pins kept in the
// encrypted state, output as text or JSON lines.

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/alecthomas/kong"
	"golang.org/x/term"

	nc "qpchat/node/client"
	"qpchat/node/proto"
	"qpchat/node/store"
	"qpchat/opaque"
	"qpchat/rpc"
)

// Environment variables holding secrets; never flags.
const (
	envPassword       = "QPCHAT_PASSWORD"
	envPasswordFile   = "QPCHAT_PASSWORD_FILE"
	envPassphrase     = "QPCHAT_PASSPHRASE"
	envPassphraseFile = "QPCHAT_PASSPHRASE_FILE"
)

// Test-only switches. They are environment variables only (no flag maps
// to them), and a command that sees one says so on stderr before doing
// anything, so they never weaken anything silently.
const (
	// envInsecureTest=1 makes new state files use a cheap Argon2id and
	// lets logins accept the node's test key-stretching parameters. It
	// protects nothing.
	envInsecureTest = "QPCHAT_INSECURE_TEST_KDF"
	// envTestHoldCommit=PATH makes the first commit of the command, once
	// prepared and persisted, create PATH.ready and wait (at most a
	// minute) for PATH to exist before it is submitted, so that tests can
	// force two commits on one epoch.
	envTestHoldCommit = "QPCHAT_TEST_HOLD_COMMIT"
	// envTestHoldAt=STEP:PATH makes change-password or delete-account,
	// on reaching STEP, create PATH.ready and wait (at most a minute) for
	// PATH to exist, so that tests can kill the command between two of
	// its steps. Steps: password-changed (the node took the new password,
	// this profile does not hold the new key yet), groups-left (every
	// group left, the account not yet deleted), account-deleted (the
	// node deleted the account, the profile is still there).
	envTestHoldAt = "QPCHAT_TEST_HOLD_AT"
	// testWarning starts the line each active switch prints on stderr.
	testWarning = "qpchat: warning: test-only switch "
)

// maxSecretFile bounds a password or passphrase file.
const maxSecretFile = 4096

// ProfileFlags choose the profile and the output format of the client
// commands.
type ProfileFlags struct {
	Profile string `default:"default" placeholder:"NAME" help:"Profile: one account and device, kept in NAME.state in --state-dir."`
	JSON    bool   `name:"json" help:"Print JSON, one object per line."`
}

// BeforeApply makes the profile flags available to subcommands' Run.
func (p *ProfileFlags) BeforeApply(ctx *kong.Context) error {
	ctx.Bind(p)
	return nil
}

func insecureTest() bool { return os.Getenv(envInsecureTest) == "1" }

// out prints human text or one JSON object per line.
type out struct {
	w     io.Writer
	json  bool
	extra map[string]any // fields added to every JSON object
}

func newOut(g *Globals, p *ProfileFlags) *out { return &out{w: g.stdout, json: p.JSON} }

// emit prints text, or obj as one JSON line.
func (o *out) emit(obj map[string]any, format string, args ...any) {
	if o.json {
		if obj == nil {
			return // text-only remark
		}
		for k, v := range o.extra {
			obj[k] = v
		}
		b, _ := json.Marshal(obj)
		fmt.Fprintf(o.w, "%s\n", b)
		return
	}
	fmt.Fprintf(o.w, format+"\n", args...)
}

// readSecretFile reads a secret from a file, without one trailing newline.
func readSecretFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// Like ssh with its keys: a secret others may read is no secret.
	if fi, err := f.Stat(); err != nil {
		return nil, err
	} else if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%s is readable or writable by group or others (mode %04o); run chmod 600 %s", path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxSecretFile {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxSecretFile)
	}
	b = []byte(strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r"))
	return b, nil
}

// secret reads a secret from fileEnv, valueEnv or the terminal (without
// echo, through /dev/tty so that stdin stays free for messages).
func secret(g *Globals, what, fileEnv, valueEnv string, confirm bool) ([]byte, error) {
	if p := os.Getenv(fileEnv); p != "" {
		b, err := readSecretFile(p)
		if err != nil {
			return nil, fmt.Errorf("reading the %s from %s: %w", what, fileEnv, err)
		}
		return b, nil
	}
	if v, ok := os.LookupEnv(valueEnv); ok {
		return []byte(v), nil
	}
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("no terminal to ask for the %s: set %s (or %s)", what, fileEnv, valueEnv)
	}
	defer tty.Close()
	ask := func(prompt string) ([]byte, error) {
		fmt.Fprintf(tty, "%s: ", prompt)
		b, err := term.ReadPassword(int(tty.Fd()))
		fmt.Fprintln(tty)
		return b, err
	}
	b, err := ask(strings.ToUpper(what[:1]) + what[1:])
	if err != nil {
		return nil, fmt.Errorf("reading the %s: %w", what, err)
	}
	if confirm {
		again, err := ask("Repeat the " + what)
		if err != nil {
			return nil, fmt.Errorf("reading the %s: %w", what, err)
		}
		if string(again) != string(b) {
			return nil, fmt.Errorf("the two %ss differ", what)
		}
	}
	return b, nil
}

// password reads the account password.
func password(g *Globals, confirm bool) ([]byte, error) {
	return secret(g, "password", envPasswordFile, envPassword, confirm)
}

// openState opens the profile's state file. create allows a new one
// (asking for the passphrase twice on a terminal).
func openState(g *Globals, f *ClientFlags, p *ProfileFlags, create bool) (*nc.State, error) {
	st, _, _, err := openStateFile(g, f, p, create)
	return st, err
}

// openAccountState opens or creates the state of register-user and login.
// The returned done closes it; a command calls it deferred with a pointer
// to its error. When the command failed and this invocation created the
// file, done removes the file again, so that a wrong password, an
// unreachable node or a taken name leaves no empty profile behind. A
// file that existed before, or that holds an account, is always kept.
func openAccountState(g *Globals, f *ClientFlags, p *ProfileFlags) (st *nc.State, done func(errp *error), err error) {
	st, path, created, err := openStateFile(g, f, p, true)
	if err != nil {
		return nil, nil, err
	}
	done = func(errp *error) {
		discard := created && *errp != nil
		if discard {
			// Never remove a profile bound to an account (a file
			// another process made between openStateFile's Stat and
			// its open counts as created).
			prof, perr := st.Profile()
			discard = perr == nil && prof.User == ""
		}
		st.Close()
		if !discard {
			return
		}
		if rerr := os.Remove(path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			*errp = fmt.Errorf("%w (removing the new state file failed too: %v)", *errp, rerr)
		}
	}
	return st, done, nil
}

// openStateFile is openState that also returns the file's path and
// whether this call created the file.
func openStateFile(g *Globals, f *ClientFlags, p *ProfileFlags, create bool) (st *nc.State, path string, created bool, err error) {
	if insecureTest() {
		// Every command that logs in opens the state first, so this also
		// announces accountOptions' weaker bounds.
		fmt.Fprintf(g.stderr, "%s%s=1 is set: new state files get a cheap key derivation and logins accept test key-stretching parameters; never use it for real accounts\n", testWarning, envInsecureTest)
	}
	f.StateDir = stateDir(f.StateDir)
	path, err = nc.StatePath(f.StateDir, p.Profile)
	if err != nil {
		return nil, "", false, err
	}
	_, statErr := os.Stat(path)
	exists := statErr == nil
	if !exists && !create {
		return nil, "", false, fmt.Errorf("profile %q has no state in %s (run register-user or login first)", p.Profile, f.StateDir)
	}
	pass, err := secret(g, "state passphrase", envPassphraseFile, envPassphrase, !exists)
	if err != nil {
		return nil, "", false, err
	}
	opts := nc.StateOptions{Path: path, Passphrase: pass, MustExist: !create}
	if insecureTest() {
		opts.KDF = store.KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}
	}
	st, err = nc.OpenState(opts)
	clear(pass)
	if err == nil {
		if err = st.Check(); err != nil {
			st.Close()
		}
	}
	switch {
	case errors.Is(err, store.ErrWrongPassphrase):
		return nil, "", false, &authError{fmt.Errorf("wrong state passphrase for profile %q", p.Profile)}
	case errors.Is(err, store.ErrCorrupt):
		return nil, "", false, fmt.Errorf("the state file of profile %q is damaged or was tampered with (%s)", p.Profile, path)
	case errors.Is(err, store.ErrInUse):
		// The lock is held: a daemon's info file, if any, is its.
		if d := readDaemonInfo(f, p); d != nil {
			return nil, "", false, heldError(p.Profile, d)
		}
		return nil, "", false, fmt.Errorf("profile %q is in use by another qpchat process", p.Profile)
	case err != nil:
		return nil, "", false, err
	}
	return st, path, !exists, nil
}

// stateDir returns dir, except that --state-dir's default follows the XDG
// base directory specification (see xdgDataDir).
func stateDir(dir string) string { return xdgDataDir(dir, "qpchat") }

// xdgDataDir returns dir, except that the default
// ~/.local/share/NAME follows the XDG base directory specification:
// $XDG_DATA_HOME/NAME when that is set (to an absolute path), else
// $HOME/.local/share/NAME. Kong expands the default's "~" from the user
// database, not from $HOME, so the default is recognised in that form.
func xdgDataDir(dir, name string) string {
	if dir != kong.ExpandPath("~/.local/share/"+name) {
		return dir
	}
	if xdg := os.Getenv("XDG_DATA_HOME"); filepath.IsAbs(xdg) {
		return filepath.Join(xdg, name)
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "share", name)
	}
	return dir
}

// clientLimits are the frame limits of every client connection: a fetch
// answer may be as large as proto.MinClientFrameSize (rpc's default of
// 1 MiB would refuse a queue's large messages, and so block it forever).
var clientLimits = rpc.MessageLimits{MaxMessageSize: proto.MinClientFrameSize}

// dialState connects to the node with the pins kept in the state. With
// noTOFU a server that is neither pinned nor given by fingerprint is
// accepted only after the user confirms its fingerprint on a terminal.
func dialState(ctx context.Context, g *Globals, f *ClientFlags, st *nc.State, noTOFU bool) (*rpc.Client, error) {
	return dialStateWith(ctx, g, f, st, noTOFU, nil)
}

// dialStateWith is dialState with tune, if not nil, adjusting the
// options (chat shortens the transport's timeouts).
func dialStateWith(ctx context.Context, g *Globals, f *ClientFlags, st *nc.State, noTOFU bool, tune func(*rpc.DialOptions)) (*rpc.Client, error) {
	opts := rpc.DialOptions{
		Fingerprint:      f.ServerFingerprint,
		Pins:             st,
		HandshakeTimeout: f.connectTimeout(),
		Limits:           clientLimits,
		OnFirstUse: func(server, fp string) {
			fmt.Fprintf(g.stderr, "trusting the key of %s on first use: %s\n", server, fp)
		},
		OnSuccession: func(server, old, new string) { tellSuccession(g, server, old, new) },
	}
	if f.CA != "" {
		pem, err := os.ReadFile(f.CA)
		if err != nil {
			return nil, fmt.Errorf("reading --ca: %w", err)
		}
		opts.RootCAs = x509.NewCertPool()
		if !opts.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca %s holds no PEM certificate", f.CA)
		}
	}
	if tune != nil {
		tune(&opts)
	}
	confirm := false
	if noTOFU && f.ServerFingerprint == "" && f.CA == "" {
		if _, ok, err := st.Pin(pinKey(f.Server)); err != nil {
			return nil, err
		} else if !ok {
			// Dial without remembering, then ask.
			opts.Pins, opts.OnFirstUse, confirm = nil, nil, true
		}
	}
	cl, err := dialNode(ctx, g, f.Server, opts)
	if err != nil {
		return nil, err
	}
	if confirm {
		if err := confirmFingerprint(f.Server, cl.Fingerprint); err != nil {
			cl.Close()
			return nil, err
		}
		if err := st.SetPin(pinKey(f.Server), cl.Fingerprint); err != nil {
			cl.Close()
			return nil, err
		}
	}
	return cl, nil
}

// confirmFingerprint shows a server's fingerprint on the terminal and asks
// the user to confirm it.
func confirmFingerprint(server, fp string) error {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("register-user needs the server's fingerprint: pass --server-fingerprint (the node prints it when it starts)")
	}
	defer tty.Close()
	fmt.Fprintf(tty, "The node %s presents the key\n  %s\nCompare it with the fingerprint the node printed. Type yes to trust it: ", server, fp)
	line, _ := bufio.NewReader(tty).ReadString('\n')
	if strings.TrimSpace(strings.ToLower(line)) != "yes" {
		return errors.New("the server's key was not confirmed")
	}
	return nil
}

// accountOptions are the OPAQUE options of the client.
func accountOptions() nc.AccountOptions {
	if insecureTest() {
		return nc.AccountOptions{Bounds: opaque.TestKSFBounds}
	}
	return nc.AccountOptions{}
}

// conn is a client command's connection: state, node, device session.
type conn struct {
	st    *nc.State
	rc    *rpc.Client
	entry *nc.RPCEntry
	c     *nc.Client
}

func (c *conn) Close() {
	if c.c != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c.c.Flush(ctx) // the next run acknowledges what fails here
		cancel()
	}
	if c.rc != nil {
		c.rc.Close()
	}
	if c.st != nil {
		c.st.Close()
	}
}

// connect opens the state, dials the node and authenticates the device.
func connect(ctx context.Context, g *Globals, f *ClientFlags, p *ProfileFlags) (*conn, error) {
	st, err := openState(g, f, p, false)
	if err != nil {
		return nil, err
	}
	cn := &conn{st: st}
	prof, err := st.Profile()
	if err != nil {
		cn.Close()
		return nil, err
	}
	if prof.Device == nil {
		cn.Close()
		return nil, fmt.Errorf("profile %q has no device yet (run register-state)", p.Profile)
	}
	if prof.Server != "" && f.Server == defaultServer {
		f.Server = prof.Server
	}
	sess, err := cn.authenticate(ctx, g, f, prof)
	if err != nil {
		cn.Close()
		return nil, err
	}
	cfg := nc.Config{State: st, Session: sess}
	if hold := os.Getenv(envTestHoldCommit); hold != "" {
		fmt.Fprintf(g.stderr, "%s%s is set: the first commit waits for %s to exist before it is submitted\n", testWarning, envTestHoldCommit, hold)
		cfg.BeforeSubmit = holdCommit(hold)
	}
	if cn.c, err = nc.New(cfg); err != nil {
		cn.Close()
		return nil, err
	}
	// Follow a password change made on another device (best effort: a
	// failure here leaves the profile as it was, and the command goes on).
	if ok, err := cn.c.SyncOwnKey(ctx); err == nil && ok {
		fmt.Fprintf(g.stderr, "qpchat: your password was changed (on another device, or by a change-password here that was interrupted); this device now holds the new user key %s\n", nc.Fingerprint(cn.c.Profile().UserKey))
	}
	return cn, nil
}

// authenticate dials the node and authenticates the device. With a
// --server list, a node that answers but cannot serve (a cluster node
// without quorum: unavailable) is left for the next address of the list,
// as live clients do; each address is tried once.
func (cn *conn) authenticate(ctx context.Context, g *Globals, f *ClientFlags, prof *nc.Profile) (nc.Session, error) {
	addrs, err := splitServers(f.Server)
	if err != nil {
		return nil, err
	}
	rot := new(serverRotation)
	dctx := context.WithValue(ctx, serverRotationKey{}, rot)
	for tried := 1; ; tried++ {
		if cn.rc, err = dialState(dctx, g, f, cn.st, false); err != nil {
			return nil, err
		}
		cn.entry = &nc.RPCEntry{C: cn.rc}
		sess, err := nc.AuthenticateDevice(ctx, cn.entry, prof)
		if err == nil || proto.CodeOf(err) != proto.CodeUnavailable || tried >= len(addrs) {
			return sess, err
		}
		used := rot.used.Load()
		fmt.Fprintf(g.stderr, "qpchat: %s: %s; trying the next node of --server\n", termSafe(addrs[int(used)%len(addrs)]), userMessage(err))
		cn.rc.Close()
		cn.rc, cn.entry = nil, nil
		rot.next.Store(used + 1)
	}
}

// announceHoldAt warns that envTestHoldAt is set; commands that honour
// it call it first.
func announceHoldAt(g *Globals) {
	if v := os.Getenv(envTestHoldAt); v != "" {
		fmt.Fprintf(g.stderr, "%s%s is set: the command stops at %s\n", testWarning, envTestHoldAt, v)
	}
}

// holdAt waits at step when envTestHoldAt names it.
func holdAt(step string) {
	if name, path, ok := strings.Cut(os.Getenv(envTestHoldAt), ":"); ok && name == step && path != "" {
		holdCommit(path)()
	}
}

// holdCommit returns a BeforeSubmit hook for tests that force two
// commits on one epoch: it creates path+".ready" and waits (at most a
// minute) until path exists, once.
func holdCommit(path string) func() {
	done := false
	return func() {
		if done {
			return
		}
		done = true
		os.WriteFile(path+".ready", nil, 0o600)
		for i := 0; i < 600; i++ {
			if _, err := os.Stat(path); err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// defaultServer is --server's default; a profile remembers the server it
// registered with and uses it instead.
const defaultServer = "127.0.0.1:7000"

func opContext(f *ClientFlags) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 6*f.Timeout+30*time.Second)
}

// hexID formats a group id.
func hexID(b []byte) string { return hex.EncodeToString(b) }

// printEvent prints one history entry (eventObject, eventText).
func printEvent(o *out, c *nc.Client, e *nc.Event) {
	o.emitAll([]record{eventRecord(c, e)})
}

// withConn connects under opContext's deadline, runs fn with the
// connection and closes it afterwards; fn's error is the command's.
func withConn(g *Globals, f *ClientFlags, p *ProfileFlags, fn func(ctx context.Context, cn *conn) error) error {
	ctx, cancel := opContext(f)
	defer cancel()
	cn, err := connect(ctx, g, f, p)
	if err != nil {
		return err
	}
	defer cn.Close()
	return cn.lost(f.Server, fn(ctx, cn))
}

// lost marks err as a lost connection (exit code 3) when the connection
// to the node ended.
func (c *conn) lost(server string, err error) error {
	if err == nil || c.rc == nil {
		return err
	}
	select {
	case <-c.rc.Done():
		return &unreachableError{fmt.Errorf("%w (%v)", err, c.rc.ExplainError(server, err))}
	default:
		return err
	}
}
