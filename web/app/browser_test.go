package app

import (
	"context"
	"crypto/ed25519"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	nc "qpchat/node/client"
	"qpchat/node/proto"
	"qpchat/node/server"
	"qpchat/node/store"
	"qpchat/opaque"
	"qpchat/rpc"
	"qpchat/web/browsertest"
)

// cliUser is the terminal user of the test: the client library the CLI
// drives, over QUIC.
type cliUser struct {
	c    *nc.Client
	st   *nc.State
	name string
}

func newCLIUser(t *testing.T, ctx context.Context, addr, fp, name string) *cliUser {
	t.Helper()
	st, err := nc.OpenState(nc.StateOptions{Path: filepath.Join(t.TempDir(), name+".state"), Passphrase: []byte("pw"), KDF: fastStateKDF})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rc, err := rpc.Dial(ctx, addr, rpc.DialOptions{Fingerprint: fp, Pins: st, Limits: rpc.MessageLimits{MaxMessageSize: proto.MinClientFrameSize}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	e := &nc.RPCEntry{C: rc}
	pw := []byte("password of " + name)
	if _, _, err := nc.RegisterUser(ctx, e, name, pw, nc.AccountOptions{}); err != nil {
		t.Fatal(err)
	}
	uk, ls, err := nc.Login(ctx, e, name, pw, nc.AccountOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dev, cert, err := nc.NewDevice(ctx, e, ls, name, uk, nil)
	if err != nil {
		t.Fatal(err)
	}
	prof := &nc.Profile{User: name, UserKey: uk.Public().(ed25519.PublicKey), Device: dev, Cert: cert}
	if err := st.SaveProfile(prof); err != nil {
		t.Fatal(err)
	}
	sess, err := nc.AuthenticateDevice(ctx, e, prof)
	if err != nil {
		t.Fatal(err)
	}
	c, err := nc.New(nc.Config{State: st, Session: sess})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReplenishKeyPackages(ctx, nil); err != nil {
		t.Fatal(err)
	}
	return &cliUser{c: c, st: st, name: name}
}

// recvUntil applies the CLI user's queue until an event matching ok shows.
func (u *cliUser) recvUntil(t *testing.T, ctx context.Context, what string, ok func(*nc.Event) bool) {
	t.Helper()
	for ctx.Err() == nil {
		evs, err := u.c.Recv(ctx, 5*time.Second)
		if err != nil {
			t.Fatalf("%s: recv: %v", u.name, err)
		}
		for _, e := range evs {
			if ok(e) {
				return
			}
		}
	}
	t.Fatalf("%s never got %s", u.name, what)
}

// startWebNode runs an in-process node with the web listener serving
// the app, with the lowest key-stretching parameters the browser accepts
// (to keep tests quick) and limits that do not get in their way.
func startWebNode(tb testing.TB) *server.Server {
	tb.Helper()
	cfg := opaque.QPChat()
	cfg.KSF = opaque.DefaultKSFBounds.Floor
	srv, err := server.New(server.Config{Listen: "127.0.0.1:0", DataDir: tb.TempDir(), OPAQUE: cfg,
		Limits: server.Limits{MaxConnsPerAddr: 1000, LoginRateAddr: 100000},
		Web:    server.WebConfig{Listen: "127.0.0.1:0", App: Files()},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	tb.Cleanup(func() { stop(); <-done })
	return srv
}

// fastStateKDF keeps the terminal user's state file quick to open.
var fastStateKDF = store.KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}

// TestBrowserChatWithLibrary runs the real web app in headless chromium
// against an in-process node: the browser user registers, creates a
// group and invites the terminal user, they exchange messages both
// ways (the browser's arrives live through fetchWait), the terminal
// user invites the browser user into a group of its own, and both see
// the same safety number. (The root package's TestBrowserWithCLI does the
// same with the real qpchat binary for the node and the terminal user.)
func TestBrowserChatWithLibrary(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test skipped in -short mode")
	}
	browsertest.Find(t)
	srv := startWebNode(t)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bob := newCLIUser(t, ctx, srv.Addr().String(), srv.Fingerprint(), "bob")

	b := browsertest.New(t, ctx)
	tti := b.Open("http://" + srv.WebAddr().String() + "/")
	t.Logf("time to interactive: %v", tti)
	b.Register("alice", "alice's long password")
	t.Logf("account, device and state set up in the browser: %s ms", b.Eval("login time", `document.body.dataset.loginMillis`, 5*time.Second))
	// The page said it was deriving keys while Argon2id ran on its thread,
	// and the device list shows this browser's device.
	if log := b.Eval("status log", `window.qpchatStatusLog.join("\n")`, 5*time.Second); !strings.Contains(log, "deriving keys with Argon2id") {
		t.Fatalf("no progress shown during Argon2id; status log:\n%s", log)
	}
	b.WaitText("the device list", "devices", "(this browser) · approved")

	b.Step("create a group", browsertest.Fill("new-group", "garden"), browsertest.Click("create-group"))
	b.WaitOpened("create a group", "garden")
	b.Step("invite bob", browsertest.Fill("invite-users", "bob"), browsertest.Click("invite"))
	b.WaitText("invite bob", "members", "bob")

	bob.recvUntil(t, ctx, "the Welcome", func(e *nc.Event) bool { return e.Kind == nc.EventJoined })
	if err := bob.c.Send(ctx, "garden", "hello from the CLI"); err != nil {
		t.Fatal(err)
	}
	b.WaitText("the CLI's message arrives live", "messages", "hello from the CLI")

	b.Step("send from the browser", browsertest.Fill("text", "hi from the browser"), browsertest.Click("send"))
	b.WaitText("send from the browser", "messages", "hi from the browser")
	bob.recvUntil(t, ctx, "the browser's message", func(e *nc.Event) bool {
		return e.Kind == nc.EventMessage && e.Sender == "alice" && e.Text == "hi from the browser"
	})

	// Safety numbers agree.
	v, err := bob.c.Verify(ctx, "alice", false)
	if err != nil {
		t.Fatal(err)
	}
	b.WaitText("the browser shows the same safety number", "members", v.SafetyNumber)
	b.WaitText("bob is not verified yet", "members", "· not verified")
	b.Step("mark bob verified", chromedp.Click(chromedp.CSS(`#members li[data-user="bob"] button`)))
	b.WaitText("bob is verified", "members", "bob · verified")

	// Bob invites alice into a group of his; the browser joins it live.
	if _, err := bob.c.CreateGroup(ctx, "porch", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.c.Invite(ctx, "porch", []string{"alice"}); err != nil {
		t.Fatal(err)
	}
	b.WaitText("the browser joins bob's group", "groups", "porch")

	// Keyboard only: the group is opened with Enter on its entry, and a
	// message is sent with Enter in the message field.
	b.Step("open porch with the keyboard", chromedp.Focus(chromedp.ID("group-porch")), chromedp.KeyEvent(kb.Enter))
	b.WaitOpened("open porch with the keyboard", "porch")
	b.Step("send with Enter", chromedp.Focus(chromedp.ID("text")), chromedp.KeyEvent("typed, then Enter"+kb.Enter))
	b.WaitText("send with Enter", "messages", "typed, then Enter")
	bob.recvUntil(t, ctx, "the message sent with Enter", func(e *nc.Event) bool {
		return e.Kind == nc.EventMessage && e.Text == "typed, then Enter"
	})

	// A 1 MiB paste is more than the node takes: the user is told how
	// much fits, keeps the text, and the group works on.
	b.Eval("paste 1 MiB", `(document.getElementById("text").value = "x".repeat(1 << 20), "ok")`, 10*time.Second)
	b.Step("send 1 MiB", browsertest.Click("send"))
	b.WaitText("the paste is refused", "status", "bytes of text fit")
	if n := b.Eval("the paste is kept", `String(document.getElementById("text").value.length)`, 5*time.Second); n != "1048576" {
		t.Fatalf("after the refusal the message field holds %s characters", n)
	}
	b.Eval("clear", `(document.getElementById("text").value = "", "ok")`, 5*time.Second)
	b.Step("send after the refusal", browsertest.Fill("text", "short again"), browsertest.Click("send"))
	b.WaitText("send after the refusal", "messages", "short again")
	bob.recvUntil(t, ctx, "the message after the refused paste", func(e *nc.Event) bool {
		return e.Kind == nc.EventMessage && e.Text == "short again"
	})

	// Leaving bob's group (the confirmation accepted): bob's client
	// commits the leave, and the browser lists the group as left.
	b.Eval("accept confirmations", `(window.confirm = () => true, "ok")`, 5*time.Second)
	b.Step("leave porch", browsertest.Click("leave"))
	bob.recvUntil(t, ctx, "alice leaving porch", func(e *nc.Event) bool {
		return e.Kind == nc.EventLeft && e.Text == "alice left" // porch is bob's only group with alice still in it
	})
	b.WaitText("the browser has left porch", "groups", "porch (left)")

	// A phone screen: nothing is wider than the screen, and the message
	// field and the buttons are on it.
	b.Step("phone screen", chromedp.EmulateViewport(360, 740, chromedp.EmulateScale(2)))
	fits := b.Eval("phone layout", `(() => {
		const w = document.documentElement.clientWidth;
		if (document.documentElement.scrollWidth > w) return "the page is " + document.documentElement.scrollWidth + "px wide on a " + w + "px screen";
		for (const id of ["text", "send", "invite-users", "invite", "new-group", "create-group"]) {
			const r = document.getElementById(id).getBoundingClientRect();
			if (r.width === 0 || r.left < 0 || r.right > w) return "#" + id + " is off the screen: " + JSON.stringify(r);
		}
		return "ok";
	})()`, 10*time.Second)
	if fits != "ok" {
		b.Report()
		t.Fatal(fits)
	}
}
