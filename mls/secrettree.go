package mls

// This file implements the secret tree of RFC 9420, Section 9: the tree of
// secrets derived from an epoch's encryption_secret, the two hash ratchets
// per leaf (Section 9.1) and the deletion schedule (Section 9.2).
//
// The secret tree has the shape of the ratchet tree. Its root is the
// encryption_secret and each parent derives its children:
//
//	tree_node_[left(x)]_secret  = ExpandWithLabel(tree_node_[x]_secret, "tree", "left", KDF.Nh)
//	tree_node_[right(x)]_secret = ExpandWithLabel(tree_node_[x]_secret, "tree", "right", KDF.Nh)
//
// With the tree math of Appendix C (no truncation to the leaf count), the
// path from the root to leaf L in a tree of n leaves is the path in the full
// binary tree of 2^ceil(log2 n) leaves: at level k the path goes right
// exactly when bit k of L is set. The tree is therefore walked from the leaf
// index alone, and a node is named by its node index
//
//	node(L, k) = (L >> k) << (k+1) | (1<<k - 1)
//
// which is the Appendix C index of the level-k ancestor of leaf L.

import (
	"errors"
	"fmt"
)

// Labels of the secret tree and hash ratchets (RFC 9420, Section 9).
const (
	labelTree        = "tree"
	labelLeft        = "left"
	labelRight       = "right"
	labelHandshake   = "handshake"
	labelApplication = "application"
	labelKey         = "key"
	labelNonce       = "nonce"
	labelSecret      = "secret"
)

// Defaults for secretTree limits.
const (
	// defaultMaxForward is how many generations a receiver ratchets forward
	// for one message. Beyond it a message is refused rather than making the
	// receiver compute (and hold) an unbounded number of keys.
	defaultMaxForward = 1000
	// defaultKeepBehind is how many generations behind the newest derived
	// one a skipped key is kept, for messages that arrive out of order.
	defaultKeepBehind = 32
)

// ratchetType selects one of the two hash ratchets of a leaf (RFC 9420,
// Section 9.1): handshake messages (proposals and commits) use one,
// application messages the other.
type ratchetType uint8

const (
	handshakeRatchet ratchetType = iota
	applicationRatchet
)

// errGenerationUsed is returned when a key generation was already used or
// its key has been deleted (RFC 9420, Section 9.2). A receiver seeing it
// treats the message as a replay or as too old.
var errGenerationUsed = errors.New("mls: key generation already used or deleted")

// errGenerationTooFar is returned when a generation lies further ahead of a
// ratchet than the tree's limit allows.
var errGenerationTooFar = errors.New("mls: key generation too far ahead")

// ratchetKey is the AEAD key and nonce of one generation of a hash ratchet.
type ratchetKey struct {
	generation uint32
	key, nonce []byte
}

// zero overwrites the key material. Callers zero a ratchetKey once the
// message it protected has been processed.
func (k *ratchetKey) zero() {
	clear(k.key)
	clear(k.nonce)
}

// hashRatchet is one hash ratchet of a leaf (RFC 9420, Section 9.1).
//
// secret is ratchet_secret_[N]_[j]_[generation]: the secret from which the
// key and nonce of generation `generation` (and every later one) derive.
// Keys of earlier generations that were skipped over and not used yet are
// kept in skipped, at most keepBehind generations back; all other earlier
// key material has been deleted.
type hashRatchet struct {
	generation uint32
	secret     []byte
	skipped    map[uint32]ratchetKey
}

// secretTree holds what is left of an epoch's secret tree (RFC 9420,
// Section 9). Every field is plain data so that the state can be encoded.
type secretTree struct {
	suite   *cipherSuite
	nLeaves uint32
	// nodes holds the tree node secrets not consumed yet, by node index. A
	// node's secret is deleted as soon as its children are derived.
	nodes map[uint32][]byte
	// ratchets holds the hash ratchets of the leaves derived so far.
	ratchets map[uint32]*[2]hashRatchet

	// maxForward and keepBehind bound the work and memory one message can
	// cause (see defaultMaxForward and defaultKeepBehind).
	maxForward uint32
	keepBehind uint32
}

