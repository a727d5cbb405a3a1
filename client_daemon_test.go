package main

// End-to-end tests of `qpchat client daemon`: the real binary, spoken to
// over its Unix socket.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// daemonProcess is a running `qpchat client daemon`.
type daemonProcess struct {
	t      *testing.T
	u      *cliUser
	cmd    *exec.Cmd
	socket string
	stderr *syncBuffer
	exited chan error
}

// shortDir is a temporary directory with a short path: a Unix socket's
// path is at most 107 bytes, and t.TempDir's can be longer.
func shortDir(t *testing.T) string {
	d, err := os.MkdirTemp("", "qpd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// startDaemon runs the daemon of u with extra flags and env, and waits
// until its socket answers.
func startDaemon(t *testing.T, u *cliUser, socket string, env []string, extra ...string) *daemonProcess {
	t.Helper()
	args := append([]string{"client"}, u.args(append([]string{"daemon"}, extra...))...)
	if socket != "" {
		args = append(args, "--socket", socket)
	}
	cmd := exec.Command(qpchatBinary(t), args...)
	cmd.Env = append(append([]string{}, u.env...), env...)
	d := &daemonProcess{t: t, u: u, cmd: cmd, socket: socket, stderr: &syncBuffer{}, exited: make(chan error, 1)}
	cmd.Stderr = d.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-d.exited
		}
		if t.Failed() {
			t.Logf("%s daemon stderr:\n%s", u.profile, d.stderr)
		}
	})
	deadline := time.Now().Add(time.Minute)
	for {
		if d.socket == "" {
			// The default socket: the daemon names it on stderr.
			if _, rest, ok := strings.Cut(d.stderr.String(), "socket="); ok {
				d.socket, _, _ = strings.Cut(rest, "\n")
			}
		}
		if d.socket != "" {
			if c, err := net.Dial("unix", d.socket); err == nil {
				c.Close()
				return d
			}
		}
		select {
		case err := <-d.exited:
			t.Fatalf("%s daemon exited: %v\n%s", u.profile, err, d.stderr)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s daemon did not listen within a minute\n%s", u.profile, d.stderr)
		}
	}
}

// stop sends SIGTERM and checks the daemon exits 0 and removes its
// socket and info file.
func (d *daemonProcess) stop() {
	d.t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.exited:
		if err != nil {
			d.t.Errorf("daemon after SIGTERM: %v, want exit 0", err)
		}
	case <-time.After(30 * time.Second):
		d.t.Fatal("daemon did not exit within 30s of SIGTERM")
	}
	if _, err := os.Lstat(d.socket); !errors.Is(err, os.ErrNotExist) {
		d.t.Errorf("socket %s still there after SIGTERM: %v", d.socket, err)
	}
}

// rpcClient is a JSON-RPC connection to a daemon.
type rpcClient struct {
	t     *testing.T
	c     net.Conn
	mu    sync.Mutex
	id    int
	resps map[string]chan map[string]any
	notes chan map[string]any
	seen  []map[string]any
}

func dialDaemon(t *testing.T, socket string) *rpcClient {
	t.Helper()
	c, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	r := &rpcClient{t: t, c: c, resps: map[string]chan map[string]any{}, notes: make(chan map[string]any, 1000)}
	t.Cleanup(func() { c.Close() })
	go func() {
		sc := bufio.NewScanner(c)
		sc.Buffer(make([]byte, 64<<10), 8<<20)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Errorf("daemon wrote %q: %v", sc.Bytes(), err)
				continue
			}
			if _, ok := m["method"]; ok {
				r.notes <- m
				continue
			}
			id, _ := json.Marshal(m["id"])
			r.mu.Lock()
			ch := r.resps[string(id)]
			if ch == nil {
				ch = make(chan map[string]any, 1)
				r.resps[string(id)] = ch
			}
			r.mu.Unlock()
			ch <- m
		}
	}()
	return r
}

// raw writes a line and returns the response to the given id (as JSON).
func (r *rpcClient) raw(line, id string) map[string]any {
	r.t.Helper()
	r.mu.Lock()
	ch := r.resps[id]
	if ch == nil {
		ch = make(chan map[string]any, 1)
		r.resps[id] = ch
	}
	r.mu.Unlock()
	if _, err := r.c.Write([]byte(line + "\n")); err != nil {
		r.t.Fatal(err)
	}
	select {
	case m := <-ch:
		return m
	case <-time.After(2 * time.Minute):
		r.t.Fatalf("no answer to %s", line)
	}
	return nil
}

