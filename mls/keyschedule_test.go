package mls

import (
	"bytes"
	"crypto/rand"
	"testing"

	"qpchat/internal/vectors"
)

type keyScheduleVector struct {
	CipherSuite       CipherSuite `json:"cipher_suite"`
	GroupID           vectors.Hex `json:"group_id"`
	InitialInitSecret vectors.Hex `json:"initial_init_secret"`
	Epochs            []struct {
		TreeHash                vectors.Hex `json:"tree_hash"`
		CommitSecret            vectors.Hex `json:"commit_secret"`
		PSKSecret               vectors.Hex `json:"psk_secret"`
		ConfirmedTranscriptHash vectors.Hex `json:"confirmed_transcript_hash"`

		GroupContext vectors.Hex `json:"group_context"`

		JoinerSecret       vectors.Hex `json:"joiner_secret"`
		WelcomeSecret      vectors.Hex `json:"welcome_secret"`
		InitSecret         vectors.Hex `json:"init_secret"`
		SenderDataSecret   vectors.Hex `json:"sender_data_secret"`
		EncryptionSecret   vectors.Hex `json:"encryption_secret"`
		ExporterSecret     vectors.Hex `json:"exporter_secret"`
		EpochAuthenticator vectors.Hex `json:"epoch_authenticator"`
		ExternalSecret     vectors.Hex `json:"external_secret"`
		ConfirmationKey    vectors.Hex `json:"confirmation_key"`
		MembershipKey      vectors.Hex `json:"membership_key"`
		ResumptionPSK      vectors.Hex `json:"resumption_psk"`

		ExternalPub vectors.Hex `json:"external_pub"`
		Exporter    struct {
			Label   string      `json:"label"`
			Context vectors.Hex `json:"context"`
			Length  uint32      `json:"length"`
			Secret  vectors.Hex `json:"secret"`
		} `json:"exporter"`
	} `json:"epochs"`
}

func TestKeySchedule(t *testing.T) {
	var tests []keyScheduleVector
	loadMLSVectors(t, "key-schedule.json", &tests)
	tally := newSuiteTally("key-schedule.json")
	for i, tc := range tests {
		tally.run(t, tc.CipherSuite, i, func(t *testing.T, s *cipherSuite) { testKeySchedule(t, s, &tc) })
	}
	tally.log(t)
}

func testKeySchedule(t *testing.T, s *cipherSuite, tc *keyScheduleVector) {
	initSecret := tc.InitialInitSecret
	for n, ep := range tc.Epochs {
		gc := &GroupContext{
			Version:                 ProtocolVersionMLS10,
			CipherSuite:             tc.CipherSuite,
			GroupID:                 tc.GroupID,
			Epoch:                   uint64(n),
			TreeHash:                ep.TreeHash,
			ConfirmedTranscriptHash: ep.ConfirmedTranscriptHash,
		}
		gcBytes, err := gc.Marshal()
		if err != nil {
			t.Fatalf("epoch %d: GroupContext.Marshal: %v", n, err)
		}
		if !bytes.Equal(gcBytes, ep.GroupContext) {
			t.Errorf("epoch %d: group_context = %x, want %x", n, gcBytes, ep.GroupContext)
		}

		epoch, joiner, welcome := newEpochSecrets(s, initSecret, ep.CommitSecret, ep.PSKSecret, gcBytes)
		check := func(name string, got, want []byte) {
			t.Helper()
			if !bytes.Equal(got, want) {
				t.Errorf("epoch %d: %s = %x, want %x", n, name, got, want)
			}
		}
		check("joiner_secret", joiner.bytes(), ep.JoinerSecret)
		check("welcome_secret", welcome, ep.WelcomeSecret)
		check("init_secret", epoch.initSecret, ep.InitSecret)
		check("sender_data_secret", epoch.senderDataSecret, ep.SenderDataSecret)
		check("encryption_secret", epoch.encryptionSecret, ep.EncryptionSecret)
		check("exporter_secret", epoch.exporterSecret, ep.ExporterSecret)
		check("epoch_authenticator", epoch.epochAuthenticator, ep.EpochAuthenticator)
		check("external_secret", epoch.externalSecret, ep.ExternalSecret)
		check("confirmation_key", epoch.confirmationKey, ep.ConfirmationKey)
		check("membership_key", epoch.membershipKey, ep.MembershipKey)
		check("resumption_psk", epoch.resumptionPSK, ep.ResumptionPSK)

		// A joiner starting from the joiner_secret of GroupSecrets reaches
		// the same epoch.
		j, err := joinerSecretFromBytes(s, ep.JoinerSecret)
		if err != nil {
			t.Fatal(err)
		}
		m := j.intermediate(ep.PSKSecret)
		check("welcome_secret (joiner)", m.welcomeSecret(), ep.WelcomeSecret)
		check("epoch_authenticator (joiner)", m.epochSecret(gcBytes).derive().epochAuthenticator, ep.EpochAuthenticator)

		ext, err := epoch.externalKeyPair()
		if err != nil {
			t.Fatalf("epoch %d: external key pair: %v", n, err)
		}
		check("external_pub", ext.PublicKey().Bytes(), ep.ExternalPub)

		x := ep.Exporter
		exported, err := epoch.mlsExporter(x.Label, x.Context, int(x.Length))
		if err != nil {
			t.Fatalf("epoch %d: MLS-Exporter: %v", n, err)
		}
		check("exporter.secret", exported, x.Secret)

		// External join round trip with this epoch's external key pair.
		kemOutput, joinerInit, err := s.newExternalInit(rand.Reader, ep.ExternalPub)
		if err != nil {
			t.Fatalf("epoch %d: external init: %v", n, err)
		}
		groupInit, err := s.externalInitSecret(ext, kemOutput)
		if err != nil {
			t.Fatalf("epoch %d: external init secret: %v", n, err)
		}
		if !bytes.Equal(joinerInit, groupInit) || len(groupInit) != s.nh {
			t.Errorf("epoch %d: external init secrets differ: joiner %x, group %x", n, joinerInit, groupInit)
		}

		initSecret = epoch.initSecret
	}
}

func TestKeyScheduleNoPSKIsZero(t *testing.T) {
	s, _ := CipherSuiteMLS128DHKEMX25519AES128GCMSHA256Ed25519.suite()
	initSecret := bytes.Repeat([]byte{1}, s.nh)
	gc := []byte("group context")
	a, _, _ := newEpochSecrets(s, initSecret, nil, nil, gc)
	b, _, _ := newEpochSecrets(s, initSecret, make([]byte, s.nh), make([]byte, s.nh), gc)
	if !bytes.Equal(a.epochAuthenticator, b.epochAuthenticator) {
		t.Errorf("nil commit and psk secrets differ from the all-zero vectors")
	}
	psk, err := s.pskSecret(nil)
	if err != nil || !bytes.Equal(psk, make([]byte, s.nh)) {
		t.Errorf("pskSecret(no PSKs) = %x, %v, want %d zero bytes", psk, err, s.nh)
	}
	if _, err := a.mlsExporter("x", nil, s.maxExpandLength()+1); err == nil {
		t.Errorf("mlsExporter accepted a length above 255*Nh")
	}
	a.zero()
	if !bytes.Equal(a.initSecret, make([]byte, s.nh)) {
		t.Errorf("zero left the init secret in place")
	}
}
