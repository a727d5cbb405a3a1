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

// TestTranscriptHashKeptEncoding checks that the wire_format || content
// encoding kept by signing and by signature verification gives the same
// confirmed transcript hash as encoding the content again, for every
// sample commit and for the wire format round trip.
func TestTranscriptHashKeptEncoding(t *testing.T) {
	s, _ := CipherSuiteMLS128DHKEMX25519AES128GCMSHA256Ed25519.suite()
	key, err := GenerateSignatureKey(s.id, testRand(7))
	if err != nil {
		t.Fatal(err)
	}
	gc := sampleGroupContext()
	interim := bytes.Repeat([]byte{9}, s.nh)
	senderKey := func(*FramedContent) ([]byte, error) { return key.PublicKey(), nil }
	n := 0
	for i, c := range sampleCommits() {
		for _, wf := range []WireFormat{WireFormatPublicMessage, WireFormatPrivateMessage} {
			fc := &FramedContent{GroupID: gc.GroupID, Epoch: gc.Epoch, Sender: Sender{Type: SenderTypeMember, LeafIndex: 3},
				AuthenticatedData: []byte("ad"), ContentType: ContentTypeCommit, Commit: &c}
			ac, err := s.signFramedContent(testRand(uint64(i)), key, wf, fc, &gc)
			if err != nil {
				t.Fatal(err)
			}
			if ac.framed == nil {
				t.Fatalf("commit %d: signFramedContent kept no encoding", i)
			}
			fresh := *ac
			fresh.framed = nil
			want, err := s.confirmedTranscriptHash(interim, &fresh)
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.confirmedTranscriptHash(interim, ac)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("commit %d, wire format %d: hash with kept encoding %x, %v; want %x", i, wf, got, err, want)
			}
			// A decoded copy gets the encoding from verification.
			ac.Auth.ConfirmationTag = bytes.Repeat([]byte{1}, s.nh)
			enc, err := ac.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			dec, err := UnmarshalAuthenticatedContent(enc)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.verifyContentSignature(dec, &gc, senderKey); err != nil {
				t.Fatalf("commit %d: %v", i, err)
			}
			if dec.framed == nil {
				t.Fatalf("commit %d: verifyContentSignature kept no encoding", i)
			}
			if got, err := s.confirmedTranscriptHash(interim, dec); err != nil || !bytes.Equal(got, want) {
				t.Errorf("commit %d, wire format %d: hash after verification %x, %v; want %x", i, wf, got, err, want)
			}
			n++
		}
	}
	t.Logf("%d commits hashed with kept and fresh encodings", n)
}

// TestFramedSignContent checks the in-place SignContent of message
// signatures against labeledInput over marshalFramedContentTBS, for every
// sample content (member, external and new member senders) and both
// framed wire formats, and that the framed part is wire_format || content.
func TestFramedSignContent(t *testing.T) {
	gc := sampleGroupContext()
	n := 0
	for i, fc := range sampleFramedContents() {
		for _, wf := range []WireFormat{WireFormatPublicMessage, WireFormatPrivateMessage} {
			tbs, err := marshalFramedContentTBS(wf, &fc, &gc)
			if err != nil {
				t.Fatalf("content %d: %v", i, err)
			}
			var buf []byte
			if n%2 == 1 {
				buf = make([]byte, 3, 1000) // a used, larger buffer
			}
			_, sc, framed, err := framedSignContent(buf, wf, &fc, nil, &gc)
			if err != nil {
				t.Fatalf("content %d: %v", i, err)
			}
			if want := labeledInput(labelFramedContentTBS, tbs); !bytes.Equal(sc, want) {
				t.Errorf("content %d, wire format %d: SignContent %x, want %x", i, wf, sc, want)
			}
			enc, err := fc.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if want := append([]byte{byte(wf >> 8), byte(wf)}, enc...); !bytes.Equal(framed, want) {
				t.Errorf("content %d, wire format %d: framed %x, want %x", i, wf, framed, want)
			}
			n++
		}
	}
	t.Logf("%d SignContent encodings checked", n)
}
