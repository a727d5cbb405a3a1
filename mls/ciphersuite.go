package mls

// This file holds the cipher suites of RFC 9420, Section 5.1 and Section 17.1,
// and the labelled primitives every other part of the protocol is built on:
// ExpandWithLabel and DeriveSecret (Section 8), DeriveTreeSecret (Section 9),
// SignWithLabel and VerifyWithLabel (Section 5.1.2), EncryptWithLabel and
// DecryptWithLabel (Section 5.1.3).

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"

	"github.com/cloudflare/circl/sign/ed448"
	"golang.org/x/crypto/chacha20poly1305"

	"qpchat/kem"
)

// labelPrefix is prepended to every label of the labelled primitives
// (RFC 9420, Sections 5.1.2, 5.1.3 and 8).
const labelPrefix = "MLS 1.0 "

// qpchat's post-quantum cipher suites. They keep the primitives of suite 1
// (AES-128-GCM, SHA-256, Ed25519) and replace DHKEM(X25519) with a hybrid
// KEM that combines X25519 with ML-KEM-768, so that TreeKEM, Welcome and
// external-join secrets resist a quantum adversary recording traffic today.
// Authentication stays classical (Ed25519).
//
// RFC 9420, Section 17.1 reserves 0xF000-0xFFFF for private use; both code
// points are in that range and are meaningful only between qpchat nodes.
const (
	// CipherSuiteMLS128HybridX25519MLKEM768AES128GCMSHA256Ed25519 uses
	// qpchat's hybrid X25519 + ML-KEM-768 KEM (kem.HybridX25519MLKEM768).
	CipherSuiteMLS128HybridX25519MLKEM768AES128GCMSHA256Ed25519 CipherSuite = 0xFA01
	// CipherSuiteMLS128XWingAES128GCMSHA256Ed25519 uses X-Wing (HPKE KEM
	// 0x647a, kem.XWing). Its code point is xwingCipherSuiteCodePoint.
	CipherSuiteMLS128XWingAES128GCMSHA256Ed25519 CipherSuite = xwingCipherSuiteCodePoint
)

// xwingCipherSuiteCodePoint is the private-use code point qpchat gives the
// X-Wing suite. It is one constant so that it can move to an IANA-assigned
// value (or another private value) in one edit.
const xwingCipherSuiteCodePoint = 0xFA02

// cipherSuite is everything one MLS cipher suite fixes (RFC 9420, Section
// 5.1): the hash and KDF, the AEAD, the signature scheme and the HPKE suite.
// The values live in suiteTable and are never modified.
type cipherSuite struct {
	id CipherSuite

	// hash is the suite's hash, used for Hash, for HMAC (the MAC of
	// Section 5.1) and for HKDF (the KDF).
	hash crypto.Hash
	// newHash returns a new hash.Hash of the suite hash; it avoids the
	// registry lookup that crypto.Hash.New does.
	newHash func() hash.Hash
	// nh is KDF.Nh, the hash output size.
	nh int

	aead aeadScheme
	sig  signatureScheme
	// hpke is the suite's HPKE configuration (RFC 9180) for
	// EncryptWithLabel, TreeKEM and the external key pair.
	hpke kem.Suite

	// expanders pools the expanders of one-shot expansions (getExpander).
	expanders *sync.Pool
}

// aeadScheme is the AEAD of a suite. nk and nn are AEAD.Nk and AEAD.Nn.
type aeadScheme struct {
	nk, nn int
	new    func(key []byte) (cipher.AEAD, error)
}

func newAESGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

var (
	aeadAES128GCM = aeadScheme{nk: 16, nn: 12, new: newAESGCM}
	aeadAES256GCM = aeadScheme{nk: 32, nn: 12, new: newAESGCM}
	aeadChaCha    = aeadScheme{nk: chacha20poly1305.KeySize, nn: chacha20poly1305.NonceSize, new: chacha20poly1305.New}
)

func newSHA256() hash.Hash { return sha256.New() }
func newSHA384() hash.Hash { return sha512.New384() }
func newSHA512() hash.Hash { return sha512.New() }

// suiteTable lists every supported suite, keyed by its code point.
var suiteTable = map[CipherSuite]*cipherSuite{}

