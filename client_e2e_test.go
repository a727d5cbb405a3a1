package main

// End-to-end tests of the client commands: the real binary, one process
// per command, against a `qpchat serve` process.

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	nc "qpchat/node/client"
	"qpchat/node/store"
)

// cliUser runs client commands as one profile.
type cliUser struct {
	t       *testing.T
	name    string
	profile string
	env     []string
	device  string // fingerprint printed by register-state
}

// clientEnv is the environment of client processes: a private state
// directory and passphrase, and the cheap test KDF.
func clientEnv(t *testing.T, n *node, stateDir string) []string {
	return append(testEnv(t), "QPCHAT_SERVER="+n.addr, "QPCHAT_STATE_DIR="+stateDir,
		"QPCHAT_PASSPHRASE=state pass", "QPCHAT_INSECURE_TEST_KDF=1")
}

func (u *cliUser) args(args []string) []string {
	return append([]string{"--profile", u.profile}, args...)
}

// try runs a command and returns its result, stderr without the
// warning of the test-only switch clientEnv sets.
func (u *cliUser) try(args ...string) (int, string, string) {
	u.t.Helper()
	code, out, errs := client(u.t, u.env, u.args(args)...)
	return code, out, withoutTestWarning(u.t, errs)
}

// withoutTestWarning checks that stderr starts with the warning of
// QPCHAT_INSECURE_TEST_KDF (clientEnv sets it) and returns the rest.
func withoutTestWarning(t *testing.T, stderr string) string {
	t.Helper()
	first, rest, _ := strings.Cut(stderr, "\n")
	if !strings.HasPrefix(first, "qpchat: warning: test-only switch QPCHAT_INSECURE_TEST_KDF=1 is set") {
		t.Errorf("stderr does not start with the warning of the test-only switch: %q", stderr)
		return stderr
	}
	return rest
}

// run runs a command that must succeed and returns its stdout.
func (u *cliUser) run(args ...string) string {
	u.t.Helper()
	code, out, errs := u.try(args...)
	if code != 0 {
		u.t.Fatalf("%s: qpchat client %s: exit %d\nstdout: %s\nstderr: %s", u.profile, strings.Join(args, " "), code, out, errs)
	}
	return out
}

// jsonLines runs a command with --json and decodes its lines.
func (u *cliUser) jsonLines(args ...string) []map[string]any {
	u.t.Helper()
	out := u.run(append(args, "--json")...)
	var res []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			u.t.Fatalf("%s: output line %q is not JSON: %v", strings.Join(args, " "), l, err)
		}
		res = append(res, m)
	}
	return res
}

// messages runs recv and returns "group sender: text" of each message.
func (u *cliUser) messages() []string {
	u.t.Helper()
	var out []string
	for _, m := range u.jsonLines("recv") {
		if m["event"] == "message" {
			out = append(out, m["group"].(string)+" "+m["sender"].(string)+": "+m["text"].(string))
		}
	}
	return out
}

func (u *cliUser) wantMessages(want ...string) {
	u.t.Helper()
	got := u.messages()
	if strings.Join(got, "|") != strings.Join(want, "|") {
		u.t.Errorf("%s received %q, want %q", u.profile, got, want)
	}
}

// newCLIUser registers a user, logs in and sets up a device.
func newCLIUser(t *testing.T, n *node, stateDir, name string) *cliUser {
	t.Helper()
	u := &cliUser{t: t, name: name, profile: name, env: append(clientEnv(t, n, stateDir), "QPCHAT_PASSWORD=password of "+name)}
	u.run("register-user", name, "--server-fingerprint", n.fingerprint)
	u.setupDevice()
	return u
}

func (u *cliUser) setupDevice() {
	u.t.Helper()
	res := u.jsonLines("register-state")
	if len(res) != 1 || !strings.HasPrefix(res[0]["device"].(string), "sha256:") {
		u.t.Fatalf("register-state printed %v", res)
	}
	u.device = res[0]["device"].(string)
}

