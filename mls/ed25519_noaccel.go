//go:build !(js && wasm)

package mls

// edAccelKey is empty: outside a browser Go's Ed25519 is the fast one.
type edAccelKey struct{}

// edAccelVerify reports whether the platform's Ed25519 accepts sig; it
// never does here, so every signature is checked by edVerify's rule.
func edAccelVerify(*edPublicKey, []byte, []byte) bool { return false }
