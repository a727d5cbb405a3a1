package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"path/filepath"
	"testing"
	"time"

	capnp "capnproto.org/go/capnp/v3"
	capnprpc "capnproto.org/go/capnp/v3/rpc"

	"qpchat/node/bench"
	"qpchat/node/proto"
	"qpchat/opaque"
	"qpchat/rpc"
)

func sessionInfo(t *testing.T, s rpc.Session) (string, rpc.SessionKind, []byte, error) {
	t.Helper()
	f, rel := s.Info(testCtx(t), nil)
	defer rel()
	r, err := f.Struct()
	if err != nil {
		return "", 0, nil, err
	}
	u, _ := r.User()
	d, _ := r.Device()
	return u, r.Kind(), append([]byte(nil), d...), nil
}

func TestRegisterAndLoginOverQUIC(t *testing.T) {
	n := startNode(t, nil)
	u := n.register("Alice")
	if name, kind, _, err := sessionInfo(t, u.login); err != nil || name != "alice" || kind != rpc.SessionKind_login {
		t.Fatalf("registration session: user %q kind %v err %v; want alice, login", name, kind, err)
	}

	// Log in on a new connection; the user key comes out the same.
	c := n.dial()
	s, uk, err := c.Login(testCtx(t), n.cfg.OPAQUE, "ALICE", []byte(testPassword))
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	if !bytes.Equal(uk, u.key) {
		t.Error("login derived another user key than registration")
	}
	if name, kind, _, err := sessionInfo(t, s); err != nil || name != "alice" || kind != rpc.SessionKind_login {
		t.Errorf("login session: user %q kind %v err %v", name, kind, err)
	}

	// Wrong password: auth-failed, no session.
	c2 := n.dial()
	_, _, err = c2.Login(testCtx(t), n.cfg.OPAQUE, "alice", []byte("wrong"))
	if err == nil {
		t.Fatal("login with a wrong password succeeded")
	}
	// The client notices itself (the envelope does not open); make the
	// node refuse too by sending a KE3 made up by the client.
	lp, err := c2.LoginStart(testCtx(t), n.cfg.OPAQUE, "alice", []byte("wrong"))
	if err == nil {
		t.Fatal("client accepted KE2 for a wrong password")
	}
	_ = lp
	f, rel := c2.Node.LoginFinish(testCtx(t), func(p rpc.NodeService_loginFinish_Params) error {
		if err := p.SetKe3(make([]byte, n.cfg.OPAQUE.KE3Size())); err != nil {
			return err
		}
		return p.SetProof(make([]byte, 64))
	})
	_, err = f.Struct()
	rel()
	wantCode(t, "loginFinish with a forged KE3", err, proto.CodeAuth)

	// loginFinish without loginStart.
	f, rel = n.dial().Node.LoginFinish(testCtx(t), nil)
	_, err = f.Struct()
	rel()
	wantCode(t, "loginFinish without loginStart", err, proto.CodeInvalid)
}

// loginStartRaw sends a KE1 for user and returns KE2 and the KSF bytes.
func loginStartRaw(t *testing.T, c *bench.Conn, cfg *opaque.Config, user string) ([]byte, []byte) {
	t.Helper()
	lp, err := c.LoginStart(testCtx(t), cfg, user, []byte(testPassword))
	if lp == nil {
		t.Fatalf("loginStart %s: %v", user, err)
	}
	return lp.KE2, lp.KSF
}

