package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
)

// Store holds the node's records. LocalStore implements it on one encrypted
// bbolt file; a backend on a distributed engine can implement it later, so
// the server must assume nothing beyond this contract:
//
//   - Every method that changes something returns only after the change is
//     durable, and each such method is atomic.
//   - Byte slices passed in are not retained; slices returned are the
//     caller's.
//   - Identifiers (user names, device keys, group ids) are opaque bytes,
//     already validated and normalised by the caller.
type Store interface {
	// CreateAccount stores a new account; ErrExists if the name is taken.
	CreateAccount(ctx context.Context, a Account) error
	// Account returns the account of user; ErrNotFound if none.
	Account(ctx context.Context, user string) (Account, error)
	// ReplaceAccount overwrites an existing account (re-registration with
	// new parameters); ErrNotFound if none.
	ReplaceAccount(ctx context.Context, a Account) error

	// AddDevice registers a device of an existing account: ErrNotFound
	// without the account, ErrExists if any user has that device key.
	AddDevice(ctx context.Context, d Device) error
	// Device looks a device up by its key; ErrNotFound if unknown.
	Device(ctx context.Context, key []byte) (Device, error)
	// Devices lists a user's devices, revoked ones included.
	Devices(ctx context.Context, user string) ([]Device, error)
	// RevokeDevice marks a device revoked and deletes its KeyPackages in
	// the same transaction. Revoking twice is not an error.
	RevokeDevice(ctx context.Context, key []byte) error

	// PutKeyPackages adds pool packages for a device and suite and, if
	// lastResort is not nil, replaces its last-resort package. It returns
	// the pool size after the upload. ErrLimit if the pool would exceed
	// Limits.MaxKeyPackages, ErrRevoked for a revoked device.
	PutKeyPackages(ctx context.Context, device []byte, suite uint16, pool []KeyPackage, lastResort *KeyPackage) (int, error)
	// KeyPackageCount returns the pool size of a device and suite.
	KeyPackageCount(ctx context.Context, device []byte, suite uint16) (int, error)
	// FetchKeyPackages hands out one package per non-revoked device of
	// user for suite, consuming pool packages atomically (each is handed
	// out exactly once) and falling back to the last resort, which is
	// never consumed. Devices without any package are left out. It records
	// which caller fetched which KeyPackageRef (see FetchedKeyPackage).
	FetchKeyPackages(ctx context.Context, caller []byte, user string, suite uint16) ([]FetchedKeyPackage, error)
	// FetchedKeyPackage returns the device and suite of a package that
	// caller fetched, by KeyPackageRef; ErrNotFound if caller never did.
	FetchedKeyPackage(ctx context.Context, caller, ref []byte) (device []byte, suite uint16, err error)

	// CreateGroup creates a group at epoch 0 with creator as its only
	// member; ErrExists if the id is taken.
	CreateGroup(ctx context.Context, id, creator []byte) error
	// Group returns a group's routing state; ErrNotFound if none.
	Group(ctx context.Context, id []byte) (Group, error)
	// Commit accepts the first commit of the group's current epoch and, in
	// the same transaction, queues it for the members before it (removed
	// ones included, the committer excluded) and the Welcome for the added
	// devices, and moves the group to the next epoch with the new members.
	// A resubmitted accepted commit (same bytes) returns Duplicate without
	// storing anything. Errors: ErrNotFound, ErrNotMember, ErrStaleCommit,
	// ErrWrongEpoch, ErrInvalidCommit, ErrLimit.
	Commit(ctx context.Context, req CommitRequest) (CommitResult, error)
	// Send queues a batch of messages for every member but the sender, in
	// one transaction. ErrNotMember if the sender is not a member.
	Send(ctx context.Context, req SendRequest) (SendResult, error)

	// Fetch returns up to limit messages with sequence numbers after
	// after, stopping early once maxBytes of message data are collected
	// (always at least one message). Nothing is deleted. limit ≤ 0 means
	// 1000, maxBytes ≤ 0 means no byte limit.
	Fetch(ctx context.Context, device []byte, after uint64, limit, maxBytes int) ([]QueuedMessage, QueueState, error)
	// Ack deletes every queued message of device with sequence ≤ upTo.
	Ack(ctx context.Context, device []byte, upTo uint64) error
	// QueueSignal returns a channel that is closed when a message is next
	// queued for device (after it is durable). Take the channel before
	// calling Fetch, so an arrival between the two is not missed.
	QueueSignal(device []byte) <-chan struct{}
	// ClearOverflow lets an overflowed device's queue accept messages
	// again (once the device has been re-added to its groups).
	ClearOverflow(ctx context.Context, device []byte) error

	// Secret returns the secret called name, calling create and storing
	// its result atomically the first time (QUIC stateless-reset and
	// token keys, OPAQUE server key material).
	Secret(ctx context.Context, name string, create func() ([]byte, error)) ([]byte, error)

	// Close flushes pending writes and releases the store.
	Close() error
}

