package mls

// This file encodes a Group's state for storage and decodes it back, so
// that a client can persist a group and continue after a restart. The
// encoding holds every secret of the group: callers must store it
// encrypted (node/store seals every value).
//
// The format is versioned by its first two bytes and written in the TLS
// presentation language of RFC 9420, Section 2.1:
//
//	struct {
//	    uint16 version = 1;
//	    CipherSuite cipher_suite;
//	    GroupContext context;
//	    opaque ratchet_tree<V>;          // ratchet_tree extension body
//	    TreePrivateKeys private_keys;
//	    opaque signature_priv<V>;
//	    EpochSecrets secrets;
//	    opaque interim_transcript_hash<V>;
//	    SecretTree keys;
//	    PastEpoch past<V>;
//	    CachedProposal proposals<V>;
//	    UpdateKey update_keys<V>;        // our Update proposals' leaf keys
//	    optional<PendingCommit> pending;
//	    uint8 removed;
//	} GroupState;
//
// Maps are written in key order so that one state has one encoding: a
// decoded group encodes to the same bytes.

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"golang.org/x/crypto/cryptobyte"

	"qpchat/kem"
)

// groupStateVersion is the current version of the state encoding.
const groupStateVersion = 1

// maxStateItems bounds every list of a decoded state, so that a corrupt
// state cannot make the decoder allocate without limit.
const maxStateItems = 1 << 20

// Marshal encodes the group's whole state, secrets included.
func (g *Group) Marshal() ([]byte, error) {
	signer := g.signer.Bytes()
	defer clear(signer)
	return marshalWith(func(b *cryptobyte.Builder) {
		b.AddUint16(groupStateVersion)
		b.AddUint16(uint16(g.cs.id))
		g.ctx.marshal(b)
		marshalTree(b, g.tree)
		g.priv.marshal(b)
		writeOpaque(b, signer)
		marshalEpochSecrets(b, g.secrets)
		writeOpaque(b, g.interim)
		marshalSecretTree(b, g.keys)
		writeVector(b, func(b *cryptobyte.Builder) {
			for _, p := range g.past {
				p.ctx.marshal(b)
				marshalTree(b, p.tree)
				marshalSecretTree(b, p.keys)
				writeOpaque(b, p.senderDataSecret)
				writeOpaque(b, p.resumptionPSK)
			}
		})
		writeVector(b, func(b *cryptobyte.Builder) {
			for _, c := range g.cache {
				writeOpaque(b, c.ref)
				c.proposal.marshal(b)
				c.sender.marshal(b)
			}
		})
		writeVector(b, func(b *cryptobyte.Builder) {
			for _, ref := range slices.Sorted(maps.Keys(g.updateKeys)) {
				writeOpaque(b, []byte(ref))
				writeOpaque(b, g.updateKeys[ref].Bytes())
			}
		})
		writeOptional(b, g.pending != nil)
		if g.pending != nil {
			marshalPending(b, g.pending)
		}
		if g.removed {
			b.AddUint8(1)
		} else {
			b.AddUint8(0)
		}
	})
}

