// Package browsertest drives qpchat's web app in a real browser for tests
// and benchmarks: Debian's chromium (or another Chrome) in headless mode
// through the DevTools protocol (github.com/chromedp/chromedp).
//
// Find skips the caller when no browser is installed, with a message
// saying how to get one, except when QPCHAT_REQUIRE_BROWSER=1 (.ci/run
// sets it after installing chromium), where it fails: a browser test is
// never skipped silently. On a failed step the page is screenshotted into
// the test's temporary directory (or QPCHAT_SCREENSHOT_DIR, which is
// kept) and its text, status log and console are logged.
package browsertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// EnvRequire names the variable that turns a missing browser into a failure.
const EnvRequire = "QPCHAT_REQUIRE_BROWSER"

// Find returns the path of a Chromium or Chrome, or skips tb saying why
// (fails it under QPCHAT_REQUIRE_BROWSER=1).
func Find(tb testing.TB) string {
	tb.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "no chromium or chrome in PATH: install Debian's chromium (apt-get install chromium; .ci/run does) to run the browser tests"
	if os.Getenv(EnvRequire) == "1" {
		tb.Fatal(msg + " (" + EnvRequire + "=1)")
	}
	tb.Skip(msg)
	return ""
}

// Browser is one headless browser tab.
type Browser struct {
	tb  testing.TB
	ctx context.Context

	mu      sync.Mutex
	console []string
}

// New starts a headless browser (found with Find) for tb; it is closed
// when ctx ends or the test is cleaned up.
func New(tb testing.TB, ctx context.Context) *Browser {
	tb.Helper()
	path := Find(tb)
	actx, acancel := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.Flag("headless", true),
		chromedp.Flag("disable-gpu", true), chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1024, 768))...)
	bctx, bcancel := chromedp.NewContext(actx, chromedp.WithLogf(tb.Logf))
	tb.Cleanup(func() { bcancel(); acancel() })
	b := &Browser{tb: tb, ctx: bctx}
	chromedp.Listen(bctx, b.record)
	return b
}

// record keeps the first console messages and exceptions of the page.
func (b *Browser) record(ev any) {
	s := fmt.Sprintf("%T", ev)
	if !strings.Contains(s, "EventConsoleAPICalled") && !strings.Contains(s, "EventExceptionThrown") {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.console) < 50 {
		b.console = append(b.console, fmt.Sprintf("%+v", ev))
	}
}

// Report saves a screenshot and logs the page's text, its status log
// and its console (after a failed step).
func (b *Browser) Report() {
	b.tb.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	if buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(80)); err == nil {
		dir := os.Getenv("QPCHAT_SCREENSHOT_DIR")
		if dir == "" {
			dir = b.tb.TempDir()
		}
		p := filepath.Join(dir, "failure-"+strings.ReplaceAll(b.tb.Name(), "/", "_")+".jpg")
		if err := os.WriteFile(p, buf, 0o600); err == nil {
			b.tb.Logf("screenshot: %s", p)
		}
	}
	body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
	log, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`(window.qpchatStatusLog || []).join(" | ")`))
	b.mu.Lock()
	console := strings.Join(b.console, " | ")
	b.mu.Unlock()
	b.tb.Logf("page text: %q\nstatus log: %s\nconsole: %s", body, log, console)
}

// Step runs actions, failing the test with name (and a report) if they
// do not finish within 90 s.
func (b *Browser) Step(name string, actions ...chromedp.Action[chromedp.Void]) {
	b.tb.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 90*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.Report()
		b.tb.Fatalf("%s: %v", name, err)
	}
}

// WaitText waits (up to 90 s) until the element with id contains text.
func (b *Browser) WaitText(name, id, text string) {
	b.tb.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 90*time.Second)
	defer cancel()
	expr := fmt.Sprintf(`(document.getElementById(%q) || {textContent: ""}).textContent.includes(%q)`, id, text)
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		b.Report()
		b.tb.Fatalf("%s: #%s never showed %q: %v", name, id, text, err)
	}
}

// WaitOpened waits (up to 90 s) until the app has opened group: its
// history, members and the focus on the message field are in place, so
// typing cannot race the view being built.
func (b *Browser) WaitOpened(name, group string) {
	b.tb.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 90*time.Second)
	defer cancel()
	expr := fmt.Sprintf(`document.body.dataset.opened === %q`, group)
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		b.Report()
		b.tb.Fatalf("%s: group %q never finished opening: %v", name, group, err)
	}
}

// Eval evaluates a JavaScript expression (awaiting a Promise it returns)
// and returns its value as a string; it fails the test on an error.
func (b *Browser) Eval(name, expr string, timeout time.Duration) string {
	b.tb.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr, chromedp.EvalAsValue, chromedp.EvalAwaitPromise))
	if err != nil {
		b.Report()
		b.tb.Fatalf("%s: %v", name, err)
	}
	return v
}

// Fill types text into the input with id.
func Fill(id, text string) chromedp.Action[chromedp.Void] {
	return chromedp.SendKeys(chromedp.ID(id), text)
}

// Click clicks the element with id.
func Click(id string) chromedp.Action[chromedp.Void] { return chromedp.Click(chromedp.ID(id)) }

// Open loads the app at url and waits for the sign-in form; it returns
// the time until the form was visible.
func (b *Browser) Open(url string) time.Duration {
	b.tb.Helper()
	start := time.Now()
	b.Step("load the app", chromedp.Navigate(url), chromedp.WaitVisible(chromedp.ID("signin")))
	return time.Since(start)
}

// Register creates an account in the app and waits for the main view.
func (b *Browser) Register(user, password string) {
	b.tb.Helper()
	b.Step("register "+user, Fill("user", user), Fill("password", password), Click("register"),
		chromedp.WaitVisible(chromedp.ID("main")))
}