// CommitRequest is a commit the server has checked (sender, content type,
// Welcome match) and asks the store to accept.
type CommitRequest struct {
	Group     []byte
	Committer []byte   // device key of the authenticated sender
	Epoch     uint64   // epoch in the commit's MLSMessage header
	Message   []byte   // the commit MLSMessage; its SHA-256 identifies it
	Added     [][]byte // device keys the commit adds
	Removed   [][]byte // device keys the commit removes
	Welcome   []byte   // the Welcome for the added devices; required if Added is not empty
}

// CommitResult reports an accepted commit.
type CommitResult struct {
	Duplicate  bool     // this commit had already been accepted; nothing new was stored
	Epoch      uint64   // the group's epoch after the commit
	Overflowed [][]byte // devices whose queues overflowed with this commit
}

// SendRequest is a batch of messages from one member to a group.
type SendRequest struct {
	Group    []byte
	Sender   []byte // device key of the authenticated sender
	Messages [][]byte
}

// SendResult reports a send.
type SendResult struct {
	Overflowed [][]byte // devices whose queues overflowed with this send
}

// Limits bound what the store accepts. Zero fields take the defaults.
type Limits struct {
	MaxQueueLen    int // messages per device queue; default 100000
	MaxKeyPackages int // pool packages per device and suite; default 100
	MaxGroupSize   int // member devices per group; default 1000
}

func (l Limits) withDefaults() Limits {
	if l.MaxQueueLen <= 0 {
		l.MaxQueueLen = 100000
	}
	if l.MaxKeyPackages <= 0 {
		l.MaxKeyPackages = 100
	}
	if l.MaxGroupSize <= 0 {
		l.MaxGroupSize = 1000
	}
	return l
}

// Server schema: bucket names and identifier domains.
var (
	bucketAccounts    = []byte("accounts")     // Ident(user) → Account
	bucketDevices     = []byte("devices")      // Ident(device) → Device
	bucketUserDevices = []byte("user-devices") // Ident(user) / Ident(device) → device key
	bucketKeyPackages = []byte("keypackages")  // Ident(device) / suite / {"last" → KeyPackage, "pool" / seq → KeyPackage}
	bucketFetched     = []byte("kp-fetched")   // Ident(caller ‖ ref) → fetchRecord
	bucketGroups      = []byte("groups")       // Ident(group) / {"g" → Group, "c" / epoch → commit hash}
	bucketQueues      = []byte("queues")       // Ident(device) / {"s" → QueueState, "m" / seq → Envelope}
	bucketSecrets     = []byte("secrets")      // Ident(name) → secret

	keyLast      = []byte("last")
	keyPool      = []byte("pool")
	keyGroup     = []byte("g")
	keyCommits   = []byte("c")
	keyQueue     = []byte("s")
	keyMessages  = []byte("m")
	serverBucket = [][]byte{bucketAccounts, bucketDevices, bucketUserDevices, bucketKeyPackages,
		bucketFetched, bucketGroups, bucketQueues, bucketSecrets}
)

const (
	domainUser    = "user"
	domainDevice  = "device"
	domainGroup   = "group"
	domainFetched = "kp-fetched"
	domainSecret  = "secret"
)

// ServerSchema is the schema of the node's file. Append migrations; never
// edit released ones.
var ServerSchema = Schema{
	Name: "qpchat-server",
	Migrations: []Migration{
		{Name: "create buckets", Apply: func(tx *Tx) error {
			for _, name := range serverBucket {
				if _, err := tx.CreateBucket(name); err != nil {
					return err
				}
			}
			return nil
		}},
	},
}

