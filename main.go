// Command qpchat is an end-to-end encrypted group chat in one binary:
// `qpchat serve` runs a node, `qpchat client ...` is the user's side.
//
// Every flag also reads a QPCHAT_* environment variable (--server reads
// QPCHAT_SERVER, --state-dir QPCHAT_STATE_DIR, ...); a flag on the
// command line wins over the variable.
package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/alecthomas/kong"
	"golang.org/x/term"

	"qpchat/node/server"
	"qpchat/rpc"
)

// version and commit are set at link time
// (-ldflags "-X main.version=... -X main.commit=...").
var (
	version = "0.1.0-dev"
	commit  = ""
)

// Globals are the flags every command takes.
type Globals struct {
	LogFormat string `enum:"text,json" default:"text" help:"Log format: text or json."`
	LogLevel  string `enum:"debug,info,warn,error" default:"info" help:"Least severe log level shown: debug, info, warn or error."`

	stdout, stderr io.Writer
	// interactive: stderr is a terminal, so progress notes ("connecting
	// to …") may be shown there.
	interactive bool
}

func (g *Globals) logger() *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(g.LogLevel)) // kong checked the enum
	opts := &slog.HandlerOptions{Level: lvl}
	if g.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(g.stderr, opts))
	}
	return slog.New(slog.NewTextHandler(g.stderr, opts))
}

// CLI is the command tree.
type CLI struct {
	Globals

	Serve   ServeCmd   `cmd:"" help:"Run a qpchat node."`
	Client  ClientCmd  `cmd:"" help:"Talk to a qpchat node."`
	Version VersionCmd `cmd:"" help:"Print the version, commit and Go version (also: qpchat --version)."`
	Bench   BenchCmd   `cmd:"" help:"Measure a running node: throughput and latency of send, fetchWait and ack."`

	Completion CompletionCmd `cmd:"" help:"Print a shell completion script: bash, zsh or fish (cmd_completion.go)."`
	Complete   CompleteCmd   `cmd:"" name:"__complete" hidden:"" help:"Answer the completion scripts (internal)."`
}

// ServeCmd runs a node until SIGINT or SIGTERM.
type ServeCmd struct {
	Listen          string        `default:":7000" placeholder:"ADDR" help:"UDP address to listen on (QUIC)."`
	Data            string        `type:"path" default:"~/.local/share/qpchat-server" placeholder:"DIR" help:"Data directory (created with mode 0700); holds the node's TLS identity and store; default $XDG_DATA_HOME/qpchat-server or ~/.local/share/qpchat-server."`
	TLSCert         string        `name:"tls-cert" type:"path" placeholder:"FILE" help:"PEM certificate (chain) to use instead of the self-signed identity; clients verify it against a CA."`
	TLSKey          string        `name:"tls-key" type:"path" placeholder:"FILE" help:"PEM private key of --tls-cert."`
	ShutdownTimeout time.Duration `default:"10s" help:"How long to wait for calls in flight when stopping."`

	ServeLimitFlags   `embed:""`
	ServeOps          `embed:""` // admin listener, config; backup, restore, ... (cmd_serve_ops.go)
	ServeWebFlags     `embed:""` // web listener (cmd_serve_web.go)
	ServeClusterFlags `embed:""` // cluster store on NATS JetStream (cmd_serve_cluster.go)
	ServeProfileFlags `embed:""` // --cpu-profile (cmd_serve_profile.go)

	ClusterInit ServeClusterInitCmd `cmd:"" name:"cluster-init" help:"Make the files every node of a cluster shares (store key, the identity clients pin, route key and password) in a new directory."`
}

