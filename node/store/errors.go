package store

import "errors"

// Errors returned by Open and OpenServer.
var (
	// ErrWrongPassphrase is returned by Open when the passphrase does not
	// derive the key the file was created with. The file itself is intact.
	ErrWrongPassphrase = errors.New("store: wrong passphrase")
	// ErrWrongKeyFile is returned by Open when the key file does not hold
	// the key the file was created with.
	ErrWrongKeyFile = errors.New("store: key file does not match the database")
	// ErrInUse is returned (wrapped, with the path) by Open when another
	// process holds the file's lock for longer than Options.Timeout.
	ErrInUse = errors.New("store: database is in use by another qpchat process")
	// ErrNewerVersion is returned (wrapped, with both versions) by Open when
	// the file was written by a newer qpchat with a later schema.
	ErrNewerVersion = errors.New("store: database was written by a newer qpchat")
)

// Errors returned by reads and writes.
var (
	// ErrCorrupt is returned when a header or a sealed value fails its
	// checks: damaged, truncated, tampered with or moved to another key.
	// A wrong key is reported as ErrWrongPassphrase/ErrWrongKeyFile instead.
	ErrCorrupt = errors.New("store: database corrupt or tampered with")
	// ErrNotFound is returned when a key, bucket or record does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrClosed is returned by operations on a closed database.
	ErrClosed = errors.New("store: database closed")
	// ErrUnavailable is returned (wrapped) by a cluster store's reads and
	// writes when its log has no quorum (this node is cut off from the
	// others, or too many are down) or does not answer in time. A write
	// that fails so is not done, or may yet be done if it reached the log
	// before the quorum was lost.
	ErrUnavailable = errors.New("store: the cluster has no quorum")
	// ErrReadOnly is returned by a write attempted inside View.
	ErrReadOnly = errors.New("store: write in a read-only transaction")
)

// Errors returned by Store methods.
var (
	// ErrExists is returned by CreateAccount, AddDevice and CreateGroup when
	// the name, device key or group id is already taken.
	ErrExists = errors.New("store: already exists")
	// ErrNotMember is returned by Commit and Send when the sender is not a
	// member of the group.
	ErrNotMember = errors.New("store: not a member of the group")
	// ErrStaleCommit is returned by Commit when another commit was already
	// accepted for the commit's epoch.
	ErrStaleCommit = errors.New("store: stale commit: another commit was accepted for this epoch")
	// ErrWrongEpoch is returned by Commit when the commit's epoch is ahead of
	// the group's current epoch.
	ErrWrongEpoch = errors.New("store: commit epoch is not the group's current epoch")
	// ErrInvalidCommit is returned by Commit when the added or removed
	// devices are inconsistent with the group's members.
	ErrInvalidCommit = errors.New("store: invalid commit")
	// ErrLimit is returned (wrapped, naming the limit) when a request would
	// exceed a configured Limits value.
	ErrLimit = errors.New("store: limit exceeded")
	// ErrRevoked is returned when a revoked device is used.
	ErrRevoked = errors.New("store: device revoked")
	// ErrStale is returned by ChangeAccount when the account changed
	// since the caller read it.
	ErrStale = errors.New("store: the account changed meanwhile")
)
