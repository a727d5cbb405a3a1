package client

// This file is the client's persistent state: one encrypted bbolt file per
// profile, through node/store (values sealed, identifiers HMACed).
//
// Layout (bucket → key → value):
//
//	profile  "user", "user-key" (public), "device" (private seed),
//	         "cert", "server", "last-seq", "read-seq"
//	servers  server address → pinned fingerprint (rpc.PinStore)
//	peers    Ident("user", name) → peerRecord (pinned user keys)
//	kps      KeyPackageRef → kpRecord (unused KeyPackages' private keys)
//	groups   Ident("group", id) → groupRecord (MLS state, pending commit)
//	names    Ident("name", local name) → group id
//	events   sequence → Event (message history)

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"qpchat/node/store"
)

var (
	bProfile = []byte("profile")
	bServers = []byte("servers")
	bPeers   = []byte("peers")
	bKPs     = []byte("kps")
	bGroups  = []byte("groups")
	bNames   = []byte("names")
	bEvents  = []byte("events")
	// bSeen: Ident("seen", SHA-256 of an applied application message) →
	// empty (seen.go); bApproved: Ident("device", key) → approval
	// (approvals.go).
	bSeen     = []byte("seen")
	bApproved = []byte("approved")

	kUser    = []byte("user")
	kUserKey = []byte("user-key")
	kDevice  = []byte("device")
	kCert    = []byte("cert")
	kServer  = []byte("server")
	kLastSeq = []byte("last-seq")
	kReadSeq = []byte("read-seq")
)

// stateSchema is the client state's schema; migrations are appended, never
// edited.
var stateSchema = store.Schema{
	Name: "qpchat-client",
	Migrations: []store.Migration{{
		Name: "create buckets",
		Apply: func(tx *store.Tx) error {
			for _, b := range [][]byte{bProfile, bServers, bPeers, bKPs, bGroups, bNames, bEvents} {
				if _, err := tx.CreateBucket(b); err != nil {
					return err
				}
			}
			return nil
		},
	}, {
		Name: "create buckets of seen messages and approved devices",
		Apply: func(tx *store.Tx) error {
			for _, b := range [][]byte{bSeen, bApproved} {
				if _, err := tx.CreateBucket(b); err != nil {
					return err
				}
			}
			return nil
		},
	}},
}

// Errors returned by OpenState (besides node/store's).
var (
	// ErrNoState is returned by OpenState with MustExist when the profile
	// has no state file yet.
	ErrNoState = errors.New("client: no state for this profile (run register-user or login first)")
)

// StateOptions say where the state is and how it is protected.
type StateOptions struct {
	// Path is the state file.
	Path string
	// Passphrase protects the file (Argon2id). Never from a flag.
	Passphrase []byte
	// KDF overrides the Argon2id parameters of a new file (tests); the
	// zero value takes node/store's defaults.
	KDF store.KDFParams
	// MustExist refuses to create a new file.
	MustExist bool

	// Persist, if set, keeps the state in memory instead of a file (the
	// browser client, which has no files): Image is the state saved
	// last (empty for a new one), and Persist is given the new image
	// after every commit and must store it durably (IndexedDB) before
	// returning (store.OpenMemory). Path is then unused. The image holds
	// the same sealed records as a file, under the same passphrase.
	Image   []byte
	Persist func(image []byte) error
}

