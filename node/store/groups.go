package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
)

// Groups, commits and sends of the server schema.

// CreateGroup implements Store.
func (s *LocalStore) CreateGroup(ctx context.Context, id, creator []byte) error {
	if err := errors.Join(checkLen("group id", id, 1, MaxGroupIDLen), checkLen("device key", creator, 1, MaxKeyLen)); err != nil {
		return err
	}
	g := Group{ID: id, Members: [][]byte{creator}}
	rec := g.marshal()
	return s.update(ctx, func(tx *Tx) error {
		d, err := getDevice(tx, creator)
		if err != nil {
			return fmt.Errorf("store: group creator: %w", err)
		}
		if d.Revoked {
			return ErrRevoked
		}
		groups := tx.Bucket(bucketGroups)
		k := tx.Ident(domainGroup, id)
		if groups.Bucket(k) != nil {
			return ErrExists
		}
		gb, err := groups.CreateBucket(k)
		if err != nil {
			return err
		}
		return gb.Put(keyGroup, rec)
	})
}

func getGroup(tx *Tx, id []byte) (*Bucket, Group, error) {
	gb := tx.Bucket(bucketGroups, tx.Ident(domainGroup, id))
	if gb == nil {
		return nil, Group{}, ErrNotFound
	}
	v, err := gb.Get(keyGroup)
	if err != nil {
		return nil, Group{}, err
	}
	g, err := parseGroup(v)
	return gb, g, err
}

// Group implements Store.
func (s *LocalStore) Group(ctx context.Context, id []byte) (Group, error) {
	var g Group
	err := s.view(ctx, func(tx *Tx) (err error) {
		_, g, err = getGroup(tx, id)
		return err
	})
	return g, err
}

func isMember(members [][]byte, dev []byte) bool {
	return slices.ContainsFunc(members, func(m []byte) bool { return bytes.Equal(m, dev) })
}

func checkList(what string, list [][]byte) error {
	for i, k := range list {
		if err := checkLen(what, k, 1, MaxKeyLen); err != nil {
			return err
		}
		if isMember(list[:i], k) {
			return fmt.Errorf("store: %s listed twice: %w", what, ErrInvalidCommit)
		}
	}
	return nil
}

// matchWelcome checks that the Welcome's KeyPackageRefs name exactly the
// added devices, through KeyPackages the committer fetched. It returns the
// keys of those fetch records, which the commit deletes: each fetched
// package admits one device once.
func matchWelcome(tx *Tx, req CommitRequest) ([][]byte, error) {
	if len(req.KeyPackageRefs) != len(req.Added) {
		return nil, fmt.Errorf("store: %d KeyPackageRefs for %d added devices: %w", len(req.KeyPackageRefs), len(req.Added), ErrInvalidCommit)
	}
	fetched := tx.Bucket(bucketFetched)
	matched := make([]bool, len(req.Added))
	var ids [][]byte
	for _, ref := range req.KeyPackageRefs {
		id := fetchedID(tx, req.Committer, ref)
		v, err := fetched.Get(id)
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("store: KeyPackageRef %x was not fetched by the committer: %w", ref, ErrInvalidCommit)
		}
		if err != nil {
			return nil, err
		}
		rec, err := parseFetchRecord(v)
		if err != nil {
			return nil, err
		}
		i := slices.IndexFunc(req.Added, func(a []byte) bool { return bytes.Equal(a, rec.Device) })
		if i < 0 || matched[i] {
			return nil, fmt.Errorf("store: KeyPackageRef %x is not for an added device: %w", ref, ErrInvalidCommit)
		}
		matched[i] = true
		ids = append(ids, id)
	}
	return ids, nil
}

