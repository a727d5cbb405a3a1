package proto

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"qpchat/mls"
)

func TestNormalizeUser(t *testing.T) {
	for in, want := range map[string]string{
		"alice":        "alice",
		"Alice":        "alice",
		"ＡＬＩＣＥ":        "alice",  // fullwidth folds to ASCII
		"e\u0301clair": "éclair", // NFC
	} {
		got, err := NormalizeUser(in)
		if err != nil || got != want {
			t.Errorf("NormalizeUser(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "a b", "Ǆemal", "tab\there", "\xff", strings.Repeat("a", MaxUserLen+1)} {
		if got, err := NormalizeUser(bad); err == nil {
			t.Errorf("NormalizeUser(%q) = %q, want an error", bad, got)
		}
	}
}

// TestSignWithLabelMatchesMLS checks SignWithLabel against the mls
// package: a KeyPackage's signature is SignWithLabel("KeyPackageTBS",
// KeyPackageTBS) (RFC 9420, Section 10), so VerifyWithLabel must accept
// it over the KeyPackage's encoding minus the signature.
func TestSignWithLabelMatchesMLS(t *testing.T) {
	suite := mls.CipherSuiteMLS128DHKEMX25519AES128GCMSHA256Ed25519
	seed := make([]byte, 32)
	rand.Read(seed)
	signer, err := mls.ParseSignaturePrivateKey(suite, seed)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := mls.NewKeyPackage(rand.Reader, suite, mls.Credential{Type: mls.CredentialTypeBasic, Identity: []byte("x")}, signer, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := kp.KeyPackage.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	sig := kp.KeyPackage.Signature
	// The signature is the last field: a two-byte varint length (64 is
	// not below 64) and the 64 bytes.
	tbs := enc[:len(enc)-2-len(sig)]
	pub := kp.KeyPackage.LeafNode.SignatureKey
	if !VerifyWithLabel(pub, "KeyPackageTBS", tbs, sig) {
		t.Fatal("VerifyWithLabel refuses the mls package's KeyPackage signature")
	}
	if VerifyWithLabel(pub, "LeafNodeTBS", tbs, sig) {
		t.Fatal("VerifyWithLabel accepts a signature under another label")
	}
	// And the other way: our signature verifies where mls would look.
	priv := ed25519.NewKeyFromSeed(seed)
	if !bytes.Equal(SignWithLabel(priv, "KeyPackageTBS", tbs), sig) {
		t.Error("SignWithLabel differs from the mls package's signature (Ed25519 is deterministic)")
	}
}

func TestVarOpaqueEncoding(t *testing.T) {
	for _, n := range []int{0, 1, 63, 64, 16383, 16384, 70000} {
		v := bytes.Repeat([]byte{7}, n)
		enc := build(func(b *builder) { addVarOpaque(b, v) })
		s := cryptoString(enc)
		var got []byte
		if !readVarOpaque(&s, &got) || !bytes.Equal(got, v) || !s.Empty() {
			t.Errorf("opaque<V> of %d bytes does not round-trip", n)
		}
		wantPrefix := map[bool]int{true: 1}[n < 64] + map[bool]int{true: 2}[n >= 64 && n < 16384] + map[bool]int{true: 4}[n >= 16384]
		if len(enc)-n != wantPrefix {
			t.Errorf("opaque<V> of %d bytes has a %d-byte prefix, want %d", n, len(enc)-n, wantPrefix)
		}
	}
	// Non-minimal length encodings are refused (RFC 9420, Section 2.1.2).
	s := cryptoString([]byte{0x40, 0x01, 0xaa})
	var got []byte
	if readVarOpaque(&s, &got) {
		t.Error("a two-byte encoding of length 1 was accepted")
	}
}

func TestDeviceCertificateAndCredential(t *testing.T) {
	_, userKey, _ := ed25519.GenerateKey(rand.Reader)
	devPub, _, _ := ed25519.GenerateKey(rand.Reader)
	userPub := userKey.Public().(ed25519.PublicKey)
	cert := SignDeviceCert(userKey, "alice", devPub)
	if !VerifyDeviceCert(userPub, "alice", devPub, cert) {
		t.Fatal("a device certificate does not verify")
	}
	if VerifyDeviceCert(userPub, "bob", devPub, cert) {
		t.Error("a device certificate verifies for another user")
	}
	id := (&CredentialIdentity{User: "alice", DeviceID: DeviceID(devPub), Certificate: cert}).Marshal()
	if err := VerifyCredential(id, devPub, "alice", userPub); err != nil {
		t.Errorf("VerifyCredential: %v", err)
	}
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	if err := VerifyCredential(id, other, "alice", userPub); err == nil {
		t.Error("a credential verifies for another device key")
	}
	if err := VerifyCredential(id, devPub, "bob", userPub); err == nil {
		t.Error("a credential verifies for another user")
	}
	c, err := ParseCredentialIdentity(id)
	if err != nil || !bytes.Equal(c.Marshal(), id) {
		t.Errorf("credential identity does not round-trip: %v", err)
	}
}

func TestUserKeyAndBindingProofs(t *testing.T) {
	ek := bytes.Repeat([]byte{1}, 64)
	k1, _ := UserKey(ek)
	k2, _ := UserKey(ek)
	if !k1.Equal(k2) {
		t.Error("UserKey is not deterministic")
	}
	if k3, _ := UserKey(bytes.Repeat([]byte{2}, 64)); k1.Equal(k3) {
		t.Error("different export keys give the same user key")
	}
	cb, _ := ChannelBindingKey(bytes.Repeat([]byte{3}, 64))
	exp := bytes.Repeat([]byte{4}, 32)
	p := BindingProof(cb, RoleClient, exp)
	if !VerifyBindingProof(cb, RoleClient, exp, p) {
		t.Error("a binding proof does not verify")
	}
	if VerifyBindingProof(cb, RoleServer, exp, p) {
		t.Error("a client proof verifies as the server's")
	}
	if VerifyBindingProof(cb, RoleClient, bytes.Repeat([]byte{5}, 32), p) {
		t.Error("a proof verifies for another exporter")
	}
}

func TestCodeOf(t *testing.T) {
	e := Errorf(CodeStale, "commit: lost")
	if CodeOf(e) != CodeStale {
		t.Errorf("CodeOf(%v) = %q", e, CodeOf(e))
	}
	wire := errors.New("node.capnp:Session.commit: " + e.Error())
	if CodeOf(wire) != CodeStale {
		t.Errorf("CodeOf(%v) = %q", wire, CodeOf(wire))
	}
	if CodeOf(fmt.Errorf("wrapped: %w", e)) != CodeStale {
		t.Error("CodeOf misses a wrapped error")
	}
	if c := CodeOf(errors.New("qpchat nonsense: x qpchat limit: y")); c != CodeLimit {
		t.Errorf("CodeOf skips unknown codes wrongly: %q", c)
	}
	if CodeOf(errors.New("plain")) != "" || CodeOf(nil) != "" {
		t.Error("CodeOf finds a code where there is none")
	}
}

func FuzzParseCredentialIdentity(f *testing.F) {
	f.Add((&CredentialIdentity{User: "alice", Certificate: make([]byte, 64)}).Marshal())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCredentialIdentity(b)
		if err != nil {
			return
		}
		if !bytes.Equal(c.Marshal(), b) {
			t.Fatalf("credential identity %x re-encodes as %x", b, c.Marshal())
		}
	})
}

func FuzzNormalizeUser(f *testing.F) {
	for _, s := range []string{"alice", "ＡＬＩＣＥ", "e\u0301", "", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := NormalizeUser(s)
		if err != nil {
			return
		}
		n2, err := NormalizeUser(n)
		if err != nil || n2 != n {
			t.Fatalf("NormalizeUser is not idempotent: %q → %q → %q (%v)", s, n, n2, err)
		}
	})
}

