package server

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"

	"qpchat/node/proto"
	"qpchat/node/store"
	"qpchat/opaque"
	"qpchat/rpc"
)

// The ways into a Session (docs/PROTOCOL.md, NodeService): OPAQUE
// registration (RFC 9807, Section 5) and login (Section 6) with the
// two-way channel-binding proof, and device authentication with a
// signature over the connection's TLS exporter (RFC 9266).

// pendingRegistration is the state between registerStart and
// registerFinish on one connection.
type pendingRegistration struct {
	user   string
	invite []byte // hash of the invitation to use up (--registration invite)
}

// pendingLogin is the state between loginStart and loginFinish on one
// connection.
type pendingLogin struct {
	user  string
	known bool
	sl    *opaque.ServerLogin
}

// errAuth is the one answer to every failed login or authentication, so
// a client learns nothing about which check failed.
// errRevoked is the refusal of a revoked device that proved possession
// of its key: not-found when its account was deleted, auth-failed
// otherwise (docs/PROTOCOL.md, "Deleting an account").
func errRevoked(ctx context.Context, srv *Server, user string) error {
	if _, err := srv.store.Account(ctx, user); errors.Is(err, store.ErrNotFound) {
		return proto.Errorf(proto.CodeNotFound, "device authentication failed: the account %s was deleted", user)
	}
	return proto.Errorf(proto.CodeAuth, "device authentication failed: this device is revoked")
}

func errAuth(what string) error {
	return proto.Errorf(proto.CodeAuth, "%s failed", what)
}

// ksfParams converts the key-stretching function of the OPAQUE
// configuration to the parameters stored with a record.
func ksfParams(k opaque.KSF) (store.KSFParams, error) {
	a, ok := k.(opaque.Argon2id)
	if !ok {
		return store.KSFParams{}, fmt.Errorf("server: key-stretching function %v is not Argon2id", k)
	}
	return store.KSFParams{Time: a.Time, MemoryKiB: a.MemoryKiB, Threads: a.Threads}, nil
}

func ksfOf(p store.KSFParams) opaque.KSF {
	return opaque.Argon2id{Time: p.Time, MemoryKiB: p.MemoryKiB, Threads: p.Threads}
}

// errSuperseded ends the delay of a login or registration start when a
// later start arrives on the same connection: the later one would replace
// its pending state anyway.
var errSuperseded = errors.New("superseded by a later start on this connection")

// nameAddrKey is the key of the per-name login budget: the name together
// with the client's address key, so that starts from one address cannot
// delay a user logging in from another (docs/PROTOCOL.md, "Login rate
// limits").
func nameAddrKey(user, addr string) string { return user + "\x00" + addr }

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// delayedStart is a login or registration start waiting out its
// rate-limit delay (conn.waiting).
type delayedStart struct {
	cancel     context.CancelFunc
	refund     func()
	superseded bool // guarded by conn.mu
}

// delayLogin applies the login-start rate limits of (user, address) (if
// user is not empty) and of the connection's address: beyond the rate the
// answer is delayed until a token is due, at most Limits.MaxLoginDelay,
// never refused. Call it only once the request has parsed, so invalid
// requests cost nothing. It returns refund, which gives the tokens back;
// the caller calls it when the start fails after the delay. A start that
// is cancelled during its delay gets its tokens back, and so does one
// superseded by a later start on the same connection (which would
// replace its pending state anyway): at most one start waits per
// connection, so pipelined starts cannot pile up delayed answers.
func (c *conn) delayLogin(ctx context.Context, user string) (refund func(), err error) {
	srv := c.srv
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d, refund, w, err := c.reserveLogin(wctx, user, cancel)
	if err != nil {
		return nil, err
	}
	if w == nil {
		return refund, nil
	}

	c.log.Debug("login start delayed by the rate limit", "delay", d)
	srv.metrics.loginDelays.Add(1)
	unpark := c.parkAnswer() // no answer room held while delayed (docs/PROTOCOL.md, Memory bounds)
	werr := srv.loginWait(wctx, d)
	if uerr := unpark(); uerr != nil && werr == nil {
		werr = uerr
	}
	c.mu.Lock()
	superseded := w.superseded
	if c.waiting == w {
		c.waiting = nil
	}
	c.mu.Unlock()
	switch {
	case superseded:
		return nil, proto.Errorf(proto.CodeRateLimited, "delayed by the login rate limit and %v", errSuperseded)
	case werr != nil || ctx.Err() != nil:
		refund()
		return nil, proto.Errorf(proto.CodeRateLimited, "cancelled while delayed by the login rate limit")
	}
	return refund, nil
}