func TestUnknownUserIndistinguishable(t *testing.T) {
	n := startNode(t, nil)
	n.register("alice")
	c := n.dial()
	ke2Known, ksfKnown := loginStartRaw(t, c, n.cfg.OPAQUE, "alice")
	ke2Unknown, ksfUnknown := loginStartRaw(t, c, n.cfg.OPAQUE, "mallory")
	if len(ke2Known) != len(ke2Unknown) || len(ke2Known) != n.cfg.OPAQUE.KE2Size() {
		t.Errorf("KE2 of %d bytes for a known user, %d for an unknown one, want %d both", len(ke2Known), len(ke2Unknown), n.cfg.OPAQUE.KE2Size())
	}
	if !bytes.Equal(ksfKnown, ksfUnknown) {
		t.Errorf("key-stretching parameters differ: %x for a known user, %x for an unknown one", ksfKnown, ksfUnknown)
	}
	if _, err := n.cfg.OPAQUE.ParseKE2(ke2Unknown); err != nil {
		t.Errorf("the unknown user's KE2 does not parse: %v", err)
	}
	// Same fake record for the same name: the masked response keeps its
	// shape, and the errors of a finish are the same as a wrong password.
	errOf := func(user string) error {
		c := n.dial()
		lp, _ := c.LoginStart(testCtx(t), n.cfg.OPAQUE, user, []byte("guess"))
		_ = lp
		f, rel := c.Node.LoginFinish(testCtx(t), func(p rpc.NodeService_loginFinish_Params) error {
			if err := p.SetKe3(make([]byte, n.cfg.OPAQUE.KE3Size())); err != nil {
				return err
			}
			return p.SetProof(make([]byte, 64))
		})
		defer rel()
		_, err := f.Struct()
		return err
	}
	eKnown, eUnknown := errOf("alice"), errOf("mallory")
	if eKnown == nil || eUnknown == nil || eKnown.Error() != eUnknown.Error() {
		t.Errorf("loginFinish errors differ: known %v, unknown %v", eKnown, eUnknown)
	}
}

func TestRegisterExistingRefusedBeforeOPRF(t *testing.T) {
	n := startNode(t, nil)
	n.register("alice")
	c := n.dial()
	// An invalid blinded element would be refused by the OPRF evaluation
	// with "invalid"; an existing name must be refused first, with
	// "exists", whatever the request (the differently written name
	// normalises to the existing one).
	for _, req := range [][]byte{nil, make([]byte, 32), bytes.Repeat([]byte{0xff}, 32)} {
		f, rel := c.Node.RegisterStart(testCtx(t), func(p rpc.NodeService_registerStart_Params) error {
			if err := p.SetUser("ＡLICE"); err != nil { // fullwidth A
				return err
			}
			return p.SetRequest(req)
		})
		_, err := f.Struct()
		rel()
		wantCode(t, "registerStart of an existing name", err, proto.CodeExists)
	}
	// The same invalid request for a new name reaches the OPRF check.
	f, rel := c.Node.RegisterStart(testCtx(t), func(p rpc.NodeService_registerStart_Params) error {
		if err := p.SetUser("bob"); err != nil {
			return err
		}
		return p.SetRequest(bytes.Repeat([]byte{0xff}, 32))
	})
	_, err := f.Struct()
	rel()
	wantCode(t, "registerStart with an invalid element", err, proto.CodeInvalid)

	// A full registration of the existing name fails too.
	_, _, err = c.Register(testCtx(t), n.cfg.OPAQUE, "alice", []byte("other"))
	wantCode(t, "second registration", err, proto.CodeExists)
	// registerFinish without registerStart.
	f2, rel2 := c.Node.RegisterFinish(testCtx(t), nil)
	_, err = f2.Struct()
	rel2()
	wantCode(t, "registerFinish without registerStart", err, proto.CodeInvalid)
}

// relay is a test-built man in the middle: a NodeService with its own
// TLS key that forwards OPAQUE login messages over its own connection to
// the real node. A client that trusted the relay's key would have its
// login relayed; the channel binding must make that fail.
type relay struct {
	up *bench.Conn
}

func (r *relay) Ping(ctx context.Context, call rpc.NodeService_ping) error {
	return errors.New("relay: ping not relayed")
}
func (r *relay) RegisterStart(context.Context, rpc.NodeService_registerStart) error {
	return errors.New("relay: not relayed")
}
func (r *relay) RegisterFinish(context.Context, rpc.NodeService_registerFinish) error {
	return errors.New("relay: not relayed")
}
func (r *relay) AuthenticateDevice(context.Context, rpc.NodeService_authenticateDevice) error {
	return errors.New("relay: not relayed")
}

