package mls

// This file implements the key schedule of RFC 9420, Section 8:
//
//	                 init_secret_[n-1]
//	                       |
//	                       V
//	 commit_secret --> KDF.Extract
//	                       |
//	                       V
//	     ExpandWithLabel(., "joiner", GroupContext_[n], KDF.Nh)
//	                       |
//	                       V
//	                  joiner_secret
//	                       |
//	                       V
//	psk_secret (or 0) --> KDF.Extract
//	                       |
//	                       +--> DeriveSecret(., "welcome") = welcome_secret
//	                       V
//	     ExpandWithLabel(., "epoch", GroupContext_[n], KDF.Nh)
//	                       |
//	                       V
//	                  epoch_secret
//	                       |
//	                       +--> DeriveSecret(., <label>) = <secret>
//	                       V
//	               DeriveSecret(., "init")
//	                       |
//	                       V
//	                 init_secret_[n]
//
// Each stage is its own type that can derive only what the RFC derives from
// it: joinerSecret → intermediateSecret → epochSecret → epochSecrets. The
// GroupContext enters as its TLS encoding, so the schedule does not depend
// on how the caller builds it.

import (
	"errors"
	"fmt"
	"io"

	"qpchat/kem"
)

// Labels of the key schedule (RFC 9420, Section 8 and Table 4, Section 8.5,
// Section 12.4.3.1).
const (
	labelJoiner         = "joiner"
	labelWelcome        = "welcome"
	labelEpoch          = "epoch"
	labelSenderData     = "sender data"
	labelEncryption     = "encryption"
	labelExporter       = "exporter"
	labelExternal       = "external"
	labelConfirm        = "confirm"
	labelMembership     = "membership"
	labelResumption     = "resumption"
	labelAuthentication = "authentication"
	labelInit           = "init"
	labelExported       = "exported"
)

// joinerSecret is joiner_secret of RFC 9420, Section 8. Members compute it
// from the previous epoch; joiners receive it in GroupSecrets.
type joinerSecret struct {
	suite  *cipherSuite
	secret []byte
}

// newJoinerSecret computes
//
//	joiner_secret = ExpandWithLabel(KDF.Extract(init_secret_[n-1], commit_secret),
//	                                "joiner", GroupContext_[n], KDF.Nh)
//
// groupContext is the TLS encoding of the new epoch's GroupContext. A commit
// without a path has an all-zero commit_secret; nil is accepted for it.
func newJoinerSecret(suite *cipherSuite, initSecret, commitSecret, groupContext []byte) *joinerSecret {
	if commitSecret == nil {
		commitSecret = make([]byte, suite.nh)
	}
	prk := suite.extract(initSecret, commitSecret)
	defer clear(prk)
	return &joinerSecret{suite: suite, secret: suite.expandWithLabel(prk, labelJoiner, groupContext, suite.nh)}
}

// joinerSecretFromBytes wraps a joiner_secret received in GroupSecrets
// (RFC 9420, Section 12.4.3.1). It keeps its own copy.
func joinerSecretFromBytes(suite *cipherSuite, secret []byte) (*joinerSecret, error) {
	if len(secret) != suite.nh {
		return nil, fmt.Errorf("mls: invalid joiner secret length %d", len(secret))
	}
	return &joinerSecret{suite: suite, secret: append([]byte(nil), secret...)}, nil
}

// bytes returns joiner_secret, as placed in GroupSecrets.
func (j *joinerSecret) bytes() []byte { return j.secret }

// intermediate injects the PSK secret (RFC 9420, Section 8.4):
// KDF.Extract(joiner_secret, psk_secret). A nil pskSecret means no PSKs,
// which is the all-zero vector of length KDF.Nh.
func (j *joinerSecret) intermediate(pskSecret []byte) *intermediateSecret {
	if pskSecret == nil {
		pskSecret = make([]byte, j.suite.nh)
	}
	return &intermediateSecret{suite: j.suite, secret: j.suite.extract(j.secret, pskSecret)}
}

// zero deletes the joiner secret.
func (j *joinerSecret) zero() { clear(j.secret) }

// intermediateSecret is the unnamed value KDF.Extract(joiner_secret,
// psk_secret) of RFC 9420, Section 8, from which both the welcome_secret and
// the epoch_secret derive.
type intermediateSecret struct {
	suite  *cipherSuite
	secret []byte
}

