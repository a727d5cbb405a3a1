package mls

import (
	"bytes"
	"testing"

	"qpchat/internal/vectors"
)

type pskSecretVector struct {
	CipherSuite CipherSuite `json:"cipher_suite"`
	PSKs        []struct {
		PSKID    vectors.Hex `json:"psk_id"`
		PSK      vectors.Hex `json:"psk"`
		PSKNonce vectors.Hex `json:"psk_nonce"`
	} `json:"psks"`
	PSKSecret vectors.Hex `json:"psk_secret"`
}

func TestPSKSecret(t *testing.T) {
	var tests []pskSecretVector
	loadMLSVectors(t, "psk_secret.json", &tests)
	tally := newSuiteTally("psk_secret.json")
	for i, tc := range tests {
		tally.run(t, tc.CipherSuite, i, func(t *testing.T, s *cipherSuite) { testPSKSecret(t, s, &tc) })
	}
	tally.log(t)
}

func testPSKSecret(t *testing.T, s *cipherSuite, tc *pskSecretVector) {
	var psks []pskWithID
	for _, p := range tc.PSKs {
		psks = append(psks, pskWithID{
			id:  &PreSharedKeyID{Type: PSKTypeExternal, PSKID: p.PSKID, PSKNonce: p.PSKNonce},
			psk: p.PSK,
		})
	}
	got, err := s.pskSecret(psks)
	if err != nil {
		t.Fatalf("pskSecret: %v", err)
	}
	if !bytes.Equal(got, tc.PSKSecret) {
		t.Errorf("psk_secret with %d PSKs = %x, want %x", len(psks), got, tc.PSKSecret)
	}
}
