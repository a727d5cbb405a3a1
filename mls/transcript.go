package mls

// This file implements the transcript hashes of RFC 9420, Section 8.2 and
// the confirmation tag of Section 6.1.

import (
	"errors"

	"golang.org/x/crypto/cryptobyte"
)

// confirmedTranscriptHash computes
//
//	confirmed_transcript_hash_[epoch] =
//	    Hash(interim_transcript_hash_[epoch - 1] || ConfirmedTranscriptHashInput_[epoch])
//
// from the AuthenticatedContent of the Commit that starts the epoch
// (RFC 9420, Section 8.2), where
//
//	struct {
//	    WireFormat wire_format;
//	    FramedContent content; // with content_type = commit
//	    opaque signature<V>;
//	} ConfirmedTranscriptHashInput;
func (s *cipherSuite) confirmedTranscriptHash(interimBefore []byte, ac *AuthenticatedContent) ([]byte, error) {
	if ac.Content.ContentType != ContentTypeCommit {
		return nil, errors.New("mls: transcript hash input is not a commit")
	}
	framed := ac.framed
	if framed == nil {
		var err error
		framed, err = marshalWith(func(b *cryptobyte.Builder) {
			b.AddUint16(uint16(ac.WireFormat))
			ac.Content.marshal(b)
		})
		if err != nil {
			return nil, err
		}
	}
	// ConfirmedTranscriptHashInput is wire_format || content ||
	// signature<V>, hashed in pieces.
	h := s.newHash()
	h.Write(interimBefore)
	h.Write(framed)
	var hdr [4]byte
	h.Write(appendVarint(hdr[:0], len(ac.Auth.Signature)))
	h.Write(ac.Auth.Signature)
	return h.Sum(nil), nil
}

// interimTranscriptHash computes
//
//	interim_transcript_hash_[epoch] =
//	    Hash(confirmed_transcript_hash_[epoch] || InterimTranscriptHashInput_[epoch])
//
// where InterimTranscriptHashInput is struct { MAC confirmation_tag; }
// (RFC 9420, Section 8.2; MAC is opaque<V>).
func (s *cipherSuite) interimTranscriptHash(confirmed, confirmationTag []byte) []byte {
	h := s.newHash()
	h.Write(confirmed)
	var hdr [4]byte
	h.Write(appendVarint(hdr[:0], len(confirmationTag)))
	h.Write(confirmationTag)
	return h.Sum(nil)
}

// confirmationTag computes
// confirmation_tag = MAC(confirmation_key, GroupContext.confirmed_transcript_hash)
// (RFC 9420, Section 6.1).
func (s *cipherSuite) confirmationTag(confirmationKey, confirmedTranscriptHash []byte) []byte {
	return s.mac(confirmationKey, confirmedTranscriptHash)
}

// verifyConfirmationTag reports in constant time whether tag is the
// confirmation tag of confirmedTranscriptHash (RFC 9420, Section 6.1).
func (s *cipherSuite) verifyConfirmationTag(confirmationKey, confirmedTranscriptHash, tag []byte) bool {
	return s.verifyMAC(confirmationKey, confirmedTranscriptHash, tag)
}