// welcomeSecret returns welcome_secret = DeriveSecret(., "welcome").
func (m *intermediateSecret) welcomeSecret() []byte {
	return m.suite.deriveSecret(m.secret, labelWelcome)
}

// epochSecret returns epoch_secret =
// ExpandWithLabel(., "epoch", GroupContext_[n], KDF.Nh).
func (m *intermediateSecret) epochSecret(groupContext []byte) *epochSecret {
	return &epochSecret{suite: m.suite, secret: m.suite.expandWithLabel(m.secret, labelEpoch, groupContext, m.suite.nh)}
}

// zero deletes the intermediate secret.
func (m *intermediateSecret) zero() { clear(m.secret) }

// epochSecret is epoch_secret of RFC 9420, Section 8.
type epochSecret struct {
	suite  *cipherSuite
	secret []byte
}

// derive computes every secret of Table 4 (RFC 9420, Section 8) and the next
// init_secret, then deletes the epoch secret, which nothing else needs.
func (e *epochSecret) derive() *epochSecrets {
	s := e.suite
	// One keyed HMAC derives the nine secrets (DeriveSecret is
	// ExpandWithLabel with an empty context and length KDF.Nh).
	x := s.newExpander(e.secret)
	derive := func(label string) []byte { return x.expandWithLabel(label, nil, s.nh) }
	out := &epochSecrets{
		suite:              s,
		senderDataSecret:   derive(labelSenderData),
		encryptionSecret:   derive(labelEncryption),
		exporterSecret:     derive(labelExporter),
		externalSecret:     derive(labelExternal),
		confirmationKey:    derive(labelConfirm),
		membershipKey:      derive(labelMembership),
		resumptionPSK:      derive(labelResumption),
		epochAuthenticator: derive(labelAuthentication),
		initSecret:         derive(labelInit),
	}
	clear(e.secret)
	return out
}

// epochSecrets holds the secrets of one epoch (RFC 9420, Section 8, Table 4)
// and init_secret_[n] for the next one.
type epochSecrets struct {
	suite *cipherSuite

	senderDataSecret   []byte // sender data encryption, Section 6.3.2
	encryptionSecret   []byte // root of the secret tree, Section 9
	exporterSecret     []byte // MLS-Exporter, Section 8.5
	externalSecret     []byte // external key pair, Section 8.3
	confirmationKey    []byte // confirmation tag, Section 6.1
	membershipKey      []byte // membership tag, Section 6.2
	resumptionPSK      []byte // resumption PSK, Section 8.6
	epochAuthenticator []byte // Section 8.7
	initSecret         []byte // init_secret_[n], input of the next epoch

	// senderData derives the epoch's sender data keys from
	// senderDataSecret; made on first use (senderDataKeys).
	senderData *senderDataKeys
}

// senderDataKeys returns the sender data key deriver of the epoch
// (Section 6.3.2), made on first use.
func (e *epochSecrets) senderDataKeys() *senderDataKeys {
	if e.senderData == nil {
		e.senderData = e.suite.newSenderDataKeys(e.senderDataSecret)
	}
	return e.senderData
}

// newEpochSecrets runs the whole schedule of RFC 9420, Section 8, from the
// previous init_secret to the new epoch's secrets. It also returns the
// joiner_secret and welcome_secret a committer needs for its Welcome; the
// caller zeroes them when done.
func newEpochSecrets(suite *cipherSuite, initSecret, commitSecret, pskSecret, groupContext []byte) (epoch *epochSecrets, joiner *joinerSecret, welcomeSecret []byte) {
	joiner = newJoinerSecret(suite, initSecret, commitSecret, groupContext)
	m := joiner.intermediate(pskSecret)
	defer m.zero()
	welcomeSecret = m.welcomeSecret()
	return m.epochSecret(groupContext).derive(), joiner, welcomeSecret
}

