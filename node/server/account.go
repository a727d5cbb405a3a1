package server

import (
	"bytes"
	"context"
	"crypto/ed25519"

	"qpchat/node/proto"
	"qpchat/node/store"
	"qpchat/rpc"
)

// Changing the password and deleting the account (docs/PROTOCOL.md,
// "Changing the password", "Deleting an account"). Both need a login
// Session, that is the current password.

// ChangePasswordStart implements Session.changePasswordStart: the OPAQUE
// registration response (RFC 9807, Section 5.2.1) for the session's own
// user, computed as registerStart does. Nothing is stored.
func (s *session) ChangePasswordStart(ctx context.Context, call rpc.Session_changePasswordStart) error {
	done, err := s.enter("changePasswordStart")
	if err != nil {
		return err
	}
	defer done()
	call.Go()
	c, srv := s.c, s.c.srv
	refund, err := c.delayLogin(ctx, "")
	if err != nil {
		return err
	}
	reqBytes, _ := call.Args().Request()
	req, err := srv.cfg.OPAQUE.ParseRegistrationRequest(reqBytes)
	if err != nil {
		return proto.Errorf(proto.CodeInvalid, "changePasswordStart: %v", err)
	}
	resp, err := srv.opaque.RegistrationResponse(req, []byte(s.user))
	if err != nil {
		return proto.Errorf(proto.CodeInvalid, "changePasswordStart: %v", err)
	}
	ksf, err := srv.cfg.OPAQUE.KSF.MarshalBinary()
	if err != nil {
		refund()
		return err
	}
	res, err := call.AllocResults()
	if err != nil {
		return err
	}
	if err := res.SetResponse(resp.Marshal()); err != nil {
		return err
	}
	return res.SetKsf(ksf)
}

// ChangePassword implements Session.changePassword: it checks the
// transition statement against the current user key and every new
// certificate against the new key, then replaces the record, the key and
// the certificates in one store transaction.
func (s *session) ChangePassword(ctx context.Context, call rpc.Session_changePassword) error {
	done, err := s.enter("changePassword")
	if err != nil {
		return err
	}
	defer done()
	call.Go()
	srv := s.c.srv
	args := call.Args()
	recBytes, _ := args.Record()
	userKey, _ := args.UserKey()
	trBytes, _ := args.Transition()
	record, err := srv.cfg.OPAQUE.ParseRegistrationRecord(recBytes)
	if err != nil {
		return proto.Errorf(proto.CodeInvalid, "changePassword: %v", err)
	}
	if len(userKey) != ed25519.PublicKeySize {
		return proto.Errorf(proto.CodeInvalid, "changePassword: user key of %d bytes, want %d", len(userKey), ed25519.PublicKeySize)
	}
	tr, err := proto.ParseTransition(trBytes)
	if err != nil {
		return proto.Errorf(proto.CodeInvalid, "changePassword: %v", err)
	}
	l, err := args.Certificates()
	pairs, err := dataList(l, err, "device certificates", srv.cfg.Limits.MaxDevices, "--max-devices", proto.DeviceCertLen)
	if err != nil {
		return err
	}
	acct, err := srv.store.Account(ctx, s.user)
	if err != nil {
		return s.storeErr("changePassword", err)
	}
	if !bytes.Equal(tr.Old, acct.UserKey) || !bytes.Equal(tr.New, userKey) || !tr.Verify(s.user) {
		return proto.Errorf(proto.CodeAuth, "changePassword: the key transition is not signed by the current user key and the new one")
	}
	if want := proto.LastSeq(acct.Transitions) + 1; tr.Seq != want {
		return proto.Errorf(proto.CodeStale, "changePassword: the key transition is number %d, the account's next is %d", tr.Seq, want)
	}
	certs := make(map[string][]byte, len(pairs))
	for _, p := range pairs {
		dev, cert, err := proto.ParseDeviceCert(p)
		if err != nil {
			return proto.Errorf(proto.CodeInvalid, "changePassword: %v", err)
		}
		if !proto.VerifyDeviceCert(userKey, s.user, dev, cert) {
			return proto.Errorf(proto.CodeAuth, "changePassword: a device certificate does not verify under the new user key")
		}
		certs[string(dev)] = cert
	}
	params, err := ksfParams(srv.cfg.OPAQUE.KSF)
	if err != nil {
		return err
	}
	ts := append(acct.Transitions, tr.Marshal())
	if len(ts) > store.MaxTransitions {
		ts = ts[len(ts)-store.MaxTransitions:]
	}
	next := store.Account{User: s.user, Record: record.Marshal(), KSF: params, UserKey: userKey, Transitions: ts}
	if err := srv.store.ChangeAccount(ctx, acct.UserKey, next, certs); err != nil {
		return s.storeErr("changePassword", err)
	}
	s.c.log.Info("password changed")
	return nil
}

// KeyTransitions implements Session.keyTransitions.
func (s *session) KeyTransitions(ctx context.Context, call rpc.Session_keyTransitions) error {
	done, err := s.enter("keyTransitions")
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
		return s.storeErr("keyTransitions", err)
	}
	res, err := call.AllocResults()
	if err != nil {
		return err
	}
	l, err := res.NewTransitions(int32(len(acct.Transitions)))
	if err != nil {
		return err
	}
	for i, t := range acct.Transitions {
		if err := l.Set(i, t); err != nil {
			return err
		}
	}
	return nil
}

// DeleteAccount implements Session.deleteAccount.
func (s *session) DeleteAccount(ctx context.Context, call rpc.Session_deleteAccount) error {
	done, err := s.enter("deleteAccount")
	if err != nil {
		return err
	}
	defer done()
	call.Go()
	srv := s.c.srv
	ds, err := srv.store.Devices(ctx, s.user)
	if err != nil {
		return s.storeErr("deleteAccount", err)
	}
	if err := srv.store.DeleteAccount(ctx, s.user); err != nil {
		return s.storeErr("deleteAccount", err)
	}
	for _, d := range ds {
		srv.devices.revoke(d.Key)
		srv.lowPools.forget(d.Key)
	}
	s.c.log.Info("account deleted")
	return nil
}
