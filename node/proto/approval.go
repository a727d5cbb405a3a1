package proto

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
)

// Device approval records (docs/PROTOCOL.md, "Device approval"). The user
// key is derived from the password, so whoever learns the password can
// certify a device; an approval record is how one of the user's devices
// vouches for another. Clients send them in their groups and publish them
// to the node (Session.publishApproval), which hands them to inviters with
// the user's KeyPackages.
//
// Encoding (the client's state-record layout: a format byte, then byte
// strings each prefixed by a big-endian uint32 length):
//
//	approval  = 0x01 ‖ len32 ‖ approved ‖ len32 ‖ approver ‖ len32 ‖ signature
//	signature = SignWithLabel(approver's device key, "qpchat DeviceApproval v1", content)
//	content   = 0x01 ‖ len32 ‖ user ‖ len32 ‖ approved ‖ len32 ‖ approver
//
// (RFC 9420, Section 5.1.2, SignWithLabel). approved and approver are
// Ed25519 device keys, user the normalised user name.

// LabelDeviceApproval is the SignWithLabel label of approval records.
const LabelDeviceApproval = "qpchat DeviceApproval v1"

// approvalFormat is the format byte of approval records and contents.
const approvalFormat = 1

// ApprovalLen is the length of every well-formed approval record.
const ApprovalLen = 1 + 3*4 + 2*ed25519.PublicKeySize + ed25519.SignatureSize

// Approval is one device's approval of another device of the same user.
type Approval struct {
	Device    []byte // the approved device key
	Approver  []byte // the approving device key
	Signature []byte // SignWithLabel over ApprovalContent
}

// ErrMalformedApproval is returned by ParseApproval.
var ErrMalformedApproval = errors.New("proto: malformed approval record")

func addLen32(b *cryptobyte.Builder, v []byte) {
	b.AddUint32LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(v) })
}

// Marshal encodes the record.
func (a *Approval) Marshal() []byte {
	return build(func(b *cryptobyte.Builder) {
		b.AddUint8(approvalFormat)
		addLen32(b, a.Device)
		addLen32(b, a.Approver)
		addLen32(b, a.Signature)
	})
}

// ParseApproval decodes a record. It accepts exactly the encoding Marshal
// writes for two Ed25519 keys and an Ed25519 signature (ApprovalLen bytes,
// no trailing data), so a successful parse re-marshals to the same bytes;
// it does not check the signature (Verify does).
func ParseApproval(b []byte) (*Approval, error) {
	if len(b) != ApprovalLen {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrMalformedApproval, len(b), ApprovalLen)
	}
	s := cryptobyte.String(b)
	var format uint8
	var a Approval
	if !s.ReadUint8(&format) || format != approvalFormat ||
		!readLen32(&s, &a.Device, ed25519.PublicKeySize) ||
		!readLen32(&s, &a.Approver, ed25519.PublicKeySize) ||
		!readLen32(&s, &a.Signature, ed25519.SignatureSize) || !s.Empty() {
		return nil, ErrMalformedApproval
	}
	return &a, nil
}

// readLen32 reads a uint32-prefixed byte string of exactly n bytes.
func readLen32(s *cryptobyte.String, out *[]byte, n int) bool {
	var l uint32
	var v []byte
	if !s.ReadUint32(&l) || l != uint32(n) || !s.ReadBytes(&v, n) {
		return false
	}
	*out = bytes.Clone(v)
	return true
}

// ApprovalContent is the content an approval's signature covers.
func ApprovalContent(user string, device, approver []byte) []byte {
	return build(func(b *cryptobyte.Builder) {
		b.AddUint8(approvalFormat)
		addLen32(b, []byte(user))
		addLen32(b, device)
		addLen32(b, approver)
	})
}

// SignApproval makes the approval of device by the device whose private
// key is approver, for user.
func SignApproval(approver ed25519.PrivateKey, user string, device []byte) *Approval {
	pub := approver.Public().(ed25519.PublicKey)
	return &Approval{Device: bytes.Clone(device), Approver: bytes.Clone(pub),
		Signature: SignWithLabel(approver, LabelDeviceApproval, ApprovalContent(user, device, pub))}
}

// Verify checks the record's signature for user. It says nothing about
// whether the approver is trusted.
func (a *Approval) Verify(user string) bool {
	return VerifyWithLabel(a.Approver, LabelDeviceApproval, ApprovalContent(user, a.Device, a.Approver), a.Signature)
}