// Run starts the node and serves until a signal arrives.
func (c *ServeCmd) Run(g *Globals) error {
	if done, err := c.opsDone(g); done { // serve subcommands, --print-config (cmd_serve_ops.go)
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c.Data = xdgDataDir(c.Data, "qpchat-server")
	stopProfile, err := c.startProfile()
	if err != nil {
		return err
	}
	defer stopProfile()
	cfg := server.Config{
		Listen:          c.Listen,
		DataDir:         c.Data,
		TLSCertFile:     c.TLSCert,
		TLSKeyFile:      c.TLSKey,
		Version:         version,
		Logger:          g.logger(),
		ShutdownTimeout: c.ShutdownTimeout,
	}
	if err := c.ServeLimitFlags.apply(&cfg); err != nil {
		return err
	}
	if err := c.applyOps(&cfg); err != nil {
		return err
	}
	if err := c.applyWeb(&cfg); err != nil {
		return err
	}
	if c.clustered() {
		if c.ClusterFiles != "" {
			copied, err := copySharedFiles(c.Data, c.ClusterFiles)
			if err != nil {
				return err
			}
			if len(copied) > 0 {
				fmt.Fprintf(g.stdout, "copied %s from %s\n", strings.Join(copied, ", "), c.ClusterFiles)
			}
		}
		cs, stopCluster, err := c.startCluster(ctx, c.Data, cfg.Logger)
		if err != nil {
			return err
		}
		defer stopCluster()
		if err := seedRestore(ctx, cs.log, c.Data, g.stdout); err != nil {
			return err
		}
		cfg.StoreLog, cfg.RateStore, cfg.Cluster = cs.log, cs.rates, cs
	}
	srv, err := server.New(cfg)
	if err != nil {
		return err
	}
	if srv.CreatedIdentity() {
		fmt.Fprintf(g.stdout, "created a new server identity in %s\n", c.Data)
	} else {
		fmt.Fprintf(g.stdout, "data directory %s\n", c.Data)
	}
	fmt.Fprintf(g.stdout, "listening on %s\n", srv.Addr())
	fmt.Fprintf(g.stdout, "fingerprint %s\n", srv.Fingerprint())
	if a := srv.WebAddr(); a != nil {
		scheme := "https"
		if c.WebTLSCert == "" && c.ACMEDomain == "" {
			scheme = "http"
		}
		fmt.Fprintf(g.stdout, "web app on %s://%s/\n", scheme, a)
	}
	return srv.Serve(ctx)
}

// ClientFlags are the flags of every client command; ClientCmd binds
// them so each subcommand's Run can take a *ClientFlags.
type ClientFlags struct {
	Server            string        `default:"127.0.0.1:7000" placeholder:"HOST:PORT[,...]" help:"Address of the node; for a cluster, its nodes' addresses separated by commas: the first that answers is used, the others when it fails, all held to one pin."`
	StateDir          string        `type:"path" default:"~/.local/share/qpchat" placeholder:"DIR" help:"Client state directory: each profile's encrypted NAME.state (account, device keys, groups, pinned server and user keys, message history) and ping's server-pins.json; default $XDG_DATA_HOME/qpchat or ~/.local/share/qpchat."`
	ServerFingerprint string        `placeholder:"sha256:HEX" help:"Expected server key fingerprint; pins it (the only way to replace a pin)."`
	CA                string        `name:"ca" type:"path" placeholder:"FILE" help:"PEM CA certificates to verify a CA-issued server certificate with, instead of pinning."`
	Timeout           time.Duration `default:"10s" help:"How long to wait for the node to answer."`
	ConnectTimeout    time.Duration `default:"3s" help:"How long to wait for the node's first answer when connecting (at most --timeout); a node that is down fails this fast."`
}

// ClientCmd groups the client subcommands.
type ClientCmd struct {
	ClientFlags `embed:""`

	Ping PingCmd `cmd:"" help:"Check that the node answers, and print the round trip time."`

	ClientProfile ProfileFlags     `embed:""`
	RegisterUser  RegisterUserCmd  `cmd:"" help:"Create an account (asks for a new password; needs the server fingerprint)."`
	Login         LoginCmd         `cmd:"" help:"Log in: check the password and bind this profile to the account."`
	Logout        LogoutCmd        `cmd:"" help:"Revoke this device at the node and delete this profile's state."`
	RegisterState RegisterStateCmd `cmd:"" help:"Set up this profile's device: key, certificate, KeyPackages; prints its fingerprint."`
	Devices       DevicesCmd       `cmd:"" help:"List your devices; new ones stay pending, in no group, until approve-device."`
	RevokeDevice  RevokeDeviceCmd  `cmd:"" help:"Revoke one of your other devices and remove it from every group."`
	ApproveDevice ApproveDeviceCmd `cmd:"" help:"Approve one of your devices (as devices lists it): add it to your groups; your devices that trust this one follow."`
	FetchKey      FetchKeyCmd      `cmd:"" help:"Fetch a user's key and devices, pinning the key on first contact; prints fingerprints."`
	Verify        VerifyCmd        `cmd:"" help:"Show the safety number with a user; --accept marks them verified (also after a key change)."`
	CreateGroup   CreateGroupCmd   `cmd:"" help:"Create a group."`
	DM            DMCmd            `cmd:"" name:"dm" help:"Send a direct message (a two-party group made on first use)."`
	Invite        InviteCmd        `cmd:"" help:"Add users (every device of each) to a group."`
	Join          JoinCmd          `cmd:"" help:"Process queued invitations and group changes, showing who invited you where."`
	Send          SendCmd          `cmd:"" help:"Send a message to a group (or --all groups); the text may come from stdin."`
	Recv          RecvCmd          `cmd:"" help:"Print new messages with sender and group; files are saved to the download directory."`
	SendFile      SendFileCmd      `cmd:"" help:"Send a file to a group (encrypted here; the node keeps it for --file-ttl)."`
	Download      DownloadCmd      `cmd:"" help:"Save a file received earlier (the newest of a group, or by name) again."`
	Chat          ChatCmd          `cmd:"" help:"Chat in a group: type lines to send, see messages arrive live; survives node restarts (reconnects, sends what was typed meanwhile)."`
	Daemon        DaemonCmd        `cmd:"" help:"Hold this profile and one connection to the node, and answer JSON-RPC 2.0 on a Unix socket (or --stdio) for bots and scripts; see docs/DAEMON.md."`
	Remove        RemoveCmd        `cmd:"" help:"Remove users from a group."`
	Update        UpdateCmd        `cmd:"" help:"Rotate your keys in a group."`
	Groups        GroupsCmd        `cmd:"" help:"List your groups."`
	Members       MembersCmd       `cmd:"" help:"List a group's members and whether their keys are verified."`
	DemoGroup     DemoGroupCmd     `cmd:"" help:"Run the Alice/Bob/Carol flow, against an in-process node unless --server is given."`

	ClientLeaveCmds   `embed:""` // leave, invites, decline, history (cmd_client_leave.go)
	ClientAccountCmds `embed:""` // change-password, delete-account (cmd_client_account.go)
}

// BeforeApply makes the client flags available to subcommands' Run.
func (c *ClientCmd) BeforeApply(ctx *kong.Context) error {
	ctx.Bind(&c.ClientFlags)
	return nil
}

// dial connects to the node as the flags say, keeping pins in
// server-pins.json in the state directory (which follows XDG_DATA_HOME
// like every client command's, see stateDir).
func (f *ClientFlags) dial(ctx context.Context, g *Globals) (*rpc.Client, error) {
	opts := rpc.DialOptions{
		Fingerprint:      f.ServerFingerprint,
		Pins:             rpc.NewFilePinStore(stateDir(f.StateDir)),
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
	return dialNode(ctx, g, f.Server, opts)
}

// connectTimeout bounds the wait for the node's first answer (the QUIC
// handshake): --connect-timeout, at most --timeout.
func (f *ClientFlags) connectTimeout() time.Duration {
	if f.ConnectTimeout > 0 && f.ConnectTimeout < f.Timeout {
		return f.ConnectTimeout
	}
	return f.Timeout
}

// dialNode dials, saying so on a terminal while it waits (the note is
// erased once connected). QUIC runs over UDP, so a node that is down
// shows only as silence (ICMP errors are not trusted: anyone can forge
// them); the handshake timeout ends the wait.
//
// addr may list several addresses of one service (the nodes of a
// cluster, which share their identity), comma-separated: they are tried
// in order and the first that answers is used; a command that loses its
// connection starts again from the first, except a long-lived one (chat,
// recv --follow, the daemon: liveClient), which tries the node after the
// one it lost first, so that it leaves a node that died or has no quorum
// without waiting on it (serverRotation). All of them are held to one
// pin, stored under the whole list, so any node of the cluster must
// present the same key. Only an unreachable node is skipped: a key that
// does not match the pin stops the command (exit 4) as for one address.
func dialNode(ctx context.Context, g *Globals, addr string, opts rpc.DialOptions) (*rpc.Client, error) {
	addrs, err := splitServers(addr)
	if err != nil {
		return nil, err
	}
	if len(addrs) == 1 {
		return dialOne(ctx, g, addrs[0], opts)
	}
	list := strings.Join(addrs, ",")
	if opts.Pins != nil {
		opts.Pins = listPins{opts.Pins, list}
	}
	if f := opts.OnFirstUse; f != nil {
		opts.OnFirstUse = func(_, fp string) { f(list, fp) }
	}
	if f := opts.OnSuccession; f != nil {
		opts.OnSuccession = func(_, old, new string) { f(list, old, new) }
	}
	rot, _ := ctx.Value(serverRotationKey{}).(*serverRotation)
	start := 0
	if rot != nil {
		start = int(rot.next.Load() % uint32(len(addrs)))
	}
	var errs []error
	for k := range addrs {
		i := (start + k) % len(addrs)
		a := addrs[i]
		cl, err := dialOne(ctx, g, a, opts)
		if err == nil {
			if rot != nil {
				rot.used.Store(uint32(i))
			}
			return cl, nil
		}
		var ue *unreachableError
		if !errors.As(err, &ue) || ctx.Err() != nil {
			return nil, err
		}
		errs = append(errs, err)
	}
	return nil, &unreachableError{fmt.Errorf("none of the %d nodes answered: %w", len(addrs), errors.Join(errs...))}
}

// serverRotation, in a dial's context, makes dialNode try a --server list
// from the address at index next (modulo its length) and record the one
// it connected to in used.
type serverRotation struct{ next, used atomic.Uint32 }

type serverRotationKey struct{}

// maxServers bounds the addresses of --server.
const maxServers = 16

// splitServers splits a --server value into its addresses.
func splitServers(s string) ([]string, error) {
	parts := strings.Split(s, ",")
	if len(parts) > maxServers {
		return nil, &usageError{fmt.Sprintf("--server lists %d addresses, at most %d", len(parts), maxServers)}
	}
	seen := make(map[string]bool, len(parts))
	out := make([]string, 0, len(parts))
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			return nil, &usageError{fmt.Sprintf("--server %q has an empty address", s)}
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out, nil
}

// pinKey is the name the pin of a --server value is kept under: the
// address, or the normalised list.
func pinKey(server string) string {
	addrs, err := splitServers(server)
	if err != nil {
		return server
	}
	return strings.Join(addrs, ",")
}

// listPins keeps the pin of every address of a --server list under the
// list itself.
type listPins struct {
	rpc.PinStore
	list string
}

func (l listPins) Pin(string) (string, bool, error) { return l.PinStore.Pin(l.list) }
func (l listPins) SetPin(_, fp string) error        { return l.PinStore.SetPin(l.list, fp) }

// dialOne dials one address, telling an interactive user.
func dialOne(ctx context.Context, g *Globals, addr string, opts rpc.DialOptions) (*rpc.Client, error) {
	if g.interactive {
		fmt.Fprintf(g.stderr, "connecting to %s…", termSafe(addr))
	}
	cl, err := rpc.Dial(ctx, addr, opts)
	if g.interactive {
		if err != nil {
			fmt.Fprintln(g.stderr)
		} else {
			fmt.Fprint(g.stderr, "\r\x1b[K")
		}
	}
	return cl, dialError(err)
}

// PingCmd calls NodeService.ping.
type PingCmd struct {
	Count int `default:"1" help:"Number of pings to send."`
}

// Run pings the node and prints one line per answer.
func (c *PingCmd) Run(g *Globals, f *ClientFlags) error {
	ctx, cancel := context.WithTimeout(context.Background(), f.Timeout+time.Duration(c.Count)*f.Timeout)
	defer cancel()
	cl, err := f.dial(ctx, g)
	if err != nil {
		return err
	}
	defer cl.Close()
	for i := range max(c.Count, 1) {
		start := time.Now()
		nonce := uint64(start.UnixNano())
		fut, release := cl.Node.Ping(ctx, func(p rpc.NodeService_ping_Params) error {
			p.SetNonce(nonce)
			return nil
		})
		res, err := fut.Struct()
		rtt := time.Since(start)
		if err != nil {
			release()
			return fmt.Errorf("ping %s: %w", f.Server, cl.ExplainError(f.Server, err))
		}
		v, _ := res.Version()
		got := res.Nonce()
		release()
		if got != nonce {
			return fmt.Errorf("ping %s: answer carries nonce %d, sent %d", f.Server, got, nonce)
		}
		fmt.Fprintf(g.stdout, "pong from %s seq=%d time=%v server=qpchat/%s key=%s\n", f.Server, i, rtt.Round(time.Microsecond), termSafe(v), cl.Fingerprint)
	}
	return nil
}

// VersionCmd prints build information.
type VersionCmd struct{}

// Run prints the version line.
func (VersionCmd) Run(g *Globals) error {
	c := commit
	if c == "" {
		c = "unknown"
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" {
					c = s.Value
				}
			}
		}
	}
	fmt.Fprintf(g.stdout, "qpchat %s (commit %s, %s %s/%s)\n", version, c, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}

