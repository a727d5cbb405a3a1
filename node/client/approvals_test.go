package client

import (
	"bytes"
	"testing"

	"qpchat/mls"
)

// TestApprovalRecord: an approval verifies for its user only, and any
// change to it breaks the signature.
func TestApprovalRecord(t *testing.T) {
	addr, fp := startRealNode(t)
	alice := newRealUser(t, addr, fp, "alice")
	other := bytes.Repeat([]byte{7}, 32)
	a := alice.c.signApproval(other)
	if !a.verify("alice") {
		t.Fatal("a fresh approval does not verify")
	}
	if a.verify("bob") {
		t.Error("an approval verifies for another user")
	}
	for i, mutate := range []func(a *approvalRecord){
		func(a *approvalRecord) { a.Device = bytes.Repeat([]byte{8}, 32) },
		func(a *approvalRecord) { a.Approver = other },
		func(a *approvalRecord) { a.Signature[3] ^= 1 },
	} {
		b, err := parseApproval(a.marshal())
		if err != nil {
			t.Fatal(err)
		}
		mutate(b)
		if b.verify("alice") {
			t.Errorf("mutation %d still verifies", i)
		}
	}
	if alice.c.isApproved(other) {
		t.Error("a device is approved before anyone approved it")
	}
	if !alice.c.isApproved(alice.c.DeviceKey()) {
		t.Error("a device does not trust itself")
	}
	// An approval signed by a device this one does not trust is not
	// honoured, even when it verifies.
	b := &batch{groups: map[string]*group{}, names: map[string][]byte{}}
	stranger := newRealUser(t, addr, fp, "mallory")
	rec := stranger.c.signApproval(other)
	alice.c.applyApproval(b, "alice", stranger.c.DeviceKey(), &payload{Kind: payloadApproval, Text: string(rec.marshal())})
	if len(b.after) != 0 {
		t.Error("an approval by an untrusted device was honoured")
	}
}

func FuzzApprovalRecord(f *testing.F) {
	f.Add((&approvalRecord{Device: bytes.Repeat([]byte{1}, 32), Approver: bytes.Repeat([]byte{2}, 32), Signature: bytes.Repeat([]byte{3}, 64)}).marshal())
	fuzzRecord(f, parseApproval)
}

// TestDescribeMembers: membership notices name each device by its
// fingerprint, and a device of the committer's own user as "a device".
func TestDescribeMembers(t *testing.T) {
	alice1, alice2, bob := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32), bytes.Repeat([]byte{3}, 32)
	m := func(user string, key []byte) mls.Member {
		return mls.Member{Credential: credentialFor(user, key, make([]byte, 64)), SignatureKey: key}
	}
	got := describeMembers("alice", []mls.Member{m("alice", alice2), m("bob", bob)}, []mls.Member{m("alice", alice1)})
	want := "added a device " + Fingerprint(alice2) + ", bob (device " + Fingerprint(bob) + "); removed a device " + Fingerprint(alice1)
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}