func (r *relay) LoginStart(ctx context.Context, call rpc.NodeService_loginStart) error {
	call.Go()
	user, _ := call.Args().User()
	ke1, _ := call.Args().Ke1()
	f, rel := r.up.Node.LoginStart(ctx, func(p rpc.NodeService_loginStart_Params) error {
		if err := p.SetUser(user); err != nil {
			return err
		}
		return p.SetKe1(ke1)
	})
	defer rel()
	up, err := f.Struct()
	if err != nil {
		return err
	}
	res, _ := call.AllocResults()
	ke2, _ := up.Ke2()
	ksf, _ := up.Ksf()
	res.SetKe2(ke2)
	return res.SetKsf(ksf)
}

func (r *relay) LoginFinish(ctx context.Context, call rpc.NodeService_loginFinish) error {
	call.Go()
	ke3, _ := call.Args().Ke3()
	proof, _ := call.Args().Proof()
	f, rel := r.up.Node.LoginFinish(ctx, func(p rpc.NodeService_loginFinish_Params) error {
		if err := p.SetKe3(ke3); err != nil {
			return err
		}
		return p.SetProof(proof)
	})
	defer rel()
	up, err := f.Struct()
	if err != nil {
		return err
	}
	res, _ := call.AllocResults()
	p, _ := up.Proof()
	res.SetProof(p)
	return res.SetSession(up.Session().AddRef())
}

// startRelay listens on its own key and relays to n.
func startRelay(t *testing.T, n *node) (addr, fingerprint string) {
	t.Helper()
	certPEM, keyPEM, err := newSelfSigned()
	must(t, "relay key", err)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	must(t, "relay key", err)
	ln, err := rpc.Listen("127.0.0.1:0", cert, rpc.ServerQUICConfig(0, 0))
	must(t, "relay listen", err)
	t.Cleanup(func() { ln.Shutdown() })
	up := n.dial()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		for {
			qc, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			go func() {
				st, err := qc.AcceptStream(ctx)
				if err != nil {
					return
				}
				rc := capnprpc.NewConn(rpc.NewStreamTransport(st, rpc.MessageLimits{}), &capnprpc.Options{
					BootstrapClient: capnp.Client(rpc.NodeService_ServerToClient(&relay{up: up})),
				})
				select {
				case <-rc.Done():
				case <-ctx.Done():
				}
				rc.Close()
			}()
		}
	}()
	leaf, err := parseLeaf(cert)
	must(t, "relay certificate", err)
	return ln.Addr().String(), rpc.Fingerprint(leaf)
}

func TestRelayedLoginFailsChannelBinding(t *testing.T) {
	n := startNode(t, nil)
	n.register("alice")
	addr, fp := startRelay(t, n)
	victim, err := bench.Dial(testCtx(t), addr, fp)
	must(t, "dial relay", err)
	defer victim.Close()
	// The OPAQUE exchange itself succeeds through the relay (the password
	// is right); the binding proof covers the victim's TLS connection to
	// the relay, which is not the relay's connection to the node.
	lp, err := victim.LoginStart(testCtx(t), n.cfg.OPAQUE, "alice", []byte(testPassword))
	must(t, "relayed loginStart", err)
	_, err = victim.LoginFinish(testCtx(t), lp, victim.Exporter)
	wantCode(t, "relayed login", err, proto.CodeAuth)

	// The relay cannot fix it up: it does not know the session key, so it
	// cannot make a proof for its own connection either; and the victim
	// would refuse the node's proof for the other connection.
	c := n.dial()
	lp, err = c.LoginStart(testCtx(t), n.cfg.OPAQUE, "alice", []byte(testPassword))
	must(t, "loginStart", err)
	_, err = c.LoginFinish(testCtx(t), lp, victim.Exporter)
	wantCode(t, "login with another connection's binding", err, proto.CodeAuth)
}

