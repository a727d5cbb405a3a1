package server

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"qpchat/mls"
	"qpchat/node/bench"
	"qpchat/node/proto"
	"qpchat/rpc"
)

// refOf returns the KeyPackageRef of a KeyPackage MLSMessage.
func refOf(t testing.TB, msg []byte) []byte {
	t.Helper()
	m, err := mls.UnmarshalMLSMessage(msg)
	must(t, "KeyPackage", err)
	r, err := mls.MakeKeyPackageRef(m.KeyPackage)
	must(t, "KeyPackageRef", err)
	return r
}

// publish uploads one pool package and a last resort for d.
func publish(t testing.TB, n *node, u *user, d *bench.Device) {
	t.Helper()
	kps, _ := keyPackages(t, u, d, 2, n.clock.Now())
	_, err := d.UploadKeyPackages(testCtx(t), testSuite, kps[:1], kps[1])
	must(t, "uploadKeyPackages", err)
}

// fetchAll fetches the packages of users, returning device keys and refs.
func fetchAll(t testing.TB, d *bench.Device, users ...*user) (devices, refs [][]byte) {
	t.Helper()
	for _, u := range users {
		got, err := d.FetchKeyPackages(testCtx(t), u.name, testSuite)
		must(t, "fetchKeyPackages", err)
		for _, f := range got {
			devices = append(devices, f.Device)
			refs = append(refs, refOf(t, f.KeyPackage))
		}
	}
	return devices, refs
}

// world is alice with devices a1, a2 and bob with b1, b2, and a group
// made by a1 with all four at epoch 1.
type world struct {
	n              *node
	alice, bob     *user
	a1, a2, b1, b2 *bench.Device
	group          []byte
}

func newWorld(t *testing.T, edit func(*Config)) *world {
	n := startNode(t, edit)
	w := &world{n: n, alice: n.register("alice"), bob: n.register("bob")}
	w.a1, w.a2 = n.addDevice(w.alice), n.addDevice(w.alice)
	w.b1, w.b2 = n.addDevice(w.bob), n.addDevice(w.bob)
	for _, p := range []struct {
		u *user
		d *bench.Device
	}{{w.alice, w.a2}, {w.bob, w.b1}, {w.bob, w.b2}} {
		publish(t, n, p.u, p.d)
	}
	w.group = newGroupID(t)
	must(t, "createGroup", w.a1.CreateGroup(testCtx(t), w.group))
	added, refs := fetchAll(t, w.a1, w.alice, w.bob)
	if len(added) != 3 {
		t.Fatalf("fetched %d KeyPackages, want 3", len(added))
	}
	r, err := w.a1.Commit(testCtx(t), w.group, bench.PrivateMessage(w.group, 0, mls.ContentTypeCommit, []byte("add")), added, nil, bench.Welcome(testSuite, refs))
	must(t, "commit adding three devices", err)
	if r.Epoch != 1 || r.Duplicate {
		t.Fatalf("commit result %+v, want epoch 1", r)
	}
	return w
}

// drain fetches everything queued for d after seq after.
func drain(t testing.TB, d *bench.Device, after uint64) []bench.Message {
	t.Helper()
	var out []bench.Message
	for {
		msgs, _, err := d.Fetch(testCtx(t), after, 0)
		must(t, "fetch", err)
		if len(msgs) == 0 {
			return out
		}
		out = append(out, msgs...)
		after = msgs[len(msgs)-1].Seq
	}
}