// LocalStore is the Store on one encrypted bbolt file.
type LocalStore struct {
	db      *DB
	limits  Limits
	signals signals
}

var _ Store = (*LocalStore)(nil)

// OpenServer opens the node's store at path (see Open for opts and errors;
// opts.Schema is set to ServerSchema).
func OpenServer(path string, opts Options, limits Limits) (*LocalStore, error) {
	opts.Schema = ServerSchema
	db, err := Open(path, opts)
	if err != nil {
		return nil, err
	}
	return &LocalStore{db: db, limits: limits.withDefaults(), signals: signals{m: map[string]chan struct{}{}}}, nil
}

// DB returns the underlying encrypted database (for backups).
func (s *LocalStore) DB() *DB { return s.db }

// Close implements Store.
func (s *LocalStore) Close() error { return s.db.Close() }

func checkLen(what string, v []byte, min, max int) error {
	if len(v) < min || len(v) > max {
		return fmt.Errorf("store: %s of %d bytes, want %d..%d", what, len(v), min, max)
	}
	return nil
}

func (a *Account) check() error {
	return errors.Join(checkLen("user name", []byte(a.User), 1, MaxUserLen),
		checkLen("OPAQUE record", a.Record, 0, MaxBlobLen),
		checkLen("user key", a.UserKey, 0, MaxKeyLen))
}

