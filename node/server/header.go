package server

import (
	"fmt"
	"time"

	"qpchat/mls"
	"qpchat/node/proto"
)

// The node reads only the clear parts of the MLS messages it routes
// (DESIGN, Groups and delivery): the wire format, and for framed
// messages the group id, epoch and content type (RFC 9420, Section 6);
// the new_member references of a Welcome (Section 12.4.3); and the
// KeyPackages it stores (Section 10).

// header is the routing information of a framed MLSMessage.
type header struct {
	wireFormat  mls.WireFormat
	group       []byte
	epoch       uint64
	contentType mls.ContentType
}

// parseHeader decodes a PublicMessage or PrivateMessage (the whole
// message, so that malformed ones never reach other members) and returns
// its header.
func parseHeader(b []byte) (header, error) {
	m, err := mls.UnmarshalMLSMessage(b)
	if err != nil {
		return header{}, err
	}
	switch m.WireFormat {
	case mls.WireFormatPublicMessage:
		c := &m.PublicMessage.Content
		return header{m.WireFormat, c.GroupID, c.Epoch, c.ContentType}, nil
	case mls.WireFormatPrivateMessage:
		p := m.PrivateMessage
		return header{m.WireFormat, p.GroupID, p.Epoch, p.ContentType}, nil
	}
	return header{}, fmt.Errorf("server: MLS message of wire format %d where a public or private message is expected", m.WireFormat)
}

// welcomeRefs decodes an MLSMessage holding a Welcome and returns its
// new_member KeyPackageRefs.
func welcomeRefs(b []byte) ([][]byte, error) {
	m, err := mls.UnmarshalMLSMessage(b)
	if err != nil {
		return nil, err
	}
	if m.WireFormat != mls.WireFormatWelcome {
		return nil, fmt.Errorf("server: MLS message of wire format %d where a Welcome is expected", m.WireFormat)
	}
	refs := make([][]byte, len(m.Welcome.Secrets))
	for i, s := range m.Welcome.Secrets {
		refs[i] = s.NewMember
	}
	return refs, nil
}

// maxKeyPackageLifetime bounds a KeyPackage leaf's validity: 90 days
// (DESIGN, KeyPackages) plus the hour clients back-date it by.
const maxKeyPackageLifetime = 90*24*time.Hour + time.Hour

// checkKeyPackage decodes an MLSMessage holding a KeyPackage and
// validates it for upload by device of user (docs/PROTOCOL.md): suite,
// RFC 9420 Section 10.1 validation at now, lifetime, leaf signature key
// equal to the device, and a credential naming user and device with a
// certificate from userKey. It returns the KeyPackageRef.
func checkKeyPackage(b []byte, suite uint16, device []byte, user string, userKey []byte, now time.Time) ([]byte, error) {
	m, err := mls.UnmarshalMLSMessage(b)
	if err != nil {
		return nil, err
	}
	if m.WireFormat != mls.WireFormatKeyPackage {
		return nil, fmt.Errorf("server: MLS message of wire format %d where a KeyPackage is expected", m.WireFormat)
	}
	kp := m.KeyPackage
	if uint16(kp.CipherSuite) != suite {
		return nil, fmt.Errorf("server: KeyPackage of suite 0x%04x uploaded as 0x%04x", uint16(kp.CipherSuite), suite)
	}
	lt := kp.LeafNode.Lifetime
	if lt.NotAfter < lt.NotBefore || lt.NotAfter-lt.NotBefore > uint64(maxKeyPackageLifetime/time.Second) {
		return nil, fmt.Errorf("server: KeyPackage lifetime of %d s exceeds %v", lt.NotAfter-lt.NotBefore, maxKeyPackageLifetime)
	}
	if string(kp.LeafNode.SignatureKey) != string(device) {
		return nil, fmt.Errorf("server: KeyPackage of another device")
	}
	err = mls.ValidateKeyPackage(kp, kp.CipherSuite, now, func(c mls.Credential, sigKey []byte) error {
		if c.Type != mls.CredentialTypeBasic {
			return fmt.Errorf("server: credential of type %d, want basic", c.Type)
		}
		return proto.VerifyCredential(c.Identity, sigKey, user, userKey)
	})
	if err != nil {
		return nil, err
	}
	return mls.MakeKeyPackageRef(kp)
}
