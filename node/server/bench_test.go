package server

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"qpchat/mls"
	"qpchat/node/bench"
	"qpchat/node/proto"
	"qpchat/node/store"
	"qpchat/opaque"
)

// Benchmarks of the node's hot paths over real QUIC, in-process. The
// figures of the issue (C=64, G=2, B=100 and the latencies) come from
// `qpchat bench` against a separate node process; BenchmarkDelivery runs
// the same driver in-process.

// pair is a group of a sender and a receiver.
func benchPair(b *testing.B) (*world, *bench.Device, *bench.Device) {
	n := startNode(b, nil)
	alice := n.register("alice")
	s, r := n.addDevice(alice), n.addDevice(alice)
	publish(b, n, alice, r)
	g := newGroupID(b)
	must(b, "createGroup", s.CreateGroup(testCtx(b), g))
	added, refs := fetchAll(b, s, alice)
	_, err := s.Commit(testCtx(b), g, bench.PrivateMessage(g, 0, mls.ContentTypeCommit, nil), added, nil, bench.Welcome(testSuite, refs))
	must(b, "commit", err)
	msgs, _, _ := r.Fetch(testCtx(b), 0, 0)
	must(b, "ack", r.Ack(testCtx(b), msgs[len(msgs)-1].Seq))
	return &world{n: n, alice: alice, group: g}, s, r
}

// drainer acks everything r receives until ctx ends.
func drainer(ctx context.Context, r *bench.Device, after uint64) {
	for ctx.Err() == nil {
		msgs, _, err := r.FetchWait(ctx, after, 0, time.Second)
		if err != nil || len(msgs) == 0 {
			continue
		}
		after = msgs[len(msgs)-1].Seq
		r.Ack(ctx, after)
	}
}

func benchmarkSend(b *testing.B, batch int) {
	w, s, r := benchPair(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go drainer(ctx, r, 0)
	msgs := make([][]byte, batch)
	for i := range msgs {
		msgs[i] = bench.PrivateMessage(w.group, 1, mls.ContentTypeApplication, make([]byte, 256))
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.Send(ctx, w.group, msgs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkSendSingle is one durable send of one message (C=1, B=1)
// while the receiver fetches and acks (its acks compete for commits).
func BenchmarkSendSingle(b *testing.B) { benchmarkSend(b, 1) }

// BenchmarkSendSingleIdle is one durable send of one message with
// nothing else running on the node.
func BenchmarkSendSingleIdle(b *testing.B) {
	w, s, _ := benchPair(b)
	msgs := [][]byte{bench.PrivateMessage(w.group, 1, mls.ContentTypeApplication, make([]byte, 256))}
	for b.Loop() {
		if _, err := s.Send(context.Background(), w.group, msgs); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSendBatch100 is one durable send of 100 messages.
func BenchmarkSendBatch100(b *testing.B) { benchmarkSend(b, 100) }

// BenchmarkFetchWaitWake measures from a send's return to the parked
// receiver's fetchWait return.
func BenchmarkFetchWaitWake(b *testing.B) {
	w, s, r := benchPair(b)
	ctx := context.Background()
	msg := [][]byte{bench.PrivateMessage(w.group, 1, mls.ContentTypeApplication, make([]byte, 256))}
	var after uint64
	if m, _, _ := r.Fetch(ctx, 0, 0); len(m) > 0 {
		after = m[len(m)-1].Seq
	}
	var total time.Duration
	for b.Loop() {
		got := make(chan time.Time, 1)
		go func() {
			m, _, err := r.FetchWait(ctx, after, 0, 10*time.Second)
			if err != nil || len(m) == 0 {
				got <- time.Time{}
				return
			}
			after = m[len(m)-1].Seq
			got <- time.Now()
		}()
		time.Sleep(2 * time.Millisecond) // let the receiver park
		if _, err := s.Send(ctx, w.group, msg); err != nil {
			b.Fatal(err)
		}
		sent := time.Now()
		woke := <-got
		if woke.IsZero() {
			b.Fatal("fetchWait returned nothing")
		}
		total += max(0, woke.Sub(sent))
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N), "µs-wake/op")
}

// BenchmarkDelivery runs the `qpchat bench` driver in-process with
// C=64, G=2, B=100 for two seconds per iteration.
func BenchmarkDelivery(b *testing.B) {
	n := startNode(b, func(c *Config) { c.Limits.MaxConnsPerAddr = 64 })
	for b.Loop() {
		res, err := bench.Run(context.Background(), bench.Config{
			Addr: n.srv.Addr().String(), Fingerprint: n.srv.Fingerprint(),
			Clients: 64, GroupSize: 2, Batch: 100, PayloadSize: 256, Duration: 2 * time.Second,
		})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(res.Delivered)/res.Elapsed.Seconds(), "delivered/s")
		b.ReportMetric(float64(res.SendLatency.P50.Microseconds()), "µs-send-p50")
	}
}

// BenchmarkLoginServerSide measures the node's work for one OPAQUE
// login with the production configuration (the client's Argon2id is
// outside the timer): the account lookup, KE2, KE3 and the binding
// proofs.
func BenchmarkLoginServerSide(b *testing.B) {
	cfg := opaque.QPChat()
	cfg.KSF = opaque.TestArgon2id // only the client stretches; keep setup fast
	dir := b.TempDir()
	ls, err := store.OpenServer(dir+"/node.db", store.Options{KeyFile: dir + "/node.key"}, store.Limits{})
	must(b, "store", err)
	defer ls.Close()
	setup, _ := cfg.GenerateServerSetup(rand.Reader)
	srv, _ := cfg.NewServer(setup)
	ctx := context.Background()
	pw := []byte("password")
	st, req, _ := cfg.NewClientRegistration(rand.Reader, pw)
	resp, _ := srv.RegistrationResponse(req, []byte("alice"))
	rec, _, err := st.Finish(rand.Reader, resp, cfg.KSF, opaque.Identities{})
	must(b, "registration", err)
	must(b, "account", ls.CreateAccount(ctx, store.Account{User: "alice", Record: rec.Marshal(), UserKey: make([]byte, 32)}))
	exporter := make([]byte, 32)
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		cl, ke1, _ := cfg.NewClientLogin(rand.Reader, pw)
		ke1b := ke1.Marshal()
		b.StartTimer()

		acct, err := ls.Account(ctx, "alice")
		must(b, "account", err)
		record, _ := cfg.ParseRegistrationRecord(acct.Record)
		k1, _ := cfg.ParseKE1(ke1b)
		ke2, sl, err := srv.Login(rand.Reader, k1, record, []byte("alice"), opaque.Identities{})
		must(b, "KE2", err)
		ke2b := ke2.Marshal()

		b.StopTimer()
		k2, _ := cfg.ParseKE2(ke2b)
		res, err := cl.Finish(k2, cfg.KSF, opaque.Identities{})
		must(b, "client finish", err)
		cbc, _ := proto.ChannelBindingKey(res.SessionKey)
		proof := proto.BindingProof(cbc, proto.RoleClient, exporter)
		ke3b := res.KE3.Marshal()
		b.StartTimer()

		k3, _ := cfg.ParseKE3(ke3b)
		sk, err := sl.Finish(k3)
		must(b, "KE3", err)
		cb, _ := proto.ChannelBindingKey(sk)
		if !proto.VerifyBindingProof(cb, proto.RoleClient, exporter, proof) {
			b.Fatal("proof")
		}
		_ = proto.BindingProof(cb, proto.RoleServer, exporter)
	}
}