// start sends a request and returns the channel its response arrives on.
func (r *rpcClient) start(method string, params any) (<-chan map[string]any, string) {
	r.t.Helper()
	r.mu.Lock()
	r.id++
	id := fmt.Sprint(r.id)
	ch := make(chan map[string]any, 1)
	r.resps[id] = ch
	r.mu.Unlock()
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": r.id, "method": method, "params": params})
	if _, err := r.c.Write(append(b, '\n')); err != nil {
		r.t.Fatal(err)
	}
	return ch, string(b)
}

// call sends a request that must succeed and returns its result.
func (r *rpcClient) call(method string, params any) any {
	r.t.Helper()
	m := r.try(method, params)
	if m["error"] != nil {
		r.t.Fatalf("%s %v: error %v", method, params, m["error"])
	}
	return m["result"]
}

// try sends a request and returns its response.
func (r *rpcClient) try(method string, params any) map[string]any {
	r.t.Helper()
	ch, line := r.start(method, params)
	select {
	case m := <-ch:
		return m
	case <-time.After(2 * time.Minute):
		r.t.Fatalf("no answer to %s", line)
	}
	return nil
}

// waitNote waits for a receive notification whose params have all the
// given members, and returns it.
func (r *rpcClient) waitNote(want map[string]any) map[string]any {
	r.t.Helper()
	guard := time.After(2 * time.Minute)
	for {
		select {
		case m := <-r.notes:
			r.seen = append(r.seen, m)
			p, _ := m["params"].(map[string]any)
			if m["method"] != "receive" || p == nil {
				r.t.Fatalf("unexpected notification %v", m)
			}
			match := true
			for k, v := range want {
				match = match && p[k] == v
			}
			if match {
				return p
			}
		case <-guard:
			r.t.Fatalf("no notification %v; seen %v", want, r.seen)
		}
	}
}

func msgNote(group, sender, text string) map[string]any {
	return map[string]any{"event": "message", "group": group, "sender": sender, "text": text}
}

// errorCode returns the error code of a response, 0 if none.
func errorCode(m map[string]any) int {
	e, _ := m["error"].(map[string]any)
	c, _ := e["code"].(float64)
	return int(c)
}

// forwarded runs a command of u that goes to u's daemon: it must
// succeed, and prints nothing on stderr (it opens no state).
func forwarded(t *testing.T, u *cliUser, args ...string) string {
	t.Helper()
	code, out, errs := client(t, u.env, u.args(args)...)
	if code != 0 || errs != "" {
		t.Fatalf("%s: qpchat client %s through the daemon: exit %d\nstdout: %s\nstderr: %s", u.profile, strings.Join(args, " "), code, out, errs)
	}
	return out
}

