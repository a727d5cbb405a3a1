package kem

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/mlkem"
	"crypto/mlkem/mlkemtest"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha3"
	"math/big"
	"strings"

	"github.com/cloudflare/circl/dh/x25519"
	"github.com/cloudflare/circl/kem/xwing"
	"testing"
)

// stdHybrid is an independent model of the hybrid KEM built only from the
// standard library (crypto/ecdh, crypto/mlkem, crypto/hkdf), following
// DESIGN.md's layout; the circl-based implementation must agree with it.
type stdHybrid struct {
	x  *ecdh.PrivateKey
	dk *mlkem.DecapsulationKey768
}

func newStdHybrid(t *testing.T, seed []byte) *stdHybrid {
	t.Helper()
	expanded := make([]byte, 96)
	h := sha3.NewSHAKE256()
	h.Write(seed)
	h.Read(expanded)
	x, err := ecdh.X25519().NewPrivateKey(expanded[:32])
	if err != nil {
		t.Fatal(err)
	}
	dk, err := mlkem.NewDecapsulationKey768(expanded[32:])
	if err != nil {
		t.Fatal(err)
	}
	return &stdHybrid{x: x, dk: dk}
}

func (s *stdHybrid) publicKey() []byte {
	return append(s.x.PublicKey().Bytes(), s.dk.EncapsulationKey().Bytes()...)
}

func stdCombine(t *testing.T, xss, mss []byte) []byte {
	t.Helper()
	ss, err := hkdf.Key(sha256.New, append(bytes.Clone(xss), mss...), nil, "quicnprotochat-hybrid-v1", 32)
	if err != nil {
		t.Fatal(err)
	}
	return ss
}

// encap is the model's derandomized Encap: r = X25519 ephemeral (32) ‖ m (32).
func (s *stdHybrid) encap(t *testing.T, r []byte) (ss, enc []byte) {
	t.Helper()
	eph, err := ecdh.X25519().NewPrivateKey(r[:32])
	if err != nil {
		t.Fatal(err)
	}
	xss, err := eph.ECDH(s.x.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	mss, ct, err := mlkemtest.Encapsulate768(s.dk.EncapsulationKey(), r[32:64])
	if err != nil {
		t.Fatal(err)
	}
	return stdCombine(t, xss, mss), append(eph.PublicKey().Bytes(), ct...)
}

// TestHybridMatchesStdlibModel cross-checks the circl ML-KEM-768 inside the
// hybrid against crypto/mlkem: key expansion, derandomized Encap, and Decap
// of encapsulations made by crypto/mlkem's own randomized Encapsulate.
func TestHybridMatchesStdlibModel(t *testing.T) {
	k := HybridX25519MLKEM768()
	for range 8 {
		seed := make([]byte, 32)
		rand.Read(seed)
		sk, err := k.NewPrivateKey(seed)
		if err != nil {
			t.Fatal(err)
		}
		model := newStdHybrid(t, seed)
		if !bytes.Equal(sk.PublicKey().Bytes(), model.publicKey()) {
			t.Fatal("public key differs from the crypto/mlkem model")
		}
		r := make([]byte, 64)
		rand.Read(r)
		ss, enc, err := k.Encap(bytes.NewReader(r), sk.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		wantSS, wantEnc := model.encap(t, r)
		if !bytes.Equal(enc, wantEnc) || !bytes.Equal(ss, wantSS) {
			t.Fatal("Encap differs from the crypto/mlkem model")
		}
		// A randomized crypto/mlkem encapsulation, decapsulated by circl.
		mss, ct := model.dk.EncapsulationKey().Encapsulate()
		eph, _ := ecdh.X25519().GenerateKey(rand.Reader)
		xss, _ := eph.ECDH(model.x.PublicKey())
		got, err := k.Decap(sk, append(eph.PublicKey().Bytes(), ct...))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, stdCombine(t, xss, mss)) {
			t.Fatal("Decap of a crypto/mlkem encapsulation differs from the model")
		}
	}
}

// x25519Canonical returns the little-endian 32-byte encoding of u mod p.
func x25519Encode(u *big.Int) []byte {
	p := x25519P()
	v := new(big.Int).Mod(u, p).Bytes()
	out := make([]byte, 32)
	for i, c := range v {
		out[len(v)-1-i] = c
	}
	return out
}

func x25519Decode(b []byte) *big.Int {
	be := make([]byte, 32)
	for i, c := range b {
		be[31-i] = c
	}
	return new(big.Int).SetBytes(be)
}

func x25519P() *big.Int {
	p := new(big.Int).Lsh(big.NewInt(1), 255)
	return p.Sub(p, big.NewInt(19))
}

// badX25519 lists X25519 values the hybrid KEM must refuse, with why.
func badX25519() map[string][]byte {
	p := x25519P()
	le := func(v *big.Int) []byte {
		be := v.FillBytes(make([]byte, 32))
		for i, j := 0, 31; i < j; i, j = i+1, j-1 {
			be[i], be[j] = be[j], be[i]
		}
		return be
	}
	highBit := x25519Encode(big.NewInt(9))
	highBit[31] |= 0x80
	return map[string][]byte{
		"u=0 (low order)":           le(big.NewInt(0)),
		"u=1 (low order)":           le(big.NewInt(1)),
		"u=p-1 (low order)":         le(new(big.Int).Sub(p, big.NewInt(1))),
		"u=p (non-canonical)":       le(p),
		"u=p+1 (non-canonical)":     le(new(big.Int).Add(p, big.NewInt(1))),
		"u=p+9 (non-canonical)":     le(new(big.Int).Add(p, big.NewInt(9))),
		"u=2^255-1 (non-canonical)": le(new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(1))),
		"u=9 with high bit set":     highBit,
		"order-8 point":             mustHex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
		"other order-8 point":       mustHex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
	}
}

