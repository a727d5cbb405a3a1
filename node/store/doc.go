// Package store is qpchat's storage: one bbolt file per role, every value
// encrypted and bound to where it lives, identifiers hidden behind HMACs,
// every acknowledged write on disk, and concurrent writers sharing fsyncs.
// It is the only package that imports bbolt.
//
// It has two layers.
//
// # The encrypted key-value layer (DB, Tx, Bucket, Cursor)
//
// Open opens or creates a file. The data key comes from a passphrase
// through Argon2id ([RFC 9106]; salt and parameters in a small plaintext
// header) or from a key file created with mode 0600; never from a flag.
// HKDF-SHA256 ([RFC 5869]) expands it into three separate keys: the
// XChaCha20-Poly1305 encryption key, the HMAC-SHA256 index key and a check
// value kept in the header, so that a wrong passphrase (ErrWrongPassphrase)
// is told apart from a damaged file (ErrCorrupt). The header also carries a
// SHA-256 of itself for the same reason.
//
//	db, err := store.Open(path, store.Options{Passphrase: pw, Schema: mySchema})
//	err = db.Update(func(tx *store.Tx) error {
//		b, err := tx.CreateBucket([]byte("groups"), tx.Ident("group", groupID))
//		if err != nil {
//			return err
//		}
//		return b.Put([]byte("state"), encodedState) // sealed to groups/<hmac>/state
//	})
//	err = db.View(func(tx *store.Tx) error {
//		v, err := tx.Bucket([]byte("groups"), tx.Ident("group", groupID)).Get([]byte("state"))
//		...
//	})
//
// Keys and bucket names are stored in clear; use Tx.Ident for anything that
// names a user, device or group. Values are sealed (seal.go) with a random
// nonce and associated data naming the bucket path and key, so a value
// moved elsewhere fails to open (ErrCorrupt) just like a flipped bit.
// Bucket.Append and SeqKey give queues whose cursor order is insertion
// order. Values returned by Get and cursors are copies, usable after the
// transaction.
//
// Schema and Migration: a file records its schema name and version (the
// number of migrations applied) in a sealed meta bucket. Open applies the
// pending migrations in order, in one transaction with the rest of the
// opening, and refuses a file from a newer schema (ErrNewerVersion) or of
// another schema name. A file held by another process is reported as
// ErrInUse ("... is in use by another qpchat process") after
// Options.Timeout, never a hang.
//
// # Durability and group commit
//
// DB.Update returns only after its transaction is committed and fsynced.
// One writer goroutine commits: every Update queued while a commit is in
// progress goes into the next transaction, which starts the moment the
// previous fsync ends (no timer, unlike bbolt's Batch), so N concurrent
// writers pay about one fsync, not N. A function that fails gets its error
// alone: if it failed before writing anything it is simply left out; if it
// had written, the batch is rolled back and run again without it.
// Consequently a write function may run more than once, but only after the
// transaction of its previous run was rolled back: a run whose writes were
// committed is never repeated, so no effect is applied twice, and a failed
// function never runs again. Write functions must set their results afresh
// on each run, should check before they write, and keep side effects for
// Tx.OnCommit, which runs after the durable commit.
// Reads (View) run in parallel with each other and with the writer.
//
// # The server's records (Store)
//
// Store is what node/server uses; it knows nothing of bbolt, so a backend
// on a distributed engine can replace LocalStore later. OpenServer opens
// the node's file with ServerSchema. Records are plain Go structs
// (Account, Device, KeyPackage, Group, Envelope, QueueState) with a
// compact, bounded binary encoding of our own (records.go), fuzzed.
//
//   - Accounts: CreateAccount (atomic create-if-absent, ErrExists),
//     Account, ReplaceAccount.
//   - Devices: AddDevice (device keys unique across users), Device (lookup
//     by key), Devices (per user), RevokeDevice (also deletes the device's
//     KeyPackages and queued messages).
//   - KeyPackages: PutKeyPackages (pool per device and suite, limited;
//     replaces the last resort), KeyPackageCount, FetchKeyPackages (one per
//     device, pool packages consumed atomically, then the last resort which
//     is never consumed; FetchedKeyPackage.Remaining tells the owner the pool
//     runs low), FetchedKeyPackage (which caller fetched which ref, for
//     matching a Welcome).
//   - Groups: CreateGroup (creator as the only member, ErrExists), Group,
//     Commit (first commit of the current epoch wins; stored with its
//     fan-out and Welcome in one transaction; resubmitting the same commit
//     bytes returns Duplicate; the Welcome's KeyPackageRefs must name
//     exactly the added devices through packages the committer fetched;
//     ErrStaleCommit, ErrWrongEpoch, ErrNotMember, ErrInvalidCommit,
//     ErrLimit), Send (a batch, to every member but the sender).
//   - Queues: per device, sequence numbers assigned in the fan-out's
//     transaction. A message for more than one device (a commit, a
//     Welcome, an application message to a group of three or more) is
//     stored once, as a shared body with a reference count, and each
//     queue holds a small reference to it; the last acknowledgement,
//     revocation, expiry or retention drop of a reference deletes the body
//     (bodies.go). Limits still count it per device, in full.
//     Fetch(after, limit, maxBytes) reads without deleting; a
//     damaged record is skipped, marked lost and listed in FetchResult.Lost
//     until acked (queues.go); Ack(upTo) deletes; a full queue is marked Overflowed (reported in
//     CommitResult/SendResult.Overflowed) and drops messages instead of
//     failing the sender, until ClearOverflow. QueueSignal gives fetchWait
//     a channel closed when the next message for a device is durable: take
//     it before Fetch, then wait on it if Fetch returned nothing.
//   - Secrets: Secret(name, create) returns a named secret, creating it
//     atomically on first use (QUIC stateless-reset and token keys, the
//     OPAQUE OPRF seed and server key pair).
//
// The Store methods validate lengths (MaxUserLen, MaxKeyLen, MaxGroupIDLen,
// MaxBlobLen, MaxMessageLen) but not meaning: signatures, certificates,
// MLS headers and Welcome matching are the server's job, done before it
// calls Commit.
//
// # Cluster replicas
//
// OpenCluster and OpenClusterServer open a node's copy (replica) of a
// cluster store instead: the same file format and Store, with every
// write also appended to a replicated log (Log; node/cluster implements
// it on NATS JetStream) under an expected-last-entry condition, and the
// other nodes' writes applied from it. kv_repl.go describes the
// guarantees: serialisable writes cluster-wide, reads that include every
// write acknowledged before they began, QueueSignal woken by other nodes'
// writes. NATS is not imported here, and none of it is in the browser
// build.
//
// # Caveats
//
// Rollback of the whole file is not detected. Every record authenticates
// on its own, so someone who can replace the file with an older copy of it
// (a backup, a snapshot) brings back old state, including consumed
// KeyPackages and acknowledged messages, and the store cannot tell. Only a
// counter kept outside the file (a TPM, another machine) could; qpchat has
// none.
//
// Keys, bucket names, sizes and the shape of the B+tree are visible: the
// file shows how many records of each kind exist, their approximate sizes,
// and, because queue keys are sequence numbers, how many messages each
// (HMAC-named) device has received. It does not show who. Shared bodies
// (bodies.go) show their sizes and the order they came in, and a queue
// entry's size tells a reference to a shared body (a message for
// several devices) from a message for that device alone; which devices
// reference a body is sealed.
//
// A queue entry or reference count damaged beyond reading cannot release
// its shared body: that body stays in the file, taking space but
// showing nothing, until the file is rebuilt.
//
// The passphrase and key file protect the file at rest only. While the
// process runs, the keys are in its memory.
//
// The file never shrinks; copy it with DB.Backup (or bbolt's compact tool
// offline) to reclaim space.
//
// [RFC 9106]: https://www.rfc-editor.org/rfc/rfc9106
// [RFC 5869]: https://www.rfc-editor.org/rfc/rfc5869
package store
