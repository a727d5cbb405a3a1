package client

// Large groups through the node (docs/PROTOCOL.md, "Large groups"). Two
// things outgrow the node's --max-message-size as a group grows: a commit
// adding many devices (each Add carries a KeyPackage by value) and the
// Welcome, which by default carries the whole ratchet tree. Invites are
// therefore split into commits that fit, and a tree above a threshold
// travels as an encrypted blob (the file mechanism of files.go) named by
// a GroupInfo extension inside the Welcome: only new members can read
// the reference, the node sees an opaque blob, and the joiner checks the
// tree against the tree hash the committer signed (RFC 9420, Section
// 12.4.3.1), so a node that swaps the blob only makes the join fail.

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"qpchat/mls"
	"qpchat/node/proto"
)

// ExtensionTypeTreeBlob is qpchat's GroupInfo extension naming the blob
// that holds the ratchet tree (a FileRef; RFC 9420, Section 17.3 private
// use range).
const ExtensionTypeTreeBlob mls.ExtensionType = 0xF0A1

const (
	// defaultTreeInline: trees of up to this many bytes travel in the
	// Welcome itself.
	defaultTreeInline = 256 << 10
	// defaultCommitBudget bounds the estimated size of one commit and of
	// its Welcome; below the node's default --max-message-size (1 MiB).
	defaultCommitBudget = 768 << 10
	// maxTreeBytes bounds a tree a joiner downloads.
	maxTreeBytes = 256 << 20
	// treeName names tree blobs (never shown as a file).
	treeName = "ratchet-tree"
)

func (c *Client) treeInline() int {
	if c.cfg.TreeInlineLimit > 0 {
		return c.cfg.TreeInlineLimit
	}
	return defaultTreeInline
}

func (c *Client) commitBudget() int {
	if c.cfg.CommitBudget > 0 {
		return c.cfg.CommitBudget
	}
	return defaultCommitBudget
}

// welcomeBytesPerMember estimates one new member's share of a Welcome:
// the KEM output and the sealed GroupSecrets.
func welcomeBytesPerMember(suite uint16) int {
	if suite == 0xFA01 || suite == 0xFA02 {
		return 1400 // X25519 + ML-KEM-768 ciphertexts
	}
	return 200
}

// inviteBatches splits KeyPackages into batches whose commit and Welcome
// (with the tree size treeBytes when it travels inline) stay within
// budget; every batch holds at least one package.
func inviteBatches(kps, devices [][]byte, suite uint16, budget, treeBytes int, inline bool) (kb, db [][][]byte) {
	per := welcomeBytesPerMember(suite)
	var ck, cd [][]byte
	// Each batch starts from a commit and a Welcome of 1 KiB, plus the
	// tree so far when it travels inline.
	base := func() int {
		if inline {
			return 1024 + treeBytes
		}
		return 1024
	}
	commit, welcome := 1024, base()
	for i, kp := range kps {
		grow := per
		if inline {
			grow += len(kp) // the new leaf joins the tree
		}
		if len(ck) > 0 && (commit+len(kp) > budget || welcome+grow > budget) {
			kb, db = append(kb, ck), append(db, cd)
			ck, cd = nil, nil
			commit, welcome = 1024, base()
		}
		ck, cd = append(ck, kp), append(cd, devices[i])
		commit, welcome = commit+len(kp), welcome+grow
		if inline {
			treeBytes += len(kp)
		}
	}
	if len(ck) > 0 {
		kb, db = append(kb, ck), append(db, cd)
	}
	return kb, db
}

// treeOutOfBand uploads the new epoch's tree as a blob and returns the
// extension that names it (mls.CommitOptions.TreeOutOfBand).
func (c *Client) treeOutOfBand(ctx context.Context) func(tree []byte) (mls.Extension, error) {
	return func(tree []byte) (mls.Extension, error) {
		bs, err := c.blobs()
		if err != nil {
			return mls.Extension{}, err
		}
		ref := &FileRef{Name: treeName, Size: uint64(len(tree)), Segment: fileSegment}
		if err := c.uploadSealed(ctx, bs, ref, bytes.NewReader(tree), nil); err != nil {
			return mls.Extension{}, fmt.Errorf("client: uploading the group's tree: %w", err)
		}
		return mls.Extension{Type: ExtensionTypeTreeBlob, Data: ref.marshal()}, nil
	}
}

// errTreeGone: the blob holding a Welcome's tree is no longer at the node.
var errTreeGone = errors.New("client: the group's tree is no longer at the node (ask to be invited again)")

// welcomeTree returns the ratchet tree a Welcome names out of band, or nil
// when the Welcome carries it (or names none: JoinFromWelcome then says
// what is missing). A failure to reach the node is transient.
func (c *Client) welcomeTree(ctx context.Context, welcome []byte, kp *mls.KeyPackagePrivate) ([]byte, error) {
	exts, err := mls.WelcomeGroupInfoExtensions(welcome, kp)
	if err != nil {
		return nil, nil // JoinFromWelcome reports it
	}
	if _, ok := exts.Find(mls.ExtensionTypeRatchetTree); ok {
		return nil, nil
	}
	b, ok := exts.Find(ExtensionTypeTreeBlob)
	if !ok {
		return nil, nil
	}
	ref, err := ParseFileRef(b)
	if err != nil || ref.Size > maxTreeBytes {
		return nil, errors.New("client: refused a Welcome whose tree reference is malformed or too large")
	}
	bs, err := c.blobs()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := downloadSealed(ctx, bs, ref, &buf, nil); err != nil {
		switch {
		case errors.Is(err, ErrFileTampered):
			return nil, fmt.Errorf("client: refused a Welcome: its tree %w", err)
		case proto.CodeOf(err) == proto.CodeNotFound:
			return nil, errTreeGone
		}
		return nil, &transientError{fmt.Errorf("client: fetching the group's tree: %w", err)}
	}
	return buf.Bytes(), nil
}
