package client

// This file adapts the Cap'n Proto NodeService and Session (schemas/
// node.capnp, rpc/) to Entry, LoginSession and Session. It only copies
// bytes between Go values and capnp messages; every check is elsewhere.

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"capnproto.org/go/capnp/v3"

	"qpchat/node/proto"
	"qpchat/rpc"
)

// Bounds on what the node may send back, beyond the transport's limits.
const (
	maxFetched = 4096
)

// RPCEntry is an Entry over an rpc.Client.
type RPCEntry struct {
	C *rpc.Client
	// InviteToken is sent with registerStart, for a node that registers
	// only with an invitation (`qpchat serve invite-token`).
	InviteToken string
}

// wrapErr maps node error codes to the client's sentinels.
func wrapErr(err error) error {
	if err == nil {
		return nil
	}
	switch proto.CodeOf(err) {
	case proto.CodeStale, proto.CodeWrongEpoch:
		// Either way another commit decided the epoch: re-sync and retry.
		return fmt.Errorf("%w (%v)", ErrStale, err)
	case proto.CodeNotMember:
		return fmt.Errorf("%w (%v)", ErrNotMember, err)
	case proto.CodeNotFound:
		if bytes.Contains([]byte(err.Error()), []byte("user")) {
			return fmt.Errorf("%w (%v)", ErrUnknownUser, err)
		}
	}
	return err
}

// future is a generated *_Results_Future; Struct waits for the answer.
type future[R any] interface {
	Struct() (R, error)
}

// await waits for the results of a call, maps a node error with wrapErr
// and hands the settled results to use (nil when the call returns
// nothing) before releasing the call. Nothing is ever pipelined on f:
// use sees only settled results, so a capability in them must be taken
// with AddRef there to outlive the release (TECH-NOTES 1.5). An error
// from use is returned as it is.
func await[R any](f future[R], rel capnp.ReleaseFunc, use func(R) error) error {
	defer rel()
	r, err := f.Struct()
	if err != nil {
		return wrapErr(err)
	}
	if use == nil {
		return nil
	}
	return use(r)
}

func toList(l capnp.DataList, v [][]byte) error {
	for i, b := range v {
		if err := l.Set(i, b); err != nil {
			return err
		}
	}
	return nil
}

func fromList(l capnp.DataList, err error) ([][]byte, error) {
	if err != nil {
		return nil, err
	}
	if l.Len() > maxFetched {
		return nil, fmt.Errorf("client: the node sent a list of %d entries", l.Len())
	}
	out := make([][]byte, l.Len())
	for i := range out {
		b, err := l.At(i)
		if err != nil {
			return nil, err
		}
		out[i] = bytes.Clone(b)
	}
	return out, nil
}

// ChannelBinding implements Entry.
func (e *RPCEntry) ChannelBinding() ([]byte, error) { return e.C.ChannelBinding() }

// BindingType implements Entry.
func (e *RPCEntry) BindingType() proto.Binding {
	if e.C.BindingType() == rpc.BindingWeb {
		return proto.BindingWeb
	}
	return proto.BindingTLSExporter
}

// ServerFingerprint implements Entry.
func (e *RPCEntry) ServerFingerprint() string { return e.C.Fingerprint }

// RegisterStart implements Entry.
func (e *RPCEntry) RegisterStart(ctx context.Context, user string, request []byte) (resp, ksf []byte, err error) {
	f, rel := e.C.Node.RegisterStart(ctx, func(p rpc.NodeService_registerStart_Params) error {
		if err := p.SetUser(user); err != nil {
			return err
		}
		if e.InviteToken != "" {
			if err := p.SetInviteToken(e.InviteToken); err != nil {
				return err
			}
		}
		return p.SetRequest(request)
	})
	err = await(f, rel, func(r rpc.NodeService_registerStart_Results) error {
		a, _ := r.Response()
		b, _ := r.Ksf()
		resp, ksf = bytes.Clone(a), bytes.Clone(b)
		return nil
	})
	return resp, ksf, err
}

// RegisterFinish implements Entry.
func (e *RPCEntry) RegisterFinish(ctx context.Context, record, userKey []byte) (s LoginSession, err error) {
	f, rel := e.C.Node.RegisterFinish(ctx, func(p rpc.NodeService_registerFinish_Params) error {
		if err := p.SetRecord(record); err != nil {
			return err
		}
		return p.SetUserKey(userKey)
	})
	err = await(f, rel, func(r rpc.NodeService_registerFinish_Results) error {
		s = &rpcSession{s: r.Session().AddRef()}
		return nil
	})
	return s, err
}