// mlsExporter implements MLS-Exporter from RFC 9420, Section 8.5:
//
//	MLS-Exporter(Label, Context, Length) =
//	    ExpandWithLabel(DeriveSecret(exporter_secret, Label),
//	                    "exported", Hash(Context), Length)
func (e *epochSecrets) mlsExporter(label string, context []byte, length int) ([]byte, error) {
	if length < 0 || length > e.suite.maxExpandLength() {
		return nil, fmt.Errorf("mls: invalid exporter length %d", length)
	}
	secret := e.suite.deriveSecret(e.exporterSecret, label)
	defer clear(secret)
	return e.suite.expandWithLabel(secret, labelExported, e.suite.hashOf(context), length), nil
}

// externalKeyPair derives the epoch's external key pair (RFC 9420,
// Section 8.3): KEM.DeriveKeyPair(external_secret). Its public key goes in
// the external_pub extension of GroupInfo.
func (e *epochSecrets) externalKeyPair() (kem.PrivateKey, error) {
	sk, err := e.suite.hpke.KEM.DeriveKeyPair(e.externalSecret)
	if err != nil {
		return nil, fmt.Errorf("mls: deriving the external key pair: %w", err)
	}
	return sk, nil
}

// labelExternalInitSecret is the HPKE exporter label of an external join
// (RFC 9420, Section 8.3).
const labelExternalInitSecret = "MLS 1.0 external init secret"

// newExternalInit is the joiner's side of an external join (RFC 9420,
// Section 8.3): it encapsulates to the group's external_pub and returns the
// kem_output for the ExternalInit proposal and the init_secret it gives.
//
//	kem_output, context = SetupBaseS(external_pub, "")
//	init_secret = context.export("MLS 1.0 external init secret", KDF.Nh)
func (s *cipherSuite) newExternalInit(rand io.Reader, externalPub []byte) (kemOutput, initSecret []byte, err error) {
	pk, err := s.hpkePublicKey(externalPub)
	if err != nil {
		return nil, nil, err
	}
	kemOutput, ctx, err := s.hpke.SetupBaseSender(rand, pk, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("mls: external init: %w", err)
	}
	initSecret, err = ctx.Export([]byte(labelExternalInitSecret), s.nh)
	if err != nil {
		return nil, nil, fmt.Errorf("mls: external init: %w", err)
	}
	return kemOutput, initSecret, nil
}

// externalInitSecret is the group's side of an external join (RFC 9420,
// Section 8.3): it recovers the init_secret from an ExternalInit's
// kem_output with the external private key of the epoch.
//
//	context = SetupBaseR(kem_output, external_priv, "")
//	init_secret = context.export("MLS 1.0 external init secret", KDF.Nh)
func (s *cipherSuite) externalInitSecret(externalPriv kem.PrivateKey, kemOutput []byte) ([]byte, error) {
	ctx, err := s.hpke.SetupBaseReceiver(externalPriv, kemOutput, nil)
	if err != nil {
		return nil, errors.New("mls: invalid external init")
	}
	return ctx.Export([]byte(labelExternalInitSecret), s.nh)
}

// zero deletes every secret of the epoch.
func (e *epochSecrets) zero() {
	for _, s := range [][]byte{
		e.senderDataSecret, e.encryptionSecret, e.exporterSecret, e.externalSecret,
		e.confirmationKey, e.membershipKey, e.resumptionPSK, e.epochAuthenticator, e.initSecret,
	} {
		clear(s)
	}
	e.senderData = nil
}

// welcomeKeyNonce derives the key and nonce that encrypt a Welcome's
// GroupInfo (RFC 9420, Section 12.4.3.1):
//
//	welcome_nonce = ExpandWithLabel(welcome_secret, "nonce", "", AEAD.Nn)
//	welcome_key   = ExpandWithLabel(welcome_secret, "key", "", AEAD.Nk)
func (s *cipherSuite) welcomeKeyNonce(welcomeSecret []byte) (key, nonce []byte) {
	return s.expandWithLabel(welcomeSecret, labelKey, nil, s.aead.nk),
		s.expandWithLabel(welcomeSecret, labelNonce, nil, s.aead.nn)
}

// newInitSecret returns a fresh init_secret for epoch 0 of a new group
// (RFC 9420, Section 11: a fresh random value of length KDF.Nh).
func (s *cipherSuite) newInitSecret(rand io.Reader) ([]byte, error) {
	b := make([]byte, s.nh)
	if _, err := io.ReadFull(rand, b); err != nil {
		return nil, fmt.Errorf("mls: reading randomness: %w", err)
	}
	return b, nil
}
