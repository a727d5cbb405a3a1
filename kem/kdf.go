package kem

import (
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/sha3"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
)

// KDFID is an HPKE KDF identifier (RFC 9180, Section 7.2).
type KDFID uint16

// KDF identifiers. The HKDF ones are RFC 9180's two-stage KDFs; the SHAKE
// ones are the one-stage KDFs of draft-ietf-hpke-pq (also in Go's
// crypto/hpke), supported so the post-quantum vectors can be checked end to
// end.
const (
	KDFHKDFSHA256 KDFID = 0x0001
	KDFHKDFSHA384 KDFID = 0x0002
	KDFHKDFSHA512 KDFID = 0x0003
	KDFSHAKE128   KDFID = 0x0010
	KDFSHAKE256   KDFID = 0x0011
)

// hpkeVersion is the "HPKE-v1" label prefix of RFC 9180, Section 4.
const hpkeVersion = "HPKE-v1"

// kdf is the internal view of a KDF: either two-stage (Extract/Expand) or
// one-stage (Derive).
type kdf struct {
	id       KDFID
	nh       int              // Nh
	hash     func() hash.Hash // two-stage only
	shake    func() *sha3.SHAKE
	oneStage bool
}

var (
	kdfHKDFSHA256 = &kdf{id: KDFHKDFSHA256, nh: sha256.Size, hash: sha256.New}
	kdfHKDFSHA384 = &kdf{id: KDFHKDFSHA384, nh: sha512.Size384, hash: sha512.New384}
	kdfHKDFSHA512 = &kdf{id: KDFHKDFSHA512, nh: sha512.Size, hash: sha512.New}
	kdfSHAKE128   = &kdf{id: KDFSHAKE128, nh: 32, shake: sha3.NewSHAKE128, oneStage: true}
	kdfSHAKE256   = &kdf{id: KDFSHAKE256, nh: 64, shake: sha3.NewSHAKE256, oneStage: true}
)

func kdfByID(id KDFID) (*kdf, error) {
	switch id {
	case KDFHKDFSHA256:
		return kdfHKDFSHA256, nil
	case KDFHKDFSHA384:
		return kdfHKDFSHA384, nil
	case KDFHKDFSHA512:
		return kdfHKDFSHA512, nil
	case KDFSHAKE128:
		return kdfSHAKE128, nil
	case KDFSHAKE256:
		return kdfSHAKE256, nil
	}
	return nil, fmt.Errorf("kem: unsupported KDF 0x%04x", uint16(id))
}

// labeledExtract implements LabeledExtract from RFC 9180, Section 4:
// Extract(salt, "HPKE-v1" || suite_id || label || ikm).
func (k *kdf) labeledExtract(suiteID, salt []byte, label string, ikm []byte) ([]byte, error) {
	labeled := make([]byte, 0, len(hpkeVersion)+len(suiteID)+len(label)+len(ikm))
	labeled = append(labeled, hpkeVersion...)
	labeled = append(labeled, suiteID...)
	labeled = append(labeled, label...)
	labeled = append(labeled, ikm...)
	return hkdf.Extract(k.hash, labeled, salt)
}

// labeledExpand implements LabeledExpand from RFC 9180, Section 4:
// Expand(prk, I2OSP(L, 2) || "HPKE-v1" || suite_id || label || info, L).
func (k *kdf) labeledExpand(suiteID, prk []byte, label string, info []byte, length int) ([]byte, error) {
	if length < 0 || length > 255*k.nh || length > 0xffff {
		return nil, fmt.Errorf("kem: expand length %d too large for KDF 0x%04x", length, uint16(k.id))
	}
	labeled := make([]byte, 0, 2+len(hpkeVersion)+len(suiteID)+len(label)+len(info))
	labeled = binary.BigEndian.AppendUint16(labeled, uint16(length))
	labeled = append(labeled, hpkeVersion...)
	labeled = append(labeled, suiteID...)
	labeled = append(labeled, label...)
	labeled = append(labeled, info...)
	return hkdf.Expand(k.hash, prk, string(labeled), length)
}

// labeledDerive implements LabeledDerive of a one-stage KDF
// (draft-ietf-hpke-pq, Section 4): SHAKE(ikm || "HPKE-v1" || suite_id ||
// I2OSP(len(label), 2) || label || I2OSP(L, 2) || context, L).
func (k *kdf) labeledDerive(suiteID, ikm []byte, label string, context []byte, length int) ([]byte, error) {
	if length < 0 || length > 0xffff || len(label) > 0xffff {
		return nil, errors.New("kem: derive length out of range")
	}
	h := k.shake()
	h.Write(ikm)
	h.Write([]byte(hpkeVersion))
	h.Write(suiteID)
	h.Write(binary.BigEndian.AppendUint16(nil, uint16(len(label))))
	h.Write([]byte(label))
	h.Write(binary.BigEndian.AppendUint16(nil, uint16(length)))
	h.Write(context)
	out := make([]byte, length)
	h.Read(out)
	return out, nil
}

// kemSuiteID is "KEM" || I2OSP(kem_id, 2) (RFC 9180, Section 4.1).
func kemSuiteID(id uint16) []byte {
	return binary.BigEndian.AppendUint16([]byte("KEM"), id)
}

// hpkeSuiteID is "HPKE" || I2OSP(kem_id, 2) || I2OSP(kdf_id, 2) ||
// I2OSP(aead_id, 2) (RFC 9180, Section 5.1).
func hpkeSuiteID(kemID uint16, kdfID KDFID, aeadID AEADID) []byte {
	b := []byte("HPKE")
	b = binary.BigEndian.AppendUint16(b, kemID)
	b = binary.BigEndian.AppendUint16(b, uint16(kdfID))
	return binary.BigEndian.AppendUint16(b, uint16(aeadID))
}
