package server

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"testing"

	"qpchat/node/bench"
	"qpchat/node/proto"
	"qpchat/opaque"
	"qpchat/rpc"
)

func keyTransitions(t *testing.T, s rpc.Session, user string) ([][]byte, error) {
	f, rel := s.KeyTransitions(testCtx(t), func(p rpc.Session_keyTransitions_Params) error { return p.SetUser(user) })
	defer rel()
	r, err := f.Struct()
	if err != nil {
		return nil, err
	}
	l, err := r.Transitions()
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for i := range l.Len() {
		b, err := l.At(i)
		if err != nil {
			return nil, err
		}
		out = append(out, bytes.Clone(b))
	}
	return out, nil
}

func userKeyOf(t *testing.T, s rpc.Session, user string) ([]byte, error) {
	f, rel := s.UserKey(testCtx(t), func(p rpc.Session_userKey_Params) error { return p.SetUser(user) })
	defer rel()
	r, err := f.Struct()
	if err != nil {
		return nil, err
	}
	k, err := r.Key()
	return bytes.Clone(k), err
}

// changePassword runs both halves of a password change for u on its
// login session with the transition and certificates that sign makes
// from the new user key, and returns the new key.
func changePassword(t *testing.T, n *node, u *user, newPassword string, sign func(newKey ed25519.PrivateKey) (transition []byte, certs [][]byte)) (ed25519.PrivateKey, error) {
	cfg := n.cfg.OPAQUE
	cr, req, err := cfg.NewClientRegistration(rand.Reader, []byte(newPassword))
	if err != nil {
		t.Fatal(err)
	}
	f, rel := u.login.ChangePasswordStart(testCtx(t), func(p rpc.Session_changePasswordStart_Params) error { return p.SetRequest(req.Marshal()) })
	defer rel()
	r, err := f.Struct()
	if err != nil {
		return nil, err
	}
	respB, _ := r.Response()
	ksfB, _ := r.Ksf()
	resp, err := cfg.ParseRegistrationResponse(respB)
	if err != nil {
		t.Fatal(err)
	}
	ksf, err := opaque.ParseKSF(ksfB)
	if err != nil {
		t.Fatal(err)
	}
	record, export, err := cr.Finish(rand.Reader, resp, ksf, opaque.Identities{})
	if err != nil {
		t.Fatal(err)
	}
	newKey, err := proto.UserKey(export)
	if err != nil {
		t.Fatal(err)
	}
	tr, certs := sign(newKey)
	f2, rel2 := u.login.ChangePassword(testCtx(t), func(p rpc.Session_changePassword_Params) error {
		if err := p.SetRecord(record.Marshal()); err != nil {
			return err
		}
		if err := p.SetUserKey(newKey.Public().(ed25519.PublicKey)); err != nil {
			return err
		}
		if err := p.SetTransition(tr); err != nil {
			return err
		}
		l, err := p.NewCertificates(int32(len(certs)))
		if err != nil {
			return err
		}
		for i, c := range certs {
			if err := l.Set(i, c); err != nil {
				return err
			}
		}
		return nil
	})
	defer rel2()
	_, err = f2.Struct()
	return newKey, err
}

func certsFor(u *user, key ed25519.PrivateKey) [][]byte {
	var out [][]byte
	for _, d := range u.devices {
		out = append(out, append(bytes.Clone(d.Pub()), proto.SignDeviceCert(key, u.name, d.Pub())...))
	}
	return out
}

