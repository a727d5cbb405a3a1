package mls

import (
	"crypto/ed25519"
	"testing"
)

func BenchmarkZZParts(b *testing.B) {
	cs, _ := CipherSuiteMLS128DHKEMX25519AES128GCMSHA256Ed25519.suite()
	secret := make([]byte, 32)
	b.Run("nextKey", func(b *testing.B) {
		tree, _ := newSecretTree(cs, secret, 64)
		tree.maxForward = 1 << 30
		for b.Loop() {
			k, _ := tree.nextKey(3, applicationRatchet)
			k.zero()
		}
	})
	b.Run("senderData", func(b *testing.B) {
		sd := cs.newSenderDataKeys(secret)
		ct := make([]byte, 100)
		for b.Loop() {
			sd.keyNonce(ct)
		}
	})
	b.Run("aesgcm", func(b *testing.B) {
		for b.Loop() {
			cs.aead.new(secret[:16])
		}
	})
	b.Run("aesgcmSeal", func(b *testing.B) {
		a, _ := cs.aead.new(secret[:16])
		pt := make([]byte, 180)
		out := make([]byte, 0, 300)
		for b.Loop() {
			a.Seal(out[:0], secret[:12], pt, secret)
		}
	})
	b.Run("sign", func(b *testing.B) {
		_, priv, _ := ed25519.GenerateKey(testRand(1))
		msg := make([]byte, 250)
		for b.Loop() {
			ed25519.Sign(priv, msg)
		}
	})
}
