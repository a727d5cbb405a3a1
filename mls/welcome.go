package mls

import (
	"golang.org/x/crypto/cryptobyte"
)

// GroupInfo describes a group to a joiner (RFC 9420, Section 12.4.3).
//
//	struct {
//	    GroupContext group_context;
//	    Extension extensions<V>;
//	    MAC confirmation_tag;
//	    uint32 signer;
//	    opaque signature<V>;
//	} GroupInfo;
type GroupInfo struct {
	GroupContext    GroupContext
	Extensions      Extensions
	ConfirmationTag []byte
	Signer          leafIndex
	// Signature is SignWithLabel(., "GroupInfoTBS", GroupInfoTBS).
	Signature []byte
}

// marshalTBSTo writes GroupInfoTBS: every field except the signature.
func (gi *GroupInfo) marshalTBSTo(b *cryptobyte.Builder) {
	gi.GroupContext.marshal(b)
	gi.Extensions.marshal(b)
	writeOpaque(b, gi.ConfirmationTag)
	b.AddUint32(uint32(gi.Signer))
}

// marshalTBS returns the GroupInfoTBS encoding the signature covers
// (RFC 9420, Section 12.4.3).
func (gi *GroupInfo) marshalTBS() ([]byte, error) { return marshalWith(gi.marshalTBSTo) }

func (gi *GroupInfo) marshal(b *cryptobyte.Builder) {
	gi.marshalTBSTo(b)
	writeOpaque(b, gi.Signature)
}

func (gi *GroupInfo) unmarshal(s *cryptobyte.String) error {
	*gi = GroupInfo{}
	if err := gi.GroupContext.unmarshal(s); err != nil {
		return err
	}
	if err := gi.Extensions.unmarshal(s); err != nil {
		return err
	}
	if !readOpaque(s, &gi.ConfirmationTag) ||
		!s.ReadUint32((*uint32)(&gi.Signer)) ||
		!readOpaque(s, &gi.Signature) {
		return errDecode
	}
	return nil
}

// Marshal returns the TLS encoding of gi (without the MLSMessage header).
func (gi *GroupInfo) Marshal() ([]byte, error) { return marshalWith(gi.marshal) }

// UnmarshalGroupInfo decodes a bare GroupInfo, as found in decrypted
// Welcome.encrypted_group_info, rejecting trailing bytes.
func UnmarshalGroupInfo(data []byte) (*GroupInfo, error) {
	gi := new(GroupInfo)
	if err := unmarshalAll(data, gi.unmarshal); err != nil {
		return nil, err
	}
	return gi, nil
}

// PathSecret is struct { opaque path_secret<V>; } (RFC 9420,
// Section 12.4.3).
type PathSecret struct {
	PathSecret []byte
}

// GroupSecrets are the secrets a Welcome encrypts to each new member
// (RFC 9420, Section 12.4.3).
//
//	struct {
//	    opaque joiner_secret<V>;
//	    optional<PathSecret> path_secret;
//	    PreSharedKeyID psks<V>;
//	} GroupSecrets;
type GroupSecrets struct {
	JoinerSecret []byte
	// PathSecret is nil when absent.
	PathSecret *PathSecret
	PSKs       []PreSharedKeyID
}

func (gs *GroupSecrets) marshal(b *cryptobyte.Builder) {
	writeOpaque(b, gs.JoinerSecret)
	writeOptional(b, gs.PathSecret != nil)
	if gs.PathSecret != nil {
		writeOpaque(b, gs.PathSecret.PathSecret)
	}
	writeVector(b, func(b *cryptobyte.Builder) {
		for i := range gs.PSKs {
			gs.PSKs[i].marshal(b)
		}
	})
}

func (gs *GroupSecrets) unmarshal(s *cryptobyte.String) error {
	*gs = GroupSecrets{}
	var present bool
	if !readOpaque(s, &gs.JoinerSecret) || !readOptional(s, &present) {
		return errDecode
	}
	if present {
		gs.PathSecret = new(PathSecret)
		if !readOpaque(s, &gs.PathSecret.PathSecret) {
			return errDecode
		}
	}
	return readList(s, func(s *cryptobyte.String) error {
		var id PreSharedKeyID
		if err := id.unmarshal(s); err != nil {
			return err
		}
		gs.PSKs = append(gs.PSKs, id)
		return nil
	})
}

