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
	"bytes"
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

	// dead is set by zero: the tree is no longer used, and a pending key
	// committed afterwards is only zeroed.
	dead bool

	// exp is the expander of the ratchet step in progress (expander), kept
	// so that a step does not allocate its buffers.
	exp expander
}

// expander returns the tree's expander keyed with secret, replacing the
// previous one: at most one ratchet step uses it at a time.
func (t *secretTree) expander(secret []byte) *expander {
	if t.exp.s == nil {
		t.exp.s = t.suite
		t.exp.m.init(t.suite.newHash)
	}
	t.exp.setKey(secret)
	return &t.exp
}

// dropExpander drops the tree's last keyed HMAC once a step is done: it is
// keyed with a secret the step consumed, which the tree must not keep
// (RFC 9420, Section 9.2).
func (t *secretTree) dropExpander() { t.exp.wipe() }

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
	defer t.dropExpander()
	for k := level; k > 0; k-- {
		x := secretTreeNode(leaf, k)
		secret := t.nodes[x]
		e := t.expander(secret)
		left := e.expandWithLabel(labelTree, []byte(labelLeft), t.suite.nh)
		right := e.expandWithLabel(labelTree, []byte(labelRight), t.suite.nh)
		clear(secret)
		delete(t.nodes, x)
		half := uint32(1) << (k - 1)
		t.nodes[x-half] = left
		t.nodes[x+half] = right
	}
	x := secretTreeNode(leaf, 0)
	secret := t.nodes[x]
	e := t.expander(secret)
	r := &[2]hashRatchet{
		handshakeRatchet:   {secret: e.expandWithLabel(labelHandshake, nil, t.suite.nh)},
		applicationRatchet: {secret: e.expandWithLabel(labelApplication, nil, t.suite.nh)},
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
	e := t.expander(r.secret)
	defer t.dropExpander()
	k := e.ratchetKey(r.generation)
	// The HMAC holds its own copy of the key: the next secret replaces
	// the consumed one in place, which deletes it.
	g := [4]byte{byte(r.generation >> 24), byte(r.generation >> 16), byte(r.generation >> 8), byte(r.generation)}
	e.expandWithLabelTo(r.secret[:s.nh], labelSecret, g[:])
	r.generation++
	return k, nil
}

