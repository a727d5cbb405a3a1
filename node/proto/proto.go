// Package proto holds what a qpchat client and node must compute alike
// beyond the Cap'n Proto schema (schemas/node.capnp): user name
// normalisation, the byte strings that device signatures, device
// certificates and the OPAQUE channel-binding proofs cover, the user key
// derived from OPAQUE's export_key, the MLS credential identity, and the
// error codes a node puts in front of its error messages.
//
// docs/PROTOCOL.md describes the same constructions in prose; this
// package is their single implementation.
package proto

import (
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/text/secure/precis"
)

// MaxUserLen bounds a normalised user name, in bytes.
const MaxUserLen = 256

// NormalizeUser applies PRECIS UsernameCaseMapped (RFC 8265, Section 3.3:
// width mapping, case folding, NFC, and the IdentifierClass rules) and
// checks the length. Every user name is normalised before it is used
// anywhere, by client and node alike.
func NormalizeUser(name string) (string, error) {
	if !utf8.ValidString(name) {
		return "", errors.New("proto: user name is not valid UTF-8")
	}
	n, err := precis.UsernameCaseMapped.String(name)
	if err != nil {
		return "", fmt.Errorf("proto: user name %q is not allowed: %w", name, err)
	}
	if len(n) == 0 || len(n) > MaxUserLen {
		return "", fmt.Errorf("proto: user name of %d bytes, want 1..%d", len(n), MaxUserLen)
	}
	return n, nil
}

// Signature labels (used with SignWithLabel, which prefixes "MLS 1.0 ").
const (
	LabelDeviceAuth     = "qpchat DeviceAuth v1"
	LabelDeviceRegister = "qpchat DeviceRegister v1"
)

// deviceCertLabel starts the content a device certificate signs.
const deviceCertLabel = "qpchat device cert v1"

// Info strings of the HKDF-Expand derivations.
const (
	userKeyInfo        = "qpchat user key v1"
	channelBindingInfo = "qpchat cb v1"
)

// Roles of the channel-binding proofs.
const (
	RoleClient = "client"
	RoleServer = "server"
)

// Ed25519Suites are the MLS cipher suites whose signature scheme is
// Ed25519, the only ones a qpchat device key can sign for: 0x0001,
// 0x0003 and qpchat's hybrid suites 0xFA01 and 0xFA02.
var Ed25519Suites = []uint16{0x0001, 0x0003, 0xFA01, 0xFA02}

// SuiteAllowed reports whether suite is one of Ed25519Suites.
func SuiteAllowed(suite uint16) bool {
	for _, s := range Ed25519Suites {
		if s == suite {
			return true
		}
	}
	return false
}

// addVarOpaque writes opaque<V> with RFC 9420's variable-length integer
// prefix (Section 2.1.2).
func addVarOpaque(b *cryptobyte.Builder, v []byte) {
	n := len(v)
	switch {
	case n < 1<<6:
		b.AddUint8(uint8(n))
	case n < 1<<14:
		b.AddUint16(uint16(n) | 0x4000)
	case n < 1<<30:
		b.AddUint32(uint32(n) | 0x80000000)
	default:
		b.SetError(errors.New("proto: value too long for a variable-length vector"))
		return
	}
	b.AddBytes(v)
}

// readVarOpaque reads opaque<V>, requiring the minimal length encoding
// (RFC 9420, Section 2.1.2).
func readVarOpaque(s *cryptobyte.String, out *[]byte) bool {
	var first uint8
	if !s.ReadUint8(&first) {
		return false
	}
	var n uint32
	switch first >> 6 {
	case 0:
		n = uint32(first)
	case 1:
		var lo uint8
		if !s.ReadUint8(&lo) {
			return false
		}
		n = uint32(first&0x3f)<<8 | uint32(lo)
		if n < 1<<6 {
			return false
		}
	case 2:
		var lo [3]byte
		if !s.CopyBytes(lo[:]) {
			return false
		}
		n = uint32(first&0x3f)<<24 | uint32(lo[0])<<16 | uint32(lo[1])<<8 | uint32(lo[2])
		if n < 1<<14 {
			return false
		}
	default:
		return false
	}
	var v []byte
	if !s.ReadBytes(&v, int(n)) {
		return false
	}
	*out = append([]byte(nil), v...)
	return true
}

