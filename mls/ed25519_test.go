package mls

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"testing"

	"filippo.io/edwards25519"
)

// edTestKey is a key pair built from a scalar, so that tests can craft
// signatures with chosen R.
type edTestKey struct {
	a   edwards25519.Scalar
	pub []byte
}

func newEdTestKey(t testing.TB) *edTestKey {
	t.Helper()
	var seed [64]byte
	rand.Read(seed[:])
	k := new(edTestKey)
	if _, err := k.a.SetUniformBytes(seed[:]); err != nil {
		t.Fatal(err)
	}
	k.pub = new(edwards25519.Point).ScalarBaseMult(&k.a).Bytes()
	return k
}

// edChallenge is k = SHA-512(R || A || M) mod L.
func edChallenge(r, a, msg []byte) *edwards25519.Scalar {
	h := sha512.New()
	h.Write(r)
	h.Write(a)
	h.Write(msg)
	k, _ := new(edwards25519.Scalar).SetUniformBytes(h.Sum(nil))
	return k
}

// signWithR signs msg with nonce point R = [r]B + extra (extra may be
// nil): S = r + k*a, so that [S]B - R - [k]A = -extra.
func (k *edTestKey) signWithR(msg []byte, extra *edwards25519.Point) []byte {
	var seed [64]byte
	rand.Read(seed[:])
	r, _ := new(edwards25519.Scalar).SetUniformBytes(seed[:])
	R := new(edwards25519.Point).ScalarBaseMult(r)
	if extra != nil {
		R.Add(R, extra)
	}
	rb := R.Bytes()
	s := new(edwards25519.Scalar).MultiplyAdd(edChallenge(rb, k.pub, msg), &k.a, r)
	return append(rb, s.Bytes()...)
}

// torsionPoint returns a point of order 8: [L]P for random points P until
// one has a component of order 8.
func torsionPoint(t testing.TB) *edwards25519.Point {
	t.Helper()
	minusOne := new(edwards25519.Scalar).Negate(mustScalar(new(edwards25519.Scalar).SetCanonicalBytes(append([]byte{1}, make([]byte, 31)...))))
	for range 1000 {
		var b [32]byte
		rand.Read(b[:])
		p, err := new(edwards25519.Point).SetBytes(b[:])
		if err != nil {
			continue
		}
		q := new(edwards25519.Point).ScalarMult(minusOne, p) // [L-1]P
		q.Add(q, p)                                          // [L]P
		four := new(edwards25519.Point).Double(q)
		four.Double(four)
		if four.Equal(edIdentity) == 0 {
			return q
		}
	}
	t.Fatal("no point of order 8 found")
	return nil
}

func mustScalar(s *edwards25519.Scalar, err error) *edwards25519.Scalar {
	if err != nil {
		panic(err)
	}
	return s
}

// TestEd25519DifferentialRandom compares edVerify with crypto/ed25519 on
// honest signatures and on random corruptions of key, message and
// signature: on such inputs the two rules agree.
func TestEd25519DifferentialRandom(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(5, 6))
	for i := range 600 {
		pub, priv, _ := ed25519.GenerateKey(rand.Reader)
		msg := make([]byte, rng.IntN(300))
		rand.Read(msg)
		sig := ed25519.Sign(priv, msg)
		p, m, s := []byte(pub), msg, sig
		switch i % 5 {
		case 1:
			s = bytes.Clone(sig)
			s[rng.IntN(64)] ^= 1 << rng.IntN(8)
		case 2:
			p = bytes.Clone(pub)
			p[rng.IntN(32)] ^= 1 << rng.IntN(8)
		case 3:
			if len(m) > 0 {
				m = bytes.Clone(msg)
				m[rng.IntN(len(m))] ^= 1 << rng.IntN(8)
			}
		case 4:
			s = make([]byte, 64)
			rand.Read(s)
		}
		if got, want := edVerify(p, m, s), ed25519.Verify(p, m, s); got != want {
			t.Fatalf("case %d: edVerify = %v, crypto/ed25519 = %v", i%5, got, want)
		}
	}
	if edVerify(make([]byte, 31), nil, make([]byte, 64)) || edVerify(make([]byte, 32), nil, make([]byte, 63)) {
		t.Fatal("wrong lengths accepted")
	}
}

// smallOrderEncodings are the canonical encodings of the eight points of
// small order (RFC 8032 curve edwards25519).
var smallOrderEncodings = []string{
	"0100000000000000000000000000000000000000000000000000000000000000", // identity
	"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // order 2
	"0000000000000000000000000000000000000000000000000000000000000000", // order 4
	"0000000000000000000000000000000000000000000000000000000000000080", // order 4
	"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05", // order 8
	"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85", // order 8
	"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a", // order 8
	"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa", // order 8
}

