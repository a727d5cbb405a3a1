package server

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"qpchat/node/bench"
	"qpchat/node/proto"
	"qpchat/rpc"
)

// fetchTrust fetches user's KeyPackages with d and returns the approval
// records and the first device the node hands out with them.
func fetchTrust(t *testing.T, d *bench.Device, user string) (approvals [][]byte, first []byte) {
	t.Helper()
	_, approvals, first, err := d.FetchKeyPackagesTrust(testCtx(t), user, testSuite)
	must(t, "fetchKeyPackages", err)
	return approvals, first
}

func revoke(t *testing.T, u *user, d *bench.Device) {
	t.Helper()
	f, rel := u.login.RevokeDevice(testCtx(t), func(p rpc.Session_revokeDevice_Params) error { return p.SetDevice(d.Pub()) })
	_, err := f.Struct()
	rel()
	must(t, "revokeDevice", err)
}

// TestPublishApproval: a device publishes its approval of another device
// of its user; forged records are refused with a clear error; the node
// hands the records and the first device to inviters, keeps them across
// a restart and after the first device is revoked, and leaves out the
// approvals of a revoked device and by a revoked device other than the
// first.
func TestPublishApproval(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	n := startNode(t, func(c *Config) { c.DataDir = dir })
	alice, bob := n.register("alice"), n.register("bob")
	a1, a2 := n.addDevice(alice), n.addDevice(alice)
	thief := n.addDevice(alice) // registered with the password only
	b1 := n.addDevice(bob)
	for _, d := range []*bench.Device{a1, a2, thief} {
		publish(t, n, alice, d)
	}
	ctx := testCtx(t)

	good := proto.SignApproval(a1.Key, "alice", a2.Pub()).Marshal()
	must(t, "publishApproval", a1.PublishApproval(ctx, good))
	must(t, "publishApproval again", a1.PublishApproval(ctx, good))
	// a2 vouches for the thief's device (the node stores what a device of
	// the user signs; inviters decide whom to trust).
	byA2 := proto.SignApproval(a2.Key, "alice", thief.Pub()).Marshal()
	must(t, "publishApproval by a2", a2.PublishApproval(ctx, byA2))

	badSig := proto.SignApproval(a1.Key, "alice", thief.Pub())
	badSig.Signature[5] ^= 1
	for _, tc := range []struct {
		name   string
		from   *bench.Device
		record []byte
		code   proto.Code
		text   string
	}{
		{"another device's record", a1, proto.SignApproval(a2.Key, "alice", thief.Pub()).Marshal(), proto.CodeForbidden, "not this session's device"},
		{"the thief's record passed off as a1's", thief, good, proto.CodeForbidden, "not this session's device"},
		{"another user's device", b1, proto.SignApproval(b1.Key, "bob", a2.Pub()).Marshal(), proto.CodeForbidden, "belongs to another user"},
		{"approving another user's device", a1, proto.SignApproval(a1.Key, "alice", b1.Pub()).Marshal(), proto.CodeForbidden, "belongs to another user"},
		{"bad signature", a1, badSig.Marshal(), proto.CodeAuth, "signature does not verify"},
		{"signed for another user", a1, proto.SignApproval(a1.Key, "bob", thief.Pub()).Marshal(), proto.CodeAuth, "signature does not verify"},
		{"self-approval", a1, proto.SignApproval(a1.Key, "alice", a1.Pub()).Marshal(), proto.CodeInvalid, "itself"},
		{"unknown device", a1, proto.SignApproval(a1.Key, "alice", bytes.Repeat([]byte{9}, 32)).Marshal(), proto.CodeNotFound, "no device"},
		{"malformed", a1, good[:len(good)-1], proto.CodeInvalid, "malformed approval"},
		{"empty", a1, nil, proto.CodeInvalid, "malformed approval"},
	} {
		err := tc.from.PublishApproval(ctx, tc.record)
		wantCode(t, tc.name, err, tc.code)
		if err != nil && !strings.Contains(err.Error(), tc.text) {
			t.Errorf("%s: error %q does not say %q", tc.name, err, tc.text)
		}
	}

	check := func(when string, n *node, wantRecords [][]byte) {
		t.Helper()
		c := n.dial()
		d, err := c.AuthenticateDevice(testCtx(t), "bob", b1.Key, c.Exporter)
		must(t, "authenticate", err)
		approvals, first := fetchTrust(t, d, "alice")
		if !bytes.Equal(first, a1.Pub()) {
			t.Errorf("%s: first device %x, want a1 %x", when, first, a1.Pub())
		}
		if len(approvals) != len(wantRecords) {
			t.Fatalf("%s: %d approval records, want %d", when, len(approvals), len(wantRecords))
		}
		for i, w := range wantRecords {
			found := false
			for _, a := range approvals {
				found = found || bytes.Equal(a, w)
			}
			if !found {
				t.Errorf("%s: approval %d is missing", when, i)
			}
		}
	}
	check("after publishing", n, [][]byte{good, byA2})

	// A restart keeps them.
	n.stop()
	n2 := startNode(t, func(c *Config) { c.DataDir = dir })
	check("after a restart", n2, [][]byte{good, byA2})

	// Revoking the first device keeps its approvals and its place as the
	// root; revoking the approved device leaves its approval out.
	c := n2.dial()
	ls, _, err := c.Login(testCtx(t), n2.cfg.OPAQUE, "alice", []byte(testPassword))
	must(t, "login", err)
	alice.login = ls
	revoke(t, alice, a1)
	check("after revoking the first device", n2, [][]byte{good, byA2})
	// Revoking a2 leaves out both the approval of a2 and a2's approval
	// (its approver is revoked and not the first device).
	revoke(t, alice, a2)
	check("after revoking the approved device", n2, nil)
}

// TestPublishApprovalRevokedDevice: the approval of a revoked device is
// refused.
func TestPublishApprovalRevokedDevice(t *testing.T) {
	n := startNode(t, nil)
	alice := n.register("alice")
	a1, a2 := n.addDevice(alice), n.addDevice(alice)
	revoke(t, alice, a2)
	err := a1.PublishApproval(testCtx(t), proto.SignApproval(a1.Key, "alice", a2.Pub()).Marshal())
	wantCode(t, "approving a revoked device", err, proto.CodeNotAcceptable)
}
