// Command buildwasm builds the browser client (qpchat/web) for
// GOOS=js GOARCH=wasm and writes it, gzipped, into the app's static
// files, with wasm_exec.js from the Go distribution beside it. It runs
// from `go generate ./web/app` in that directory.
//
// The output is reproducible for a given Go version and profile
// (web/default.pgo): -trimpath, no VCS
// stamp, no build id, and a gzip header without name or time. CI runs
// go generate and fails when the committed file differs.
package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "buildwasm:", err)
		os.Exit(1)
	}
}

func run() error {
	tmp, err := os.MkdirTemp("", "qpchat-wasm")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, "qpchat.wasm")
	// -pgo=auto builds with web/default.pgo, the profile that makes the
	// compiler inline the portable crypto code's hot calls (web/perf's
	// BenchmarkPGO says how it is made).
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-pgo=auto", "-ldflags=-s -w -buildid=", "-o", out, "qpchat/web")
	cmd.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm", "CGO_ENABLED=0")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build: %w", err)
	}
	wasm, err := os.ReadFile(out)
	if err != nil {
		return err
	}
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		return err
	}
	if _, err := zw.Write(wasm); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join("static", "qpchat.wasm.gz"), gz.Bytes(), 0o644); err != nil {
		return err
	}
	goroot, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return fmt.Errorf("go env GOROOT: %w", err)
	}
	execJS, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(goroot)), "lib", "wasm", "wasm_exec.js"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join("static", "wasm_exec.js"), execJS, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "qpchat.wasm: %d bytes, %d gzipped\n", len(wasm), gz.Len())
	return nil
}