// TestEd25519EdgeCases checks the rule of docs/BATCH-VERIFY.md on crafted
// signatures, single and batched, against crypto/ed25519.
func TestEd25519EdgeCases(t *testing.T) {
	msg := []byte("edge case message")
	key := newEdTestKey(t)
	T := torsionPoint(t)

	type edgeCase struct {
		name      string
		pub, sig  []byte
		ours, std bool // expected results
	}
	var cases []edgeCase
	add := func(name string, pub, sig []byte, ours, std bool) {
		cases = append(cases, edgeCase{name, pub, sig, ours, std})
	}
	add("honest", key.pub, key.signWithR(msg, nil), true, true)

	// Small-order A: the identity key with R = identity and S = 0 passes
	// crypto/ed25519 for every message; the rule refuses small-order A.
	for _, enc := range smallOrderEncodings {
		a, _ := hex.DecodeString(enc)
		if _, ok := parseEdPublicKey(a); ok {
			t.Fatalf("small-order point %s accepted as a key", enc)
		}
		var p edwards25519.Point
		if edDecodePoint(&p, a) {
			t.Fatalf("small-order point %s accepted as R", enc)
		}
	}
	id, _ := hex.DecodeString(smallOrderEncodings[0])
	add("small-order A (identity), R = identity, S = 0", id, append(bytes.Clone(id), make([]byte, 32)...), false, true)

	// Small-order R: R = identity with S = k*a satisfies crypto/ed25519's
	// equation; R of order 8 with S = k*a satisfies only the cofactored
	// one. The rule refuses both.
	{
		k := edChallenge(id, key.pub, msg)
		s := new(edwards25519.Scalar).Multiply(k, &key.a)
		add("small-order R (identity)", key.pub, append(bytes.Clone(id), s.Bytes()...), false, true)
		r8 := T.Bytes()
		k = edChallenge(r8, key.pub, msg)
		s = new(edwards25519.Scalar).Multiply(k, &key.a)
		add("small-order R (order 8)", key.pub, append(r8, s.Bytes()...), false, false)
	}
	// Mixed-order R = [r]B + T: valid under the cofactored equation only.
	// This is the one class the rule accepts and crypto/ed25519 does not.
	add("mixed-order R", key.pub, key.signWithR(msg, T), true, false)
	// Mixed-order A = [a]B + T with an honest-looking signature: [S]B - R -
	// [k]A = -[k]T, zero only after the cofactor.
	{
		mixedA := new(edwards25519.Point).ScalarBaseMult(&key.a)
		mixedA.Add(mixedA, T)
		mk := &edTestKey{a: key.a, pub: mixedA.Bytes()}
		sig := mk.signWithR(msg, nil)
		k := edChallenge(sig[:32], mk.pub, msg)
		// crypto/ed25519 accepts exactly when [k]T = O, k = 0 mod 8.
		kb := k.Bytes()
		add("mixed-order A", mk.pub, sig, true, kb[0]%8 == 0)
	}
	// Non-canonical S = S + L.
	{
		sig := key.signWithR(msg, nil)
		var s, l [32]byte
		copy(s[:], sig[32:])
		lBytes, _ := hex.DecodeString("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010")
		copy(l[:], lBytes)
		var carry uint16
		for i := range 32 {
			v := uint16(s[i]) + uint16(l[i]) + carry
			s[i], carry = byte(v), v>>8
		}
		if carry == 0 && s[31]&0xe0 == 0 {
			add("S + L", key.pub, append(bytes.Clone(sig[:32]), s[:]...), false, false)
		}
		big := bytes.Clone(sig)
		big[63] |= 0xe0
		add("S with high bits", key.pub, big, false, false)
	}
	// Non-canonical point encodings: y >= p. Decodable ones exist only for
	// y < 19 (encoded as y + p); the rule refuses them as keys and as R.
	nonCanonical := 0
	for y := range 19 {
		var enc [32]byte
		pEnc, _ := hex.DecodeString("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")
		copy(enc[:], pEnc)
		enc[0] += byte(y)
		for _, sign := range []byte{0, 0x80} {
			e := enc
			e[31] |= sign
			if _, err := new(edwards25519.Point).SetBytes(e[:]); err != nil {
				continue
			}
			nonCanonical++
			if _, ok := parseEdPublicKey(e[:]); ok {
				t.Fatalf("non-canonical key %x accepted", e)
			}
			sig := key.signWithR(msg, nil)
			copy(sig[:32], e[:])
			add("non-canonical R", key.pub, sig, false, false)
		}
	}
	if nonCanonical == 0 {
		t.Fatal("no decodable non-canonical encoding tried")
	}

	for _, c := range cases {
		if got := edVerify(c.pub, msg, c.sig); got != c.ours {
			t.Errorf("%s: edVerify = %v, want %v", c.name, got, c.ours)
		}
		if got := ed25519.Verify(c.pub, msg, c.sig); got != c.std {
			t.Errorf("%s: crypto/ed25519 = %v, want %v", c.name, got, c.std)
		}
		// Batched with honest signatures, at every position: the batch
		// accepts exactly when the single verification does.
		for _, pos := range []int{0, 5, 9} {
			sigs := make([]edSignature, 0, 10)
			ok := true
			for i := range 10 {
				var v edSignature
				if i == pos {
					pk, pkOK := parseEdPublicKey(c.pub)
					if !pkOK || !v.prepare(pk, msg, c.sig) {
						ok = false
						break
					}
				} else {
					pk, _ := parseEdPublicKey(key.pub)
					if !v.prepare(pk, msg, key.signWithR(msg, nil)) {
						t.Fatal("honest signature not prepared")
					}
				}
				sigs = append(sigs, v)
			}
			if ok {
				ok = edBatchVerify(sigs)
			}
			if ok != c.ours {
				t.Errorf("%s at %d: batch = %v, single = %v", c.name, pos, ok, c.ours)
			}
		}
	}
}

