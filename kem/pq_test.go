package kem

import (
	"bytes"
	"crypto/ecdh"
	"crypto/mlkem"
	"crypto/mlkem/mlkemtest"
	"crypto/rand"
	"crypto/sha3"
	"fmt"
	"testing"
)

// pqKEMs are the KEMs of draft-ietf-hpke-pq added beside X-Wing.
func pqKEMs() []KEM {
	return []KEM{MLKEM512(), MLKEM768(), MLKEM1024(), MLKEM768P256(), MLKEM1024P384()}
}

func nistHybrids() []*nistHybridKEM { return []*nistHybridKEM{mlkem768P256KEM, mlkem1024P384KEM} }

// stdModel is an independent model of the draft-ietf-hpke-pq KEMs built on
// crypto/mlkem (with mlkemtest for the derandomized encapsulation),
// crypto/ecdh and crypto/sha3, following crypto/hpke's structure.
type stdModel struct {
	id     uint16
	ekSize int
	// newDK and encap wrap the ML-KEM-768 or ML-KEM-1024 API.
	newDK   func(t *testing.T, seed []byte) (ek []byte, decap func(ct []byte) []byte)
	encap   func(t *testing.T, ek, m []byte) (ss, ct []byte)
	curve   ecdh.Curve // nil for pure ML-KEM
	nscalar int
	label   string
}

func model768(t *testing.T, seed []byte) ([]byte, func([]byte) []byte) {
	dk, err := mlkem.NewDecapsulationKey768(seed)
	if err != nil {
		t.Fatal(err)
	}
	return dk.EncapsulationKey().Bytes(), func(ct []byte) []byte {
		ss, err := dk.Decapsulate(ct)
		if err != nil {
			t.Fatal(err)
		}
		return ss
	}
}

func model1024(t *testing.T, seed []byte) ([]byte, func([]byte) []byte) {
	dk, err := mlkem.NewDecapsulationKey1024(seed)
	if err != nil {
		t.Fatal(err)
	}
	return dk.EncapsulationKey().Bytes(), func(ct []byte) []byte {
		ss, err := dk.Decapsulate(ct)
		if err != nil {
			t.Fatal(err)
		}
		return ss
	}
}

func modelEncap768(t *testing.T, ek, m []byte) ([]byte, []byte) {
	k, err := mlkem.NewEncapsulationKey768(ek)
	if err != nil {
		t.Fatal(err)
	}
	ss, ct, err := mlkemtest.Encapsulate768(k, m)
	if err != nil {
		t.Fatal(err)
	}
	return ss, ct
}

func modelEncap1024(t *testing.T, ek, m []byte) ([]byte, []byte) {
	k, err := mlkem.NewEncapsulationKey1024(ek)
	if err != nil {
		t.Fatal(err)
	}
	ss, ct, err := mlkemtest.Encapsulate1024(k, m)
	if err != nil {
		t.Fatal(err)
	}
	return ss, ct
}

var stdModels = []stdModel{
	{id: KEMMLKEM768, ekSize: mlkem.EncapsulationKeySize768, newDK: model768, encap: modelEncap768},
	{id: KEMMLKEM1024, ekSize: mlkem.EncapsulationKeySize1024, newDK: model1024, encap: modelEncap1024},
	{id: KEMMLKEM768P256, ekSize: mlkem.EncapsulationKeySize768, newDK: model768, encap: modelEncap768,
		curve: ecdh.P256(), nscalar: 32, label: "MLKEM768-P256"},
	{id: KEMMLKEM1024P384, ekSize: mlkem.EncapsulationKeySize1024, newDK: model1024, encap: modelEncap1024,
		curve: ecdh.P384(), nscalar: 48, label: "MLKEM1024-P384"},
}

