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

// ServerFingerprint implements Entry.
func (e *RPCEntry) ServerFingerprint() string { return e.C.Fingerprint }

// RegisterStart implements Entry.
func (e *RPCEntry) RegisterStart(ctx context.Context, user string, request []byte) ([]byte, []byte, error) {
	f, rel := e.C.Node.RegisterStart(ctx, func(p rpc.NodeService_registerStart_Params) error {
		if err := p.SetUser(user); err != nil {
			return err
		}
		return p.SetRequest(request)
	})
	defer rel()
	r, err := f.Struct()
	if err != nil {
		return nil, nil, wrapErr(err)
	}
	resp, _ := r.Response()
	ksf, _ := r.Ksf()
	return bytes.Clone(resp), bytes.Clone(ksf), nil
}

// RegisterFinish implements Entry.
func (e *RPCEntry) RegisterFinish(ctx context.Context, record, userKey []byte) (LoginSession, error) {
	f, rel := e.C.Node.RegisterFinish(ctx, func(p rpc.NodeService_registerFinish_Params) error {
		if err := p.SetRecord(record); err != nil {
			return err
		}
		return p.SetUserKey(userKey)
	})
	defer rel()
	r, err := f.Struct()
	if err != nil {
		return nil, wrapErr(err)
	}
	return &rpcSession{s: r.Session().AddRef()}, nil
}

// LoginStart implements Entry.
func (e *RPCEntry) LoginStart(ctx context.Context, user string, ke1 []byte) ([]byte, []byte, error) {
	f, rel := e.C.Node.LoginStart(ctx, func(p rpc.NodeService_loginStart_Params) error {
		if err := p.SetUser(user); err != nil {
			return err
		}
		return p.SetKe1(ke1)
	})
	defer rel()
	r, err := f.Struct()
	if err != nil {
		return nil, nil, wrapErr(err)
	}
	ke2, _ := r.Ke2()
	ksf, _ := r.Ksf()
	return bytes.Clone(ke2), bytes.Clone(ksf), nil
}

// LoginFinish implements Entry.
func (e *RPCEntry) LoginFinish(ctx context.Context, ke3, proof []byte) (LoginSession, []byte, error) {
	f, rel := e.C.Node.LoginFinish(ctx, func(p rpc.NodeService_loginFinish_Params) error {
		if err := p.SetKe3(ke3); err != nil {
			return err
		}
		return p.SetProof(proof)
	})
	defer rel()
	r, err := f.Struct()
	if err != nil {
		return nil, nil, wrapErr(err)
	}
	sp, _ := r.Proof()
	return &rpcSession{s: r.Session().AddRef()}, bytes.Clone(sp), nil
}

// AuthenticateDevice implements Entry.
func (e *RPCEntry) AuthenticateDevice(ctx context.Context, user string, device, signature []byte) (Session, error) {
	f, rel := e.C.Node.AuthenticateDevice(ctx, func(p rpc.NodeService_authenticateDevice_Params) error {
		if err := p.SetUser(user); err != nil {
			return err
		}
		if err := p.SetDevice(device); err != nil {
			return err
		}
		return p.SetSignature(signature)
	})
	defer rel()
	r, err := f.Struct()
	if err != nil {
		return nil, wrapErr(err)
	}
	return &rpcSession{s: r.Session().AddRef()}, nil
}

// rpcSession is a login or device Session.
type rpcSession struct {
	s rpc.Session
}

// Release releases the session capability.
func (s *rpcSession) Release() { s.s.Release() }

func (s *rpcSession) UserKey(ctx context.Context, user string) ([]byte, error) {
	f, rel := s.s.UserKey(ctx, func(p rpc.Session_userKey_Params) error { return p.SetUser(user) })
	defer rel()
	r, err := f.Struct()
	if err != nil {
		return nil, wrapErr(err)
	}
	k, _ := r.Key()
	return bytes.Clone(k), nil
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
	defer rel()
	_, err := f.Struct()
	return wrapErr(err)
}

func (s *rpcSession) ListDevices(ctx context.Context) ([]DeviceInfo, error) {
	f, rel := s.s.ListDevices(ctx, nil)
	defer rel()
	r, err := f.Struct()
	if err != nil {
		return nil, wrapErr(err)
	}
	l, err := r.Devices()
	if err != nil {
		return nil, err
	}
	if l.Len() > maxFetched {
		return nil, fmt.Errorf("client: the node listed %d devices", l.Len())
	}
	var out []DeviceInfo
	for i := range l.Len() {
		d := l.At(i)
		k, _ := d.Key()
		c, _ := d.Certificate()
		out = append(out, DeviceInfo{Key: bytes.Clone(k), Certificate: bytes.Clone(c), Revoked: d.Revoked()})
	}
	return out, nil
}