// Marshal returns the TLS encoding of gs.
func (gs *GroupSecrets) Marshal() ([]byte, error) { return marshalWith(gs.marshal) }

// UnmarshalGroupSecrets decodes a GroupSecrets, rejecting trailing bytes.
func UnmarshalGroupSecrets(data []byte) (*GroupSecrets, error) {
	gs := new(GroupSecrets)
	if err := unmarshalAll(data, gs.unmarshal); err != nil {
		return nil, err
	}
	return gs, nil
}

// EncryptedGroupSecrets is the GroupSecrets for one new member, encrypted
// to the init key of its KeyPackage (RFC 9420, Section 12.4.3).
//
//	struct {
//	    KeyPackageRef new_member;
//	    HPKECiphertext encrypted_group_secrets;
//	} EncryptedGroupSecrets;
type EncryptedGroupSecrets struct {
	NewMember             KeyPackageRef
	EncryptedGroupSecrets HPKECiphertext
}

func (e *EncryptedGroupSecrets) marshal(b *cryptobyte.Builder) {
	writeOpaque(b, e.NewMember)
	e.EncryptedGroupSecrets.marshal(b)
}

func (e *EncryptedGroupSecrets) unmarshal(s *cryptobyte.String) error {
	*e = EncryptedGroupSecrets{}
	if !readOpaque(s, (*[]byte)(&e.NewMember)) {
		return errDecode
	}
	return e.EncryptedGroupSecrets.unmarshal(s)
}

// Welcome lets new members join a group (RFC 9420, Section 12.4.3).
//
//	struct {
//	    CipherSuite cipher_suite;
//	    EncryptedGroupSecrets secrets<V>;
//	    opaque encrypted_group_info<V>;
//	} Welcome;
type Welcome struct {
	CipherSuite        CipherSuite
	Secrets            []EncryptedGroupSecrets
	EncryptedGroupInfo []byte
}

func (w *Welcome) marshal(b *cryptobyte.Builder) {
	b.AddUint16(uint16(w.CipherSuite))
	writeList(b, len(w.Secrets), func(i int, b *cryptobyte.Builder) { w.Secrets[i].marshal(b) })
	writeOpaque(b, w.EncryptedGroupInfo)
}

func (w *Welcome) unmarshal(s *cryptobyte.String) error {
	return w.decode(s, false)
}

// decode reads a Welcome. With share, its byte fields alias the input
// instead of being copied: for a joiner that opens the Welcome and drops
// it while the input is still held (openWelcomeFor), so that the entries
// of every other new member, a hybrid KEM output of over a kilobyte each,
// are not copied.
func (w *Welcome) decode(s *cryptobyte.String, share bool) error {
	*w = Welcome{}
	if !s.ReadUint16((*uint16)(&w.CipherSuite)) {
		return errDecode
	}
	read := readOpaque
	if share {
		read = readShared
	}
	err := readList(s, func(s *cryptobyte.String) error {
		var e EncryptedGroupSecrets
		if !read(s, (*[]byte)(&e.NewMember)) || !read(s, &e.EncryptedGroupSecrets.KEMOutput) ||
			!read(s, &e.EncryptedGroupSecrets.Ciphertext) {
			return errDecode
		}
		w.Secrets = append(w.Secrets, e)
		return nil
	})
	if err != nil {
		return err
	}
	if !read(s, &w.EncryptedGroupInfo) {
		return errDecode
	}
	return nil
}

// Marshal returns the TLS encoding of w (without the MLSMessage header).
func (w *Welcome) Marshal() ([]byte, error) { return marshalWith(w.marshal) }

// UnmarshalWelcome decodes a bare Welcome, rejecting trailing bytes.
func UnmarshalWelcome(data []byte) (*Welcome, error) {
	w := new(Welcome)
	if err := unmarshalAll(data, w.unmarshal); err != nil {
		return nil, err
	}
	return w, nil
}