func build(f func(b *cryptobyte.Builder)) []byte {
	var b cryptobyte.Builder
	f(&b)
	out, err := b.Bytes()
	if err != nil {
		panic(err) // only for values of 1 GiB and more, which callers bound
	}
	return out
}

// signContent is RFC 9420's SignContent (Section 5.1.2):
// struct { opaque label<V> = "MLS 1.0 " + label; opaque content<V>; }.
func signContent(label string, content []byte) []byte {
	return build(func(b *cryptobyte.Builder) {
		addVarOpaque(b, []byte("MLS 1.0 "+label))
		addVarOpaque(b, content)
	})
}

// SignWithLabel is RFC 9420's SignWithLabel (Section 5.1.2) for Ed25519.
func SignWithLabel(key ed25519.PrivateKey, label string, content []byte) []byte {
	return ed25519.Sign(key, signContent(label, content))
}

// VerifyWithLabel is RFC 9420's VerifyWithLabel (Section 5.1.2) for
// Ed25519; a malformed key or signature does not verify.
func VerifyWithLabel(pub []byte, label string, content, sig []byte) bool {
	if len(pub) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize {
		return false
	}
	return ed25519.Verify(ed25519.PublicKey(pub), signContent(label, content), sig)
}

// DeviceAuth returns the TLS encoding of the struct a device signs to
// authenticate (label LabelDeviceAuth) or to prove possession when it is
// registered (label LabelDeviceRegister):
//
//	struct {
//	    opaque exporter<V>;       // the connection's channel binding
//	    opaque user<V>;           // normalised user name
//	    opaque device_key<V>;     // Ed25519 public key
//	    opaque server_spki_hash<V>; // SHA-256 of the node's SPKI
//	} DeviceAuth;
func DeviceAuth(exporter []byte, user string, device, spkiHash []byte) []byte {
	return build(func(b *cryptobyte.Builder) {
		addVarOpaque(b, exporter)
		addVarOpaque(b, []byte(user))
		addVarOpaque(b, device)
		addVarOpaque(b, spkiHash)
	})
}

// SPKIHashFromFingerprint returns the SHA-256 of the node's
// SubjectPublicKeyInfo from its fingerprint (rpc.Fingerprint), which is
// that hash in hex.
func SPKIHashFromFingerprint(fp string) ([]byte, error) {
	h, ok := strings.CutPrefix(fp, "sha256:")
	b, err := hex.DecodeString(h)
	if !ok || err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("proto: malformed fingerprint %q", fp)
	}
	return b, nil
}

// deviceCertContent is what a device certificate signs:
//
//	struct {
//	    opaque label<V> = "qpchat device cert v1";
//	    opaque user<V>;
//	    opaque device_key<V>;
//	} DeviceCertContent;
func deviceCertContent(user string, device []byte) []byte {
	return build(func(b *cryptobyte.Builder) {
		addVarOpaque(b, []byte(deviceCertLabel))
		addVarOpaque(b, []byte(user))
		addVarOpaque(b, device)
	})
}

// SignDeviceCert returns the device certificate of device: the user
// key's Ed25519 signature (64 bytes) over DeviceCertContent.
func SignDeviceCert(userKey ed25519.PrivateKey, user string, device []byte) []byte {
	return ed25519.Sign(userKey, deviceCertContent(user, device))
}

// VerifyDeviceCert checks a device certificate against the user key.
func VerifyDeviceCert(userKey []byte, user string, device, cert []byte) bool {
	if len(userKey) != ed25519.PublicKeySize || len(cert) != ed25519.SignatureSize {
		return false
	}
	return ed25519.Verify(ed25519.PublicKey(userKey), deviceCertContent(user, device), cert)
}

// UserKey derives the user's Ed25519 key from OPAQUE's export_key:
// seed = HKDF-Expand-SHA512(export_key, "qpchat user key v1", 32).
func UserKey(exportKey []byte) (ed25519.PrivateKey, error) {
	seed, err := hkdf.Expand(sha512.New, exportKey, userKeyInfo, ed25519.SeedSize)
	if err != nil {
		return nil, fmt.Errorf("proto: user key: %w", err)
	}
	k := ed25519.NewKeyFromSeed(seed)
	clear(seed)
	return k, nil
}

