package mls

// This file holds the Ed25519 verification of every suite whose signature
// scheme is Ed25519 (RFC 8032, Section 5.1.7), single and in batches, under
// one acceptance rule (docs/BATCH-VERIFY.md):
//
//   - A, R and S are canonical: A and R encode a y coordinate below
//     p = 2^255 - 19 and decode to curve points; S < L.
//   - Neither A nor R is one of the eight points of small order.
//   - The cofactored equation holds: [8]([S]B - R - [k]A) = O with
//     k = SHA-512(R || A || M) mod L.
//
// A batch checks [8](sum z_i([S_i]B - R_i - [k_i]A_i)) = O for random
// 128-bit z_i with one multi-scalar multiplication; it accepts a set of
// signatures exactly when each is accepted alone (up to a 2^-128 chance,
// taken over z). Parsed public keys are cached, so a member's key is
// decoded once, not on every message.

import (
	"crypto/rand"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"sync"

	"filippo.io/edwards25519"
)

// edPublicKey is a parsed Ed25519 public key that passed the rule above.
type edPublicKey struct {
	enc  [32]byte
	a    edwards25519.Point
	negA edwards25519.Point
	// accel is the key in the platform's own Ed25519, if it has one
	// (ed25519_js.go: WebCrypto in a browser).
	accel edAccelKey
}

var edIdentity = edwards25519.NewIdentityPoint()

// edCanonicalY reports whether the 32-byte encoding b has a y coordinate
// below p = 2^255 - 19 (the sign bit, bit 255, is not part of y). Of the
// other non-canonical encodings of RFC 8032, Section 5.1.3, x = 0 with the
// sign bit set, x = 0 only occurs on points of small order, refused
// anyway.
func edCanonicalY(b []byte) bool {
	if b[31]&0x7f != 0x7f {
		return true
	}
	for i := 30; i >= 1; i-- {
		if b[i] != 0xff {
			return true
		}
	}
	return b[0] < 0xed
}

// edSmallOrderY are the y coordinates (little-endian, sign bit clear) of
// the eight points of order dividing 8: 1 (the identity), p - 1 (order 2),
// 0 (order 4, x = ±sqrt(-1)) and the two y of the four points of order 8.
// A point decoded from a canonical y is of small order exactly when its y
// is one of them, which costs a comparison instead of three doublings
// (TestEd25519SmallOrderY checks the list against [8]P = O).
var edSmallOrderY = func() (ys [5][32]byte) {
	for i, h := range []string{
		"0100000000000000000000000000000000000000000000000000000000000000",
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"0000000000000000000000000000000000000000000000000000000000000000",
		"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
		"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
	} {
		if _, err := hex.Decode(ys[i][:], []byte(h)); err != nil {
			panic(err)
		}
	}
	return ys
}()

// edSmallOrder reports whether the encoding b names a point of small
// order, by its y coordinate.
func edSmallOrder(b []byte) bool {
	var y [32]byte
	copy(y[:], b)
	y[31] &= 0x7f
	for i := range edSmallOrderY {
		if y == edSmallOrderY[i] {
			return true
		}
	}
	return false
}

// edDecodePoint decodes a canonical encoding of a point not of small order.
func edDecodePoint(p *edwards25519.Point, b []byte) bool {
	if len(b) != 32 || !edCanonicalY(b) || edSmallOrder(b) {
		return false
	}
	_, err := p.SetBytes(b)
	return err == nil
}

// parseEdPublicKey parses an Ed25519 public key under the rule above.
func parseEdPublicKey(b []byte) (*edPublicKey, bool) {
	k := new(edPublicKey)
	if !edDecodePoint(&k.a, b) {
		return nil, false
	}
	copy(k.enc[:], b)
	k.negA.Negate(&k.a)
	return k, true
}

// edKeyCache caches parsed public keys by encoding, in shards so that
// parallel verifications rarely wait for each other. A full shard is
// emptied; the cache only saves decoding work.
type edKeyCache struct {
	shards [16]struct {
		mu sync.RWMutex
		m  map[[32]byte]*edPublicKey
	}
}

const edKeyCacheShardSize = 2048

var edKeys edKeyCache

// get returns the parsed key of b, parsing and caching it when needed.
func (c *edKeyCache) get(b []byte) (*edPublicKey, bool) {
	if len(b) != 32 {
		return nil, false
	}
	key := [32]byte(b)
	s := &c.shards[key[0]&15]
	s.mu.RLock()
	k, ok := s.m[key]
	s.mu.RUnlock()
	if ok {
		return k, k != nil
	}
	k, ok = parseEdPublicKey(b)
	s.mu.Lock()
	if s.m == nil || len(s.m) >= edKeyCacheShardSize {
		s.m = make(map[[32]byte]*edPublicKey)
	}
	s.m[key] = k // nil for an invalid key
	s.mu.Unlock()
	return k, ok
}

// edSignature is a signature prepared for verification: R decoded, S
// checked and k = SHA-512(R || A || M) mod L computed.
type edSignature struct {
	pub  *edPublicKey
	r    edwards25519.Point
	s, k edwards25519.Scalar
}