func TestChangePasswordAndDeleteAccount(t *testing.T) {
	n := startNode(t, nil)
	alice, bob := n.register("alice"), n.register("bob")
	a1 := n.addDevice(alice)
	b1 := n.addDevice(bob)
	oldPub := bytes.Clone(alice.key.Public().(ed25519.PublicKey))

	// Refused: a transition not signed by the current key, one naming
	// another new key, a certificate under the old key, a device missing.
	evil := mustKey(t)
	for what, sign := range map[string]func(k ed25519.PrivateKey) ([]byte, [][]byte){
		"a transition signed by another key": func(k ed25519.PrivateKey) ([]byte, [][]byte) {
			tr := proto.SignTransition(evil, k, "alice", 1)
			tr.Old = oldPub
			return tr.Marshal(), certsFor(alice, k)
		},
		"a transition to another key": func(k ed25519.PrivateKey) ([]byte, [][]byte) {
			return proto.SignTransition(alice.key, evil, "alice", 1).Marshal(), certsFor(alice, k)
		},
		"a transition the new key did not sign": func(k ed25519.PrivateKey) ([]byte, [][]byte) {
			tr := proto.SignTransition(alice.key, k, "alice", 1)
			tr.NewSignature = proto.SignTransition(alice.key, evil, "alice", 1).NewSignature
			return tr.Marshal(), certsFor(alice, k)
		},
		"certificates under the old key": func(k ed25519.PrivateKey) ([]byte, [][]byte) {
			return proto.SignTransition(alice.key, k, "alice", 1).Marshal(), certsFor(alice, alice.key)
		},
	} {
		_, err := changePassword(t, n, alice, "new password", sign)
		wantCode(t, what, err, proto.CodeAuth)
	}
	_, err := changePassword(t, n, alice, "new password", func(k ed25519.PrivateKey) ([]byte, [][]byte) {
		return proto.SignTransition(alice.key, k, "alice", 1).Marshal(), nil
	})
	wantCode(t, "no certificate for a1", err, proto.CodeInvalid)
	_, err = changePassword(t, n, alice, "new password", func(k ed25519.PrivateKey) ([]byte, [][]byte) {
		return proto.SignTransition(alice.key, k, "alice", 2).Marshal(), certsFor(alice, k)
	})
	wantCode(t, "the account's second change as its first", err, proto.CodeStale)
	if k, err := userKeyOf(t, b1.S, "alice"); err != nil || !bytes.Equal(k, oldPub) {
		t.Fatalf("a refused change moved alice's key: %v", err)
	}

	newKey, err := changePassword(t, n, alice, "new password", func(k ed25519.PrivateKey) ([]byte, [][]byte) {
		return proto.SignTransition(alice.key, k, "alice", 1).Marshal(), certsFor(alice, k)
	})
	must(t, "changePassword", err)
	newPub := newKey.Public().(ed25519.PublicKey)
	if k, err := userKeyOf(t, b1.S, "alice"); err != nil || !bytes.Equal(k, newPub) {
		t.Errorf("alice's key after the change: %v", err)
	}
	ts, err := keyTransitions(t, b1.S, "alice")
	must(t, "keyTransitions", err)
	if len(ts) != 1 {
		t.Fatalf("%d transitions, want 1", len(ts))
	}
	tr, err := proto.ParseTransition(ts[0])
	if err != nil || !tr.Verify("alice") || !bytes.Equal(tr.Old, oldPub) || !bytes.Equal(tr.New, newPub) {
		t.Errorf("served transition: %v", err)
	}
	// The old password no longer logs in; the new one does and derives
	// the new key. The device kept working throughout.
	if _, _, err := n.dial().Login(testCtx(t), n.cfg.OPAQUE, "alice", []byte(testPassword)); err == nil {
		t.Error("the old password still logs in")
	}
	ls, k, err := n.dial().Login(testCtx(t), n.cfg.OPAQUE, "alice", []byte("new password"))
	must(t, "login with the new password", err)
	if !bytes.Equal(k.Public().(ed25519.PublicKey), newPub) {
		t.Error("the new password derives another key")
	}
	// The next change is number 2; number 1 again is stale.
	again1 := &user{name: "alice", key: k, login: ls, devices: alice.devices}
	_, err = changePassword(t, n, again1, "third password", func(k3 ed25519.PrivateKey) ([]byte, [][]byte) {
		return proto.SignTransition(k, k3, "alice", 1).Marshal(), certsFor(alice, k3)
	})
	wantCode(t, "a second change numbered 1", err, proto.CodeStale)
	third, err := changePassword(t, n, again1, "third password", func(k3 ed25519.PrivateKey) ([]byte, [][]byte) {
		return proto.SignTransition(k, k3, "alice", 2).Marshal(), certsFor(alice, k3)
	})
	must(t, "the second changePassword", err)
	ts, err = keyTransitions(t, b1.S, "alice")
	if err != nil || len(ts) != 2 || proto.LastSeq(ts) != 2 {
		t.Fatalf("after two changes: %d transitions, %v", len(ts), err)
	}
	parsed := []*proto.Transition{}
	for _, b := range ts {
		tr, _ := proto.ParseTransition(b)
		parsed = append(parsed, tr)
	}
	if chain := proto.FollowTransitions("alice", oldPub, third.Public().(ed25519.PublicKey), parsed); len(chain) != 3 {
		t.Errorf("the served chain from the first key: %d keys, want 3", len(chain))
	}
	ls, _, err = n.dial().Login(testCtx(t), n.cfg.OPAQUE, "alice", []byte("third password"))
	must(t, "login with the third password", err)
	if _, err := userKeyOf(t, a1.S, "bob"); err != nil {
		t.Errorf("alice's device after the change: %v", err)
	}

	// Deleting: the device session ends, the name is free, bob is intact.
	f, rel := ls.DeleteAccount(testCtx(t), nil)
	_, err = f.Struct()
	rel()
	must(t, "deleteAccount", err)
	_, err = userKeyOf(t, b1.S, "alice")
	wantCode(t, "userKey of a deleted account", err, proto.CodeNotFound)
	_, err = userKeyOf(t, a1.S, "bob")
	wantCode(t, "a deleted account's device", err, proto.CodeExpired)
	// The device, proving its key, hears that the account is gone;
	// without a valid proof it hears no more than any stranger.
	c, other := n.dial(), n.dial()
	_, err = c.AuthenticateDevice(testCtx(t), "alice", a1.Key, c.Exporter)
	wantCode(t, "authentication of a deleted account's device", err, proto.CodeNotFound)
	_, err = c.AuthenticateDevice(testCtx(t), "alice", a1.Key, other.Exporter)
	wantCode(t, "authentication of a deleted account's device without a valid proof", err, proto.CodeAuth)
	if _, _, err := n.dial().Login(testCtx(t), n.cfg.OPAQUE, "alice", []byte("new password")); err == nil {
		t.Error("a deleted account logs in")
	}
	again := n.register("alice")
	if k, err := userKeyOf(t, b1.S, "alice"); err != nil || !bytes.Equal(k, again.key.Public().(ed25519.PublicKey)) {
		t.Errorf("the re-registered alice: %v", err)
	}
	if ts, err := keyTransitions(t, b1.S, "alice"); err != nil || len(ts) != 0 {
		t.Errorf("the new alice inherits %d transitions (%v)", len(ts), err)
	}
	if _, err := userKeyOf(t, b1.S, "bob"); err != nil {
		t.Errorf("bob after alice's deletion: %v", err)
	}
}

func mustKey(t *testing.T) ed25519.PrivateKey {
	k, err := bench.NewDeviceKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
