package mls

// This file computes psk_secret from the pre-shared keys of a commit or a
// Welcome (RFC 9420, Section 8.4).

import "fmt"

// labelDerivedPSK is the ExpandWithLabel label of psk_input (RFC 9420,
// Section 8.4).
const labelDerivedPSK = "derived psk"

// maxPSKs bounds the number of PSKs one psk_secret combines: PSKLabel
// carries index and count as uint16.
const maxPSKs = 1<<16 - 1

// pskWithID is one pre-shared key and its PreSharedKeyID.
type pskWithID struct {
	id  *PreSharedKeyID
	psk []byte
}

// pskSecret implements the PSK secret of RFC 9420, Section 8.4:
//
//	struct {
//	    PreSharedKeyID id;
//	    uint16 index;
//	    uint16 count;
//	} PSKLabel;
//
//	psk_extracted_[i] = KDF.Extract(0, psk_[i])
//	psk_input_[i] = ExpandWithLabel(psk_extracted_[i], "derived psk", PSKLabel, KDF.Nh)
//
//	psk_secret_[0] = 0
//	psk_secret_[i] = KDF.Extract(psk_input_[i-1], psk_secret_[i-1])
//	psk_secret     = psk_secret_[n]
//
// where 0 is the all-zero vector of length KDF.Nh. With no PSKs the result
// is that zero vector, which the key schedule uses when a commit has no
// PreSharedKey proposal.
func (s *cipherSuite) pskSecret(psks []pskWithID) ([]byte, error) {
	if len(psks) > maxPSKs {
		return nil, fmt.Errorf("mls: too many pre-shared keys (%d)", len(psks))
	}
	secret := make([]byte, s.nh)
	for i, p := range psks {
		id, err := p.id.Marshal()
		if err != nil {
			return nil, err
		}
		label := append(id, byte(i>>8), byte(i), byte(len(psks)>>8), byte(len(psks)))
		extracted := s.extract(nil, p.psk)
		input := s.expandWithLabel(extracted, labelDerivedPSK, label, s.nh)
		next := s.extract(input, secret)
		clear(extracted)
		clear(input)
		clear(secret)
		secret = next
	}
	return secret, nil
}
