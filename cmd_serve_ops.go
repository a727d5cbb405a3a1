package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/alecthomas/kong"

	"qpchat/node/server"
	"qpchat/node/store"
)

// ServeOps are the operator's flags and subcommands of `qpchat serve`:
// the admin listener, and the commands that work on a node's data
// directory (backup, restore, compact, health). The subcommands take the
// flags of `qpchat serve` too (--data, --store-key-file, --admin-listen,
// --config), so they find the node the same way it does.
type ServeOps struct {
	Config      string `type:"path" placeholder:"FILE" help:"TOML configuration file: one key per serve flag (listen = \":7000\"); flags and QPCHAT_* variables override it. Never put secrets in it, only paths to files holding them."`
	PrintConfig bool   `help:"Print the effective configuration (as a --config file, without secrets) and exit."`

	AdminListen      string `placeholder:"ADDR" help:"TCP address of the admin HTTP listener (/healthz, /readyz, /metrics, /backup); off when empty. Loopback only unless --admin-allow-remote."`
	AdminAllowRemote bool   `help:"Let --admin-listen be a non-loopback address (it has no TLS; firewall it)."`

	NextKeyFile string `type:"path" placeholder:"FILE" help:"The node's next key, committed to in its certificate (created on first start; move it offline and give its path to rotate-identity). Default: server-next-key.pem in the data directory."`

	Registration string        `enum:"open,invite,closed" default:"open" help:"Who may create an account: open, invite (with a token from serve invite-token) or closed."`
	DeviceExpiry time.Duration `default:"2160h" help:"Drop the queue of a device that has not fetched for this long and mark it stale (it must be re-added to its groups); 0: never."`
	Retention    time.Duration `default:"2160h" help:"Longest time an unacknowledged message is kept (checked hourly); the device must then be re-added; 0: forever."`

	Backup  ServeBackupCmd  `cmd:"" help:"Write a backup of a node's data (running: through its admin listener; stopped: from the file). With the cluster flags: of the cluster's store, from one running node."`
	Restore ServeRestoreCmd `cmd:"" help:"Check a backup and install it as a stopped node's data. With the cluster flags: as this node's copy of the backup that a fresh cluster starts from."`
	Compact ServeCompactCmd `cmd:"" help:"Rewrite a stopped node's database without its free pages; prints the sizes."`
	Health  ServeHealthCmd  `cmd:"" help:"Exit 0 if the node's /readyz answers 200 (for container health checks)."`
	Invite  ServeInviteCmd  `cmd:"" name:"invite-token" help:"Mint a single-use registration token (for --registration invite); prints it."`
	Rekey   ServeRekeyCmd   `cmd:"" help:"Change the passphrase or key file protecting a stopped node's store, in place (crash-safe)."`
	Rotate  ServeRotateCmd  `cmd:"" name:"rotate-identity" help:"Switch a stopped node to its committed next key (--next-key-file) and commit to a fresh one; pinned clients follow."`

	ranSub bool
	kctx   *kong.Context
}

// AfterApply keeps the parse context for --print-config.
func (c *ServeCmd) AfterApply(kctx *kong.Context) error {
	c.kctx = kctx
	return nil
}

// opsDone runs in ServeCmd.Run before a node starts: it reports done
// when a subcommand already did the work (kong runs every Run up the
// command path, the selected subcommand's first) or --print-config
// printed the configuration.
func (c *ServeCmd) opsDone(g *Globals) (bool, error) {
	if c.ranSub {
		return true, nil
	}
	if c.PrintConfig {
		return true, printConfig(g.stdout, c.kctx)
	}
	return false, nil
}

// applyOps copies the operator flags into cfg.
func (o *ServeOps) applyOps(cfg *server.Config) error {
	cfg.Admin = server.AdminConfig{Listen: o.AdminListen, AllowRemote: o.AdminAllowRemote}
	cfg.Identity = server.IdentityConfig{NextKeyFile: o.NextKeyFile}
	if o.DeviceExpiry < 0 || o.Retention < 0 {
		return fmt.Errorf("--device-expiry and --retention must not be negative (0 turns them off)")
	}
	never := func(d time.Duration) time.Duration {
		if d == 0 {
			return -1
		}
		return d
	}
	cfg.Policy = server.PolicyConfig{Registration: o.Registration, DeviceExpiry: never(o.DeviceExpiry), Retention: never(o.Retention)}
	if notifySocket() != "" {
		log := cfg.Logger
		notify := func(state string) func() {
			return func() {
				if err := sdNotify(state); err != nil && log != nil {
					log.Warn("sd_notify failed", "state", state, "err", err)
				}
			}
		}
		cfg.Admin.Ready, cfg.Admin.Stopping = notify("READY=1"), notify("STOPPING=1")
	}
	if o.AdminListen != "" {
		return server.CheckAdminAddr(o.AdminListen, o.AdminAllowRemote)
	}
	return nil
}

