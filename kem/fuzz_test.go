package kem

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"qpchat/internal/vectors"
)

// fuzzKEM picks the KEM a fuzz input is for from its first byte.
func fuzzKEM(b byte) KEM {
	ks := allKEMs()
	return ks[int(b)%len(ks)]
}

// fuzzKeys returns a deterministic key pair of every KEM, with its index.
func fuzzKeys(f *testing.F) []PrivateKey {
	var out []PrivateKey
	for i, k := range allKEMs() {
		sk, err := k.DeriveKeyPair([]byte{byte(i), 'f', 'u', 'z', 'z'})
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, sk)
	}
	return out
}

// katSeeds returns the frozen hybrid known answers, which seed the corpus.
func katSeeds(f *testing.F) []hybridKAT {
	b, err := os.ReadFile(katPath)
	if err != nil {
		f.Fatal(err)
	}
	var vs []hybridKAT
	if err := json.Unmarshal(b, &vs); err != nil {
		f.Fatal(err)
	}
	return vs
}

func hybridIndex() byte {
	i, ok := kemIndex(KEMHybridX25519MLKEM768)
	if !ok {
		panic("hybrid KEM missing")
	}
	return i
}

// kemIndex is the fuzz selector byte of the KEM with HPKE id id.
func kemIndex(id uint16) (byte, bool) {
	for i, k := range allKEMs() {
		if k.ID() == id {
			return byte(i), true
		}
	}
	return 0, false
}

// pqVectorSeeds returns the hpke-pq.json entries (keys and enc of every
// KEM) when the vector folder is present, to seed the corpus; without it
// the derived keys of fuzzKeys still seed every KEM.
func pqVectorSeeds() []hpkeVector {
	dir := os.Getenv("QPCHAT_HPKE_VECTORS")
	if dir == "" {
		root := vectors.ModuleRoot()
		if root == "" {
			return nil
		}
		dir = filepath.Join(filepath.Dir(root), "shared", "hpke-test-vectors")
	}
	b, err := os.ReadFile(filepath.Join(dir, "hpke-pq.json"))
	if err != nil {
		return nil
	}
	var vs []hpkeVector
	if json.Unmarshal(b, &vs) != nil {
		return nil
	}
	return vs
}

// FuzzNewPublicKey: parsing never panics, and a parsed key re-serializes to
// the identical bytes.
func FuzzNewPublicKey(f *testing.F) {
	for i, sk := range fuzzKeys(f) {
		f.Add(byte(i), sk.PublicKey().Bytes())
	}
	for _, v := range katSeeds(f) {
		f.Add(hybridIndex(), []byte(v.PK))
	}
	for _, v := range pqVectorSeeds() {
		if i, ok := kemIndex(v.KEM); ok {
			f.Add(i, []byte(v.PkRm))
		}
	}
	f.Fuzz(func(t *testing.T, which byte, b []byte) {
		k := fuzzKEM(which)
		pk, err := k.NewPublicKey(b)
		if err != nil {
			return
		}
		if !bytes.Equal(pk.Bytes(), b) {
			t.Fatalf("kem %04x: public key re-serializes as %x, parsed %x", k.ID(), pk.Bytes(), b)
		}
		if pk.KEM().ID() != k.ID() {
			t.Fatal("public key reports another KEM")
		}
	})
}

// FuzzNewPrivateKey: parsing never panics; a parsed key re-serializes to the
// same bytes (clamped for X25519 and X448, RFC 9180, Section 7.1.2) and
// parses again to the same public key.
func FuzzNewPrivateKey(f *testing.F) {
	for i, sk := range fuzzKeys(f) {
		f.Add(byte(i), sk.Bytes())
	}
	for _, v := range katSeeds(f) {
		f.Add(hybridIndex(), []byte(v.SK))
	}
	for _, v := range pqVectorSeeds() {
		if i, ok := kemIndex(v.KEM); ok {
			f.Add(i, []byte(v.SkRm))
		}
	}
	f.Fuzz(func(t *testing.T, which byte, b []byte) {
		k := fuzzKEM(which)
		sk, err := k.NewPrivateKey(b)
		if err != nil {
			return
		}
		if want := wantPrivateBytes(k.ID(), b); !bytes.Equal(sk.Bytes(), want) {
			t.Fatalf("kem %04x: private key re-serializes as %x, want %x", k.ID(), sk.Bytes(), want)
		}
		sk2, err := k.NewPrivateKey(sk.Bytes())
		if err != nil {
			t.Fatalf("kem %04x: serialized private key does not parse: %v", k.ID(), err)
		}
		if !bytes.Equal(sk2.PublicKey().Bytes(), sk.PublicKey().Bytes()) {
			t.Fatalf("kem %04x: re-parsed private key has another public key", k.ID())
		}
		if _, err := k.NewPublicKey(sk.PublicKey().Bytes()); err != nil {
			t.Fatalf("kem %04x: derived public key does not parse: %v", k.ID(), err)
		}
	})
}

// FuzzDecap: Decap of arbitrary bytes never panics, refuses wrong lengths
// and otherwise returns Nsecret bytes.
func FuzzDecap(f *testing.F) {
	keys := fuzzKeys(f)
	for i, sk := range keys {
		_, enc, err := sk.KEM().Encap(bytes.NewReader(bytes.Repeat([]byte{byte(i + 1)}, 256)), sk.PublicKey())
		if err != nil {
			f.Fatal(err)
		}
		f.Add(byte(i), enc)
	}
	for _, v := range katSeeds(f) {
		f.Add(hybridIndex(), []byte(v.Enc))
	}
	for _, v := range pqVectorSeeds() {
		if i, ok := kemIndex(v.KEM); ok {
			f.Add(i, []byte(v.Enc))
		}
	}
	f.Fuzz(func(t *testing.T, which byte, enc []byte) {
		sk := keys[int(which)%len(keys)]
		k := sk.KEM()
		ss, err := k.Decap(sk, enc)
		if len(enc) != k.EncSize() {
			if err == nil {
				t.Fatalf("kem %04x: Decap accepted %d bytes", k.ID(), len(enc))
			}
			return
		}
		if err == nil && len(ss) != k.SharedSecretSize() {
			t.Fatalf("kem %04x: secret is %d bytes", k.ID(), len(ss))
		}
	})
}
