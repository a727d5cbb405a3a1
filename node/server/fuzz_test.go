package server

import (
	"bytes"
	"crypto/ed25519"
	"testing"
	"time"

	"qpchat/mls"
	"qpchat/node/bench"
	"qpchat/node/proto"
)

// Fuzz targets for the payloads the node decodes itself (the Cap'n Proto
// framing is fuzzed in rpc, the OPAQUE messages in opaque, the records
// in node/store): the MLSMessage header of every routed message, the
// Welcome's references and uploaded KeyPackages.

func FuzzParseHeader(f *testing.F) {
	g := bytes.Repeat([]byte{1}, 32)
	f.Add(bench.PrivateMessage(g, 7, mls.ContentTypeApplication, []byte("hello")))
	f.Add(bench.PrivateMessage(g, 0, mls.ContentTypeCommit, nil))
	f.Add(bench.PrivateMessage(nil, 1<<62, mls.ContentTypeProposal, make([]byte, 300)))
	f.Add(bench.Welcome(testSuite, [][]byte{g}))
	f.Add([]byte{0, 1, 0, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseHeader(b)
		if err != nil {
			return
		}
		m, err := mls.UnmarshalMLSMessage(b)
		if err != nil {
			t.Fatalf("parseHeader accepted what mls refuses: %v", err)
		}
		re, err := m.Marshal()
		if err != nil || !bytes.Equal(re, b) {
			t.Fatalf("accepted message re-encodes differently: %v", err)
		}
		if h.wireFormat != mls.WireFormatPublicMessage && h.wireFormat != mls.WireFormatPrivateMessage {
			t.Fatalf("header of wire format %d", h.wireFormat)
		}
		if h.wireFormat == mls.WireFormatPrivateMessage && (!bytes.Equal(h.group, m.PrivateMessage.GroupID) || h.epoch != m.PrivateMessage.Epoch || h.contentType != m.PrivateMessage.ContentType) {
			t.Fatal("header fields differ from the message's")
		}
	})
}

func FuzzWelcomeRefs(f *testing.F) {
	f.Add(bench.Welcome(testSuite, [][]byte{bytes.Repeat([]byte{2}, 32), bytes.Repeat([]byte{3}, 32)}))
	f.Add(bench.Welcome(testSuite, nil))
	f.Add(bench.PrivateMessage(nil, 0, mls.ContentTypeCommit, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		refs, err := welcomeRefs(b)
		if err != nil {
			return
		}
		m, err := mls.UnmarshalMLSMessage(b)
		if err != nil || m.Welcome == nil || len(m.Welcome.Secrets) != len(refs) {
			t.Fatal("welcomeRefs disagrees with the decoded Welcome")
		}
		if re, err := m.Marshal(); err != nil || !bytes.Equal(re, b) {
			t.Fatal("accepted Welcome re-encodes differently")
		}
	})
}

func FuzzCheckKeyPackage(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	seed := bytes.Repeat([]byte{9}, 32)
	userSeed := bytes.Repeat([]byte{8}, 32)
	dev, userKey := ed25519.NewKeyFromSeed(seed), ed25519.NewKeyFromSeed(userSeed)
	kp, _, err := bench.KeyPackage(testSuite, "alice", userKey, dev, now, 0)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(kp)
	f.Add(kp[:len(kp)/2])
	f.Fuzz(func(t *testing.T, b []byte) {
		ref, err := checkKeyPackage(b, testSuite, bench.Pub(dev), "alice", bench.Pub(userKey), now)
		if err != nil {
			return
		}
		m, err := mls.UnmarshalMLSMessage(b)
		if err != nil {
			t.Fatal("accepted KeyPackage does not decode")
		}
		if re, _ := m.Marshal(); !bytes.Equal(re, b) {
			t.Fatal("accepted KeyPackage re-encodes differently")
		}
		want, _ := mls.MakeKeyPackageRef(m.KeyPackage)
		if !bytes.Equal(ref, want) {
			t.Fatal("wrong KeyPackageRef")
		}
		id, err := proto.ParseCredentialIdentity(m.KeyPackage.LeafNode.Credential.Identity)
		if err != nil || id.User != "alice" {
			t.Fatal("accepted KeyPackage without alice's credential")
		}
	})
}
