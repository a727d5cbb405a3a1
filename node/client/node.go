package client

import (
	"context"
	"crypto/rand"
	"errors"
	"time"
)

var randReader = rand.Reader

// Session is the node as one authenticated device sees it: a device
// Session of DESIGN.md's protocol. The rpc adapter implements it over Cap'n
// Proto; tests implement it in memory. Methods return ErrStale,
// ErrUnknownUser and ErrNotMember (wrapped) where they apply, so the client
// can branch on them.
type Session interface {
	// UploadKeyPackages adds KeyPackages (serialized MLSMessages) to this
	// device's pool for suite and, when lastResort is not nil, replaces
	// its last-resort package. It returns the pool size after the upload.
	UploadKeyPackages(ctx context.Context, suite uint16, pool [][]byte, lastResort []byte) (int, error)
	// KeyPackageCount returns the size of this device's pool for suite.
	KeyPackageCount(ctx context.Context, suite uint16) (int, error)
	// FetchKeyPackages returns one KeyPackage per device of user for
	// suite, with the user's published device approvals and first device.
	FetchKeyPackages(ctx context.Context, user string, suite uint16) (*KeyPackages, error)
	// PublishApproval stores an approval record signed by this device at
	// the node, for inviters (docs/PROTOCOL.md, "Device approval").
	PublishApproval(ctx context.Context, approval []byte) error
	// UserKey returns the user key the server publishes for user.
	UserKey(ctx context.Context, user string) ([]byte, error)
	// Devices lists the devices of this session's user.
	Devices(ctx context.Context) ([]DeviceInfo, error)
	// CreateGroup registers a new group with this device as its only member.
	CreateGroup(ctx context.Context, group []byte) error
	// Commit submits a commit with the devices it adds and removes and the
	// Welcome for the added ones. ErrStale when another commit of the
	// epoch was accepted first.
	Commit(ctx context.Context, req CommitRequest) error
	// Send submits application messages (or proposals) to a group.
	Send(ctx context.Context, group []byte, msgs [][]byte) error
	// Fetch returns queued deliveries with sequence numbers after after,
	// waiting up to wait for one to arrive when there are none (0: no
	// wait, as fetch; otherwise fetchWait).
	Fetch(ctx context.Context, after uint64, limit int, wait time.Duration) (*FetchResult, error)
	// Ack deletes the queued deliveries up to upTo.
	Ack(ctx context.Context, upTo uint64) error
	// ClearOverflow clears this device's overflow mark, so that the node
	// queues messages for it again.
	ClearOverflow(ctx context.Context) error
}

// Errors a Session returns (wrapped) that the client branches on.
var (
	// ErrStale: another commit was accepted for the epoch first.
	ErrStale = errors.New("client: commit refused as stale")
	// ErrUnknownUser: the node has no such user.
	ErrUnknownUser = errors.New("client: unknown user")
	// ErrNotMember: the device is not a member of the group at the node.
	ErrNotMember = errors.New("client: not a member of the group")
)

// FetchedKeyPackage is one device's KeyPackage as the node hands it out.
type FetchedKeyPackage struct {
	Device     []byte // the device key the node says it belongs to
	KeyPackage []byte // MLSMessage(KeyPackage)
	LastResort bool
}

// KeyPackages is what the node hands out for one user: a KeyPackage per
// device, and what an inviter needs to tell the devices the user approved
// from those certified with the password alone.
type KeyPackages struct {
	Packages []FetchedKeyPackage
	// Approvals are the approval records the user's devices published
	// (proto.Approval encoding), unverified.
	Approvals [][]byte
	// FirstDevice is the key of the user's first registered device, the
	// root of its approvals; nil when the node names none.
	FirstDevice []byte
}

// DeviceInfo describes a device of a user as the node lists it.
type DeviceInfo struct {
	Key         []byte
	Certificate []byte
	Revoked     bool
}

// CommitRequest is a commit for the node.
type CommitRequest struct {
	Group   []byte
	Commit  []byte
	Welcome []byte
	Added   [][]byte // device keys
	Removed [][]byte // device keys
}

// DeliveryKind says what a queued delivery is.
type DeliveryKind uint8

// Kinds of Delivery.
const (
	DeliveryApplication DeliveryKind = 1 // application message or proposal
	DeliveryCommit      DeliveryKind = 2
	DeliveryWelcome     DeliveryKind = 3
)

// FetchResult is what a fetch returns.
type FetchResult struct {
	Deliveries []Delivery
	// LowSuites are the suites whose KeyPackage pool runs low.
	LowSuites []uint16
	// Overflowed: the queue was full and messages were dropped; this
	// device must be re-added to its groups.
	Overflowed bool
	// Last is the highest sequence number the node ever assigned in
	// this device's queue (QueueState.last): while the deliveries end
	// below it, more may wait, since the node cuts answers by size.
	Last uint64
	// Lost are sequence numbers whose records were damaged at the node:
	// those messages are gone. The client reports them and acks past
	// them (docs/PROTOCOL.md, "Damaged queued records").
	Lost []uint64
}

// Delivery is one message from this device's queue with the node's stamp.
type Delivery struct {
	Seq     uint64
	Kind    DeliveryKind
	Group   []byte
	Sender  []byte   // device key of the authenticated sender
	Added   [][]byte // declared by the committer (commit, Welcome)
	Removed [][]byte
	Data    []byte // MLSMessage
}
