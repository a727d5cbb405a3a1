package client

import (
	"context"
	"fmt"
	"testing"
)

// realGroup registers n users on an in-process node over QUIC loopback;
// the first creates group "g".
func realUsers(b *testing.B, n int) []*realUser {
	b.Helper()
	addr, fp := startRealNode(b)
	users := make([]*realUser, n)
	for i := range users {
		users[i] = newRealUser(b, addr, fp, fmt.Sprintf("user%02d", i))
	}
	if _, err := users[0].c.CreateGroup(context.Background(), "g", 0); err != nil {
		b.Fatal(err)
	}
	return users
}

// countMessages applies everything queued for u and counts the text
// messages among the new history entries.
func countMessages(b *testing.B, u *realUser) int {
	evs, err := u.c.Recv(context.Background(), 0)
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	for _, e := range evs {
		if e.Kind == EventMessage {
			n++
		}
	}
	return n
}

// BenchmarkGroup10Send1000 measures a group of 10 members sending 1,000
// messages in turn through the node (each sender syncs before sending,
// as `send` does), until every member has applied every message.
func BenchmarkGroup10Send1000(b *testing.B) {
	ctx := context.Background()
	users := realUsers(b, 10)
	var names []string
	for _, u := range users[1:] {
		names = append(names, u.name)
	}
	if _, err := users[0].c.Invite(ctx, "g", names); err != nil {
		b.Fatal(err)
	}
	for _, u := range users {
		countMessages(b, u)
	}
	b.ResetTimer()
	for range b.N {
		for i := range 1000 {
			if err := users[i%10].c.Send(ctx, "g", fmt.Sprintf("message %d", i)); err != nil {
				b.Fatal(err)
			}
		}
		for _, u := range users {
			countMessages(b, u)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkGroup50InviteJoin measures building a 50-member group: the
// creator invites 49 users one by one (49 commits with Welcomes), then
// every member processes its queue (Welcome and later commits).
func BenchmarkGroup50InviteJoin(b *testing.B) {
	ctx := context.Background()
	for range b.N {
		b.StopTimer()
		users := realUsers(b, 50)
		b.StartTimer()
		for _, u := range users[1:] {
			if _, err := users[0].c.Invite(ctx, "g", []string{u.name}); err != nil {
				b.Fatal(err)
			}
		}
		for _, u := range users[1:] {
			if _, err := u.c.Recv(ctx, 0); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		g, err := users[49].c.loadGroupByName(ctx, "g")
		if err != nil || len(g.g.Members()) != 50 {
			b.Fatalf("last member sees %v, %v", g, err)
		}
	}
}
