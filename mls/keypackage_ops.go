package mls

// This file creates KeyPackages (RFC 9420, Section 10) and validates those
// received (Section 10.1).

import (
	"bytes"
	"crypto/sha512"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"
	"time"

	"qpchat/kem"

	"golang.org/x/crypto/cryptobyte"
)

// labelKeyPackageTBS is the SignWithLabel label of KeyPackage signatures
// (RFC 9420, Section 10).
const labelKeyPackageTBS = "KeyPackageTBS"

// keyPackageBackdate is how far before "now" a new KeyPackage's lifetime
// starts, so that a receiver whose clock is a little behind accepts it.
const keyPackageBackdate = time.Hour

// KeyPackagePrivate is a KeyPackage with the private keys behind it: the
// HPKE private keys of its init_key and of its leaf's encryption_key, and
// the member's signature key. The init key must be deleted once a Welcome
// for the KeyPackage has been processed (RFC 9420, Section 16.8).
type KeyPackagePrivate struct {
	KeyPackage     KeyPackage
	InitPriv       []byte
	EncryptionPriv []byte
	Signer         *SignaturePrivateKey
}

// KeyPackageOptions are the optional contents of a new KeyPackage. The
// zero value gives a KeyPackage valid for 90 days that supports exactly
// the KeyPackage's suite, basic credentials and the default extensions.
type KeyPackageOptions struct {
	// Lifetime is the validity after now; zero means 90 days.
	Lifetime time.Duration
	// Capabilities replaces the default capabilities when non-nil; the
	// KeyPackage's suite and mls10 are added if missing.
	Capabilities *Capabilities
	// LeafExtensions and Extensions are the leaf's and the KeyPackage's
	// extensions.
	LeafExtensions Extensions
	Extensions     Extensions
}

// NewKeyPackage creates a KeyPackage for the member with credential cred
// and signature key signer (RFC 9420, Section 10). The init and
// encryption key pairs are drawn from rand, so a deterministic reader
// gives a deterministic KeyPackage (Ed25519 signatures are deterministic;
// ECDSA ones also read rand).
func NewKeyPackage(rand io.Reader, suite CipherSuite, cred Credential, signer *SignaturePrivateKey, now time.Time, opts *KeyPackageOptions) (*KeyPackagePrivate, error) {
	cs, err := suite.suite()
	if err != nil {
		return nil, err
	}
	if signer == nil || signer.Suite() != suite {
		return nil, errors.New("mls: signature key does not belong to the cipher suite")
	}
	if opts == nil {
		opts = &KeyPackageOptions{}
	}
	lifetime := opts.Lifetime
	if lifetime == 0 {
		lifetime = 90 * 24 * time.Hour
	}
	caps := Capabilities{
		Versions:     []ProtocolVersion{ProtocolVersionMLS10},
		CipherSuites: []CipherSuite{suite},
		Credentials:  []CredentialType{cred.Type},
	}
	if opts.Capabilities != nil {
		caps = *opts.Capabilities
		if !containsVersion(caps.Versions, ProtocolVersionMLS10) {
			caps.Versions = append(caps.Versions, ProtocolVersionMLS10)
		}
		if !containsSuite(caps.CipherSuites, suite) {
			caps.CipherSuites = append(caps.CipherSuites, suite)
		}
	}
	initKey, err := cs.hpke.KEM.GenerateKeyPair(rand)
	if err != nil {
		return nil, err
	}
	encKey, err := cs.hpke.KEM.GenerateKeyPair(rand)
	if err != nil {
		return nil, err
	}
	notBefore := now.Add(-keyPackageBackdate).Unix()
	if notBefore < 0 {
		notBefore = 0
	}
	kp := KeyPackage{
		Version:     ProtocolVersionMLS10,
		CipherSuite: suite,
		InitKey:     initKey.PublicKey().Bytes(),
		LeafNode: LeafNode{
			EncryptionKey: encKey.PublicKey().Bytes(),
			SignatureKey:  signer.PublicKey(),
			Credential:    cred,
			Capabilities:  caps,
			Source:        LeafNodeSourceKeyPackage,
			Lifetime:      Lifetime{NotBefore: uint64(notBefore), NotAfter: uint64(now.Add(lifetime).Unix())},
			Extensions:    opts.LeafExtensions,
		},
		Extensions: opts.Extensions,
	}
	// The leaf is signed without group context (LeafNodeTBS, Section
	// 7.2), then the whole KeyPackage (Section 10).
	tbs, err := kp.LeafNode.marshalTBS(nil, 0)
	if err != nil {
		return nil, err
	}
	if kp.LeafNode.Signature, err = cs.signWithLabel(rand, signer, labelLeafNodeTBS, tbs); err != nil {
		return nil, err
	}
	if tbs, err = kp.marshalTBS(); err != nil {
		return nil, err
	}
	if kp.Signature, err = cs.signWithLabel(rand, signer, labelKeyPackageTBS, tbs); err != nil {
		return nil, err
	}
	return &KeyPackagePrivate{
		KeyPackage:     kp,
		InitPriv:       initKey.Bytes(),
		EncryptionPriv: encKey.Bytes(),
		Signer:         signer,
	}, nil
}

