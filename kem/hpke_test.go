package kem

import (
	"bytes"
	"crypto/hpke"
	"crypto/rand"
	"fmt"
	"io"
	"testing"
)

var allKDFs = []KDFID{KDFHKDFSHA256, KDFHKDFSHA384, KDFHKDFSHA512, KDFSHAKE128, KDFSHAKE256}
var allAEADs = []AEADID{AEADAES128GCM, AEADAES256GCM, AEADChaCha20Poly1305, AEADExportOnly}

// allKEMs lists every KEM the package implements.
func allKEMs() []KEM {
	return []KEM{DHKEMP256(), DHKEMP384(), DHKEMP521(), DHKEMX25519(), DHKEMX448(), XWing(), HybridX25519MLKEM768(),
		MLKEM512(), MLKEM768(), MLKEM1024(), MLKEM768P256(), MLKEM1024P384()}
}

// stdlibKEMs are the KEMs Go's crypto/hpke implements too: all but
// DHKEM(X448), ML-KEM-512 and qpchat's hybrid.
func stdlibKEMs() []KEM {
	return []KEM{DHKEMP256(), DHKEMP384(), DHKEMP521(), DHKEMX25519(), XWing(),
		MLKEM768(), MLKEM1024(), MLKEM768P256(), MLKEM1024P384()}
}

// TestDifferentialStdlib seals with this package and opens with Go's
// crypto/hpke and the reverse, for every KEM both implement and every
// KDF/AEAD pair, and compares exports and DeriveKeyPair (public and
// private key).
func TestDifferentialStdlib(t *testing.T) {
	for _, k := range stdlibKEMs() {
		std, err := hpke.NewKEM(k.ID())
		if err != nil {
			t.Fatal(err)
		}
		t.Run(fmt.Sprintf("kem=%04x/DeriveKeyPair", k.ID()), func(t *testing.T) {
			for range 4 {
				ikm := make([]byte, 1+mustRandByte(t))
				rand.Read(ikm)
				ours, err := k.DeriveKeyPair(ikm)
				if err != nil {
					t.Fatal(err)
				}
				theirs, err := std.DeriveKeyPair(ikm)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(ours.PublicKey().Bytes(), theirs.PublicKey().Bytes()) {
					t.Fatalf("DeriveKeyPair(%x): public keys differ", ikm)
				}
				theirsPriv, err := theirs.Bytes()
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(ours.Bytes(), theirsPriv) {
					t.Fatalf("DeriveKeyPair(%x): private keys %x and %x differ", ikm, ours.Bytes(), theirsPriv)
				}
			}
		})
		for _, kdfID := range allKDFs {
			for _, aeadID := range allAEADs {
				t.Run(fmt.Sprintf("kem=%04x/kdf=%04x/aead=%04x", k.ID(), uint16(kdfID), uint16(aeadID)), func(t *testing.T) {
					differential(t, k, std, Suite{KEM: k, KDF: kdfID, AEAD: aeadID})
				})
			}
		}
	}
}

func mustRandByte(t *testing.T) int {
	var b [1]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return int(b[0])
}