// otherDevice sets up a second profile for the same user.
func (u *cliUser) otherDevice(profile string) *cliUser {
	u.t.Helper()
	d := &cliUser{t: u.t, name: u.name, profile: profile, env: u.env}
	d.run("login", u.name)
	d.setupDevice()
	return d
}

func TestClientThreeUsers(t *testing.T) {
	dir := t.TempDir()
	data, state := filepath.Join(dir, "data"), filepath.Join(dir, "state")
	n := startNode(t, "127.0.0.1:0", data)
	alice, bob, carol := newCLIUser(t, n, state, "alice"), newCLIUser(t, n, state, "bob"), newCLIUser(t, n, state, "carol")
	if out := alice.run("login", "alice"); !strings.Contains(out, "logged in as alice") {
		t.Errorf("login printed %q", out)
	}

	// The fingerprint fetch-key shows for Bob's device is the one Bob's
	// register-state printed; both sides see one safety number.
	var devices []string
	for _, l := range alice.jsonLines("fetch-key", "bob") {
		if d, ok := l["device"].(string); ok {
			devices = append(devices, d)
		}
	}
	if len(devices) != 1 || devices[0] != bob.device {
		t.Errorf("fetch-key bob shows devices %v, register-state printed %s", devices, bob.device)
	}
	sa := alice.jsonLines("verify", "bob")[0]["safety_number"]
	sb := bob.jsonLines("verify", "alice")[0]["safety_number"]
	if sa == nil || sa != sb {
		t.Errorf("safety numbers differ: alice sees %v, bob sees %v", sa, sb)
	}
	alice.run("verify", "bob", "--accept")

	alice.run("create-group", "friends")
	alice.run("invite", "friends", "bob")
	if out := bob.run("join"); !strings.Contains(out, "[friends] joined, invited by alice") {
		t.Errorf("bob join printed %q", out)
	}
	alice.run("invite", "friends", "carol")
	if out := carol.run("join"); !strings.Contains(out, "invited by alice") {
		t.Errorf("carol join printed %q", out)
	}
	alice.run("send", "friends", "one", "from", "alice")
	bob.run("send", "friends", "two from bob")
	cmd := exec.Command(qpchatBinary(t), append([]string{"client"}, carol.args([]string{"send", "friends"})...)...)
	cmd.Env, cmd.Stdin = carol.env, strings.NewReader("three from carol (stdin)\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("send from stdin: %v: %s", err, out)
	}
	alice.wantMessages("friends bob: two from bob", "friends carol: three from carol (stdin)")
	bob.wantMessages("friends alice: one from alice", "friends carol: three from carol (stdin)")
	carol.wantMessages("friends alice: one from alice", "friends bob: two from bob")

	// The node is killed mid-way and restarted; everyone carries on.
	alice.run("send", "friends", "before the crash")
	n.cmd.Process.Kill()
	<-n.exited
	n2 := startNode(t, n.addr, data)
	if n2.fingerprint != n.fingerprint {
		t.Fatalf("restarted node has key %s, was %s", n2.fingerprint, n.fingerprint)
	}
	bob.wantMessages("friends alice: before the crash")
	bob.run("update", "friends")
	carol.run("send", "friends", "after the restart")
	alice.wantMessages("friends carol: after the restart")
	bob.wantMessages("friends carol: after the restart")

	// Carol is removed: she is told, and reads nothing that follows.
	alice.run("remove", "friends", "carol")
	alice.run("send", "friends", "carol cannot read this")
	bob.wantMessages("friends alice: carol cannot read this")
	var removed bool
	for _, m := range carol.jsonLines("recv") {
		if m["event"] == "message" && m["text"] == "carol cannot read this" {
			t.Errorf("carol read %v after her removal", m)
		}
		removed = removed || m["event"] == "removed"
	}
	if !removed {
		t.Error("carol was not told she was removed")
	}
	if code, _, errs := carol.try("send", "friends", "x"); code == 0 {
		t.Error("carol could still send to friends")
	} else {
		oneErrorLine(t, errs)
	}
	members := alice.jsonLines("members", "friends")
	if len(members) != 2 {
		t.Errorf("members after removal: %v", members)
	}
	for _, m := range members {
		if m["user"] == "bob" && m["verified"] != true {
			t.Errorf("bob is not shown verified: %v", m)
		}
	}
	ga, gb := alice.jsonLines("groups")[0], bob.jsonLines("groups")[0]
	if ga["epoch"] != gb["epoch"] || ga["suite"] != "0xfa01" {
		t.Errorf("groups: alice %v, bob %v", ga, gb)
	}
}