func containsVersion(vs []ProtocolVersion, v ProtocolVersion) bool {
	for _, x := range vs {
		if x == v {
			return true
		}
	}
	return false
}

func containsSuite(vs []CipherSuite, v CipherSuite) bool {
	for _, x := range vs {
		if x == v {
			return true
		}
	}
	return false
}

// Message returns the KeyPackage as a serialized MLSMessage, the form it
// travels in.
func (k *KeyPackagePrivate) Message() ([]byte, error) {
	return (&MLSMessage{WireFormat: WireFormatKeyPackage, KeyPackage: &k.KeyPackage}).Marshal()
}

// Ref returns the KeyPackageRef of the KeyPackage (RFC 9420, Section 5.2).
func (k *KeyPackagePrivate) Ref() (KeyPackageRef, error) { return MakeKeyPackageRef(&k.KeyPackage) }

// Zero deletes the private keys (the signature key is the caller's).
func (k *KeyPackagePrivate) Zero() {
	clear(k.InitPriv)
	clear(k.EncryptionPriv)
}

// keyPackagePrivateVersion is the version byte of the encoding of
// KeyPackagePrivate.
const keyPackagePrivateVersion = 1

// Marshal encodes k, private keys included, for the caller's encrypted
// storage:
//
//	struct { uint8 version = 1; KeyPackage key_package; opaque init_priv<V>;
//	         opaque encryption_priv<V>; opaque signature_priv<V>; }
func (k *KeyPackagePrivate) Marshal() ([]byte, error) {
	if k.Signer == nil {
		return nil, errors.New("mls: key package without signature key")
	}
	return marshalWith(func(b *cryptobyte.Builder) {
		b.AddUint8(keyPackagePrivateVersion)
		k.KeyPackage.marshal(b)
		writeOpaque(b, k.InitPriv)
		writeOpaque(b, k.EncryptionPriv)
		writeOpaque(b, k.Signer.Bytes())
	})
}

// UnmarshalKeyPackagePrivate decodes what Marshal wrote and checks that the
// private keys match the KeyPackage's public keys.
func UnmarshalKeyPackagePrivate(data []byte) (*KeyPackagePrivate, error) {
	k := new(KeyPackagePrivate)
	var sig []byte
	err := unmarshalAll(data, func(s *cryptobyte.String) error {
		var v uint8
		if !s.ReadUint8(&v) || v != keyPackagePrivateVersion {
			return fmt.Errorf("%w: unknown key package private version", errDecode)
		}
		if err := k.KeyPackage.unmarshal(s); err != nil {
			return err
		}
		if !readOpaque(s, &k.InitPriv) || !readOpaque(s, &k.EncryptionPriv) || !readOpaque(s, &sig) {
			return errDecode
		}
		return nil
	})
	defer clear(sig)
	if err != nil {
		return nil, err
	}
	if k.Signer, err = ParseSignaturePrivateKey(k.KeyPackage.CipherSuite, sig); err != nil {
		return nil, err
	}
	if err := k.check(); err != nil {
		return nil, err
	}
	return k, nil
}