// nodeConfig is the server configuration the serve flags describe, for
// the subcommands (which do not start a node).
func (c *ServeCmd) nodeConfig() (server.Config, error) {
	c.ranSub = true
	cfg := server.Config{
		DataDir:     c.Data,
		TLSCertFile: c.TLSCert,
		TLSKeyFile:  c.TLSKey,
		Version:     version,
	}
	if err := c.ServeLimitFlags.apply(&cfg); err != nil {
		return cfg, err
	}
	if c.clustered() && c.Data != "" {
		// A cluster node's store is its replica of the cluster's log.
		cfg.StorePath = filepath.Join(c.Data, replicaFile)
	}
	return cfg, c.applyOps(&cfg)
}

// adminTarget returns where the node's admin listener is: --admin-listen
// if given (an unspecified host means this machine), else the address the
// running node wrote into its data directory.
func (c *ServeCmd) adminTarget() (string, error) {
	if c.AdminListen != "" {
		host, port, err := net.SplitHostPort(c.AdminListen)
		if err != nil {
			return "", fmt.Errorf("--admin-listen %q: %w", c.AdminListen, err)
		}
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			host = "127.0.0.1"
		}
		return net.JoinHostPort(host, port), nil
	}
	addr, _, err := server.ReadAdminFiles(c.Data)
	if err != nil {
		return "", fmt.Errorf("no admin listener known: give --admin-listen, or run the node with it (%w)", err)
	}
	return addr, nil
}

// ServeBackupCmd writes a backup.
type ServeBackupCmd struct {
	Out string `required:"" placeholder:"FILE" help:"Where to write the backup (created with mode 0600; - for stdout)."`
}

// Run backs up the node of the serve flags.
func (b *ServeBackupCmd) Run(g *Globals, c *ServeCmd) error {
	cfg, err := c.nodeConfig()
	if err != nil {
		return err
	}
	path, _ := server.StoreOptions(cfg)
	inUse, err := store.InUse(path, 200*time.Millisecond)
	if err != nil {
		return err
	}
	if !inUse && c.clustered() {
		return errors.New("back up a running cluster node, through its admin listener: a stopped node's replica may be behind the cluster")
	}
	write := func(w io.Writer) error {
		if !inUse {
			h, err := server.OfflineBackup(cfg, w)
			if err == nil {
				fmt.Fprintf(g.stderr, "backed up the stopped node: %d database bytes, schema %d\n", h.DBBytes, h.SchemaVersion)
			}
			return err
		}
		addr, err := c.adminTarget()
		if err != nil {
			return fmt.Errorf("the node is running; %w", err)
		}
		_, token, err := server.ReadAdminFiles(c.Data)
		if err != nil {
			return fmt.Errorf("the node is running but its admin token is unreadable: %w", err)
		}
		// Check the backup while writing it, so a broken transfer is
		// an error here and not at restore time.
		pr, pw := io.Pipe()
		type result struct {
			h   store.BackupHeader
			err error
		}
		checked := make(chan result, 1)
		go func() {
			h, _, err := store.ReadBackup(pr, io.Discard)
			io.Copy(io.Discard, pr)
			checked <- result{h, err}
		}()
		ctx, stop := context.WithTimeout(context.Background(), 24*time.Hour)
		defer stop()
		err = server.FetchBackup(ctx, addr, token, io.MultiWriter(w, pw))
		pw.CloseWithError(err)
		r := <-checked
		if err != nil {
			return err
		}
		if r.err != nil {
			return fmt.Errorf("the backup received does not verify: %w", r.err)
		}
		if r.h.ClusterEntry != 0 {
			fmt.Fprintf(g.stderr, "backed up the running cluster node: %d database bytes, schema %d, the cluster's store as of log entry %d\n", r.h.DBBytes, r.h.SchemaVersion, r.h.ClusterEntry)
			return nil
		}
		fmt.Fprintf(g.stderr, "backed up the running node: %d database bytes, schema %d\n", r.h.DBBytes, r.h.SchemaVersion)
		return nil
	}
	if b.Out == "-" {
		return write(g.stdout)
	}
	if _, err := os.Stat(b.Out); err == nil {
		return fmt.Errorf("%s exists; give a new file name", b.Out)
	}
	return store.WriteFileAtomic(b.Out, 0o600, write)
}

