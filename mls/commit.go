package mls

import (
	"golang.org/x/crypto/cryptobyte"
)

// HPKECiphertext is an HPKE encryption result (RFC 9420, Section 7.6).
//
//	struct {
//	    opaque kem_output<V>;
//	    opaque ciphertext<V>;
//	} HPKECiphertext;
type HPKECiphertext struct {
	KEMOutput  []byte
	Ciphertext []byte
}

func (c *HPKECiphertext) marshal(b *cryptobyte.Builder) {
	writeOpaque(b, c.KEMOutput)
	writeOpaque(b, c.Ciphertext)
}

func (c *HPKECiphertext) unmarshal(s *cryptobyte.String) error {
	*c = HPKECiphertext{}
	if !readOpaque(s, &c.KEMOutput) || !readOpaque(s, &c.Ciphertext) {
		return errDecode
	}
	return nil
}

// UpdatePathNode carries a new public key of the sender's filtered direct
// path and the path secret encrypted to each node of the matching copath
// resolution (RFC 9420, Section 7.6).
//
//	struct {
//	    HPKEPublicKey encryption_key;
//	    HPKECiphertext encrypted_path_secret<V>;
//	} UpdatePathNode;
type UpdatePathNode struct {
	EncryptionKey       []byte
	EncryptedPathSecret []HPKECiphertext
}

func (n *UpdatePathNode) marshal(b *cryptobyte.Builder) {
	writeOpaque(b, n.EncryptionKey)
	writeVector(b, func(b *cryptobyte.Builder) {
		for i := range n.EncryptedPathSecret {
			n.EncryptedPathSecret[i].marshal(b)
		}
	})
}

func (n *UpdatePathNode) unmarshal(s *cryptobyte.String) error {
	*n = UpdatePathNode{}
	if !readOpaque(s, &n.EncryptionKey) {
		return errDecode
	}
	var body cryptobyte.String
	if !readVector(s, &body) {
		return errDecode
	}
	// A node of a large group's first path holds hundreds of ciphertexts:
	// count them and their bytes first, then decode them into one slice
	// and one buffer instead of two allocations each.
	count, size := 0, 0
	for rest := body; !rest.Empty(); count++ {
		var kemOutput, ct cryptobyte.String
		if !readVector(&rest, &kemOutput) || !readVector(&rest, &ct) {
			return errDecode
		}
		size += len(kemOutput) + len(ct)
	}
	if count == 0 {
		return nil
	}
	n.EncryptedPathSecret = make([]HPKECiphertext, count)
	buf := make([]byte, 0, size)
	take := func(out *[]byte) {
		var v cryptobyte.String
		readVector(&body, &v) // checked by the counting pass
		if len(v) == 0 {
			return
		}
		start := len(buf)
		buf = append(buf, v...)
		*out = buf[start:len(buf):len(buf)]
	}
	for i := range n.EncryptedPathSecret {
		c := &n.EncryptedPathSecret[i]
		take(&c.KEMOutput)
		take(&c.Ciphertext)
	}
	return nil
}

// UpdatePath is the sender's new leaf and path in a Commit (RFC 9420,
// Section 7.6).
//
//	struct {
//	    LeafNode leaf_node;
//	    UpdatePathNode nodes<V>;
//	} UpdatePath;
type UpdatePath struct {
	LeafNode LeafNode
	Nodes    []UpdatePathNode
}

func (p *UpdatePath) marshal(b *cryptobyte.Builder) {
	p.LeafNode.marshal(b)
	writeVector(b, func(b *cryptobyte.Builder) {
		for i := range p.Nodes {
			p.Nodes[i].marshal(b)
		}
	})
}

func (p *UpdatePath) unmarshal(s *cryptobyte.String) error {
	*p = UpdatePath{}
	if err := p.LeafNode.unmarshal(s); err != nil {
		return err
	}
	return readList(s, func(s *cryptobyte.String) error {
		var n UpdatePathNode
		if err := n.unmarshal(s); err != nil {
			return err
		}
		p.Nodes = append(p.Nodes, n)
		return nil
	})
}

// Marshal returns the TLS encoding of p.
func (p *UpdatePath) Marshal() ([]byte, error) { return marshalWith(p.marshal) }

// UnmarshalUpdatePath decodes an UpdatePath, rejecting trailing bytes.
func UnmarshalUpdatePath(data []byte) (*UpdatePath, error) {
	p := new(UpdatePath)
	if err := unmarshalAll(data, p.unmarshal); err != nil {
		return nil, err
	}
	return p, nil
}

// Commit applies proposals and optionally refreshes the sender's path
// (RFC 9420, Section 12.4).
//
//	struct {
//	    ProposalOrRef proposals<V>;
//	    optional<UpdatePath> path;
//	} Commit;
type Commit struct {
	Proposals []ProposalOrRef
	// Path is nil when the commit carries no UpdatePath.
	Path *UpdatePath
}

func (c *Commit) marshal(b *cryptobyte.Builder) {
	writeList(b, len(c.Proposals), func(i int, b *cryptobyte.Builder) { c.Proposals[i].marshal(b) })
	writeOptional(b, c.Path != nil)
	if c.Path != nil {
		c.Path.marshal(b)
	}
}

func (c *Commit) unmarshal(s *cryptobyte.String) error {
	*c = Commit{}
	err := readList(s, func(s *cryptobyte.String) error {
		var p ProposalOrRef
		if err := p.unmarshal(s); err != nil {
			return err
		}
		c.Proposals = append(c.Proposals, p)
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
		c.Path = new(UpdatePath)
		return c.Path.unmarshal(s)
	}
	return nil
}

// Marshal returns the TLS encoding of c.
func (c *Commit) Marshal() ([]byte, error) { return marshalWith(c.marshal) }

// UnmarshalCommit decodes a Commit, rejecting trailing bytes.
func UnmarshalCommit(data []byte) (*Commit, error) {
	c := new(Commit)
	if err := unmarshalAll(data, c.unmarshal); err != nil {
		return nil, err
	}
	return c, nil
}
