package mls

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"fmt"
	"hash"
	"io"
	mathrand "math/rand/v2"
	"sort"
	"testing"

	"qpchat/internal/vectors"
)

// loadMLSVectors reads one file of the IETF MLS test vectors.
func loadMLSVectors(t *testing.T, name string, v any) {
	t.Helper()
	vectors.Load(t, "QPCHAT_MLS_VECTORS", "mls-test-vectors", name, v)
}

// suiteTally counts, per cipher suite, the vector entries that passed and
// failed, and logs the counts at the end of a test.
type suiteTally struct {
	file       string
	pass, fail map[CipherSuite]int
}

func newSuiteTally(file string) *suiteTally {
	return &suiteTally{file: file, pass: map[CipherSuite]int{}, fail: map[CipherSuite]int{}}
}

// run runs f as a subtest for one entry of suite and records the outcome.
func (c *suiteTally) run(t *testing.T, suite CipherSuite, i int, f func(t *testing.T, s *cipherSuite)) {
	t.Helper()
	ok := t.Run(fmt.Sprintf("suite%d/%d", suite, i), func(t *testing.T) {
		s, err := suite.suite()
		if err != nil {
			t.Fatalf("suite %d in %s: %v", suite, c.file, err)
		}
		f(t, s)
	})
	if ok {
		c.pass[suite]++
	} else {
		c.fail[suite]++
	}
}

// log reports the per-suite counts and fails the test if nothing ran.
func (c *suiteTally) log(t *testing.T) {
	t.Helper()
	var suites []int
	for s := range c.pass {
		suites = append(suites, int(s))
	}
	for s := range c.fail {
		if _, ok := c.pass[s]; !ok {
			suites = append(suites, int(s))
		}
	}
	sort.Ints(suites)
	if len(suites) == 0 {
		t.Errorf("%s: no entries", c.file)
	}
	for _, s := range suites {
		pass, fail := c.pass[CipherSuite(s)], c.fail[CipherSuite(s)]
		t.Logf("%s: suite %d: %d/%d entries passed", c.file, s, pass, pass+fail)
	}
}

type cryptoBasicsVector struct {
	CipherSuite CipherSuite `json:"cipher_suite"`
	RefHash     struct {
		Label string      `json:"label"`
		Value vectors.Hex `json:"value"`
		Out   vectors.Hex `json:"out"`
	} `json:"ref_hash"`
	ExpandWithLabel struct {
		Secret  vectors.Hex `json:"secret"`
		Label   string      `json:"label"`
		Context vectors.Hex `json:"context"`
		Length  uint16      `json:"length"`
		Out     vectors.Hex `json:"out"`
	} `json:"expand_with_label"`
	DeriveSecret struct {
		Secret vectors.Hex `json:"secret"`
		Label  string      `json:"label"`
		Out    vectors.Hex `json:"out"`
	} `json:"derive_secret"`
	DeriveTreeSecret struct {
		Secret     vectors.Hex `json:"secret"`
		Label      string      `json:"label"`
		Generation uint32      `json:"generation"`
		Length     uint16      `json:"length"`
		Out        vectors.Hex `json:"out"`
	} `json:"derive_tree_secret"`
	SignWithLabel struct {
		Priv      vectors.Hex `json:"priv"`
		Pub       vectors.Hex `json:"pub"`
		Content   vectors.Hex `json:"content"`
		Label     string      `json:"label"`
		Signature vectors.Hex `json:"signature"`
	} `json:"sign_with_label"`
	EncryptWithLabel struct {
		Priv       vectors.Hex `json:"priv"`
		Pub        vectors.Hex `json:"pub"`
		Label      string      `json:"label"`
		Context    vectors.Hex `json:"context"`
		Plaintext  vectors.Hex `json:"plaintext"`
		KEMOutput  vectors.Hex `json:"kem_output"`
		Ciphertext vectors.Hex `json:"ciphertext"`
	} `json:"encrypt_with_label"`
}

func TestCryptoBasics(t *testing.T) {
	var tests []cryptoBasicsVector
	loadMLSVectors(t, "crypto-basics.json", &tests)
	tally := newSuiteTally("crypto-basics.json")
	for i, tc := range tests {
		tally.run(t, tc.CipherSuite, i, func(t *testing.T, s *cipherSuite) { testCryptoBasics(t, s, &tc) })
	}
	tally.log(t)
}