func TestClientConcurrentCommits(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, "127.0.0.1:0", filepath.Join(dir, "data"))
	state := filepath.Join(dir, "state")
	alice, bob := newCLIUser(t, n, state, "alice"), newCLIUser(t, n, state, "bob")
	alice.run("create-group", "g")
	alice.run("invite", "g", "bob")
	bob.run("join")

	// Both prepare a commit on the same epoch and wait; then both submit.
	var cmds []*exec.Cmd
	var outs []*bytes.Buffer
	holds := []string{filepath.Join(dir, "hold-alice"), filepath.Join(dir, "hold-bob")}
	for i, u := range []*cliUser{alice, bob} {
		c := exec.Command(qpchatBinary(t), append([]string{"client"}, u.args([]string{"update", "g"})...)...)
		c.Env = append(u.env, "QPCHAT_TEST_HOLD_COMMIT="+holds[i])
		var b bytes.Buffer
		c.Stdout, c.Stderr = &b, &b
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, c), append(outs, &b)
	}
	deadline := time.Now().Add(time.Minute)
	for _, h := range holds {
		for {
			if _, err := os.Stat(h + ".ready"); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the commits were not prepared in time")
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for _, h := range holds {
		os.WriteFile(h, nil, 0o600)
	}
	for i, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatalf("update %d: %v: %s", i, err, outs[i])
		}
		if !strings.Contains(outs[i].String(), "warning: test-only switch QPCHAT_TEST_HOLD_COMMIT is set") {
			t.Errorf("update %d did not warn about QPCHAT_TEST_HOLD_COMMIT: %s", i, outs[i])
		}
	}
	alice.run("send", "g", "same epoch?")
	bob.wantMessages("g alice: same epoch?")
	ga, gb := alice.jsonLines("groups")[0], bob.jsonLines("groups")[0]
	if ga["epoch"] != float64(3) || gb["epoch"] != float64(3) {
		t.Errorf("epochs after two updates: alice %v, bob %v; want 3 (both commits applied)", ga["epoch"], gb["epoch"])
	}
}

func TestClientDM(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, "127.0.0.1:0", filepath.Join(dir, "data"))
	state := filepath.Join(dir, "state")
	alice, bob, carol := newCLIUser(t, n, state, "alice"), newCLIUser(t, n, state, "bob"), newCLIUser(t, n, state, "carol")
	alice.run("dm", "bob", "psst")
	bob.wantMessages("dm:alice alice: psst")
	bob.run("dm", "alice", "hi back")
	alice.wantMessages("dm:bob bob: hi back")
	alice.run("dm", "bob", "again")
	bob.wantMessages("dm:alice alice: again")
	if gs := alice.jsonLines("groups"); len(gs) != 1 || gs[0]["dm"] != "bob" {
		t.Errorf("alice's groups: %v, want one dm channel reused", gs)
	}
	// --suite picks another cipher suite; send --all reaches every group.
	alice.run("create-group", "classic", "--suite", "0x0001")
	alice.run("invite", "classic", "bob")
	if gs := alice.jsonLines("groups"); len(gs) != 2 || gs[0]["group"] != "classic" || gs[0]["suite"] != "0x0001" {
		t.Errorf("alice's groups: %v, want classic in suite 0x0001", gs)
	}
	alice.run("send", "--all", "to", "all")
	bob.wantMessages("classic alice: to all", "dm:alice alice: to all")
	if got := carol.messages(); len(got) != 0 {
		t.Errorf("carol read %q", got)
	}
	if out := carol.run("groups"); out != "" {
		t.Errorf("carol is in groups: %q", out)
	}

	// Carol logs out: her device is revoked and her profile deleted.
	carol.run("logout")
	if _, err := os.Stat(filepath.Join(state, "carol.state")); !os.IsNotExist(err) {
		t.Errorf("carol's state after logout: %v", err)
	}
	if code, _, errs := carol.try("groups"); code == 0 || !strings.Contains(errs, "no state") {
		t.Errorf("groups after logout: exit %d, stderr %q", code, errs)
	}
	if code, _, errs := alice.try("dm", "carol", "are you there?"); code == 0 {
		t.Error("a dm to a user without devices succeeded")
	} else {
		oneErrorLine(t, errs)
	}
}

