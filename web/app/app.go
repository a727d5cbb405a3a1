// Package app holds the files of qpchat's web app, embedded into the
// qpchat binary and served by `qpchat serve --web-listen`: the page,
// its style and script, wasm_exec.js from the Go distribution and the
// client compiled to WebAssembly (qpchat.wasm, built from ../ by
// `go generate ./web/app`, gzipped as qpchat.wasm.gz; see docs/WEB.md).
package app

import (
	"embed"
	"io/fs"
)

//go:embed static
var static embed.FS

// Files returns the app's files, index.html at the root.
func Files() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic("app: internal error: the embedded static directory is missing: " + err.Error())
	}
	return sub
}
