package kem

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/sha3"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

// updateKAT regenerates testdata/kem/hybrid-x25519-mlkem768.json. It was run
// once when the layout was fixed; the file is frozen since, and a change to
// it is a change of the wire format that breaks every stored key.
var updateKAT = flag.Bool("update-kat", false, "regenerate the frozen hybrid KEM known-answer file")

const katPath = "../testdata/kem/hybrid-x25519-mlkem768.json"

// hybridKAT is one known answer of the hybrid KEM: DeriveKeyPair(ikm), a
// derandomized Encap (randomness = X25519 ephemeral ‖ ML-KEM m), and the
// first HPKE message and an export of Suite{0xFA01, HKDF-SHA256, AES-128-GCM}
// with that encapsulation.
type hybridKAT struct {
	IKM             hexBytes `json:"ikm"`
	SK              hexBytes `json:"sk"`
	PK              hexBytes `json:"pk"`
	EncapRandomness hexBytes `json:"encap_randomness"`
	Enc             hexBytes `json:"enc"`
	SharedSecret    hexBytes `json:"shared_secret"`
	Info            hexBytes `json:"info"`
	AAD             hexBytes `json:"aad"`
	PT              hexBytes `json:"pt"`
	CT              hexBytes `json:"ct"`
	ExporterContext hexBytes `json:"exporter_context"`
	Export32        hexBytes `json:"export_32"`
}

type hexBytes []byte

func (h hexBytes) MarshalJSON() ([]byte, error) { return json.Marshal(hex.EncodeToString(h)) }
func (h *hexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := hex.DecodeString(s)
	*h = v
	return err
}

var katSuite = Suite{KEM: HybridX25519MLKEM768(), KDF: KDFHKDFSHA256, AEAD: AEADAES128GCM}

// computeKAT fills every output field of v from its inputs.
func computeKAT(t *testing.T, v *hybridKAT) {
	t.Helper()
	k := HybridX25519MLKEM768()
	sk, err := k.DeriveKeyPair(v.IKM)
	if err != nil {
		t.Fatal(err)
	}
	v.SK, v.PK = sk.Bytes(), sk.PublicKey().Bytes()
	ss, enc, err := k.Encap(bytes.NewReader(v.EncapRandomness), sk.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	v.Enc, v.SharedSecret = enc, ss
	enc2, ctx, err := katSuite.SetupBaseSender(bytes.NewReader(v.EncapRandomness), sk.PublicKey(), v.Info)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc2, enc) {
		t.Fatal("SetupBaseSender enc differs from Encap")
	}
	if v.CT, err = ctx.Seal(v.AAD, v.PT); err != nil {
		t.Fatal(err)
	}
	if v.Export32, err = ctx.Export(v.ExporterContext, 32); err != nil {
		t.Fatal(err)
	}
}

// modelDeriveSeed computes the hybrid DeriveKeyPair seed directly with
// crypto/hkdf, spelling out RFC 9180's labels.
func modelDeriveSeed(t *testing.T, ikm []byte) []byte {
	t.Helper()
	suiteID := []byte{'K', 'E', 'M', 0xFA, 0x01}
	labeledIKM := append(append(append([]byte("HPKE-v1"), suiteID...), "dkp_prk"...), ikm...)
	prk, err := hkdf.Extract(sha256.New, labeledIKM, nil)
	if err != nil {
		t.Fatal(err)
	}
	labeledInfo := append(append([]byte{0, 32}, "HPKE-v1"...), suiteID...)
	labeledInfo = append(labeledInfo, "sk"...)
	seed, err := hkdf.Expand(sha256.New, prk, string(labeledInfo), 32)
	if err != nil {
		t.Fatal(err)
	}
	return seed
}

// newKATInputs draws the inputs of n known answers from SHAKE128 over a
// fixed label, so the regenerated file is reproducible.
func newKATInputs(n int) []hybridKAT {
	x := sha3.NewSHAKE128()
	x.Write([]byte("qpchat hybrid X25519+ML-KEM-768 known answers"))
	read := func(l int) []byte { b := make([]byte, l); x.Read(b); return b }
	ikmLens := []int{32, 0, 64, 17}
	out := make([]hybridKAT, n)
	for i := range out {
		out[i] = hybridKAT{
			IKM:             read(ikmLens[i%len(ikmLens)]),
			EncapRandomness: read(64),
			Info:            read(i * 7),
			AAD:             read(i * 5),
			PT:              read(1 + i*40),
			ExporterContext: read(i * 3),
		}
	}
	return out
}

// TestHybridKnownAnswers recomputes every entry of the frozen file from its
// inputs and requires identical outputs, then checks Decap and Open of the
// frozen enc and ct.
func TestHybridKnownAnswers(t *testing.T) {
	if *updateKAT {
		vs := newKATInputs(4)
		for i := range vs {
			computeKAT(t, &vs[i])
		}
		b, err := json.MarshalIndent(vs, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(katPath), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(katPath, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", katPath)
	}
	b, err := os.ReadFile(katPath)
	if err != nil {
		t.Fatalf("frozen known answers missing: %v", err)
	}
	var frozen []hybridKAT
	if err := json.Unmarshal(b, &frozen); err != nil {
		t.Fatal(err)
	}
	if len(frozen) == 0 {
		t.Fatal("no known answers")
	}
	k := HybridX25519MLKEM768()
	for i, want := range frozen {
		got := hybridKAT{IKM: want.IKM, EncapRandomness: want.EncapRandomness, Info: want.Info,
			AAD: want.AAD, PT: want.PT, ExporterContext: want.ExporterContext}
		computeKAT(t, &got)
		gb, _ := json.Marshal(got)
		wb, _ := json.Marshal(want)
		if !bytes.Equal(gb, wb) {
			t.Fatalf("known answer %d differs:\n got %s\nwant %s", i, gb, wb)
		}
		// The frozen answers also agree with the standard-library model.
		if seed := modelDeriveSeed(t, want.IKM); !bytes.Equal(seed, want.SK) {
			t.Fatalf("known answer %d: model DeriveKeyPair seed = %x", i, seed)
		}
		model := newStdHybrid(t, want.SK)
		if !bytes.Equal(model.publicKey(), want.PK) {
			t.Fatalf("known answer %d: model public key differs", i)
		}
		if mss, menc := model.encap(t, want.EncapRandomness); !bytes.Equal(mss, want.SharedSecret) || !bytes.Equal(menc, want.Enc) {
			t.Fatalf("known answer %d: model Encap differs", i)
		}
		sk, err := k.NewPrivateKey(want.SK)
		if err != nil {
			t.Fatal(err)
		}
		ss, err := k.Decap(sk, want.Enc)
		if err != nil || !bytes.Equal(ss, want.SharedSecret) {
			t.Fatalf("known answer %d: Decap = %x, %v", i, ss, err)
		}
		pt, err := katSuite.Open(sk, want.Enc, want.Info, want.AAD, want.CT)
		if err != nil || !bytes.Equal(pt, want.PT) {
			t.Fatalf("known answer %d: Open = %x, %v", i, pt, err)
		}
	}
	t.Logf("%s: %d known answers passed", filepath.Base(katPath), len(frozen))
}