func TestClientTwoDevices(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, "127.0.0.1:0", filepath.Join(dir, "data"))
	state := filepath.Join(dir, "state")
	alice, bob := newCLIUser(t, n, state, "alice"), newCLIUser(t, n, state, "bob")
	bob2 := bob.otherDevice("bob-laptop")
	if ds := bob.jsonLines("devices"); len(ds) != 2 {
		t.Errorf("devices: %v", ds)
	}
	// Other users add only devices bob approved (docs/PROTOCOL.md,
	// "Device approval").
	bob.run("approve-device", bob2.device)
	alice.run("create-group", "g")
	if res := alice.jsonLines("invite", "g", "bob"); res[0]["devices"] != float64(2) {
		t.Errorf("invite bob added %v devices, want 2", res[0]["devices"])
	}
	bob.run("join")
	bob2.run("join")
	alice.run("send", "g", "to both")
	bob.wantMessages("g alice: to both")
	bob2.wantMessages("g alice: to both")

	res := bob.jsonLines("revoke-device", bob2.device)
	if len(res) != 1 || res[0]["revoked"] != bob2.device {
		t.Errorf("revoke-device printed %v", res)
	}
	alice.run("send", "g", "only one")
	bob.wantMessages("g alice: only one")
	if code, _, errs := bob2.try("recv"); code == 0 {
		t.Error("a revoked device could still fetch")
	} else {
		oneErrorLine(t, errs)
	}
	if ms := alice.jsonLines("members", "g"); len(ms) != 2 {
		t.Errorf("members after revocation: %v", ms)
	}
}

func TestClientBadInput(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	n := startNode(t, "127.0.0.1:0", data)
	state := filepath.Join(dir, "state")
	alice := newCLIUser(t, n, state, "alice")
	alice.run("create-group", "g")

	fails := func(what, wantErr string, env []string, args ...string) {
		t.Helper()
		code, out, errs := client(t, env, alice.args(args)...)
		errs = withoutTestWarning(t, errs)
		if code == 0 || !strings.Contains(errs, wantErr) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want a failure saying %q", what, code, out, errs, wantErr)
		}
		oneErrorLine(t, errs)
	}
	fails("wrong passphrase", "wrong state passphrase", append(alice.env, "QPCHAT_PASSPHRASE=wrong"), "groups")
	fails("unknown group", "unknown group", alice.env, "send", "nope", "x")
	fails("unknown user", "nobody", alice.env, "invite", "g", "nobody")
	fails("unknown profile", "no state", alice.env, "--profile", "ghost", "groups")
	fails("register without a fingerprint", "fingerprint", append(alice.env, "QPCHAT_PASSWORD=x"), "--profile", "new", "register-user", "dave")
	fails("wrong password", "wrong user name or password", append(alice.env, "QPCHAT_PASSWORD=wrong"), "--profile", "other", "--server-fingerprint", n.fingerprint, "login", "alice")
	// Nothing was corrupted by the failures.
	alice.run("send", "g", "still fine")

	// A node with another key on the same address is refused.
	n.stop(t)
	n2 := startNode(t, n.addr, filepath.Join(dir, "other-data"))
	if n2.fingerprint == n.fingerprint {
		t.Fatal("same key")
	}
	code, _, errs := alice.try("recv")
	if code != exitUntrusted || !strings.Contains(errs, "refusing to connect") {
		t.Errorf("changed server key: exit %d, stderr %q", code, errs)
	}
	oneErrorLine(t, errs)
	n2.stop(t)

	// A tampered state file is refused, and left as it was.
	path := filepath.Join(state, "alice.state")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Flip a byte of the sealed value after every copy of the key
	// "device" (bbolt keeps stale copies of pages; one copy is live).
	var offs []int
	for i := 0; ; {
		j := bytes.Index(b[i:], []byte("device"))
		if j < 0 {
			break
		}
		offs = append(offs, i+j+len("device")+8)
		i += j + 1
	}
	if len(offs) == 0 {
		t.Fatal("no device record key in the state file")
	}
	for _, off := range offs {
		b[off] ^= 1
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	fails("tampered state", "tampered", alice.env, "groups")
	fails("tampered state, again", "tampered", alice.env, "send", "g", "x")
	// Undoing the change makes the profile work again: the refusals
	// wrote nothing.
	b, _ = os.ReadFile(path)
	for _, off := range offs {
		b[off] ^= 1
	}
	os.WriteFile(path, b, 0o600)
	alice.run("groups")
	for _, secret := range []string{"alice", "still fine", "password of alice"} {
		if bytes.Contains(b, []byte(secret)) {
			t.Errorf("the state file contains %q in clear", secret)
		}
	}
}

