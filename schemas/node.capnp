# node.capnp: the wire schema between a qpchat client and a qpchat node.
#
# Cap'n Proto RPC runs on one bidirectional QUIC stream per connection
# (ALPN "qpchat/1", TLS 1.3). The bootstrap capability is NodeService.
# Its unauthenticated methods (ping, OPAQUE registration and login, device
# authentication) hand out a Session capability bound to the connection;
# everything else is a method of Session. Await a Session before calling
# it (no promise pipelining, go-capnp #604).
#
# docs/PROTOCOL.md gives every method's semantics, the byte encodings the
# signatures and proofs cover, and the error codes: an error's reason
# starts with "qpchat <code>: " (see node/proto).
#
# Every Data field holding an MLS structure is an RFC 9420 MLSMessage.
# Device keys are 32-byte Ed25519 public keys; group ids are 32 bytes.
@0x8b7e1e71e8493249;

using Go = import "/go.capnp";
$Go.package("rpc");
$Go.import("qpchat/rpc");

interface NodeService {
  # The unauthenticated entry point of a node.

  ping @0 (nonce :UInt64) -> (nonce :UInt64, version :Text);
  # Echoes nonce and names the node's software version. It needs no
  # authentication and is what `qpchat client ping` calls.

  registerStart @1 (user :Text, request :Data, inviteToken :Text) -> (response :Data, ksf :Data);
  # OPAQUE registration, first half (RFC 9807 Section 5): request is a
  # RegistrationRequest; response the RegistrationResponse and ksf the
  # key-stretching parameters the client must use (opaque.ParseKSF). An
  # existing (normalised) name is refused before the OPRF is evaluated.
  # inviteToken (added later, last ordinal) is the single-use token of
  # `qpchat serve invite-token`, needed when the node runs with
  # --registration invite (and used up by registerFinish); a node with
  # --registration closed refuses every registration (CodeForbidden).

  registerFinish @2 (record :Data, userKey :Data) -> (session :Session);
  # OPAQUE registration, second half, on the connection that called
  # registerStart: record is the RegistrationRecord, userKey the Ed25519
  # user public key derived from export_key. Creates the account
  # atomically (fails if the name was taken meanwhile) and returns a
  # login Session.

  loginStart @3 (user :Text, ke1 :Data) -> (ke2 :Data, ksf :Data);
  # OPAQUE login, first half: KE1 in, KE2 and the record's key-stretching
  # parameters out. Unknown names get a fake KE2 of the same shape and
  # the default parameters. Rate-limited per name and per address by
  # delaying the answer, never by refusing.

  loginFinish @4 (ke3 :Data, proof :Data) -> (session :Session, proof :Data);
  # OPAQUE login, second half, on the connection that called loginStart.
  # The client's proof is HMAC(cbKey, "client" ‖ exporter); the server
  # checks KE3 and the proof and answers with HMAC(cbKey, "server" ‖
  # exporter), which the client must check before using the Session.
  # cbKey = HKDF-Expand(session_key, "qpchat cb v1", 32) (SHA-512).

  authenticateDevice @5 (user :Text, device :Data, signature :Data) -> (session :Session);
  # Device authentication: signature is the device key's
  # SignWithLabel("qpchat DeviceAuth v1", DeviceAuth{exporter, user,
  # device, SHA-256(server SPKI)}). Returns a device Session.
}

interface Session {
  # A login Session (from registration or OPAQUE login) may call info,
  # userKey and the device methods, and expires after ten minutes. A
  # device Session may call everything but registerDevice and
  # revokeDevice. Both end with their connection, and a device Session
  # ends when its device is revoked.

  info @0 () -> (user :Text, kind :SessionKind, device :Data, expiresAt :Int64);
  # Who this session is; expiresAt is Unix milliseconds, 0 for never.

  userKey @1 (user :Text) -> (key :Data);
  # The published Ed25519 user key of any user (clients pin it).

  registerDevice @2 (device :Data, certificate :Data, proof :Data) -> ();
  # Login Session only. Adds a device of the session's user: certificate
  # is the user key's signature over DeviceCert{user, device}, proof the
  # device key's SignWithLabel("qpchat DeviceRegister v1",
  # DeviceAuth{exporter, user, device, SHA-256(server SPKI)}).