// prepare checks the encodings of sig and computes k for pub and msg.
func (v *edSignature) prepare(pub *edPublicKey, msg, sig []byte) bool {
	if len(sig) != 64 {
		return false
	}
	h := sha512.New()
	h.Write(sig[:32])
	h.Write(pub.enc[:])
	h.Write(msg)
	var digest [64]byte
	h.Sum(digest[:0])
	return v.prepareDigest(pub, sig, &digest)
}

// prepareDigest is prepare for a caller that has computed digest =
// SHA-512(R ‖ A ‖ M) (edSignedInput).
func (v *edSignature) prepareDigest(pub *edPublicKey, sig []byte, digest *[64]byte) bool {
	if len(sig) != 64 || !edDecodePoint(&v.r, sig[:32]) {
		return false
	}
	if _, err := v.s.SetCanonicalBytes(sig[32:]); err != nil {
		return false
	}
	if _, err := v.k.SetUniformBytes(digest[:]); err != nil {
		return false
	}
	v.pub = pub
	return true
}

// verify checks the cofactored equation for one prepared signature.
func (v *edSignature) verify() bool {
	var p edwards25519.Point
	p.VarTimeDoubleScalarBaseMult(&v.k, &v.pub.negA, &v.s)
	p.Subtract(&p, &v.r)
	p.MultByCofactor(&p)
	return p.Equal(edIdentity) == 1
}

// edVerify verifies one Ed25519 signature under the rule above.
func edVerify(pub, msg, sig []byte) bool {
	k, ok := edKeys.get(pub)
	if !ok {
		return false
	}
	var v edSignature
	if !v.prepare(k, msg, sig) {
		return false
	}
	// Where the platform verifies faster (WebAssembly in a browser, where
	// Go's field arithmetic is slow), a signature it accepts is accepted:
	// it checks the cofactorless equation [S]B = R + [k]A, which implies
	// the cofactored one, and prepare has checked the encodings and small
	// orders. Anything it refuses is decided by the rule here, so both
	// paths accept exactly the same signatures.
	if edAccelVerify(k, msg, sig) {
		return true
	}
	return v.verify()
}

// edBatchSize is the largest number of signatures per multi-scalar
// multiplication. The bucket method (edBucketMultiScalarMult) costs less
// per signature the larger the batch (measured against
// VarTimeMultiScalarMult: 0.9x at 128 signatures, 0.6x at 1 024, 0.35x at
// 4 096); a batch that fails is verified again one signature at a time by
// the caller. It is a variable so that tests can cross batch boundaries
// with few signatures.
var edBatchSize = 4096

// edBatchVerify reports whether every prepared signature of sigs verifies,
// checking them in batches of edBatchSize with random 128-bit
// coefficients from crypto/rand. A false result does not say which
// signature failed; verify each one alone to find it.
func edBatchVerify(sigs []edSignature) bool {
	for len(sigs) > 0 {
		n := min(len(sigs), edBatchSize)
		if !edVerifyOneBatch(sigs[:n]) {
			return false
		}
		sigs = sigs[n:]
	}
	return true
}

// edVerifyOneBatch checks
//
//	[8]( [-sum z_i S_i]B + sum [z_i]R_i + sum [z_i k_i]A_i ) = O
//
// for random z_i of 128 bits.
func edVerifyOneBatch(sigs []edSignature) bool {
	n := len(sigs)
	if n == 1 {
		return sigs[0].verify()
	}
	random := make([]byte, 16*n)
	if _, err := rand.Read(random); err != nil {
		return false
	}
	scalars := make([]edwards25519.Scalar, 2*n+1)
	points := make([]*edwards25519.Point, 2*n+1)
	ptrs := make([]*edwards25519.Scalar, 2*n+1)
	var sumS edwards25519.Scalar // sum z_i S_i
	var zb [32]byte
	for i := range sigs {
		v := &sigs[i]
		binary.LittleEndian.PutUint64(zb[0:], binary.LittleEndian.Uint64(random[16*i:]))
		binary.LittleEndian.PutUint64(zb[8:], binary.LittleEndian.Uint64(random[16*i+8:]))
		z := &scalars[1+i]
		if _, err := z.SetCanonicalBytes(zb[:]); err != nil {
			return false // unreachable: z < 2^128 < L
		}
		sumS.MultiplyAdd(z, &v.s, &sumS)
		points[1+i] = &v.r
		scalars[1+n+i].Multiply(z, &v.k)
		points[1+n+i] = &v.pub.a
	}
	scalars[0].Negate(&sumS)
	points[0] = edwards25519.NewGeneratorPoint()
	for i := range scalars {
		ptrs[i] = &scalars[i]
	}
	var p edwards25519.Point
	if n >= edBucketMinBatch {
		edBucketMultiScalarMult(&p, scalars, points)
	} else {
		p.VarTimeMultiScalarMult(ptrs, points)
	}
	p.MultByCofactor(&p)
	return p.Equal(edIdentity) == 1
}

// edBucketMinBatch is the batch size from which edBucketMultiScalarMult
// beats the interleaved multiplication of VarTimeMultiScalarMult, which
// costs about 80 point additions per signature whatever the batch.
const edBucketMinBatch = 128

