package mls

import (
	"fmt"

	"golang.org/x/crypto/cryptobyte"
)

// NodeType says whether a tree node is a leaf or a parent (RFC 9420,
// Section 7.1). It is a closed enum.
type NodeType uint8

// Node types of RFC 9420, Section 7.1.
const (
	NodeTypeLeaf   NodeType = 1
	NodeTypeParent NodeType = 2
)

// ParentNode is an interior node of the ratchet tree (RFC 9420,
// Section 7.1).
//
//	struct {
//	    HPKEPublicKey encryption_key;
//	    opaque parent_hash<V>;
//	    uint32 unmerged_leaves<V>;
//	} ParentNode;
type ParentNode struct {
	EncryptionKey  []byte
	ParentHash     []byte
	UnmergedLeaves []leafIndex
}

func (p *ParentNode) marshal(b *cryptobyte.Builder) {
	writeOpaque(b, p.EncryptionKey)
	writeOpaque(b, p.ParentHash)
	writeVarint(b, 4*len(p.UnmergedLeaves))
	for _, l := range p.UnmergedLeaves {
		b.AddUint32(uint32(l))
	}
}

func (p *ParentNode) unmarshal(s *cryptobyte.String) error {
	*p = ParentNode{}
	if !readOpaque(s, &p.EncryptionKey) || !readOpaque(s, &p.ParentHash) {
		return errDecode
	}
	return readList(s, func(s *cryptobyte.String) error {
		var l uint32
		if !s.ReadUint32(&l) {
			return errDecode
		}
		p.UnmergedLeaves = append(p.UnmergedLeaves, leafIndex(l))
		return nil
	})
}

// Node is a non-blank node of the ratchet tree (RFC 9420, Section 7.1).
// Exactly the field matching Type is set.
//
//	struct {
//	    NodeType node_type;
//	    select (Node.node_type) {
//	        case leaf:   LeafNode leaf_node;
//	        case parent: ParentNode parent_node;
//	    };
//	} Node;
type Node struct {
	Type       NodeType
	LeafNode   *LeafNode
	ParentNode *ParentNode
}

func (n *Node) marshal(b *cryptobyte.Builder) {
	b.AddUint8(uint8(n.Type))
	switch {
	case n.Type == NodeTypeLeaf && n.LeafNode != nil:
		n.LeafNode.marshal(b)
	case n.Type == NodeTypeParent && n.ParentNode != nil:
		n.ParentNode.marshal(b)
	default:
		b.SetError(fmt.Errorf("mls: node of type %d has no matching body", n.Type))
	}
}

func (n *Node) unmarshal(s *cryptobyte.String) error {
	*n = Node{}
	if !s.ReadUint8((*uint8)(&n.Type)) {
		return errDecode
	}
	switch n.Type {
	case NodeTypeLeaf:
		n.LeafNode = new(LeafNode)
		return n.LeafNode.unmarshal(s)
	case NodeTypeParent:
		n.ParentNode = new(ParentNode)
		return n.ParentNode.unmarshal(s)
	default:
		return fmt.Errorf("%w: unknown node type %d", errDecode, n.Type)
	}
}

// RatchetTree is the array form of a ratchet tree as carried by the
// ratchet_tree extension (RFC 9420, Section 12.4.3.3): optional<Node>
// ratchet_tree<V>, indexed by nodeIndex, with nil for blank nodes.
//
// Decoding checks syntax only. The structural rules of Section 12.4.3.3
// (leaves at even indices, no trailing blank node, a full tree once
// padded) belong to the tree code that imports it.
type RatchetTree []*Node

func (t RatchetTree) marshal(b *cryptobyte.Builder) {
	writeList(b, len(t), func(i int, b *cryptobyte.Builder) {
		writeOptional(b, t[i] != nil)
		if t[i] != nil {
			t[i].marshal(b)
		}
	})
}

func (t *RatchetTree) unmarshal(s *cryptobyte.String) error {
	var nodes RatchetTree
	err := readList(s, func(s *cryptobyte.String) error {
		var present bool
		if !readOptional(s, &present) {
			return errDecode
		}
		if !present {
			nodes = append(nodes, nil)
			return nil
		}
		n := new(Node)
		if err := n.unmarshal(s); err != nil {
			return err
		}
		nodes = append(nodes, n)
		return nil
	})
	if err != nil {
		return err
	}
	*t = nodes
	return nil
}

// Marshal returns the TLS encoding of t, the ratchet_tree extension body.
func (t RatchetTree) Marshal() ([]byte, error) { return marshalWith(t.marshal) }

// UnmarshalRatchetTree decodes a ratchet_tree extension body, rejecting
// trailing bytes.
func UnmarshalRatchetTree(data []byte) (RatchetTree, error) {
	var t RatchetTree
	if err := unmarshalAll(data, t.unmarshal); err != nil {
		return nil, err
	}
	return t, nil
}
