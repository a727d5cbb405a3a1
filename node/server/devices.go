package server

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"

	capnp "capnproto.org/go/capnp/v3"

	"qpchat/node/proto"
	"qpchat/node/store"
	"qpchat/rpc"
)

// Devices (docs/PROTOCOL.md, Session): registration with a certificate
// from the user key and a proof of possession over the TLS exporter,
// listing, revocation.

// UserKey implements Session.userKey.
func (s *session) UserKey(ctx context.Context, call rpc.Session_userKey) error {
	done, err := s.enter("userKey")
	if err != nil {
		return err
	}
	defer done()
	call.Go()
	user, err := normalizeUser(call.Args().User())
	if err != nil {
		return err
	}
	acct, err := s.c.srv.store.Account(ctx, user)
	if err != nil {
		return s.storeErr("userKey", err)
	}
	res, err := call.AllocResults()
	if err != nil {
		return err
	}
	return res.SetKey(acct.UserKey)
}

// RegisterDevice implements Session.registerDevice.
func (s *session) RegisterDevice(ctx context.Context, call rpc.Session_registerDevice) error {
	done, err := s.enter("registerDevice")
	if err != nil {
		return err
	}
	defer done()
	call.Go()
	srv := s.c.srv
	args := call.Args()
	device, _ := args.Device()
	cert, _ := args.Certificate()
	proof, _ := args.Proof()
	if len(device) != ed25519.PublicKeySize {
		return proto.Errorf(proto.CodeInvalid, "registerDevice: device key of %d bytes, want %d", len(device), ed25519.PublicKeySize)
	}
	acct, err := srv.store.Account(ctx, s.user)
	if err != nil {
		return s.storeErr("registerDevice", err)
	}
	if !proto.VerifyDeviceCert(acct.UserKey, s.user, device, cert) {
		return proto.Errorf(proto.CodeNotAcceptable, "registerDevice: the certificate does not verify under the user key")
	}
	label, err := proto.DeviceAuthLabel(s.c.binding, true)
	if err != nil {
		return err
	}
	if !proto.VerifyWithLabel(device, label, proto.DeviceAuth(s.c.exporter, s.user, device, srv.spkiHash), proof) {
		return proto.Errorf(proto.CodeAuth, "registerDevice: the proof of possession does not verify for this connection")
	}
	// Serialise registrations so the device limit holds under concurrency.
	srv.deviceMu.Lock()
	defer srv.deviceMu.Unlock()
	list, err := srv.store.Devices(ctx, s.user)
	if err != nil {
		return s.storeErr("registerDevice", err)
	}
	// Revoked devices do not count: a user who reinstalls now and then
	// must not lock the account. Their records stay (a revoked key can
	// never be registered again), bounded separately.
	active := 0
	for _, d := range list {
		if !d.Revoked {
			active++
		}
	}
	if active >= srv.cfg.Limits.MaxDevices {
		return proto.Errorf(proto.CodeLimit, "registerDevice: the user has %d active devices, the limit (--max-devices) is %d; revoke one first", active, srv.cfg.Limits.MaxDevices)
	}
	if len(list) >= maxDeviceRecords(srv.cfg.Limits.MaxDevices) {
		return proto.Errorf(proto.CodeLimit, "registerDevice: the user has %d device records (revoked ones included), the limit is %d (32 × --max-devices)", len(list), maxDeviceRecords(srv.cfg.Limits.MaxDevices))
	}
	err = srv.store.AddDevice(ctx, store.Device{User: s.user, Key: device, Certificate: cert})
	if errors.Is(err, store.ErrExists) {
		return proto.Errorf(proto.CodeExists, "registerDevice: the device key is already registered")
	}
	if err != nil {
		return s.storeErr("registerDevice", err)
	}
	s.c.log.Info("device registered")
	return nil
}

// maxDeviceRecords bounds a user's device records, revoked ones
// included, so that registering and revoking in a loop cannot grow the
// store without end: 32 times the active devices allowed.
func maxDeviceRecords(maxDevices int) int { return 32 * maxDevices }

// ListDevices implements Session.listDevices.
func (s *session) ListDevices(ctx context.Context, call rpc.Session_listDevices) error {
	done, err := s.enter("listDevices")
	if err != nil {
		return err
	}
	defer done()
	call.Go()
	list, err := s.c.srv.store.Devices(ctx, s.user)
	if err != nil {
		return s.storeErr("listDevices", err)
	}
	res, err := call.AllocResults()
	if err != nil {
		return err
	}
	out, err := res.NewDevices(int32(len(list)))
	if err != nil {
		return err
	}
	for i, d := range list {
		e := out.At(i)
		if err := e.SetKey(d.Key); err != nil {
			return err
		}
		if err := e.SetCertificate(d.Certificate); err != nil {
			return err
		}
		e.SetRevoked(d.Revoked)
	}
	return nil
}

// RevokeDevice implements Session.revokeDevice.
func (s *session) RevokeDevice(ctx context.Context, call rpc.Session_revokeDevice) error {
	done, err := s.enter("revokeDevice")
	if err != nil {
		return err
	}
	defer done()
	call.Go()
	srv := s.c.srv
	device, _ := call.Args().Device()
	if len(device) != ed25519.PublicKeySize {
		return proto.Errorf(proto.CodeInvalid, "revokeDevice: device key of %d bytes, want %d", len(device), ed25519.PublicKeySize)
	}
	d, err := srv.store.Device(ctx, device)
	if err != nil {
		return s.storeErr("revokeDevice", err)
	}
	if d.User != s.user {
		return proto.Errorf(proto.CodeForbidden, "revokeDevice: the device belongs to another user")
	}
	if err := srv.store.RevokeDevice(ctx, device); err != nil {
		return s.storeErr("revokeDevice", err)
	}
	srv.devices.revoke(device)
	srv.lowPools.forget(device)
	s.c.log.Info("device revoked")
	return nil
}

// dataList reads a list of byte strings, bounding the count (the limit of
// countFlag) and each element's size.
func dataList(l capnp.DataList, err error, what string, maxCount int, countFlag string, maxLen int) ([][]byte, error) {
	if err != nil {
		return nil, proto.Errorf(proto.CodeInvalid, "reading %s: %v", what, err)
	}
	if l.Len() > maxCount {
		return nil, proto.Errorf(proto.CodeLimit, "%d %s, at most %d allowed (%s)", l.Len(), what, maxCount, countFlag)
	}
	out := make([][]byte, l.Len())
	for i := range out {
		b, err := l.At(i)
		if err != nil {
			return nil, proto.Errorf(proto.CodeInvalid, "reading %s: %v", what, err)
		}
		if len(b) > maxLen {
			return nil, proto.Errorf(proto.CodeLimit, "one of the %s is %d bytes, the limit (--max-message-size) is %d", what, len(b), maxLen)
		}
		out[i] = b
	}
	return out, nil
}

// deviceKeys reads a list of device keys: each 32 bytes, no repeats.
func deviceKeys(l capnp.DataList, err error, what string, max int) ([][]byte, error) {
	keys, err := dataList(l, err, what, max, "--max-group-size", ed25519.PublicKeySize)
	if err != nil {
		return nil, err
	}
	for i, k := range keys {
		if len(k) != ed25519.PublicKeySize {
			return nil, proto.Errorf(proto.CodeInvalid, "%s: a device key of %d bytes", what, len(k))
		}
		for _, o := range keys[:i] {
			if bytes.Equal(o, k) {
				return nil, proto.Errorf(proto.CodeInvalid, "%s: a device is listed twice", what)
			}
		}
	}
	return keys, nil
}