func differential(t *testing.T, k KEM, std hpke.KEM, s Suite) {
	stdKDF, err := hpke.NewKDF(uint16(s.KDF))
	if err != nil {
		t.Fatal(err)
	}
	stdAEAD, err := hpke.NewAEAD(uint16(s.AEAD))
	if err != nil {
		t.Fatal(err)
	}
	sk, err := k.GenerateKeyPair(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	stdSK, err := std.NewPrivateKey(sk.Bytes())
	if err != nil {
		t.Fatalf("crypto/hpke rejects our private key: %v", err)
	}
	if !bytes.Equal(stdSK.PublicKey().Bytes(), sk.PublicKey().Bytes()) {
		t.Fatal("public keys differ")
	}
	stdPK, err := std.NewPublicKey(sk.PublicKey().Bytes())
	if err != nil {
		t.Fatal(err)
	}
	info := []byte("differential info")

	// Ours → crypto/hpke.
	enc, sender, err := s.SetupBaseSender(rand.Reader, sk.PublicKey(), info)
	if err != nil {
		t.Fatal(err)
	}
	stdRecipient, err := hpke.NewRecipient(enc, stdSK, stdKDF, stdAEAD, info)
	if err != nil {
		t.Fatalf("crypto/hpke NewRecipient: %v", err)
	}
	// crypto/hpke → ours.
	stdEnc, stdSender, err := hpke.NewSender(stdPK, stdKDF, stdAEAD, info)
	if err != nil {
		t.Fatal(err)
	}
	receiver, err := s.SetupBaseReceiver(sk, stdEnc, info)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		aad := []byte(fmt.Sprintf("aad %d", i))
		pt := bytes.Repeat([]byte{byte(i)}, 10*i)
		if s.AEAD == AEADExportOnly {
			break
		}
		ct, err := sender.Seal(aad, pt)
		if err != nil {
			t.Fatal(err)
		}
		got, err := stdRecipient.Open(aad, ct)
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("crypto/hpke cannot open our message %d: %v", i, err)
		}
		ct, err = stdSender.Seal(aad, pt)
		if err != nil {
			t.Fatal(err)
		}
		got, err = receiver.Open(aad, ct)
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("cannot open crypto/hpke message %d: %v", i, err)
		}
	}
	for _, l := range []int{0, 1, 32, 200} {
		ours, err := sender.Export([]byte("ctx"), l)
		if err != nil {
			t.Fatal(err)
		}
		theirs, err := stdRecipient.Export("ctx", l)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ours, theirs) {
			t.Fatalf("export L=%d differs from crypto/hpke", l)
		}
		ours, err = receiver.Export([]byte("ctx"), l)
		if err != nil {
			t.Fatal(err)
		}
		theirs, err = stdSender.Export("ctx", l)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ours, theirs) {
			t.Fatalf("receiver export L=%d differs from crypto/hpke", l)
		}
	}
}

// TestRoundTripAllSuites runs single-shot Seal/Open for every KEM (X448 and
// the hybrid included, which crypto/hpke lacks) and checks the sizes.
func TestRoundTripAllSuites(t *testing.T) {
	for _, k := range allKEMs() {
		for _, aeadID := range allAEADs[:3] {
			s := Suite{KEM: k, KDF: KDFHKDFSHA256, AEAD: aeadID}
			sk, err := k.GenerateKeyPair(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			if len(sk.Bytes()) != k.PrivateKeySize() || len(sk.PublicKey().Bytes()) != k.PublicKeySize() {
				t.Fatalf("kem %04x: key sizes do not match Nsk/Npk", k.ID())
			}
			pt := []byte("hello, group")
			enc, ct, err := s.Seal(rand.Reader, sk.PublicKey(), []byte("info"), []byte("aad"), pt)
			if err != nil {
				t.Fatal(err)
			}
			if len(enc) != k.EncSize() {
				t.Fatalf("kem %04x: enc is %d bytes, want %d", k.ID(), len(enc), k.EncSize())
			}
			got, err := s.Open(sk, enc, []byte("info"), []byte("aad"), ct)
			if err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("kem %04x aead %04x: Open = %q, %v", k.ID(), uint16(aeadID), got, err)
			}
			if _, err := s.Open(sk, enc, []byte("other info"), []byte("aad"), ct); err == nil {
				t.Fatalf("kem %04x: Open with other info succeeded", k.ID())
			}
			if _, err := s.Open(sk, enc, []byte("info"), []byte("other aad"), ct); err == nil {
				t.Fatalf("kem %04x: Open with other aad succeeded", k.ID())
			}
			bad := bytes.Clone(ct)
			bad[0] ^= 1
			if _, err := s.Open(sk, enc, []byte("info"), []byte("aad"), bad); err == nil {
				t.Fatalf("kem %04x: Open of tampered ciphertext succeeded", k.ID())
			}
		}
	}
}