// Commit implements Store.
func (s *LocalStore) Commit(ctx context.Context, req CommitRequest) (CommitResult, error) {
	if err := errors.Join(checkLen("group id", req.Group, 1, MaxGroupIDLen),
		checkLen("committer", req.Committer, 1, MaxKeyLen),
		checkLen("commit", req.Message, 1, MaxMessageLen),
		checkLen("Welcome", req.Welcome, 0, MaxMessageLen),
		checkList("added device", req.Added), checkList("removed device", req.Removed),
		checkList("KeyPackageRef", req.KeyPackageRefs)); err != nil {
		return CommitResult{}, err
	}
	if len(req.Added) > 0 && len(req.Welcome) == 0 {
		return CommitResult{}, fmt.Errorf("store: a commit that adds devices needs a Welcome: %w", ErrInvalidCommit)
	}
	hash := sha256.Sum256(req.Message)
	commitEnv := (&Envelope{Kind: KindCommit, Group: req.Group, Sender: req.Committer,
		Added: req.Added, Removed: req.Removed, Data: req.Message}).marshal()
	var welcomeEnv []byte
	if len(req.Added) > 0 {
		welcomeEnv = (&Envelope{Kind: KindWelcome, Group: req.Group, Sender: req.Committer,
			Added: req.Added, Removed: req.Removed, Data: req.Welcome}).marshal()
	}
	var res CommitResult
	err := s.update(ctx, func(tx *Tx) error {
		res = CommitResult{}
		gb, g, err := getGroup(tx, req.Group)
		if err != nil {
			return err
		}
		// Every check comes before the first write, so a refused commit
		// costs the other writers of its batch nothing (see DB.Update).
		if commits := gb.Bucket(keyCommits); commits != nil && req.Epoch < g.Epoch {
			prev, err := commits.Get(SeqKey(req.Epoch))
			if err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			if bytes.Equal(prev, hash[:]) {
				res = CommitResult{Duplicate: true, Epoch: g.Epoch}
				return nil
			}
		}
		if !isMember(g.Members, req.Committer) {
			return ErrNotMember
		}
		switch {
		case req.Epoch < g.Epoch:
			return fmt.Errorf("store: commit for epoch %d, group is at epoch %d: %w", req.Epoch, g.Epoch, ErrStaleCommit)
		case req.Epoch > g.Epoch:
			return fmt.Errorf("store: commit for epoch %d, group is at epoch %d: %w", req.Epoch, g.Epoch, ErrWrongEpoch)
		}
		for _, r := range req.Removed {
			if !isMember(g.Members, r) || bytes.Equal(r, req.Committer) {
				return fmt.Errorf("store: removed device is not a member or is the committer: %w", ErrInvalidCommit)
			}
		}
		for _, a := range req.Added {
			if isMember(g.Members, a) {
				return fmt.Errorf("store: added device is already a member: %w", ErrInvalidCommit)
			}
		}
		if n := len(g.Members) - len(req.Removed) + len(req.Added); n > s.limits.MaxGroupSize {
			return fmt.Errorf("store: group of %d devices exceeds the limit of %d: %w", n, s.limits.MaxGroupSize, ErrLimit)
		}
		fetches, err := matchWelcome(tx, req)
		if err != nil {
			return err
		}
		for _, id := range fetches {
			if err := tx.Bucket(bucketFetched).Delete(id); err != nil {
				return err
			}
		}
		// Each of the two is stored once, however many devices get it
		// (bodies.go).
		others := slices.DeleteFunc(slices.Clone(g.Members), func(m []byte) bool { return bytes.Equal(m, req.Committer) })
		if err := s.fanOut(tx, others, [][]byte{commitEnv}, &res.Overflowed); err != nil {
			return err
		}
		if len(req.Added) > 0 {
			if err := s.fanOut(tx, req.Added, [][]byte{welcomeEnv}, &res.Overflowed); err != nil {
				return err
			}
		}
		members := slices.DeleteFunc(slices.Clone(g.Members), func(m []byte) bool { return isMember(req.Removed, m) })
		g.Members = append(members, req.Added...)
		g.Epoch++
		commits, err := gb.CreateBucket(keyCommits)
		if err != nil {
			return err
		}
		if err := commits.Put(SeqKey(req.Epoch), hash[:]); err != nil {
			return err
		}
		res.Epoch = g.Epoch
		return gb.Put(keyGroup, g.marshal())
	})
	if err != nil {
		return CommitResult{}, err
	}
	return res, nil
}

// Send implements Store.
func (s *LocalStore) Send(ctx context.Context, req SendRequest) (SendResult, error) {
	if err := errors.Join(checkLen("group id", req.Group, 1, MaxGroupIDLen), checkLen("sender", req.Sender, 1, MaxKeyLen)); err != nil {
		return SendResult{}, err
	}
	// Encode on the caller's goroutine: the writer only seals and stores.
	envs := make([][]byte, len(req.Messages))
	for i, m := range req.Messages {
		if err := checkLen("message", m, 1, MaxMessageLen); err != nil {
			return SendResult{}, err
		}
		envs[i] = (&Envelope{Kind: KindApplication, Group: req.Group, Sender: req.Sender, Data: m}).marshal()
	}
	var res SendResult
	err := s.update(ctx, func(tx *Tx) error {
		res = SendResult{}
		_, g, err := getGroup(tx, req.Group)
		if err != nil {
			return err
		}
		if !isMember(g.Members, req.Sender) {
			return ErrNotMember
		}
		others := slices.DeleteFunc(slices.Clone(g.Members), func(m []byte) bool { return bytes.Equal(m, req.Sender) })
		return s.fanOut(tx, others, envs, &res.Overflowed)
	})
	return res, err
}
