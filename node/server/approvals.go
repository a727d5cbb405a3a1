package server

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"

	"qpchat/node/proto"
	"qpchat/node/store"
	"qpchat/rpc"
)

// Device approvals (docs/PROTOCOL.md, "Device approval"). A device
// publishes the approval records it signs; fetchKeyPackages hands them,
// with the user's first device, to inviters, who add only the devices
// reachable from the first device through valid approvals. The node
// checks what it can so that its store holds only records of the user's
// own devices, but it is not trusted with them: inviters verify every
// signature again.

// maxApprovals bounds the approval records of one user: as many as its
// device records may number. A user's devices approve each other at most
// once per pair, and the same pair again replaces its record.
func maxApprovals(maxDevices int) int { return maxDeviceRecords(maxDevices) }

// PublishApproval implements Session.publishApproval.
func (s *session) PublishApproval(ctx context.Context, call rpc.Session_publishApproval) error {
	done, err := s.enter("publishApproval")
	if err != nil {
		return err
	}
	defer done()
	call.Go()
	srv := s.c.srv
	raw, err := call.Args().Approval()
	if err != nil {
		return proto.Errorf(proto.CodeInvalid, "publishApproval: reading the approval: %v", err)
	}
	a, err := proto.ParseApproval(raw)
	if err != nil {
		return proto.Errorf(proto.CodeInvalid, "publishApproval: %v", err)
	}
	if !bytes.Equal(a.Approver, s.device) {
		return proto.Errorf(proto.CodeForbidden, "publishApproval: the approver is not this session's device; a device publishes only its own approvals")
	}
	if bytes.Equal(a.Device, a.Approver) {
		return proto.Errorf(proto.CodeInvalid, "publishApproval: a device cannot approve itself")
	}
	self, err := srv.store.Device(ctx, s.device)
	if err != nil {
		return s.storeErr("publishApproval", err)
	}
	if self.Revoked {
		return proto.Errorf(proto.CodeForbidden, "publishApproval: this device is revoked")
	}
	d, err := srv.store.Device(ctx, a.Device)
	if errors.Is(err, store.ErrNotFound) {
		return proto.Errorf(proto.CodeNotFound, "publishApproval: no device %s is registered", deviceFingerprint(a.Device))
	}
	if err != nil {
		return s.storeErr("publishApproval", err)
	}
	if d.User != s.user {
		return proto.Errorf(proto.CodeForbidden, "publishApproval: device %s belongs to another user", deviceFingerprint(a.Device))
	}
	if d.Revoked {
		return proto.Errorf(proto.CodeNotAcceptable, "publishApproval: device %s is revoked", deviceFingerprint(a.Device))
	}
	if !a.Verify(s.user) {
		return proto.Errorf(proto.CodeAuth, "publishApproval: the signature does not verify under this device's key for this user")
	}
	max := maxApprovals(srv.cfg.Limits.MaxDevices)
	err = srv.store.PutApproval(ctx, s.user, a.Device, a.Approver, a.Marshal(), max)
	if errors.Is(err, store.ErrLimit) {
		return proto.Errorf(proto.CodeLimit, "publishApproval: the user has %d approval records, the limit (32 × --max-devices)", max)
	}
	if err != nil {
		return s.storeErr("publishApproval", err)
	}
	s.c.log.Info("device approval published")
	return nil
}

// approvalsFor returns what fetchKeyPackages adds for user: the approval
// records that can matter to an inviter (node/client devicetrust.go) and
// the first device's key (nil if the node knows none). A record matters
// when the approved device is not revoked (a revoked device is never
// added) and its approver is not revoked or is the first device (whose
// approvals outlive it; other revoked approvers are ignored by
// inviters). So an answer holds at most active × (active + 1) records,
// whatever the revoked devices left behind.
func (s *Server) approvalsFor(ctx context.Context, user string) (records [][]byte, first []byte, err error) {
	first, err = s.store.FirstDevice(ctx, user)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, nil, err
	}
	all, damaged, err := s.store.Approvals(ctx, user)
	if err != nil {
		return nil, nil, err
	}
	if damaged > 0 {
		s.log.Warn("damaged approval records left out of a KeyPackage fetch", "count", damaged)
	}
	if len(all) == 0 {
		return nil, first, nil
	}
	devs, err := s.store.Devices(ctx, user)
	if err != nil {
		return nil, nil, err
	}
	active := make(map[string]bool, len(devs))
	for _, d := range devs {
		active[string(d.Key)] = !d.Revoked
	}
	for _, r := range all {
		a, err := proto.ParseApproval(r)
		if err == nil && active[string(a.Device)] && (active[string(a.Approver)] || bytes.Equal(a.Approver, first)) {
			records = append(records, r)
		}
	}
	return records, first, nil
}

// deviceFingerprint names a device as clients show it: "sha256:" and the
// hex of its device id.
func deviceFingerprint(key []byte) string {
	id := proto.DeviceID(key)
	return "sha256:" + hex.EncodeToString(id[:])
}
