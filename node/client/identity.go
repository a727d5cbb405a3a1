package client

// This file holds what the client shows of identities: fingerprints of
// keys and safety numbers. The encodings the node checks too (device
// certificates, the MLS credential identity, the user key derivation)
// live in node/proto.

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"

	"golang.org/x/crypto/cryptobyte"

	"qpchat/mls"
	"qpchat/node/proto"
)

// labelSafetyNumber separates the safety number hash from other uses.
const labelSafetyNumber = "qpchat safety number v1"

// Fingerprint formats the fingerprint of a public key: "sha256:" and the
// hex of SHA-256 over it. For a device key it is the hex of its device id.
func Fingerprint(pub []byte) string {
	h := sha256.Sum256(pub)
	return "sha256:" + hex.EncodeToString(h[:])
}

// SafetyNumber computes the number two users compare to check each
// other's user keys: 60 digits in 12 groups of 5, the same on both sides
// (the pairs are sorted by name). Each group is 5 bytes of SHA-512 over
// the label and both (name, key) pairs, reduced modulo 100000.
func SafetyNumber(userA string, keyA []byte, userB string, keyB []byte) string {
	type pair struct {
		user string
		key  []byte
	}
	p := []pair{{userA, keyA}, {userB, keyB}}
	if userB < userA || (userA == userB && bytes.Compare(keyB, keyA) < 0) {
		p[0], p[1] = p[1], p[0]
	}
	var b cryptobyte.Builder
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(labelSafetyNumber)) })
	for _, x := range p {
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(x.user)) })
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(x.key) })
	}
	sum := sha512.Sum512(b.BytesOrPanic())
	groups := make([]string, 12)
	for i := range groups {
		var buf [8]byte
		copy(buf[3:], sum[i*5:i*5+5])
		groups[i] = fmt.Sprintf("%05d", binary.BigEndian.Uint64(buf[:])%100000)
	}
	return strings.Join(groups, " ")
}

// credentialFor returns the MLS BasicCredential of a device.
func credentialFor(user string, deviceKey, cert []byte) mls.Credential {
	ci := proto.CredentialIdentity{User: user, DeviceID: proto.DeviceID(deviceKey), Certificate: cert}
	return mls.Credential{Type: mls.CredentialTypeBasic, Identity: ci.Marshal()}
}

// identityOf parses the qpchat identity of an MLS credential.
func identityOf(c mls.Credential) (*proto.CredentialIdentity, error) {
	if c.Type != mls.CredentialTypeBasic {
		return nil, fmt.Errorf("client: credential type %d is not basic", c.Type)
	}
	return proto.ParseCredentialIdentity(c.Identity)
}
