//go:build js && wasm

package mls

import (
	"bytes"
	"crypto/ed25519"
	"syscall/js"
	"testing"
)

// goOnly runs fn with the WebCrypto path turned off by the page.
func goOnly(t *testing.T, fn func(*testing.T)) {
	js.Global().Set("qpchatGoEd25519", true)
	defer js.Global().Delete("qpchatGoEd25519")
	fn(t)
}

// TestEd25519GoOnly: a page that sets qpchatGoEd25519 gets Go's
// verification only (edAccelVerify declines, the rule decides).
func TestEd25519GoOnly(t *testing.T) { goOnly(t, testEd25519GoOnly) }

// signed makes a fresh key pair, signs msg and looks up the key as the
// verifier does.
func signed(t *testing.T, msg []byte) (pub ed25519.PublicKey, k *edPublicKey, sig []byte) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	k, ok := edKeys.get(pub)
	if !ok {
		t.Fatal("key refused")
	}
	return pub, k, ed25519.Sign(priv, msg)
}

func testEd25519GoOnly(t *testing.T) {
	msg := []byte("a message")
	pub, k, sig := signed(t, msg)
	if edAccelVerify(k, msg, sig) {
		t.Fatal("WebCrypto was used although the page turned it off")
	}
	if !edVerify(pub, msg, sig) {
		t.Fatal("a valid signature was refused")
	}
}

// The rule's tests again with Go deciding everything (here they run
// through WebCrypto by default).
func TestEd25519EdgeCasesGoOnly(t *testing.T) { goOnly(t, TestEd25519EdgeCases) }
func TestEd25519DifferentialRandomGoOnly(t *testing.T) {
	goOnly(t, TestEd25519DifferentialRandom)
}

// TestEd25519WebCrypto checks the WebCrypto path of ed25519_js.go (run
// with GOOS=js GOARCH=wasm go test -exec go_js_wasm_exec ./mls under
// Node 20+, or in a browser): it is used, accepts valid signatures and
// leaves refused ones to the
// rule (TestEd25519EdgeCases and TestEd25519DifferentialRandom then check
// the rule's decisions through the same edVerify).
func TestEd25519WebCrypto(t *testing.T) {
	msg := []byte("a message of a browser user")
	pub, k, sig := signed(t, msg)
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