// LoginStart implements Entry.
func (e *RPCEntry) LoginStart(ctx context.Context, user string, ke1 []byte) (ke2, ksf []byte, err error) {
	f, rel := e.C.Node.LoginStart(ctx, func(p rpc.NodeService_loginStart_Params) error {
		if err := p.SetUser(user); err != nil {
			return err
		}
		return p.SetKe1(ke1)
	})
	err = await(f, rel, func(r rpc.NodeService_loginStart_Results) error {
		a, _ := r.Ke2()
		b, _ := r.Ksf()
		ke2, ksf = bytes.Clone(a), bytes.Clone(b)
		return nil
	})
	return ke2, ksf, err
}

// LoginFinish implements Entry.
func (e *RPCEntry) LoginFinish(ctx context.Context, ke3, proof []byte) (s LoginSession, serverProof []byte, err error) {
	f, rel := e.C.Node.LoginFinish(ctx, func(p rpc.NodeService_loginFinish_Params) error {
		if err := p.SetKe3(ke3); err != nil {
			return err
		}
		return p.SetProof(proof)
	})
	err = await(f, rel, func(r rpc.NodeService_loginFinish_Results) error {
		sp, _ := r.Proof()
		s, serverProof = &rpcSession{s: r.Session().AddRef()}, bytes.Clone(sp)
		return nil
	})
	return s, serverProof, err
}

// AuthenticateDevice implements Entry.
func (e *RPCEntry) AuthenticateDevice(ctx context.Context, user string, device, signature []byte) (s Session, err error) {
	f, rel := e.C.Node.AuthenticateDevice(ctx, func(p rpc.NodeService_authenticateDevice_Params) error {
		if err := p.SetUser(user); err != nil {
			return err
		}
		if err := p.SetDevice(device); err != nil {
			return err
		}
		return p.SetSignature(signature)
	})
	err = await(f, rel, func(r rpc.NodeService_authenticateDevice_Results) error {
		s = &rpcSession{s: r.Session().AddRef()}
		return nil
	})
	return s, err
}

// rpcSession is a login or device Session.
type rpcSession struct {
	s rpc.Session
}

// Release releases the session capability.
func (s *rpcSession) Release() { s.s.Release() }

func (s *rpcSession) UserKey(ctx context.Context, user string) (key []byte, err error) {
	f, rel := s.s.UserKey(ctx, func(p rpc.Session_userKey_Params) error { return p.SetUser(user) })
	err = await(f, rel, func(r rpc.Session_userKey_Results) error {
		k, _ := r.Key()
		key = bytes.Clone(k)
		return nil
	})
	return key, err
}

func (s *rpcSession) RegisterDevice(ctx context.Context, device, cert, proof []byte) error {
	f, rel := s.s.RegisterDevice(ctx, func(p rpc.Session_registerDevice_Params) error {
		if err := p.SetDevice(device); err != nil {
			return err
		}
		if err := p.SetCertificate(cert); err != nil {
			return err
		}
		return p.SetProof(proof)
	})
	return await(f, rel, nil)
}

