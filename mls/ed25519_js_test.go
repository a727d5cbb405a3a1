//go:build js && wasm

package mls

import (
	"bytes"
	"crypto/ed25519"
	"syscall/js"
	"testing"
)

// withWebCrypto runs fn with the WebCrypto path turned on.
func withWebCrypto(t *testing.T, fn func(*testing.T)) {
	js.Global().Set("qpchatWebCryptoEd25519", true)
	defer js.Global().Delete("qpchatWebCryptoEd25519")
	fn(t)
}

// TestEd25519WebCryptoOff: unless the page asks for it, WebCrypto is not
// used (edAccelVerify declines, Go's rule decides).
func TestEd25519WebCryptoOff(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("a message")
	sig := ed25519.Sign(priv, msg)
	k, ok := edKeys.get(pub)
	if !ok {
		t.Fatal("key refused")
	}
	if edAccelVerify(k, msg, sig) {
		t.Fatal("WebCrypto was used without being asked for")
	}
	if !edVerify(pub, msg, sig) {
		t.Fatal("a valid signature was refused")
	}
}

// The rule's tests again, with WebCrypto accepting what it accepts.
func TestEd25519EdgeCasesWebCrypto(t *testing.T) { withWebCrypto(t, TestEd25519EdgeCases) }
func TestEd25519DifferentialRandomWebCrypto(t *testing.T) {
	withWebCrypto(t, TestEd25519DifferentialRandom)
}

// TestEd25519WebCrypto checks the WebCrypto path of ed25519_js.go (run
// with GOOS=js GOARCH=wasm go test -exec go_js_wasm_exec ./mls under
// Node 20+, or in a browser): it is used, accepts valid signatures and
// leaves refused ones to the
// rule (TestEd25519EdgeCases and TestEd25519DifferentialRandom then check
// the rule's decisions through the same edVerify).
func TestEd25519WebCrypto(t *testing.T) { withWebCrypto(t, testEd25519WebCrypto) }

func testEd25519WebCrypto(t *testing.T) {
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
