package server

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	capnp "capnproto.org/go/capnp/v3"
	"capnproto.org/go/capnp/v3/server"

	"qpchat/node/proto"
	"qpchat/rpc"
)

// access says which session kinds may call a Session method.
type access uint8

const (
	loginOK access = 1 << iota
	deviceOK
	anyKind = loginOK | deviceOK
)

// sessionMethods is the authorisation table of the Session interface,
// keyed by schema method name. Every method looks itself up here first
// (session.enter); a method missing from the table refuses every call,
// and TestSessionMethodTable fails for it.
var sessionMethods = map[string]access{
	"info":              anyKind,
	"userKey":           anyKind,
	"registerDevice":    loginOK,
	"listDevices":       anyKind,
	"revokeDevice":      loginOK,
	"uploadKeyPackages": deviceOK,
	"keyPackageCount":   deviceOK,
	"fetchKeyPackages":  deviceOK,
	"createGroup":       deviceOK,
	"groupInfo":         deviceOK,
	"commit":            deviceOK,
	"send":              deviceOK,
	"fetch":             deviceOK,
	"fetchWait":         deviceOK,
	"ack":               deviceOK,
	"clearOverflow":     deviceOK,
	"createBlob":        deviceOK,
	"putBlob":           deviceOK,
	"getBlob":           deviceOK,
	"publishApproval":   deviceOK,
	// account.go
	"changePasswordStart": loginOK,
	"changePassword":      loginOK,
	"keyTransitions":      anyKind,
	"deleteAccount":       loginOK,
}

// session is one Session capability: a login session (device
// management, expires) or a device session (everything else). It belongs
// to one connection and ends with it.
type session struct {
	c       *conn
	kind    rpc.SessionKind
	user    string
	device  []byte    // device sessions: the device key
	expires time.Time // login sessions: the end of their life

	ended   atomic.Bool   // the connection closed or the device was revoked
	endCh   chan struct{} // closed when ended is set
	endOnce sync.Once
	waiting atomic.Bool // a fetchWait is in progress
}

var _ rpc.Session_Server = (*session)(nil)

// maxSessionsPerConn bounds the sessions one connection may hold (they
// live until the connection ends).
const maxSessionsPerConn = 64

// sessionRoom refuses a new session on a connection that holds
// maxSessionsPerConn already.
func (c *conn) sessionRoom() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.sessions) >= maxSessionsPerConn {
		return proto.Errorf(proto.CodeBusy, "more than %d sessions on one connection", maxSessionsPerConn)
	}
	return nil
}

// newSession makes a session on c and returns its capability.
func (c *conn) newSession(kind rpc.SessionKind, user string, device []byte) (*session, rpc.Session) {
	s := &session{c: c, kind: kind, user: user, device: device, endCh: make(chan struct{})}
	if kind == rpc.SessionKind_login {
		s.expires = c.srv.cfg.Now().Add(c.srv.cfg.LoginSessionTTL)
	}
	c.addSession(s)
	if kind == rpc.SessionKind_device {
		c.srv.devices.add(s)
		c.srv.touchDevice(device) // device expiry (policy.go)
	}
	return s, rpc.Session(capnp.NewClient(server.New(guarded(c.log, c.srv.prom, rpc.Session_Methods(nil, s)), s, nil)))
}

// end ends the session; later calls fail with CodeExpired.
func (s *session) end() {
	s.endOnce.Do(func() {
		s.ended.Store(true)
		close(s.endCh)
	})
}

// enter starts a call of method: it counts the call, checks the
// session kind against sessionMethods and refuses ended or expired
// sessions. The caller must call done.
func (s *session) enter(method string) (done func(), err error) {
	acc, ok := sessionMethods[method]
	if !ok {
		return nil, proto.Errorf(proto.CodeInternal, "%s: no authorisation rule", method)
	}
	leave, err := s.c.begin()
	if err != nil {
		return nil, err
	}
	entered := false
	defer func() {
		if !entered { // refused, or a panic is unwinding (errors.go, guarded)
			leave()
		}
	}()
	switch {
	case s.ended.Load():
		err = proto.Errorf(proto.CodeExpired, "%s: the session has ended", method)
	case s.kind == rpc.SessionKind_login && !s.c.srv.cfg.Now().Before(s.expires):
		err = proto.Errorf(proto.CodeExpired, "%s: the login session expired; log in again", method)
	case s.kind == rpc.SessionKind_login && acc&loginOK == 0:
		err = proto.Errorf(proto.CodeForbidden, "%s: needs a device session, this is a login session", method)
	case s.kind == rpc.SessionKind_device && acc&deviceOK == 0:
		err = proto.Errorf(proto.CodeForbidden, "%s: needs a login session (the password), this is a device session", method)
	}
	if err != nil {
		return nil, err
	}
	entered = true
	return leave, nil
}

// storeErr maps a store error for method.
func (s *session) storeErr(method string, err error) error {
	return storeError(s.c.log, method, err)
}

// Info implements Session.info.
func (s *session) Info(ctx context.Context, call rpc.Session_info) error {
	done, err := s.enter("info")
	if err != nil {
		return err
	}
	defer done()
	res, err := call.AllocResults()
	if err != nil {
		return err
	}
	if err := res.SetUser(s.user); err != nil {
		return err
	}
	res.SetKind(s.kind)
	if s.kind == rpc.SessionKind_login {
		res.SetExpiresAt(s.expires.UnixMilli())
	}
	return res.SetDevice(s.device)
}

// deviceSessions finds the live device sessions of a device, so that
// revoking it ends them.
type deviceSessions struct {
	mu sync.Mutex
	m  map[string]map[*session]struct{}
}

func (d *deviceSessions) add(s *session) {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := string(s.device)
	if d.m[k] == nil {
		d.m[k] = make(map[*session]struct{})
	}
	d.m[k][s] = struct{}{}
}

func (d *deviceSessions) remove(s *session) {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := string(s.device)
	delete(d.m[k], s)
	if len(d.m[k]) == 0 {
		delete(d.m, k)
	}
}

// revoke ends every session of device.
func (d *deviceSessions) revoke(device []byte) {
	d.mu.Lock()
	ss := d.m[string(device)]
	delete(d.m, string(device))
	d.mu.Unlock()
	for s := range ss {
		s.end()
	}
}