// StatePath returns the state file of a profile in a state directory.
func StatePath(dir, profile string) (string, error) {
	if profile == "" || strings.ContainsAny(profile, `/\`) || profile == "." || profile == ".." {
		return "", fmt.Errorf("client: invalid profile name %q", profile)
	}
	return filepath.Join(dir, profile+".state"), nil
}

// State is an open client state file.
type State struct {
	db *store.DB
}

// OpenState opens (or creates, with mode 0600 in a 0700 directory) the
// state file.
func OpenState(opts StateOptions) (*State, error) {
	if opts.Persist != nil {
		if opts.MustExist && len(opts.Image) == 0 {
			return nil, ErrNoState
		}
		db, err := store.OpenMemory(opts.Image, opts.Persist, store.Options{Passphrase: opts.Passphrase, KDF: opts.KDF, Schema: stateSchema})
		if err != nil {
			return nil, err
		}
		return &State{db: db}, nil
	}
	if opts.MustExist {
		if _, err := os.Stat(opts.Path); errors.Is(err, os.ErrNotExist) {
			return nil, ErrNoState
		}
	}
	if err := os.MkdirAll(filepath.Dir(opts.Path), 0o700); err != nil {
		return nil, fmt.Errorf("client: creating state directory: %w", err)
	}
	if opts.Passphrase == nil {
		opts.Passphrase = []byte{}
	}
	db, err := store.Open(opts.Path, store.Options{Passphrase: opts.Passphrase, KDF: opts.KDF, Schema: stateSchema})
	if err != nil {
		return nil, err
	}
	return &State{db: db}, nil
}

// Close closes the file.
func (s *State) Close() error { return s.db.Close() }

func getU64(tx *store.Tx, key []byte) (uint64, error) {
	v, err := tx.Bucket(bProfile).Get(key)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n, ok := store.ParseSeqKey(v)
	if !ok {
		return 0, errRecord
	}
	return n, nil
}

// Pin implements rpc.PinStore with the pins kept in the state. The key
// is an HMAC of the server address (DESIGN.md, Storage: keys do not
// reveal identifiers); a pin stored under the address itself by an older
// version is still found.
func (s *State) Pin(server string) (string, bool, error) {
	var fp string
	err := s.db.View(func(tx *store.Tx) error {
		b := tx.Bucket(bServers)
		v, err := b.Get(serverKey(tx, server))
		if errors.Is(err, store.ErrNotFound) {
			v, err = b.Get([]byte(strings.ToLower(server)))
		}
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		fp = string(v)
		return err
	})
	return fp, fp != "", err
}

// SetPin implements rpc.PinStore.
func (s *State) SetPin(server, fingerprint string) error {
	return s.db.Update(func(tx *store.Tx) error {
		b := tx.Bucket(bServers)
		if err := b.Delete([]byte(strings.ToLower(server))); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		return b.Put(serverKey(tx, server), []byte(fingerprint))
	})
}

func serverKey(tx *store.Tx, server string) []byte {
	return tx.Ident("server", []byte(strings.ToLower(server)))
}

// Profile is the account and device a state holds.
type Profile struct {
	User    string
	UserKey []byte             // the user's public key (nil before login)
	Device  ed25519.PrivateKey // nil before register-state
	Cert    []byte
	Server  string
}

// DeviceKey returns the device public key, or nil.
func (p *Profile) DeviceKey() []byte {
	if p.Device == nil {
		return nil
	}
	return bytes.Clone(p.Device.Public().(ed25519.PublicKey))
}

// Profile reads the profile.
func (s *State) Profile() (*Profile, error) {
	p := &Profile{}
	err := s.db.View(func(tx *store.Tx) error {
		b := tx.Bucket(bProfile)
		get := func(k []byte) ([]byte, error) {
			v, err := b.Get(k)
			if errors.Is(err, store.ErrNotFound) {
				return nil, nil
			}
			return v, err
		}
		var user, server, device []byte
		var err error
		for _, f := range []struct {
			k   []byte
			out *[]byte
		}{{kUser, &user}, {kUserKey, &p.UserKey}, {kDevice, &device}, {kCert, &p.Cert}, {kServer, &server}} {
			if *f.out, err = get(f.k); err != nil {
				return err
			}
		}
		p.User, p.Server = string(user), string(server)
		if len(device) == ed25519.SeedSize {
			p.Device = ed25519.NewKeyFromSeed(device)
		}
		clear(device)
		return nil
	})
	return p, err
}

// putProfile writes the non-nil fields of p.
func putProfile(tx *store.Tx, p *Profile) error {
	b := tx.Bucket(bProfile)
	put := func(k, v []byte) error {
		if v == nil {
			return nil
		}
		return b.Put(k, v)
	}
	if p.User != "" {
		if err := put(kUser, []byte(p.User)); err != nil {
			return err
		}
	}
	if p.Server != "" {
		if err := put(kServer, []byte(p.Server)); err != nil {
			return err
		}
	}
	if err := put(kUserKey, p.UserKey); err != nil {
		return err
	}
	if p.Device != nil {
		if err := put(kDevice, p.Device.Seed()); err != nil {
			return err
		}
	}
	return put(kCert, p.Cert)
}

// SaveProfile stores the non-empty fields of p.
func (s *State) SaveProfile(p *Profile) error {
	return s.db.Update(func(tx *store.Tx) error { return putProfile(tx, p) })
}

// peer returns the pinned record of a user, or nil.
func getPeer(tx *store.Tx, user string) (*peerRecord, error) {
	v, err := tx.Bucket(bPeers).Get(tx.Ident("user", []byte(user)))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		// Fail closed: a damaged pin is never replaced on first use.
		return nil, fmt.Errorf("client: the pinned key of %s is damaged in this device's state: %w", user, err)
	}
	return parsePeer(v)
}

func putPeer(tx *store.Tx, p *peerRecord) error {
	return tx.Bucket(bPeers).Put(tx.Ident("user", []byte(p.User)), p.marshal())
}

// Peer returns the pinned record of a user (nil if none).
func (s *State) peer(user string) (*peerRecord, error) {
	var p *peerRecord
	err := s.db.View(func(tx *store.Tx) error {
		var err error
		p, err = getPeer(tx, user)
		return err
	})
	return p, err
}

func getGroup(tx *store.Tx, id []byte) (*groupRecord, error) {
	v, err := tx.Bucket(bGroups).Get(tx.Ident("group", id))
	if err != nil {
		return nil, err
	}
	return parseGroup(v)
}

func putGroup(tx *store.Tx, g *groupRecord) error {
	return tx.Bucket(bGroups).Put(tx.Ident("group", g.ID), g.marshal())
}

func getGroupByName(tx *store.Tx, name string) ([]byte, error) {
	return tx.Bucket(bNames).Get(tx.Ident("name", []byte(name)))
}

func putGroupName(tx *store.Tx, name string, id []byte) error {
	return tx.Bucket(bNames).Put(tx.Ident("name", []byte(name)), id)
}

// appendEvent stores e with the next history sequence.
func appendEvent(tx *store.Tx, e *Event) error {
	b := tx.Bucket(bEvents)
	n, err := b.NextSequence()
	if err != nil {
		return err
	}
	e.Seq = n
	return b.Put(store.SeqKey(n), e.marshal())
}

// Events returns the history entries after seq, oldest first (limit ≤ 0:
// all).
func (s *State) Events(after uint64, limit int) ([]*Event, error) {
	var out []*Event
	err := s.db.View(func(tx *store.Tx) error {
		c := tx.Bucket(bEvents).Cursor()
		for k, v, err := c.Seek(store.SeqKey(after + 1)); k != nil; k, v, err = c.Next() {
			if err != nil {
				return err
			}
			e, err := parseEvent(v)
			if err != nil {
				return err
			}
			e.Seq, _ = store.ParseSeqKey(k)
			out = append(out, e)
			if limit > 0 && len(out) >= limit {
				break
			}
		}
		return nil
	})
	return out, err
}

// ReadSeq is the last history entry shown by recv.
func (s *State) ReadSeq() (uint64, error) {
	var n uint64
	err := s.db.View(func(tx *store.Tx) error {
		var err error
		n, err = getU64(tx, kReadSeq)
		return err
	})
	return n, err
}

// SetReadSeq records the last history entry shown.
func (s *State) SetReadSeq(n uint64) error {
	return s.db.Update(func(tx *store.Tx) error { return tx.Bucket(bProfile).Put(kReadSeq, store.SeqKey(n)) })
}

// LastSeq is the sequence number of the last delivery applied.
func (s *State) LastSeq() (uint64, error) {
	var n uint64
	err := s.db.View(func(tx *store.Tx) error {
		var err error
		n, err = getU64(tx, kLastSeq)
		return err
	})
	return n, err
}

// Check opens every record of the state, so that damage is found before
// anything is done with it. Damage that leaves the profile usable is
// repaired, and what it cost is written to the history (EventLost), so
// the user is told once: a damaged history entry is replaced by a
// placeholder, a damaged group is forgotten (this device must be re-added
// to it), a damaged KeyPackage key or group name is dropped (names are
// rebuilt from the groups), a damaged queue position or read mark is
// reset. Damaged pins (servers, peers) are kept: they fail closed where
// they are used, never re-pinned on first use. Check returns an error
// wrapping store.ErrCorrupt only when the profile itself (account, device
// key, certificate, server) is damaged.
func (s *State) Check() error {
	var d *stateDamage
	err := s.db.View(func(tx *store.Tx) error {
		var err error
		d, err = scanState(tx)
		return err
	})
	if err != nil {
		return err
	}
	if d.fatal != nil {
		return d.fatal
	}
	if !d.repairable() {
		return nil
	}
	return s.db.Update(func(tx *store.Tx) error {
		d, err := scanState(tx)
		if err != nil {
			return err
		}
		if d.fatal != nil {
			return d.fatal
		}
		return repairState(tx, d)
	})
}