// reserveLogin takes the tokens of a login start under c.mu (released
// even if the clock panics, so the connection can still close): it
// supersedes a start waiting on this connection, reserves the address and
// (user, address) budgets and returns the delay, the refund of what was
// taken and, when the start must wait, its delayedStart registered as
// c.waiting. In a cluster the budgets are the shared ones, reserved
// before c.mu is taken (a round trip to the cluster); an error then
// means they could not be reached and the start is refused.
func (c *conn) reserveLogin(ctx context.Context, user string, cancel context.CancelFunc) (time.Duration, func(), *delayedStart, error) {
	srv := c.srv
	addr := addrKey(c.remote)
	var d time.Duration
	var refund func()
	if sh := srv.shared; sh != nil {
		var err error
		if d, refund, err = sh.reserveLogin(ctx, user, addr); err != nil {
			c.log.Warn("login start refused: the cluster's rate-limit buckets are unreachable", "err", err)
			return 0, nil, nil, proto.Errorf(proto.CodeUnavailable, "the cluster's login rate limits are unreachable (no quorum?); nothing was done, retry (or another node)")
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if w := c.waiting; w != nil {
		w.superseded = true
		w.cancel()
		w.refund()
		c.waiting = nil
	}
	if srv.shared == nil {
		d, refund = srv.reserveLocalLogin(user, addr)
	}
	d = min(d, srv.cfg.Limits.MaxLoginDelay)
	if d <= 0 {
		return d, refund, nil, nil
	}
	w := &delayedStart{cancel: cancel, refund: refund}
	c.waiting = w
	return d, refund, w, nil
}

// reserveLocalLogin reserves the login budgets of this process.
func (srv *Server) reserveLocalLogin(user, addr string) (time.Duration, func()) {
	d, byAddr := srv.loginByAddr.reserve(addr)
	byName := false
	if user != "" && byAddr {
		// A start the address budget did not charge waits the longest
		// delay anyway; it neither charges nor creates a name bucket.
		var dn time.Duration
		dn, byName = srv.loginByName.reserve(nameAddrKey(user, addr))
		d = max(d, dn)
	}
	var once sync.Once
	return d, func() {
		once.Do(func() {
			if byAddr {
				srv.loginByAddr.refund(addr)
			}
			if byName {
				srv.loginByName.refund(nameAddrKey(user, addr))
			}
		})
	}
}

func normalizeUser(name string, err error) (string, error) {
	if err != nil {
		return "", proto.Errorf(proto.CodeInvalid, "reading the user name: %v", err)
	}
	u, err := proto.NormalizeUser(name)
	if err != nil {
		return "", proto.Errorf(proto.CodeInvalid, "%v", err)
	}
	return u, nil
}

// RegisterStart implements NodeService.registerStart.
func (n *nodeService) RegisterStart(ctx context.Context, call rpc.NodeService_registerStart) error {
	done, err := n.c.begin()
	if err != nil {
		return err
	}
	defer done()
	call.Go()
	c, srv := n.c, n.c.srv
	args := call.Args()
	user, err := normalizeUser(args.User())
	if err != nil {
		return err
	}
	reqBytes, _ := args.Request()
	// Every answer past here tells whether the name is taken ("exists"
	// comes before the request is even parsed), so a malformed request is
	// charged too; only a fault of the node or a cancellation is not.
	refund, err := c.delayLogin(ctx, "")
	if err != nil {
		return err
	}
	used := false // the start got an answer worth its token
	defer func() {
		if !used {
			refund()
		}
	}()
	// --registration (policy.go): a refusal is the answer, so it keeps
	// its token (guessing invitation tokens is rate limited like logins).
	invite, err := c.checkRegistration(ctx, args)
	if err != nil {
		used = true
		return err
	}
	// An existing name is refused before the OPRF is evaluated.
	switch _, err := srv.store.Account(ctx, user); {
	case err == nil:
		used = true
		return proto.Errorf(proto.CodeExists, "registerStart: the user name is taken")
	case !errors.Is(err, store.ErrNotFound):
		return storeError(c.log, "registerStart", err)
	}
	used = true
	req, err := srv.cfg.OPAQUE.ParseRegistrationRequest(reqBytes)
	if err != nil {
		return proto.Errorf(proto.CodeInvalid, "registerStart: %v", err)
	}
	resp, err := srv.opaque.RegistrationResponse(req, []byte(user))
	if err != nil {
		return proto.Errorf(proto.CodeInvalid, "registerStart: %v", err)
	}
	ksf, err := srv.cfg.OPAQUE.KSF.MarshalBinary()
	if err != nil {
		return err
	}
	used = true
	c.mu.Lock()
	c.registration = &pendingRegistration{user: user, invite: invite}
	c.mu.Unlock()
	res, err := call.AllocResults()
	if err != nil {
		return err
	}
	if err := res.SetResponse(resp.Marshal()); err != nil {
		return err
	}
	return res.SetKsf(ksf)
}

// RegisterFinish implements NodeService.registerFinish.
func (n *nodeService) RegisterFinish(ctx context.Context, call rpc.NodeService_registerFinish) error {
	done, err := n.c.begin()
	if err != nil {
		return err
	}
	defer done()
	call.Go()
	c, srv := n.c, n.c.srv
	c.mu.Lock()
	reg := c.registration
	c.registration = nil
	c.mu.Unlock()
	if reg == nil {
		return proto.Errorf(proto.CodeInvalid, "registerFinish without registerStart on this connection")
	}
	if err := c.sessionRoom(); err != nil {
		return err
	}
	args := call.Args()
	recBytes, _ := args.Record()
	userKey, _ := args.UserKey()
	record, err := srv.cfg.OPAQUE.ParseRegistrationRecord(recBytes)
	if err != nil {
		return proto.Errorf(proto.CodeInvalid, "registerFinish: %v", err)
	}
	if len(userKey) != ed25519.PublicKeySize {
		return proto.Errorf(proto.CodeInvalid, "registerFinish: user key of %d bytes, want %d", len(userKey), ed25519.PublicKeySize)
	}
	params, err := ksfParams(srv.cfg.OPAQUE.KSF)
	if err != nil {
		return err
	}
	acct := store.Account{User: reg.user, Record: record.Marshal(), KSF: params, UserKey: userKey}
	if err := srv.createAccount(ctx, acct, reg.invite); err != nil {
		if errors.Is(err, store.ErrExists) {
			return proto.Errorf(proto.CodeExists, "registerFinish: the user name was taken meanwhile")
		}
		return storeError(c.log, "registerFinish", err)
	}
	c.log.Info("user registered")
	srv.metrics.registrations.Add(1)
	_, sc := c.newSession(rpc.SessionKind_login, reg.user, nil)
	res, err := call.AllocResults()
	if err != nil {
		sc.Release()
		return err
	}
	return res.SetSession(sc)
}

// LoginStart implements NodeService.loginStart.
func (n *nodeService) LoginStart(ctx context.Context, call rpc.NodeService_loginStart) error {
	done, err := n.c.begin()
	if err != nil {
		return err
	}
	defer done()
	call.Go()
	c, srv := n.c, n.c.srv
	args := call.Args()
	user, err := normalizeUser(args.User())
	if err != nil {
		return err
	}
	ke1Bytes, _ := args.Ke1()
	ke1, err := srv.cfg.OPAQUE.ParseKE1(ke1Bytes)
	if err != nil {
		return proto.Errorf(proto.CodeInvalid, "loginStart: %v", err)
	}
	refund, err := c.delayLogin(ctx, user)
	if err != nil {
		return err
	}
	used := false // the start got a KE2: it used its tokens
	defer func() {
		if !used {
			refund()
		}
	}()
	var (
		ke2   *opaque.KE2
		sl    *opaque.ServerLogin
		ksf   opaque.KSF
		known bool
	)
	acct, err := srv.store.Account(ctx, user)
	switch {
	case err == nil:
		record, perr := srv.cfg.OPAQUE.ParseRegistrationRecord(acct.Record)
		if perr != nil {
			c.log.Error("stored OPAQUE record does not parse", "err", perr)
			return proto.Errorf(proto.CodeInternal, "loginStart failed")
		}
		ke2, sl, err = srv.opaque.Login(rand.Reader, ke1, record, []byte(user), opaque.Identities{})
		ksf, known = ksfOf(acct.KSF), true
	case errors.Is(err, store.ErrNotFound):
		// RFC 9807, Section 10.9: a fake record, same shape and size.
		ke2, sl, err = srv.opaque.LoginUnknown(rand.Reader, ke1, []byte(user), opaque.Identities{})
		ksf = srv.cfg.OPAQUE.KSF
	default:
		return storeError(c.log, "loginStart", err)
	}
	if err != nil {
		return proto.Errorf(proto.CodeInvalid, "loginStart: %v", err)
	}
	ksfBytes, err := ksf.MarshalBinary()
	if err != nil {
		return err
	}
	used = true
	c.mu.Lock()
	c.login = &pendingLogin{user: user, known: known, sl: sl}
	c.mu.Unlock()
	res, err := call.AllocResults()
	if err != nil {
		return err
	}
	if err := res.SetKe2(ke2.Marshal()); err != nil {
		return err
	}
	return res.SetKsf(ksfBytes)
}

// LoginFinish implements NodeService.loginFinish.
func (n *nodeService) LoginFinish(ctx context.Context, call rpc.NodeService_loginFinish) error {
	done, err := n.c.begin()
	if err != nil {
		return err
	}
	defer done()
	call.Go()
	c, srv := n.c, n.c.srv
	c.mu.Lock()
	pl := c.login
	c.login = nil
	c.mu.Unlock()
	if pl == nil {
		return proto.Errorf(proto.CodeInvalid, "loginFinish without loginStart on this connection")
	}
	if err := c.sessionRoom(); err != nil {
		return err
	}
	args := call.Args()
	ke3Bytes, _ := args.Ke3()
	proof, _ := args.Proof()
	ke3, err := srv.cfg.OPAQUE.ParseKE3(ke3Bytes)
	if err != nil {
		return proto.Errorf(proto.CodeInvalid, "loginFinish: %v", err)
	}
	sessionKey, err := pl.sl.Finish(ke3)
	if err != nil || !pl.known {
		c.log.Info("login refused", "reason", "KE3")
		srv.metrics.loginFailures.Add(1)
		return errAuth("login")
	}
	// The proof key is that of this connection's binding kind: a proof
	// made for the other kind (a QUIC login relayed to a web connection,
	// or the reverse) cannot verify.
	cbKey, err := proto.ChannelBindingKeyFor(c.binding, sessionKey)
	clear(sessionKey)
	if err != nil {
		return err
	}
	defer clear(cbKey)
	if !proto.VerifyBindingProof(cbKey, proto.RoleClient, c.exporter, proof) {
		// KE3 was right but not for this TLS connection: a relay.
		c.log.Warn("login refused: channel binding proof does not match this connection (relayed login?)")
		srv.metrics.loginFailures.Add(1)
		return errAuth("login")
	}
	c.log.Info("user logged in")
	srv.metrics.logins.Add(1)
	_, sc := c.newSession(rpc.SessionKind_login, pl.user, nil)
	res, err := call.AllocResults()
	if err != nil {
		sc.Release()
		return err
	}
	if err := res.SetProof(proto.BindingProof(cbKey, proto.RoleServer, c.exporter)); err != nil {
		sc.Release()
		return err
	}
	return res.SetSession(sc)
}

// AuthenticateDevice implements NodeService.authenticateDevice.
func (n *nodeService) AuthenticateDevice(ctx context.Context, call rpc.NodeService_authenticateDevice) error {
	done, err := n.c.begin()
	if err != nil {
		return err
	}
	defer done()
	call.Go()
	c, srv := n.c, n.c.srv
	args := call.Args()
	user, err := normalizeUser(args.User())
	if err != nil {
		return err
	}
	if err := c.sessionRoom(); err != nil {
		return err
	}
	device, _ := args.Device()
	device = bytes.Clone(device) // kept by the session beyond this call
	sig, _ := args.Signature()
	if len(device) != ed25519.PublicKeySize {
		return proto.Errorf(proto.CodeInvalid, "authenticateDevice: device key of %d bytes, want %d", len(device), ed25519.PublicKeySize)
	}
	d, err := srv.store.Device(ctx, device)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return errAuth("device authentication")
	case err != nil:
		return storeError(c.log, "authenticateDevice", err)
	case d.User != user:
		return errAuth("device authentication")
	}
	label, err := proto.DeviceAuthLabel(c.binding, false)
	if err != nil {
		return err
	}
	if !proto.VerifyWithLabel(device, label, proto.DeviceAuth(c.exporter, user, device, srv.spkiHash), sig) {
		c.log.Info("device authentication refused: signature does not cover this connection")
		return errAuth("device authentication")
	}
	if d.Revoked {
		// The caller holds the device key (the signature verified), so
		// it may learn why it is refused: a profile whose account was
		// deleted (delete-account, perhaps interrupted, or run on another
		// device) can say so and be removed instead of failing as a
		// wrong key would.
		return errRevoked(ctx, srv, user)
	}
	srv.metrics.deviceAuths.Add(1)
	s, sc := c.newSession(rpc.SessionKind_device, user, device)
	// A revocation between the check above and the registration of the
	// session would have missed it: look again.
	if d, err := srv.store.Device(ctx, device); err != nil || d.Revoked {
		s.end()
		sc.Release()
		return errAuth("device authentication")
	}
	res, err := call.AllocResults()
	if err != nil {
		sc.Release()
		return err
	}
	return res.SetSession(sc)
}