// UnmarshalGroup decodes a state written by Marshal. cfg supplies what is
// not part of the state: the credential validator, the PSK lookup and the
// limits.
func UnmarshalGroup(cfg Config, data []byte) (*Group, error) {
	cfg = cfg.withDefaults()
	g := &Group{cfg: cfg}
	err := unmarshalAll(data, func(s *cryptobyte.String) error {
		var version, suite uint16
		if !s.ReadUint16(&version) || version != groupStateVersion {
			return fmt.Errorf("%w: unknown group state version", errDecode)
		}
		if !s.ReadUint16(&suite) {
			return errDecode
		}
		cs, err := CipherSuite(suite).suite()
		if err != nil {
			return err
		}
		g.cs = cs
		if err := g.ctx.unmarshal(s); err != nil {
			return err
		}
		if g.ctx.CipherSuite != cs.id {
			return fmt.Errorf("%w: group context of another suite", errDecode)
		}
		if g.tree, err = unmarshalTree(s, cs); err != nil {
			return err
		}
		if g.priv, err = unmarshalTreePrivateKeys(cs.id, s); err != nil {
			return err
		}
		var signer []byte
		if !readOpaque(s, &signer) {
			return errDecode
		}
		g.signer, err = ParseSignaturePrivateKey(cs.id, signer)
		clear(signer)
		if err != nil {
			return err
		}
		if g.secrets, err = unmarshalEpochSecrets(s, cs); err != nil {
			return err
		}
		if !readOpaque(s, &g.interim) {
			return errDecode
		}
		if g.keys, err = unmarshalSecretTree(s, cs); err != nil {
			return err
		}
		err = readList(s, func(s *cryptobyte.String) error {
			if len(g.past) >= maxPastEpochs {
				return fmt.Errorf("%w: too many past epochs", errDecode)
			}
			p := new(pastEpoch)
			if err := p.ctx.unmarshal(s); err != nil {
				return err
			}
			var err error
			if p.tree, err = unmarshalTree(s, cs); err != nil {
				return err
			}
			if p.keys, err = unmarshalSecretTree(s, cs); err != nil {
				return err
			}
			if !readOpaque(s, &p.senderDataSecret) || !readOpaque(s, &p.resumptionPSK) {
				return errDecode
			}
			g.past = append(g.past, p)
			return nil
		})
		if err != nil {
			return err
		}
		err = readList(s, func(s *cryptobyte.String) error {
			if len(g.cache) >= maxCachedProposals {
				return fmt.Errorf("%w: too many cached proposals", errDecode)
			}
			var c cachedProposal
			c.proposal = new(Proposal)
			if !readOpaque(s, (*[]byte)(&c.ref)) {
				return errDecode
			}
			if err := c.proposal.unmarshal(s); err != nil {
				return err
			}
			if err := c.sender.unmarshal(s); err != nil {
				return err
			}
			g.cache = append(g.cache, c)
			return nil
		})
		if err != nil {
			return err
		}
		err = readList(s, func(s *cryptobyte.String) error {
			var ref, raw []byte
			if !readOpaque(s, &ref) || !readOpaque(s, &raw) {
				return errDecode
			}
			defer clear(raw)
			if _, dup := g.updateKeys[string(ref)]; dup || len(g.updateKeys) >= maxCachedProposals {
				return errDecode
			}
			key, err := cs.hpkePrivateKey(raw)
			if err != nil {
				return fmt.Errorf("%w: %v", errDecode, err)
			}
			if g.updateKeys == nil {
				g.updateKeys = make(map[string]kem.PrivateKey)
			}
			g.updateKeys[string(ref)] = key
			return nil
		})
		if err != nil {
			return err
		}
		var present bool
		if !readOptional(s, &present) {
			return errDecode
		}
		if present {
			if g.pending, err = unmarshalPending(s, cs); err != nil {
				return err
			}
		}
		var removed uint8
		if !s.ReadUint8(&removed) || removed > 1 {
			return errDecode
		}
		g.removed = removed == 1
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("mls: group state: %w", err)
	}
	if err := g.priv.consistent(g.tree); err != nil {
		return nil, fmt.Errorf("mls: group state: %w", err)
	}
	if g.tree.leaf(g.own()) == nil && !g.removed {
		return nil, errors.New("mls: group state: own leaf is blank")
	}
	g.keys.maxForward = cfg.MaxGenerationGap
	return g, nil
}

func marshalTree(b *cryptobyte.Builder, t *ratchetTree) {
	tb, err := t.Marshal()
	if err != nil {
		b.SetError(err)
		return
	}
	writeOpaque(b, tb)
}

func unmarshalTree(s *cryptobyte.String, cs *cipherSuite) (*ratchetTree, error) {
	var tb []byte
	if !readOpaque(s, &tb) {
		return nil, errDecode
	}
	return parseRatchetTree(cs.id, tb)
}

// epochSecretFields lists the secrets of an epoch in encoding order.
func epochSecretFields(e *epochSecrets) []*[]byte {
	return []*[]byte{
		&e.senderDataSecret, &e.encryptionSecret, &e.exporterSecret, &e.externalSecret,
		&e.confirmationKey, &e.membershipKey, &e.resumptionPSK, &e.epochAuthenticator, &e.initSecret,
	}
}

func marshalEpochSecrets(b *cryptobyte.Builder, e *epochSecrets) {
	for _, f := range epochSecretFields(e) {
		writeOpaque(b, *f)
	}
}

func unmarshalEpochSecrets(s *cryptobyte.String, cs *cipherSuite) (*epochSecrets, error) {
	e := &epochSecrets{suite: cs}
	for _, f := range epochSecretFields(e) {
		if !readOpaque(s, f) || len(*f) != cs.nh {
			return nil, fmt.Errorf("%w: epoch secret", errDecode)
		}
	}
	return e, nil
}

// marshalSecretTree writes what is left of a secret tree:
//
//	struct { uint32 n_leaves; uint32 max_forward; uint32 keep_behind;
//	         struct { uint32 node; opaque secret<V>; } nodes<V>;
//	         struct { uint32 leaf; Ratchet handshake; Ratchet application; } ratchets<V>; }
//	struct { uint32 generation; opaque secret<V>;
//	         struct { uint32 generation; opaque key<V>; opaque nonce<V>; } skipped<V>; } Ratchet;
func marshalSecretTree(b *cryptobyte.Builder, t *secretTree) {
	b.AddUint32(t.nLeaves)
	b.AddUint32(t.maxForward)
	b.AddUint32(t.keepBehind)
	writeVector(b, func(b *cryptobyte.Builder) {
		for _, x := range slices.Sorted(maps.Keys(t.nodes)) {
			b.AddUint32(x)
			writeOpaque(b, t.nodes[x])
		}
	})
	writeVector(b, func(b *cryptobyte.Builder) {
		for _, l := range slices.Sorted(maps.Keys(t.ratchets)) {
			b.AddUint32(l)
			for i := range t.ratchets[l] {
				r := &t.ratchets[l][i]
				b.AddUint32(r.generation)
				writeOpaque(b, r.secret)
				writeVector(b, func(b *cryptobyte.Builder) {
					for _, gen := range slices.Sorted(maps.Keys(r.skipped)) {
						k := r.skipped[gen]
						b.AddUint32(gen)
						writeOpaque(b, k.key)
						writeOpaque(b, k.nonce)
					}
				})
			}
		}
	})
}

func unmarshalSecretTree(s *cryptobyte.String, cs *cipherSuite) (*secretTree, error) {
	t := &secretTree{suite: cs, nodes: make(map[uint32][]byte), ratchets: make(map[uint32]*[2]hashRatchet)}
	if !s.ReadUint32(&t.nLeaves) || !s.ReadUint32(&t.maxForward) || !s.ReadUint32(&t.keepBehind) {
		return nil, errDecode
	}
	if t.nLeaves == 0 || t.nLeaves > maxTreeLeaves {
		return nil, fmt.Errorf("%w: secret tree size", errDecode)
	}
	width := 2*uint64(t.nLeaves) - 1
	err := readList(s, func(s *cryptobyte.String) error {
		var x uint32
		var secret []byte
		if !s.ReadUint32(&x) || !readOpaque(s, &secret) || uint64(x) >= width || len(secret) != cs.nh {
			return errDecode
		}
		if _, dup := t.nodes[x]; dup || len(t.nodes) >= maxStateItems {
			return errDecode
		}
		t.nodes[x] = secret
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = readList(s, func(s *cryptobyte.String) error {
		var l uint32
		if !s.ReadUint32(&l) || l >= t.nLeaves {
			return errDecode
		}
		if _, dup := t.ratchets[l]; dup || len(t.ratchets) >= maxStateItems {
			return errDecode
		}
		rs := new([2]hashRatchet)
		for i := range rs {
			r := &rs[i]
			if !s.ReadUint32(&r.generation) || !readOpaque(s, &r.secret) || len(r.secret) != cs.nh {
				return errDecode
			}
			err := readList(s, func(s *cryptobyte.String) error {
				var k ratchetKey
				if !s.ReadUint32(&k.generation) || !readOpaque(s, &k.key) || !readOpaque(s, &k.nonce) ||
					len(k.key) != cs.aead.nk || len(k.nonce) != cs.aead.nn {
					return errDecode
				}
				if r.skipped == nil {
					r.skipped = make(map[uint32]ratchetKey)
				}
				if _, dup := r.skipped[k.generation]; dup || len(r.skipped) >= maxStateItems {
					return errDecode
				}
				r.skipped[k.generation] = k
				return nil
			})
			if err != nil {
				return err
			}
		}
		t.ratchets[l] = rs
		return nil
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// marshalPending writes a pending commit: the next epoch's state, the
// commit message and the event MergePending reports.
//
//	struct { GroupContext context; opaque ratchet_tree<V>; TreePrivateKeys keys;
//	         EpochSecrets secrets; opaque interim<V>; opaque confirmation_tag<V>;
//	         opaque message<V>; Event event; } PendingCommit;
func marshalPending(b *cryptobyte.Builder, p *pendingCommit) {
	st := p.state
	st.ctx.marshal(b)
	marshalTree(b, st.tree)
	st.priv.marshal(b)
	marshalEpochSecrets(b, st.secrets)
	writeOpaque(b, st.interim)
	writeOpaque(b, st.confirmationTag)
	writeOpaque(b, p.message)
	marshalEvent(b, p.event)
}

func unmarshalPending(s *cryptobyte.String, cs *cipherSuite) (*pendingCommit, error) {
	st := &commitState{}
	if err := st.ctx.unmarshal(s); err != nil {
		return nil, err
	}
	var err error
	if st.tree, err = unmarshalTree(s, cs); err != nil {
		return nil, err
	}
	if st.priv, err = unmarshalTreePrivateKeys(cs.id, s); err != nil {
		return nil, err
	}
	if st.secrets, err = unmarshalEpochSecrets(s, cs); err != nil {
		return nil, err
	}
	p := &pendingCommit{state: st}
	if !readOpaque(s, &st.interim) || !readOpaque(s, &st.confirmationTag) || !readOpaque(s, &p.message) {
		return nil, errDecode
	}
	if err := st.priv.consistent(st.tree); err != nil {
		return nil, err
	}
	if p.event, err = unmarshalEvent(s); err != nil {
		return nil, err
	}
	return p, nil
}

// marshalEvent writes the parts of an Event a commit produces:
//
//	struct { uint8 kind; uint32 sender; Credential sender_credential; uint64 epoch;
//	         Member added<V>; Member removed<V>; Member updated<V>; uint8 self_removed; }
func marshalEvent(b *cryptobyte.Builder, ev *Event) {
	b.AddUint8(uint8(ev.Kind))
	b.AddUint32(ev.Sender)
	writeOptional(b, ev.SenderCredential.Type != 0)
	if ev.SenderCredential.Type != 0 {
		ev.SenderCredential.marshal(b)
	}
	b.AddUint64(ev.Epoch)
	for _, list := range [][]Member{ev.Added, ev.Removed, ev.Updated} {
		writeVector(b, func(b *cryptobyte.Builder) {
			for _, m := range list {
				b.AddUint32(m.Leaf)
				m.Credential.marshal(b)
				writeOpaque(b, m.SignatureKey)
			}
		})
	}
	if ev.SelfRemoved {
		b.AddUint8(1)
	} else {
		b.AddUint8(0)
	}
}

func unmarshalEvent(s *cryptobyte.String) (*Event, error) {
	ev := new(Event)
	var kind uint8
	var present bool
	if !s.ReadUint8(&kind) || !s.ReadUint32(&ev.Sender) || !readOptional(s, &present) {
		return nil, errDecode
	}
	ev.Kind = EventKind(kind)
	if present {
		if err := ev.SenderCredential.unmarshal(s); err != nil {
			return nil, err
		}
	}
	if !s.ReadUint64(&ev.Epoch) {
		return nil, errDecode
	}
	for _, list := range []*[]Member{&ev.Added, &ev.Removed, &ev.Updated} {
		err := readList(s, func(s *cryptobyte.String) error {
			var m Member
			if !s.ReadUint32(&m.Leaf) {
				return errDecode
			}
			if err := m.Credential.unmarshal(s); err != nil {
				return err
			}
			if !readOpaque(s, &m.SignatureKey) {
				return errDecode
			}
			*list = append(*list, m)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	var self uint8
	if !s.ReadUint8(&self) || self > 1 {
		return nil, errDecode
	}
	ev.SelfRemoved = self == 1
	return ev, nil
}