// ChannelBindingKey derives the key of the login binding proofs:
// HKDF-Expand-SHA512(session_key, "qpchat cb v1", 32).
func ChannelBindingKey(sessionKey []byte) ([]byte, error) {
	k, err := hkdf.Expand(sha512.New, sessionKey, channelBindingInfo, 32)
	if err != nil {
		return nil, fmt.Errorf("proto: channel binding key: %w", err)
	}
	return k, nil
}

// BindingProof returns HMAC-SHA512(key, role ‖ exporter), role being
// RoleClient or RoleServer.
func BindingProof(key []byte, role string, exporter []byte) []byte {
	m := hmac.New(sha512.New, key)
	m.Write([]byte(role))
	m.Write(exporter)
	return m.Sum(nil)
}

// VerifyBindingProof checks a proof in constant time.
func VerifyBindingProof(key []byte, role string, exporter, proof []byte) bool {
	return hmac.Equal(BindingProof(key, role, exporter), proof)
}

// DeviceID is SHA-256 of the device's public key.
func DeviceID(device []byte) [32]byte { return sha256.Sum256(device) }

// CredentialIdentity is the identity of a qpchat device's MLS
// BasicCredential:
//
//	struct {
//	    opaque user<V>;
//	    opaque device_id<V>;    // SHA-256 of the device key, 32 bytes
//	    opaque certificate<V>;  // the device certificate, 64 bytes
//	} CredentialIdentity;
type CredentialIdentity struct {
	User        string
	DeviceID    [32]byte
	Certificate []byte
}

// Marshal returns the TLS encoding of c.
func (c *CredentialIdentity) Marshal() []byte {
	return build(func(b *cryptobyte.Builder) {
		addVarOpaque(b, []byte(c.User))
		addVarOpaque(b, c.DeviceID[:])
		addVarOpaque(b, c.Certificate)
	})
}

// ParseCredentialIdentity decodes a CredentialIdentity, requiring exact
// field lengths and no trailing bytes; it does not normalise or verify.
func ParseCredentialIdentity(b []byte) (*CredentialIdentity, error) {
	s := cryptobyte.String(b)
	var user, id, cert []byte
	if !readVarOpaque(&s, &user) || !readVarOpaque(&s, &id) || !readVarOpaque(&s, &cert) || !s.Empty() ||
		len(user) == 0 || len(user) > MaxUserLen || len(id) != 32 || len(cert) != ed25519.SignatureSize {
		return nil, errors.New("proto: malformed credential identity")
	}
	c := &CredentialIdentity{User: string(user), Certificate: cert}
	copy(c.DeviceID[:], id)
	return c, nil
}

// VerifyCredential checks that identity (a BasicCredential's identity)
// names user, belongs to the device key signatureKey and carries a
// certificate that userKey signed.
func VerifyCredential(identity []byte, signatureKey []byte, user string, userKey []byte) error {
	c, err := ParseCredentialIdentity(identity)
	if err != nil {
		return err
	}
	if c.User != user {
		return fmt.Errorf("proto: credential names user %q, want %q", c.User, user)
	}
	if c.DeviceID != DeviceID(signatureKey) {
		return errors.New("proto: credential device id does not match the signature key")
	}
	if !VerifyDeviceCert(userKey, user, signatureKey, c.Certificate) {
		return errors.New("proto: device certificate does not verify under the user key")
	}
	return nil
}

// Frame and message sizes a client and a node must agree on. A fetch
// answer holds at most MaxFetchAnswerBytes of messages (their data and
// stamps), or a single message when one alone is larger; a single
// message is at most MaxMessageSize (a node's --max-message-size may not
// exceed it) plus its stamp. Both fit in MinClientFrameSize with room
// for the Cap'n Proto framing, so a client that accepts frames of
// MinClientFrameSize can always receive what its queue holds.
const (
	// MinClientFrameSize is the smallest Cap'n Proto frame limit
	// (rpc.MessageLimits.MaxMessageSize) a client must accept, and the
	// smallest a node accepts from clients.
	MinClientFrameSize = 4 << 20
	// MaxFetchAnswerBytes bounds the messages of one fetch answer.
	MaxFetchAnswerBytes = 1 << 20
	// MaxMessageSize is the largest MLS message any node accepts
	// (the upper bound of --max-message-size): one frame of
	// MinClientFrameSize holds it with 1 MiB to spare for its stamp
	// (sender, group, added and removed device keys) and framing.
	MaxMessageSize = MinClientFrameSize - 1<<20
)