func init() {
	type hashChoice struct {
		hash    crypto.Hash
		newHash func() hash.Hash
		kdf     kem.KDFID
	}
	hashSHA256 := hashChoice{crypto.SHA256, newSHA256, kem.KDFHKDFSHA256}
	hashSHA384 := hashChoice{crypto.SHA384, newSHA384, kem.KDFHKDFSHA384}
	hashSHA512 := hashChoice{crypto.SHA512, newSHA512, kem.KDFHKDFSHA512}
	add := func(id CipherSuite, k kem.KEM, h hashChoice, a aeadScheme, aeadID kem.AEADID, s signatureScheme) {
		suiteTable[id] = &cipherSuite{
			id: id, hash: h.hash, newHash: h.newHash, nh: h.hash.Size(), aead: a, sig: s,
			hpke:      kem.Suite{KEM: k, KDF: h.kdf, AEAD: aeadID},
			expanders: new(sync.Pool),
		}
	}
	// RFC 9420, Section 17.1.
	add(CipherSuiteMLS128DHKEMX25519AES128GCMSHA256Ed25519, kem.DHKEMX25519(), hashSHA256, aeadAES128GCM, kem.AEADAES128GCM, ed25519Scheme{})
	add(CipherSuiteMLS128DHKEMP256AES128GCMSHA256P256, kem.DHKEMP256(), hashSHA256, aeadAES128GCM, kem.AEADAES128GCM, ecdsaP256)
	add(CipherSuiteMLS128DHKEMX25519ChaCha20Poly1305SHA256Ed25519, kem.DHKEMX25519(), hashSHA256, aeadChaCha, kem.AEADChaCha20Poly1305, ed25519Scheme{})
	add(CipherSuiteMLS256DHKEMX448AES256GCMSHA512Ed448, kem.DHKEMX448(), hashSHA512, aeadAES256GCM, kem.AEADAES256GCM, ed448Scheme{})
	add(CipherSuiteMLS256DHKEMP521AES256GCMSHA512P521, kem.DHKEMP521(), hashSHA512, aeadAES256GCM, kem.AEADAES256GCM, ecdsaP521)
	add(CipherSuiteMLS256DHKEMX448ChaCha20Poly1305SHA512Ed448, kem.DHKEMX448(), hashSHA512, aeadChaCha, kem.AEADChaCha20Poly1305, ed448Scheme{})
	add(CipherSuiteMLS256DHKEMP384AES256GCMSHA384P384, kem.DHKEMP384(), hashSHA384, aeadAES256GCM, kem.AEADAES256GCM, ecdsaP384)
	// qpchat's post-quantum suites: the suite 1 primitives with a hybrid KEM.
	add(CipherSuiteMLS128XWingAES128GCMSHA256Ed25519, kem.XWing(), hashSHA256, aeadAES128GCM, kem.AEADAES128GCM, ed25519Scheme{})
	add(CipherSuiteMLS128HybridX25519MLKEM768AES128GCMSHA256Ed25519, kem.HybridX25519MLKEM768(), hashSHA256, aeadAES128GCM, kem.AEADAES128GCM, ed25519Scheme{})
}

// suite returns the parameters of cs, or an error if qpchat does not
// implement it.
func (cs CipherSuite) suite() (*cipherSuite, error) {
	s, ok := suiteTable[cs]
	if !ok {
		return nil, fmt.Errorf("mls: unsupported cipher suite 0x%04x", uint16(cs))
	}
	return s, nil
}

// Supported reports whether qpchat implements cs.
func (cs CipherSuite) Supported() bool {
	_, ok := suiteTable[cs]
	return ok
}

// hashOf returns Hash(data) with the suite hash (RFC 9420, Section 5.1).
func (s *cipherSuite) hashOf(data []byte) []byte {
	// The one-shot functions keep the hash state off the heap.
	switch s.hash {
	case crypto.SHA256:
		sum := sha256.Sum256(data)
		return sum[:]
	case crypto.SHA384:
		sum := sha512.Sum384(data)
		return sum[:]
	case crypto.SHA512:
		sum := sha512.Sum512(data)
		return sum[:]
	}
	h := s.newHash()
	h.Write(data)
	return h.Sum(nil)
}

// mac returns MAC(key, data), which is HMAC with the suite hash (RFC 9420,
// Section 5.1).
func (s *cipherSuite) mac(key, data []byte) []byte {
	m := hmac.New(s.newHash, key)
	m.Write(data)
	return m.Sum(nil)
}

// verifyMAC reports in constant time whether tag is MAC(key, data)
// (RFC 9420, Section 5.1), as confirmation tags are checked (Section 6.1).
func (s *cipherSuite) verifyMAC(key, data, tag []byte) bool {
	return hmac.Equal(s.mac(key, data), tag)
}

// extract implements KDF.Extract(salt, ikm), which is HKDF-Extract with the
// suite hash (RFC 9420, Section 5.1; RFC 5869, Section 2.2). An empty salt
// is the same as Nh zero bytes.
func (s *cipherSuite) extract(salt, ikm []byte) []byte {
	m := hmac.New(s.newHash, salt)
	m.Write(ikm)
	return m.Sum(nil)
}

