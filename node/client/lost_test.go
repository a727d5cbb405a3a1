package client

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"

	capnp "capnproto.org/go/capnp/v3"

	"qpchat/rpc"
)

// damageAt turns u's fromEnd-th last queued delivery (0: the last) into
// a record the node reports lost, and returns its sequence number.
func damageAt(t *testing.T, n *fakeNode, u *testUser, fromEnd int) uint64 {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	q := n.queues[string(u.c.devKey)]
	i := len(q) - 1 - fromEnd
	if i < 0 || q[i].Kind != DeliveryApplication {
		t.Fatal("no such queued application message")
	}
	q[i] = Delivery{Seq: q[i].Seq, Kind: deliveryLost}
	return q[i].Seq
}

// TestLostDeliveriesReported: messages the node reports lost are told to
// the user once, in order, the others arrive, and the client acks past
// them.
func TestLostDeliveriesReported(t *testing.T) {
	ctx := context.Background()
	n := newFakeNode()
	alice, bob := newTestUser(t, n, "alice"), newTestUser(t, n, "bob")
	alice.c.CreateGroup(ctx, "g", 0)
	alice.c.Invite(ctx, "g", []string{"bob"})
	wantTexts(t, bob)
	if err := bob.c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"one", "two", "three", "four"} {
		if err := alice.c.Send(ctx, "g", m); err != nil {
			t.Fatal(err)
		}
	}
	s2 := damageAt(t, n, bob, 2) // "two"
	s3 := damageAt(t, n, bob, 1) // "three"

	evs, err := bob.c.Recv(ctx, 0)
	if err != nil {
		t.Fatalf("Recv with lost messages: %v", err)
	}
	var got []string
	for _, e := range evs {
		switch e.Kind {
		case EventMessage:
			got = append(got, e.Text)
		case EventLost:
			got = append(got, "LOST "+e.Text)
		}
	}
	if len(got) != 3 || got[0] != "one" || got[2] != "four" || !strings.HasPrefix(got[1], "LOST 2 message(s) lost on the node") ||
		!strings.Contains(got[1], "seq "+u64(s2)+", "+u64(s3)) {
		t.Fatalf("bob's history: %q; want one, a loss of seq %d and %d, four", got, s2, s3)
	}
	// Reported once: a restart before the ack does not repeat it (the
	// client's cursor is past it).
	bob.restart(t)
	if evs, err := bob.c.Recv(ctx, 0); err != nil || len(evs) != 0 {
		t.Errorf("after a restart: %d entries, %v; want none", len(evs), err)
	}
	// The next ack covers the lost records; later fetches are clean.
	alice.c.Send(ctx, "g", "five")
	wantTexts(t, bob, "alice: five")
	if err := bob.c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if q := queued(n, bob); q != 0 {
		t.Errorf("%d entries left at the node after the ack", q)
	}
	alice.c.Send(ctx, "g", "six")
	wantTexts(t, bob, "alice: six")
}

// TestOnlyLostInAFetch: a fetch answer with nothing but lost entries
// moves the client on, and WaitForDelivery sees them.
func TestOnlyLostInAFetch(t *testing.T) {
	ctx := context.Background()
	n := newFakeNode()
	alice, bob := newTestUser(t, n, "alice"), newTestUser(t, n, "bob")
	alice.c.CreateGroup(ctx, "g", 0)
	alice.c.Invite(ctx, "g", []string{"bob"})
	wantTexts(t, bob)
	if err := bob.c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	alice.c.Send(ctx, "g", "gone")
	seq := damageAt(t, n, bob, 0)
	if ok, err := bob.c.WaitForDelivery(ctx, 0); err != nil || !ok {
		t.Errorf("WaitForDelivery with only a lost entry: %v, %v", ok, err)
	}
	evs, err := bob.c.Recv(ctx, 0)
	if err != nil || len(evs) != 1 || evs[0].Kind != EventLost || !strings.Contains(evs[0].Text, "seq "+u64(seq)) {
		t.Fatalf("Recv: %v, %+v", err, evs)
	}
	if last, _ := bob.st.LastSeq(); last != seq {
		t.Errorf("last applied %d, want past the lost %d", last, seq)
	}
}