// TestClientDaemon: two daemons (alice, bob) chat with each other and
// with a one-shot CLI user (carol) over their sockets; the CLI on a
// profile a daemon holds goes through the daemon; bad requests get
// JSON-RPC errors; SIGTERM removes the socket.
func TestClientDaemon(t *testing.T) {
	dir := t.TempDir()
	data, state := filepath.Join(dir, "data"), filepath.Join(dir, "state")
	n := startNode(t, "127.0.0.1:0", data)
	alice, bob, carol := newCLIUser(t, n, state, "alice"), newCLIUser(t, n, state, "bob"), newCLIUser(t, n, state, "carol")

	sock := shortDir(t)
	da := startDaemon(t, alice, filepath.Join(sock, "a", "alice.sock"), nil)
	// Bob's daemon takes the default socket under XDG_RUNTIME_DIR.
	db := startDaemon(t, bob, "", []string{"XDG_RUNTIME_DIR=" + sock})
	if want := filepath.Join(sock, "qpchat", "bob.sock"); db.socket != want {
		t.Errorf("bob's socket is %s, want %s", db.socket, want)
	}
	for _, p := range []string{da.socket, db.socket} {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("socket %s: mode %v, %v; want 0600", p, fi.Mode(), err)
		}
		if di, err := os.Stat(filepath.Dir(p)); err != nil || di.Mode().Perm() != 0o700 {
			t.Errorf("socket directory of %s: mode %v, %v; want 0700", p, di.Mode(), err)
		}
	}
	ra, rb := dialDaemon(t, da.socket), dialDaemon(t, db.socket)

	created := ra.call("createGroup", map[string]any{"group": "g"}).(map[string]any)
	if created["group"] != "g" || created["suite"] != "0xfa01" || len(created["id"].(string)) != 64 {
		t.Errorf("createGroup = %v", created)
	}
	inv := ra.call("invite", map[string]any{"group": "g", "users": []string{"bob", "carol"}}).([]any)
	if len(inv) != 1 || inv[0].(map[string]any)["devices"] != 2.0 {
		t.Errorf("invite = %v", inv)
	}
	// (The group's name may come after the Welcome: "joined" may name
	// the group by its id.)
	rb.waitNote(map[string]any{"event": "joined", "inviter": "alice"})
	if out := carol.run("join"); !strings.Contains(out, "[g] joined, invited by alice") {
		t.Errorf("carol join printed %q", out)
	}

	if res := ra.call("send", map[string]any{"group": "g", "text": "hello from alice"}).(map[string]any); res["group"] != "g" || res["sent"] != true {
		t.Errorf("send = %v", res)
	}
	rb.waitNote(msgNote("g", "alice", "hello from alice"))
	waitMessages(t, carol, "g alice: hello from alice")

	rb.call("send", map[string]any{"group": "g", "text": "two\nlines from bob"})
	ra.waitNote(msgNote("g", "bob", "two\nlines from bob"))
	waitMessages(t, carol, "g bob: two\nlines from bob")

	carol.run("send", "g", "from carol's CLI")
	ra.waitNote(msgNote("g", "carol", "from carol's CLI"))
	rb.waitNote(msgNote("g", "carol", "from carol's CLI"))

	// The lists are what the CLI prints with --json.
	groups := rb.call("listGroups", nil).([]any)
	if len(groups) != 1 || groups[0].(map[string]any)["members"] != 3.0 {
		t.Errorf("listGroups = %v", groups)
	}
	members := ra.call("members", map[string]any{"group": "g"}).([]any)
	if len(members) != 3 {
		t.Errorf("members = %v", members)
	}
	cm := carol.jsonLines("members", "g")
	for _, m := range members {
		found := false
		for _, c := range cm {
			found = found || (c["user"] == m.(map[string]any)["user"] && c["device"] == m.(map[string]any)["device"])
		}
		if !found {
			t.Errorf("members gives %v, which carol's members --json %v lacks", m, cm)
		}
	}
	if v := ra.call("verify", map[string]any{"user": "bob"}).(map[string]any); v["safety_number"] == nil || v["user"] != "bob" {
		t.Errorf("verify = %v", v)
	}
	if st := ra.call("status", nil).(map[string]any); st["user"] != "alice" || st["connected"] != true || st["device"] != alice.device {
		t.Errorf("status = %v", st)
	}
	// update changes the epoch; the others follow.
	up := rb.call("update", map[string]any{"group": "g"}).(map[string]any)
	if up["epoch"].(float64) < 2 {
		t.Errorf("update = %v", up)
	}
	ra.waitNote(map[string]any{"event": "update", "group": "g", "sender": "bob"})

	// dm makes a two-party channel on first use.
	dm := ra.call("dm", map[string]any{"user": "carol", "text": "just for you"}).(map[string]any)
	if dm["group"] != "dm:carol" || dm["sent"] != true {
		t.Errorf("dm = %v", dm)
	}
	waitMessages(t, carol, "dm:alice alice: just for you")

	// One-shot commands on alice's profile go through her daemon.
	if out := forwarded(t, alice, "send", "g", "via the CLI"); strings.TrimSpace(out) != "sent to g" {
		t.Errorf("send through the daemon printed %q", out)
	}
	rb.waitNote(msgNote("g", "alice", "via the CLI"))
	carol.run("send", "g", "for alice's recv")
	got := ""
	for deadline := time.Now().Add(time.Minute); !strings.Contains(got, "for alice's recv") && time.Now().Before(deadline); {
		got += forwarded(t, alice, "recv", "--wait", "5s")
	}
	if !strings.Contains(got, "[g] carol: for alice's recv") {
		t.Errorf("recv through the daemon printed %q", got)
	}
	if out := forwarded(t, alice, "groups"); !strings.Contains(out, "g: 3 members") {
		t.Errorf("groups through the daemon printed %q", out)
	}
	if js := strings.Split(strings.TrimSpace(forwarded(t, alice, "members", "g", "--json")), "\n"); len(js) != 3 || !json.Valid([]byte(js[0])) {
		t.Errorf("members --json through the daemon printed %v", js)
	}
	for cmd, want := range map[string]string{
		"update g":          "updated keys in g (epoch ",
		"create-group ops2": "created group ops2 (suite 0xfa01)",
		"verify bob":        "safety number with bob: ",
		"devices":           alice.device + " (this device)",
		"fetch-key carol":   "user carol key sha256:",
	} {
		if out := forwarded(t, alice, strings.Fields(cmd)...); !strings.HasPrefix(out, want) {
			t.Errorf("%s through the daemon printed %q, want %q...", cmd, out, want)
		}
	}
	// A command the daemon does not take says where the daemon is.
	code, _, errs := alice.try("chat", "g") // opens the state: the test warning comes first
	if code != exitError || !strings.Contains(errs, "held by a running qpchat daemon") || !strings.Contains(errs, da.socket) {
		t.Errorf("chat while the daemon runs: exit %d, %q", code, errs)
	}

	// revokeDevice reads the account password from the daemon's
	// environment, as revoke-device does.
	alice2 := alice.otherDevice("alice2")
	if rv := ra.call("revokeDevice", map[string]any{"device": alice2.device}).(map[string]any); rv["revoked"] != alice2.device {
		t.Errorf("revokeDevice = %v", rv)
	}
	revoked := false
	for _, x := range ra.call("devices", nil).([]any) {
		dev := x.(map[string]any)
		revoked = revoked || (dev["device"] == alice2.device && dev["revoked"] == true)
	}
	if !revoked {
		t.Errorf("devices does not show %s revoked", alice2.device)
	}

	// Bad requests get errors; the connection stays usable.
	for _, c := range []struct {
		line string
		id   string
		code int
	}{
		{`this is not json`, "null", -32700},
		{`{"jsonrpc":"2.0","id":"x1","method":"nope"}`, `"x1"`, -32601},
		{`{"jsonrpc":"2.0","id":"x2","method":"send","params":{"group":"g"}}`, `"x2"`, -32602},
		{`{"jsonrpc":"2.0","id":"x3","method":"send","params":{"group":"g","txt":"hi"}}`, `"x3"`, -32602},
		{`{"jsonrpc":"2.0","id":"x4","method":"send","params":["g","hi"]}`, `"x4"`, -32602},
		{`{"jsonrpc":"1.0","id":"x5","method":"send"}`, `"x5"`, -32600},
		{`[{"jsonrpc":"2.0","id":"x6","method":"status"}]`, "null", -32600},
		{`{"jsonrpc":"2.0","id":"x7","method":"recv","params":{"wait":"forever"}}`, `"x7"`, -32602},
	} {
		if m := ra.raw(c.line, c.id); errorCode(m) != c.code {
			t.Errorf("%s: got %v, want error %d", c.line, m, c.code)
		}
	}
	// The node refuses: an unknown user is the refused class.
	if m := ra.try("invite", map[string]any{"group": "g", "users": []string{"nobody"}}); errorCode(m) != -32005 ||
		m["error"].(map[string]any)["message"] != "no user named nobody on this node" ||
		m["error"].(map[string]any)["data"].(map[string]any)["class"] != "refused" {
		t.Errorf("invite nobody: %v, want error -32005 (refused)", m)
	}
	if m := ra.try("send", map[string]any{"group": "no such group", "text": "x"}); errorCode(m) == 0 {
		t.Errorf("send to an unknown group: %v, want an error", m)
	}
	ra.call("status", nil)
	// A client that sends and closes its side (echo ... | nc -U -q)
	// gets its answer, then the daemon closes the connection.
	uc, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: da.socket, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	uc.Write([]byte(`{"jsonrpc":"2.0","id":"half","method":"listGroups"}` + "\n"))
	uc.CloseWrite()
	uc.SetReadDeadline(time.Now().Add(time.Minute))
	all, err := io.ReadAll(uc)
	uc.Close()
	if err != nil || !strings.Contains(string(all), `"id":"half","result":[{`) {
		t.Errorf("after closing its side, the client read %q, %v", all, err)
	}

	da.stop()
	db.stop()
	if _, err := os.Stat(filepath.Join(state, "alice.daemon")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("alice.daemon is left after SIGTERM: %v", err)
	}
	// The profiles are free again: the CLI opens them itself.
	carol.run("send", "g", "after the daemons")
	waitMessages(t, bob, "g carol: after the daemons")
	alice.run("send", "g", "alice's CLI again")
	waitMessages(t, carol, "g alice: via the CLI", "g alice: alice's CLI again")
}

