package server

import (
	"bytes"
	"crypto/ed25519"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode"

	"qpchat/mls"
	"qpchat/node/bench"
	"qpchat/node/proto"
	"qpchat/rpc"
)

// schemaMethods returns the Session methods of the generated server
// interface, in schema spelling (lower-case first letter).
func schemaMethods() []string {
	it := reflect.TypeFor[rpc.Session_Server]()
	var out []string
	for i := range it.NumMethod() {
		name := it.Method(i).Name
		out = append(out, string(unicode.ToLower(rune(name[0])))+name[1:])
	}
	slices.Sort(out)
	return out
}

// TestSessionMethodTable checks that the node's authorisation table has
// a rule for exactly the methods of the schema.
func TestSessionMethodTable(t *testing.T) {
	for _, m := range schemaMethods() {
		if _, ok := sessionMethods[m]; !ok {
			t.Errorf("Session method %s has no rule in sessionMethods", m)
		}
	}
	if len(sessionMethods) != len(schemaMethods()) {
		t.Errorf("sessionMethods has %d rules for %d schema methods", len(sessionMethods), len(schemaMethods()))
	}
}

// matrix is alice (devices a1, a2) and bob (device b1, login session),
// with a group of alice's, messages queued for a2, and KeyPackages.
type matrix struct {
	*world
	bobLogin rpc.Session
	bobConn  *bench.Conn
}

// crossUser is one row of the authorisation matrix: bob's sessions use
// method on alice's device, queue or group, and check the refusal (or,
// for methods that take no target, that only bob's own objects are
// reached; for the two public lookups, that they are public by design).
type crossUser func(t *testing.T, m *matrix)