func TestDeviceAuthenticationBoundToConnection(t *testing.T) {
	n := startNode(t, nil)
	u := n.register("alice")
	d := n.addDevice(u)
	a, b := n.dial(), n.dial()
	// A signature made for connection a's exporter, replayed on b.
	_, err := b.AuthenticateDevice(testCtx(t), u.name, d.Key, a.Exporter)
	wantCode(t, "device authentication with another connection's exporter", err, proto.CodeAuth)
	// The same on a, the connection it was made for, works.
	da, err := a.AuthenticateDevice(testCtx(t), u.name, d.Key, a.Exporter)
	must(t, "device authentication", err)
	if name, kind, dev, err := sessionInfo(t, da.S); err != nil || name != "alice" || kind != rpc.SessionKind_device || !bytes.Equal(dev, d.Pub()) {
		t.Errorf("device session info: %q %v %x %v", name, kind, dev, err)
	}
	// Another user's name with this device, and an unknown device.
	n.register("bob")
	_, err = a.AuthenticateDevice(testCtx(t), "bob", d.Key, a.Exporter)
	wantCode(t, "device authentication as another user", err, proto.CodeAuth)
	other, _ := bench.NewDeviceKey(nil)
	_, err = a.AuthenticateDevice(testCtx(t), "alice", other, a.Exporter)
	wantCode(t, "authentication of an unregistered device", err, proto.CodeAuth)

	// Registering a device needs the proof for the registering connection.
	dk, _ := bench.NewDeviceKey(nil)
	f, rel := u.login.RegisterDevice(testCtx(t), func(p rpc.Session_registerDevice_Params) error {
		p.SetDevice(bench.Pub(dk))
		p.SetCertificate(proto.SignDeviceCert(u.key, u.name, bench.Pub(dk)))
		return p.SetProof(proto.SignWithLabel(dk, proto.LabelDeviceRegister, proto.DeviceAuth(a.Exporter, u.name, bench.Pub(dk), a.SPKIHash)))
	})
	_, err = f.Struct()
	rel()
	wantCode(t, "device registration with another connection's proof", err, proto.CodeAuth)
	// A certificate not made by the user key.
	bad, _ := bench.NewDeviceKey(nil)
	f, rel = u.login.RegisterDevice(testCtx(t), func(p rpc.Session_registerDevice_Params) error {
		p.SetDevice(bench.Pub(dk))
		p.SetCertificate(proto.SignDeviceCert(bad, u.name, bench.Pub(dk)))
		return p.SetProof(proto.SignWithLabel(dk, proto.LabelDeviceRegister, proto.DeviceAuth(u.conn.Exporter, u.name, bench.Pub(dk), u.conn.SPKIHash)))
	})
	_, err = f.Struct()
	rel()
	wantCode(t, "device registration with a foreign certificate", err, proto.CodeNotAcceptable)
}

func TestLoginSessionLimits(t *testing.T) {
	n := startNode(t, func(c *Config) { c.LoginSessionTTL = 10 * time.Minute })
	u := n.register("alice")
	d := n.addDevice(u)
	group := newGroupID(t)
	must(t, "createGroup", d.CreateGroup(testCtx(t), group))

	// A login session may not send or fetch.
	login := &bench.Device{S: u.login, User: u.name}
	_, err := login.Send(testCtx(t), group, [][]byte{bench.PrivateMessage(group, 0, 1, []byte("x"))})
	wantCode(t, "send on a login session", err, proto.CodeForbidden)
	_, _, err = login.Fetch(testCtx(t), 0, 0)
	wantCode(t, "fetch on a login session", err, proto.CodeForbidden)
	// A device session may not manage devices.
	f, rel := d.S.RevokeDevice(testCtx(t), func(p rpc.Session_revokeDevice_Params) error { return p.SetDevice(d.Pub()) })
	_, err = f.Struct()
	rel()
	wantCode(t, "revokeDevice on a device session", err, proto.CodeForbidden)

	// It works before expiry and not after.
	if _, _, _, err := sessionInfo(t, u.login); err != nil {
		t.Fatalf("login session before expiry: %v", err)
	}
	n.clock.Advance(10*time.Minute + time.Second)
	_, _, _, err = sessionInfo(t, u.login)
	wantCode(t, "login session after 10 minutes", err, proto.CodeExpired)
	dk, _ := bench.NewDeviceKey(nil)
	err = u.conn.RegisterDevice(testCtx(t), u.login, u.name, u.key, dk)
	wantCode(t, "registerDevice after expiry", err, proto.CodeExpired)
	// Device sessions do not expire.
	if _, _, err := d.Fetch(testCtx(t), 0, 0); err != nil {
		t.Errorf("device session after 10 minutes: %v", err)
	}
}