// expand implements KDF.Expand(prk, info, length), HKDF-Expand with the
// suite hash (RFC 5869, Section 2.3). length must be at most 255*Nh; every
// caller passes a suite constant or checks a caller-supplied length first.
func (s *cipherSuite) expand(prk, info []byte, length int) []byte {
	if length < 0 || length > 255*s.nh {
		panic("mls: internal error: HKDF-Expand length out of range")
	}
	e := s.getExpander(prk)
	out := make([]byte, length)
	e.expandHMAC(append(info[:len(info):len(info)], 0), out)
	s.putExpander(e)
	return out
}

// expander computes ExpandWithLabel outputs of one secret with a single
// keyed HMAC (the secret tree derives a key, a nonce and the next secret
// from each ratchet secret, RFC 9420, Section 9.1; an epoch derives every
// sender data key and nonce from sender_data_secret, Section 6.3.2).
//
// The KDFLabel and the HMAC blocks are built in buffers of the expander,
// so that an expansion allocates nothing but its output (and nothing at
// all with expandWithLabelTo). An expander is not safe for concurrent use.
type expander struct {
	s    *cipherSuite
	m    keyedHMAC
	used bool
	// info holds the KDFLabel being expanded; block the last HMAC output
	// (T(i) of RFC 5869), zeroed after each expansion.
	info  [128]byte
	block [64]byte
}

// newExpander returns an expander for secret, which the caller keeps.
// For a one-shot use, getExpander and putExpander reuse one.
func (s *cipherSuite) newExpander(secret []byte) *expander {
	e := &expander{s: s}
	e.m.init(s.newHash)
	e.setKey(secret)
	return e
}

// getExpander returns an expander for secret from the suite's pool; give
// it back with putExpander, which wipes its key.
func (s *cipherSuite) getExpander(secret []byte) *expander {
	e, _ := s.expanders.Get().(*expander)
	if e == nil {
		e = &expander{s: s}
		e.m.init(s.newHash)
	}
	e.setKey(secret)
	return e
}

// putExpander wipes e's key and returns e to the suite's pool.
func (s *cipherSuite) putExpander(e *expander) {
	e.wipe()
	s.expanders.Put(e)
}

// setKey keys e with secret, reusing its hash states.
func (e *expander) setKey(secret []byte) {
	e.m.setKey(secret)
	e.used = false
}

// wipe erases every state derived from e's key (RFC 9420, Section 9.2:
// a consumed secret must not stay in memory through its HMAC pads).
func (e *expander) wipe() {
	e.m.wipe()
	clear(e.block[:])
}

// keyedHMAC is HMAC (RFC 2104) whose key can be replaced without
// allocating: the hash states after absorbing K^ipad and K^opad are kept
// marshaled, so that each MAC costs the compression of its message and
// of the inner hash, and a new key two compressions (the standard
// crypto/hmac allocates two hashes and its pads per key). A hash that
// cannot be marshaled falls back to crypto/hmac.
type keyedHMAC struct {
	newHash      func() hash.Hash
	inner, outer hash.Hash
	// istate and ostate are slices of states: the marshaled inner and
	// outer hash states of the current key.
	istate, ostate []byte
	states         [2][keyedHMACStateSize]byte
	pad            [128]byte
	sum            [64]byte
	// std is the crypto/hmac fallback.
	std hash.Hash
}

// keyedHMACStateSize bounds a marshaled SHA-256/384/512 state (204 bytes
// for SHA-512).
const keyedHMACStateSize = 256

func (m *keyedHMAC) init(newHash func() hash.Hash) {
	m.newHash = newHash
	m.inner, m.outer = newHash(), newHash()
	_, ia := m.inner.(encoding.BinaryAppender)
	_, iu := m.inner.(encoding.BinaryUnmarshaler)
	if !ia || !iu || m.inner.BlockSize() > len(m.pad) {
		m.inner, m.outer = nil, nil
	}
}

// setKey replaces the key (RFC 2104, Section 2: a key longer than the
// block is hashed first).
func (m *keyedHMAC) setKey(key []byte) {
	if m.inner == nil {
		m.std = hmac.New(m.newHash, key)
		return
	}
	bs := m.inner.BlockSize()
	pad := m.pad[:bs]
	clear(pad)
	if len(key) > bs {
		m.inner.Reset()
		m.inner.Write(key)
		m.inner.Sum(pad[:0])
	} else {
		copy(pad, key)
	}
	for i := range pad {
		pad[i] ^= 0x36
	}
	m.istate = m.marshalAfter(m.inner, pad, m.states[0][:0])
	for i := range pad {
		pad[i] ^= 0x36 ^ 0x5c
	}
	m.ostate = m.marshalAfter(m.outer, pad, m.states[1][:0])
	clear(pad)
	// The inner hash starts a MAC from the ipad state.
	m.unmarshal(m.inner, m.istate)
}