  listDevices @3 () -> (devices :List(DeviceInfo));
  # The session user's devices, revoked ones included.

  revokeDevice @4 (device :Data) -> ();
  # Login Session only. Revokes one of the user's devices: its sessions
  # end and its KeyPackages are deleted. Revoking twice is not an error.

  uploadKeyPackages @5 (suite :UInt16, packages :List(Data), lastResort :Data) -> (poolSize :UInt32);
  # Device Session only. Adds KeyPackages (MLSMessages) of this device
  # for suite to its pool and, if lastResort is not empty, replaces its
  # last-resort package. Every package is validated.

  keyPackageCount @6 (suite :UInt16) -> (poolSize :UInt32);
  # Device Session only. This device's pool size for suite.

  fetchKeyPackages @7 (user :Text, suite :UInt16) -> (packages :List(FetchedKeyPackage), approvals :List(Data), firstDevice :Data);
  # Device Session only. One KeyPackage per non-revoked device of user,
  # each pool package handed out once; the last resort when a pool is
  # empty. Rate-limited per (calling device, user). approvals and
  # firstDevice (appended later, ordinals 1 and 2) are what an inviter
  # needs to add only the devices the user approved: the approval
  # records the user's devices published (publishApproval) for devices
  # that are not revoked (by devices that are not revoked, or by the
  # first device), and the key of the user's first registered
  # device, the root of those approvals (empty when the node cannot
  # tell: an account that had several devices before the node kept it).

  createGroup @8 (group :Data) -> ();
  # Device Session only. Creates a group (32-byte id) whose only member
  # is this device; fails if the id exists.

  groupInfo @9 (group :Data) -> (epoch :UInt64, members :List(Data));
  # Device Session only, members only: the epoch a commit must carry and
  # the member device keys.

  commit @10 (group :Data, message :Data, added :List(Data), removed :List(Data), welcome :Data)
      -> (epoch :UInt64, duplicate :Bool, overflowed :List(Data));
  # Device Session only, members only. message is the Commit; added and
  # removed are the device keys it adds and removes; welcome is the
  # Welcome for the added devices (required iff added is not empty).
  # Returns after the commit is durable; epoch is the group's new epoch.

  send @11 (group :Data, messages :List(Data)) -> (overflowed :List(Data));
  # Device Session only, members only: application messages or proposals
  # for every other member, durable when it returns. overflowed lists
  # devices whose queues were full (marked, not an error).

  fetch @12 (after :UInt64, limit :UInt32) -> (messages :List(QueuedMessage), queue :QueueState, keyPackagesLow :List(UInt16), lost :List(UInt64));
  # Device Session only. Messages of this device's queue with sequence
  # numbers greater than after, at most limit (0: the server's maximum),
  # without deleting them. lost (appended later, ordinal 3): sequence
  # numbers in the range whose records were damaged in the node's store;
  # their messages are gone. They count against limit and are reported
  # until acknowledged; ack past them.

  fetchWait @13 (after :UInt64, limit :UInt32, timeoutMillis :UInt32) -> (messages :List(QueuedMessage), queue :QueueState, keyPackagesLow :List(UInt16), lost :List(UInt64));
  # Like fetch, but when there is nothing after `after` (no message and
  # nothing lost) it waits until a message arrives or timeoutMillis passes
  # (capped by the server), then returns what there is (possibly nothing).
  # One at a time per session.

  ack @14 (upTo :UInt64) -> ();
  # Device Session only. Deletes every queued message with sequence ≤
  # upTo, durably when it returns.

  clearOverflow @15 () -> ();
  # Device Session only. Lets an overflowed queue accept messages again;
  # call it after acknowledging everything, then get re-added.

  createBlob @16 (size :UInt64) -> (id :Data, chunkSize :UInt32, expiresAt :Int64);
  # Device Session only. Starts the upload of a file of size bytes (the
  # client's ciphertext; the node learns nothing else): id is 32 random
  # bytes, chunkSize the size of every putBlob chunk but the last,
  # expiresAt (Unix ms) when the node deletes it. size counts against the
  # user's quota until then (--max-file-size, --file-quota, --file-ttl).