func TestFanOutInOrderWithSenderStamp(t *testing.T) {
	w := newWorld(t, nil)
	// The Welcome reached the three added devices, stamped with a1 and
	// the declared adds.
	for _, d := range []*bench.Device{w.a2, w.b1, w.b2} {
		msgs := drain(t, d, 0)
		if len(msgs) != 1 || msgs[0].Kind != rpc.MessageKind_welcome || !bytes.Equal(msgs[0].Sender, w.a1.Pub()) || len(msgs[0].Added) != 3 || !bytes.Equal(msgs[0].Group, w.group) {
			t.Fatalf("queue of an added device: %+v, want one Welcome from a1 adding 3", msgs)
		}
	}
	if msgs := drain(t, w.a1, 0); len(msgs) != 0 {
		t.Errorf("the committer received %d messages, want none", len(msgs))
	}

	// a1 and b1 send batches; every other member gets all, in order.
	batch := func(from string, n int) [][]byte {
		var out [][]byte
		for i := range n {
			out = append(out, bench.PrivateMessage(w.group, 1, mls.ContentTypeApplication, fmt.Appendf(nil, "%s-%d", from, i)))
		}
		return out
	}
	_, err := w.a1.Send(testCtx(t), w.group, batch("a1", 5))
	must(t, "send", err)
	_, err = w.b1.Send(testCtx(t), w.group, batch("b1", 3))
	must(t, "send", err)
	_, err = w.a1.Send(testCtx(t), w.group, batch("a1x", 2))
	must(t, "send", err)

	want := map[*bench.Device][]string{
		w.a1: {"b1-0", "b1-1", "b1-2"},
		w.b1: {"a1-0", "a1-1", "a1-2", "a1-3", "a1-4", "a1x-0", "a1x-1"},
	}
	all := []string{"a1-0", "a1-1", "a1-2", "a1-3", "a1-4", "b1-0", "b1-1", "b1-2", "a1x-0", "a1x-1"}
	want[w.a2], want[w.b2] = all, all
	for d, exp := range want {
		var got []string
		var last uint64
		for _, m := range drain(t, d, 0) {
			if m.Kind != rpc.MessageKind_application {
				continue
			}
			if m.Seq <= last {
				t.Errorf("sequence numbers not increasing: %d after %d", m.Seq, last)
			}
			last = m.Seq
			pm, err := mls.UnmarshalMLSMessage(m.Data)
			must(t, "queued message", err)
			payload := string(pm.PrivateMessage.Ciphertext)
			sender := w.a1.Pub()
			if payload[0] == 'b' {
				sender = w.b1.Pub()
			}
			if !bytes.Equal(m.Sender, sender) || m.Kind != rpc.MessageKind_application {
				t.Errorf("message %q stamped %x kind %v, want sender %x", payload, m.Sender[:4], m.Kind, sender[:4])
			}
			got = append(got, payload)
		}
		if fmt.Sprint(got) != fmt.Sprint(exp) {
			t.Errorf("device received %v, want %v", got, exp)
		}
	}
}

func TestNonMemberRefused(t *testing.T) {
	w := newWorld(t, nil)
	outsider := w.n.addDevice(w.bob) // bob's third device, not in the group
	_, err := outsider.Send(testCtx(t), w.group, [][]byte{bench.PrivateMessage(w.group, 1, mls.ContentTypeApplication, []byte("hi"))})
	wantCode(t, "send by a non-member", err, proto.CodeNotMember)
	_, err = outsider.Commit(testCtx(t), w.group, bench.PrivateMessage(w.group, 1, mls.ContentTypeCommit, []byte("c")), nil, nil, nil)
	wantCode(t, "commit by a non-member", err, proto.CodeNotMember)
	// Nothing reached the members.
	if msgs := drain(t, w.b1, 1); len(msgs) != 0 {
		t.Errorf("a member received %d messages from a non-member", len(msgs))
	}
}