// marshalAfter resets h, writes pad and appends the marshaled state to dst.
func (m *keyedHMAC) marshalAfter(h hash.Hash, pad, dst []byte) []byte {
	h.Reset()
	h.Write(pad)
	st, err := h.(encoding.BinaryAppender).AppendBinary(dst)
	if err != nil || len(st) > keyedHMACStateSize {
		panic("mls: internal error: marshaling an HMAC state")
	}
	return st
}

func (m *keyedHMAC) unmarshal(h hash.Hash, st []byte) {
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(st); err != nil {
		panic("mls: internal error: restoring an HMAC state")
	}
}

// Reset starts a new MAC with the same key.
func (m *keyedHMAC) Reset() {
	if m.inner == nil {
		m.std.Reset()
		return
	}
	m.unmarshal(m.inner, m.istate)
}

func (m *keyedHMAC) Write(p []byte) (int, error) {
	if m.inner == nil {
		return m.std.Write(p)
	}
	return m.inner.Write(p)
}

// Sum appends the MAC of what was written since the last Reset to b.
func (m *keyedHMAC) Sum(b []byte) []byte {
	if m.inner == nil {
		return m.std.Sum(b)
	}
	in := m.inner.Sum(m.sum[:0])
	m.unmarshal(m.outer, m.ostate)
	m.outer.Write(in)
	return m.outer.Sum(b)
}

// keyed reports whether m holds anything derived from a key: a state
// left unwiped, or the crypto/hmac fallback.
func (m *keyedHMAC) keyed() bool {
	if m.std != nil || m.istate != nil || m.ostate != nil {
		return true
	}
	for _, st := range m.states {
		for _, c := range st {
			if c != 0 {
				return true
			}
		}
	}
	return false
}

// wipe erases the key's states: the marshaled ones and those inside the
// hashes (a reset hash holds only its initial state; the buffered bytes of
// the inner hash are labels, those of the outer one the inner hash).
func (m *keyedHMAC) wipe() {
	m.std = nil
	if m.inner == nil {
		return
	}
	clear(m.states[0][:])
	clear(m.states[1][:])
	clear(m.sum[:])
	m.istate, m.ostate = nil, nil
	m.inner.Reset()
	m.outer.Reset()
}

// expandHMAC is HKDF-Expand (RFC 5869, Section 2.3) with e's HMAC, keyed
// with the PRK, writing len(out) bytes to out. infoCounter is the info
// followed by one spare byte, which holds the block counter, so that each
// block is one Write.
func (e *expander) expandHMAC(infoCounter, out []byte) {
	m, nh := &e.m, e.s.nh
	var t []byte
	for n, counter := 0, byte(1); n < len(out); counter++ {
		// Reset only when m was used: resetting a fresh HMAC costs a
		// state snapshot.
		if e.used {
			m.Reset()
		}
		e.used = true
		m.Write(t)
		infoCounter[len(infoCounter)-1] = counter
		m.Write(infoCounter)
		t = m.Sum(e.block[:0])
		n += copy(out[n:], t[:nh])
	}
	clear(e.block[:])
}

// expandWithLabel is cipherSuite.expandWithLabel with e's secret.
func (e *expander) expandWithLabel(label string, context []byte, length int) []byte {
	if length < 0 || length > e.s.maxExpandLength() {
		panic("mls: internal error: ExpandWithLabel length out of range")
	}
	out := make([]byte, length)
	e.expandWithLabelTo(out, label, context)
	return out
}

// expandWithLabelTo writes ExpandWithLabel(secret, label, context,
// len(out)) with e's secret to out (RFC 9420, Section 8).
func (e *expander) expandWithLabelTo(out []byte, label string, context []byte) {
	if len(out) > e.s.maxExpandLength() {
		panic("mls: internal error: ExpandWithLabel length out of range")
	}
	e.expandHMAC(appendKDFLabel(e.info[:0], label, context, len(out)), out)
}

// deriveTreeSecret is cipherSuite.deriveTreeSecret with e's secret.
func (e *expander) deriveTreeSecret(label string, generation uint32, length int) []byte {
	g := [4]byte{byte(generation >> 24), byte(generation >> 16), byte(generation >> 8), byte(generation)}
	return e.expandWithLabel(label, g[:], length)
}

// maxExpandLength is the largest length expandWithLabel accepts for a
// caller-supplied length (the exporter): HKDF's limit of 255*Nh, which for
// every suite is below the uint16 limit of KDFLabel.length.
func (s *cipherSuite) maxExpandLength() int { return 255 * s.nh }

// expandWithLabel implements ExpandWithLabel from RFC 9420, Section 8:
//
//	struct {
//	    uint16 length;
//	    opaque label<V>;   // "MLS 1.0 " + Label
//	    opaque context<V>;
//	} KDFLabel;
//
//	ExpandWithLabel(Secret, Label, Context, Length) =
//	    KDF.Expand(Secret, KDFLabel, Length)
func (s *cipherSuite) expandWithLabel(secret []byte, label string, context []byte, length int) []byte {
	e := s.getExpander(secret)
	out := e.expandWithLabel(label, context, length)
	s.putExpander(e)
	return out
}

