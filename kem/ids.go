package kem

import "fmt"

// HPKE KEM identifiers (RFC 9180, Section 7.1, and the IANA "HPKE KEM
// Identifiers" registry).
const (
	// KEMP256 is DHKEM(P-256, HKDF-SHA256), used by MLS suites 2 (RFC 9420).
	KEMP256 uint16 = 0x0010
	// KEMP384 is DHKEM(P-384, HKDF-SHA384), used by MLS suite 7.
	KEMP384 uint16 = 0x0011
	// KEMP521 is DHKEM(P-521, HKDF-SHA512), used by MLS suite 5.
	KEMP521 uint16 = 0x0012
	// KEMX25519 is DHKEM(X25519, HKDF-SHA256), used by MLS suites 1 and 3.
	KEMX25519 uint16 = 0x0020
	// KEMX448 is DHKEM(X448, HKDF-SHA512), used by MLS suites 4 and 6.
	KEMX448 uint16 = 0x0021
	// KEMMLKEM512, KEMMLKEM768 and KEMMLKEM1024 are pure ML-KEM
	// (draft-ietf-hpke-pq). No MLS suite of qpchat uses them.
	KEMMLKEM512  uint16 = 0x0040
	KEMMLKEM768  uint16 = 0x0041
	KEMMLKEM1024 uint16 = 0x0042
	// KEMMLKEM768P256 and KEMMLKEM1024P384 are the ML-KEM + NIST-curve
	// hybrids of draft-ietf-hpke-pq. No MLS suite of qpchat uses them.
	KEMMLKEM768P256  uint16 = 0x0050
	KEMMLKEM1024P384 uint16 = 0x0051
	// KEMXWing is X-Wing, MLKEM768-X25519 (draft-connolly-cfrg-xwing-kem,
	// draft-ietf-hpke-pq).
	KEMXWing uint16 = 0x647a
	// KEMHybridX25519MLKEM768 is qpchat's hybrid X25519 + ML-KEM-768 KEM
	// (see HybridX25519MLKEM768). HPKE's registry has no private-use range:
	// the value is local to qpchat and must never be sent to another HPKE
	// implementation as if it were registered.
	KEMHybridX25519MLKEM768 uint16 = 0xFA01
)

// KEMByID returns the KEM with HPKE identifier id.
func KEMByID(id uint16) (KEM, error) {
	switch id {
	case KEMP256:
		return DHKEMP256(), nil
	case KEMP384:
		return DHKEMP384(), nil
	case KEMP521:
		return DHKEMP521(), nil
	case KEMX25519:
		return DHKEMX25519(), nil
	case KEMX448:
		return DHKEMX448(), nil
	case KEMMLKEM512:
		return MLKEM512(), nil
	case KEMMLKEM768:
		return MLKEM768(), nil
	case KEMMLKEM1024:
		return MLKEM1024(), nil
	case KEMMLKEM768P256:
		return MLKEM768P256(), nil
	case KEMMLKEM1024P384:
		return MLKEM1024P384(), nil
	case KEMXWing:
		return XWing(), nil
	case KEMHybridX25519MLKEM768:
		return HybridX25519MLKEM768(), nil
	}
	return nil, fmt.Errorf("kem: unsupported KEM 0x%04x", id)
}