func mustHex(s string) []byte {
	b := make([]byte, len(s)/2)
	for i := range b {
		var v byte
		for _, c := range s[2*i : 2*i+2] {
			v <<= 4
			switch {
			case c >= '0' && c <= '9':
				v |= byte(c - '0')
			case c >= 'a' && c <= 'f':
				v |= byte(c-'a') + 10
			}
		}
		b[i] = v
	}
	return b
}

// keyAndEncap returns a fresh key pair of k and one encapsulation to it.
func keyAndEncap(t *testing.T, k KEM) (sk PrivateKey, sharedSecret, enc []byte) {
	t.Helper()
	sk, err := k.GenerateKeyPair(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sharedSecret, enc, err = k.Encap(rand.Reader, sk.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	return sk, sharedSecret, enc
}

// TestHybridRejectsBadX25519 checks that non-canonical and low-order X25519
// values are refused in public keys (NewPublicKey), in ephemerals (Decap)
// and, for keys that bypassed parsing, by Encap.
func TestHybridRejectsBadX25519(t *testing.T) {
	k := HybridX25519MLKEM768()
	sk, _, enc := keyAndEncap(t, k)
	for name, bad := range badX25519() {
		pk := sk.PublicKey().Bytes()
		copy(pk, bad)
		if _, err := k.NewPublicKey(pk); err == nil {
			t.Errorf("NewPublicKey accepted X25519 %s", name)
		}
		e := bytes.Clone(enc)
		copy(e, bad)
		if _, err := k.Decap(sk, e); err == nil {
			t.Errorf("Decap accepted X25519 ephemeral %s", name)
		}
		// DHKEM(X25519) follows RFC 7748 and accepts every 32-byte value
		// as a public key; only low-order ones fail in Decap.
		if _, err := DHKEMX25519().NewPublicKey(bad); err != nil {
			t.Errorf("DHKEM(X25519) refused %s at parse time: %v", name, err)
		}
	}
	// Encap refuses every bad recipient key even if it was never parsed:
	// the non-canonical encodings of valid points (u = p+9, 2^255-1, 9 with
	// the high bit set) as well as the low-order ones.
	p := sk.PublicKey().(*hybridPublicKey)
	for name, bad := range badX25519() {
		forged := newHybridPublicKey((*x25519.Key)(bad), p.m)
		if _, _, err := k.Encap(rand.Reader, forged); err == nil {
			t.Errorf("Encap to unparsed X25519 key %s succeeded", name)
		}
	}
	// Control: the same forging of the genuine key encapsulates.
	if _, _, err := k.Encap(rand.Reader, newHybridPublicKey(&p.x, p.m)); err != nil {
		t.Errorf("Encap to a rebuilt genuine key: %v", err)
	}
}

// TestHybridRejectsBadMLKEMKey checks FIPS 203's encapsulation-key check: a
// coefficient ≥ q in the ML-KEM part is refused, as crypto/mlkem refuses it.
func TestHybridRejectsBadMLKEMKey(t *testing.T) {
	k := HybridX25519MLKEM768()
	sk, err := k.GenerateKeyPair(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, coeff := range []int{0, 1, 100, 255} {
		pk := sk.PublicKey().Bytes()
		ek := pk[32:]
		// Coefficients are packed as 12-bit little-endian pairs in 3 bytes;
		// set coefficient 2*coeff to 4095 > q = 3329.
		ek[3*coeff] = 0xff
		ek[3*coeff+1] |= 0x0f
		if _, err := mlkem.NewEncapsulationKey768(ek); err == nil {
			t.Fatal("test key is accepted by crypto/mlkem too; it is not invalid")
		}
		if _, err := k.NewPublicKey(pk); err == nil {
			t.Errorf("NewPublicKey accepted an ML-KEM key with coefficient %d ≥ q", 2*coeff)
		}
	}
	// X-Wing runs the same check.
	xsk, _ := XWing().GenerateKeyPair(rand.Reader)
	pk := xsk.PublicKey().Bytes()
	pk[0], pk[1] = 0xff, pk[1]|0x0f
	if _, err := XWing().NewPublicKey(pk); err == nil {
		t.Error("X-Wing NewPublicKey accepted an ML-KEM key with a coefficient ≥ q")
	}
}

// TestHybridTamper checks that a changed bit anywhere in enc makes the HPKE
// open fail: a changed ML-KEM ciphertext gives a different secret by
// implicit rejection, a changed X25519 ephemeral a different secret or an
// error.
func TestHybridTamper(t *testing.T) {
	k := HybridX25519MLKEM768()
	s := Suite{KEM: k, KDF: KDFHKDFSHA256, AEAD: AEADAES128GCM}
	sk, err := k.GenerateKeyPair(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	enc, ct, err := s.Seal(rand.Reader, sk.PublicKey(), []byte("info"), nil, []byte("welcome"))
	if err != nil {
		t.Fatal(err)
	}
	ss, err := k.Decap(sk, enc)
	if err != nil {
		t.Fatal(err)
	}
	for _, pos := range []int{0, 5, 31, 32, 33, 500, 1000, hybridEncSize - 1} {
		bad := bytes.Clone(enc)
		bad[pos] ^= 0x01
		if pos >= 32 {
			// ML-KEM part: implicit rejection, no error, another secret.
			got, err := k.Decap(sk, bad)
			if err != nil {
				t.Fatalf("byte %d: Decap of a tampered ML-KEM ciphertext failed: %v", pos, err)
			}
			if bytes.Equal(got, ss) {
				t.Fatalf("byte %d: tampered ML-KEM ciphertext gave the same secret", pos)
			}
		}
		if _, err := s.Open(sk, bad, []byte("info"), nil, ct); err == nil {
			t.Fatalf("byte %d: HPKE open of a tampered enc succeeded", pos)
		}
	}
}

// TestHybridReencodingCaveat demonstrates the caveat the README states: the
// combiner hashes only the two secrets, so adding the order-2 point (0, 0)
// to the X25519 ephemeral (which maps u to 1/u on a Montgomery curve) gives
// a different, canonical, accepted enc with the same shared secret. The
// hybrid KEM is therefore not strictly IND-CCA and enc bytes must not serve
// as identifiers. X-Wing hashes the X25519 ciphertext, so there the same
// change alters the secret.
func TestHybridReencodingCaveat(t *testing.T) {
	p := x25519P()
	for _, k := range []KEM{HybridX25519MLKEM768(), XWing()} {
		sk, ss, enc := keyAndEncap(t, k)
		// X25519 ephemeral: first 32 bytes in the hybrid, last 32 in X-Wing.
		off := 0
		if k.ID() == KEMXWing {
			off = len(enc) - 32
		}
		u := x25519Decode(enc[off : off+32])
		other := bytes.Clone(enc)
		copy(other[off:], x25519Encode(new(big.Int).ModInverse(u, p)))
		if bytes.Equal(other, enc) {
			t.Fatal("re-encoding did not change enc")
		}
		got, err := k.Decap(sk, other)
		if err != nil {
			t.Fatalf("kem %04x: re-encoded enc refused: %v", k.ID(), err)
		}
		same := bytes.Equal(got, ss)
		switch k.ID() {
		case KEMHybridX25519MLKEM768:
			if !same {
				t.Fatal("hybrid: re-encoded enc gave another secret; the README caveat would be wrong")
			}
		case KEMXWing:
			if same {
				t.Fatal("X-Wing: re-encoded enc gave the same secret")
			}
		}
	}
}

// TestMalformedLengths feeds every KEM inputs of every length around the
// expected one: errors, never panics.
func TestMalformedLengths(t *testing.T) {
	for _, k := range allKEMs() {
		sk, err := k.GenerateKeyPair(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []int{0, 1, k.PublicKeySize() - 1, k.PublicKeySize() + 1, 4096} {
			if _, err := k.NewPublicKey(make([]byte, n)); err == nil {
				t.Errorf("kem %04x: NewPublicKey accepted %d bytes", k.ID(), n)
			}
		}
		for _, n := range []int{0, 1, k.PrivateKeySize() - 1, k.PrivateKeySize() + 1, 4096} {
			if _, err := k.NewPrivateKey(make([]byte, n)); err == nil {
				t.Errorf("kem %04x: NewPrivateKey accepted %d bytes", k.ID(), n)
			}
		}
		for _, n := range []int{0, 1, k.EncSize() - 1, k.EncSize() + 1, 4096} {
			if _, err := k.Decap(sk, make([]byte, n)); err == nil {
				t.Errorf("kem %04x: Decap accepted %d bytes", k.ID(), n)
			}
		}
		if _, _, err := k.Encap(rand.Reader, nil); err == nil {
			t.Errorf("kem %04x: Encap to nil key succeeded", k.ID())
		}
		if _, err := k.Decap(nil, make([]byte, k.EncSize())); err == nil {
			t.Errorf("kem %04x: Decap with nil key succeeded", k.ID())
		}
	}
}

// TestXWingMatchesCircl cross-checks the X-Wing composition against circl's
// kem/xwing: key expansion, derandomized Encap and Decap.
func TestXWingMatchesCircl(t *testing.T) {
	k := XWing()
	for range 8 {
		seed := make([]byte, 32)
		rand.Read(seed)
		sk, err := k.NewPrivateKey(seed)
		if err != nil {
			t.Fatal(err)
		}
		csk, cpk := xwing.DeriveKeyPair(seed)
		cpkBytes := make([]byte, xwing.PublicKeySize)
		cpk.Pack(cpkBytes)
		if !bytes.Equal(sk.PublicKey().Bytes(), cpkBytes) {
			t.Fatal("X-Wing public key differs from circl")
		}
		eseed := make([]byte, 64)
		rand.Read(eseed)
		ss, enc, err := k.Encap(bytes.NewReader(eseed), sk.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		css, cct, err := xwing.Encapsulate(cpkBytes, eseed)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ss, css) || !bytes.Equal(enc, cct) {
			t.Fatal("X-Wing Encap differs from circl")
		}
		cct[0] ^= 1 // implicit rejection must agree too
		got, err := k.Decap(sk, cct)
		if err != nil {
			t.Fatal(err)
		}
		want := make([]byte, 32)
		csk.DecapsulateTo(want, cct)
		if !bytes.Equal(got, want) || bytes.Equal(got, ss) {
			t.Fatal("X-Wing Decap of a modified ciphertext differs from circl")
		}
	}
}

// TestXWingRejectsLowOrder checks that X-Wing refuses low-order X25519
// public keys and ephemerals (all-zero shared secret), as crypto/hpke does.
func TestXWingRejectsLowOrder(t *testing.T) {
	k := XWing()
	sk, _, enc := keyAndEncap(t, k)
	for name, bad := range badX25519() {
		if !strings.Contains(name, "low order") && !strings.Contains(name, "order-8") {
			continue
		}
		pk := sk.PublicKey().Bytes()
		copy(pk[len(pk)-32:], bad)
		if _, err := k.NewPublicKey(pk); err == nil {
			t.Errorf("NewPublicKey accepted X25519 %s", name)
		}
		e := bytes.Clone(enc)
		copy(e[len(e)-32:], bad)
		if _, err := k.Decap(sk, e); err == nil {
			t.Errorf("Decap accepted X25519 ephemeral %s", name)
		}
	}
}

// TestLowOrderList checks isLowOrderX25519 against crypto/ecdh: every listed
// value, in every encoding X25519 accepts (top bit set, or plus p while
// below 2^255), makes X25519 with a random key fail with an all-zero output
// in crypto/ecdh and in x25519Shared (circl), and random values are not
// flagged.
func TestLowOrderList(t *testing.T) {
	p := x25519P()
	sk, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	limit := new(big.Int).Lsh(big.NewInt(1), 255)
	n := 0
	for _, lo := range x25519LowOrder {
		for _, u := range []*big.Int{x25519Decode(lo[:]), new(big.Int).Add(x25519Decode(lo[:]), p)} {
			if u.Cmp(limit) >= 0 {
				continue
			}
			enc := u.FillBytes(make([]byte, 32))
			for i, j := 0, 31; i < j; i, j = i+1, j-1 {
				enc[i], enc[j] = enc[j], enc[i]
			}
			for _, top := range []byte{0, 0x80} {
				b := bytes.Clone(enc)
				b[31] |= top
				pub, err := ecdh.X25519().NewPublicKey(b)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := sk.ECDH(pub); err == nil {
					t.Fatalf("%x is listed as low order but crypto/ecdh accepts it", b)
				}
				if ss, err := x25519Shared((*x25519.Key)(sk.Bytes()), (*x25519.Key)(b)); err == nil {
					t.Fatalf("x25519Shared accepted low-order %x, output %x", b, ss)
				}
				if !isLowOrderX25519(b) {
					t.Fatalf("%x not flagged as low order", b)
				}
				n++
			}
		}
	}
	if n != 14 {
		t.Fatalf("checked %d encodings, want 14", n)
	}
	for range 1000 {
		b := make([]byte, 32)
		rand.Read(b)
		if isLowOrderX25519(b) {
			t.Fatalf("random %x flagged as low order", b)
		}
	}
}

// TestX25519MatchesStdlib checks the circl X25519 used by DHKEM(X25519), the
// hybrid and X-Wing against crypto/ecdh on random scalars and u-coordinates,
// including encodings with the top bit set and values in [p, 2^255), which
// RFC 7748, Section 5, reduces: same public keys, same shared secrets, and
// the same refusals.
func TestX25519MatchesStdlib(t *testing.T) {
	p := x25519P()
	var pub, refused int
	for i := range 2000 {
		var sk x25519.Key
		rand.Read(sk[:])
		esk, err := ecdh.X25519().NewPrivateKey(sk[:])
		if err != nil {
			t.Fatal(err)
		}
		if got, want := x25519Public(&sk)[:], esk.PublicKey().Bytes(); !bytes.Equal(got, want) {
			t.Fatalf("public key of %x: circl %x, crypto/ecdh %x", sk, got, want)
		}
		pub++
		var u x25519.Key
		switch i % 4 {
		case 0: // random 32 bytes, top bit as it comes
			rand.Read(u[:])
		case 1: // a random value in [p, 2^255)
			u = x25519.Key(x25519Encode(big.NewInt(int64(i / 4 % 19))))
			copy(u[:], new(big.Int).Add(x25519Decode(u[:]), p).FillBytes(make([]byte, 32)))
			for a, b := 0, 31; a < b; a, b = a+1, b-1 {
				u[a], u[b] = u[b], u[a]
			}
			u[31] |= byte(i/8%2) << 7
		case 2: // a low-order value with random top bit
			u = x25519LowOrder[i/4%len(x25519LowOrder)]
			u[31] |= byte(i/8%2) << 7
		case 3: // a valid public key with the top bit set
			u = *x25519Public(&sk)
			u[31] |= 0x80
		}
		epk, err := ecdh.X25519().NewPublicKey(u[:])
		if err != nil {
			t.Fatal(err)
		}
		want, wantErr := esk.ECDH(epk)
		got, gotErr := x25519Shared(&sk, &u)
		if (wantErr == nil) != (gotErr == nil) || !bytes.Equal(got, want) {
			t.Fatalf("X25519(%x, %x): circl %x (%v), crypto/ecdh %x (%v)", sk, u, got, gotErr, want, wantErr)
		}
		dk, err := DHKEMX25519().NewPrivateKey(sk[:])
		if err != nil {
			t.Fatal(err)
		}
		dpk, err := DHKEMX25519().NewPublicKey(u[:])
		if err != nil {
			t.Fatal(err)
		}
		dss, dErr := dhkemX25519.dh(dk.(*dhPrivateKey), dpk.(*dhPublicKey))
		if (wantErr == nil) != (dErr == nil) || !bytes.Equal(dss, want) {
			t.Fatalf("DHKEM(X25519) dh(%x, %x) = %x (%v), crypto/ecdh %x (%v)", sk, u, dss, dErr, want, wantErr)
		}
		if wantErr != nil {
			refused++
		}
	}
	t.Logf("%d public keys and %d shared secrets equal to crypto/ecdh (%d low-order inputs refused by both)", pub, pub, refused)
}