// run parses args, runs the command and returns the exit code. Errors are
// printed once, as one line on stderr.
func run(args []string, stdout, stderr io.Writer) int {
	f, ok := stderr.(*os.File)
	return runWith(args, stdout, stderr, ok && term.IsTerminal(int(f.Fd())))
}

// runWith is run, told whether stderr is a terminal.
func runWith(args []string, stdout, stderr io.Writer, interactive bool) int {
	var cli CLI
	cli.stdout, cli.stderr, cli.interactive = stdout, stderr, interactive
	if len(args) > 0 && args[0] == "--version" {
		args = append([]string{"version"}, args[1:]...) // the usual spelling
	}
	exit := -1
	k, err := kong.New(&cli,
		kong.Name("qpchat"),
		kong.Description("End-to-end encrypted group chat over QUIC and Cap'n Proto, in one binary."),
		kong.DefaultEnvars("QPCHAT"),
		kong.ShortUsageOnError(),
		kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { exit = code }),
		kong.Bind(&cli.Globals),
		configOption(args), // serve --config FILE (cmd_serve_config.go)
	)
	if err != nil {
		fmt.Fprintf(stderr, "qpchat: internal error: %v\n", err)
		return exitError
	}
	ctx, err := k.Parse(args)
	if exit >= 0 { // --help
		return exit
	}
	if err != nil {
		k.FatalIfErrorf(err)
		return exit
	}
	if err := ctx.Run(); err != nil {
		fmt.Fprintf(stderr, "qpchat: %s\n", userMessage(err))
		return exitCode(err)
	}
	return 0
}

// oneLine keeps an error message on one line, with what a terminal
// would interpret escaped (errors may quote names others chose).
func oneLine(err error) string {
	b := []byte(err.Error())
	for i, c := range b {
		if c == '\n' || c == '\r' {
			b[i] = ' '
		}
	}
	return termSafe(string(b))
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
