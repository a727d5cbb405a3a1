package server

import (
	"bytes"
	"context"

	capnp "capnproto.org/go/capnp/v3"

	"qpchat/mls"
	"qpchat/node/proto"
	"qpchat/node/store"
	"qpchat/rpc"
)

// Groups (DESIGN, Groups and delivery): creation, the commit rules
// (header, epoch, membership, Welcome match, idempotence) and send.

// groupIDLen is the length of a group id: 32 random bytes.
const groupIDLen = 32

func checkGroupID(method string, id []byte, err error) error {
	if err != nil || len(id) != groupIDLen {
		return proto.Errorf(proto.CodeInvalid, "%s: group id of %d bytes, want %d", method, len(id), groupIDLen)
	}
	return nil
}

// CreateGroup implements Session.createGroup.
func (s *session) CreateGroup(ctx context.Context, call rpc.Session_createGroup) error {
	done, err := s.enter("createGroup")
	if err != nil {
		return err
	}
	defer done()
	call.Go()
	id, err := call.Args().Group()
	if err := checkGroupID("createGroup", id, err); err != nil {
		return err
	}
	if err := s.c.srv.store.CreateGroup(ctx, id, s.device); err != nil {
		return s.storeErr("createGroup", err)
	}
	return nil
}

// memberGroup returns the group if the session's device is a member.
func (s *session) memberGroup(ctx context.Context, method string, id []byte) (store.Group, error) {
	g, err := s.c.srv.store.Group(ctx, id)
	if err != nil {
		return g, s.storeErr(method, err)
	}
	for _, m := range g.Members {
		if bytes.Equal(m, s.device) {
			return g, nil
		}
	}
	return g, proto.Errorf(proto.CodeNotMember, "%s: not a member of the group", method)
}

// GroupInfo implements Session.groupInfo.
func (s *session) GroupInfo(ctx context.Context, call rpc.Session_groupInfo) error {
	done, err := s.enter("groupInfo")
	if err != nil {
		return err
	}
	defer done()
	call.Go()
	id, err := call.Args().Group()
	if err := checkGroupID("groupInfo", id, err); err != nil {
		return err
	}
	g, err := s.memberGroup(ctx, "groupInfo", id)
	if err != nil {
		return err
	}
	res, err := call.AllocResults()
	if err != nil {
		return err
	}
	res.SetEpoch(g.Epoch)
	ms, err := res.NewMembers(int32(len(g.Members)))
	if err != nil {
		return err
	}
	for i, m := range g.Members {
		if err := ms.Set(i, m); err != nil {
			return err
		}
	}
	return nil
}

// Commit implements Session.commit.
func (s *session) Commit(ctx context.Context, call rpc.Session_commit) error {
	done, err := s.enter("commit")
	if err != nil {
		return err
	}
	defer done()
	call.Go()
	srv := s.c.srv
	req, err := commitArgs(call.Args(), srv.cfg.Limits)
	if err != nil {
		return err
	}
	req.Committer = s.device
	r, err := srv.store.Commit(ctx, req)
	if err != nil {
		return s.storeErr("commit", err)
	}
	res, err := call.AllocResults()
	if err != nil {
		return err
	}
	srv.metrics.commits.Add(1)
	srv.metrics.overflows.Add(uint64(len(r.Overflowed)))
	res.SetEpoch(r.Epoch)
	res.SetDuplicate(r.Duplicate)
	return setDataList(res.NewOverflowed, r.Overflowed)
}

// commitArgs reads and checks commit's parameters (all but the
// committer): sizes, device lists, the commit's header (a commit of this
// group) and the Welcome's form.
func commitArgs(args rpc.Session_commit_Params, lim Limits) (store.CommitRequest, error) {
	var req store.CommitRequest
	id, err := args.Group()
	if err := checkGroupID("commit", id, err); err != nil {
		return req, err
	}
	msg, _ := args.Message_()
	welcome, _ := args.Welcome()
	if len(msg) > lim.MaxMessageSize || len(welcome) > lim.MaxMessageSize {
		return req, proto.Errorf(proto.CodeLimit, "commit: commit of %d or Welcome of %d bytes, the limit (--max-message-size) is %d", len(msg), len(welcome), lim.MaxMessageSize)
	}
	l, err := args.Added()
	added, err := deviceKeys(l, err, "added devices", lim.MaxGroupSize)
	if err != nil {
		return req, err
	}
	l, err = args.Removed()
	removed, err := deviceKeys(l, err, "removed devices", lim.MaxGroupSize)
	if err != nil {
		return req, err
	}
	h, err := parseHeader(msg)
	switch {
	case err != nil:
		return req, proto.Errorf(proto.CodeInvalid, "commit: %v", err)
	case h.contentType != mls.ContentTypeCommit:
		return req, proto.Errorf(proto.CodeInvalid, "commit: content type %d is not commit", h.contentType)
	case !bytes.Equal(h.group, id):
		return req, proto.Errorf(proto.CodeInvalid, "commit: the message belongs to another group")
	}
	for _, r := range removed {
		if indexOf(added, r) >= 0 {
			return req, proto.Errorf(proto.CodeInvalid, "commit: a device is both added and removed")
		}
	}
	refs, err := welcomeRefsFor(added, welcome)
	if err != nil {
		return req, err
	}
	return store.CommitRequest{Group: id, Epoch: h.epoch, Message: msg,
		Added: added, Removed: removed, Welcome: welcome, KeyPackageRefs: refs}, nil
}