// TestClientDaemonReconnects: a daemon survives a graceful restart and a
// kill -9 of the node. It says it is reconnecting and reconnected; a
// send made while the node is down is answered once the node is back
// and delivered exactly once; what others sent meanwhile arrives.
func TestClientDaemonReconnects(t *testing.T) {
	dir := t.TempDir()
	data, state := filepath.Join(dir, "data"), filepath.Join(dir, "state")
	n := startNode(t, "127.0.0.1:0", data)
	alice, bob := newCLIUser(t, n, state, "alice"), newCLIUser(t, n, state, "bob")
	alice.run("create-group", "g")
	alice.run("invite", "g", "bob")
	bob.run("join")

	d := startDaemon(t, bob, filepath.Join(shortDir(t), "bob.sock"), nil)
	r := dialDaemon(t, d.socket)
	r.call("send", map[string]any{"group": "g", "text": "before"})
	waitMessages(t, alice, "g bob: before")

	outage := func(name string, down func()) {
		down()
		r.waitNote(map[string]any{"event": "reconnecting", "state": "reconnecting"})
		if st := r.call("status", nil).(map[string]any); st["connected"] != false {
			t.Errorf("%s: status while down = %v", name, st)
		}
		sent, line := r.start("send", map[string]any{"group": "g", "text": "during the " + name})
		n = startNode(t, n.addr, data)
		r.waitNote(map[string]any{"event": "reconnected", "state": "connected"})
		select {
		case m := <-sent:
			if m["error"] != nil {
				t.Errorf("%s: %s answered %v", name, line, m)
			}
		case <-time.After(2 * time.Minute):
			t.Fatalf("%s: no answer to %s", name, line)
		}
		waitMessages(t, alice, "g bob: during the "+name)
		alice.run("send", "g", "after the "+name)
		r.waitNote(msgNote("g", "alice", "after the "+name))
	}
	outage("restart", func() { n.stop(t) })
	outage("crash", func() {
		n.cmd.Process.Kill()
		<-n.exited
	})
	// Sent while the daemon is down: the daemon delivers it when it
	// starts again (the queue at the node keeps it).
	d.stop()
	alice.run("send", "g", "while the daemon was stopped")
	d = startDaemon(t, bob, d.socket, nil)
	r = dialDaemon(t, d.socket)
	var got []any
	for deadline := time.Now().Add(time.Minute); len(got) == 0 && time.Now().Before(deadline); {
		got = r.call("recv", map[string]any{"wait": 5}).([]any)
	}
	if len(got) != 1 || got[0].(map[string]any)["text"] != "while the daemon was stopped" {
		t.Errorf("recv after the daemon restarted = %v", got)
	}
	// kill -9 of the daemon leaves its socket and info file: the CLI
	// opens the profile itself, and a new daemon takes the socket over.
	d.cmd.Process.Kill()
	<-d.exited
	if out := bob.run("groups"); !strings.Contains(out, "g: 2 members") {
		t.Errorf("groups after the daemon was killed printed %q", out)
	}
	d = startDaemon(t, bob, d.socket, nil)
	dialDaemon(t, d.socket).call("status", nil)
	d.stop()
}