// ratchetKey derives the key and nonce of generation gen from e's ratchet
// secret (see advance), in one allocation.
func (e *expander) ratchetKey(gen uint32) ratchetKey {
	s := e.s
	kn := make([]byte, s.aead.nk+s.aead.nn)
	k := ratchetKey{generation: gen, key: kn[:s.aead.nk:s.aead.nk], nonce: kn[s.aead.nk:]}
	g := [4]byte{byte(gen >> 24), byte(gen >> 16), byte(gen >> 8), byte(gen)}
	e.expandWithLabelTo(k.key, labelKey, g[:])
	e.expandWithLabelTo(k.nonce, labelNonce, g[:])
	return k
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
// ratchet of the given type and deletes them from the tree so that the
// generation cannot be used twice. It is lookupKey followed by commit, for
// callers that use the key whatever happens.
func (t *secretTree) keyForGeneration(leaf uint32, typ ratchetType, gen uint32) (ratchetKey, error) {
	p, err := t.lookupKey(leaf, typ, gen)
	if err != nil {
		return ratchetKey{}, err
	}
	k := ratchetKey{generation: p.key.generation, key: bytes.Clone(p.key.key), nonce: bytes.Clone(p.key.nonce)}
	p.commit()
	return k, nil
}

// nodeSecret is a secret tree node secret with its node index.
type nodeSecret struct {
	node   uint32
	secret []byte
}

// pendingKey is a receive key looked up without changing the secret tree:
// the key of one generation and the state the tree moves to once the
// message it decrypts is accepted. commit applies that state (deleting the
// key and every secret consumed on the way, RFC 9420, Section 9.2);
// discard drops it, leaving the tree as it was, so that a message that is
// refused for any reason does not cost the genuine one its key.
//
// A pendingKey is valid until the tree is changed otherwise: commit or
// discard it before looking up another key of the same tree.
type pendingKey struct {
	t    *secretTree
	key  ratchetKey
	leaf uint32
	typ  ratchetType

	// fromSkipped: key was a kept skipped key; commit deletes it.
	fromSkipped bool

	// derived holds the leaf's ratchets when they were not derived yet,
	// consumed the tree node whose secret they were derived from, and
	// siblings the node secrets split off on the way down.
	derived  *[2]hashRatchet
	consumed uint32
	siblings []nodeSecret

	// next is the ratchet secret of generation key.generation+1; skipped
	// the keys of the generations jumped over that are kept.
	next    []byte
	skipped []ratchetKey
}

// lookupKey computes the key and nonce of generation gen of leaf's ratchet
// of the given type, for decrypting a received message, without changing
// the tree (RFC 9420, Sections 9.1 and 9.2).
//
// Generations may arrive out of order. Keys of generations skipped over
// are kept (after commit) while they are at most keepBehind generations
// behind the ratchet; a generation more than maxForward ahead of the
// ratchet is refused. A generation already used, or whose key was deleted,
// gives errGenerationUsed.
func (t *secretTree) lookupKey(leaf uint32, typ ratchetType, gen uint32) (*pendingKey, error) {
	if leaf >= t.nLeaves {
		return nil, fmt.Errorf("mls: invalid leaf index %d", leaf)
	}
	p := &pendingKey{t: t, leaf: leaf, typ: typ}
	var r *hashRatchet
	if rs, ok := t.ratchets[leaf]; ok {
		r = &rs[typ]
	} else {
		if err := t.deriveLeaf(p); err != nil {
			return nil, err
		}
		r = &p.derived[typ]
	}
	if gen < r.generation {
		k, ok := r.skipped[gen]
		if !ok {
			return nil, errGenerationUsed
		}
		p.key, p.fromSkipped = k, true
		return p, nil
	}
	if gen-r.generation > t.maxForward {
		p.discard()
		return nil, errGenerationTooFar
	}
	if gen == ^uint32(0) {
		p.discard()
		return nil, errors.New("mls: hash ratchet exhausted")
	}
	s := t.suite
	// secret is the ratchet's secret, never changed here: the first step
	// makes a fresh one, and every later one is cleared once stepped over.
	defer t.dropExpander()
	secret := r.secret
	for g := r.generation; g < gen; g++ {
		e := t.expander(secret)
		// Only the last keepBehind skipped generations can be kept: for
		// older ones only the ratchet secret is stepped.
		if gen-g <= t.keepBehind {
			p.skipped = append(p.skipped, e.ratchetKey(g))
		}
		next := e.deriveTreeSecret(labelSecret, g, s.nh)
		if g != r.generation {
			clear(secret)
		}
		secret = next
	}
	e := t.expander(secret)
	p.key = e.ratchetKey(gen)
	p.next = e.deriveTreeSecret(labelSecret, gen, s.nh)
	if gen != r.generation {
		clear(secret)
	}
	return p, nil
}

// deriveLeaf derives the hash ratchets of p.leaf from its lowest held
// ancestor into p, without changing the tree.
func (t *secretTree) deriveLeaf(p *pendingKey) error {
	level := -1
	for k := 0; k <= t.depth(); k++ {
		if _, ok := t.nodes[secretTreeNode(p.leaf, k)]; ok {
			level = k
			break
		}
	}
	if level < 0 {
		return fmt.Errorf("mls: ratchets of leaf %d were deleted", p.leaf)
	}
	s := t.suite
	p.consumed = secretTreeNode(p.leaf, level)
	secret := t.nodes[p.consumed]
	defer t.dropExpander()
	for k := level; k > 0; k-- {
		x := secretTreeNode(p.leaf, k)
		e := t.expander(secret)
		left := e.expandWithLabel(labelTree, []byte(labelLeft), s.nh)
		right := e.expandWithLabel(labelTree, []byte(labelRight), s.nh)
		if k != level {
			clear(secret)
		}
		half := uint32(1) << (k - 1)
		if p.leaf&(1<<(k-1)) == 0 {
			p.siblings = append(p.siblings, nodeSecret{x + half, right})
			secret = left
		} else {
			p.siblings = append(p.siblings, nodeSecret{x - half, left})
			secret = right
		}
	}
	e := t.expander(secret)
	p.derived = &[2]hashRatchet{
		handshakeRatchet:   {secret: e.expandWithLabel(labelHandshake, nil, s.nh)},
		applicationRatchet: {secret: e.expandWithLabel(labelApplication, nil, s.nh)},
	}
	if level != 0 {
		clear(secret)
	}
	return nil
}

// commit moves the tree to the state after the message p's key decrypted
// was accepted: the key is deleted, skipped keys are kept within the
// window, and the consumed secrets are deleted. p.key is zeroed: callers
// are done with it.
func (p *pendingKey) commit() {
	t := p.t
	if t.dead {
		p.discard()
		return
	}
	if p.derived != nil {
		old := t.nodes[p.consumed]
		clear(old)
		delete(t.nodes, p.consumed)
		for _, n := range p.siblings {
			t.nodes[n.node] = n.secret
		}
		t.ratchets[p.leaf] = p.derived
		p.derived, p.siblings = nil, nil
	}
	r := &t.ratchets[p.leaf][p.typ]
	if p.fromSkipped {
		delete(r.skipped, p.key.generation)
		p.key.zero()
		return
	}
	clear(r.secret)
	r.secret, p.next = p.next, nil
	r.generation = p.key.generation + 1
	if len(p.skipped) > 0 && r.skipped == nil {
		r.skipped = make(map[uint32]ratchetKey, len(p.skipped))
	}
	for _, k := range p.skipped {
		r.skipped[k.generation] = k
	}
	p.skipped = nil
	p.key.zero()
	t.evict(r)
}

// discard zeroes what lookupKey computed, leaving the tree unchanged. The
// key of a kept skipped generation stays in the tree.
func (p *pendingKey) discard() {
	if p == nil {
		return
	}
	if p.derived != nil {
		for i := range p.derived {
			clear(p.derived[i].secret)
		}
		for _, n := range p.siblings {
			clear(n.secret)
		}
		p.derived, p.siblings = nil, nil
	}
	for _, k := range p.skipped {
		k.zero()
	}
	p.skipped = nil
	clear(p.next)
	p.next = nil
	if !p.fromSkipped {
		p.key.zero()
	}
	p.key = ratchetKey{}
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
	t.dead = true
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