  putBlob @17 (id :Data, offset :UInt64, data :Data) -> (received :UInt64);
  # Device Session only, the uploading user's devices only. Appends one
  # chunk at offset, which must be the bytes received so far (a client
  # that lost an answer learns the right offset from the invalid error).

  getBlob @18 (id :Data, offset :UInt64, length :UInt32) -> (data :Data, size :UInt64);
  # Device Session only. Up to length bytes (at most one chunk) of a
  # complete, unexpired file from offset; size is the file's size.
  # Whoever knows the id may read: it travels only inside MLS messages.

  publishApproval @19 (approval :Data) -> ();
  # Device Session only. Stores an approval record (docs/PROTOCOL.md,
  # "Device approval") by which this device approves another device of
  # its user: approved ‖ approver ‖ SignWithLabel(approver's key,
  # "qpchat DeviceApproval v1", user ‖ approved ‖ approver). The approver
  # must be the calling device, the approved device another non-revoked
  # device of the same user, and the signature must verify. Publishing
  # the same pair again is not an error. Bounded per user (CodeLimit).
  # fetchKeyPackages hands the records to inviters.

  changePasswordStart @20 (request :Data) -> (response :Data, ksf :Data);
  # Login Session only (the old password opened it). OPAQUE registration,
  # first half (RFC 9807, Section 5.2), for the session's own user: the
  # response to a RegistrationRequest made with the new password, and
  # the key-stretching parameters. Nothing changes yet. Rate-limited
  # like registerStart.

  changePassword @21 (record :Data, userKey :Data, transition :Data, certificates :List(Data)) -> ();
  # Login Session only. Atomically replaces the session user's OPAQUE
  # record and user key and re-certifies every non-revoked device. record
  # is the RegistrationRecord made with the new password, userKey the
  # Ed25519 key its export_key derives, transition the key-transition
  # statement oldKey ‖ newKey ‖ seq ‖ oldSignature ‖ newSignature (200
  # bytes, signed by both keys, docs/PROTOCOL.md "Changing the password";
  # oldKey must be the current user key and seq the account's next
  # number, else CodeStale), certificates one device key ‖ new
  # certificate (96 bytes) for each non-revoked device. The transition
  # is kept and served by keyTransitions (the newest MaxTransitions).

  keyTransitions @22 (user :Text) -> (transitions :List(Data));
  # Any Session. The key-transition statements of user, oldest first
  # (bounded, docs/PROTOCOL.md "Changing the password"), so a contact who
  # pinned an older key can follow the chain to the one userKey returns.

  deleteAccount @23 () -> ();
  # Login Session only. Revokes every device of the session's user (their
  # sessions end, KeyPackages, queues and approvals are deleted) and
  # deletes the account; the name can be registered again, by anyone,
  # with a new key, which contacts see as a changed key.
}

enum SessionKind {
  login @0;
  device @1;
}

struct DeviceInfo {
  key @0 :Data;
  certificate @1 :Data;
  revoked @2 :Bool;
}

struct FetchedKeyPackage {
  device @0 :Data;
  keyPackage @1 :Data;
  lastResort @2 :Bool;
}

enum MessageKind {
  application @0;  # from send: application message or proposal
  commit @1;       # a commit, to the members before it
  welcome @2;      # a Welcome, to the devices the commit added
}

struct QueuedMessage {
  seq @0 :UInt64;
  group @1 :Data;
  sender @2 :Data;            # the authenticated sending device (stamp)
  kind @3 :MessageKind;
  added @4 :List(Data);       # declared adds of a commit or Welcome
  removed @5 :List(Data);     # declared removes of a commit or Welcome
  message @6 :Data;           # the MLSMessage
}

struct QueueState {
  length @0 :UInt64;          # messages waiting (not acknowledged)
  last @1 :UInt64;            # highest sequence number ever assigned
  overflowed @2 :Bool;        # messages were dropped: get re-added
}