// TestEchoBot: examples/echobot, built from the module, answers every
// text in its group through a daemon, also after the node restarted.
func TestEchoBot(t *testing.T) {
	dir := t.TempDir()
	bot := filepath.Join(dir, "echobot")
	if out, err := exec.Command("go", "build", "-o", bot, "./examples/echobot").CombinedOutput(); err != nil {
		t.Fatalf("go build ./examples/echobot: %v\n%s", err, out)
	}
	data, state := filepath.Join(dir, "data"), filepath.Join(dir, "state")
	n := startNode(t, "127.0.0.1:0", data)
	alice, echo := newCLIUser(t, n, state, "alice"), newCLIUser(t, n, state, "echo")
	d := startDaemon(t, echo, filepath.Join(shortDir(t), "echo.sock"), nil)
	cmd := exec.Command(bot, "--socket", d.socket, "--prefix", "echo: ")
	logs := &syncBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("echobot stderr:\n%s", logs)
		}
	})
	alice.run("create-group", "g")
	alice.run("invite", "g", "echo")
	alice.run("send", "g", "hello bot")
	waitMessages(t, alice, "g echo: echo: hello bot")
	n.stop(t)
	n = startNode(t, n.addr, data)
	alice.run("send", "g", "still there?")
	waitMessages(t, alice, "g echo: echo: still there?")
	// The daemon stops: the bot ends, saying so.
	d.stop()
	if err := cmd.Wait(); err == nil || !strings.Contains(logs.String(), "the daemon closed the connection") {
		t.Errorf("echobot after the daemon stopped: %v\n%s", err, logs)
	}
}

