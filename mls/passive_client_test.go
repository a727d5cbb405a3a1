package mls

// Tests against the IETF passive-client vectors (FORMAT.md, "Passive Client
// Scenarios"): join from a Welcome with the given keys and PSKs, then apply
// every epoch's proposals and commit and compare each epoch authenticator.

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"qpchat/internal/vectors"
)

type passiveClientPSK struct {
	PSKID vectors.Hex `json:"psk_id"`
	PSK   vectors.Hex `json:"psk"`
}

type passiveClientEpoch struct {
	Proposals          []vectors.Hex `json:"proposals"`
	Commit             vectors.Hex   `json:"commit"`
	EpochAuthenticator vectors.Hex   `json:"epoch_authenticator"`
}

type passiveClientTest struct {
	CipherSuite               uint16               `json:"cipher_suite"`
	ExternalPSKs              []passiveClientPSK   `json:"external_psks"`
	KeyPackage                vectors.Hex          `json:"key_package"`
	SignaturePriv             vectors.Hex          `json:"signature_priv"`
	EncryptionPriv            vectors.Hex          `json:"encryption_priv"`
	InitPriv                  vectors.Hex          `json:"init_priv"`
	Welcome                   vectors.Hex          `json:"welcome"`
	RatchetTree               vectors.Hex          `json:"ratchet_tree"`
	InitialEpochAuthenticator vectors.Hex          `json:"initial_epoch_authenticator"`
	Epochs                    []passiveClientEpoch `json:"epochs"`
}

// acceptAll is a credential validator for the IETF vectors, whose basic
// credentials carry no certificate to check.
func acceptAll(Credential, []byte) error { return nil }

// runPassiveClient joins with the vector's Welcome and follows every epoch.
func runPassiveClient(tc *passiveClientTest) error {
	suite := CipherSuite(tc.CipherSuite)
	kpMsg, err := parseKeyPackageMessage(tc.KeyPackage)
	if err != nil {
		return err
	}
	sig, err := ParseSignaturePrivateKey(suite, tc.SignaturePriv)
	if err != nil {
		return err
	}
	cs, err := suite.suite()
	if err != nil {
		return err
	}
	kp := &KeyPackagePrivate{
		KeyPackage:     *kpMsg,
		InitPriv:       padPrivateKey(cs, tc.InitPriv),
		EncryptionPriv: padPrivateKey(cs, tc.EncryptionPriv),
		Signer:         sig,
	}
	if err := kp.check(); err != nil {
		return err
	}
	psks := map[string][]byte{}
	for _, p := range tc.ExternalPSKs {
		psks[string(p.PSKID)] = p.PSK
	}
	cfg := Config{
		ValidateCredential: acceptAll,
		ExternalPSKs: func(id []byte) ([]byte, bool) {
			p, ok := psks[string(id)]
			return p, ok
		},
	}
	var tree []byte
	if len(tc.RatchetTree) > 0 {
		tree = tc.RatchetTree
	}
	// The vectors' KeyPackages were made long ago: lifetimes are checked
	// against the zero time, which Section 7.3 allows for a joiner.
	g, err := JoinFromWelcome(cfg, tc.Welcome, kp, tree, time.Time{})
	if err != nil {
		return fmt.Errorf("join: %w", err)
	}
	if !bytes.Equal(g.EpochAuthenticator(), tc.InitialEpochAuthenticator) {
		return fmt.Errorf("initial epoch authenticator = %x, want %x", g.EpochAuthenticator(), tc.InitialEpochAuthenticator)
	}
	for i, ep := range tc.Epochs {
		for j, p := range ep.Proposals {
			ev, err := g.ProcessMessage(p, time.Time{})
			if err != nil {
				return fmt.Errorf("epoch %d proposal %d: %w", i, j, err)
			}
			if ev.Kind != EventProposal {
				return fmt.Errorf("epoch %d proposal %d: event kind %d", i, j, ev.Kind)
			}
		}
		ev, err := g.ProcessMessage(ep.Commit, time.Time{})
		if err != nil {
			return fmt.Errorf("epoch %d commit: %w", i, err)
		}
		if ev.Kind != EventNewEpoch {
			return fmt.Errorf("epoch %d commit: event kind %d", i, ev.Kind)
		}
		if !bytes.Equal(g.EpochAuthenticator(), ep.EpochAuthenticator) {
			return fmt.Errorf("epoch %d: epoch authenticator = %x, want %x", i, g.EpochAuthenticator(), ep.EpochAuthenticator)
		}
	}
	return nil
}

func testPassiveClient(t *testing.T, file string) {
	var tests []passiveClientTest
	vectors.Load(t, "QPCHAT_MLS_VECTORS", "mls-test-vectors", file, &tests)
	if len(tests) == 0 {
		t.Fatalf("%s: no entries", file)
	}
	passed, total := map[uint16]int{}, map[uint16]int{}
	for i := range tests {
		tc := &tests[i]
		total[tc.CipherSuite]++
		if err := runPassiveClient(tc); err != nil {
			t.Errorf("%s entry %d (suite %d): %v", file, i, tc.CipherSuite, err)
			continue
		}
		passed[tc.CipherSuite]++
	}
	for s := uint16(1); s <= 7; s++ {
		if total[s] > 0 {
			t.Logf("%s: suite %d: %d/%d entries passed", file, s, passed[s], total[s])
		}
	}
}

func TestPassiveClientWelcome(t *testing.T) { testPassiveClient(t, "passive-client-welcome.json") }

func TestPassiveClientHandlingCommit(t *testing.T) {
	testPassiveClient(t, "passive-client-handling-commit.json")
}

// padPrivateKey left-pads an HPKE private key to Nsk: some P-521 keys in
// the IETF vectors drop a leading zero byte, which SerializePrivateKey
// (RFC 9180, Section 7.1.2) keeps.
func padPrivateKey(cs *cipherSuite, b []byte) []byte {
	n := cs.hpke.KEM.PrivateKeySize()
	if len(b) >= n {
		return b
	}
	return append(make([]byte, n-len(b)), b...)
}
