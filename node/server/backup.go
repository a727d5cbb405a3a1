package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"qpchat/node/store"
)

// Backup and restore of a node's data directory (store.WriteBackup has
// the file format). A running node is backed up through its admin
// listener (POST /backup), since bbolt's lock keeps a second process from
// opening the file even read-only; a stopped one straight from its file.

// maxAdminFile bounds admin.addr and admin.token.
const maxAdminFile = 4 << 10

// ReadAdminFiles returns the admin address and token a running node
// wrote into dataDir.
func ReadAdminFiles(dataDir string) (addr, token string, err error) {
	read := func(name string) (string, error) {
		f, err := os.Open(filepath.Join(dataDir, name))
		if err != nil {
			return "", err
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, maxAdminFile))
		return strings.TrimSpace(string(b)), err
	}
	if addr, err = read(AdminAddrFile); err != nil {
		return "", "", err
	}
	token, err = read(AdminTokenFile)
	return addr, token, err
}

// FetchBackup asks the node's admin listener at addr for a backup and
// writes it to w. The caller checks it (store.ReadBackup) before
// trusting it.
func FetchBackup(ctx context.Context, addr, token string, w io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/backup", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("server: asking the node's admin listener for a backup: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("server: the admin listener refused the backup: %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("server: receiving the backup: %w", err)
	}
	return nil
}

// RequestInvite asks the node's admin listener at addr for an
// invitation token valid for ttl.
func RequestInvite(ctx context.Context, addr, token string, ttl time.Duration) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/invite?ttl="+ttl.String(), nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("server: asking the node's admin listener for an invitation: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("server: the admin listener refused the invitation: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return strings.TrimSpace(string(body)), nil
}

// StoreOptions are the key options of the node's store as cfg names
// them (after populateConfig's defaults).
func StoreOptions(cfg Config) (path string, opts store.Options) {
	cfg = populateConfig(cfg)
	if cfg.StorePassphrase != nil {
		opts.Passphrase = cfg.StorePassphrase
	} else {
		opts.KeyFile = cfg.StoreKeyFile
	}
	return cfg.StorePath, opts
}

// checkKeyFile refuses a key file that does not exist: store.Open would
// create a fresh one, which cannot open an existing database.
func checkKeyFile(opts store.Options) error {
	if opts.Passphrase != nil {
		return nil
	}
	if _, err := os.Stat(opts.KeyFile); err != nil {
		return fmt.Errorf("server: the store key file %s: %w (copy the node's key there; backups never hold it)", opts.KeyFile, err)
	}
	return nil
}

// OfflineBackup backs up the stopped node of cfg to w.
func OfflineBackup(cfg Config, w io.Writer) (store.BackupHeader, error) {
	cfg = populateConfig(cfg)
	path, opts := StoreOptions(cfg)
	if err := checkKeyFile(opts); err != nil {
		return store.BackupHeader{}, err
	}
	if _, err := os.Stat(path); err != nil {
		return store.BackupHeader{}, fmt.Errorf("server: no node database: %w", err)
	}
	ls, err := store.OpenServer(path, opts, store.Limits{})
	if err != nil {
		return store.BackupHeader{}, err
	}
	defer ls.Close()
	files, err := IdentityFiles(cfg.DataDir, cfg.TLSCertFile != "")
	if err != nil {
		return store.BackupHeader{}, err
	}
	return ls.DB().WriteBackup(w, cfg.Version, files, cfg.Now())
}

// RestoreResult reports a restore.
type RestoreResult struct {
	Header store.BackupHeader
	Files  []string // identity files written
	Moved  string   // where the database that was there went, if any
}

// Restore checks the backup read from r and installs it as the node
// database of cfg, with the identity files it carries. It refuses while a
// node runs on that database, and over an existing one unless force (the
// old one is then kept beside it). Nothing is changed unless the backup's
// checksum matches, its database passes bbolt's consistency check and
// opens with the store key.
func Restore(cfg Config, r io.Reader, force bool) (RestoreResult, error) {
	var res RestoreResult
	cfg = populateConfig(cfg)
	path, opts := StoreOptions(cfg)
	if path == "" {
		return res, errors.New("server: no data directory")
	}
	inUse, err := store.InUse(path, 500*time.Millisecond)
	if err != nil {
		return res, err
	}
	if inUse {
		return res, fmt.Errorf("server: a node is running on %s; stop it before restoring: %w", path, store.ErrInUse)
	}
	_, statErr := os.Stat(path)
	exists := statErr == nil
	if exists && !force {
		return res, fmt.Errorf("server: %s already holds a node database; restore into an empty data directory, or give --force to keep it aside and replace it", path)
	}
	if err := checkKeyFile(opts); err != nil {
		return res, err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return res, err
	}
	tmp, err := os.CreateTemp(dir, ".node.db.restore-*")
	if err != nil {
		return res, err
	}
	tmpPath := tmp.Name()
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmpPath)
		}
	}()
	h, sealed, err := store.ReadBackup(r, tmp)
	if err != nil {
		return res, err
	}
	res.Header = h
	if err := tmp.Sync(); err != nil {
		return res, err
	}
	if err := tmp.Close(); err != nil {
		return res, err
	}
	if err := store.CheckFile(tmpPath); err != nil {
		return res, err
	}
	// A backup of a cluster node carries the replica's bookkeeping;
	// restored, it is a single node's database (or the seed of a fresh
	// cluster's log).
	if err := store.DetachReplica(tmpPath); err != nil {
		return res, err
	}
	ls, err := store.OpenServer(tmpPath, opts, store.Limits{})
	if err != nil {
		return res, fmt.Errorf("server: the backup does not open with this store key: %w", err)
	}
	files := map[string][]byte{}
	for _, name := range IdentityFileNames() {
		s, ok := sealed[name]
		if !ok {
			continue
		}
		b, err := ls.DB().OpenBackupFile(name, s)
		if err != nil {
			ls.Close()
			return res, fmt.Errorf("server: the backup's %s: %w", name, err)
		}
		files[name] = b
	}
	if err := ls.Close(); err != nil {
		return res, err
	}
	if exists {
		res.Moved = fmt.Sprintf("%s.before-restore-%s", path, cfg.Now().UTC().Format("20060102T150405Z"))
		if err := os.Rename(path, res.Moved); err != nil {
			return res, err
		}
	}
	if cfg.TLSCertFile == "" {
		for _, name := range IdentityFileNames() {
			b, ok := files[name]
			if !ok {
				continue
			}
			p := filepath.Join(cfg.DataDir, name)
			if err := store.WriteFileAtomic(p, 0o600, func(w io.Writer) error {
				_, err := w.Write(b)
				return err
			}); err != nil {
				return res, err
			}
			res.Files = append(res.Files, p)
		}
	}
	if err := os.Rename(tmpPath, path); err != nil {
		return res, err
	}
	done = true
	return res, store.SyncDir(dir)
}