// update runs fn through group commit after checking ctx.
func (s *LocalStore) update(ctx context.Context, fn func(*Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(fn)
}

func (s *LocalStore) view(ctx context.Context, fn func(*Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(fn)
}

// CreateAccount implements Store.
func (s *LocalStore) CreateAccount(ctx context.Context, a Account) error {
	if err := a.check(); err != nil {
		return err
	}
	rec := a.marshal()
	return s.update(ctx, func(tx *Tx) error {
		b := tx.Bucket(bucketAccounts)
		k := tx.Ident(domainUser, []byte(a.User))
		if err := absent(b, k); err != nil {
			return err
		}
		return b.Put(k, rec)
	})
}

// absent returns nil if key is not in b, ErrExists if it is.
func absent(b *Bucket, key []byte) error {
	_, err := b.Get(key)
	switch {
	case err == nil:
		return ErrExists
	case errors.Is(err, ErrNotFound):
		return nil
	default:
		return err
	}
}

// Account implements Store.
func (s *LocalStore) Account(ctx context.Context, user string) (Account, error) {
	var a Account
	err := s.view(ctx, func(tx *Tx) error {
		v, err := tx.Bucket(bucketAccounts).Get(tx.Ident(domainUser, []byte(user)))
		if err != nil {
			return err
		}
		a, err = parseAccount(v)
		return err
	})
	return a, err
}

// ReplaceAccount implements Store.
func (s *LocalStore) ReplaceAccount(ctx context.Context, a Account) error {
	if err := a.check(); err != nil {
		return err
	}
	rec := a.marshal()
	return s.update(ctx, func(tx *Tx) error {
		b := tx.Bucket(bucketAccounts)
		k := tx.Ident(domainUser, []byte(a.User))
		if _, err := b.Get(k); err != nil {
			return err
		}
		return b.Put(k, rec)
	})
}

// AddDevice implements Store.
func (s *LocalStore) AddDevice(ctx context.Context, d Device) error {
	if err := errors.Join(checkLen("user name", []byte(d.User), 1, MaxUserLen),
		checkLen("device key", d.Key, 1, MaxKeyLen),
		checkLen("device certificate", d.Certificate, 0, MaxBlobLen)); err != nil {
		return err
	}
	rec := d.marshal()
	return s.update(ctx, func(tx *Tx) error {
		user := tx.Ident(domainUser, []byte(d.User))
		if _, err := tx.Bucket(bucketAccounts).Get(user); err != nil {
			return fmt.Errorf("store: account of device: %w", err)
		}
		devices := tx.Bucket(bucketDevices)
		k := tx.Ident(domainDevice, d.Key)
		if err := absent(devices, k); err != nil {
			return err
		}
		if err := devices.Put(k, rec); err != nil {
			return err
		}
		list, err := tx.CreateBucket(bucketUserDevices, user)
		if err != nil {
			return err
		}
		return list.Put(k, d.Key)
	})
}

func getDevice(tx *Tx, key []byte) (Device, error) {
	v, err := tx.Bucket(bucketDevices).Get(tx.Ident(domainDevice, key))
	if err != nil {
		return Device{}, err
	}
	return parseDevice(v)
}

// Device implements Store.
func (s *LocalStore) Device(ctx context.Context, key []byte) (Device, error) {
	var d Device
	err := s.view(ctx, func(tx *Tx) (err error) {
		d, err = getDevice(tx, key)
		return err
	})
	return d, err
}

// userDevices lists the device records of user (none if unknown).
func userDevices(tx *Tx, user string) ([]Device, error) {
	list := tx.Bucket(bucketUserDevices, tx.Ident(domainUser, []byte(user)))
	if list == nil {
		return nil, nil
	}
	var out []Device
	c := list.Cursor()
	for k, v, err := c.First(); k != nil; k, v, err = c.Next() {
		if err != nil {
			return nil, err
		}
		d, err := getDevice(tx, v)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// Devices implements Store.
func (s *LocalStore) Devices(ctx context.Context, user string) ([]Device, error) {
	var out []Device
	err := s.view(ctx, func(tx *Tx) (err error) {
		out, err = userDevices(tx, user)
		return err
	})
	return out, err
}

// RevokeDevice implements Store.
func (s *LocalStore) RevokeDevice(ctx context.Context, key []byte) error {
	return s.update(ctx, func(tx *Tx) error {
		d, err := getDevice(tx, key)
		if err != nil {
			return err
		}
		if err := tx.DeleteBucket(bucketKeyPackages, tx.Ident(domainDevice, key)); err != nil {
			return err
		}
		if d.Revoked {
			return nil
		}
		d.Revoked = true
		return tx.Bucket(bucketDevices).Put(tx.Ident(domainDevice, key), d.marshal())
	})
}

func suiteKey(suite uint16) []byte { return binary.BigEndian.AppendUint16(nil, suite) }

func countKeys(b *Bucket) (int, error) {
	if b == nil {
		return 0, nil
	}
	n := 0
	c := b.KeyCursor()
	for k, _, err := c.First(); k != nil; k, _, err = c.Next() {
		if err != nil {
			return 0, err
		}
		n++
	}
	return n, nil
}

func (k *KeyPackage) check() error {
	return errors.Join(checkLen("KeyPackageRef", k.Ref, 1, MaxKeyLen), checkLen("KeyPackage", k.Data, 1, MaxMessageLen))
}

// PutKeyPackages implements Store.
func (s *LocalStore) PutKeyPackages(ctx context.Context, device []byte, suite uint16, pool []KeyPackage, lastResort *KeyPackage) (int, error) {
	recs := make([][]byte, len(pool))
	for i := range pool {
		if err := pool[i].check(); err != nil {
			return 0, err
		}
		recs[i] = pool[i].marshal()
	}
	var last []byte
	if lastResort != nil {
		if err := lastResort.check(); err != nil {
			return 0, err
		}
		last = lastResort.marshal()
	}
	var count int
	err := s.update(ctx, func(tx *Tx) error {
		d, err := getDevice(tx, device)
		if err != nil {
			return err
		}
		if d.Revoked {
			return ErrRevoked
		}
		sb, err := tx.CreateBucket(bucketKeyPackages, tx.Ident(domainDevice, device), suiteKey(suite))
		if err != nil {
			return err
		}
		pb, err := sb.CreateBucket(keyPool)
		if err != nil {
			return err
		}
		if count, err = countKeys(pb); err != nil {
			return err
		}
		if count+len(recs) > s.limits.MaxKeyPackages {
			return fmt.Errorf("store: %d KeyPackages would exceed the limit of %d per device and suite: %w",
				count+len(recs), s.limits.MaxKeyPackages, ErrLimit)
		}
		for _, r := range recs {
			if _, err := pb.Append(r); err != nil {
				return err
			}
		}
		count += len(recs)
		if last != nil {
			return sb.Put(keyLast, last)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return count, nil
}

// KeyPackageCount implements Store.
func (s *LocalStore) KeyPackageCount(ctx context.Context, device []byte, suite uint16) (int, error) {
	var n int
	err := s.view(ctx, func(tx *Tx) (err error) {
		n, err = countKeys(tx.Bucket(bucketKeyPackages, tx.Ident(domainDevice, device), suiteKey(suite), keyPool))
		return err
	})
	return n, err
}

// fetchedID identifies (caller, ref) for the kp-fetched bucket.
func fetchedID(tx *Tx, caller, ref []byte) []byte {
	id := append([]byte{byte(len(caller))}, caller...)
	return tx.Ident(domainFetched, append(id, ref...))
}

// FetchKeyPackages implements Store.
func (s *LocalStore) FetchKeyPackages(ctx context.Context, caller []byte, user string, suite uint16) ([]FetchedKeyPackage, error) {
	if err := checkLen("caller", caller, 1, MaxKeyLen); err != nil {
		return nil, err
	}
	var out []FetchedKeyPackage
	err := s.update(ctx, func(tx *Tx) error {
		out = nil // this function may run again; start afresh
		if _, err := tx.Bucket(bucketAccounts).Get(tx.Ident(domainUser, []byte(user))); err != nil {
			return err
		}
		devices, err := userDevices(tx, user)
		if err != nil {
			return err
		}
		fetched := tx.Bucket(bucketFetched)
		for _, d := range devices {
			if d.Revoked {
				continue
			}
			sb := tx.Bucket(bucketKeyPackages, tx.Ident(domainDevice, d.Key), suiteKey(suite))
			if sb == nil {
				continue
			}
			f, ok, err := takeKeyPackage(sb)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			f.Device = d.Key
			rec := fetchRecord{Device: d.Key, Suite: suite}
			if err := fetched.Put(fetchedID(tx, caller, f.Ref), rec.marshal()); err != nil {
				return err
			}
			out = append(out, f)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// takeKeyPackage consumes the first pool package of a device's suite
// bucket, or returns its last resort without consuming it.
func takeKeyPackage(sb *Bucket) (FetchedKeyPackage, bool, error) {
	var f FetchedKeyPackage
	if pb := sb.Bucket(keyPool); pb != nil {
		c := pb.Cursor()
		k, v, err := c.First()
		if err != nil {
			return f, false, err
		}
		if k != nil {
			if f.KeyPackage, err = parseKeyPackage(v); err != nil {
				return f, false, err
			}
			if err := c.Delete(); err != nil {
				return f, false, err
			}
			if f.Remaining, err = countKeys(pb); err != nil {
				return f, false, err
			}
			return f, true, nil
		}
	}
	v, err := sb.Get(keyLast)
	if errors.Is(err, ErrNotFound) {
		return f, false, nil
	}
	if err != nil {
		return f, false, err
	}
	if f.KeyPackage, err = parseKeyPackage(v); err != nil {
		return f, false, err
	}
	f.LastResort = true
	return f, true, nil
}

// FetchedKeyPackage implements Store.
func (s *LocalStore) FetchedKeyPackage(ctx context.Context, caller, ref []byte) ([]byte, uint16, error) {
	var rec fetchRecord
	err := s.view(ctx, func(tx *Tx) error {
		v, err := tx.Bucket(bucketFetched).Get(fetchedID(tx, caller, ref))
		if err != nil {
			return err
		}
		rec, err = parseFetchRecord(v)
		return err
	})
	return rec.Device, rec.Suite, err
}

// CreateGroup implements Store.
func (s *LocalStore) CreateGroup(ctx context.Context, id, creator []byte) error {
	if err := errors.Join(checkLen("group id", id, 1, MaxGroupIDLen), checkLen("device key", creator, 1, MaxKeyLen)); err != nil {
		return err
	}
	g := Group{ID: id, Members: [][]byte{creator}}
	rec := g.marshal()
	return s.update(ctx, func(tx *Tx) error {
		d, err := getDevice(tx, creator)
		if err != nil {
			return fmt.Errorf("store: group creator: %w", err)
		}
		if d.Revoked {
			return ErrRevoked
		}
		groups := tx.Bucket(bucketGroups)
		k := tx.Ident(domainGroup, id)
		if groups.Bucket(k) != nil {
			return ErrExists
		}
		gb, err := groups.CreateBucket(k)
		if err != nil {
			return err
		}
		return gb.Put(keyGroup, rec)
	})
}

func getGroup(tx *Tx, id []byte) (*Bucket, Group, error) {
	gb := tx.Bucket(bucketGroups, tx.Ident(domainGroup, id))
	if gb == nil {
		return nil, Group{}, ErrNotFound
	}
	v, err := gb.Get(keyGroup)
	if err != nil {
		return nil, Group{}, err
	}
	g, err := parseGroup(v)
	return gb, g, err
}

// Group implements Store.
func (s *LocalStore) Group(ctx context.Context, id []byte) (Group, error) {
	var g Group
	err := s.view(ctx, func(tx *Tx) (err error) {
		_, g, err = getGroup(tx, id)
		return err
	})
	return g, err
}

func isMember(members [][]byte, dev []byte) bool {
	return slices.ContainsFunc(members, func(m []byte) bool { return bytes.Equal(m, dev) })
}

func checkList(what string, list [][]byte) error {
	for i, k := range list {
		if err := checkLen(what, k, 1, MaxKeyLen); err != nil {
			return err
		}
		if isMember(list[:i], k) {
			return fmt.Errorf("store: %s listed twice: %w", what, ErrInvalidCommit)
		}
	}
	return nil
}

// Commit implements Store.
func (s *LocalStore) Commit(ctx context.Context, req CommitRequest) (CommitResult, error) {
	if err := errors.Join(checkLen("group id", req.Group, 1, MaxGroupIDLen),
		checkLen("committer", req.Committer, 1, MaxKeyLen),
		checkLen("commit", req.Message, 1, MaxMessageLen),
		checkLen("Welcome", req.Welcome, 0, MaxMessageLen),
		checkList("added device", req.Added), checkList("removed device", req.Removed)); err != nil {
		return CommitResult{}, err
	}
	if len(req.Added) > 0 && len(req.Welcome) == 0 {
		return CommitResult{}, fmt.Errorf("store: a commit that adds devices needs a Welcome: %w", ErrInvalidCommit)
	}
	hash := sha256.Sum256(req.Message)
	commitEnv := (&Envelope{Kind: KindCommit, Group: req.Group, Sender: req.Committer,
		Added: req.Added, Removed: req.Removed, Data: req.Message}).marshal()
	var welcomeEnv []byte
	if len(req.Added) > 0 {
		welcomeEnv = (&Envelope{Kind: KindWelcome, Group: req.Group, Sender: req.Committer,
			Added: req.Added, Removed: req.Removed, Data: req.Welcome}).marshal()
	}
	var res CommitResult
	err := s.update(ctx, func(tx *Tx) error {
		res = CommitResult{}
		gb, g, err := getGroup(tx, req.Group)
		if err != nil {
			return err
		}
		commits, err := gb.CreateBucket(keyCommits)
		if err != nil {
			return err
		}
		switch {
		case req.Epoch < g.Epoch:
			prev, err := commits.Get(SeqKey(req.Epoch))
			if err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			if bytes.Equal(prev, hash[:]) {
				res = CommitResult{Duplicate: true, Epoch: g.Epoch}
				return nil
			}
			return fmt.Errorf("store: commit for epoch %d, group is at epoch %d: %w", req.Epoch, g.Epoch, ErrStaleCommit)
		case req.Epoch > g.Epoch:
			return fmt.Errorf("store: commit for epoch %d, group is at epoch %d: %w", req.Epoch, g.Epoch, ErrWrongEpoch)
		}
		if !isMember(g.Members, req.Committer) {
			return ErrNotMember
		}
		for _, r := range req.Removed {
			if !isMember(g.Members, r) || bytes.Equal(r, req.Committer) {
				return fmt.Errorf("store: removed device is not a member or is the committer: %w", ErrInvalidCommit)
			}
		}
		for _, a := range req.Added {
			if isMember(g.Members, a) {
				return fmt.Errorf("store: added device is already a member: %w", ErrInvalidCommit)
			}
		}
		if n := len(g.Members) - len(req.Removed) + len(req.Added); n > s.limits.MaxGroupSize {
			return fmt.Errorf("store: group of %d devices exceeds the limit of %d: %w", n, s.limits.MaxGroupSize, ErrLimit)
		}
		for _, m := range g.Members {
			if bytes.Equal(m, req.Committer) {
				continue
			}
			if err := s.enqueue(tx, m, [][]byte{commitEnv}, &res.Overflowed); err != nil {
				return err
			}
		}
		for _, a := range req.Added {
			if err := s.enqueue(tx, a, [][]byte{welcomeEnv}, &res.Overflowed); err != nil {
				return err
			}
		}
		members := slices.DeleteFunc(slices.Clone(g.Members), func(m []byte) bool { return isMember(req.Removed, m) })
		g.Members = append(members, req.Added...)
		g.Epoch++
		if err := commits.Put(SeqKey(req.Epoch), hash[:]); err != nil {
			return err
		}
		res.Epoch = g.Epoch
		return gb.Put(keyGroup, g.marshal())
	})
	if err != nil {
		return CommitResult{}, err
	}
	return res, nil
}

// Send implements Store.
func (s *LocalStore) Send(ctx context.Context, req SendRequest) (SendResult, error) {
	if err := errors.Join(checkLen("group id", req.Group, 1, MaxGroupIDLen), checkLen("sender", req.Sender, 1, MaxKeyLen)); err != nil {
		return SendResult{}, err
	}
	// Encode on the caller's goroutine: the writer only seals and stores.
	envs := make([][]byte, len(req.Messages))
	for i, m := range req.Messages {
		if err := checkLen("message", m, 1, MaxMessageLen); err != nil {
			return SendResult{}, err
		}
		envs[i] = (&Envelope{Kind: KindApplication, Group: req.Group, Sender: req.Sender, Data: m}).marshal()
	}
	var res SendResult
	err := s.update(ctx, func(tx *Tx) error {
		res = SendResult{}
		_, g, err := getGroup(tx, req.Group)
		if err != nil {
			return err
		}
		if !isMember(g.Members, req.Sender) {
			return ErrNotMember
		}
		for _, m := range g.Members {
			if bytes.Equal(m, req.Sender) {
				continue
			}
			if err := s.enqueue(tx, m, envs, &res.Overflowed); err != nil {
				return err
			}
		}
		return nil
	})
	return res, err
}

// enqueue appends encoded envelopes to a device's queue. A full queue is
// marked overflowed and drops this and later messages instead of failing
// the sender; the device is then appended to overflowed once.
func (s *LocalStore) enqueue(tx *Tx, device []byte, envs [][]byte, overflowed *[][]byte) error {
	qb, err := tx.CreateBucket(bucketQueues, tx.Ident(domainDevice, device))
	if err != nil {
		return err
	}
	st, err := queueState(qb)
	if err != nil {
		return err
	}
	if st.Overflowed {
		return nil
	}
	mb, err := qb.CreateBucket(keyMessages)
	if err != nil {
		return err
	}
	added := false
	for _, e := range envs {
		if st.Len >= uint64(s.limits.MaxQueueLen) {
			st.Overflowed = true
			*overflowed = append(*overflowed, device)
			break
		}
		st.Last++
		st.Len++
		if err := mb.Put(SeqKey(st.Last), e); err != nil {
			return err
		}
		added = true
	}
	if added {
		dev := string(device)
		tx.OnCommit(func() { s.signals.notify(dev) })
	}
	return qb.Put(keyQueue, st.marshal())
}

func queueState(qb *Bucket) (QueueState, error) {
	v, err := qb.Get(keyQueue)
	if errors.Is(err, ErrNotFound) {
		return QueueState{}, nil
	}
	if err != nil {
		return QueueState{}, err
	}
	return parseQueueState(v)
}

// Fetch implements Store.
func (s *LocalStore) Fetch(ctx context.Context, device []byte, after uint64, limit, maxBytes int) ([]QueuedMessage, QueueState, error) {
	if limit <= 0 {
		limit = 1000
	}
	var out []QueuedMessage
	var st QueueState
	err := s.view(ctx, func(tx *Tx) error {
		qb := tx.Bucket(bucketQueues, tx.Ident(domainDevice, device))
		if qb == nil {
			return nil
		}
		var err error
		if st, err = queueState(qb); err != nil {
			return err
		}
		mb := qb.Bucket(keyMessages)
		if mb == nil || after == ^uint64(0) {
			return nil
		}
		size := 0
		c := mb.Cursor()
		for k, v, err := c.Seek(SeqKey(after + 1)); k != nil && len(out) < limit; k, v, err = c.Next() {
			if err != nil {
				return err
			}
			seq, ok := ParseSeqKey(k)
			if !ok {
				return fmt.Errorf("store: queue key %x: %w", k, ErrCorrupt)
			}
			e, err := parseEnvelope(v)
			if err != nil {
				return err
			}
			if maxBytes > 0 && len(out) > 0 && size+len(e.Data) > maxBytes {
				break
			}
			size += len(e.Data)
			out = append(out, QueuedMessage{Seq: seq, Envelope: e})
		}
		return nil
	})
	if err != nil {
		return nil, QueueState{}, err
	}
	return out, st, nil
}

// Ack implements Store.
func (s *LocalStore) Ack(ctx context.Context, device []byte, upTo uint64) error {
	return s.update(ctx, func(tx *Tx) error {
		qb := tx.Bucket(bucketQueues, tx.Ident(domainDevice, device))
		if qb == nil {
			return nil
		}
		mb := qb.Bucket(keyMessages)
		if mb == nil {
			return nil
		}
		st, err := queueState(qb)
		if err != nil {
			return err
		}
		var n uint64
		c := mb.KeyCursor()
		for k, _, err := c.First(); k != nil; k, _, err = c.Next() {
			if err != nil {
				return err
			}
			if seq, ok := ParseSeqKey(k); !ok || seq > upTo {
				break
			}
			if err := c.Delete(); err != nil {
				return err
			}
			n++
		}
		if n == 0 {
			return nil
		}
		st.Len -= min(n, st.Len)
		return qb.Put(keyQueue, st.marshal())
	})
}

// ClearOverflow implements Store.
func (s *LocalStore) ClearOverflow(ctx context.Context, device []byte) error {
	return s.update(ctx, func(tx *Tx) error {
		qb := tx.Bucket(bucketQueues, tx.Ident(domainDevice, device))
		if qb == nil {
			return nil
		}
		st, err := queueState(qb)
		if err != nil || !st.Overflowed {
			return err
		}
		st.Overflowed = false
		return qb.Put(keyQueue, st.marshal())
	})
}

// QueueSignal implements Store.
func (s *LocalStore) QueueSignal(device []byte) <-chan struct{} {
	return s.signals.wait(string(device))
}

// Secret implements Store.
func (s *LocalStore) Secret(ctx context.Context, name string, create func() ([]byte, error)) ([]byte, error) {
	var secret []byte
	get := func(tx *Tx) error {
		v, err := tx.Bucket(bucketSecrets).Get(tx.Ident(domainSecret, []byte(name)))
		if err == nil {
			secret = v
		}
		return err
	}
	err := s.view(ctx, get)
	if !errors.Is(err, ErrNotFound) {
		return secret, err
	}
	fresh, err := create()
	if err != nil {
		return nil, fmt.Errorf("store: creating secret %q: %w", name, err)
	}
	if len(fresh) == 0 || len(fresh) > MaxBlobLen {
		return nil, fmt.Errorf("store: secret %q of %d bytes", name, len(fresh))
	}
	stored := false
	err = s.update(ctx, func(tx *Tx) error {
		secret, stored = nil, false
		err := get(tx)
		if !errors.Is(err, ErrNotFound) {
			return err // another caller created it first, or a real error
		}
		secret, stored = fresh, true
		return tx.Bucket(bucketSecrets).Put(tx.Ident(domainSecret, []byte(name)), fresh)
	})
	if !stored {
		clear(fresh)
	}
	if err != nil {
		return nil, err
	}
	return secret, nil
}

// signals wakes fetchWait callers: one channel per device, closed (and
// replaced) when a message for it is durably queued.
type signals struct {
	mu sync.Mutex
	m  map[string]chan struct{}
}

func (s *signals) wait(dev string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, ok := s.m[dev]
	if !ok {
		ch = make(chan struct{})
		s.m[dev] = ch
	}
	return ch
}

func (s *signals) notify(dev string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ch, ok := s.m[dev]; ok {
		close(ch)
		delete(s.m, dev)
	}
}