func TestRevokeEndsSessionsAndKeyPackages(t *testing.T) {
	n := startNode(t, nil)
	u := n.register("alice")
	d1, d2 := n.addDevice(u), n.addDevice(u)
	kps, _ := keyPackages(t, u, d2, 2, n.clock.Now())
	_, err := d2.UploadKeyPackages(testCtx(t), testSuite, kps[:1], kps[1])
	must(t, "upload", err)

	f, rel := u.login.RevokeDevice(testCtx(t), func(p rpc.Session_revokeDevice_Params) error { return p.SetDevice(d2.Pub()) })
	_, err = f.Struct()
	rel()
	must(t, "revoke", err)
	_, _, err = d2.Fetch(testCtx(t), 0, 0)
	wantCode(t, "revoked device's session", err, proto.CodeExpired)
	c := n.dial()
	_, err = c.AuthenticateDevice(testCtx(t), u.name, d2.Key, c.Exporter)
	wantCode(t, "revoked device's authentication", err, proto.CodeAuth)
	got, err := d1.FetchKeyPackages(testCtx(t), u.name, testSuite)
	must(t, "fetchKeyPackages", err)
	if len(got) != 0 {
		t.Errorf("fetched %d KeyPackages after the only device with packages was revoked", len(got))
	}
	// The list shows it revoked; revoking twice is fine.
	f2, rel2 := u.login.ListDevices(testCtx(t), nil)
	r, err := f2.Struct()
	must(t, "listDevices", err)
	l, _ := r.Devices()
	revoked := 0
	for i := 0; i < l.Len(); i++ {
		if l.At(i).Revoked() {
			revoked++
		}
	}
	rel2()
	if l.Len() != 2 || revoked != 1 {
		t.Errorf("listDevices: %d devices, %d revoked; want 2, 1", l.Len(), revoked)
	}
	f, rel = u.login.RevokeDevice(testCtx(t), func(p rpc.Session_revokeDevice_Params) error { return p.SetDevice(d2.Pub()) })
	_, err = f.Struct()
	rel()
	must(t, "second revoke", err)
}

func TestAccountsSurviveRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	n := startNode(t, func(c *Config) { c.DataDir = dir })
	u := n.register("alice")
	d := n.addDevice(u)
	n.stop()

	// A new node on the same directory: same OPAQUE setup (login works),
	// same devices (authentication works).
	n2 := startNode(t, func(c *Config) { c.DataDir = dir })
	if n2.srv.Fingerprint() != n.srv.Fingerprint() {
		t.Error("the node's key changed across a restart")
	}
	c := n2.dial()
	_, uk, err := c.Login(testCtx(t), n2.cfg.OPAQUE, "alice", []byte(testPassword))
	must(t, "login after a restart", err)
	if !bytes.Equal(uk, u.key) {
		t.Error("the user key changed across a restart")
	}
	_, err = c.AuthenticateDevice(testCtx(t), "alice", d.Key, c.Exporter)
	must(t, "device authentication after a restart", err)
}