// keyFromSeed returns the model's public key and decapsulation function for
// a private key: the 64-byte seed for pure ML-KEM, otherwise the 32-byte
// hybrid seed expanded with SHAKE256.
func (m *stdModel) keyFromSeed(t *testing.T, seed []byte) (pk []byte, decap func(enc []byte) []byte) {
	if m.curve == nil {
		return m.newDK(t, seed)
	}
	h := sha3.NewSHAKE256()
	h.Write(seed)
	mlSeed := make([]byte, 64)
	h.Read(mlSeed)
	ek, dec := m.newDK(t, mlSeed)
	var sk *ecdh.PrivateKey
	for sk == nil {
		c := make([]byte, m.nscalar)
		h.Read(c)
		sk, _ = m.curve.NewPrivateKey(c)
	}
	pkT := sk.PublicKey().Bytes()
	return append(bytes.Clone(ek), pkT...), func(enc []byte) []byte {
		ctT := enc[len(enc)-len(pkT):]
		pe, err := m.curve.NewPublicKey(ctT)
		if err != nil {
			t.Fatal(err)
		}
		ssT, err := sk.ECDH(pe)
		if err != nil {
			t.Fatal(err)
		}
		return m.combine(dec(enc[:len(enc)-len(pkT)]), ssT, ctT, pkT)
	}
}

func (m *stdModel) combine(ssPQ, ssT, ctT, pkT []byte) []byte {
	h := sha3.New256()
	for _, b := range [][]byte{ssPQ, ssT, ctT, pkT, []byte(m.label)} {
		h.Write(b)
	}
	return h.Sum(nil)
}

// encapFirst is the model's derandomized Encap for randomness whose first
// scalar candidate is valid.
func (m *stdModel) encapFirst(t *testing.T, pk, random []byte) (ss, enc []byte) {
	if m.curve == nil {
		return m.encap(t, pk, random)
	}
	ssPQ, ct := m.encap(t, pk[:m.ekSize], random[:32])
	skE, err := m.curve.NewPrivateKey(random[32 : 32+m.nscalar])
	if err != nil {
		t.Fatal(err)
	}
	pkT, err := m.curve.NewPublicKey(pk[m.ekSize:])
	if err != nil {
		t.Fatal(err)
	}
	ssT, err := skE.ECDH(pkT)
	if err != nil {
		t.Fatal(err)
	}
	ctT := skE.PublicKey().Bytes()
	return m.combine(ssPQ, ssT, ctT, pk[m.ekSize:]), append(ct, ctT...)
}

// TestPQMatchesStdlibModel cross-checks key expansion, derandomized Encap
// and Decap (implicit rejection included) of ML-KEM-768/1024 and the
// NIST-curve hybrids against the model on crypto/mlkem and crypto/ecdh,
// with random seeds and randomness (the vectors fix one of each).
func TestPQMatchesStdlibModel(t *testing.T) {
	for _, m := range stdModels {
		k, err := KEMByID(m.id)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(fmt.Sprintf("kem=%04x", m.id), func(t *testing.T) {
			for range 4 {
				seed := make([]byte, k.PrivateKeySize())
				rand.Read(seed)
				sk, err := k.NewPrivateKey(seed)
				if err != nil {
					t.Fatal(err)
				}
				pk, decap := m.keyFromSeed(t, seed)
				if !bytes.Equal(sk.PublicKey().Bytes(), pk) {
					t.Fatal("public key differs from the model")
				}
				random := make([]byte, 32+3*m.nscalar) // enough for P-256's three candidates
				rand.Read(random)
				ss, enc, err := k.Encap(bytes.NewReader(random), sk.PublicKey())
				if err != nil {
					t.Fatal(err)
				}
				wantSS, wantEnc := m.encapFirst(t, pk, random)
				if !bytes.Equal(enc, wantEnc) || !bytes.Equal(ss, wantSS) {
					t.Fatal("Encap differs from the model")
				}
				enc[3] ^= 0x10 // in the ML-KEM ciphertext: implicit rejection
				got, err := k.Decap(sk, enc)
				if err != nil {
					t.Fatal(err)
				}
				if want := decap(enc); !bytes.Equal(got, want) || bytes.Equal(got, ss) {
					t.Fatal("Decap of a modified ML-KEM ciphertext differs from the model")
				}
			}
		})
	}
}

