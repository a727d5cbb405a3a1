package server

import (
	"bytes"

	capnp "capnproto.org/go/capnp/v3"
	"crypto/ed25519"
	"testing"
	"time"

	"qpchat/mls"
	"qpchat/node/bench"
	"qpchat/node/proto"
	"qpchat/rpc"
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

// capnpParams encodes a parameter struct built by fill into a framed
// Cap'n Proto message, as it would arrive on the wire.
func capnpParams[T any](f *testing.F, newRoot func(*capnp.Segment) (T, error), fill func(T)) []byte {
	msg, seg, err := capnp.NewMessage(capnp.SingleSegment(nil))
	if err != nil {
		f.Fatal(err)
	}
	p, err := newRoot(seg)
	if err != nil {
		f.Fatal(err)
	}
	fill(p)
	b, err := msg.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// FuzzCommitArgs feeds arbitrary Cap'n Proto messages to commit's
// parameter reader: it must refuse or accept without panicking, and what
// it accepts must satisfy the checks it claims.
func FuzzCommitArgs(f *testing.F) {
	g := bytes.Repeat([]byte{4}, 32)
	dev := bytes.Repeat([]byte{5}, 32)
	f.Add(capnpParams(f, rpc.NewRootSession_commit_Params, func(p rpc.Session_commit_Params) {
		p.SetGroup(g)
		p.SetMessage_(bench.PrivateMessage(g, 3, mls.ContentTypeCommit, []byte("c")))
		l, _ := p.NewAdded(1)
		l.Set(0, dev)
		p.SetWelcome(bench.Welcome(testSuite, [][]byte{dev}))
	}))
	f.Add(capnpParams(f, rpc.NewRootSession_commit_Params, func(p rpc.Session_commit_Params) {
		p.SetGroup(g)
		p.SetMessage_(bench.PrivateMessage(g, 0, mls.ContentTypeCommit, nil))
	}))
	lim := Limits{}.withDefaults()
	f.Fuzz(func(t *testing.T, b []byte) {
		msg, err := capnp.Unmarshal(b)
		if err != nil {
			return
		}
		p, err := rpc.ReadRootSession_commit_Params(msg)
		if err != nil {
			return
		}
		req, err := commitArgs(p, lim)
		if err != nil {
			return
		}
		h, err := parseHeader(req.Message)
		if err != nil || h.contentType != mls.ContentTypeCommit || !bytes.Equal(h.group, req.Group) || len(req.Group) != groupIDLen {
			t.Fatal("commitArgs accepted a message that is not a commit of the group")
		}
		if len(req.Added) != len(req.KeyPackageRefs) || (len(req.Added) > 0) != (len(req.Welcome) > 0) {
			t.Fatal("commitArgs accepted a Welcome that does not fit the added devices")
		}
	})
}

// FuzzSendArgs does the same for send's parameters.
func FuzzSendArgs(f *testing.F) {
	g := bytes.Repeat([]byte{6}, 32)
	f.Add(capnpParams(f, rpc.NewRootSession_send_Params, func(p rpc.Session_send_Params) {
		p.SetGroup(g)
		l, _ := p.NewMessages(2)
		l.Set(0, bench.PrivateMessage(g, 1, mls.ContentTypeApplication, []byte("a")))
		l.Set(1, bench.PrivateMessage(g, 1, mls.ContentTypeProposal, []byte("b")))
	}))
	lim := Limits{}.withDefaults()
	f.Fuzz(func(t *testing.T, b []byte) {
		msg, err := capnp.Unmarshal(b)
		if err != nil {
			return
		}
		p, err := rpc.ReadRootSession_send_Params(msg)
		if err != nil {
			return
		}
		req, err := sendArgs(p, lim)
		if err != nil {
			return
		}
		if len(req.Messages) == 0 || len(req.Messages) > lim.MaxBatch {
			t.Fatalf("sendArgs accepted %d messages", len(req.Messages))
		}
		for _, m := range req.Messages {
			h, err := parseHeader(m)
			if err != nil || h.contentType == mls.ContentTypeCommit || !bytes.Equal(h.group, req.Group) {
				t.Fatal("sendArgs accepted a message it should refuse")
			}
		}
	})
}