func TestClientDemoGroup(t *testing.T) {
	code, out, errs := client(t, testEnv(t), "demo-group")
	if code != 0 || !strings.Contains(out, "== done") || !strings.Contains(out, "equal on both sides") ||
		!strings.Contains(out, "carol sees: [friends] you were removed by alice") || strings.Contains(out, "carol sees: [friends] alice: carol cannot read this") {
		t.Errorf("demo-group: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
}

// TestClientStateDefaults: the state lives in <XDG data dir>/qpchat/
// <profile>.state (profile "default" unless --profile), XDG_DATA_HOME is
// followed, the pinned server key is kept inside it (encrypted), and no
// flag takes a secret.
func TestClientStateDefaults(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, "127.0.0.1:0", filepath.Join(dir, "data"))
	home, xdg := filepath.Join(dir, "home"), filepath.Join(dir, "xdg")
	base := []string{"HOME=" + home, "QPCHAT_SERVER=" + n.addr, "QPCHAT_PASSPHRASE=state pass", "QPCHAT_INSECURE_TEST_KDF=1"}
	for _, kv := range testEnv(t) {
		if !strings.HasPrefix(kv, "HOME=") && !strings.HasPrefix(kv, "XDG_DATA_HOME=") {
			base = append(base, kv)
		}
	}

	// Without XDG_DATA_HOME: ~/.local/share/qpchat/default.state.
	code, _, errs := client(t, base, "groups")
	want := filepath.Join(home, ".local", "share", "qpchat")
	if code == 0 || !strings.Contains(errs, `profile "default" has no state in `+want+" ") {
		t.Errorf("groups without state: exit %d, stderr %q; want it to name %s", code, errs, want)
	}

	// With XDG_DATA_HOME: $XDG_DATA_HOME/qpchat/<profile>.state.
	env := append(base, "XDG_DATA_HOME="+xdg, "QPCHAT_PASSWORD=pw of erin")
	code, out, errs := client(t, env, "register-user", "erin", "--server-fingerprint", n.fingerprint)
	if code != 0 {
		t.Fatalf("register-user: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if code, out, errs := client(t, env, "--profile", "second", "login", "erin"); code != 0 {
		t.Fatalf("login: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	entries, err := os.ReadDir(filepath.Join(xdg, "qpchat"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "default.state second.state" {
		t.Errorf("state directory holds %v, want default.state and second.state only", names)
	}
	if _, err := os.Stat(want); !os.IsNotExist(err) {
		t.Errorf("%s was made although XDG_DATA_HOME is set: %v", want, err)
	}
	// The server's key is pinned in the state (the second profile trusted
	// it on first use and remembers it), never in clear.
	fpHex := strings.TrimPrefix(n.fingerprint, "sha256:")
	for _, name := range names {
		b, err := os.ReadFile(filepath.Join(xdg, "qpchat", name))
		if err != nil {
			t.Fatal(err)
		}
		for _, clear := range []string{"erin", fpHex, n.addr} {
			if bytes.Contains(b, []byte(clear)) {
				t.Errorf("%s contains %q in clear", name, clear)
			}
		}
	}
	// The secrets may come from files instead (one trailing newline is
	// dropped); a file wins over the variable holding the value.
	pf, wf := filepath.Join(dir, "passphrase"), filepath.Join(dir, "password")
	if err := os.WriteFile(pf, []byte("state pass\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(wf, []byte("pw of erin\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fenv := append(env, "QPCHAT_PASSPHRASE=wrong", "QPCHAT_PASSWORD=wrong", "QPCHAT_PASSPHRASE_FILE="+pf, "QPCHAT_PASSWORD_FILE="+wf)
	if code, out, errs := client(t, fenv, "--profile", "second", "login", "erin"); code != 0 {
		t.Errorf("login with secrets from files: exit %d, stdout %q, stderr %q", code, out, errs)
	}

	n.stop(t)
	n2 := startNode(t, n.addr, filepath.Join(dir, "other-data"))
	if code, _, errs := client(t, env, "--profile", "second", "login", "erin"); code != exitUntrusted || !strings.Contains(errs, "refusing to connect") {
		t.Errorf("login to a node with another key: exit %d, stderr %q; want the pin kept in the state to refuse it", code, errs)
	}
	n2.stop(t)

	// No flag takes a secret.
	for _, flag := range []string{"--password=x", "--passphrase=x", "--password-file=x", "--passphrase-file=x"} {
		if code, _, errs := client(t, env, "login", "erin", flag); code == 0 || !strings.Contains(errs, "unknown flag") {
			t.Errorf("login %s: exit %d, stderr %q; want an unknown flag", flag, code, errs)
		}
	}
}

// TestClientPingStateDefaults: ping keeps its pins in the same state
// directory as the other client commands, $XDG_DATA_HOME/qpchat when that
// is set, else ~/.local/share/qpchat.
func TestClientPingStateDefaults(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, "127.0.0.1:0", filepath.Join(dir, "data"))
	home, xdg := filepath.Join(dir, "home"), filepath.Join(dir, "xdg")
	base := []string{"HOME=" + home, "QPCHAT_SERVER=" + n.addr}
	for _, kv := range testEnv(t) {
		if !strings.HasPrefix(kv, "HOME=") && !strings.HasPrefix(kv, "XDG_DATA_HOME=") {
			base = append(base, kv)
		}
	}
	xdgPins := filepath.Join(xdg, "qpchat", "server-pins.json")
	homePins := filepath.Join(home, ".local", "share", "qpchat", "server-pins.json")

	// With XDG_DATA_HOME the pin lands there, not under HOME, and the
	// second ping finds it (no new trust on first use).
	env := append(base[:len(base):len(base)], "XDG_DATA_HOME="+xdg)
	for i, wantTOFU := range []bool{true, false} {
		code, out, errs := client(t, env, "ping")
		if code != 0 || !strings.HasPrefix(out, "pong from "+n.addr) {
			t.Fatalf("ping %d with XDG_DATA_HOME: exit %d, stdout %q, stderr %q", i, code, out, errs)
		}
		if got := strings.Contains(errs, "on first use: "+n.fingerprint); got != wantTOFU {
			t.Errorf("ping %d with XDG_DATA_HOME: trusted on first use %v, want %v (stderr %q)", i, got, wantTOFU, errs)
		}
	}
	if _, err := os.Stat(xdgPins); err != nil {
		t.Errorf("ping with XDG_DATA_HOME pinned nothing in %s: %v", xdgPins, err)
	}
	if _, err := os.Stat(filepath.Join(home, ".local")); !os.IsNotExist(err) {
		t.Errorf("ping with XDG_DATA_HOME wrote under HOME: %v", err)
	}

	// Without it: ~/.local/share/qpchat, a state directory of its own.
	code, out, errs := client(t, base, "ping")
	if code != 0 || !strings.Contains(errs, "on first use: "+n.fingerprint) {
		t.Errorf("ping without XDG_DATA_HOME: exit %d, stdout %q, stderr %q; want a trust on first use", code, out, errs)
	}
	if _, err := os.Stat(homePins); err != nil {
		t.Errorf("ping without XDG_DATA_HOME pinned nothing in %s: %v", homePins, err)
	}
}

// TestClientFailedAccountCommandsLeaveNoProfile: register-user and login
// that fail after creating the profile's state file (wrong password,
// taken name, unreachable node) remove it again; a profile that existed
// before is kept, and a later login with the right password works.
func TestClientFailedAccountCommandsLeaveNoProfile(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, "127.0.0.1:0", filepath.Join(dir, "data"))
	state := filepath.Join(dir, "state")
	env := append(clientEnv(t, n, state), "QPCHAT_PASSWORD=password of gina")
	wrong := append(env[:len(env):len(env)], "QPCHAT_PASSWORD=not the password")
	exists := func(profile string) bool {
		t.Helper()
		_, err := os.Stat(filepath.Join(state, profile+".state"))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		return err == nil
	}
	gina := &cliUser{t: t, name: "gina", profile: "gina", env: env}
	gina.run("register-user", "gina", "--server-fingerprint", n.fingerprint)

	// Wrong password: login fails and leaves no "second" profile.
	second := &cliUser{t: t, name: "gina", profile: "second", env: wrong}
	if code, out, errs := second.try("login", "gina", "--server-fingerprint", n.fingerprint); code == 0 {
		t.Fatalf("login with a wrong password: exit 0, stdout %q, stderr %q", out, errs)
	}
	if exists("second") {
		t.Error("a login with a wrong password left second.state behind")
	}
	// The right password then works in the same profile.
	second.env = env
	if out := second.run("login", "gina", "--server-fingerprint", n.fingerprint); !strings.Contains(out, "logged in as gina") {
		t.Errorf("login after a failed one printed %q", out)
	}
	if !exists("second") {
		t.Fatal("a successful login left no second.state")
	}

	// A failing login on an existing profile keeps it.
	second.env = wrong
	if code, _, errs := second.try("login", "gina"); code == 0 {
		t.Errorf("login with a wrong password on an existing profile: exit 0, stderr %q", errs)
	}
	if !exists("second") {
		t.Error("a failed login deleted the existing second.state")
	}
	second.env = env
	second.run("login", "gina")
	// So is one that exists but holds no account yet.
	st, err := nc.OpenState(nc.StateOptions{Path: filepath.Join(state, "empty.state"), Passphrase: []byte("state pass"),
		KDF: store.KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	empty := &cliUser{t: t, name: "gina", profile: "empty", env: wrong}
	if code, _, errs := empty.try("login", "gina"); code == 0 {
		t.Errorf("login with a wrong password on an existing empty profile: exit 0, stderr %q", errs)
	}
	if !exists("empty") {
		t.Error("a failed login deleted the existing empty.state")
	}

	// A taken name: register-user fails and leaves no "third" profile.
	third := &cliUser{t: t, name: "gina", profile: "third", env: env}
	if code, out, errs := third.try("register-user", "gina", "--server-fingerprint", n.fingerprint); code == 0 {
		t.Fatalf("register-user of a taken name: exit 0, stdout %q, stderr %q", out, errs)
	}
	if exists("third") {
		t.Error("a register-user of a taken name left third.state behind")
	}

	// An unreachable node: neither command leaves a profile behind.
	silent := append(env[:len(env):len(env)], "QPCHAT_SERVER="+silentAddr(t), "QPCHAT_TIMEOUT=300ms")
	fourth := &cliUser{t: t, name: "hana", profile: "fourth", env: silent}
	for _, args := range [][]string{{"register-user", "hana"}, {"login", "gina"}} {
		if code, _, errs := fourth.try(args...); code == 0 || !strings.Contains(errs, "cannot reach") {
			t.Errorf("%s at an unreachable node: exit %d, stderr %q", args[0], code, errs)
		}
		if exists("fourth") {
			t.Errorf("%s at an unreachable node left fourth.state behind", args[0])
		}
	}
	entries, err := os.ReadDir(state)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "empty.state gina.state second.state" {
		t.Errorf("state directory holds %v, want empty.state, gina.state and second.state only", names)
	}
}
