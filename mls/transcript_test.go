package mls

import (
	"bytes"
	"testing"

	"qpchat/internal/vectors"
)

type transcriptHashesVector struct {
	CipherSuite                  CipherSuite `json:"cipher_suite"`
	ConfirmationKey              vectors.Hex `json:"confirmation_key"`
	AuthenticatedContent         vectors.Hex `json:"authenticated_content"`
	InterimTranscriptHashBefore  vectors.Hex `json:"interim_transcript_hash_before"`
	ConfirmedTranscriptHashAfter vectors.Hex `json:"confirmed_transcript_hash_after"`
	InterimTranscriptHashAfter   vectors.Hex `json:"interim_transcript_hash_after"`
}

func TestTranscriptHashes(t *testing.T) {
	var tests []transcriptHashesVector
	loadMLSVectors(t, "transcript-hashes.json", &tests)
	tally := newSuiteTally("transcript-hashes.json")
	for i, tc := range tests {
		tally.run(t, tc.CipherSuite, i, func(t *testing.T, s *cipherSuite) { testTranscriptHashes(t, s, &tc) })
	}
	tally.log(t)
}

func testTranscriptHashes(t *testing.T, s *cipherSuite, tc *transcriptHashesVector) {
	ac, err := UnmarshalAuthenticatedContent(tc.AuthenticatedContent)
	if err != nil {
		t.Fatalf("UnmarshalAuthenticatedContent: %v", err)
	}
	if ac.Content.ContentType != ContentTypeCommit || ac.Content.Commit == nil {
		t.Fatalf("authenticated_content holds content type %d, want a commit", ac.Content.ContentType)
	}
	tag := ac.Auth.ConfirmationTag
	if !s.verifyConfirmationTag(tc.ConfirmationKey, tc.ConfirmedTranscriptHashAfter, tag) {
		t.Errorf("confirmation_tag %x is not MAC(confirmation_key, confirmed_transcript_hash_after)", tag)
	}
	if got := s.confirmationTag(tc.ConfirmationKey, tc.ConfirmedTranscriptHashAfter); !bytes.Equal(got, tag) {
		t.Errorf("confirmationTag = %x, want %x", got, tag)
	}
	confirmed, err := s.confirmedTranscriptHash(tc.InterimTranscriptHashBefore, ac)
	if err != nil {
		t.Fatalf("confirmedTranscriptHash: %v", err)
	}
	if !bytes.Equal(confirmed, tc.ConfirmedTranscriptHashAfter) {
		t.Errorf("confirmed_transcript_hash = %x, want %x", confirmed, tc.ConfirmedTranscriptHashAfter)
	}
	if got := s.interimTranscriptHash(confirmed, tag); !bytes.Equal(got, tc.InterimTranscriptHashAfter) {
		t.Errorf("interim_transcript_hash = %x, want %x", got, tc.InterimTranscriptHashAfter)
	}
	// A flipped bit in the tag does not verify.
	bad := append([]byte(nil), tag...)
	bad[0] ^= 1
	if s.verifyConfirmationTag(tc.ConfirmationKey, tc.ConfirmedTranscriptHashAfter, bad) {
		t.Errorf("verifyConfirmationTag accepted a modified tag")
	}
}
