package mls

// This file implements the hash-based identifiers of RFC 9420, Section 5.2.

// Labels of the hash-based references (RFC 9420, Section 5.2). Unlike the
// labels of the other labelled primitives they are used verbatim: the
// "MLS 1.0 " prefix is part of the constant.
const (
	keyPackageRefLabel = "MLS 1.0 KeyPackage Reference"
	proposalRefLabel   = "MLS 1.0 Proposal Reference"
)

// refHash implements RefHash from RFC 9420, Section 5.2:
//
//	struct {
//	    opaque label<V>;
//	    opaque value<V>;
//	} RefHashInput;
//
//	RefHash(label, value) = Hash(RefHashInput)
func (s *cipherSuite) refHash(label string, value []byte) []byte {
	h := s.newHash()
	var hdr [4]byte
	h.Write(appendVarint(hdr[:0], len(label)))
	h.Write([]byte(label))
	h.Write(appendVarint(hdr[:0], len(value)))
	h.Write(value)
	return h.Sum(nil)
}

// makeKeyPackageRef computes MakeKeyPackageRef(value) =
// RefHash("MLS 1.0 KeyPackage Reference", value), where value is the TLS
// encoding of the KeyPackage (RFC 9420, Section 5.2).
func (s *cipherSuite) makeKeyPackageRef(encodedKeyPackage []byte) KeyPackageRef {
	return KeyPackageRef(s.refHash(keyPackageRefLabel, encodedKeyPackage))
}

// makeProposalRef computes MakeProposalRef(value) =
// RefHash("MLS 1.0 Proposal Reference", value), where value is the TLS
// encoding of the AuthenticatedContent carrying the proposal (RFC 9420,
// Section 5.2).
func (s *cipherSuite) makeProposalRef(encodedAuthenticatedContent []byte) ProposalRef {
	return ProposalRef(s.refHash(proposalRefLabel, encodedAuthenticatedContent))
}

// MakeKeyPackageRef returns the KeyPackageRef of kp (RFC 9420, Section 5.2),
// computed with kp's own cipher suite.
func MakeKeyPackageRef(kp *KeyPackage) (KeyPackageRef, error) {
	s, err := kp.CipherSuite.suite()
	if err != nil {
		return nil, err
	}
	b, err := kp.Marshal()
	if err != nil {
		return nil, err
	}
	return s.makeKeyPackageRef(b), nil
}