// TestClientDaemonStdio: --stdio answers requests read from stdin, and
// stops at its end after answering; meanwhile other commands on the
// profile say that a daemon holds it.
func TestClientDaemonStdio(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, "127.0.0.1:0", filepath.Join(dir, "data"))
	state := filepath.Join(dir, "state")
	alice, bob := newCLIUser(t, n, state, "alice"), newCLIUser(t, n, state, "bob")
	cmd := exec.Command(qpchatBinary(t), append([]string{"client"}, alice.args([]string{"daemon", "--stdio"})...)...)
	cmd.Env = alice.env
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &syncBuffer{}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	io.WriteString(in, `{"jsonrpc":"2.0","id":1,"method":"createGroup","params":{"group":"ops"}}`+"\n")
	select {
	case l := <-lines:
		if !strings.Contains(l, `"id":1,"result":{"group":"ops"`) {
			t.Errorf("createGroup over stdio: %q", l)
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("no answer on stdout; stderr:\n%s", cmd.Stderr)
	}
	if code, _, errs := alice.try("groups"); code != exitError || !strings.Contains(errs, "serves only its stdin and stdout") {
		t.Errorf("groups while a --stdio daemon runs: exit %d, %q", code, errs)
	}
	// Input ends with a request in flight and a broken line: both are
	// answered before the daemon exits.
	io.WriteString(in, `{"jsonrpc":"2.0","id":2,"method":"listGroups"}`+"\n"+`{"jsonrpc":"2.0","id":"oops","method":"createGroup","params":{"group":`+"\n")
	in.Close()
	var rest []string
	for l := range lines {
		rest = append(rest, l)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("daemon --stdio at the end of input: %v\n%s", err, cmd.Stderr)
	}
	all := strings.Join(rest, "\n")
	if !strings.Contains(all, `"id":2,"result":[{"dm":"","epoch":`) || !strings.Contains(all, `"id":null,"error":{"code":-32700`) {
		t.Errorf("daemon --stdio wrote %q", rest)
	}
	// The profile is free again, and the group exists.
	alice.run("invite", "ops", "bob")
	if out := bob.run("join"); !strings.Contains(out, "joined, invited by alice") {
		t.Errorf("bob join printed %q", out)
	}
}