// TestEd25519BatchMatchesSingle checks, on random mixes of honest,
// corrupted and mixed-order signatures over batch boundaries, that the
// batch accepts exactly when every signature verifies alone, and that the
// leaf verification names the first bad leaf.
func TestEd25519BatchMatchesSingle(t *testing.T) {
	defer func(n int) { edBatchSize = n }(edBatchSize)
	edBatchSize = 160 // batches on both sides of edBucketMinBatch
	rng := mrand.New(mrand.NewPCG(7, 8))
	T := torsionPoint(t)
	keys := make([]*edTestKey, 8)
	for i := range keys {
		keys[i] = newEdTestKey(t)
	}
	for round := range 15 {
		n := 1 + rng.IntN(3*edBatchSize)
		sigs := make([]edSignature, n)
		want := true
		for i := range sigs {
			k := keys[rng.IntN(len(keys))]
			msg := []byte{byte(i), byte(round)}
			var sig []byte
			switch rng.IntN(20) {
			case 0:
				sig = k.signWithR(msg, nil)
				sig[32] ^= 1 // wrong S
			case 1:
				sig = k.signWithR(msg, T) // valid under the rule
			case 2:
				sig = k.signWithR(msg, nil)
				msg = append(msg, 0) // signature over another message
			default:
				sig = k.signWithR(msg, nil)
			}
			pk, _ := parseEdPublicKey(k.pub)
			if !sigs[i].prepare(pk, msg, sig) {
				t.Fatal("prepare failed")
			}
			if !sigs[i].verify() {
				want = false
			}
		}
		if got := edBatchVerify(sigs); got != want {
			t.Fatalf("round %d (%d signatures): batch = %v, single = %v", round, n, got, want)
		}
	}
}

func BenchmarkEd25519BatchVerify(b *testing.B) {
	key := newEdTestKey(b)
	pk, _ := parseEdPublicKey(key.pub)
	msg := make([]byte, 200)
	sigs := make([]edSignature, edBatchSize)
	for i := range sigs {
		sigs[i].prepare(pk, msg, key.signWithR(msg, nil))
	}
	var cpu cpuMeter
	cpu.begin()
	for b.Loop() {
		if !edBatchVerify(sigs) {
			b.Fatal("batch failed")
		}
	}
	cpu.end()
	cpu.report(b)
	b.ReportMetric(float64(edBatchSize), "sigs/op")
}

