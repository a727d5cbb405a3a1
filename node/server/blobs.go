package server

import (
	"context"
	"crypto/rand"

	"qpchat/node/proto"
	"qpchat/rpc"
)

// Files: the node keeps clients' encrypted files as blobs (node/store,
// blobs.go); docs/PROTOCOL.md, "Files", gives the whole scheme.

// CreateBlob implements Session.createBlob.
func (s *session) CreateBlob(ctx context.Context, call rpc.Session_createBlob) error {
	done, err := s.enter("createBlob")
	if err != nil {
		return err
	}
	defer done()
	call.Go()
	id := make([]byte, 32)
	rand.Read(id)
	b, err := s.c.srv.store.CreateBlob(ctx, s.user, id, call.Args().Size(), s.c.srv.cfg.Now(), s.c.srv.cfg.Limits.blobLimits())
	if err != nil {
		return s.storeErr("createBlob", err)
	}
	res, err := call.AllocResults()
	if err != nil {
		return err
	}
	res.SetChunkSize(b.ChunkSize)
	res.SetExpiresAt(b.Expires)
	return res.SetId(b.ID)
}

// PutBlob implements Session.putBlob.
func (s *session) PutBlob(ctx context.Context, call rpc.Session_putBlob) error {
	done, err := s.enter("putBlob")
	if err != nil {
		return err
	}
	defer done()
	call.Go()
	id, err := call.Args().Id()
	if err != nil {
		return proto.Errorf(proto.CodeInvalid, "putBlob: %v", err)
	}
	data, err := call.Args().Data()
	if err != nil {
		return proto.Errorf(proto.CodeInvalid, "putBlob: %v", err)
	}
	n, err := s.c.srv.store.PutBlobChunk(ctx, s.user, id, call.Args().Offset(), data, s.c.srv.cfg.Now())
	if err != nil {
		return s.storeErr("putBlob", err)
	}
	res, err := call.AllocResults()
	if err != nil {
		return err
	}
	res.SetReceived(n)
	return nil
}

// GetBlob implements Session.getBlob.
func (s *session) GetBlob(ctx context.Context, call rpc.Session_getBlob) error {
	done, err := s.enter("getBlob")
	if err != nil {
		return err
	}
	defer done()
	call.Go()
	id, err := call.Args().Id()
	if err != nil {
		return proto.Errorf(proto.CodeInvalid, "getBlob: %v", err)
	}
	n := min(int(call.Args().Length()), s.c.srv.cfg.Limits.BlobChunk())
	data, size, err := s.c.srv.store.ReadBlob(ctx, id, call.Args().Offset(), n, s.c.srv.cfg.Now())
	if err != nil {
		return s.storeErr("getBlob", err)
	}
	res, err := call.AllocResults()
	if err != nil {
		return err
	}
	res.SetSize(size)
	return res.SetData(data)
}
