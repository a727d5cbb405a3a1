package client

// Which devices of another user an inviter adds (docs/PROTOCOL.md,
// "Device approval"). The user key is derived from the password, so a
// device certificate proves only that its maker knew the password: a
// thief who learns it can register a device that every certificate check
// accepts. Adding every certified device would turn a leaked password
// into silent access to every new group the user is invited to.
//
// So an inviter adds a device of another user only when it is trusted:
//
//   - the user's first device is trusted (the node records it when the
//     account's first device is registered, with the account);
//   - a device is trusted when an approval record by a trusted device
//     names it, its signature verifies for the user, and the device's
//     KeyPackage verifies (certificate under the pinned user key, not
//     revoked at the node).
//
// Trust passes through the first device even when it is revoked: then
// the devices it approved are the roots (its approvals stay valid though
// it is no longer added). Any other approver must itself be a live,
// certified device, so revoking a device cuts off what it approved unless
// another trusted device approved that too. A device certified with the
// password alone is skipped and the inviter is told.
//
// The first device is what the node says it is, and the approvals are
// what it stores: a node colluding with a password thief can name the
// thief's device as the first one. And a thief holding the password AND
// an approved device's key can approve more devices, which the user's
// other devices then approve too (approvals.go): the user must revoke
// those devices as well as the stolen one.

import (
	"bytes"
	"crypto/ed25519"

	"qpchat/node/proto"
)

// SkippedDevices are devices of a user that an invite (or fetch-key) left
// out because no chain of approvals from the user's first device reaches
// them.
type SkippedDevices struct {
	User    string
	Devices [][]byte
	// NoRoot: the node names no first device for the user (an account
	// that had several devices before the node recorded first devices),
	// so no device of it can be trusted.
	NoRoot bool
}

// trustedDevices returns the devices of user reachable from first
// through valid approval records, among the devices in certified (those
// whose KeyPackages verified): the first device itself and every device
// an already trusted device approved. Records that do not parse or whose
// signature does not verify for user are ignored. The result holds
// device keys as strings; first is in it only if it is certified.
func trustedDevices(user string, first []byte, approvals [][]byte, certified map[string]bool) map[string]bool {
	trusted := map[string]bool{}
	if len(first) != ed25519.PublicKeySize {
		return trusted
	}
	byApprover := map[string][]*proto.Approval{}
	for _, r := range approvals {
		a, err := proto.ParseApproval(r)
		if err != nil || bytes.Equal(a.Device, a.Approver) {
			continue
		}
		byApprover[string(a.Approver)] = append(byApprover[string(a.Approver)], a)
	}
	// Breadth-first from the first device. Each device is visited once,
	// and a signature is checked only when its approver is trusted.
	reached := map[string]bool{string(first): true}
	queue := []string{string(first)}
	for len(queue) > 0 {
		x := queue[0]
		queue = queue[1:]
		for _, a := range byApprover[x] {
			d := string(a.Device)
			if reached[d] || !certified[d] || !a.Verify(user) {
				continue
			}
			reached[d] = true
			queue = append(queue, d)
		}
	}
	for d := range reached {
		if certified[d] {
			trusted[d] = true
		}
	}
	return trusted
}