// check verifies that the private keys belong to the KeyPackage (FORMAT.md,
// passive client: the keys correspond to the KeyPackage's public keys).
func (k *KeyPackagePrivate) check() error {
	cs, err := k.KeyPackage.CipherSuite.suite()
	if err != nil {
		return err
	}
	for _, pair := range []struct {
		priv, pub []byte
		what      string
	}{
		{k.InitPriv, k.KeyPackage.InitKey, "init"},
		{k.EncryptionPriv, k.KeyPackage.LeafNode.EncryptionKey, "encryption"},
	} {
		sk, err := cs.hpkePrivateKey(pair.priv)
		if err != nil {
			return err
		}
		if !bytes.Equal(sk.PublicKey().Bytes(), pair.pub) {
			return fmt.Errorf("mls: %s private key does not match the key package", pair.what)
		}
	}
	if k.Signer == nil || !bytes.Equal(k.Signer.PublicKey(), k.KeyPackage.LeafNode.SignatureKey) {
		return errors.New("mls: signature key does not match the key package")
	}
	return nil
}

// ValidateKeyPackage validates a KeyPackage on its own, as a server or a
// client that fetched it does before using it (RFC 9420, Section 10.1):
// its suite is suite, its signatures verify, its leaf is valid (lifetime
// at now, capabilities, credential through validate) and its init key
// differs from its encryption key.
func ValidateKeyPackage(kp *KeyPackage, suite CipherSuite, now time.Time, validate func(c Credential, signatureKey []byte) error) error {
	t, err := newRatchetTree(suite)
	if err != nil {
		return err
	}
	_, err = validateKeyPackageIn(t, kp, nil, nil, now, validate)
	return err
}

// validateKeyPackage validates a KeyPackage for an Add to this group
// against the current tree.
func (g *Group) validateKeyPackage(kp *KeyPackage, now time.Time) error {
	_, err := g.validateKeyPackageIn(g.tree, kp, g.ctx.Extensions, now)
	return err
}

// validateKeyPackageIn validates kp against tree t and the GroupContext
// extensions exts (RFC 9420, Section 10.1 and Section 12.1.1). It returns
// the parsed init key, which the Welcome to the new member is sealed to:
// parsing an ML-KEM key expands its matrix, worth doing once.
func (g *Group) validateKeyPackageIn(t *ratchetTree, kp *KeyPackage, exts Extensions, now time.Time) (kem.PublicKey, error) {
	return validateKeyPackageIn(t, kp, g.ctx.GroupID, exts, now, g.cfg.ValidateCredential)
}

// validateKeyPackageChecked is validateKeyPackageIn for a KeyPackage whose
// two signatures were already verified when sigsVerified is true
// (batchVerifyKeyPackages).
func (g *Group) validateKeyPackageChecked(t *ratchetTree, kp *KeyPackage, exts Extensions, now time.Time, sigsVerified bool) (kem.PublicKey, error) {
	return validateKeyPackage(t, kp, g.ctx.GroupID, exts, now, g.cfg.ValidateCredential, sigsVerified)
}

func validateKeyPackageIn(t *ratchetTree, kp *KeyPackage, groupID []byte, exts Extensions, now time.Time, validate func(Credential, []byte) error) (kem.PublicKey, error) {
	return validateKeyPackage(t, kp, groupID, exts, now, validate, false)
}