// edBucketMultiScalarMult sets p to sum [scalars[i]]points[i] with the
// bucket method (Pippenger): the scalars are cut into signed c-bit digits;
// for each window, from the top, p is multiplied by 2^c, every point is
// added to (or subtracted from) the bucket of its digit, and the buckets
// are summed with their weights by running sums. For n points this costs
// about n additions per window plus 2^c per window for the sums, against
// one addition every c+1 bits per point for the interleaved method: for
// large n, half the additions of the R terms (128-bit scalars) and a third
// of those of the A terms. It runs in variable time: only public values
// (signatures, keys and the batch coefficients, which are not secret
// once chosen) go through it.
func edBucketMultiScalarMult(p *edwards25519.Point, scalars []edwards25519.Scalar, points []*edwards25519.Point) {
	n := len(points)
	c := 6
	for c < 11 && 1<<(c+4) < n {
		c++
	}
	// Scalars are below L < 2^253; signed digits need one more bit.
	windows := (254 + c - 1) / c
	digits := make([]int16, n*windows)
	var buf [40]byte
	half, full := 1<<(c-1), 1<<c
	mask := uint64(full - 1)
	for i := range scalars {
		copy(buf[:], scalars[i].Bytes())
		carry := 0
		for j := range windows {
			bit := j * c
			v := int(binary.LittleEndian.Uint64(buf[bit/8:])>>(bit%8)&mask) + carry
			carry = 0
			if v >= half {
				v -= full
				carry = 1
			}
			digits[i*windows+j] = int16(v)
		}
	}
	buckets := make([]edwards25519.Point, half)
	used := make([]bool, half)
	var running, sum edwards25519.Point
	p.Set(edIdentity)
	for j := windows - 1; j >= 0; j-- {
		for range c {
			p.Add(p, p)
		}
		clear(used)
		for i := range n {
			d := int(digits[i*windows+j])
			switch {
			case d > 0:
				if used[d-1] {
					buckets[d-1].Add(&buckets[d-1], points[i])
				} else {
					buckets[d-1].Set(points[i])
					used[d-1] = true
				}
			case d < 0:
				if used[-d-1] {
					buckets[-d-1].Subtract(&buckets[-d-1], points[i])
				} else {
					buckets[-d-1].Negate(points[i])
					used[-d-1] = true
				}
			}
		}
		// sum_k (k+1) buckets[k] = sum over k of the running sum of the
		// buckets from the top down to k.
		started := false
		for k := half - 1; k >= 0; k-- {
			if used[k] {
				if started {
					running.Add(&running, &buckets[k])
				} else {
					running.Set(&buckets[k])
				}
			}
			if !started && !used[k] {
				continue
			}
			if started {
				sum.Add(&sum, &running)
			} else {
				sum.Set(&running)
				started = true
			}
		}
		if started {
			p.Add(p, &sum)
		}
	}
}

// edExpandedKey is an Ed25519 private key expanded for signing (RFC 8032,
// Section 5.1.5): the secret scalar s and the prefix, the two halves of
// SHA-512(seed), with the public key. crypto/ed25519.Sign expands the
// seed again for every signature.
type edExpandedKey struct {
	s      edwards25519.Scalar
	prefix [32]byte
	pub    [32]byte
}

// expandEdKey expands a crypto/ed25519 private key (seed || public key).
func expandEdKey(key []byte) *edExpandedKey {
	if len(key) != 64 {
		return nil
	}
	h := sha512.Sum512(key[:32])
	defer clear(h[:])
	e := new(edExpandedKey)
	if _, err := e.s.SetBytesWithClamping(h[:32]); err != nil {
		return nil
	}
	copy(e.prefix[:], h[32:])
	copy(e.pub[:], key[32:])
	return e
}

// sign is Ed25519 signing (RFC 8032, Section 5.1.6), the signature
// crypto/ed25519.Sign makes with the same key:
//
//	r = SHA-512(prefix || M) mod L, R = [r]B
//	k = SHA-512(R || A || M) mod L, S = (r + k*s) mod L
func (e *edExpandedKey) sign(msg []byte) []byte {
	var digest [64]byte
	h := sha512.New()
	h.Write(e.prefix[:])
	h.Write(msg)
	h.Sum(digest[:0])
	var r edwards25519.Scalar
	if _, err := r.SetUniformBytes(digest[:]); err != nil {
		panic("mls: internal error: Ed25519 nonce")
	}
	var R edwards25519.Point
	R.ScalarBaseMult(&r)
	sig := make([]byte, 64)
	copy(sig[:32], R.Bytes())
	h.Reset()
	h.Write(sig[:32])
	h.Write(e.pub[:])
	h.Write(msg)
	h.Sum(digest[:0])
	var k edwards25519.Scalar
	if _, err := k.SetUniformBytes(digest[:]); err != nil {
		panic("mls: internal error: Ed25519 challenge")
	}
	var S edwards25519.Scalar
	S.MultiplyAdd(&k, &e.s, &r)
	copy(sig[32:], S.Bytes())
	clear(digest[:])
	r = edwards25519.Scalar{}
	return sig
}