// ServeRestoreCmd installs a backup.
type ServeRestoreCmd struct {
	In    string `required:"" type:"existingfile" placeholder:"FILE" help:"The backup file to restore."`
	Force bool   `help:"Replace an existing database (kept beside it as node.db.before-restore-TIME)."`
}

// Run restores the backup into the data directory of the serve flags.
func (r *ServeRestoreCmd) Run(g *Globals, c *ServeCmd) error {
	cfg, err := c.nodeConfig()
	if err != nil {
		return err
	}
	if c.clustered() {
		// The node writes the backup into the fresh cluster's log when
		// it starts (seedRestore).
		if _, err := os.Stat(cfg.StorePath); err == nil {
			return fmt.Errorf("%s holds a replica already: a cluster is restored into a fresh cluster (new, empty data directories on every node)", cfg.StorePath)
		}
		cfg.StorePath = filepath.Join(c.Data, clusterRestoreFile)
	}
	f, err := os.Open(r.In)
	if err != nil {
		return err
	}
	defer f.Close()
	res, err := server.Restore(cfg, f, r.Force)
	if err != nil {
		return err
	}
	if c.clustered() {
		fmt.Fprintf(g.stdout, "the backup of %s (qpchat %s, schema %d) waits in %s; start this node with its cluster flags to write it into the fresh cluster's log\n",
			res.Header.Created.Format(time.RFC3339), res.Header.Version, res.Header.SchemaVersion, cfg.StorePath)
		return nil
	}
	fmt.Fprintf(g.stdout, "restored a backup of %s (qpchat %s, schema %d) into %s\n",
		res.Header.Created.Format(time.RFC3339), res.Header.Version, res.Header.SchemaVersion, c.Data)
	for _, p := range res.Files {
		fmt.Fprintf(g.stdout, "restored %s\n", filepath.Base(p))
	}
	if res.Moved != "" {
		fmt.Fprintf(g.stdout, "the database that was there is now %s\n", res.Moved)
	}
	return nil
}

// ServeCompactCmd compacts the database of a stopped node.
type ServeCompactCmd struct{}

// Run compacts into a new file and renames it over the old one.
func (ServeCompactCmd) Run(g *Globals, c *ServeCmd) error {
	cfg, err := c.nodeConfig()
	if err != nil {
		return err
	}
	path, _ := server.StoreOptions(cfg)
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("no node database: %w", err)
	}
	tmp := path + ".compacting"
	os.Remove(tmp) // left by a compaction that was killed
	before, after, err := store.Compact(tmp, path)
	if err != nil {
		os.Remove(tmp)
		if errors.Is(err, store.ErrInUse) {
			return fmt.Errorf("the node is running; stop it first (compaction is offline): %w", err)
		}
		return err
	}
	if err := store.CheckFile(tmp); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if err := store.SyncDir(filepath.Dir(path)); err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "compacted %s: %d bytes before, %d after\n", path, before, after)
	return nil
}

// ServeHealthCmd checks /readyz.
type ServeHealthCmd struct {
	Timeout time.Duration `name:"health-timeout" default:"5s" help:"How long to wait for the answer."`
}

// Run asks the admin listener whether the node is ready.
func (h *ServeHealthCmd) Run(g *Globals, c *ServeCmd) error {
	c.ranSub = true
	addr, err := c.adminTarget()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("node not healthy: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	msg := strings.TrimSpace(string(body))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("node not ready: %s: %s", resp.Status, msg)
	}
	fmt.Fprintln(g.stdout, msg)
	return nil
}

// ServeInviteCmd mints an invitation token.
type ServeInviteCmd struct {
	InviteTTL time.Duration `name:"invite-ttl" default:"168h" help:"How long the token stays valid."`
}