func TestCommitRules(t *testing.T) {
	w := newWorld(t, nil)
	commit := func(epoch uint64, tag string) []byte {
		return bench.PrivateMessage(w.group, epoch, mls.ContentTypeCommit, []byte(tag))
	}
	// Header epoch ahead of the group: wrong-epoch.
	_, err := w.b1.Commit(testCtx(t), w.group, commit(2, "ahead"), nil, nil, nil)
	wantCode(t, "commit for a future epoch", err, proto.CodeWrongEpoch)
	// Header of another group, or not a commit: invalid.
	_, err = w.b1.Commit(testCtx(t), w.group, bench.PrivateMessage(newGroupID(t), 1, mls.ContentTypeCommit, nil), nil, nil, nil)
	wantCode(t, "commit of another group", err, proto.CodeInvalid)
	_, err = w.b1.Commit(testCtx(t), w.group, bench.PrivateMessage(w.group, 1, mls.ContentTypeApplication, nil), nil, nil, nil)
	wantCode(t, "commit with content type application", err, proto.CodeInvalid)
	_, err = w.b1.Send(testCtx(t), w.group, [][]byte{commit(1, "via send")})
	wantCode(t, "a commit through send", err, proto.CodeInvalid)

	// The first commit of epoch 1 wins; a second one is stale; the first
	// again is an idempotent success.
	first := commit(1, "b1 removes b2")
	r, err := w.b1.Commit(testCtx(t), w.group, first, nil, [][]byte{w.b2.Pub()}, nil)
	must(t, "first commit of epoch 1", err)
	if r.Epoch != 2 || r.Duplicate {
		t.Errorf("first commit: %+v, want epoch 2", r)
	}
	_, err = w.a1.Commit(testCtx(t), w.group, commit(1, "a1 competing"), nil, nil, nil)
	wantCode(t, "second commit of epoch 1", err, proto.CodeStale)
	r, err = w.b1.Commit(testCtx(t), w.group, first, nil, [][]byte{w.b2.Pub()}, nil)
	must(t, "resubmitted commit", err)
	if !r.Duplicate || r.Epoch != 2 {
		t.Errorf("resubmitted commit: %+v, want duplicate at epoch 2", r)
	}
	// The commit went once to each member before it, the removed b2
	// included, the committer excluded, with the declared removal.
	for _, d := range []*bench.Device{w.a1, w.a2, w.b2} {
		var commits []bench.Message
		for _, m := range drain(t, d, 0) {
			if m.Kind == rpc.MessageKind_commit {
				commits = append(commits, m)
			}
		}
		if len(commits) != 1 || !bytes.Equal(commits[0].Sender, w.b1.Pub()) || len(commits[0].Removed) != 1 || !bytes.Equal(commits[0].Removed[0], w.b2.Pub()) {
			t.Errorf("commits received: %+v, want one from b1 removing b2", commits)
		}
	}
	for _, m := range drain(t, w.b1, 1) {
		if m.Kind == rpc.MessageKind_commit {
			t.Error("the committer received its own commit")
		}
	}
	// b2 is out: its sends are refused.
	_, err = w.b2.Send(testCtx(t), w.group, [][]byte{bench.PrivateMessage(w.group, 2, mls.ContentTypeApplication, nil)})
	wantCode(t, "send by a removed device", err, proto.CodeNotMember)
}

func TestCommitWelcomeMustMatchAdds(t *testing.T) {
	n := startNode(t, nil)
	alice, bob := n.register("alice"), n.register("bob")
	a1 := n.addDevice(alice)
	b1, b2 := n.addDevice(bob), n.addDevice(bob)
	publish(t, n, bob, b1)
	publish(t, n, bob, b2)
	group := newGroupID(t)
	must(t, "createGroup", a1.CreateGroup(testCtx(t), group))
	devs, refs := fetchAll(t, a1, bob)
	if len(devs) != 2 {
		t.Fatalf("fetched %d packages, want 2", len(devs))
	}
	c := bench.PrivateMessage(group, 0, mls.ContentTypeCommit, []byte("add"))
	// Welcome for b1's package, commit adds b2 (swapped).
	i1 := indexOf(devs, b1.Pub())
	_, err := a1.Commit(testCtx(t), group, c, [][]byte{b2.Pub()}, nil, bench.Welcome(testSuite, [][]byte{refs[i1]}))
	wantCode(t, "Welcome for another device", err, proto.CodeInvalid)
	// Welcome for both, commit adds one.
	_, err = a1.Commit(testCtx(t), group, c, [][]byte{b1.Pub()}, nil, bench.Welcome(testSuite, refs))
	wantCode(t, "Welcome for more devices than added", err, proto.CodeInvalid)
	// A package the caller did not fetch (a made-up reference).
	_, err = a1.Commit(testCtx(t), group, c, [][]byte{b1.Pub()}, nil, bench.Welcome(testSuite, [][]byte{bytes.Repeat([]byte{7}, 32)}))
	wantCode(t, "Welcome naming an unfetched package", err, proto.CodeInvalid)
	// Another device fetched them: a1's reference does not count for it.
	other := n.addDevice(alice)
	must(t, "createGroup", other.CreateGroup(testCtx(t), newGroupID(t)))
	// Added without a Welcome, a Welcome without adds.
	_, err = a1.Commit(testCtx(t), group, c, [][]byte{b1.Pub()}, nil, nil)
	wantCode(t, "adds without a Welcome", err, proto.CodeInvalid)
	_, err = a1.Commit(testCtx(t), group, c, nil, nil, bench.Welcome(testSuite, refs))
	wantCode(t, "a Welcome without adds", err, proto.CodeInvalid)
	// Nothing was accepted: the matching commit still goes through.
	r, err := a1.Commit(testCtx(t), group, c, devs, nil, bench.Welcome(testSuite, refs))
	must(t, "matching commit", err)
	if r.Epoch != 1 {
		t.Errorf("epoch after the commit: %d, want 1", r.Epoch)
	}
}