func (s *rpcSession) ListDevices(ctx context.Context) (out []DeviceInfo, err error) {
	f, rel := s.s.ListDevices(ctx, nil)
	err = await(f, rel, func(r rpc.Session_listDevices_Results) error {
		l, err := r.Devices()
		if err != nil {
			return err
		}
		if l.Len() > maxFetched {
			return fmt.Errorf("client: the node listed %d devices", l.Len())
		}
		for i := range l.Len() {
			d := l.At(i)
			k, _ := d.Key()
			c, _ := d.Certificate()
			out = append(out, DeviceInfo{Key: bytes.Clone(k), Certificate: bytes.Clone(c), Revoked: d.Revoked()})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (s *rpcSession) Devices(ctx context.Context) ([]DeviceInfo, error) { return s.ListDevices(ctx) }

func (s *rpcSession) RevokeDevice(ctx context.Context, device []byte) error {
	f, rel := s.s.RevokeDevice(ctx, func(p rpc.Session_revokeDevice_Params) error { return p.SetDevice(device) })
	return await(f, rel, nil)
}

func (s *rpcSession) UploadKeyPackages(ctx context.Context, suite uint16, pool [][]byte, lastResort []byte) (n int, err error) {
	f, rel := s.s.UploadKeyPackages(ctx, func(p rpc.Session_uploadKeyPackages_Params) error {
		p.SetSuite(suite)
		l, err := p.NewPackages(int32(len(pool)))
		if err != nil {
			return err
		}
		if err := toList(l, pool); err != nil {
			return err
		}
		return p.SetLastResort(lastResort)
	})
	err = await(f, rel, func(r rpc.Session_uploadKeyPackages_Results) error {
		n = int(r.PoolSize())
		return nil
	})
	return n, err
}

func (s *rpcSession) KeyPackageCount(ctx context.Context, suite uint16) (n int, err error) {
	f, rel := s.s.KeyPackageCount(ctx, func(p rpc.Session_keyPackageCount_Params) error { p.SetSuite(suite); return nil })
	err = await(f, rel, func(r rpc.Session_keyPackageCount_Results) error {
		n = int(r.PoolSize())
		return nil
	})
	return n, err
}

func (s *rpcSession) FetchKeyPackages(ctx context.Context, user string, suite uint16) (*KeyPackages, error) {
	f, rel := s.s.FetchKeyPackages(ctx, func(p rpc.Session_fetchKeyPackages_Params) error {
		p.SetSuite(suite)
		return p.SetUser(user)
	})
	out := &KeyPackages{}
	err := await(f, rel, func(r rpc.Session_fetchKeyPackages_Results) error {
		l, err := r.Packages()
		if err != nil {
			return err
		}
		if l.Len() > maxFetched {
			return fmt.Errorf("client: the node sent %d KeyPackages", l.Len())
		}
		for i := range l.Len() {
			k := l.At(i)
			d, _ := k.Device()
			kp, _ := k.KeyPackage()
			out.Packages = append(out.Packages, FetchedKeyPackage{Device: bytes.Clone(d), KeyPackage: bytes.Clone(kp), LastResort: k.LastResort()})
		}
		if out.Approvals, err = fromList(r.Approvals()); err != nil {
			return err
		}
		first, err := r.FirstDevice()
		if err != nil {
			return err
		}
		if len(first) > 0 {
			out.FirstDevice = bytes.Clone(first)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (s *rpcSession) PublishApproval(ctx context.Context, approval []byte) error {
	f, rel := s.s.PublishApproval(ctx, func(p rpc.Session_publishApproval_Params) error { return p.SetApproval(approval) })
	err := await(f, rel, nil)
	if capnp.IsUnimplemented(err) {
		// A node older than device approvals: a refusal, not a lost
		// connection (a Live must not reconnect for it).
		return proto.Errorf(proto.CodeInvalid, "this node does not store device approvals (it predates them): %v", err)
	}
	return err
}

func (s *rpcSession) CreateGroup(ctx context.Context, group []byte) error {
	f, rel := s.s.CreateGroup(ctx, func(p rpc.Session_createGroup_Params) error { return p.SetGroup(group) })
	return await(f, rel, nil)
}

func (s *rpcSession) Commit(ctx context.Context, req CommitRequest) error {
	f, rel := s.s.Commit(ctx, func(p rpc.Session_commit_Params) error {
		if err := p.SetGroup(req.Group); err != nil {
			return err
		}
		if err := p.SetMessage_(req.Commit); err != nil {
			return err
		}
		a, err := p.NewAdded(int32(len(req.Added)))
		if err != nil {
			return err
		}
		if err := toList(a, req.Added); err != nil {
			return err
		}
		r, err := p.NewRemoved(int32(len(req.Removed)))
		if err != nil {
			return err
		}
		if err := toList(r, req.Removed); err != nil {
			return err
		}
		return p.SetWelcome(req.Welcome)
	})
	return await(f, rel, nil)
}

func (s *rpcSession) Send(ctx context.Context, group []byte, msgs [][]byte) error {
	f, rel := s.s.Send(ctx, func(p rpc.Session_send_Params) error {
		if err := p.SetGroup(group); err != nil {
			return err
		}
		l, err := p.NewMessages(int32(len(msgs)))
		if err != nil {
			return err
		}
		return toList(l, msgs)
	})
	return await(f, rel, nil)
}

// fetchResults is what fetch and fetchWait return alike.
type fetchResults interface {
	Messages() (rpc.QueuedMessage_List, error)
	KeyPackagesLow() (capnp.UInt16List, error)
	Queue() (rpc.QueueState, error)
	Lost() (capnp.UInt64List, error)
}

func (s *rpcSession) Fetch(ctx context.Context, after uint64, limit int, wait time.Duration) (res *FetchResult, err error) {
	if wait > 0 {
		ms := min(wait.Milliseconds(), 25000)
		f, rel := s.s.FetchWait(ctx, func(p rpc.Session_fetchWait_Params) error {
			p.SetAfter(after)
			p.SetLimit(uint32(limit))
			p.SetTimeoutMillis(uint32(ms))
			return nil
		})
		err = await(f, rel, func(r rpc.Session_fetchWait_Results) error {
			res, err = decodeFetch(r)
			return err
		})
	} else {
		f, rel := s.s.Fetch(ctx, func(p rpc.Session_fetch_Params) error {
			p.SetAfter(after)
			p.SetLimit(uint32(limit))
			return nil
		})
		err = await(f, rel, func(r rpc.Session_fetch_Results) error {
			res, err = decodeFetch(r)
			return err
		})
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

// decodeFetch copies what fetch or fetchWait returned.
func decodeFetch(r fetchResults) (*FetchResult, error) {
	l, err := r.Messages()
	if err != nil {
		return nil, err
	}
	if l.Len() > maxFetched {
		return nil, fmt.Errorf("client: the node sent %d messages", l.Len())
	}
	var out []Delivery
	for i := range l.Len() {
		m := l.At(i)
		d := Delivery{Seq: m.Seq()}
		switch m.Kind() {
		case rpc.MessageKind_application:
			d.Kind = DeliveryApplication
		case rpc.MessageKind_commit:
			d.Kind = DeliveryCommit
		case rpc.MessageKind_welcome:
			d.Kind = DeliveryWelcome
		}
		g, _ := m.Group()
		snd, _ := m.Sender()
		msg, _ := m.Message_()
		d.Group, d.Sender, d.Data = bytes.Clone(g), bytes.Clone(snd), bytes.Clone(msg)
		if d.Added, err = fromList(m.Added()); err != nil {
			return nil, err
		}
		if d.Removed, err = fromList(m.Removed()); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	var low []uint16
	if ll, err := r.KeyPackagesLow(); err == nil {
		for i := range min(ll.Len(), 16) {
			low = append(low, ll.At(i))
		}
	}
	lost, err := decodeLost(r.Lost())
	if err != nil {
		return nil, err
	}
	res := &FetchResult{Deliveries: out, LowSuites: low, Lost: lost}
	if q, err := r.Queue(); err == nil {
		res.Overflowed = q.Overflowed()
		res.Last = q.Last()
	}
	return res, nil
}

func (s *rpcSession) ClearOverflow(ctx context.Context) error {
	f, rel := s.s.ClearOverflow(ctx, nil)
	return await(f, rel, nil)
}

func (s *rpcSession) Ack(ctx context.Context, upTo uint64) error {
	f, rel := s.s.Ack(ctx, func(p rpc.Session_ack_Params) error { p.SetUpTo(upTo); return nil })
	return await(f, rel, nil)
}

// ChangePasswordStart implements AccountSession.
func (s *rpcSession) ChangePasswordStart(ctx context.Context, request []byte) (resp, ksf []byte, err error) {
	f, rel := s.s.ChangePasswordStart(ctx, func(p rpc.Session_changePasswordStart_Params) error { return p.SetRequest(request) })
	err = await(f, rel, func(r rpc.Session_changePasswordStart_Results) error {
		a, _ := r.Response()
		b, _ := r.Ksf()
		resp, ksf = bytes.Clone(a), bytes.Clone(b)
		return nil
	})
	return resp, ksf, err
}

// ChangePassword implements AccountSession.
func (s *rpcSession) ChangePassword(ctx context.Context, record, userKey, transition []byte, certificates [][]byte) error {
	f, rel := s.s.ChangePassword(ctx, func(p rpc.Session_changePassword_Params) error {
		if err := p.SetRecord(record); err != nil {
			return err
		}
		if err := p.SetUserKey(userKey); err != nil {
			return err
		}
		if err := p.SetTransition(transition); err != nil {
			return err
		}
		l, err := p.NewCertificates(int32(len(certificates)))
		if err != nil {
			return err
		}
		return toList(l, certificates)
	})
	return await(f, rel, nil)
}

// DeleteAccount implements AccountSession.
func (s *rpcSession) DeleteAccount(ctx context.Context) error {
	f, rel := s.s.DeleteAccount(ctx, nil)
	return await(f, rel, nil)
}

// KeyTransitions implements TransitionSession.
func (s *rpcSession) KeyTransitions(ctx context.Context, user string) (out [][]byte, err error) {
	f, rel := s.s.KeyTransitions(ctx, func(p rpc.Session_keyTransitions_Params) error { return p.SetUser(user) })
	err = await(f, rel, func(r rpc.Session_keyTransitions_Results) error {
		l, err := r.Transitions()
		if err == nil && l.Len() > proto.MaxTransitions {
			return fmt.Errorf("client: the node sent %d key transitions", l.Len())
		}
		out, err = fromList(l, err)
		return err
	})
	return out, err
}