// appendKDFLabel appends the KDFLabel of expandWithLabel to b, followed by
// one spare byte for expandHMAC's block counter.
func appendKDFLabel(b []byte, label string, context []byte, length int) []byte {
	b = append(b, byte(length>>8), byte(length))
	b = appendVarint(b, len(labelPrefix)+len(label))
	b = append(b, labelPrefix...)
	b = append(b, label...)
	b = appendVarint(b, len(context))
	b = append(b, context...)
	return append(b, 0)
}

// appendVarint appends n as the minimal variable-length vector header of
// RFC 9420, Section 2.1.2. It is the append-style twin of writeVarint, for
// the hot paths that build short labelled inputs without a Builder.
func appendVarint(b []byte, n int) []byte {
	switch {
	case n < 1<<6:
		return append(b, byte(n))
	case n < 1<<14:
		return append(b, byte(n>>8)|0x40, byte(n))
	case n <= maxVarint:
		return append(b, byte(n>>24)|0x80, byte(n>>16), byte(n>>8), byte(n))
	default:
		panic("mls: internal error: vector too long to encode")
	}
}

// deriveSecret implements DeriveSecret from RFC 9420, Section 8:
// DeriveSecret(Secret, Label) = ExpandWithLabel(Secret, Label, "", KDF.Nh).
func (s *cipherSuite) deriveSecret(secret []byte, label string) []byte {
	return s.expandWithLabel(secret, label, nil, s.nh)
}

// deriveTreeSecret implements DeriveTreeSecret from RFC 9420, Section 9:
// ExpandWithLabel(Secret, Label, Generation, Length) with the generation
// encoded as a uint32.
func (s *cipherSuite) deriveTreeSecret(secret []byte, label string, generation uint32, length int) []byte {
	g := [4]byte{byte(generation >> 24), byte(generation >> 16), byte(generation >> 8), byte(generation)}
	return s.expandWithLabel(secret, label, g[:], length)
}

// signContent builds the SignContent struct of RFC 9420, Section 5.1.2:
//
//	struct {
//	    opaque label<V>;   // "MLS 1.0 " + Label
//	    opaque content<V>;
//	} SignContent;
func labeledInput(label string, content []byte) []byte {
	return appendLabeledInput(make([]byte, 0, 4+len(labelPrefix)+len(label)+4+len(content)), label, content)
}

// appendLabeledInput appends the SignContent of labeledInput to b.
func appendLabeledInput(b []byte, label string, content []byte) []byte {
	b = appendVarint(b, len(labelPrefix)+len(label))
	b = append(b, labelPrefix...)
	b = append(b, label...)
	b = appendVarint(b, len(content))
	return append(b, content...)
}

// signWithLabel implements SignWithLabel from RFC 9420, Section 5.1.2:
// Signature.Sign(SignatureKey, SignContent). rand is used only by ECDSA.
func (s *cipherSuite) signWithLabel(rand io.Reader, key *SignaturePrivateKey, label string, content []byte) ([]byte, error) {
	if key == nil || key.suite != s.id {
		return nil, errors.New("mls: signature key does not belong to the cipher suite")
	}
	buf := getScratch()
	in := appendLabeledInput(*buf, label, content)
	sig, err := key.s.sign(rand, in)
	putScratch(buf, in)
	return sig, err
}

// verifyWithLabel implements VerifyWithLabel from RFC 9420, Section 5.1.2.
// pub is a serialized SignaturePublicKey; a malformed key does not verify.
func (s *cipherSuite) verifyWithLabel(pub []byte, label string, content, signature []byte) bool {
	buf := getScratch()
	in := appendLabeledInput(*buf, label, content)
	ok := s.sig.verify(pub, in, signature)
	putScratch(buf, in)
	return ok
}

// hpkePublicKey parses a serialized HPKEPublicKey of the suite's KEM.
func (s *cipherSuite) hpkePublicKey(pub []byte) (kem.PublicKey, error) {
	pk, err := s.hpke.KEM.NewPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("mls: invalid HPKE public key: %w", err)
	}
	return pk, nil
}

// hpkePrivateKey parses a serialized HPKE private key of the suite's KEM.
func (s *cipherSuite) hpkePrivateKey(priv []byte) (kem.PrivateKey, error) {
	sk, err := s.hpke.KEM.NewPrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("mls: invalid HPKE private key: %w", err)
	}
	return sk, nil
}