// TestVerifyLeafSignaturesNamesBadLeaf checks that when a batch of leaf
// signatures fails, the fallback names the lowest bad leaf, for bad
// leaves in the first, a middle and the last batch.
func TestVerifyLeafSignaturesNamesBadLeaf(t *testing.T) {
	defer func(n int) { edBatchSize = n }(edBatchSize)
	edBatchSize = 128
	suite := CipherSuiteMLS128DHKEMX25519AES128GCMSHA256Ed25519
	tt := buildTestTree(t, suite, 2*edBatchSize+3, false, testRand(12))
	if err := tt.tree.verifyLeafSignatures(nil); err != nil {
		t.Fatalf("verifyLeafSignatures = %v", err)
	}
	var all []leafIndex
	for l := range leafIndex(tt.tree.numLeaves()) {
		if tt.tree.leaf(l) != nil {
			all = append(all, l)
		}
	}
	if !tt.tree.batchVerifyLeaves(all, nil) {
		t.Fatal("batchVerifyLeaves of valid leaves = false")
	}
	for _, bad := range [][]leafIndex{{0}, {70, 100}, {leafIndex(2*edBatchSize + 2)}} {
		tree := tt.tree.clone()
		for _, l := range bad {
			leaf := *tree.leaf(l)
			leaf.Signature = bytes.Clone(leaf.Signature)
			leaf.Signature[1] ^= 1
			tree.setLeaf(l, &leaf)
		}
		err := tree.verifyLeafSignatures(nil)
		if err == nil || !bytes.Contains([]byte(err.Error()), fmt.Appendf(nil, "leaf %d", bad[0])) {
			t.Errorf("bad leaves %v: verifyLeafSignatures = %v", bad, err)
		}
	}
}

// TestLeafSignedInput checks the input batch verification hashes for a
// leaf against R ‖ A ‖ SignContent("LeafNodeTBS", marshalTBS), for leaves
// of every source (update and commit leaves include the group and index)
// and TBS lengths around the variable-length header boundaries.
func TestLeafSignedInput(t *testing.T) {
	sig := bytes.Repeat([]byte{7}, 64)
	key := bytes.Repeat([]byte{9}, 32)
	buf := make([]byte, 0, 16)
	for _, src := range []LeafNodeSource{LeafNodeSourceKeyPackage, LeafNodeSourceUpdate, LeafNodeSourceCommit} {
		for _, n := range []int{0, 10, 40, 60, 16000, 16400} {
			leaf := &LeafNode{
				EncryptionKey: make([]byte, n), SignatureKey: key, Signature: sig, Source: src,
				Credential: Credential{Type: CredentialTypeBasic, Identity: []byte("id")},
				ParentHash: []byte("ph"),
			}
			tbs, err := leaf.marshalTBS([]byte("group"), 5)
			if err != nil {
				t.Fatal(err)
			}
			want := append(append(bytes.Clone(sig[:32]), key...), labeledInput(labelLeafNodeTBS, tbs)...)
			var in []byte
			buf, in, err = leafSignedInput(buf, leaf, []byte("group"), 5)
			if err != nil || !bytes.Equal(in, want) {
				t.Errorf("source %d, key of %d bytes: leafSignedInput = %x, %v, want %x", src, n, in, err, want)
			}
		}
	}
}

// TestEd25519SmallOrderY checks the small-order test by y coordinate
// against [8]P = O: on the small-order points (both signs of x) and on
// random points and random multiples of the base point, with and without
// a torsion component.
func TestEd25519SmallOrderY(t *testing.T) {
	check := func(b []byte) {
		p, err := new(edwards25519.Point).SetBytes(b)
		if err != nil || !edCanonicalY(b) {
			return
		}
		q := new(edwards25519.Point).MultByCofactor(p)
		if got, want := edSmallOrder(b), q.Equal(edIdentity) == 1; got != want {
			t.Fatalf("%x: edSmallOrder = %v, [8]P = O is %v", b, got, want)
		}
	}
	for _, h := range smallOrderEncodings {
		b, _ := hex.DecodeString(h)
		if !edSmallOrder(b) {
			t.Fatalf("%s not found small", h)
		}
		check(b)
		b[31] ^= 0x80
		check(b)
	}
	T := torsionPoint(t)
	for i := range 300 {
		var b [32]byte
		rand.Read(b[:])
		check(b[:])
		var seed [64]byte
		rand.Read(seed[:])
		s, _ := new(edwards25519.Scalar).SetUniformBytes(seed[:])
		p := new(edwards25519.Point).ScalarBaseMult(s)
		if i%2 == 0 {
			p.Add(p, T)
		}
		check(p.Bytes())
		// Multiples of the torsion point: all small.
		p.Set(T)
		for range i % 8 {
			p.Add(p, T)
		}
		check(p.Bytes())
	}
}