var authzMatrix = map[string]crossUser{
	"info": func(t *testing.T, m *matrix) {
		// No target: it describes the caller only.
		name, _, dev, err := sessionInfo(t, m.b1.S)
		if err != nil || name != "bob" || !bytes.Equal(dev, m.b1.Pub()) {
			t.Errorf("info: %q %x %v, want bob's own", name, dev, err)
		}
	},
	"userKey": func(t *testing.T, m *matrix) {
		// Public by design: clients pin other users' keys.
		f, rel := m.b1.S.UserKey(testCtx(t), func(p rpc.Session_userKey_Params) error { return p.SetUser("alice") })
		defer rel()
		r, err := f.Struct()
		must(t, "userKey", err)
		if k, _ := r.Key(); !bytes.Equal(k, bench.Pub(m.alice.key)) {
			t.Error("userKey returned another key than alice's")
		}
	},
	"registerDevice": func(t *testing.T, m *matrix) {
		// Bob cannot register a device under alice's certificate, nor
		// take over alice's device key.
		dk, _ := bench.NewDeviceKey(nil)
		err := m.bobConn.RegisterDevice(testCtx(t), m.bobLogin, "bob", m.alice.key, dk)
		wantCode(t, "registerDevice with alice's certificate", err, proto.CodeNotAcceptable)
		err = m.bobConn.RegisterDevice(testCtx(t), m.bobLogin, "bob", m.bob.key, m.a1.Key)
		wantCode(t, "registerDevice of alice's device key", err, proto.CodeExists)
	},
	"listDevices": func(t *testing.T, m *matrix) {
		f, rel := m.bobLogin.ListDevices(testCtx(t), nil)
		defer rel()
		r, err := f.Struct()
		must(t, "listDevices", err)
		l, _ := r.Devices()
		for i := 0; i < l.Len(); i++ {
			if k, _ := l.At(i).Key(); !bytes.Equal(k, m.b1.Pub()) {
				t.Error("listDevices showed a device that is not bob's")
			}
		}
	},
	"revokeDevice": func(t *testing.T, m *matrix) {
		f, rel := m.bobLogin.RevokeDevice(testCtx(t), func(p rpc.Session_revokeDevice_Params) error { return p.SetDevice(m.a1.Pub()) })
		defer rel()
		_, err := f.Struct()
		wantCode(t, "revokeDevice of alice's device", err, proto.CodeForbidden)
	},
	"uploadKeyPackages": func(t *testing.T, m *matrix) {
		kps, _ := keyPackages(t, m.alice, m.a1, 1, m.n.clock.Now())
		_, err := m.b1.UploadKeyPackages(testCtx(t), testSuite, kps, nil)
		wantCode(t, "uploadKeyPackages of alice's device", err, proto.CodeNotAcceptable)
	},
	"keyPackageCount": func(t *testing.T, m *matrix) {
		// No target: bob's own pool, not alice's (which is not empty).
		f, rel := m.b1.S.KeyPackageCount(testCtx(t), func(p rpc.Session_keyPackageCount_Params) error { p.SetSuite(testSuite); return nil })
		defer rel()
		r, err := f.Struct()
		must(t, "keyPackageCount", err)
		if r.PoolSize() != 0 {
			t.Errorf("bob's keyPackageCount = %d, want his own 0", r.PoolSize())
		}
	},
	"fetchKeyPackages": func(t *testing.T, m *matrix) {
		// Public by design (that is how bob adds alice), rate-limited
		// per (caller, target) and consuming only what it hands out.
		got, err := m.b1.FetchKeyPackages(testCtx(t), "alice", testSuite)
		must(t, "fetchKeyPackages", err)
		for _, g := range got {
			if !bytes.Equal(g.Device, m.a1.Pub()) && !bytes.Equal(g.Device, m.a2.Pub()) {
				t.Error("fetchKeyPackages returned a device that is not alice's")
			}
		}
	},
	"createGroup": func(t *testing.T, m *matrix) {
		wantCode(t, "createGroup with alice's group id", m.b1.CreateGroup(testCtx(t), m.group), proto.CodeExists)
	},
	"groupInfo": func(t *testing.T, m *matrix) {
		f, rel := m.b1.S.GroupInfo(testCtx(t), func(p rpc.Session_groupInfo_Params) error { return p.SetGroup(m.group) })
		defer rel()
		_, err := f.Struct()
		wantCode(t, "groupInfo of alice's group", err, proto.CodeNotMember)
	},
	"commit": func(t *testing.T, m *matrix) {
		g, _ := m.n.srv.store.Group(testCtx(t), m.group)
		_, err := m.b1.Commit(testCtx(t), m.group, bench.PrivateMessage(m.group, g.Epoch, mls.ContentTypeCommit, nil), nil, [][]byte{m.a2.Pub()}, nil)
		wantCode(t, "commit to alice's group", err, proto.CodeNotMember)
	},
	"send": func(t *testing.T, m *matrix) {
		_, err := m.b1.Send(testCtx(t), m.group, [][]byte{bench.PrivateMessage(m.group, 1, mls.ContentTypeApplication, nil)})
		wantCode(t, "send to alice's group", err, proto.CodeNotMember)
	},
	"fetch": func(t *testing.T, m *matrix) {
		// No target: only bob's own queue (empty), never a2's.
		msgs, _, err := m.b1.Fetch(testCtx(t), 0, 0)
		must(t, "fetch", err)
		if len(msgs) != 0 {
			t.Errorf("bob fetched %d messages from an empty queue", len(msgs))
		}
	},
	"fetchWait": func(t *testing.T, m *matrix) {
		msgs, _, err := m.b1.FetchWait(testCtx(t), 0, 0, 1)
		must(t, "fetchWait", err)
		if len(msgs) != 0 {
			t.Errorf("bob fetchWaited %d messages from an empty queue", len(msgs))
		}
	},
	"ack": func(t *testing.T, m *matrix) {
		// Bob's ack reaches only his own queue: a2's stays.
		must(t, "ack", m.b1.Ack(testCtx(t), ^uint64(0)))
		if msgs, _, _ := m.a2.Fetch(testCtx(t), 0, 0); len(msgs) == 0 {
			t.Error("bob's ack emptied alice's queue")
		}
	},
	"publishApproval": func(t *testing.T, m *matrix) {
		// Bob's device cannot approve alice's device, under either name.
		for _, user := range []string{"bob", "alice"} {
			err := m.b1.PublishApproval(testCtx(t), proto.SignApproval(m.b1.Key, user, m.a2.Pub()).Marshal())
			wantCode(t, "publishApproval of alice's device signed for "+user, err, proto.CodeForbidden)
		}
	},
	"clearOverflow": func(t *testing.T, m *matrix) {
		// No target: bob's own queue. Alice's overflow mark stays.
		f, rel := m.b1.S.ClearOverflow(testCtx(t), nil)
		_, err := f.Struct()
		rel()
		must(t, "clearOverflow", err)
		if _, q, _ := m.a2.Fetch(testCtx(t), 0, 0); !q.Overflowed {
			t.Error("bob's clearOverflow cleared alice's device")
		}
	},
	"createBlob": func(t *testing.T, m *matrix) {
		// No target: the blob is bob's, charged to bob's quota.
		id, err := createBlob(t, m.b1.S, 10)
		must(t, "createBlob", err)
		if _, err := putBlob(t, m.a1.S, id, 0, make([]byte, 10)); err == nil {
			t.Error("alice wrote into bob's blob")
		}
	},
	"putBlob": func(t *testing.T, m *matrix) {
		// Alice's blob is not bob's to write, even knowing its id.
		id, err := createBlob(t, m.a1.S, 10)
		must(t, "createBlob", err)
		_, err = putBlob(t, m.b1.S, id, 0, make([]byte, 10))
		wantCode(t, "bob's putBlob into alice's blob", err, proto.CodeNotFound)
		n, err := putBlob(t, m.a1.S, id, 0, []byte("0123456789"))
		if err != nil || n != 10 {
			t.Errorf("alice's own putBlob: %d, %v", n, err)
		}
	},
	"changePasswordStart": func(t *testing.T, m *matrix) {
		// No target: the session's own user. A device session cannot
		// (checked below); bob's login session answers for bob only.
		f, rel := m.bobLogin.ChangePasswordStart(testCtx(t), nil)
		_, err := f.Struct()
		rel()
		wantCode(t, "changePasswordStart without a request", err, proto.CodeInvalid)
	},
	"changePassword": func(t *testing.T, m *matrix) {
		// No target: bob's login session changes bob's account only, and
		// only with a transition signed by bob's current key; one made
		// from alice's key is refused and alice keeps hers.
		_, err := changePassword(t, m.n, m.bob, "bob's new password", func(k ed25519.PrivateKey) ([]byte, [][]byte) {
			return proto.SignTransition(m.alice.key, k, "alice", 1).Marshal(), certsFor(m.bob, k)
		})
		wantCode(t, "changePassword with alice's transition", err, proto.CodeAuth)
		if k, err := userKeyOf(t, m.b1.S, "alice"); err != nil || !bytes.Equal(k, m.alice.key.Public().(ed25519.PublicKey)) {
			t.Errorf("alice's key after bob's attempt: %v", err)
		}
	},
	"keyTransitions": func(t *testing.T, m *matrix) {
		// Public by design, like userKey: contacts follow the chain.
		_, err := keyTransitions(t, m.b1.S, "alice")
		must(t, "keyTransitions of alice", err)
	},
	"deleteAccount": func(t *testing.T, m *matrix) {
		// No target: a login session deletes its own account. Carol
		// deletes hers; alice's and bob's stay.
		carol := m.n.register("carol")
		f, rel := carol.login.DeleteAccount(testCtx(t), nil)
		_, err := f.Struct()
		rel()
		must(t, "carol's deleteAccount", err)
		for _, u := range []string{"alice", "bob"} {
			if _, err := userKeyOf(t, m.b1.S, u); err != nil {
				t.Errorf("%s after carol's deletion: %v", u, err)
			}
		}
	},
	"getBlob": func(t *testing.T, m *matrix) {
		// Public by design to whoever holds the id (it travels inside
		// MLS messages, and the bytes are the sender's ciphertext); an
		// unknown id or an incomplete blob is not found.
		id, err := createBlob(t, m.a1.S, 4)
		must(t, "createBlob", err)
		_, err = getBlob(t, m.b1.S, id)
		wantCode(t, "getBlob of an incomplete blob", err, proto.CodeNotFound)
		_, err = putBlob(t, m.a1.S, id, 0, []byte("blob"))
		must(t, "putBlob", err)
		got, err := getBlob(t, m.b1.S, id)
		if err != nil || string(got) != "blob" {
			t.Errorf("bob's getBlob with the id: %q, %v", got, err)
		}
		_, err = getBlob(t, m.b1.S, make([]byte, 32))
		wantCode(t, "getBlob of an unknown id", err, proto.CodeNotFound)
	},
}