// encryptWithLabel implements EncryptWithLabel from RFC 9420, Section 5.1.3:
//
//	EncryptWithLabel(PublicKey, Label, Context, Plaintext) =
//	    SealBase(PublicKey, EncryptContext, "", Plaintext)
//
// pub is a serialized HPKEPublicKey; the ephemeral key is read from rand.
func (s *cipherSuite) encryptWithLabel(rand io.Reader, pub []byte, label string, context, plaintext []byte) (kemOutput, ciphertext []byte, err error) {
	pk, err := s.hpkePublicKey(pub)
	if err != nil {
		return nil, nil, err
	}
	kemOutput, ciphertext, err = s.hpke.Seal(rand, pk, encryptContext(label, context), nil, plaintext)
	if err != nil {
		return nil, nil, fmt.Errorf("mls: HPKE seal: %w", err)
	}
	return kemOutput, ciphertext, nil
}

// preparedEncryptContext is the EncryptContext of EncryptWithLabel for one
// label and context, prepared once for sealing to many recipients
// (kem.Suite.PrepareInfo): a Welcome encrypts every new member's
// GroupSecrets under the same context, the encrypted GroupInfo, which
// holds the ratchet tree.
type preparedEncryptContext struct{ info *kem.Info }

// prepareEncryptContext prepares EncryptContext(label, context) for
// encryptWithPrepared.
func (s *cipherSuite) prepareEncryptContext(label string, context []byte) (*preparedEncryptContext, error) {
	info, err := s.hpke.PrepareInfo(encryptContext(label, context))
	if err != nil {
		return nil, fmt.Errorf("mls: HPKE info: %w", err)
	}
	return &preparedEncryptContext{info: info}, nil
}

// encryptWithPrepared is encryptWithLabel with a prepared EncryptContext;
// the output is the same as encryptWithLabel's for the same randomness.
func (s *cipherSuite) encryptWithPrepared(rand io.Reader, pub []byte, pc *preparedEncryptContext, plaintext []byte) (kemOutput, ciphertext []byte, err error) {
	pk, err := s.hpkePublicKey(pub)
	if err != nil {
		return nil, nil, err
	}
	return s.sealWithPrepared(rand, pk, pc, plaintext)
}

// sealWithPrepared is encryptWithPrepared to a parsed public key.
func (s *cipherSuite) sealWithPrepared(rand io.Reader, pk kem.PublicKey, pc *preparedEncryptContext, plaintext []byte) (kemOutput, ciphertext []byte, err error) {
	kemOutput, ciphertext, err = s.hpke.SealWithInfo(rand, pk, pc.info, nil, plaintext)
	if err != nil {
		return nil, nil, fmt.Errorf("mls: HPKE seal: %w", err)
	}
	return kemOutput, ciphertext, nil
}

// errDecryptWithLabel is the one error DecryptWithLabel returns for any
// failure, so that a caller cannot learn which step failed.
var errDecryptWithLabel = errors.New("mls: HPKE decryption failed")

// decryptWithLabel implements DecryptWithLabel from RFC 9420, Section 5.1.3:
//
//	DecryptWithLabel(PrivateKey, Label, Context, KEMOutput, Ciphertext) =
//	    OpenBase(KEMOutput, PrivateKey, EncryptContext, "", Ciphertext)
func (s *cipherSuite) decryptWithLabel(priv kem.PrivateKey, label string, context, kemOutput, ciphertext []byte) ([]byte, error) {
	if priv == nil || priv.KEM().ID() != s.hpke.KEM.ID() {
		return nil, errDecryptWithLabel
	}
	pt, err := s.hpke.Open(priv, kemOutput, encryptContext(label, context), nil, ciphertext)
	if err != nil {
		return nil, errDecryptWithLabel
	}
	return pt, nil
}

// encryptContext builds the EncryptContext struct of RFC 9420, Section 5.1.3,
// the HPKE info of EncryptWithLabel. It has the same layout as SignContent:
//
//	struct {
//	    opaque label<V>;   // "MLS 1.0 " + Label
//	    opaque context<V>;
//	} EncryptContext;
func encryptContext(label string, context []byte) []byte {
	return labeledInput(label, context)
}

// SignaturePrivateKey is a parsed signature private key of one cipher suite's
// signature scheme (RFC 9420, Section 5.1.1). Parsing once keeps the cost of
// key expansion out of every signature.
type SignaturePrivateKey struct {
	suite CipherSuite
	s     signer
}

// GenerateSignatureKey creates a signature key pair for suite, reading the
// private key bytes from rand, so that a deterministic reader gives a
// deterministic key (Go 1.26 key generation ignores its reader).
func GenerateSignatureKey(suite CipherSuite, rand io.Reader) (*SignaturePrivateKey, error) {
	s, err := suite.suite()
	if err != nil {
		return nil, err
	}
	k, err := s.sig.generate(rand)
	if err != nil {
		return nil, err
	}
	return &SignaturePrivateKey{suite: suite, s: k}, nil
}

