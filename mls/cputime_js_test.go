//go:build js

package mls

import "time"

// cpuTime is the wall clock under js/wasm, which has no CPU-time clock
// (the mls tests run there to check the WebCrypto Ed25519 path).
func cpuTime() time.Duration { return time.Duration(time.Now().UnixNano()) }