// TestDeterministic checks that GenerateKeyPair and Encap take all their
// randomness from the reader given (Go 1.26's crypto/ecdh GenerateKey would
// ignore it).
func TestDeterministic(t *testing.T) {
	for _, k := range allKEMs() {
		seed := bytes.Repeat([]byte{0x42}, 4096)
		sk1, err := k.GenerateKeyPair(bytes.NewReader(seed))
		if err != nil {
			t.Fatal(err)
		}
		sk2, err := k.GenerateKeyPair(bytes.NewReader(seed))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(sk1.Bytes(), sk2.Bytes()) {
			t.Fatalf("kem %04x: GenerateKeyPair not deterministic", k.ID())
		}
		ss1, enc1, err := k.Encap(bytes.NewReader(seed), sk1.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		ss2, enc2, err := k.Encap(bytes.NewReader(seed), sk1.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ss1, ss2) || !bytes.Equal(enc1, enc2) {
			t.Fatalf("kem %04x: Encap not deterministic", k.ID())
		}
		if _, _, err := k.Encap(bytes.NewReader(nil), sk1.PublicKey()); err == nil {
			t.Fatalf("kem %04x: Encap with an empty reader succeeded", k.ID())
		}
		if _, err := k.GenerateKeyPair(io.LimitReader(bytes.NewReader(seed), 3)); err == nil {
			t.Fatalf("kem %04x: GenerateKeyPair with a short reader succeeded", k.ID())
		}
	}
}

// TestContextRules checks the role and export-length rules of Context.
func TestContextRules(t *testing.T) {
	k := DHKEMX25519()
	s := Suite{KEM: k, KDF: KDFHKDFSHA256, AEAD: AEADAES128GCM}
	sk, err := k.GenerateKeyPair(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	enc, sender, err := s.SetupBaseSender(rand.Reader, sk.PublicKey(), nil)
	if err != nil {
		t.Fatal(err)
	}
	receiver, err := s.SetupBaseReceiver(sk, enc, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sender.Open(nil, nil); err == nil {
		t.Error("sender context opened")
	}
	if _, err := receiver.Seal(nil, nil); err == nil {
		t.Error("receiver context sealed")
	}
	if _, err := sender.Export(nil, 255*32+1); err == nil {
		t.Error("export beyond 255*Nh succeeded")
	}
	if _, err := sender.Export(nil, -1); err == nil {
		t.Error("negative export length succeeded")
	}
	// A failed Open must not advance the sequence number.
	ct0, _ := sender.Seal(nil, []byte("0"))
	if _, err := receiver.Open(nil, append(bytes.Clone(ct0), 0)); err == nil {
		t.Fatal("Open of a padded ciphertext succeeded")
	}
	if pt, err := receiver.Open(nil, ct0); err != nil || string(pt) != "0" {
		t.Fatalf("Open after a failure = %q, %v", pt, err)
	}
	// Wrong KEM, unknown KDF or AEAD.
	other, _ := DHKEMP256().GenerateKeyPair(rand.Reader)
	if _, _, err := s.SetupBaseSender(rand.Reader, other.PublicKey(), nil); err == nil {
		t.Error("sender accepted a key of another KEM")
	}
	if _, err := s.SetupBaseReceiver(other, enc, nil); err == nil {
		t.Error("receiver accepted a key of another KEM")
	}
	for _, bad := range []Suite{{KEM: k, KDF: 9, AEAD: 1}, {KEM: k, KDF: 1, AEAD: 9}, {KDF: 1, AEAD: 1}} {
		if _, _, err := bad.SetupBaseSender(rand.Reader, sk.PublicKey(), nil); err == nil {
			t.Errorf("suite %+v accepted", bad)
		}
	}
	// Sequence-number exhaustion.
	sender.seq = ^uint64(0)
	if _, err := sender.Seal(nil, nil); err == nil {
		t.Error("Seal at the message limit succeeded")
	}
}

// TestGenerateKeyPairRejection checks the rejection sampling of the NIST
// curves: out-of-range values are skipped, and a reader that only gives
// invalid values is an error, not a loop.
func TestGenerateKeyPairRejection(t *testing.T) {
	for _, k := range []KEM{DHKEMP256(), DHKEMP384(), DHKEMP521()} {
		n := k.PrivateKeySize()
		valid := bytes.Repeat([]byte{0x01}, n)
		// All-0xff is ≥ the group order (for P-521 after masking to 521 bits).
		stream := append(bytes.Repeat([]byte{0xff}, 2*n), valid...)
		sk, err := k.GenerateKeyPair(bytes.NewReader(stream))
		if err != nil {
			t.Fatalf("kem %04x: %v", k.ID(), err)
		}
		if !bytes.Equal(sk.Bytes(), valid) {
			t.Fatalf("kem %04x: got %x, want the first valid candidate", k.ID(), sk.Bytes())
		}
		if _, err := k.GenerateKeyPair(bytes.NewReader(make([]byte, 300*n))); err == nil {
			t.Fatalf("kem %04x: all-zero randomness gave a key", k.ID())
		}
	}
}

// TestSealWithInfo checks that sealing with a prepared info gives exactly
// the bytes of Seal with the same randomness, for every KDF (two-stage and
// one-stage) and a large info, that the result opens, and that an Info of
// another suite is refused.
func TestSealWithInfo(t *testing.T) {
	info := bytes.Repeat([]byte("encrypted group info "), 4000)[:0xffff]
	pt := []byte("group secrets")
	aad := []byte("aad")
	for _, k := range []KEM{DHKEMX25519(), HybridX25519MLKEM768()} {
		sk, err := k.GenerateKeyPair(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		for _, kdf := range allKDFs {
			s := Suite{KEM: k, KDF: kdf, AEAD: AEADAES128GCM}
			t.Run(fmt.Sprintf("kem=%04x/kdf=%04x", k.ID(), kdf), func(t *testing.T) {
				pi, err := s.PrepareInfo(info)
				if err != nil {
					t.Fatal(err)
				}
				seed := bytes.Repeat([]byte{7}, 4096)
				enc1, ct1, err := s.Seal(bytes.NewReader(seed), sk.PublicKey(), info, aad, pt)
				if err != nil {
					t.Fatal(err)
				}
				for range 2 { // the Info is reusable
					enc2, ct2, err := s.SealWithInfo(bytes.NewReader(seed), sk.PublicKey(), pi, aad, pt)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(enc1, enc2) || !bytes.Equal(ct1, ct2) {
						t.Fatal("SealWithInfo differs from Seal")
					}
				}
				got, err := s.Open(sk, enc1, info, aad, ct1)
				if err != nil || !bytes.Equal(got, pt) {
					t.Fatalf("Open = %q, %v", got, err)
				}
				other := Suite{KEM: k, KDF: kdf, AEAD: AEADChaCha20Poly1305}
				if _, _, err := other.SealWithInfo(rand.Reader, sk.PublicKey(), pi, aad, pt); err == nil {
					t.Fatal("SealWithInfo accepted an Info of another suite")
				}
				if _, _, err := s.SealWithInfo(rand.Reader, sk.PublicKey(), nil, aad, pt); err == nil {
					t.Fatal("SealWithInfo accepted a nil Info")
				}
			})
		}
	}
	if _, err := (Suite{KEM: DHKEMX25519(), KDF: KDFSHAKE128, AEAD: AEADAES128GCM}).PrepareInfo(make([]byte, 0x10000)); err == nil {
		t.Fatal("PrepareInfo accepted a one-stage info over 65535 bytes")
	}
}