// ParseSignaturePrivateKey parses a private key of suite's signature scheme:
// the 32-byte seed for Ed25519, the 57-byte seed for Ed448, the big-endian
// scalar (SEC 1 Field-Element-to-Octet-String) for ECDSA.
func ParseSignaturePrivateKey(suite CipherSuite, b []byte) (*SignaturePrivateKey, error) {
	s, err := suite.suite()
	if err != nil {
		return nil, err
	}
	k, err := s.sig.newPrivateKey(b)
	if err != nil {
		return nil, err
	}
	return &SignaturePrivateKey{suite: suite, s: k}, nil
}

// Suite returns the cipher suite the key belongs to.
func (k *SignaturePrivateKey) Suite() CipherSuite { return k.suite }

// Bytes returns the serialized private key, as ParseSignaturePrivateKey
// reads it. The caller owns the copy and should zero it after use.
func (k *SignaturePrivateKey) Bytes() []byte { return k.s.bytes() }

// PublicKey returns the serialized SignaturePublicKey.
func (k *SignaturePrivateKey) PublicKey() []byte { return append([]byte(nil), k.s.publicKey()...) }

// signatureScheme is the signature algorithm of a suite.
type signatureScheme interface {
	generate(rand io.Reader) (signer, error)
	newPrivateKey(b []byte) (signer, error)
	// verify reports whether sig is a valid signature of msg under the
	// serialized public key pub. Malformed keys and signatures are invalid.
	verify(pub, msg, sig []byte) bool
	// checkPublicKey reports whether pub is a well-formed public key.
	checkPublicKey(pub []byte) error
}

// signer is a parsed private key.
type signer interface {
	sign(rand io.Reader, msg []byte) ([]byte, error)
	publicKey() []byte
	bytes() []byte
}

// ed25519Scheme is pure Ed25519 (RFC 8032), TLS SignatureScheme ed25519.
type ed25519Scheme struct{}

type ed25519Signer struct {
	key ed25519.PrivateKey
	// exp is the key expanded for signing (ed25519.go), so that a
	// signature does not hash the seed again.
	exp *edExpandedKey
}

func (ed25519Scheme) generate(rand io.Reader) (signer, error) {
	seed := make([]byte, ed25519.SeedSize)
	defer clear(seed)
	if _, err := io.ReadFull(rand, seed); err != nil {
		return nil, fmt.Errorf("mls: reading randomness: %w", err)
	}
	return newEd25519Signer(ed25519.NewKeyFromSeed(seed)), nil
}

func (ed25519Scheme) newPrivateKey(b []byte) (signer, error) {
	if len(b) != ed25519.SeedSize {
		return nil, fmt.Errorf("mls: invalid Ed25519 private key length %d", len(b))
	}
	return newEd25519Signer(ed25519.NewKeyFromSeed(b)), nil
}

// verify verifies under the one rule of every Ed25519 path, single or
// batched (ed25519.go, docs/BATCH-VERIFY.md), with the parsed key cached.
func (ed25519Scheme) verify(pub, msg, sig []byte) bool {
	return edVerify(pub, msg, sig)
}

func (ed25519Scheme) checkPublicKey(pub []byte) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("mls: invalid Ed25519 public key length %d", len(pub))
	}
	return nil
}

func newEd25519Signer(key ed25519.PrivateKey) ed25519Signer {
	return ed25519Signer{key: key, exp: expandEdKey(key)}
}

func (k ed25519Signer) sign(_ io.Reader, msg []byte) ([]byte, error) {
	if k.exp == nil {
		return ed25519.Sign(k.key, msg), nil
	}
	return k.exp.sign(msg), nil
}

func (k ed25519Signer) publicKey() []byte { return k.key[ed25519.SeedSize:] }
func (k ed25519Signer) bytes() []byte     { return append([]byte(nil), k.key.Seed()...) }

// ed448Scheme is pure Ed448 (RFC 8032) with an empty context, TLS
// SignatureScheme ed448.
type ed448Scheme struct{}

type ed448Signer struct {
	key ed448.PrivateKey
}

func (ed448Scheme) generate(rand io.Reader) (signer, error) {
	seed := make([]byte, ed448.SeedSize)
	defer clear(seed)
	if _, err := io.ReadFull(rand, seed); err != nil {
		return nil, fmt.Errorf("mls: reading randomness: %w", err)
	}
	return ed448Signer{ed448.NewKeyFromSeed(seed)}, nil
}

func (ed448Scheme) newPrivateKey(b []byte) (signer, error) {
	if len(b) != ed448.SeedSize {
		return nil, fmt.Errorf("mls: invalid Ed448 private key length %d", len(b))
	}
	return ed448Signer{ed448.NewKeyFromSeed(b)}, nil
}

func (ed448Scheme) verify(pub, msg, sig []byte) bool {
	if len(pub) != ed448.PublicKeySize {
		return false
	}
	return ed448.Verify(ed448.PublicKey(pub), msg, sig, "")
}