func (s *rpcSession) Devices(ctx context.Context) ([]DeviceInfo, error) { return s.ListDevices(ctx) }

func (s *rpcSession) RevokeDevice(ctx context.Context, device []byte) error {
	f, rel := s.s.RevokeDevice(ctx, func(p rpc.Session_revokeDevice_Params) error { return p.SetDevice(device) })
	defer rel()
	_, err := f.Struct()
	return wrapErr(err)
}

func (s *rpcSession) UploadKeyPackages(ctx context.Context, suite uint16, pool [][]byte, lastResort []byte) (int, error) {
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
	defer rel()
	r, err := f.Struct()
	if err != nil {
		return 0, wrapErr(err)
	}
	return int(r.PoolSize()), nil
}

func (s *rpcSession) KeyPackageCount(ctx context.Context, suite uint16) (int, error) {
	f, rel := s.s.KeyPackageCount(ctx, func(p rpc.Session_keyPackageCount_Params) error { p.SetSuite(suite); return nil })
	defer rel()
	r, err := f.Struct()
	if err != nil {
		return 0, wrapErr(err)
	}
	return int(r.PoolSize()), nil
}

func (s *rpcSession) FetchKeyPackages(ctx context.Context, user string, suite uint16) ([]FetchedKeyPackage, error) {
	f, rel := s.s.FetchKeyPackages(ctx, func(p rpc.Session_fetchKeyPackages_Params) error {
		p.SetSuite(suite)
		return p.SetUser(user)
	})
	defer rel()
	r, err := f.Struct()
	if err != nil {
		return nil, wrapErr(err)
	}
	l, err := r.Packages()
	if err != nil {
		return nil, err
	}
	if l.Len() > maxFetched {
		return nil, fmt.Errorf("client: the node sent %d KeyPackages", l.Len())
	}
	var out []FetchedKeyPackage
	for i := range l.Len() {
		k := l.At(i)
		d, _ := k.Device()
		kp, _ := k.KeyPackage()
		out = append(out, FetchedKeyPackage{Device: bytes.Clone(d), KeyPackage: bytes.Clone(kp), LastResort: k.LastResort()})
	}
	return out, nil
}

func (s *rpcSession) CreateGroup(ctx context.Context, group []byte) error {
	f, rel := s.s.CreateGroup(ctx, func(p rpc.Session_createGroup_Params) error { return p.SetGroup(group) })
	defer rel()
	_, err := f.Struct()
	return wrapErr(err)
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
	defer rel()
	_, err := f.Struct()
	return wrapErr(err)
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
	defer rel()
	_, err := f.Struct()
	return wrapErr(err)
}

// fetchResults is what fetch and fetchWait return alike.
type fetchResults interface {
	Messages() (rpc.QueuedMessage_List, error)
	KeyPackagesLow() (capnp.UInt16List, error)
	Queue() (rpc.QueueState, error)
}

func (s *rpcSession) Fetch(ctx context.Context, after uint64, limit int, wait time.Duration) (*FetchResult, error) {
	var r fetchResults
	if wait > 0 {
		ms := min(wait.Milliseconds(), 25000)
		f, rel := s.s.FetchWait(ctx, func(p rpc.Session_fetchWait_Params) error {
			p.SetAfter(after)
			p.SetLimit(uint32(limit))
			p.SetTimeoutMillis(uint32(ms))
			return nil
		})
		defer rel()
		res, err := f.Struct()
		if err != nil {
			return nil, wrapErr(err)
		}
		r = res
	} else {
		f, rel := s.s.Fetch(ctx, func(p rpc.Session_fetch_Params) error {
			p.SetAfter(after)
			p.SetLimit(uint32(limit))
			return nil
		})
		defer rel()
		res, err := f.Struct()
		if err != nil {
			return nil, wrapErr(err)
		}
		r = res
	}
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
	res := &FetchResult{Deliveries: out, LowSuites: low}
	if q, err := r.Queue(); err == nil {
		res.Overflowed = q.Overflowed()
	}
	return res, nil
}

func (s *rpcSession) ClearOverflow(ctx context.Context) error {
	f, rel := s.s.ClearOverflow(ctx, nil)
	defer rel()
	_, err := f.Struct()
	return wrapErr(err)
}

func (s *rpcSession) Ack(ctx context.Context, upTo uint64) error {
	f, rel := s.s.Ack(ctx, func(p rpc.Session_ack_Params) error { p.SetUpTo(upTo); return nil })
	defer rel()
	_, err := f.Struct()
	return wrapErr(err)
}
