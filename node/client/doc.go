// Package client is the library `qpchat client` drives: the account
// (OPAQUE registration and login, RFC 9807, with channel-binding proofs),
// the user key derived from OPAQUE's export_key, devices and their
// certificates, pinned user keys of other users, KeyPackage upkeep, MLS
// groups (RFC 9420, through qpchat/mls) and the sync loop that applies
// what the node delivers. DESIGN.md's "Protocol" section is its
// specification; node/proto holds the encodings it shares with the node.
//
// The node is trusted to deliver, never with identity: every leaf that
// enters a group (Add, Update, Welcome tree, KeyPackage) must carry a
// device certificate that verifies under the user's pinned user key
// (pinned on first contact, shown as a safety number; a changed key is
// refused until accepted), and every delivery's sender stamp and declared
// membership change must agree with what MLS says.
//
// State lives in one encrypted bbolt file per profile (node/store): the
// profile, pinned keys, the private keys of every unused KeyPackage, each
// group's MLS state with any pending commit, the message history and the
// sequence number of the last applied delivery. Deliveries are applied,
// stored with that sequence number in one transaction, and only then
// acknowledged, so a crash loses nothing and applies nothing twice.
//
// The node's API is reached through the Entry, LoginSession and Session
// interfaces; RPCEntry implements them over Cap'n Proto (package rpc).
//
// # Caveats
//
//   - Nothing protects against rolling the whole state file back to an
//     older copy: the client would then see old group states, and the
//     node's queue would no longer hold the messages in between.
//   - A Client is not safe for concurrent use. Live (live.go), the
//     reconnecting session chat uses, owns its Client on one goroutine;
//     only WaitForDelivery and GroupName run beside it.
//   - A device of the user joins groups only once approved by one of the
//     user's devices (approvals.go); another user's Invite still adds
//     every device the node lists for the user, since approvals are
//     known only to the user's own devices.
//   - Group names are local; an invited member learns the name the
//     inviter chose from a message sent right after the Add, and renames
//     it if the name is taken locally.
//   - A device whose queue at the node overflowed has lost messages: Sync
//     reports it once, acknowledges the queue and clears the node's mark,
//     but groups whose commits were lost stay broken until a member
//     removes and re-invites the device (`remove`, then `invite`); nothing
//     does that automatically.
//   - A device leaves a group by proposing its own removal, which another
//     member's client commits (leave.go); a group whose other members
//     never sync keeps the leave pending.
//   - Every sync applies the queue in order, so it joins every group
//     whose Welcome it meets; Invites lists only Welcomes not yet
//     applied, and Decline joins and then leaves.
//   - The history (History) is kept until logout, without a cap.
//   - Only Ed25519 cipher suites (0x0001, 0x0003, 0xFA01, 0xFA02) can be
//     used, since the device key is the MLS signature key.
package client