// TestClientDaemonLeaveHistoryFiles: the daemon's leave, history,
// sendFile and download methods give what the CLI commands give.
func TestClientDaemonLeaveHistoryFiles(t *testing.T) {
	dir := t.TempDir()
	data, state := filepath.Join(dir, "data"), filepath.Join(dir, "state")
	n := startNode(t, "127.0.0.1:0", data)
	alice, bob, carol := newCLIUser(t, n, state, "alice"), newCLIUser(t, n, state, "bob"), newCLIUser(t, n, state, "carol")
	sock := shortDir(t)
	da := startDaemon(t, alice, filepath.Join(sock, "alice.sock"), nil)
	ra := dialDaemon(t, da.socket)
	ra.call("createGroup", map[string]any{"group": "g"})
	ra.call("invite", map[string]any{"group": "g", "users": []string{"bob", "carol"}})
	bob.run("join")
	carol.run("join")
	ra.call("send", map[string]any{"group": "g", "text": "first"})
	bob.run("send", "g", "reply from bob")
	ra.waitNote(msgNote("g", "bob", "reply from bob"))

	hist := ra.call("history", map[string]any{"group": "g", "limit": 2}).([]any)
	if len(hist) != 2 || hist[1].(map[string]any)["text"] != "reply from bob" {
		t.Errorf("history = %v", hist)
	}
	if e := ra.try("history", map[string]any{"group": "g", "limit": -1}); errorCode(e) != -32602 {
		t.Errorf("history with limit -1: %v", e)
	}

	src := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(src, []byte("file contents\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if res := ra.call("sendFile", map[string]any{"group": "g", "path": src}).(map[string]any); res["sent"] != true || res["file"] != "notes.txt" {
		t.Errorf("sendFile = %v", res)
	}
	bobDir := filepath.Join(dir, "bob-dl")
	saved := ""
	for _, l := range bob.jsonLines("recv", "--download-dir", bobDir) {
		if l["event"] == "saved" {
			saved, _ = l["path"].(string)
		}
	}
	if b, err := os.ReadFile(saved); err != nil || string(b) != "file contents\n" {
		t.Errorf("bob saved %q: %q, %v", saved, b, err)
	}
	// Alice's daemon downloads her own file again.
	aliceDir := filepath.Join(dir, "alice-dl")
	res := ra.call("download", map[string]any{"group": "g", "dir": aliceDir}).(map[string]any)
	if p, _ := res["path"].(string); p != filepath.Join(aliceDir, "notes.txt") {
		t.Errorf("download = %v", res)
	}

	// Bob leaves with the CLI; alice's daemon commits the removal and
	// says so.
	if out := bob.run("leave", "g", "--wait", "1m"); !strings.Contains(out, "left g") {
		t.Errorf("bob's leave printed %q", out)
	}
	ra.waitNote(map[string]any{"event": "left", "group": "g"})
	// Alice leaves through her daemon; carol's recv commits it.
	res = ra.call("leave", map[string]any{"group": "g", "wait": 0.5}).(map[string]any)
	if res["group"] != "g" || res["event"] != "left" {
		t.Errorf("leave = %v", res)
	}
	carol.run("recv")
	members := carol.jsonLines("members", "g")
	if len(members) != 1 {
		t.Errorf("carol's group has %d members after both left: %v", len(members), members)
	}
}

// TestClientRecvThroughDaemonSavesFiles: while a daemon holds bob's
// profile, `recv` goes through it and still saves the files it shows
// (into --download-dir), the one shown, not another of the same name;
// with --no-download it saves nothing. (recv through a daemon only
// announced files before.)
func TestClientRecvThroughDaemonSavesFiles(t *testing.T) {
	dir := t.TempDir()
	data, state := filepath.Join(dir, "data"), filepath.Join(dir, "state")
	n := startNode(t, "127.0.0.1:0", data)
	alice, bob := newCLIUser(t, n, state, "alice"), newCLIUser(t, n, state, "bob")
	alice.run("create-group", "g")
	alice.run("invite", "g", "bob")
	bob.run("join")
	startDaemon(t, bob, filepath.Join(shortDir(t), "bob.sock"), nil)

	src := filepath.Join(dir, "notes.txt")
	send := func(content string) {
		t.Helper()
		if err := os.WriteFile(src, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		alice.run("send-file", "g", src)
	}
	send("first version\n")
	send("second version\n")
	dl := filepath.Join(dir, "dl")
	var saved []string
	for _, l := range forwardedJSON(t, bob, "recv", "--download-dir", dl) {
		if l["event"] == "saved" {
			p, _ := l["path"].(string)
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			saved = append(saved, string(b))
		}
	}
	if strings.Join(saved, "|") != "first version\n|second version\n" {
		t.Errorf("recv through the daemon saved %q, want both versions in order", saved)
	}

	send("third version\n")
	nodl := filepath.Join(dir, "nodl")
	for _, l := range forwardedJSON(t, bob, "recv", "--download-dir", nodl, "--no-download") {
		if l["event"] == "saved" {
			t.Errorf("recv --no-download saved %v", l)
		}
	}
	if _, err := os.Stat(nodl); !os.IsNotExist(err) {
		t.Errorf("recv --no-download made %s (%v)", nodl, err)
	}
}

// forwardedJSON runs a command through u's daemon with --json and
// decodes its lines.
func forwardedJSON(t *testing.T, u *cliUser, args ...string) []map[string]any {
	t.Helper()
	var res []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(forwarded(t, u, append(args, "--json")...)), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("%s: output line %q is not JSON: %v", strings.Join(args, " "), l, err)
		}
		res = append(res, m)
	}
	return res
}
