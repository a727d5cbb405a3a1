package mls

import (
	"golang.org/x/crypto/cryptobyte"
)

// KeyPackageRef identifies a KeyPackage: RefHash("MLS 1.0 KeyPackage
// Reference", KeyPackage) (RFC 9420, Section 5.2). refs.go computes it.
type KeyPackageRef []byte

// KeyPackage is a client's pre-published offer to join groups (RFC 9420,
// Section 10). Validation (Section 10.1) is not part of decoding.
//
//	struct {
//	    ProtocolVersion version;
//	    CipherSuite cipher_suite;
//	    HPKEPublicKey init_key;
//	    LeafNode leaf_node;
//	    Extension extensions<V>;
//	    opaque signature<V>;
//	} KeyPackage;
type KeyPackage struct {
	Version     ProtocolVersion
	CipherSuite CipherSuite
	InitKey     []byte
	LeafNode    LeafNode
	Extensions  Extensions
	// Signature is SignWithLabel(., "KeyPackageTBS", KeyPackageTBS).
	Signature []byte
}

// marshalTBSTo writes KeyPackageTBS: every field except the signature.
func (kp *KeyPackage) marshalTBSTo(b *cryptobyte.Builder) {
	b.AddUint16(uint16(kp.Version))
	b.AddUint16(uint16(kp.CipherSuite))
	writeOpaque(b, kp.InitKey)
	kp.LeafNode.marshal(b)
	kp.Extensions.marshal(b)
}

// marshalTBS returns the KeyPackageTBS encoding the signature covers
// (RFC 9420, Section 10).
func (kp *KeyPackage) marshalTBS() ([]byte, error) { return marshalWith(kp.marshalTBSTo) }

func (kp *KeyPackage) marshal(b *cryptobyte.Builder) {
	kp.marshalTBSTo(b)
	writeOpaque(b, kp.Signature)
}

func (kp *KeyPackage) unmarshal(s *cryptobyte.String) error {
	*kp = KeyPackage{}
	if !s.ReadUint16((*uint16)(&kp.Version)) ||
		!s.ReadUint16((*uint16)(&kp.CipherSuite)) ||
		!readOpaque(s, &kp.InitKey) {
		return errDecode
	}
	if err := kp.LeafNode.unmarshal(s); err != nil {
		return err
	}
	if err := kp.Extensions.unmarshal(s); err != nil {
		return err
	}
	if !readOpaque(s, &kp.Signature) {
		return errDecode
	}
	return nil
}

// Marshal returns the TLS encoding of kp.
func (kp *KeyPackage) Marshal() ([]byte, error) { return marshalWith(kp.marshal) }

// UnmarshalKeyPackage decodes a bare KeyPackage (not wrapped in an
// MLSMessage), rejecting trailing bytes.
func UnmarshalKeyPackage(data []byte) (*KeyPackage, error) {
	kp := new(KeyPackage)
	if err := unmarshalAll(data, kp.unmarshal); err != nil {
		return nil, err
	}
	return kp, nil
}