func testCryptoBasics(t *testing.T, s *cipherSuite, tc *cryptoBasicsVector) {
	r := tc.RefHash
	if got := s.refHash(r.Label, r.Value); !bytes.Equal(got, r.Out) {
		t.Errorf("RefHash = %x, want %x", got, r.Out)
	}

	e := tc.ExpandWithLabel
	if got := s.expandWithLabel(e.Secret, e.Label, e.Context, int(e.Length)); !bytes.Equal(got, e.Out) {
		t.Errorf("ExpandWithLabel = %x, want %x", got, e.Out)
	}

	d := tc.DeriveSecret
	if got := s.deriveSecret(d.Secret, d.Label); !bytes.Equal(got, d.Out) {
		t.Errorf("DeriveSecret = %x, want %x", got, d.Out)
	}

	dt := tc.DeriveTreeSecret
	if got := s.deriveTreeSecret(dt.Secret, dt.Label, dt.Generation, int(dt.Length)); !bytes.Equal(got, dt.Out) {
		t.Errorf("DeriveTreeSecret = %x, want %x", got, dt.Out)
	}

	sg := tc.SignWithLabel
	if !s.verifyWithLabel(sg.Pub, sg.Label, sg.Content, sg.Signature) {
		t.Errorf("VerifyWithLabel(pub, label, content, signature) = false")
	}
	key, err := ParseSignaturePrivateKey(s.id, sg.Priv)
	if err != nil {
		t.Fatalf("ParseSignaturePrivateKey: %v", err)
	}
	if got := key.PublicKey(); !bytes.Equal(got, sg.Pub) {
		t.Errorf("public key of priv = %x, want %x", got, sg.Pub)
	}
	if got := key.Bytes(); !bytes.Equal(got, sg.Priv) {
		t.Errorf("private key round trip = %x, want %x", got, sg.Priv)
	}
	sig, err := s.signWithLabel(rand.Reader, key, sg.Label, sg.Content)
	if err != nil {
		t.Fatalf("SignWithLabel: %v", err)
	}
	if !s.verifyWithLabel(sg.Pub, sg.Label, sg.Content, sig) {
		t.Errorf("VerifyWithLabel(pub, label, content, SignWithLabel(priv, label, content)) = false")
	}
	// Negative checks: the label and the content are both bound.
	if s.verifyWithLabel(sg.Pub, sg.Label+"x", sg.Content, sig) {
		t.Errorf("VerifyWithLabel accepted a signature under another label")
	}
	if s.verifyWithLabel(sg.Pub, sg.Label, append([]byte{0}, sg.Content...), sig) {
		t.Errorf("VerifyWithLabel accepted a signature of other content")
	}

	testEncryptWithLabel(t, s, tc)
}

func testEncryptWithLabel(t *testing.T, s *cipherSuite, tc *cryptoBasicsVector) {
	e := tc.EncryptWithLabel
	priv, err := s.hpkePrivateKey(e.Priv)
	if err != nil {
		t.Fatalf("HPKE private key: %v", err)
	}
	if got := priv.PublicKey().Bytes(); !bytes.Equal(got, e.Pub) {
		t.Errorf("HPKE public key of priv = %x, want %x", got, e.Pub)
	}
	pt, err := s.decryptWithLabel(priv, e.Label, e.Context, e.KEMOutput, e.Ciphertext)
	if err != nil {
		t.Fatalf("DecryptWithLabel(vector): %v", err)
	}
	if !bytes.Equal(pt, e.Plaintext) {
		t.Errorf("DecryptWithLabel(vector) = %x, want %x", pt, e.Plaintext)
	}
	kemOutput, ct, err := s.encryptWithLabel(rand.Reader, e.Pub, e.Label, e.Context, e.Plaintext)
	if err != nil {
		t.Fatalf("EncryptWithLabel: %v", err)
	}
	pt, err = s.decryptWithLabel(priv, e.Label, e.Context, kemOutput, ct)
	if err != nil {
		t.Fatalf("DecryptWithLabel(EncryptWithLabel(...)): %v", err)
	}
	if !bytes.Equal(pt, e.Plaintext) {
		t.Errorf("DecryptWithLabel(EncryptWithLabel(...)) = %x, want %x", pt, e.Plaintext)
	}
	// The label and the context are bound to the ciphertext.
	if _, err := s.decryptWithLabel(priv, e.Label+"x", e.Context, kemOutput, ct); err == nil {
		t.Errorf("DecryptWithLabel accepted another label")
	}
	if _, err := s.decryptWithLabel(priv, e.Label, append([]byte{1}, e.Context...), kemOutput, ct); err == nil {
		t.Errorf("DecryptWithLabel accepted another context")
	}
}