func (ed448Scheme) checkPublicKey(pub []byte) error {
	if len(pub) != ed448.PublicKeySize {
		return fmt.Errorf("mls: invalid Ed448 public key length %d", len(pub))
	}
	return nil
}

func (k ed448Signer) sign(_ io.Reader, msg []byte) ([]byte, error) {
	return ed448.Sign(k.key, msg, ""), nil
}

func (k ed448Signer) publicKey() []byte { return k.key[ed448.SeedSize:] }
func (k ed448Signer) bytes() []byte     { return append([]byte(nil), k.key.Seed()...) }

// ecdsaScheme is ECDSA over a NIST curve with the hash TLS 1.3 pairs with it
// (ecdsa_secp256r1_sha256, ecdsa_secp384r1_sha384, ecdsa_secp521r1_sha512).
// Public keys are uncompressed points and signatures are DER, as in TLS.
type ecdsaScheme struct {
	curve   elliptic.Curve
	newHash func() hash.Hash
	// scalarSize is the length of a serialized private key; topMask clears
	// the bits above the order's bit length when generating (P-521).
	scalarSize int
	topMask    byte
}

var (
	ecdsaP256 = ecdsaScheme{curve: elliptic.P256(), newHash: newSHA256, scalarSize: 32, topMask: 0xff}
	ecdsaP384 = ecdsaScheme{curve: elliptic.P384(), newHash: newSHA384, scalarSize: 48, topMask: 0xff}
	ecdsaP521 = ecdsaScheme{curve: elliptic.P521(), newHash: newSHA512, scalarSize: 66, topMask: 0x01}
)

type ecdsaSigner struct {
	scheme ecdsaScheme
	key    *ecdsa.PrivateKey
	pub    []byte
}

// generate draws scalars from rand until one is in [1, n-1] (rejection
// sampling, as SEC 1 and FIPS 186-5 A.2.2 allow), so that the key is a
// function of the reader's output.
func (s ecdsaScheme) generate(rand io.Reader) (signer, error) {
	b := make([]byte, s.scalarSize)
	defer clear(b)
	for range 64 {
		if _, err := io.ReadFull(rand, b); err != nil {
			return nil, fmt.Errorf("mls: reading randomness: %w", err)
		}
		b[0] &= s.topMask
		if k, err := s.newPrivateKey(b); err == nil {
			return k, nil
		}
	}
	return nil, errors.New("mls: randomness source keeps producing invalid ECDSA scalars")
}

// newPrivateKey parses a big-endian scalar. The canonical form has
// exactly scalarSize bytes; shorter inputs, with leading zero bytes
// stripped, are accepted too because some implementations (and the IETF
// P-521 vectors) serialize the integer minimally.
func (s ecdsaScheme) newPrivateKey(b []byte) (signer, error) {
	if len(b) == 0 || len(b) > s.scalarSize {
		return nil, fmt.Errorf("mls: invalid ECDSA private key length %d", len(b))
	}
	if len(b) < s.scalarSize {
		padded := make([]byte, s.scalarSize)
		defer clear(padded)
		copy(padded[s.scalarSize-len(b):], b)
		b = padded
	}
	key, err := ecdsa.ParseRawPrivateKey(s.curve, b)
	if err != nil {
		return nil, errors.New("mls: invalid ECDSA private key")
	}
	pub, err := key.PublicKey.Bytes()
	if err != nil {
		return nil, errors.New("mls: invalid ECDSA private key")
	}
	return ecdsaSigner{scheme: s, key: key, pub: pub}, nil
}

func (s ecdsaScheme) digest(msg []byte) []byte {
	h := s.newHash()
	h.Write(msg)
	return h.Sum(nil)
}

func (s ecdsaScheme) verify(pub, msg, sig []byte) bool {
	key, err := ecdsa.ParseUncompressedPublicKey(s.curve, pub)
	if err != nil {
		return false
	}
	return ecdsa.VerifyASN1(key, s.digest(msg), sig)
}

func (s ecdsaScheme) checkPublicKey(pub []byte) error {
	if _, err := ecdsa.ParseUncompressedPublicKey(s.curve, pub); err != nil {
		return errors.New("mls: invalid ECDSA public key")
	}
	return nil
}

// sign returns a DER-encoded ECDSA signature. Since Go 1.26 the standard
// library draws the nonce from its own secure source and ignores rand.
func (k ecdsaSigner) sign(rand io.Reader, msg []byte) ([]byte, error) {
	return ecdsa.SignASN1(rand, k.key, k.scheme.digest(msg))
}

func (k ecdsaSigner) publicKey() []byte { return k.pub }

func (k ecdsaSigner) bytes() []byte {
	b, err := k.key.Bytes()
	if err != nil {
		panic("mls: internal error: parsed ECDSA key does not serialize: " + err.Error())
	}
	return b
}