// Run mints the token through the running node's admin listener, or in
// the stopped node's store, and prints it.
func (i *ServeInviteCmd) Run(g *Globals, c *ServeCmd) error {
	cfg, err := c.nodeConfig()
	if err != nil {
		return err
	}
	if i.InviteTTL <= 0 {
		return fmt.Errorf("--invite-ttl must be positive, got %v", i.InviteTTL)
	}
	path, opts := server.StoreOptions(cfg)
	inUse, err := store.InUse(path, 200*time.Millisecond)
	if err != nil {
		return err
	}
	var tok string
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if inUse {
		addr, err := c.adminTarget()
		if err != nil {
			return fmt.Errorf("the node is running; %w", err)
		}
		_, secret, err := server.ReadAdminFiles(c.Data)
		if err != nil {
			return fmt.Errorf("the node is running but its admin token is unreadable: %w", err)
		}
		if tok, err = server.RequestInvite(ctx, addr, secret, i.InviteTTL); err != nil {
			return err
		}
	} else {
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("no node database (start the node once first): %w", err)
		}
		ls, err := store.OpenServer(path, opts, store.Limits{})
		if err != nil {
			return err
		}
		tok, err = server.MintInvite(ctx, ls, time.Now(), i.InviteTTL)
		if cerr := ls.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	fmt.Fprintln(g.stdout, tok)
	fmt.Fprintf(g.stderr, "single-use registration token, valid for %v: qpchat client register-user --token TOKEN NAME\n", i.InviteTTL)
	return nil
}

// ServeRotateCmd rotates the node's identity to its committed successor.
type ServeRotateCmd struct{}

// Run rotates the identity of the stopped node of the serve flags.
func (ServeRotateCmd) Run(g *Globals, c *ServeCmd) error {
	cfg, err := c.nodeConfig()
	if err != nil {
		return err
	}
	if cfg.TLSCertFile != "" {
		return fmt.Errorf("the node uses --tls-cert: a CA-issued certificate is replaced by the CA, not rotated")
	}
	path, _ := server.StoreOptions(cfg)
	if inUse, err := store.InUse(path, 200*time.Millisecond); err != nil {
		return err
	} else if inUse {
		return fmt.Errorf("the node is running; stop it, rotate, start it again")
	}
	r, err := server.RotateIdentity(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "retired key  %s\nnew key      %s\nnext key     %s (written to %s: move it offline)\n",
		r.Old, r.New, r.Next, server.NextKeyPath(cfg))
	return nil
}

// tellSuccession tells the user, once, that a server's pinned key was
// replaced by the successor it had committed to.
func tellSuccession(g *Globals, server, old, new string) {
	fmt.Fprintf(g.stderr, "the node %s moved to its next key %s, as its previous key %s had committed to; trusting it from now on\n", server, new, old)
}

// newStorePassphraseEnv holds the new passphrase of serve rekey; never a flag.
const newStorePassphraseEnv = "QPCHAT_NEW_STORE_PASSPHRASE"

// ServeRekeyCmd changes what protects the store.
type ServeRekeyCmd struct {
	NewStoreKeyFile string `type:"path" placeholder:"FILE" help:"New key file of the store (created with mode 0600 if missing). Or set QPCHAT_NEW_STORE_PASSPHRASE to protect it with a passphrase instead."`
}

// Run rekeys the store of the stopped node of the serve flags.
func (k *ServeRekeyCmd) Run(g *Globals, c *ServeCmd) error {
	cfg, err := c.nodeConfig()
	if err != nil {
		return err
	}
	path, old := server.StoreOptions(cfg)
	var nw store.Options
	p, havePass := os.LookupEnv(newStorePassphraseEnv)
	switch {
	case havePass && k.NewStoreKeyFile != "":
		return fmt.Errorf("give either --new-store-key-file or %s, not both", newStorePassphraseEnv)
	case havePass && p == "":
		return fmt.Errorf("%s is set but empty", newStorePassphraseEnv)
	case havePass:
		nw.Passphrase = []byte(p)
	case k.NewStoreKeyFile != "":
		nw.KeyFile = k.NewStoreKeyFile
	default:
		return fmt.Errorf("give the new key: --new-store-key-file FILE or %s", newStorePassphraseEnv)
	}
	if err := store.Rekey(path, old, nw); err != nil {
		if errors.Is(err, store.ErrInUse) {
			return fmt.Errorf("the node is running; stop it first: %w", err)
		}
		return err
	}
	if nw.KeyFile != "" {
		fmt.Fprintf(g.stdout, "the store is now protected by %s; set store-key-file to it (and unset %s) before starting the node\n", nw.KeyFile, storePassphraseEnv)
	} else {
		fmt.Fprintf(g.stdout, "the store is now protected by the new passphrase; start the node with it in %s\n", storePassphraseEnv)
	}
	return nil
}