// welcomeRefs checks the Welcome's form against the added devices:
// required iff devices are added, with one new_member reference per
// added device. It returns the references; the store checks, in the
// commit's transaction, that each names a KeyPackage this device
// fetched for an added device (after its idempotence check, so a
// resubmitted commit is still recognised).
func welcomeRefsFor(added [][]byte, welcome []byte) ([][]byte, error) {
	switch {
	case len(added) == 0 && len(welcome) == 0:
		return nil, nil
	case len(added) == 0:
		return nil, proto.Errorf(proto.CodeInvalid, "commit: a Welcome without added devices")
	case len(welcome) == 0:
		return nil, proto.Errorf(proto.CodeInvalid, "commit: added devices without a Welcome")
	}
	refs, err := welcomeRefs(welcome)
	if err != nil {
		return nil, proto.Errorf(proto.CodeInvalid, "commit: Welcome: %v", err)
	}
	if len(refs) != len(added) {
		return nil, proto.Errorf(proto.CodeInvalid, "commit: the Welcome is for %d KeyPackages, the commit adds %d devices", len(refs), len(added))
	}
	return refs, nil
}

func indexOf(list [][]byte, v []byte) int {
	for i, e := range list {
		if bytes.Equal(e, v) {
			return i
		}
	}
	return -1
}

// setDataList fills a new list of byte strings.
func setDataList(newList func(int32) (capnp.DataList, error), v [][]byte) error {
	if len(v) == 0 {
		return nil
	}
	l, err := newList(int32(len(v)))
	if err != nil {
		return err
	}
	for i, b := range v {
		if err := l.Set(i, b); err != nil {
			return err
		}
	}
	return nil
}

// Send implements Session.send.
func (s *session) Send(ctx context.Context, call rpc.Session_send) error {
	done, err := s.enter("send")
	if err != nil {
		return err
	}
	defer done()
	call.Go()
	srv := s.c.srv
	req, err := sendArgs(call.Args(), srv.cfg.Limits)
	if err != nil {
		return err
	}
	req.Sender = s.device
	r, err := srv.store.Send(ctx, req)
	if err != nil {
		return s.storeErr("send", err)
	}
	srv.metrics.sends.Add(1)
	srv.metrics.sentMessages.Add(uint64(len(req.Messages)))
	srv.metrics.overflows.Add(uint64(len(r.Overflowed)))
	res, err := call.AllocResults()
	if err != nil {
		return err
	}
	return setDataList(res.NewOverflowed, r.Overflowed)
}

// sendArgs reads and checks send's parameters (all but the sender):
// batch and message sizes, and each message's header (an application
// message or proposal of this group).
func sendArgs(args rpc.Session_send_Params, lim Limits) (store.SendRequest, error) {
	id, err := args.Group()
	if err := checkGroupID("send", id, err); err != nil {
		return store.SendRequest{}, err
	}
	l, err := args.Messages()
	msgs, err := dataList(l, err, "messages", lim.MaxBatch, "--max-batch", lim.MaxMessageSize)
	if err != nil {
		return store.SendRequest{}, err
	}
	if len(msgs) == 0 {
		return store.SendRequest{}, proto.Errorf(proto.CodeInvalid, "send: no messages")
	}
	for i, m := range msgs {
		h, err := parseHeader(m)
		switch {
		case err != nil:
			return store.SendRequest{}, proto.Errorf(proto.CodeInvalid, "send: message %d: %v", i, err)
		case h.contentType == mls.ContentTypeCommit:
			return store.SendRequest{}, proto.Errorf(proto.CodeInvalid, "send: message %d is a commit; commits go through commit", i)
		case !bytes.Equal(h.group, id):
			return store.SendRequest{}, proto.Errorf(proto.CodeInvalid, "send: message %d belongs to another group", i)
		}
	}
	return store.SendRequest{Group: id, Messages: msgs}, nil
}