// TestPQRejectsBadMLKEMKey checks FIPS 203's encapsulation-key check
// (Section 7.2) in every new KEM: a coefficient ≥ q is refused (and, where
// crypto/mlkem has the parameter set, refused there too).
func TestPQRejectsBadMLKEMKey(t *testing.T) {
	for _, k := range pqKEMs() {
		sk, err := k.GenerateKeyPair(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		for _, coeff := range []int{0, 1, 100, 255} {
			pk := sk.PublicKey().Bytes()
			// Coefficients are packed as 12-bit little-endian pairs in 3
			// bytes; set coefficient 2*coeff to 4095 > q = 3329.
			pk[3*coeff] = 0xff
			pk[3*coeff+1] |= 0x0f
			var stdErr error
			switch k.ID() {
			case KEMMLKEM768, KEMMLKEM768P256:
				_, stdErr = mlkem.NewEncapsulationKey768(pk[:mlkem.EncapsulationKeySize768])
			case KEMMLKEM1024, KEMMLKEM1024P384:
				_, stdErr = mlkem.NewEncapsulationKey1024(pk[:mlkem.EncapsulationKeySize1024])
			default:
				stdErr = fmt.Errorf("no crypto/mlkem for kem %04x", k.ID())
			}
			if stdErr == nil {
				t.Fatalf("kem %04x: test key is accepted by crypto/mlkem; it is not invalid", k.ID())
			}
			if _, err := k.NewPublicKey(pk); err == nil {
				t.Errorf("kem %04x: NewPublicKey accepted an ML-KEM key with coefficient %d ≥ q", k.ID(), 2*coeff)
			}
		}
		if _, err := k.NewPublicKey(sk.PublicKey().Bytes()); err != nil {
			t.Errorf("kem %04x: genuine key refused: %v", k.ID(), err)
		}
	}
}

// badPoints returns encodings of the curve part that crypto/ecdh must
// refuse: off the curve, a compressed-point tag, tag 0 (the identity's
// encoding), an x coordinate ≥ p, and all zeros.
func badPoints(t *testing.T, k *nistHybridKEM, good []byte) map[string][]byte {
	t.Helper()
	offCurve := bytes.Clone(good)
	offCurve[len(offCurve)-1] ^= 1
	compressedTag := bytes.Clone(good)
	compressedTag[0] = 0x02
	zeroTag := bytes.Clone(good)
	zeroTag[0] = 0x00
	// An all-ones x coordinate is ≥ p for both P-256 and P-384.
	xTooBig := bytes.Clone(good)
	for i := 1; i <= k.scalarSize; i++ {
		xTooBig[i] = 0xff
	}
	return map[string][]byte{
		"off the curve":  offCurve,
		"compressed tag": compressedTag,
		"tag 0":          zeroTag,
		"x ≥ p":          xTooBig,
		"all zero":       make([]byte, len(good)),
	}
}

// TestNISTHybridRejectsBadPoints checks point validation in public keys
// (NewPublicKey) and ephemerals (Decap).
func TestNISTHybridRejectsBadPoints(t *testing.T) {
	for _, k := range nistHybrids() {
		sk, _, enc := keyAndEncap(t, k)
		pk := sk.PublicKey().Bytes()
		for name, bad := range badPoints(t, k, pk[k.ml.ekSize:]) {
			if _, err := k.curve.NewPublicKey(bad); err == nil {
				t.Fatalf("%s: crypto/ecdh accepts the %s point; the test is wrong", k.label, name)
			}
			p := append(bytes.Clone(pk[:k.ml.ekSize]), bad...)
			if _, err := k.NewPublicKey(p); err == nil {
				t.Errorf("%s: NewPublicKey accepted a %s point", k.label, name)
			}
			e := append(bytes.Clone(enc[:k.ml.ctSize]), bad...)
			if _, err := k.Decap(sk, e); err == nil {
				t.Errorf("%s: Decap accepted a %s ephemeral", k.label, name)
			}
		}
	}
}

// TestPQTamper checks that a changed bit anywhere in enc makes the HPKE
// open fail; in the ML-KEM ciphertext it is not an error but another secret.
func TestPQTamper(t *testing.T) {
	for _, k := range pqKEMs() {
		s := Suite{KEM: k, KDF: KDFHKDFSHA256, AEAD: AEADAES128GCM}
		sk, err := k.GenerateKeyPair(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		enc, ct, err := s.Seal(rand.Reader, sk.PublicKey(), []byte("info"), nil, []byte("hello"))
		if err != nil {
			t.Fatal(err)
		}
		ss, err := k.Decap(sk, enc)
		if err != nil {
			t.Fatal(err)
		}
		ctSize := k.EncSize()
		if h, ok := k.(*nistHybridKEM); ok {
			ctSize = h.ml.ctSize
		}
		for _, pos := range []int{0, 1, ctSize / 2, ctSize - 1, ctSize, k.EncSize() - 1} {
			if pos >= k.EncSize() {
				continue
			}
			bad := bytes.Clone(enc)
			bad[pos] ^= 0x01
			if pos < ctSize {
				got, err := k.Decap(sk, bad)
				if err != nil {
					t.Fatalf("kem %04x byte %d: Decap of a tampered ML-KEM ciphertext failed: %v", k.ID(), pos, err)
				}
				if bytes.Equal(got, ss) {
					t.Fatalf("kem %04x byte %d: tampered ML-KEM ciphertext gave the same secret", k.ID(), pos)
				}
			}
			if _, err := s.Open(sk, bad, []byte("info"), nil, ct); err == nil {
				t.Fatalf("kem %04x byte %d: HPKE open of a tampered enc succeeded", k.ID(), pos)
			}
		}
	}
}

// TestNISTHybridScalarCandidates checks the rejection sampling of the
// ephemeral scalar in Encap and of the key scalar: candidates 0 and ≥ n are
// skipped, and when none is valid Encap fails. Encap reads exactly
// 32 + encapCandidates·Nscalar bytes (128 for P-256, 80 for P-384).
func TestNISTHybridScalarCandidates(t *testing.T) {
	for _, k := range nistHybrids() {
		sk, err := k.GenerateKeyPair(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		n := k.scalarSize
		m := bytes.Repeat([]byte{0x5a}, 32)
		valid := bytes.Repeat([]byte{0x01}, n)
		tooBig := bytes.Repeat([]byte{0xff}, n)
		zero := make([]byte, n)
		need := 32 + k.encapCandidates*n
		if want := map[uint16]int{KEMMLKEM768P256: 128, KEMMLKEM1024P384: 80}[k.id]; need != want {
			t.Fatalf("%s: Encap randomness is %d bytes, want %d", k.label, need, want)
		}

		// Reference: the valid candidate first.
		ref := append(bytes.Clone(m), valid...)
		ref = append(ref, make([]byte, need-len(ref))...)
		ssRef, encRef, err := k.Encap(bytes.NewReader(ref), sk.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := k.Encap(bytes.NewReader(ref[:need-1]), sk.PublicKey()); err == nil {
			t.Fatalf("%s: Encap with %d bytes of randomness succeeded", k.label, need-1)
		}
		if k.encapCandidates == 3 {
			for name, first := range map[string][][]byte{
				"≥ n, then valid":  {tooBig, valid, zero},
				"zero, ≥ n, valid": {zero, tooBig, valid},
			} {
				r := bytes.Clone(m)
				for _, c := range first {
					r = append(r, c...)
				}
				ss, enc, err := k.Encap(bytes.NewReader(r), sk.PublicKey())
				if err != nil {
					t.Fatalf("%s %s: %v", k.label, name, err)
				}
				if !bytes.Equal(ss, ssRef) || !bytes.Equal(enc, encRef) {
					t.Fatalf("%s %s: the first valid candidate was not used", k.label, name)
				}
			}
		}
		allBad := bytes.Clone(m)
		for i := range k.encapCandidates {
			allBad = append(allBad, [][]byte{tooBig, zero}[i%2]...)
		}
		// More randomness after the candidates must not be read.
		allBad = append(allBad, valid...)
		if _, _, err := k.Encap(bytes.NewReader(allBad), sk.PublicKey()); err == nil {
			t.Fatalf("%s: Encap with no valid candidate succeeded", k.label)
		}

		// Key expansion reads candidates from the SHAKE stream until one is
		// valid; the same function with a crafted stream.
		stream := append(append(bytes.Clone(tooBig), zero...), valid...)
		got, err := k.scalarFromCandidates(bytes.NewReader(stream), maxKeyCandidates)
		if err != nil || !bytes.Equal(got.Bytes(), valid) {
			t.Fatalf("%s: scalarFromCandidates = %v, %v; want the third candidate", k.label, got, err)
		}
		if _, err := k.scalarFromCandidates(bytes.NewReader(stream), 2); err == nil {
			t.Fatalf("%s: scalarFromCandidates accepted no valid candidate within the limit", k.label)
		}
	}
}
