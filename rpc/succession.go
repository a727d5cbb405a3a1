package rpc

import (
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
)

// Key succession: how a node replaces its key without breaking pins.
//
// A node's self-signed certificate carries, in the extension
// SuccessorOID, the SHA-256 of the SubjectPublicKeyInfo of its *next*
// key: the fingerprint that key will have. The next private key is kept
// apart (ideally offline). A client pins the current fingerprint and
// that commitment together. After `qpchat serve rotate-identity` the
// node presents the next key, whose certificate commits to a fresh
// successor, and sends its retired certificates after the leaf. A client
// accepts the new key only if it is reached from its pinned commitment:
// the leaf's fingerprint equals the commitment, or a sent certificate
// has that fingerprint, is validly self-signed, and commits onwards, and
// so on (a client offline for several rotations follows the chain).
// Then it moves its pin to the new key and its commitment, and never
// goes back: the retired key matches neither.
//
// Threat model. The pin is checked during the TLS handshake, which
// proves possession of the leaf's private key.
//   - Current key stolen: the thief can impersonate the node to clients
//     still on that key (as without succession) until the operator
//     rotates; after rotation clients move to the committed key, which
//     the thief lacks, and refuse the stolen one from then on. The thief
//     cannot move pins: a key not matching the commitment is refused,
//     and a client keeps the first commitment it saw for a key.
//   - Next key stolen (current one safe): a thief in a position to
//     intercept can present the next key, with the public certificate
//     of the current one, and clients follow it. So keep the next key
//     offline; if it may have leaked, clients must re-pin by hand
//     (--server-fingerprint) after a fresh identity.
//   - Both stolen: the thief owns the node's identity for every client.
//
// SuccessorOID is a private OID under the 2.25 arc (ITU-T X.667, where
// random numbers need no registration), kept to components below 2^31
// because Go's certificate parser refuses larger ones.
var SuccessorOID = asn1.ObjectIdentifier{2, 25, 1867230523, 918372651, 1}

// maxSuccessionSteps bounds the chain a client follows.
const maxSuccessionSteps = 16

// SuccessorExtension returns the certificate extension committing to the
// key whose fingerprint is next.
func SuccessorExtension(next string) (pkix.Extension, error) {
	h, err := fingerprintBytes(next)
	if err != nil {
		return pkix.Extension{}, err
	}
	v, err := asn1.Marshal(h)
	if err != nil {
		return pkix.Extension{}, err
	}
	return pkix.Extension{Id: SuccessorOID, Value: v}, nil
}

// Successor returns the fingerprint a certificate commits to as its
// successor, or "" if it carries no commitment.
func Successor(cert *x509.Certificate) (string, error) {
	for _, e := range cert.Extensions {
		if !e.Id.Equal(SuccessorOID) {
			continue
		}
		return parseSuccessor(e.Value)
	}
	return "", nil
}

// parseSuccessor decodes the extension's value: a DER OCTET STRING of
// the 32-byte SHA-256.
func parseSuccessor(v []byte) (string, error) {
	var h []byte
	rest, err := asn1.Unmarshal(v, &h)
	if err != nil || len(rest) != 0 || len(h) != sha256.Size {
		return "", errors.New("rpc: malformed successor commitment in the certificate")
	}
	return fingerprintPrefix + hex.EncodeToString(h), nil
}

// FingerprintOfSPKI returns the fingerprint of a DER SubjectPublicKeyInfo.
func FingerprintOfSPKI(spki []byte) string {
	sum := sha256.Sum256(spki)
	return fingerprintPrefix + hex.EncodeToString(sum[:])
}

func fingerprintBytes(fp string) ([]byte, error) {
	fp, err := ParseFingerprint(fp)
	if err != nil {
		return nil, err
	}
	return hex.DecodeString(fp[len(fingerprintPrefix):])
}

// followSuccession checks that the leaf (certs[0]) is reached from the
// pinned commitment next through certs[1:]: each step a self-signed
// certificate whose fingerprint is the commitment before it. It returns
// the steps taken (1 when the leaf is the committed key itself).
func followSuccession(certs []*x509.Certificate, next string) (int, error) {
	if next == "" || len(certs) == 0 {
		return 0, errors.New("no successor committed")
	}
	leafFP := Fingerprint(certs[0])
	for step := 1; step <= maxSuccessionSteps; step++ {
		if sameFingerprint(leafFP, next) {
			return step, nil
		}
		var found *x509.Certificate
		for _, c := range certs[1:] {
			if sameFingerprint(Fingerprint(c), next) {
				found = c
				break
			}
		}
		if found == nil {
			return 0, fmt.Errorf("the committed successor %s is not in the chain the server sent", next)
		}
		// The commitment inside must be the key's own statement.
		if err := found.CheckSignature(found.SignatureAlgorithm, found.RawTBSCertificate, found.Signature); err != nil {
			return 0, fmt.Errorf("retired certificate %s is not self-signed: %v", next, err)
		}
		n, err := Successor(found)
		if err != nil || n == "" {
			return 0, fmt.Errorf("retired certificate %s commits to no successor", next)
		}
		next = n
	}
	return 0, errors.New("succession chain too long")
}

// SuccessorStore is a PinStore that also keeps the successor commitment
// of each pinned key. Dial uses it when Pins implements it.
type SuccessorStore interface {
	// Successor returns the commitment stored with server's pin, "" if none.
	Successor(server string) (string, error)
	// SetSuccessor stores the commitment ("" clears it).
	SetSuccessor(server, next string) error
}