func validateKeyPackage(t *ratchetTree, kp *KeyPackage, groupID []byte, exts Extensions, now time.Time, validate func(Credential, []byte) error, sigsVerified bool) (kem.PublicKey, error) {
	// Section 10.1: the version and cipher suite match the group's.
	if kp.Version != ProtocolVersionMLS10 {
		return nil, fmt.Errorf("mls: key package of version %d", kp.Version)
	}
	if kp.CipherSuite != t.suite {
		return nil, fmt.Errorf("mls: key package of cipher suite 0x%04x in a group of 0x%04x", uint16(kp.CipherSuite), uint16(t.suite))
	}
	// The signature over KeyPackageTBS with the leaf's signature key.
	if !sigsVerified {
		tbs, err := kp.marshalTBS()
		if err != nil {
			return nil, err
		}
		if !t.cs.verifyWithLabel(kp.LeafNode.SignatureKey, labelKeyPackageTBS, tbs, kp.Signature) {
			return nil, errors.New("mls: invalid key package signature")
		}
	}
	// The leaf node is valid (Section 7.3) with source key_package.
	if err := t.validateLeaf(&kp.LeafNode, &leafValidation{
		groupID:            groupID,
		source:             LeafNodeSourceKeyPackage,
		now:                now,
		groupExtensions:    exts,
		validateCredential: validate,
		signatureVerified:  sigsVerified,
	}); err != nil {
		return nil, err
	}
	// init_key is a valid HPKE key, different from the encryption key.
	initKey, err := t.cs.hpkePublicKey(kp.InitKey)
	if err != nil {
		return nil, err
	}
	if bytes.Equal(kp.InitKey, kp.LeafNode.EncryptionKey) {
		return nil, errors.New("mls: key package init key equals its encryption key")
	}
	return initKey, nil
}

// batchVerifyKeyPackages reports whether the two Ed25519 signatures of
// every KeyPackage of kps, over KeyPackageTBS and over its LeafNodeTBS,
// verify, checking them in batches (ed25519.go, docs/BATCH-VERIFY.md: a
// batch accepts exactly what single verification accepts). false means
// that one did not, that the suite does not sign with Ed25519, or that
// there are too few to batch: the caller then verifies each one alone.
//
// Like the leaves of a joined tree, they are shared among GOMAXPROCS
// goroutines when there are enough of them.
func batchVerifyKeyPackages(cs *cipherSuite, kps []*KeyPackage) bool {
	if _, ed := cs.sig.(ed25519Scheme); !ed || len(kps) < 2 {
		return false
	}
	workers := min(runtime.GOMAXPROCS(0), 2*len(kps)/minSignaturesPerWorker)
	if workers <= 1 {
		return batchVerifyKeyPackagesIn(kps)
	}
	ok := make([]bool, workers)
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := w*len(kps)/workers, (w+1)*len(kps)/workers
		wg.Go(func() { ok[w] = batchVerifyKeyPackagesIn(kps[lo:hi]) })
	}
	wg.Wait()
	return !slices.Contains(ok, false)
}

// batchVerifyKeyPackagesIn is batchVerifyKeyPackages on one goroutine.
func batchVerifyKeyPackagesIn(kps []*KeyPackage) bool {
	sigs := make([]edSignature, 0, min(edBatchSize, 2*len(kps)))
	buf := getScratch()
	defer func() { putScratch(buf, *buf) }()
	var digest [64]byte
	for _, kp := range kps {
		pub, ok := parseEdPublicKey(kp.LeafNode.SignatureKey)
		if !ok || len(kp.Signature) != 64 || len(kp.LeafNode.Signature) != 64 {
			return false
		}
		// The KeyPackage's signature: its TBS is the LeafNode's content
		// with more around it, encoded into the same buffer.
		b := cryptobyte.NewBuilder((*buf)[:0])
		kp.marshalTBSTo(b)
		tbs, err := b.Bytes()
		if err != nil {
			return false
		}
		*buf = tbs
		var ks edSignature
		if !ks.prepare(pub, appendLabeledInput(nil, labelKeyPackageTBS, tbs), kp.Signature) {
			return false
		}
		// The leaf's signature (source key_package: no group or index).
		all, in, err := leafSignedInput(*buf, &kp.LeafNode, nil, 0)
		if err != nil {
			return false
		}
		*buf = all
		digest = sha512.Sum512(in)
		var ls edSignature
		if !ls.prepareDigest(pub, kp.LeafNode.Signature, &digest) {
			return false
		}
		sigs = append(sigs, ks, ls)
		if len(sigs) >= edBatchSize {
			if !edBatchVerify(sigs) {
				return false
			}
			sigs = sigs[:0]
		}
	}
	return len(sigs) == 0 || edBatchVerify(sigs)
}