func TestFetchWaitWakesOnArrival(t *testing.T) {
	w := newWorld(t, nil)
	drained := drain(t, w.b1, 0)
	last := drained[len(drained)-1].Seq
	type answer struct {
		msgs []bench.Message
		err  error
	}
	got := make(chan answer, 1)
	go func() {
		msgs, _, err := w.b1.FetchWait(testCtx(t), last, 0, 20*time.Second)
		got <- answer{msgs, err}
	}()
	// A second fetchWait of the same session at once is refused.
	time.Sleep(50 * time.Millisecond)
	_, _, err := w.b1.FetchWait(testCtx(t), last, 0, time.Second)
	wantCode(t, "a second concurrent fetchWait", err, proto.CodeBusy)
	_, err = w.a1.Send(testCtx(t), w.group, [][]byte{bench.PrivateMessage(w.group, 1, mls.ContentTypeApplication, []byte("wake"))})
	must(t, "send", err)
	select {
	case a := <-got:
		must(t, "fetchWait", a.err)
		if len(a.msgs) != 1 || a.msgs[0].Seq != last+1 {
			t.Fatalf("fetchWait returned %+v, want the one new message", a.msgs)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("fetchWait did not return after a message arrived")
	}
	// With nothing new, fetchWait returns empty after its timeout.
	msgs, _, err := w.b1.FetchWait(testCtx(t), last+1, 0, 50*time.Millisecond)
	if err != nil || len(msgs) != 0 {
		t.Errorf("fetchWait with nothing queued: %d messages, %v", len(msgs), err)
	}
	// With something already queued it returns at once.
	msgs, _, err = w.b1.FetchWait(testCtx(t), 0, 0, 20*time.Second)
	if err != nil || len(msgs) != 2 {
		t.Errorf("fetchWait with queued messages: %d messages, %v; want 2", len(msgs), err)
	}
}

func TestAckSemantics(t *testing.T) {
	w := newWorld(t, nil)
	var batch [][]byte
	for i := range 5 {
		batch = append(batch, bench.PrivateMessage(w.group, 1, mls.ContentTypeApplication, []byte{byte(i)}))
	}
	_, err := w.a1.Send(testCtx(t), w.group, batch)
	must(t, "send", err)
	all, q, err := w.b1.Fetch(testCtx(t), 0, 0)
	must(t, "fetch", err)
	if len(all) != 6 || q.Length != 6 || q.Last != all[5].Seq {
		t.Fatalf("fetched %d, queue %+v; want 6 (Welcome and 5)", len(all), q)
	}
	// fetch does not delete, limit and after work.
	again, _, _ := w.b1.Fetch(testCtx(t), 0, 2)
	if len(again) != 2 || again[0].Seq != all[0].Seq {
		t.Errorf("second fetch with limit 2: %d messages", len(again))
	}
	// ack(upTo) deletes up to and including upTo, nothing else.
	must(t, "ack", w.b1.Ack(testCtx(t), all[2].Seq))
	rest, q, _ := w.b1.Fetch(testCtx(t), 0, 0)
	if len(rest) != 3 || rest[0].Seq != all[3].Seq || q.Length != 3 {
		t.Errorf("after ack of the third: %d messages from seq %d, length %d; want 3 from %d", len(rest), rest[0].Seq, q.Length, all[3].Seq)
	}
	// Another device's queue is untouched by b1's acks.
	if msgs := drain(t, w.b2, 0); len(msgs) != 6 {
		t.Errorf("b2 has %d messages after b1's ack, want 6", len(msgs))
	}
	// Acking past the end empties the queue; sequence numbers go on.
	must(t, "ack all", w.b1.Ack(testCtx(t), ^uint64(0)))
	if msgs := drain(t, w.b1, 0); len(msgs) != 0 {
		t.Errorf("%d messages left after acking everything", len(msgs))
	}
	_, err = w.a1.Send(testCtx(t), w.group, batch[:1])
	must(t, "send", err)
	msgs := drain(t, w.b1, 0)
	if len(msgs) != 1 || msgs[0].Seq != all[5].Seq+1 {
		t.Errorf("after emptying: %+v, want one message with the next sequence number", msgs)
	}
}

func TestQueueOverflowMarksDevice(t *testing.T) {
	w := newWorld(t, func(c *Config) { c.Limits.MaxQueueLength = 5 })
	// b1 has the Welcome queued; 5 more overflow it, not b2 which acked
	// its Welcome. The sender is not
	// failed, and learns which devices overflowed.
	var batch [][]byte
	for i := range 5 {
		batch = append(batch, bench.PrivateMessage(w.group, 1, mls.ContentTypeApplication, []byte{byte(i)}))
	}
	must(t, "ack b2", w.b2.Ack(testCtx(t), ^uint64(0)))
	overflowed, err := w.a1.Send(testCtx(t), w.group, batch)
	must(t, "send into full queues", err)
	if overflowed != 2 { // a2 and b1 still hold their Welcome; b2 acked
		t.Errorf("send reported %d overflowed devices, want 2", overflowed)
	}
	msgs, q, err := w.b1.Fetch(testCtx(t), 0, 0)
	must(t, "fetch", err)
	if !q.Overflowed || len(msgs) != 5 {
		t.Errorf("b1: %d messages, overflowed %v; want 5 and true", len(msgs), q.Overflowed)
	}
	msgs, q, _ = w.b2.Fetch(testCtx(t), 0, 0)
	if q.Overflowed || len(msgs) != 5 {
		t.Errorf("b2: %d messages, overflowed %v; want 5 and false", len(msgs), q.Overflowed)
	}
	// The device acks everything and clears the mark.
	must(t, "ack", w.b1.Ack(testCtx(t), ^uint64(0)))
	f, rel := w.b1.S.ClearOverflow(testCtx(t), nil)
	_, err = f.Struct()
	rel()
	must(t, "clearOverflow", err)
	_, err = w.a1.Send(testCtx(t), w.group, batch[:1])
	must(t, "send", err)
	msgs, q, _ = w.b1.Fetch(testCtx(t), 0, 0)
	if q.Overflowed || len(msgs) != 1 {
		t.Errorf("after clearOverflow: %d messages, overflowed %v; want 1 and false", len(msgs), q.Overflowed)
	}
}

func TestSendLimits(t *testing.T) {
	w := newWorld(t, func(c *Config) { c.Limits.MaxMessageSize = 1000; c.Limits.MaxBatch = 3 })
	big := bench.PrivateMessage(w.group, 1, mls.ContentTypeApplication, make([]byte, 1000))
	_, err := w.a1.Send(testCtx(t), w.group, [][]byte{big})
	wantCode(t, "send of an oversized message", err, proto.CodeLimit)
	small := bench.PrivateMessage(w.group, 1, mls.ContentTypeApplication, nil)
	_, err = w.a1.Send(testCtx(t), w.group, [][]byte{small, small, small, small})
	wantCode(t, "send of an oversized batch", err, proto.CodeLimit)
	_, err = w.a1.Send(testCtx(t), w.group, [][]byte{[]byte("not an MLS message")})
	wantCode(t, "send of garbage", err, proto.CodeInvalid)
	_, err = w.a1.Send(testCtx(t), w.group, [][]byte{small, small, small})
	must(t, "send within the limits", err)
}

func TestConcurrentSendsKeepPerSenderOrder(t *testing.T) {
	w := newWorld(t, nil)
	var wg sync.WaitGroup
	for _, d := range []*bench.Device{w.a1, w.a2, w.b2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				_, err := d.Send(testCtx(t), w.group, [][]byte{bench.PrivateMessage(w.group, 1, mls.ContentTypeApplication, []byte{byte(i)})})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	next := map[string]byte{}
	count := 0
	for _, m := range drain(t, w.b1, 1) {
		pm, _ := mls.UnmarshalMLSMessage(m.Data)
		i := pm.PrivateMessage.Ciphertext[0]
		if i != next[string(m.Sender)] {
			t.Fatalf("message %d of a sender arrived when %d was due", i, next[string(m.Sender)])
		}
		next[string(m.Sender)]++
		count++
	}
	if count != 60 {
		t.Errorf("received %d messages, want 60", count)
	}
}
