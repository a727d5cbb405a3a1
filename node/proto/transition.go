package proto

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
)

// Key transitions (docs/PROTOCOL.md, "Changing the password"). The user
// key is derived from OPAQUE's export_key, so a new password means a new
// user key. The old key signs a statement naming the new one; contacts
// who pinned the old key follow such statements, and only such
// statements, to the new key without asking their user.
//
// Encoding (fixed length, TransitionLen bytes):
//
//	transition = oldKey ‖ newKey ‖ signature
//	signature  = SignWithLabel(old private key, "qpchat KeyTransition v1", content)
//	content    = 0x01 ‖ len32 ‖ user ‖ len32 ‖ oldKey ‖ len32 ‖ newKey
//
// (RFC 9420, Section 5.1.2, SignWithLabel). Both keys are Ed25519 user
// keys, user the normalised user name.

// LabelKeyTransition is the SignWithLabel label of key transitions.
const LabelKeyTransition = "qpchat KeyTransition v1"

// TransitionLen is the length of every well-formed transition.
const TransitionLen = 2*ed25519.PublicKeySize + ed25519.SignatureSize

// MaxTransitions bounds the transitions the node keeps per user (the
// oldest are dropped; a contact offline for more password changes than
// this sees a changed key and verifies it by hand).
const MaxTransitions = 32

// Transition is one key-transition statement.
type Transition struct {
	Old, New  []byte // Ed25519 user public keys
	Signature []byte // by Old over TransitionContent
}

// ErrMalformedTransition is returned by ParseTransition.
var ErrMalformedTransition = errors.New("proto: malformed key transition")

// Marshal encodes the statement.
func (t *Transition) Marshal() []byte {
	out := make([]byte, 0, TransitionLen)
	out = append(out, t.Old...)
	out = append(out, t.New...)
	return append(out, t.Signature...)
}

// ParseTransition decodes a statement of exactly TransitionLen bytes. It
// does not check the signature (Verify does).
func ParseTransition(b []byte) (*Transition, error) {
	if len(b) != TransitionLen {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrMalformedTransition, len(b), TransitionLen)
	}
	k := ed25519.PublicKeySize
	return &Transition{Old: bytes.Clone(b[:k]), New: bytes.Clone(b[k : 2*k]), Signature: bytes.Clone(b[2*k:])}, nil
}

// TransitionContent is the content a transition's signature covers.
func TransitionContent(user string, oldKey, newKey []byte) []byte {
	return build(func(b *cryptobyte.Builder) {
		b.AddUint8(1)
		addLen32(b, []byte(user))
		addLen32(b, oldKey)
		addLen32(b, newKey)
	})
}

// SignTransition makes the statement by which oldKey hands user's
// identity to newKey.
func SignTransition(oldKey ed25519.PrivateKey, user string, newKey []byte) *Transition {
	pub := oldKey.Public().(ed25519.PublicKey)
	return &Transition{Old: bytes.Clone(pub), New: bytes.Clone(newKey),
		Signature: SignWithLabel(oldKey, LabelKeyTransition, TransitionContent(user, pub, newKey))}
}

// Verify checks the statement's signature by its old key for user.
func (t *Transition) Verify(user string) bool {
	return len(t.New) == ed25519.PublicKeySize && !bytes.Equal(t.Old, t.New) &&
		VerifyWithLabel(t.Old, LabelKeyTransition, TransitionContent(user, t.Old, t.New), t.Signature)
}

// FollowTransitions walks the statements from the pinned key: each step
// must start at the current key and verify. It returns the keys passed
// through, pinned first and target last, if the walk reaches target, and
// nil otherwise (no chain, a broken or forged step).
func FollowTransitions(user string, pinned, target []byte, ts []*Transition) [][]byte {
	cur := pinned
	chain := [][]byte{pinned}
	for _, t := range ts {
		if bytes.Equal(cur, target) {
			break
		}
		if !bytes.Equal(t.Old, cur) {
			continue // an older step, before the pinned key
		}
		if !t.Verify(user) {
			return nil
		}
		cur = t.New
		chain = append(chain, cur)
	}
	if !bytes.Equal(cur, target) || len(chain) < 2 {
		return nil
	}
	return chain
}

// DeviceCertLen is the length of a device key ‖ certificate pair
// (Session.changePassword).
const DeviceCertLen = ed25519.PublicKeySize + ed25519.SignatureSize

// ParseDeviceCert splits a device key ‖ certificate pair.
func ParseDeviceCert(b []byte) (device, cert []byte, err error) {
	if len(b) != DeviceCertLen {
		return nil, nil, fmt.Errorf("proto: device certificate of %d bytes, want %d", len(b), DeviceCertLen)
	}
	return bytes.Clone(b[:ed25519.PublicKeySize]), bytes.Clone(b[ed25519.PublicKeySize:]), nil
}