// newSecretTree creates the secret tree of an epoch with nLeaves leaves and
// root secret encryptionSecret (RFC 9420, Section 9). The tree keeps its own
// copy of the secret.
func newSecretTree(suite *cipherSuite, encryptionSecret []byte, nLeaves uint32) (*secretTree, error) {
	if nLeaves == 0 || nLeaves > 1<<31 {
		return nil, fmt.Errorf("mls: invalid secret tree size %d", nLeaves)
	}
	if len(encryptionSecret) != suite.nh {
		return nil, fmt.Errorf("mls: invalid encryption secret length %d", len(encryptionSecret))
	}
	t := &secretTree{
		suite:      suite,
		nLeaves:    nLeaves,
		nodes:      make(map[uint32][]byte),
		ratchets:   make(map[uint32]*[2]hashRatchet),
		maxForward: defaultMaxForward,
		keepBehind: defaultKeepBehind,
	}
	t.nodes[secretTreeNode(0, t.depth())] = append([]byte(nil), encryptionSecret...)
	return t, nil
}

// depth returns the level of the root: ceil(log2(nLeaves)).
func (t *secretTree) depth() int {
	d := 0
	for uint64(1)<<d < uint64(t.nLeaves) {
		d++
	}
	return d
}

// secretTreeNode returns the Appendix C node index of the level-k ancestor
// of leaf (level 0 is the leaf itself).
func secretTreeNode(leaf uint32, k int) uint32 {
	return uint32((uint64(leaf)>>k)<<(k+1) | (1<<k - 1))
}

// ratchet returns the hash ratchets of leaf, deriving them on first use
// and deleting every tree node secret the derivation consumes (RFC 9420,
// Section 9.2).
func (t *secretTree) ratchet(leaf uint32) (*[2]hashRatchet, error) {
	if leaf >= t.nLeaves {
		return nil, fmt.Errorf("mls: invalid leaf index %d", leaf)
	}
	if r, ok := t.ratchets[leaf]; ok {
		return r, nil
	}
	// Find the lowest ancestor whose secret is still held. If there is
	// none, the leaf's ratchets were derived and then dropped.
	level := -1
	for k := 0; k <= t.depth(); k++ {
		if _, ok := t.nodes[secretTreeNode(leaf, k)]; ok {
			level = k
			break
		}
	}
	if level < 0 {
		return nil, fmt.Errorf("mls: ratchets of leaf %d were deleted", leaf)
	}
	// Walk down to the leaf, keeping the sibling at each level and deleting
	// each parent once both children exist.
	for k := level; k > 0; k-- {
		x := secretTreeNode(leaf, k)
		secret := t.nodes[x]
		left := t.suite.expandWithLabel(secret, labelTree, []byte(labelLeft), t.suite.nh)
		right := t.suite.expandWithLabel(secret, labelTree, []byte(labelRight), t.suite.nh)
		clear(secret)
		delete(t.nodes, x)
		half := uint32(1) << (k - 1)
		t.nodes[x-half] = left
		t.nodes[x+half] = right
	}
	x := secretTreeNode(leaf, 0)
	secret := t.nodes[x]
	r := &[2]hashRatchet{
		handshakeRatchet:   {secret: t.suite.expandWithLabel(secret, labelHandshake, nil, t.suite.nh)},
		applicationRatchet: {secret: t.suite.expandWithLabel(secret, labelApplication, nil, t.suite.nh)},
	}
	clear(secret)
	delete(t.nodes, x)
	t.ratchets[leaf] = r
	return r, nil
}

// deriveRatchetKey returns the key and nonce of the ratchet's current
// generation (RFC 9420, Section 9.1):
//
//	ratchet_key_[i]_[j]   = DeriveTreeSecret(ratchet_secret_[i]_[j], "key", j, AEAD.Nk)
//	ratchet_nonce_[i]_[j] = DeriveTreeSecret(ratchet_secret_[i]_[j], "nonce", j, AEAD.Nn)
//
// and advances the ratchet to the next generation, deleting the consumed
// secret:
//
//	ratchet_secret_[i]_[j+1] = DeriveTreeSecret(ratchet_secret_[i]_[j], "secret", j, KDF.Nh)
func (t *secretTree) advance(r *hashRatchet) (ratchetKey, error) {
	if r.generation == ^uint32(0) {
		return ratchetKey{}, errors.New("mls: hash ratchet exhausted")
	}
	s := t.suite
	k := ratchetKey{
		generation: r.generation,
		key:        s.deriveTreeSecret(r.secret, labelKey, r.generation, s.aead.nk),
		nonce:      s.deriveTreeSecret(r.secret, labelNonce, r.generation, s.aead.nn),
	}
	t.step(r)
	return k, nil
}

