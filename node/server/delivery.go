package server

import (
	"context"
	"time"

	capnp "capnproto.org/go/capnp/v3"

	"qpchat/node/proto"
	"qpchat/node/store"
	"qpchat/rpc"
)

// Delivery (DESIGN, Groups and delivery): per-device queues read with
// fetch and fetchWait, emptied only by ack.

const (
	// maxFetch caps the messages of one fetch answer.
	maxFetch = 1000
	// maxFetchBytes caps the bytes of messages and stamps of one fetch
	// answer (always at least one message), so answers stay within a
	// client's frame limit (proto.MinClientFrameSize).
	maxFetchBytes = proto.MaxFetchAnswerBytes
)

// fetchResults is what fetch and fetchWait fill.
type fetchResults interface {
	NewMessages(int32) (rpc.QueuedMessage_List, error)
	NewQueue() (rpc.QueueState, error)
	NewKeyPackagesLow(int32) (capnp.UInt16List, error)
	NewLost(int32) (capnp.UInt64List, error)
}

func fetchLimit(limit uint32) int {
	if limit == 0 || limit > maxFetch {
		return maxFetch
	}
	return int(limit)
}

var kinds = map[store.MessageKind]rpc.MessageKind{
	store.KindApplication: rpc.MessageKind_application,
	store.KindCommit:      rpc.MessageKind_commit,
	store.KindWelcome:     rpc.MessageKind_welcome,
}

// fill writes messages, lost sequence numbers, queue state and low pools
// into a fetch answer.
func (s *session) fill(res fetchResults, r store.FetchResult) error {
	msgs, st := r.Messages, r.Queue
	s.c.srv.metrics.fetchedMessages.Add(uint64(len(msgs)))
	if len(r.Lost) > 0 {
		ll, err := res.NewLost(int32(len(r.Lost)))
		if err != nil {
			return err
		}
		for i, seq := range r.Lost {
			ll.Set(i, seq)
		}
	}
	s.c.srv.touchDevice(s.device) // device expiry (policy.go)
	l, err := res.NewMessages(int32(len(msgs)))
	if err != nil {
		return err
	}
	for i, m := range msgs {
		e := l.At(i)
		e.SetSeq(m.Seq)
		e.SetKind(kinds[m.Kind])
		if err := e.SetGroup(m.Group); err != nil {
			return err
		}
		if err := e.SetSender(m.Sender); err != nil {
			return err
		}
		if err := setDataList(e.NewAdded, m.Added); err != nil {
			return err
		}
		if err := setDataList(e.NewRemoved, m.Removed); err != nil {
			return err
		}
		if err := e.SetMessage_(m.Data); err != nil {
			return err
		}
	}
	q, err := res.NewQueue()
	if err != nil {
		return err
	}
	q.SetLength(st.Len)
	q.SetLast(st.Last)
	q.SetOverflowed(st.Overflowed)
	if low := s.c.srv.lowPools.suites(s.device); len(low) > 0 {
		ul, err := res.NewKeyPackagesLow(int32(len(low)))
		if err != nil {
			return err
		}
		for i, suite := range low {
			ul.Set(i, suite)
		}
	}
	return nil
}

// Fetch implements Session.fetch.
func (s *session) Fetch(ctx context.Context, call rpc.Session_fetch) error {
	done, err := s.enter("fetch")
	if err != nil {
		return err
	}
	defer done()
	call.Go()
	args := call.Args()
	r, err := s.c.srv.store.Fetch(ctx, s.device, args.After(), fetchLimit(args.Limit()), maxFetchBytes)
	if err != nil {
		return s.storeErr("fetch", err)
	}
	s.reportDamaged(r)
	res, err := call.AllocResults()
	if err != nil {
		return err
	}
	return s.fill(res, r)
}

// FetchWait implements Session.fetchWait: like fetch, but with nothing
// to return it waits for the store's signal, which fires once a message
// for this device is durable.
func (s *session) FetchWait(ctx context.Context, call rpc.Session_fetchWait) error {
	done, err := s.enter("fetchWait")
	if err != nil {
		return err
	}
	defer done()
	call.Go()
	if !s.waiting.CompareAndSwap(false, true) {
		return proto.Errorf(proto.CodeBusy, "fetchWait: another fetchWait of this session is in progress")
	}
	defer s.waiting.Store(false)
	srv := s.c.srv
	args := call.Args()
	after, limit := args.After(), fetchLimit(args.Limit())
	wait := min(time.Duration(args.TimeoutMillis())*time.Millisecond, srv.cfg.Limits.MaxFetchWait)

	// Take the signal before reading, so an arrival in between wakes us.
	signal := srv.store.QueueSignal(s.device)
	r, err := srv.store.Fetch(ctx, s.device, after, limit, maxFetchBytes)
	if err != nil {
		return s.storeErr("fetchWait", err)
	}
	s.reportDamaged(r)
	if len(r.Messages) == 0 && len(r.Lost) == 0 && wait > 0 {
		unpark := s.c.parkAnswer() // no answer to hold room for while parked
		t := time.NewTimer(wait)
		select {
		case <-signal:
			if err = unpark(); err == nil {
				r, err = srv.store.Fetch(ctx, s.device, after, limit, maxFetchBytes)
			}
			if err == nil {
				s.reportDamaged(r)
			}
		case <-t.C:
		case <-s.endCh:
		case <-srv.stopping:
		case <-ctx.Done():
		case <-s.c.qc.Context().Done():
		}
		t.Stop()
		if uerr := unpark(); err == nil {
			err = uerr
		}
		if err != nil {
			return s.storeErr("fetchWait", err)
		}
	}
	res, err := call.AllocResults()
	if err != nil {
		return err
	}
	return s.fill(res, r)
}

// reportDamaged logs each queued record the store found damaged for the
// first time, once: the device is told in the answer's lost list and
// acks past it. The log names no user, device or group.
func (s *session) reportDamaged(r store.FetchResult) {
	for range r.Damaged {
		s.c.srv.log.Warn("a queued message was damaged in the store (failed authentication); it is skipped and reported to its device as lost")
	}
}

// Ack implements Session.ack.
func (s *session) Ack(ctx context.Context, call rpc.Session_ack) error {
	done, err := s.enter("ack")
	if err != nil {
		return err
	}
	defer done()
	call.Go()
	if err := s.c.srv.store.Ack(ctx, s.device, call.Args().UpTo()); err != nil {
		return s.storeErr("ack", err)
	}
	s.c.srv.metrics.acks.Add(1)
	return nil
}

// ClearOverflow implements Session.clearOverflow.
func (s *session) ClearOverflow(ctx context.Context, call rpc.Session_clearOverflow) error {
	done, err := s.enter("clearOverflow")
	if err != nil {
		return err
	}
	defer done()
	call.Go()
	if err := s.c.srv.store.ClearOverflow(ctx, s.device); err != nil {
		return s.storeErr("clearOverflow", err)
	}
	return nil
}
