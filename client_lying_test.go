package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"qpchat/mls"
	"qpchat/node/proto"
	"qpchat/node/store"
)

// openNodeStore opens a stopped node's store, as a node turned liar (or
// an attacker with its disk) could change it.
func openNodeStore(t *testing.T, data string) *store.LocalStore {
	t.Helper()
	ls, err := store.OpenServer(filepath.Join(data, "node.db"), store.Options{KeyFile: filepath.Join(data, "node.key")}, store.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

func deviceKeyOf(t *testing.T, ls *store.LocalStore, user string) []byte {
	t.Helper()
	ds, err := ls.Devices(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if !d.Revoked {
			return d.Key
		}
	}
	t.Fatalf("%s has no device", user)
	return nil
}

// TestClientLyingNode: the node's database is changed behind its back so
// that it hands out a KeyPackage of a device Bob's user key never signed,
// and delivers Alice's message stamped as Carol's. The clients (the real
// binary) refuse both.
func TestClientLyingNode(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	data, state := filepath.Join(dir, "data"), filepath.Join(dir, "state")
	n := startNode(t, "127.0.0.1:0", data)
	alice, bob, carol := newCLIUser(t, n, state, "alice"), newCLIUser(t, n, state, "bob"), newCLIUser(t, n, state, "carol")
	alice.run("create-group", "g")
	alice.run("invite", "g", "carol")
	carol.run("join")
	n.stop(t)

	// A device "of Bob" certified by a key that is not Bob's, with a
	// KeyPackage in his name.
	ls := openNodeStore(t, data)
	_, evil, _ := ed25519.GenerateKey(rand.Reader)
	_, dev, _ := ed25519.GenerateKey(rand.Reader)
	devPub := dev.Public().(ed25519.PublicKey)
	cert := proto.SignDeviceCert(evil, "bob", devPub)
	ci := proto.CredentialIdentity{User: "bob", DeviceID: proto.DeviceID(devPub), Certificate: cert}
	signer, err := mls.ParseSignaturePrivateKey(mls.CipherSuite(0xFA01), dev.Seed())
	if err != nil {
		t.Fatal(err)
	}
	kp, err := mls.NewKeyPackage(rand.Reader, mls.CipherSuite(0xFA01), mls.Credential{Type: mls.CredentialTypeBasic, Identity: ci.Marshal()}, signer, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := kp.Ref()
	msg, _ := kp.Message()
	if err := ls.AddDevice(ctx, store.Device{User: "bob", Key: devPub, Certificate: cert}); err != nil {
		t.Fatal(err)
	}
	if _, err := ls.PutKeyPackages(ctx, devPub, 0xFA01, []store.KeyPackage{{Ref: ref, Data: msg}}, nil); err != nil {
		t.Fatal(err)
	}
	ls.Close()
	n = startNode(t, n.addr, data)

	code, _, errs := alice.try("invite", "g", "bob")
	if code == 0 || !strings.Contains(errs, "refusing a KeyPackage of bob") {
		t.Errorf("invite with a forged KeyPackage: exit %d, stderr %q", code, errs)
	}
	oneErrorLine(t, errs)
	if ms := alice.jsonLines("members", "g"); len(ms) != 2 {
		t.Errorf("the group changed: %v", ms)
	}

	// Bob's real device only, from now on; Bob joins.
	n.stop(t)
	ls = openNodeStore(t, data)
	if err := ls.RevokeDevice(ctx, devPub); err != nil {
		t.Fatal(err)
	}
	ls.Close()
	n = startNode(t, n.addr, data)
	alice.run("invite", "g", "bob")
	bob.run("join")
	alice.run("send", "g", "from alice")
	n.stop(t)

	// Re-stamp Alice's message as Carol's.
	ls = openNodeStore(t, data)
	bobDev, carolDev := deviceKeyOf(t, ls, "bob"), deviceKeyOf(t, ls, "carol")
	r, err := ls.Fetch(ctx, bobDev, 0, 0, 0)
	q := r.Messages
	if err != nil || len(q) == 0 {
		t.Fatalf("bob's queue: %v, %v", q, err)
	}
	last := q[len(q)-1]
	if last.Kind != store.KindApplication {
		t.Fatalf("last queued message of kind %d", last.Kind)
	}
	if err := ls.Ack(ctx, bobDev, last.Seq); err != nil {
		t.Fatal(err)
	}
	if _, err := ls.Send(ctx, store.SendRequest{Group: last.Group, Sender: carolDev, Messages: [][]byte{last.Data}}); err != nil {
		t.Fatal(err)
	}
	ls.Close()
	n = startNode(t, n.addr, data)

	var refused bool
	for _, m := range bob.jsonLines("recv") {
		if m["event"] == "message" {
			t.Errorf("bob accepted %v", m)
		}
		if m["event"] == "refused" && strings.Contains(m["reason"].(string), "stamp") {
			refused = true
		}
	}
	if !refused {
		t.Error("bob did not report the forged stamp")
	}

	// The node now publishes another user key for Bob: refused until
	// Alice accepts it after comparing safety numbers.
	alice.run("fetch-key", "bob")
	n.stop(t)
	ls = openNodeStore(t, data)
	acct, err := ls.Account(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	acct.UserKey = evil.Public().(ed25519.PublicKey)
	if err := ls.ReplaceAccount(ctx, acct); err != nil {
		t.Fatal(err)
	}
	ls.Close()
	startNode(t, n.addr, data)
	code, _, errs = alice.try("fetch-key", "bob")
	if code == 0 || !strings.Contains(errs, "user key of bob changed") {
		t.Errorf("fetch-key after a key change: exit %d, stderr %q", code, errs)
	}
	oneErrorLine(t, errs)
	v := alice.jsonLines("verify", "bob")
	if len(v) != 1 || v[0]["changed"] != true || v[0]["new_user_key"] == nil {
		t.Errorf("verify after a key change: %v", v)
	}
	v = alice.jsonLines("verify", "bob", "--accept")
	if len(v) != 1 || v[0]["changed"] != false || v[0]["verified"] != true {
		t.Errorf("verify --accept: %v", v)
	}
}