// FuzzEd25519Verify feeds arbitrary keys, messages and signatures to the
// verifier. It must not panic; a signature crypto/ed25519 accepts with
// canonical encodings and no small-order point must be accepted (the
// cofactorless equation implies the cofactored one); and a batch of the
// signature with an honest one agrees with single verification.
func FuzzEd25519Verify(f *testing.F) {
	pub, priv, _ := ed25519.GenerateKey(testRand(20))
	msg := []byte("message")
	f.Add([]byte(pub), msg, ed25519.Sign(priv, msg))
	f.Add([]byte(pub), msg, make([]byte, 64))
	for _, h := range smallOrderEncodings {
		b, _ := hex.DecodeString(h)
		f.Add(b, msg, append(bytes.Clone(b), make([]byte, 32)...))
	}
	honestMsg := []byte("honest")
	honest := ed25519.Sign(priv, honestMsg)
	f.Fuzz(func(t *testing.T, pub, msg, sig []byte) {
		ours := edVerify(pub, msg, sig)
		if len(pub) == 32 && len(sig) == 64 && ed25519.Verify(pub, msg, sig) &&
			edCanonicalY(pub) && edCanonicalY(sig[:32]) && !edSmallOrder(pub) && !edSmallOrder(sig[:32]) && !ours {
			t.Fatal("crypto/ed25519 accepts a signature with canonical, large-order points that edVerify refuses")
		}
		pk, ok := parseEdPublicKey(pub)
		hk, _ := parseEdPublicKey(priv.Public().(ed25519.PublicKey))
		sigs := make([]edSignature, 2)
		if !ok || !sigs[0].prepare(pk, msg, sig) {
			if ours {
				t.Fatal("edVerify accepts a signature that does not prepare")
			}
			return
		}
		if !sigs[1].prepare(hk, honestMsg, honest) {
			t.Fatal("honest signature")
		}
		if got := edBatchVerify(sigs); got != ours {
			t.Fatalf("batch = %v, single = %v", got, ours)
		}
	})
}

// TestEdExpandedKeySign checks that the expanded-key signer makes the
// signatures crypto/ed25519.Sign makes, for several keys and message
// lengths, and that it allocates only the signature.
func TestEdExpandedKeySign(t *testing.T) {
	rand := testRand(77)
	for i := 0; i < 50; i++ {
		_, priv, err := ed25519.GenerateKey(rand)
		if err != nil {
			t.Fatal(err)
		}
		e := expandEdKey(priv)
		msg := make([]byte, i*13)
		rand.Read(msg)
		if got, want := e.sign(msg), ed25519.Sign(priv, msg); !bytes.Equal(got, want) {
			t.Fatalf("key %d, message of %d bytes: signature %x, crypto/ed25519 gives %x", i, len(msg), got, want)
		}
	}
	_, priv, _ := ed25519.GenerateKey(rand)
	e := expandEdKey(priv)
	msg := make([]byte, 250)
	if n := testing.AllocsPerRun(100, func() { e.sign(msg) }); n > 1 {
		t.Errorf("signing allocates %v times, want 1", n)
	}
}

// TestEdBucketMultiScalarMult checks the bucket method against
// VarTimeMultiScalarMult for random points and scalars of full and 128-bit
// size, zero, one and L-1, at sizes that choose different windows.
func TestEdBucketMultiScalarMult(t *testing.T) {
	rng := testRand(41)
	var lMinus1 edwards25519.Scalar
	lMinus1.Subtract(edwards25519.NewScalar(), smallScalar(t, 1))
	for _, n := range []int{1, 2, 7, 300, 700, 2100, 5000, 8193} {
		scalars := make([]edwards25519.Scalar, n)
		points := make([]*edwards25519.Point, n)
		ptrs := make([]*edwards25519.Scalar, n)
		for i := range n {
			var wide [64]byte
			rng.Read(wide[:])
			switch i % 5 {
			case 0, 1:
				scalars[i].SetUniformBytes(wide[:])
			case 2:
				clear(wide[16:])
				scalars[i].SetUniformBytes(wide[:])
			case 3:
				scalars[i].Set([]*edwards25519.Scalar{edwards25519.NewScalar(), smallScalar(t, 1), &lMinus1}[i%3])
			case 4:
				scalars[i].Set(&lMinus1)
			}
			var k edwards25519.Scalar
			rng.Read(wide[:])
			k.SetUniformBytes(wide[:])
			points[i] = new(edwards25519.Point).ScalarBaseMult(&k)
			ptrs[i] = &scalars[i]
		}
		var got, want edwards25519.Point
		edBucketMultiScalarMult(&got, scalars, points)
		want.VarTimeMultiScalarMult(ptrs, points)
		if got.Equal(&want) != 1 {
			t.Errorf("n = %d: bucket method differs from VarTimeMultiScalarMult", n)
		}
	}
}

func smallScalar(t *testing.T, v byte) *edwards25519.Scalar {
	var b [32]byte
	b[0] = v
	s, err := edwards25519.NewScalar().SetCanonicalBytes(b[:])
	if err != nil {
		t.Fatal(err)
	}
	return s
}