func createBlob(t *testing.T, s rpc.Session, size uint64) ([]byte, error) {
	f, rel := s.CreateBlob(testCtx(t), func(p rpc.Session_createBlob_Params) error { p.SetSize(size); return nil })
	defer rel()
	r, err := f.Struct()
	if err != nil {
		return nil, err
	}
	id, err := r.Id()
	return bytes.Clone(id), err
}

func putBlob(t *testing.T, s rpc.Session, id []byte, off uint64, data []byte) (uint64, error) {
	f, rel := s.PutBlob(testCtx(t), func(p rpc.Session_putBlob_Params) error {
		p.SetOffset(off)
		if err := p.SetId(id); err != nil {
			return err
		}
		return p.SetData(data)
	})
	defer rel()
	r, err := f.Struct()
	if err != nil {
		return 0, err
	}
	return r.Received(), nil
}

func getBlob(t *testing.T, s rpc.Session, id []byte) ([]byte, error) {
	f, rel := s.GetBlob(testCtx(t), func(p rpc.Session_getBlob_Params) error {
		p.SetLength(1 << 20)
		return p.SetId(id)
	})
	defer rel()
	r, err := f.Struct()
	if err != nil {
		return nil, err
	}
	d, err := r.Data()
	return bytes.Clone(d), err
}

