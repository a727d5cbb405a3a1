//go:build js && wasm

package mls

import (
	"bytes"
	"crypto/ed25519"
	"testing"
)

// TestEd25519WebCrypto checks the WebCrypto path of ed25519_js.go (run
// with GOOS=js GOARCH=wasm go test -exec go_js_wasm_exec ./mls under
// Node 20+, or in a browser): it is used, accepts valid signatures and
// leaves refused ones to the
// rule (TestEd25519EdgeCases and TestEd25519DifferentialRandom then check
// the rule's decisions through the same edVerify).
func TestEd25519WebCrypto(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("a message of a browser user")
	sig := ed25519.Sign(priv, msg)
	k, ok := edKeys.get(pub)
	if !ok {
		t.Fatal("key refused")
	}
	if !edAccelVerify(k, msg, sig) {
		t.Fatal("WebCrypto refused a valid signature")
	}
	bad := bytes.Clone(sig)
	bad[5] ^= 1
	if edAccelVerify(k, msg, bad) || edVerify(pub, msg, bad) {
		t.Fatal("a damaged signature was accepted")
	}
	if edAccelVerify(k, append(bytes.Clone(msg), '!'), sig) {
		t.Fatal("a signature was accepted for another message")
	}
	if edAccelOff.Load() {
		t.Fatal("the WebCrypto path turned itself off")
	}
}
