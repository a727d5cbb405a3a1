//go:build js && wasm

package mls

// In a browser, Go's Ed25519 runs on field arithmetic that WebAssembly
// makes several times slower than native code (no 64×64→128-bit
// multiply), and signing and verifying dominate the cost of each message.
// Where the browser has its own Ed25519 (Web Cryptography API, algorithm
// "Ed25519": Chromium 137+, Firefox 129+, Safari 17+, Node 20), it
// verifies:
//
//   - This never changes a decision: edVerify first checks the encodings
//     and small orders itself, accepts what WebCrypto accepts (its
//     cofactorless equation implies the cofactored one of
//     docs/BATCH-VERIFY.md) and decides everything else with its own rule,
//     so the accepted set is exactly the one of every other platform.
//   - Signing stays in Go: measured in Chromium (web/app
//     BenchmarkWebVsNative), the round trip through a WebCrypto Promise
//     costs about what Go's signing does, while verification, about twice
//     the work, gains (decrypting a message 15 % faster).
//
// If the API is missing or refuses the algorithm, the first failure turns
// the path off and Go's code does everything; a page (or a benchmark
// comparing both) can also turn it off with globalThis.qpchatGoEd25519 =
// true. The calls wait for a Promise, so they must run on a goroutine,
// never inside a synchronous JavaScript callback (the web client runs
// every call on its own goroutine).

import (
	"errors"
	"sync"
	"sync/atomic"
	"syscall/js"
)

// edAccelKey is the public key as a WebCrypto CryptoKey, imported on
// first use.
type edAccelKey struct {
	once sync.Once
	key  js.Value // undefined if the import failed
}

// edAccelOff is set when WebCrypto lacks Ed25519.
var edAccelOff atomic.Bool

func webSubtle() (js.Value, bool) {
	if edAccelOff.Load() || js.Global().Get("qpchatGoEd25519").Truthy() {
		return js.Value{}, false
	}
	c := js.Global().Get("crypto")
	if c.IsUndefined() || c.IsNull() {
		edAccelOff.Store(true)
		return js.Value{}, false
	}
	s := c.Get("subtle")
	if s.IsUndefined() || s.IsNull() {
		edAccelOff.Store(true)
		return js.Value{}, false
	}
	return s, true
}

// await waits for a Promise and returns its value.
func await(p js.Value) (js.Value, error) {
	type result struct {
		v   js.Value
		err error
	}
	ch := make(chan result, 1)
	then := js.FuncOf(func(_ js.Value, args []js.Value) any {
		var v js.Value
		if len(args) > 0 {
			v = args[0]
		}
		ch <- result{v: v}
		return nil
	})
	defer then.Release()
	catch := js.FuncOf(func(_ js.Value, args []js.Value) any {
		msg := "rejected"
		if len(args) > 0 {
			msg = args[0].Call("toString").String()
		}
		ch <- result{err: errors.New(msg)}
		return nil
	})
	defer catch.Release()
	p.Call("then", then, catch)
	r := <-ch
	return r.v, r.err
}

func jsBytes(b []byte) js.Value {
	a := js.Global().Get("Uint8Array").New(len(b))
	js.CopyBytesToJS(a, b)
	return a
}

func edAlgorithm() js.Value {
	o := js.Global().Get("Object").New()
	o.Set("name", "Ed25519")
	return o
}

func usages(u string) js.Value {
	a := js.Global().Get("Array").New(1)
	a.SetIndex(0, u)
	return a
}

// safely runs fn, turning the path off if it panics (a JS exception from
// a missing or broken API).
func safely(fn func() bool) (ok bool) {
	defer func() {
		if recover() != nil {
			edAccelOff.Store(true)
			ok = false
		}
	}()
	return fn()
}

func edAccelVerify(k *edPublicKey, msg, sig []byte) bool {
	s, ok := webSubtle()
	if !ok {
		return false
	}
	return safely(func() bool {
		k.accel.once.Do(func() {
			key, err := await(s.Call("importKey", "raw", jsBytes(k.enc[:]), edAlgorithm(), false, usages("verify")))
			if err != nil {
				edAccelOff.Store(true)
				return
			}
			k.accel.key = key
		})
		if k.accel.key.IsUndefined() {
			return false
		}
		v, err := await(s.Call("verify", edAlgorithm(), k.accel.key, jsBytes(sig), jsBytes(msg)))
		return err == nil && v.Type() == js.TypeBoolean && v.Bool()
	})
}