// TestApproval: a record verifies for its user only, any change breaks
// it, and the parser accepts only the exact encoding.
func TestApproval(t *testing.T) {
	_, k, _ := ed25519.GenerateKey(nil)
	dev := bytes.Repeat([]byte{7}, 32)
	a := SignApproval(k, "alice", dev)
	if !a.Verify("alice") || a.Verify("bob") {
		t.Fatal("a fresh approval must verify for alice only")
	}
	raw := a.Marshal()
	if len(raw) != ApprovalLen {
		t.Fatalf("len(Marshal()) = %d, want %d", len(raw), ApprovalLen)
	}
	for i := range raw {
		b := bytes.Clone(raw)
		b[i] ^= 0x80
		if p, err := ParseApproval(b); err == nil && p.Verify("alice") {
			t.Errorf("flipping byte %d still gives a valid approval", i)
		}
	}
	if _, err := ParseApproval(append(bytes.Clone(raw), 0)); err == nil {
		t.Error("trailing byte accepted")
	}
}

func FuzzParseApproval(f *testing.F) {
	_, k, _ := ed25519.GenerateKey(nil)
	f.Add(SignApproval(k, "alice", bytes.Repeat([]byte{1}, 32)).Marshal())
	f.Add((&Approval{Device: make([]byte, 32), Approver: make([]byte, 32), Signature: make([]byte, 64)}).Marshal())
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0, 32})
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseApproval(b)
		if err != nil {
			if a != nil {
				t.Fatal("a failed parse returned a value")
			}
			return
		}
		if !bytes.Equal(a.Marshal(), b) {
			t.Fatalf("re-marshal differs:\n%x\n%x", a.Marshal(), b)
		}
		a.Verify("alice") // must not panic
	})
}
