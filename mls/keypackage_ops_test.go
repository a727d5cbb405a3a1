package mls

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

// TestNewKeyPackage creates KeyPackages for every simulation suite and
// checks that they validate (RFC 9420, Section 10.1), that the private keys
// match, that the same seed gives the same KeyPackage where the signature
// scheme is deterministic, and that the encoding of the private part
// round-trips.
func TestNewKeyPackage(t *testing.T) {
	for _, suite := range simSuites {
		t.Run(suiteName(suite), func(t *testing.T) {
			kp := newTestKeyPackage(t, testRand(1), suite, "member-a")
			if err := ValidateKeyPackage(&kp.KeyPackage, suite, testNow, testConfig().ValidateCredential); err != nil {
				t.Fatalf("ValidateKeyPackage: %v", err)
			}
			if err := kp.check(); err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(kp.KeyPackage.InitKey, kp.KeyPackage.LeafNode.EncryptionKey) {
				t.Error("init key equals encryption key")
			}
			again := newTestKeyPackage(t, testRand(1), suite, "member-a")
			a, _ := kp.Message()
			b, _ := again.Message()
			deterministic := suite != CipherSuiteMLS128DHKEMP256AES128GCMSHA256P256 // ECDSA signatures are randomized
			if deterministic && !bytes.Equal(a, b) {
				t.Error("the same seed gave different key packages")
			}
			if !bytes.Equal(kp.KeyPackage.InitKey, again.KeyPackage.InitKey) {
				t.Error("the same seed gave different init keys")
			}
			enc, err := kp.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			dec, err := UnmarshalKeyPackagePrivate(enc)
			if err != nil {
				t.Fatal(err)
			}
			enc2, err := dec.Marshal()
			if err != nil || !bytes.Equal(enc, enc2) {
				t.Errorf("KeyPackagePrivate round trip differs (%v)", err)
			}
			// A mismatched private key is refused.
			dec.InitPriv = bytes.Clone(dec.EncryptionPriv)
			bad, _ := dec.Marshal()
			if _, err := UnmarshalKeyPackagePrivate(bad); err == nil {
				t.Error("key package private with a mismatched init key accepted")
			}
		})
	}
}

// TestValidateKeyPackageRefusals checks the refusals of Section 10.1.
func TestValidateKeyPackageRefusals(t *testing.T) {
	suite := CipherSuiteMLS128DHKEMX25519AES128GCMSHA256Ed25519
	validate := testConfig().ValidateCredential
	rand := testRand(2)
	fresh := func() *KeyPackagePrivate { return newTestKeyPackage(t, rand, suite, "member-b") }

	if err := ValidateKeyPackage(&fresh().KeyPackage, suite, testNow.Add(91*24*time.Hour), validate); err == nil {
		t.Error("expired key package accepted")
	}
	if err := ValidateKeyPackage(&fresh().KeyPackage, suite, testNow.Add(-2*time.Hour), validate); err == nil {
		t.Error("not yet valid key package accepted")
	}
	kp := fresh()
	kp.KeyPackage.Signature[0] ^= 1
	if err := ValidateKeyPackage(&kp.KeyPackage, suite, testNow, validate); err == nil {
		t.Error("key package with a bad signature accepted")
	}
	mallory := newTestKeyPackage(t, rand, suite, "mallory")
	if err := ValidateKeyPackage(&mallory.KeyPackage, suite, testNow, validate); err == nil {
		t.Error("key package with a refused credential accepted")
	}
	if err := ValidateKeyPackage(&fresh().KeyPackage, suite, testNow, nil); err == nil {
		t.Error("key package accepted without a credential validator")
	}
}

// FuzzUnmarshalKeyPackagePrivate checks that decoding never panics and that
// a decoded value re-encodes to the same bytes.
func FuzzUnmarshalKeyPackagePrivate(f *testing.F) {
	for _, suite := range simSuites {
		kp := newTestKeyPackage(f, testRand(3), suite, "member-f")
		b, err := kp.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		kp, err := UnmarshalKeyPackagePrivate(data)
		if err != nil {
			if kp != nil {
				t.Fatal("error with a partial value")
			}
			return
		}
		again, err := kp.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, data) {
			t.Fatal("decoded key package private re-encodes differently")
		}
	})
}

// TestBatchVerifyKeyPackages checks the batch verification of the Adds of
// a commit: it accepts valid KeyPackages, refuses a batch with one bad
// signature of either kind, and a commit adding that batch still fails
// (verified one by one) while the same commit without it succeeds.
func TestBatchVerifyKeyPackages(t *testing.T) {
	suite := CipherSuiteMLS128DHKEMX25519AES128GCMSHA256Ed25519
	cs, err := suite.suite()
	if err != nil {
		t.Fatal(err)
	}
	rand := testRand(31)
	var kps []*KeyPackage
	var msgs [][]byte
	for i := range 24 {
		kp := newTestKeyPackage(t, rand, suite, fmt.Sprintf("member-%d", i+1))
		kps = append(kps, &kp.KeyPackage)
		msgs = append(msgs, kpMessage(t, kp))
	}
	if !batchVerifyKeyPackages(cs, kps) {
		t.Fatal("valid KeyPackages refused")
	}
	if batchVerifyKeyPackages(cs, kps[:1]) {
		t.Error("a single KeyPackage is batched")
	}
	// Enough for several goroutines when GOMAXPROCS > 1, with a bad
	// signature in the last share.
	last := *kps[len(kps)-1]
	last.Signature = bytes.Clone(last.Signature)
	last.Signature[0] ^= 1
	if batchVerifyKeyPackages(cs, append(kps[:len(kps)-1:len(kps)-1], &last)) {
		t.Error("a bad signature in the last share is accepted")
	}
	kps, msgs = kps[:5], msgs[:5]
	for _, leafSig := range []bool{false, true} {
		bad := *kps[2]
		if leafSig {
			bad.LeafNode.Signature = bytes.Clone(bad.LeafNode.Signature)
			bad.LeafNode.Signature[5] ^= 1
		} else {
			bad.Signature = bytes.Clone(bad.Signature)
			bad.Signature[5] ^= 1
		}
		mixed := []*KeyPackage{kps[0], kps[1], &bad, kps[3], kps[4]}
		if batchVerifyKeyPackages(cs, mixed) {
			t.Errorf("leaf signature %v: a batch with a bad signature is accepted", leafSig)
		}
		badMsg, err := (&MLSMessage{WireFormat: WireFormatKeyPackage, KeyPackage: &bad}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		g, err := CreateGroup(rand, testConfig(), []byte("batch group"), newTestKeyPackage(t, rand, suite, "member-0"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := g.Add(rand, [][]byte{msgs[0], msgs[1], badMsg, msgs[3], msgs[4]}, testNow); err == nil {
			t.Errorf("leaf signature %v: a commit adding a KeyPackage with a bad signature is made", leafSig)
		}
		if _, err := g.Add(rand, [][]byte{msgs[0], msgs[1], msgs[3], msgs[4]}, testNow); err != nil {
			t.Errorf("leaf signature %v: the valid KeyPackages alone: %v", leafSig, err)
		}
	}
}