// benchSuites are the suites the issue 3 benchmarks cover.
var benchSuites = []CipherSuite{
	CipherSuiteMLS128DHKEMX25519AES128GCMSHA256Ed25519,
	CipherSuiteMLS128DHKEMP256AES128GCMSHA256P256,
	CipherSuiteMLS128DHKEMX25519ChaCha20Poly1305SHA256Ed25519,
}

func BenchmarkExpandWithLabel(b *testing.B) {
	for _, cs := range benchSuites {
		b.Run(fmt.Sprintf("suite%d", cs), func(b *testing.B) {
			s, err := cs.suite()
			if err != nil {
				b.Fatal(err)
			}
			secret := bytes.Repeat([]byte{1}, s.nh)
			context := make([]byte, 32)
			b.ReportAllocs()
			for b.Loop() {
				s.expandWithLabel(secret, "key", context, s.aead.nk)
			}
		})
	}
}

// BenchmarkSignWithLabel and BenchmarkVerifyWithLabel give the cost of the
// signature alone, the floor under PrivateMessage protect and unprotect.
func BenchmarkSignWithLabel(b *testing.B) {
	for _, cs := range benchSuites {
		b.Run(fmt.Sprintf("suite%d", cs), func(b *testing.B) {
			s, _ := cs.suite()
			key, err := GenerateSignatureKey(cs, rand.Reader)
			if err != nil {
				b.Fatal(err)
			}
			content := make([]byte, 300)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.signWithLabel(rand.Reader, key, labelFramedContentTBS, content); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkVerifyWithLabel(b *testing.B) {
	for _, cs := range benchSuites {
		b.Run(fmt.Sprintf("suite%d", cs), func(b *testing.B) {
			s, _ := cs.suite()
			key, err := GenerateSignatureKey(cs, rand.Reader)
			if err != nil {
				b.Fatal(err)
			}
			content := make([]byte, 300)
			sig, err := s.signWithLabel(rand.Reader, key, labelFramedContentTBS, content)
			if err != nil {
				b.Fatal(err)
			}
			pub := key.PublicKey()
			b.ReportAllocs()
			for b.Loop() {
				if !s.verifyWithLabel(pub, labelFramedContentTBS, content, sig) {
					b.Fatal("signature does not verify")
				}
			}
		})
	}
}

// TestSuitesRoundTrip exercises every suite in the table, including the
// post-quantum ones that have no IETF vectors: deterministic key
// generation, signatures, EncryptWithLabel, the external key pair and
// external init, and a PrivateMessage round trip.
func TestSuitesRoundTrip(t *testing.T) {
	for id := range suiteTable {
		t.Run(fmt.Sprintf("suite%#04x", uint16(id)), func(t *testing.T) {
			s, err := id.suite()
			if err != nil {
				t.Fatal(err)
			}
			if !id.Supported() {
				t.Errorf("Supported() = false for a suite in the table")
			}
			seeded := func() io.Reader { return mathrand.NewChaCha8([32]byte{byte(id), byte(id >> 8)}) }

			// Signature keys are a function of the reader.
			k1, err := GenerateSignatureKey(id, seeded())
			if err != nil {
				t.Fatal(err)
			}
			k2, _ := GenerateSignatureKey(id, seeded())
			if !bytes.Equal(k1.Bytes(), k2.Bytes()) || !bytes.Equal(k1.PublicKey(), k2.PublicKey()) {
				t.Errorf("GenerateSignatureKey is not deterministic in its reader")
			}
			k3, err := ParseSignaturePrivateKey(id, k1.Bytes())
			if err != nil || !bytes.Equal(k3.PublicKey(), k1.PublicKey()) {
				t.Errorf("ParseSignaturePrivateKey(Bytes()) = %v, or another public key", err)
			}
			if err := s.sig.checkPublicKey(k1.PublicKey()); err != nil {
				t.Errorf("checkPublicKey(own key): %v", err)
			}
			sig, err := s.signWithLabel(rand.Reader, k1, "label", []byte("content"))
			if err != nil {
				t.Fatal(err)
			}
			if !s.verifyWithLabel(k1.PublicKey(), "label", []byte("content"), sig) {
				t.Errorf("own signature does not verify")
			}
			if s.verifyWithLabel(k1.PublicKey()[1:], "label", []byte("content"), sig) {
				t.Errorf("a truncated public key verified")
			}
			if _, err := ParseSignaturePrivateKey(id, nil); err == nil {
				t.Errorf("ParseSignaturePrivateKey(nil): no error")
			}

			// EncryptWithLabel to a fresh HPKE key.
			hpkeKey, err := s.hpke.KEM.GenerateKeyPair(seeded())
			if err != nil {
				t.Fatal(err)
			}
			kemOutput, ct, err := s.encryptWithLabel(rand.Reader, hpkeKey.PublicKey().Bytes(), "label", []byte("ctx"), []byte("secret"))
			if err != nil {
				t.Fatal(err)
			}
			if pt, err := s.decryptWithLabel(hpkeKey, "label", []byte("ctx"), kemOutput, ct); err != nil || string(pt) != "secret" {
				t.Errorf("DecryptWithLabel = %q, %v", pt, err)
			}
			if _, _, err := s.encryptWithLabel(rand.Reader, []byte{1, 2, 3}, "label", nil, nil); err == nil {
				t.Errorf("EncryptWithLabel to a malformed public key: no error")
			}

			// Key schedule, external key pair and external init.
			epoch, _, _ := newEpochSecrets(s, make([]byte, s.nh), nil, nil, []byte("gc"))
			ext, err := epoch.externalKeyPair()
			if err != nil {
				t.Fatal(err)
			}
			kemOutput, joinerInit, err := s.newExternalInit(rand.Reader, ext.PublicKey().Bytes())
			if err != nil {
				t.Fatal(err)
			}
			if groupInit, err := s.externalInitSecret(ext, kemOutput); err != nil || !bytes.Equal(groupInit, joinerInit) {
				t.Errorf("external init secrets differ (err %v)", err)
			}

			// PrivateMessage round trip.
			gc := &GroupContext{Version: ProtocolVersionMLS10, CipherSuite: id, GroupID: []byte("g"), Epoch: 3}
			fc := &FramedContent{
				GroupID: gc.GroupID, Epoch: gc.Epoch, Sender: Sender{Type: SenderTypeMember, LeafIndex: 2},
				ContentType: ContentTypeApplication, ApplicationData: []byte("hello"),
			}
			ac, err := s.signFramedContent(rand.Reader, k1, WireFormatPrivateMessage, fc, gc)
			if err != nil {
				t.Fatal(err)
			}
			sender, _ := newSecretTree(s, epoch.encryptionSecret, 3)
			receiver, _ := newSecretTree(s, epoch.encryptionSecret, 3)
			pm, err := s.protectPrivateMessage(rand.Reader, ac, sender, epoch.senderDataSecret, 16)
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.unprotectPrivate(pm, receiver, s.newSenderDataKeys(epoch.senderDataSecret), gc, func(*FramedContent) ([]byte, error) { return k1.PublicKey(), nil })
			if err != nil || string(got.Content.ApplicationData) != "hello" {
				t.Errorf("unprotectPrivate = %v, %v", got, err)
			}
		})
	}
}

// FuzzParseSignaturePrivateKey checks that parsing arbitrary bytes as a
// private key of any suite never panics and that an accepted key
// re-serializes to its canonical form, which parses to the same key.
func FuzzParseSignaturePrivateKey(f *testing.F) {
	f.Add(uint16(1), bytes.Repeat([]byte{1}, 32))
	f.Add(uint16(2), bytes.Repeat([]byte{1}, 32))
	f.Add(uint16(4), bytes.Repeat([]byte{1}, 57))
	f.Add(uint16(5), bytes.Repeat([]byte{1}, 65))
	f.Add(uint16(7), bytes.Repeat([]byte{0xff}, 48))
	f.Fuzz(func(t *testing.T, suite uint16, data []byte) {
		k, err := ParseSignaturePrivateKey(CipherSuite(suite), data)
		if err != nil {
			if k != nil {
				t.Fatalf("key returned with error %v", err)
			}
			return
		}
		canonical := k.Bytes()
		if len(canonical) == len(data) && !bytes.Equal(canonical, data) {
			t.Fatalf("Bytes() = %x, want %x", canonical, data)
		}
		k2, err := ParseSignaturePrivateKey(CipherSuite(suite), canonical)
		if err != nil || !bytes.Equal(k2.PublicKey(), k.PublicKey()) {
			t.Fatalf("canonical form does not parse to the same key: %v", err)
		}
	})
}

// TestExtractExpandMatchHKDF cross-checks the suite's KDF against
// crypto/hkdf, including multi-block outputs that no vector covers.
func TestExtractExpandMatchHKDF(t *testing.T) {
	for id, s := range suiteTable {
		salt, ikm, info := []byte("salt"), []byte("input keying material"), []byte("info")
		wantPRK, err := hkdf.Extract(s.newHash, ikm, salt)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.extract(salt, ikm); !bytes.Equal(got, wantPRK) {
			t.Errorf("suite %d: extract = %x, want %x", id, got, wantPRK)
		}
		for _, n := range []int{0, 1, s.nh - 1, s.nh, s.nh + 1, 3*s.nh + 5, 255 * s.nh} {
			want, err := hkdf.Expand(s.newHash, wantPRK, string(info), n)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.expand(wantPRK, info, n); !bytes.Equal(got, want) {
				t.Errorf("suite %d: expand(%d) = %x, want %x", id, n, got, want)
			}
		}
	}
}

// TestEncryptWithPrepared checks that encrypting under a prepared
// EncryptContext (as a Welcome does for every new member) gives exactly
// the bytes of EncryptWithLabel with the same randomness, and decrypts.
func TestEncryptWithPrepared(t *testing.T) {
	for _, suite := range simSuites {
		t.Run(suiteName(suite), func(t *testing.T) {
			s, err := suite.suite()
			if err != nil {
				t.Fatal(err)
			}
			priv, err := s.hpke.KEM.GenerateKeyPair(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			pub := priv.PublicKey().Bytes()
			context := bytes.Repeat([]byte{0xab}, 100000)
			pc, err := s.prepareEncryptContext(labelWelcomeHPKE, context)
			if err != nil {
				t.Fatal(err)
			}
			seed := bytes.Repeat([]byte{3}, 4096)
			k1, c1, err := s.encryptWithLabel(bytes.NewReader(seed), pub, labelWelcomeHPKE, context, []byte("secrets"))
			if err != nil {
				t.Fatal(err)
			}
			k2, c2, err := s.encryptWithPrepared(bytes.NewReader(seed), pub, pc, []byte("secrets"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(k1, k2) || !bytes.Equal(c1, c2) {
				t.Fatal("encryptWithPrepared differs from encryptWithLabel")
			}
			pt, err := s.decryptWithLabel(priv, labelWelcomeHPKE, context, k2, c2)
			if err != nil || string(pt) != "secrets" {
				t.Fatalf("decryptWithLabel = %q, %v", pt, err)
			}
			if _, _, err := s.encryptWithPrepared(rand.Reader, pub[:len(pub)-1], pc, nil); err == nil {
				t.Fatal("encryptWithPrepared accepted a truncated public key")
			}
		})
	}
}

// TestKeyedHMAC checks keyedHMAC against crypto/hmac for every suite hash,
// keys shorter than, as long as and longer than the block, several MACs
// per key and keys replaced in place, and that wipe leaves no state.
func TestKeyedHMAC(t *testing.T) {
	for _, newHash := range []func() hash.Hash{newSHA256, newSHA384, newSHA512} {
		var m keyedHMAC
		m.init(newHash)
		if m.inner == nil {
			t.Fatalf("hash of size %d falls back to crypto/hmac", newHash().Size())
		}
		bs := newHash().BlockSize()
		for _, kl := range []int{0, 1, 32, bs - 1, bs, bs + 1, 3 * bs} {
			key := bytes.Repeat([]byte{byte(kl) + 1}, kl)
			m.setKey(key)
			for i, msg := range [][]byte{nil, []byte("a"), bytes.Repeat([]byte{7}, 2*bs+5)} {
				if i > 0 {
					m.Reset()
				}
				m.Write(msg)
				want := hmac.New(newHash, key)
				want.Write(msg)
				if got := m.Sum([]byte("prefix")); !bytes.Equal(got, want.Sum([]byte("prefix"))) {
					t.Errorf("hash size %d, key length %d, message %d: MAC differs from crypto/hmac", newHash().Size(), kl, i)
				}
			}
			m.wipe()
			if m.keyed() {
				t.Errorf("hash size %d: state left after wipe", newHash().Size())
			}
		}
	}
}
