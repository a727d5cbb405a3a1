package main

// End-to-end test of large messages: sizes up to the node's limit among
// three users, across a graceful restart and a kill -9 of the node.

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	nc "qpchat/node/client"
)

// sendStdin runs send with the text on stdin; stderr is returned whole
// (a text refused before the state is opened comes without the test
// switch's warning).
func (u *cliUser) sendStdin(group, text string) (code int, stdout, stderr string) {
	u.t.Helper()
	cmd := exec.Command(qpchatBinary(u.t), append([]string{"client"}, u.args([]string{"send", group})...)...)
	cmd.Env, cmd.Stdin = u.env, strings.NewReader(text)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		u.t.Fatal(err)
	}
	return code, out.String(), errb.String()
}

// sizedText is a text of exactly n bytes that names its sender and
// number, with a line break now and then.
func sizedText(sender string, i, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s#%d ", sender, i)
	for x := uint32(i*7919 + len(sender)); b.Len() < n; {
		x = x*1664525 + 1013904223
		if x%61 == 0 {
			b.WriteByte('\n')
		} else {
			b.WriteByte(byte('!' + x>>24%94))
		}
	}
	return b.String()[:n]
}

// sent is an accepted message.
type sent struct {
	from *cliUser
	text string
}

func TestClientLargeMessagesAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	data, state := filepath.Join(dir, "data"), filepath.Join(dir, "state")
	n := startNode(t, "127.0.0.1:0", data)
	alice, bob, carol := newCLIUser(t, n, state, "alice"), newCLIUser(t, n, state, "bob"), newCLIUser(t, n, state, "carol")
	users := []*cliUser{alice, bob, carol}
	alice.run("create-group", "big")
	alice.run("invite", "big", "bob", "carol")
	bob.run("join")
	carol.run("join")

	const limit = 1 << 20 // the node's default --max-message-size
	largest, err := nc.MaxTextLen(nc.DefaultSuite, limit)
	if err != nil || largest < limit-4096 {
		t.Fatalf("MaxTextLen = %d, %v", largest, err)
	}
	var pending []sent
	count := 0
	send := func(u *cliUser, size int) {
		t.Helper()
		count++
		text := sizedText(u.name, count, size)
		if code, out, errs := u.sendStdin("big", text); code != 0 {
			t.Fatalf("%s sending %d bytes: exit %d, stdout %q, stderr %q", u.name, size, code, out, errs)
		}
		pending = append(pending, sent{u, text})
	}
	// recvAll has every user receive once and checks that each gets
	// every pending message of the others exactly once, in order.
	recvAll := func(when string) {
		t.Helper()
		for _, u := range users {
			var want []sent
			for _, s := range pending {
				if s.from != u {
					want = append(want, s)
				}
			}
			var got []map[string]any
			for _, l := range u.jsonLines("recv") {
				if l["event"] == "message" {
					got = append(got, l)
				}
			}
			if len(got) != len(want) {
				t.Errorf("%s: %s: one recv returned %d messages, want %d", when, u.name, len(got), len(want))
			}
			for i := range min(len(got), len(want)) {
				text, _ := got[i]["text"].(string)
				if got[i]["sender"] != want[i].from.name || got[i]["group"] != "big" || text != want[i].text {
					t.Errorf("%s: %s: message %d from %v, %d bytes starting %.12q; want from %s, %d bytes starting %.12q",
						when, u.name, i, got[i]["sender"], len(text), text, want[i].from.name, len(want[i].text), want[i].text)
				}
			}
		}
		pending = nil
	}

	// Before a graceful restart.
	send(alice, 1000)
	send(alice, 400_000)
	send(bob, 523_900)
	send(carol, largest)
	// One byte more is refused with the real size and the limit, and
	// nothing arrives.
	code, _, errs := alice.sendStdin("big", sizedText("alice", 0, largest+1))
	for _, want := range []string{fmt.Sprintf("%d bytes was not sent", largest+1), fmt.Sprint(limit), fmt.Sprintf("at most %d bytes of text fit", largest)} {
		if code != exitRefused || !strings.Contains(errs, want) {
			t.Errorf("sending %d bytes: exit %d, stderr %q; want exit %d and %q", largest+1, code, errs, exitRefused, want)
		}
	}
	// A paste far over any limit is refused with its size, not cut.
	code, _, errs = alice.sendStdin("big", strings.Repeat("z", 10<<20))
	if code == 0 || !strings.Contains(errs, "10485760 bytes") || !strings.Contains(errs, "nothing was sent") {
		t.Errorf("sending 10 MiB: exit %d, stderr %q", code, errs)
	}
	n.stop(t)
	n = startNode(t, n.addr, data)
	recvAll("after a graceful restart")

	// Two texts of 523 900 bytes filled one fetch answer past the
	// client's old frame limit; "after" behind them must arrive too.
	send(bob, 523_900)
	send(bob, 523_900)
	send(alice, largest)
	send(carol, 400_000)
	send(carol, 400_000)
	send(carol, 400_000)
	send(carol, 5)
	n.cmd.Process.Kill()
	<-n.exited
	n = startNode(t, n.addr, data)
	recvAll("after kill -9")

	send(carol, 1000)
	send(alice, 523_900)
	send(bob, largest)
	recvAll("after both restarts")
	recvAll("again, with nothing new")
}