func TestAuthorisationMatrix(t *testing.T) {
	for _, name := range schemaMethods() {
		if authzMatrix[name] == nil {
			t.Errorf("Session method %s has no row in the authorisation matrix", name)
		}
	}
	if len(authzMatrix) != len(schemaMethods()) {
		t.Errorf("the matrix has %d rows for %d methods", len(authzMatrix), len(schemaMethods()))
	}

	n := startNode(t, func(c *Config) { c.Limits.MaxQueueLength = 2 })
	alice, bob := n.register("alice"), n.register("bob")
	w := &world{n: n, alice: alice, bob: bob}
	w.a1, w.a2 = n.addDevice(alice), n.addDevice(alice)
	w.b1 = n.addDevice(bob)
	publish(t, n, alice, w.a2)
	w.group = newGroupID(t)
	must(t, "createGroup", w.a1.CreateGroup(testCtx(t), w.group))
	added, refs := fetchAll(t, w.a1, alice)
	_, err := w.a1.Commit(testCtx(t), w.group, bench.PrivateMessage(w.group, 0, mls.ContentTypeCommit, nil), added, nil, bench.Welcome(testSuite, refs))
	must(t, "commit", err)
	// Overflow a2's queue (Welcome + 2 > 2).
	var batch [][]byte
	for range 2 {
		batch = append(batch, bench.PrivateMessage(w.group, 1, mls.ContentTypeApplication, nil))
	}
	_, err = w.a1.Send(testCtx(t), w.group, batch)
	must(t, "send", err)
	m := &matrix{world: w, bobLogin: bob.login, bobConn: bob.conn}

	for _, name := range schemaMethods() {
		t.Run(name, func(t *testing.T) { authzMatrix[name](t, m) })
	}

	// And every method refuses the wrong kind of session, before it
	// reads its parameters.
	for _, name := range schemaMethods() {
		acc := sessionMethods[name]
		goName := strings.ToUpper(name[:1]) + name[1:]
		if acc&loginOK == 0 {
			wantCode(t, name+" on a login session", callEmptyErr(t, alice.login, goName), proto.CodeForbidden)
		}
		if acc&deviceOK == 0 {
			wantCode(t, name+" on a device session", callEmptyErr(t, w.a1.S, goName), proto.CodeForbidden)
		}
	}
}

// callEmptyErr calls the Session method goName with empty parameters
// and returns its error.
func callEmptyErr(t *testing.T, s rpc.Session, goName string) error {
	t.Helper()
	m := reflect.ValueOf(s).MethodByName(goName)
	if !m.IsValid() {
		t.Fatalf("rpc.Session has no method %s", goName)
	}
	out := m.Call([]reflect.Value{reflect.ValueOf(testCtx(t)), reflect.Zero(m.Type().In(1))})
	defer out[1].Call(nil)
	res := out[0].MethodByName("Struct").Call(nil)
	err, _ := res[1].Interface().(error)
	return err
}