func u64(v uint64) string { return strconv.FormatUint(v, 10) }

func TestLostTextBounded(t *testing.T) {
	var seqs []uint64
	for i := range 1000 {
		seqs = append(seqs, uint64(i+1))
	}
	s := lostText(seqs)
	if !strings.HasPrefix(s, "1000 message(s)") || !strings.Contains(s, "and 980 more") || len(s) > 400 {
		t.Errorf("lostText of 1000: %q", s)
	}
}

// fetchAnswer builds a fetch answer as the node sends it.
func fetchAnswer(t testing.TB, msgs []uint64, lost []uint64) []byte {
	_, seg, err := capnp.NewMessage(capnp.SingleSegment(nil))
	if err != nil {
		t.Fatal(err)
	}
	r, err := rpc.NewRootSession_fetch_Results(seg)
	if err != nil {
		t.Fatal(err)
	}
	l, _ := r.NewMessages(int32(len(msgs)))
	for i, s := range msgs {
		l.At(i).SetSeq(s)
		l.At(i).SetKind(rpc.MessageKind_application)
		l.At(i).SetMessage_([]byte("m"))
	}
	r.NewQueue()
	ll, _ := r.NewLost(int32(len(lost)))
	for i, s := range lost {
		ll.Set(i, s)
	}
	b, err := seg.Message().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decodeFetchBytes(b []byte) (*FetchResult, error) {
	m, err := capnp.Unmarshal(b)
	if err != nil {
		return nil, err
	}
	m.ResetReadLimit(1 << 20)
	r, err := rpc.ReadRootSession_fetch_Results(m)
	if err != nil {
		return nil, err
	}
	return decodeFetch(r)
}

func TestDecodeFetchLost(t *testing.T) {
	res, err := decodeFetchBytes(fetchAnswer(t, []uint64{1, 4}, []uint64{2, 3}))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Deliveries) != 2 || !slices.Equal(res.Lost, []uint64{2, 3}) {
		t.Errorf("decoded %d deliveries, lost %v", len(res.Deliveries), res.Lost)
	}
	ds := withLost(res.Deliveries, res.Lost)
	var seqs []uint64
	for _, d := range ds {
		seqs = append(seqs, d.Seq)
	}
	if !slices.Equal(seqs, []uint64{1, 2, 3, 4}) || ds[1].Kind != deliveryLost || ds[3].Kind != DeliveryApplication {
		t.Errorf("merged %v", seqs)
	}
	// An answer of an older node has no lost field.
	res, err = decodeFetchBytes(fetchAnswer(t, []uint64{1}, nil))
	if err != nil || len(res.Lost) != 0 {
		t.Errorf("answer without lost entries: %v, %v", res.Lost, err)
	}
	// Too many is refused, not allocated.
	many := make([]uint64, maxFetched+1)
	if _, err := decodeFetchBytes(fetchAnswer(t, nil, many)); err == nil {
		t.Error("an answer of too many lost entries was accepted")
	}
}

// FuzzDecodeFetch: any bytes as a fetch answer decode or fail, never
// panic, and stay within the bounds.
func FuzzDecodeFetch(f *testing.F) {
	f.Add(fetchAnswer(f, []uint64{1, 4}, []uint64{2, 3}))
	f.Add(fetchAnswer(f, nil, []uint64{7}))
	f.Add(fetchAnswer(f, []uint64{1}, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		res, err := decodeFetchBytes(b)
		if err != nil {
			return
		}
		if len(res.Deliveries) > maxFetched || len(res.Lost) > maxFetched {
			t.Fatalf("decoded %d deliveries and %d lost", len(res.Deliveries), len(res.Lost))
		}
		ds := withLost(res.Deliveries, res.Lost)
		if len(ds) > len(res.Deliveries)+len(res.Lost) {
			t.Fatal("merge grew")
		}
		for i := 1; i < len(ds); i++ {
			if ds[i].Seq < ds[i-1].Seq {
				t.Fatal("merged deliveries out of order")
			}
		}
	})
}
