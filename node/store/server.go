package store

import (
	"context"
	"errors"
	"fmt"
	"time"
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
	BlobStore
	// CreateAccount stores a new account; ErrExists if the name is taken.
	CreateAccount(ctx context.Context, a Account) error
	// Account returns the account of user; ErrNotFound if none.
	Account(ctx context.Context, user string) (Account, error)
	// ReplaceAccount overwrites an existing account (re-registration with
	// new parameters); ErrNotFound if none.
	ReplaceAccount(ctx context.Context, a Account) error
	// ChangeAccount replaces an account's record and user key (a password
	// change) and, in the same transaction, the certificates of its
	// devices: certs must hold exactly one certificate for every
	// non-revoked device of a.User (ErrInvalid otherwise). ErrStale if
	// the account's user key is no longer oldKey (another change won).
	ChangeAccount(ctx context.Context, oldKey []byte, a Account, certs map[string][]byte) error
	// DeleteAccount revokes every device of user as RevokeDevice does and
	// deletes the account, its approvals and its first-device record, so
	// the name can be registered again from scratch; the revoked device
	// records stay (a device key is never reused). ErrNotFound if none.
	DeleteAccount(ctx context.Context, user string) error

	// AddDevice registers a device of an existing account: ErrNotFound
	// without the account, ErrExists if any user has that device key.
	AddDevice(ctx context.Context, d Device) error
	// Device looks a device up by its key; ErrNotFound if unknown.
	Device(ctx context.Context, key []byte) (Device, error)
	// Devices lists a user's devices, revoked ones included.
	Devices(ctx context.Context, user string) ([]Device, error)
	// RevokeDevice marks a device revoked and, in the same transaction,
	// deletes its KeyPackages and its queued messages; later messages for
	// it are dropped (its queue stays marked overflowed). Revoking twice
	// is not an error.
	RevokeDevice(ctx context.Context, key []byte) error

	// PutKeyPackages adds pool packages for a device and suite and, if
	// lastResort is not nil, replaces its last-resort package. It returns
	// the pool size after the upload. ErrLimit if the pool would exceed
	// Limits.MaxKeyPackages, ErrRevoked for a revoked device.
	PutKeyPackages(ctx context.Context, device []byte, suite uint16, pool []KeyPackage, lastResort *KeyPackage) (int, error)
	// KeyPackageCount returns the pool size of a device and suite.
	KeyPackageCount(ctx context.Context, device []byte, suite uint16) (int, error)
	// FirstDevice returns the key of the first device registered for
	// user (kept when it is revoked); ErrNotFound if none is known.
	FirstDevice(ctx context.Context, user string) ([]byte, error)
	// PutApproval stores an approval record of user's device approver for
	// user's device (both already checked by the caller), replacing the
	// record of the same pair; ErrLimit if user would have more than max
	// records, ErrNotFound without the account. Revoking a device deletes
	// no approvals.
	PutApproval(ctx context.Context, user string, device, approver, record []byte, max int) error
	// Approvals returns user's approval records and the number of damaged
	// ones left out.
	Approvals(ctx context.Context, user string) (records [][]byte, damaged int, err error)

	// FetchKeyPackages hands out one package per non-revoked device of
	// user for suite, consuming pool packages atomically (each is handed
	// out exactly once) and falling back to the last resort, which is
	// never consumed. Devices without any package are left out; ErrNotFound
	// if user has no account. It records which caller fetched which
	// KeyPackageRef (see FetchedKeyPackage and CommitRequest.KeyPackageRefs).
	FetchKeyPackages(ctx context.Context, caller []byte, user string, suite uint16) ([]FetchedKeyPackage, error)
	// FetchedKeyPackage returns the device and suite of a package that
	// caller fetched, by KeyPackageRef; ErrNotFound if caller never did.
	FetchedKeyPackage(ctx context.Context, caller, ref []byte) (device []byte, suite uint16, err error)
	// PruneFetched forgets the fetches made before the given time that no
	// commit used (a KeyPackage outlives its fetch by at most its
	// lifetime), and returns how many it forgot. It works in short
	// transactions, so it may run beside the node's traffic.
	PruneFetched(ctx context.Context, before time.Time) (int, error)

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
	// ErrWrongEpoch, ErrInvalidCommit (also for KeyPackageRefs that do not
	// match Added), ErrLimit.
	Commit(ctx context.Context, req CommitRequest) (CommitResult, error)
	// Send queues a batch of messages for every member but the sender, in
	// one transaction. ErrNotMember if the sender is not a member.
	Send(ctx context.Context, req SendRequest) (SendResult, error)

	// Fetch returns up to limit messages with sequence numbers after
	// after, stopping before maxBytes of messages with their stamps would
	// be exceeded (always at least one message). Nothing is deleted. limit ≤ 0 means
	// 1000, maxBytes ≤ 0 means no byte limit. A damaged record in the
	// range is not an error: its sequence number is in Lost (counted
	// against limit) until it is acknowledged.
	Fetch(ctx context.Context, device []byte, after uint64, limit, maxBytes int) (FetchResult, error)
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

// FetchResult is what Fetch returns.
type FetchResult struct {
	Messages []QueuedMessage
	// Lost are the sequence numbers, in order, of damaged queued records
	// in the range fetched: their messages are gone. They stay in the
	// queue until acknowledged, so the device is told until it acks past
	// them.
	Lost []uint64
	// Damaged counts the records this fetch found damaged for the first
	// time (the node reports each damaged record once).
	Damaged int
	Queue   QueueState
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
	// KeyPackageRefs are the Welcome's new_member KeyPackageRefs (RFC 9420,
	// Section 12.4.3.1). Each must name a KeyPackage the committer fetched
	// (FetchKeyPackages), and together they must name exactly the Added
	// devices. Accepting the commit forgets those fetches.
	KeyPackageRefs [][]byte
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
	bucketKeyPackages = []byte("keypackages")  // Ident(device) / suite / {"last" → KeyPackage, "count" → pool size, "pool" / seq → KeyPackage}
	bucketFetched     = []byte("kp-fetched")   // Ident(caller ‖ ref) → fetchRecord
	bucketGroups      = []byte("groups")       // Ident(group) / {"g" → Group, "c" / epoch → commit hash}
	bucketQueues      = []byte("queues")       // Ident(device) / {"s" → QueueState, "m" / seq → Envelope or bodyRef}
	bucketSecrets     = []byte("secrets")      // Ident(name) → secret
	bucketApprovals   = []byte("approvals")    // Ident(user) / Ident(approved ‖ approver) → approval record (migration 3)
	bucketFirstDevice = []byte("first-device") // Ident(user) → device key of the user's first device (migration 3)

	keyLast      = []byte("last")
	keyPool      = []byte("pool")
	keyCount     = []byte("count")
	keyGroup     = []byte("g")
	keyCommits   = []byte("c")
	keyQueue     = []byte("s")
	keyMessages  = []byte("m")
	serverBucket = [][]byte{bucketAccounts, bucketDevices, bucketUserDevices, bucketKeyPackages,
		bucketFetched, bucketGroups, bucketQueues, bucketSecrets}
)

const (
	domainUser     = "user"
	domainDevice   = "device"
	domainGroup    = "group"
	domainFetched  = "kp-fetched"
	domainSecret   = "secret"
	domainApproval = "approval"
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
		{Name: "fetch records carry their time", Apply: stampFetchRecords},
		{Name: "device approvals and first devices", Apply: recordFirstDevices},
		{Name: "key transitions carry both signatures", Apply: dropTransitionsV1},
		{Name: "shared message bodies", Apply: createBodyBuckets},
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
		checkLen("user key", a.UserKey, 0, MaxKeyLen), a.checkTransitions())
}

func (a *Account) checkTransitions() error {
	if len(a.Transitions) > MaxTransitions {
		return fmt.Errorf("store: %d key transitions, at most %d: %w", len(a.Transitions), MaxTransitions, ErrLimit)
	}
	for _, t := range a.Transitions {
		if len(t) != TransitionLen {
			return fmt.Errorf("store: key transition of %d bytes: %w", len(t), ErrInvalid)
		}
	}
	return nil
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
