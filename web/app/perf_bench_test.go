package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"testing"
	"time"

	"qpchat/web/browsertest"
	"qpchat/web/perf"
)

// BenchmarkWebVsNative reports issue 16's browser figures on this
// machine: the gzipped wasm size, the app's time to interactive, and
// perf.Run (login's Argon2id with the node's default parameters, MLS
// group build, join, full-path commit and its processing, message
// encrypt/decrypt in qpchat's hybrid suite) run in headless chromium
// (WebAssembly) and natively, with the ratio wasm/native of each, and the
// browser's figures again with Go's Ed25519 instead of WebCrypto's
// (mls/ed25519_js.go).
// Run it once per size:
//
//	go test ./web/app -run XXX -bench WebVsNative -benchtime 1x
func BenchmarkWebVsNative(b *testing.B) {
	wasm, err := fs.Stat(Files(), "qpchat.wasm.gz")
	if err != nil {
		b.Fatal(err)
	}
	browsertest.Find(b)
	srv := startWebNode(b)

	for _, n := range []int{32, 1024} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			iters := 5
			if n > 100 {
				iters = 2
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
			defer cancel()
			for b.Loop() {
				br := browsertest.New(b, ctx)
				tti := br.Open("http://" + srv.WebAddr().String() + "/")
				// A first run warms the page up (V8 compiles the hot wasm
				// functions again, optimized, while they run), as a client
				// in use is; then the figures. Natively the same.
				br.Eval("warm-up in the browser", fmt.Sprintf("qpchat.bench(%d, %d, false)", n, iters), 15*time.Minute)
				var web perf.Result
				out := br.Eval("bench in the browser", fmt.Sprintf("qpchat.bench(%d, %d, true)", n, iters), 15*time.Minute)
				if err := json.Unmarshal([]byte(out), &web); err != nil {
					b.Fatalf("qpchat.bench returned %q: %v", out, err)
				}
				var goEd perf.Result // the same in the browser with Go's Ed25519 instead of WebCrypto's
				out = br.Eval("bench in the browser with Go's Ed25519", fmt.Sprintf("(globalThis.qpchatGoEd25519 = true, qpchat.bench(%d, %d, false))", n, iters), 15*time.Minute)
				if err := json.Unmarshal([]byte(out), &goEd); err != nil {
					b.Fatalf("qpchat.bench returned %q: %v", out, err)
				}
				if _, err := perf.Run(n, iters, false); err != nil {
					b.Fatal(err)
				}
				native, err := perf.Run(n, iters, true)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(wasm.Size())/(1<<20), "wasm-gz-MiB")
				b.ReportMetric(float64(tti.Milliseconds()), "interactive-ms")
				for _, m := range []struct {
					name        string
					web, native float64
				}{
					{"argon2id", web.Argon2id, native.Argon2id},
					{"keypackage", web.KeyPkgs, native.KeyPkgs},
					{"build", web.Build, native.Build},
					{"join", web.Join, native.Join},
					{"commit", web.Commit, native.Commit},
					{"process", web.Process, native.Process},
					{"encrypt", web.Encrypt, native.Encrypt},
					{"decrypt", web.Decrypt, native.Decrypt},
				} {
					b.ReportMetric(m.web, m.name+"-wasm-ms")
					b.ReportMetric(m.native, m.name+"-native-ms")
					if m.native > 0 {
						b.ReportMetric(m.web/m.native, m.name+"-x")
					}
				}
				b.ReportMetric(goEd.Encrypt, "encrypt-wasm-go-ed25519-ms")
				b.ReportMetric(goEd.Decrypt, "decrypt-wasm-go-ed25519-ms")
				b.ReportMetric(goEd.Commit, "commit-wasm-go-ed25519-ms")
				b.ReportMetric(goEd.Join, "join-wasm-go-ed25519-ms")
			}
		})
	}
}
