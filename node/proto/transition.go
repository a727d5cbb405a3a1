package proto

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
)

// Key transitions (docs/PROTOCOL.md, "Changing the password"). The user
// key is derived from OPAQUE's export_key, so a new password means a new
// user key. A transition is a statement signed by both keys: the old key
// hands the user's name to the new one, and the new key names the old one
// as its predecessor. Contacts who pinned the old key follow such
// statements forwards (the key they trust vouched for the next); a
// contact who pinned the new key walks them backwards, to accept devices
// certified before the change (the key it trusts named its
// predecessor). A statement signed by one key only could be made by
// anyone holding a key of their own (a hostile node), in either
// direction, so both signatures are required.
//
// Encoding (fixed length, TransitionLen bytes, all integers big-endian):
//
//	transition = oldKey ‖ newKey ‖ uint64 seq ‖ oldSignature ‖ newSignature
//	content    = 0x02 ‖ len32 ‖ user ‖ len32 ‖ oldKey ‖ len32 ‖ newKey ‖ uint64 seq
//	oldSignature = SignWithLabel(old private key, "qpchat KeyTransition v2", content)
//	newSignature = SignWithLabel(new private key, "qpchat KeyTransition new v2", content)
//
// (RFC 9420, Section 5.1.2, SignWithLabel). Both keys are Ed25519 user
// keys, user the normalised user name, seq the number of this change
// among the account's key changes (1 for the first). Format 1 (128
// bytes: one signature, no seq) was never released and is not accepted.

// Labels of the two signatures of a key transition.
const (
	LabelKeyTransition    = "qpchat KeyTransition v2"
	LabelKeyTransitionNew = "qpchat KeyTransition new v2"
)

// transitionFormat is the first byte of TransitionContent.
const transitionFormat = 2

// TransitionLen is the length of every well-formed transition.
const TransitionLen = 2*ed25519.PublicKeySize + 8 + 2*ed25519.SignatureSize

// MaxTransitions bounds the transitions the node keeps per user (the
// oldest are dropped; a contact offline for more password changes than
// this sees a changed key and verifies it by hand).
const MaxTransitions = 32

// Transition is one key-transition statement.
type Transition struct {
	Old, New []byte // Ed25519 user public keys
	// Seq numbers the account's key changes: 1 for the first, and one
	// more than the previous statement for each next one.
	Seq          uint64
	OldSignature []byte // by Old over TransitionContent
	NewSignature []byte // by New over TransitionContent
}

// ErrMalformedTransition is returned by ParseTransition.
var ErrMalformedTransition = errors.New("proto: malformed key transition")

// Marshal encodes the statement.
func (t *Transition) Marshal() []byte {
	out := make([]byte, 0, TransitionLen)
	out = append(out, t.Old...)
	out = append(out, t.New...)
	out = binary.BigEndian.AppendUint64(out, t.Seq)
	out = append(out, t.OldSignature...)
	return append(out, t.NewSignature...)
}

// ParseTransition decodes a statement of exactly TransitionLen bytes. It
// does not check the signatures (Verify does).
func ParseTransition(b []byte) (*Transition, error) {
	if len(b) != TransitionLen {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrMalformedTransition, len(b), TransitionLen)
	}
	k, s := ed25519.PublicKeySize, ed25519.SignatureSize
	return &Transition{
		Old:          bytes.Clone(b[:k]),
		New:          bytes.Clone(b[k : 2*k]),
		Seq:          binary.BigEndian.Uint64(b[2*k : 2*k+8]),
		OldSignature: bytes.Clone(b[2*k+8 : 2*k+8+s]),
		NewSignature: bytes.Clone(b[2*k+8+s:]),
	}, nil
}

// TransitionContent is the content both signatures of a transition cover.
func TransitionContent(user string, oldKey, newKey []byte, seq uint64) []byte {
	return build(func(b *cryptobyte.Builder) {
		b.AddUint8(transitionFormat)
		addLen32(b, []byte(user))
		addLen32(b, oldKey)
		addLen32(b, newKey)
		b.AddUint64(seq)
	})
}