// step moves the ratchet to the next generation without deriving the
// current generation's key, deleting the consumed secret (RFC 9420,
// Section 9.1). The caller has checked that the ratchet is not exhausted.
func (t *secretTree) step(r *hashRatchet) {
	next := t.suite.deriveTreeSecret(r.secret, labelSecret, r.generation, t.suite.nh)
	clear(r.secret)
	r.secret = next
	r.generation++
}

// nextKey returns the key and nonce a sender uses for its next message of
// the given ratchet type, and deletes them from the tree: each generation is
// used for one message only (RFC 9420, Section 9.2).
func (t *secretTree) nextKey(leaf uint32, typ ratchetType) (ratchetKey, error) {
	rs, err := t.ratchet(leaf)
	if err != nil {
		return ratchetKey{}, err
	}
	return t.advance(&rs[typ])
}

// keyForGeneration returns the key and nonce of generation gen of leaf's
// ratchet of the given type, for decrypting a received message, and deletes
// them from the tree so that the generation cannot be used twice.
//
// Generations may arrive out of order. Keys of generations skipped over
// are kept while they are at most keepBehind generations behind the
// ratchet; a generation more than maxForward ahead of the ratchet is refused.
func (t *secretTree) keyForGeneration(leaf uint32, typ ratchetType, gen uint32) (ratchetKey, error) {
	rs, err := t.ratchet(leaf)
	if err != nil {
		return ratchetKey{}, err
	}
	r := &rs[typ]
	if gen < r.generation {
		k, ok := r.skipped[gen]
		if !ok {
			return ratchetKey{}, errGenerationUsed
		}
		delete(r.skipped, gen)
		return k, nil
	}
	if gen-r.generation > t.maxForward {
		return ratchetKey{}, errGenerationTooFar
	}
	for r.generation < gen {
		// Only the last keepBehind skipped generations can be kept: for
		// older ones only the ratchet secret is stepped, and their keys are
		// never derived.
		if gen-r.generation > t.keepBehind {
			t.step(r)
			continue
		}
		k, err := t.advance(r)
		if err != nil {
			return ratchetKey{}, err
		}
		if r.skipped == nil {
			r.skipped = make(map[uint32]ratchetKey)
		}
		r.skipped[k.generation] = k
	}
	k, err := t.advance(r)
	if err != nil {
		return ratchetKey{}, err
	}
	t.evict(r)
	return k, nil
}

// restoreKey gives back a key that keyForGeneration handed out for a
// message that then failed to authenticate, so that a forged message does
// not cost the receiver the key of the genuine one. The key is kept only if
// it is still within the window; otherwise it is zeroed.
func (t *secretTree) restoreKey(leaf uint32, typ ratchetType, k ratchetKey) {
	rs, ok := t.ratchets[leaf]
	if !ok {
		k.zero()
		return
	}
	r := &rs[typ]
	if k.generation >= r.generation || r.generation-k.generation > t.keepBehind+1 {
		k.zero()
		return
	}
	if r.skipped == nil {
		r.skipped = make(map[uint32]ratchetKey)
	}
	r.skipped[k.generation] = k
}

// evict deletes kept keys that are more than keepBehind generations behind
// the ratchet (RFC 9420, Section 9.2: keys are kept only for a bounded
// window).
func (t *secretTree) evict(r *hashRatchet) {
	for g, k := range r.skipped {
		if r.generation-g > t.keepBehind+1 {
			k.zero()
			delete(r.skipped, g)
		}
	}
}

// zero deletes every secret the tree still holds. The tree is unusable
// afterwards.
func (t *secretTree) zero() {
	for x, s := range t.nodes {
		clear(s)
		delete(t.nodes, x)
	}
	for l, rs := range t.ratchets {
		for i := range rs {
			clear(rs[i].secret)
			for _, k := range rs[i].skipped {
				k.zero()
			}
		}
		delete(t.ratchets, l)
	}
}