// SignTransition makes the statement by which oldKey hands user's
// identity to newKey as the seq-th key change of the account.
func SignTransition(oldKey, newKey ed25519.PrivateKey, user string, seq uint64) *Transition {
	oldPub, newPub := oldKey.Public().(ed25519.PublicKey), newKey.Public().(ed25519.PublicKey)
	content := TransitionContent(user, oldPub, newPub, seq)
	return &Transition{Old: bytes.Clone(oldPub), New: bytes.Clone(newPub), Seq: seq,
		OldSignature: SignWithLabel(oldKey, LabelKeyTransition, content),
		NewSignature: SignWithLabel(newKey, LabelKeyTransitionNew, content)}
}

// Verify checks the statement for user: two different keys, a sequence
// number of at least 1, and both signatures.
func (t *Transition) Verify(user string) bool {
	if len(t.Old) != ed25519.PublicKeySize || len(t.New) != ed25519.PublicKeySize || bytes.Equal(t.Old, t.New) || t.Seq == 0 {
		return false
	}
	content := TransitionContent(user, t.Old, t.New, t.Seq)
	return VerifyWithLabel(t.Old, LabelKeyTransition, content, t.OldSignature) &&
		VerifyWithLabel(t.New, LabelKeyTransitionNew, content, t.NewSignature)
}

// verified returns the statements of ts that verify for user, and
// whether they are consistent: no key hands over to two keys, and no key
// names two predecessors. An inconsistent set means a user key signed two
// different changes, which an honest client never does (the node accepts
// one change per current key): that key is in other hands, and no walk
// through the set is trusted.
func verified(user string, ts []*Transition) ([]*Transition, bool) {
	var out []*Transition
	next, prev := map[string]*Transition{}, map[string]*Transition{}
	for _, t := range ts {
		if t == nil || !t.Verify(user) {
			continue
		}
		if n, ok := next[string(t.Old)]; ok {
			if !bytes.Equal(n.Marshal(), t.Marshal()) {
				return nil, false
			}
			continue // the same statement twice
		}
		if _, ok := prev[string(t.New)]; ok {
			return nil, false
		}
		next[string(t.Old)], prev[string(t.New)] = t, t
		out = append(out, t)
	}
	return out, true
}

// FollowTransitions walks the statements forwards from the pinned key:
// each step starts at the key reached so far, verifies, and has the next
// sequence number. It returns the keys passed through, pinned first and
// target last, if the walk reaches target; nil otherwise (no chain, or a
// fork: see verified). The order of ts does not matter.
func FollowTransitions(user string, pinned, target []byte, ts []*Transition) [][]byte {
	vs, ok := verified(user, ts)
	if !ok {
		return nil
	}
	chain := [][]byte{pinned}
	cur, seq := pinned, uint64(0)
	for len(chain) <= len(vs) && !bytes.Equal(cur, target) {
		var step *Transition
		for _, t := range vs {
			if bytes.Equal(t.Old, cur) {
				step = t
				break
			}
		}
		if step == nil || (seq != 0 && step.Seq != seq+1) {
			return nil
		}
		cur, seq = step.New, step.Seq
		chain = append(chain, cur)
	}
	if !bytes.Equal(cur, target) || len(chain) < 2 {
		return nil
	}
	return chain
}

// Predecessors walks the statements backwards from key: the keys that
// key (and, in turn, each of them) named as its predecessor, newest
// first, each step with the previous sequence number. Nil if there are
// none or the set is inconsistent (see verified).
func Predecessors(user string, key []byte, ts []*Transition) [][]byte {
	vs, ok := verified(user, ts)
	if !ok {
		return nil
	}
	var out [][]byte
	cur, seq := key, uint64(0)
	for len(out) < len(vs) {
		var step *Transition
		for _, t := range vs {
			if bytes.Equal(t.New, cur) {
				step = t
				break
			}
		}
		if step == nil || (seq != 0 && step.Seq+1 != seq) {
			break
		}
		out = append(out, bytes.Clone(step.Old))
		cur, seq = step.Old, step.Seq
	}
	return out
}

// LastSeq returns the highest sequence number among the raw statements
// that parse (0 if none): the next change of the account is LastSeq + 1.
func LastSeq(raw [][]byte) uint64 {
	var last uint64
	for _, b := range raw {
		if t, err := ParseTransition(b); err == nil && t.Seq > last {
			last = t.Seq
		}
	}
	return last
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
