package client

// Leaving a group. RFC 9420 has no commit that removes its own committer
// (Section 12.2: a commit's proposal list must not remove the committer;
// Section 12.1.3 lets a member propose any Remove), so a device leaves by
// sending a Remove proposal for its own leaf, and the other members'
// clients commit it:
//
//   - The leaving device marks the group Leaving and proposes its removal
//     (with LeaveAll, also the removal of the user's other devices in the
//     group). A proposal counts only in the epoch it was sent in (Section
//     12.1), and another commit may win that epoch without covering it,
//     so the device keeps its state and proposes again in every new epoch
//     until a commit removes it. Only then is its group state deleted.
//   - A member that receives a Remove proposal whose sender belongs to the
//     same user as the removed device (a self-removal) notes the device as
//     a leaver and commits the pending proposals once the batch is stored.
//     Several members may do so at once: the node accepts one commit per
//     epoch, the others are refused as stale, re-sync and find nothing
//     left to commit (the committing-client loop of groups.go).
//   - The history says "bob left", not "alice removed bob". A device of
//     this user that left is recorded in the group (LeftDevices), and the
//     approval flow (approvals.go) does not add it there again unless the
//     user approves it again.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"qpchat/mls"
	"qpchat/node/store"
)

// LeaveResult reports a leave.
type LeaveResult struct {
	Group string
	// Done: a commit removed this device; its group state is deleted.
	// Otherwise the removal is pending: this device proposes it again in
	// every epoch, and later syncs (recv, chat) complete it.
	Done bool
}

// Leave leaves the group name: this device (allDevices false) or every
// device of the user in the group. It proposes the removal and then waits
// up to wait for a commit of another member that removes this device.
func (c *Client) Leave(ctx context.Context, name string, allDevices bool, wait time.Duration) (*LeaveResult, error) {
	if err := c.needDevice(); err != nil {
		return nil, err
	}
	g, err := c.loadGroupByName(ctx, name)
	if err != nil {
		return nil, err
	}
	res := &LeaveResult{Group: g.rec.Name}
	if g.g == nil {
		if g.rec.Left {
			res.Done = true
			return res, nil
		}
		return nil, fmt.Errorf("client: this device was removed from %s", name)
	}
	if c.committers(g, allDevices) == 0 {
		return nil, fmt.Errorf("client: nobody else is in %s to commit the removal (only your own devices are in it: leave with this device alone)", name)
	}
	if !g.rec.Leaving || (allDevices && !g.rec.LeaveAll) {
		g.rec.Leaving = true
		g.rec.LeaveAll = g.rec.LeaveAll || allDevices
		g.rec.ProposedEpoch = 0 // propose (again, with LeaveAll) now
		if err := c.persist([]*group{g}, nil, nil); err != nil {
			return nil, err
		}
	}
	id := g.rec.ID
	c.noteLeave(id)
	deadline := time.Now().Add(wait)
	for {
		// Sync proposes (resolveLeaves) and applies the removing commit.
		left := time.Until(deadline)
		if left < 0 {
			left = 0
		}
		if _, err := c.Sync(ctx, 0); err != nil {
			return res, err
		}
		if g, err = c.loadGroup(ctx, id); err != nil {
			return res, err
		}
		if g.rec.Left || g.g == nil {
			res.Done = true
			return res, nil
		}
		if left == 0 {
			return res, nil
		}
		if _, err := c.WaitForDelivery(ctx, min(left, 20*time.Second)); err != nil {
			return res, err
		}
	}
}

// committers counts the members of g that stay when this device (and,
// with allDevices, every device of the user) leaves: those that can
// commit the removal.
func (c *Client) committers(g *group, allDevices bool) int {
	n := 0
	for _, m := range g.g.Members() {
		if !bytes.Equal(m.SignatureKey, c.devKey) && (!allDevices || memberUser(m) != c.prof.User) {
			n++
		}
	}
	return n
}

// LeaveAllResult reports LeaveEveryGroup, by group name.
type LeaveAllResult struct {
	Left    []string // a commit removed the user's devices
	Pending []string // proposed; the other members commit it when they next sync
	// Abandoned groups hold no member of another user, so nobody can
	// commit the removal: they are not left (the node keeps them, with
	// the revoked devices as members, until they are deleted with it).
	Abandoned []string
}

// LeaveEveryGroup leaves every group this device is a member of with all
// of the user's devices, as Leave does (delete-account, which then
// revokes the devices). It proposes in every group first, then waits up
// to wait, in all, for the commits of other members. It can be run
// again: groups already left are skipped and pending ones re-proposed
// in their current epoch.
func (c *Client) LeaveEveryGroup(ctx context.Context, wait time.Duration) (*LeaveAllResult, error) {
	if err := c.needDevice(); err != nil {
		return nil, err
	}
	gs, err := c.Groups(ctx)
	if err != nil {
		return nil, err
	}
	res := &LeaveAllResult{}
	var pending []GroupInfo
	for _, gi := range gs {
		if gi.Removed || gi.Left {
			continue
		}
		g, err := c.loadGroup(ctx, gi.ID)
		if err != nil {
			return res, err
		}
		if g.g == nil {
			continue
		}
		if c.committers(g, true) == 0 {
			res.Abandoned = append(res.Abandoned, gi.Name)
			continue
		}
		pending = append(pending, gi)
	}
	// Mark and propose everywhere first; Leave with no wait also applies
	// what arrived.
	var still []GroupInfo
	for _, gi := range pending {
		lr, err := c.Leave(ctx, gi.Name, true, 0)
		if err != nil {
			return res, fmt.Errorf("client: leaving %s: %w", gi.Name, err)
		}
		if lr.Done {
			res.Left = append(res.Left, gi.Name)
		} else {
			still = append(still, gi)
		}
	}
	pending = still
	for deadline := time.Now().Add(wait); len(pending) > 0 && time.Until(deadline) > 0; {
		if _, err := c.WaitForDelivery(ctx, min(time.Until(deadline), 20*time.Second)); err != nil {
			return res, err
		}
		// The sync applies the removing commits and proposes again in
		// groups whose epoch another commit took.
		if _, err := c.Sync(ctx, 0); err != nil {
			return res, err
		}
		still = still[:0:0]
		for _, gi := range pending {
			g, err := c.loadGroup(ctx, gi.ID)
			if err != nil {
				return res, err
			}
			if g.rec.Left || g.g == nil {
				res.Left = append(res.Left, gi.Name)
			} else {
				still = append(still, gi)
			}
		}
		pending = still
	}
	for _, gi := range pending {
		res.Pending = append(res.Pending, gi.Name)
	}
	return res, nil
}

// resolveLeaves runs at the end of every sync: for each group this device
// is leaving, it proposes its removal when it has not yet in the current
// epoch; for each group with a pending self-removal of another device, it
// commits it.
func (c *Client) resolveLeaves(ctx context.Context) error {
	if c.leaving {
		return nil // commitLeaves syncs too
	}
	c.leaving = true
	defer func() { c.leaving = false }()
	if !c.leaveScanned {
		if err := c.scanLeaves(); err != nil {
			return err
		}
	}
	var ids [][]byte
	for id := range c.leaveIDs {
		ids = append(ids, []byte(id))
	}
	for _, id := range ids {
		g, err := c.loadGroup(ctx, id)
		if errors.Is(err, ErrUnknownGroup) {
			delete(c.leaveIDs, string(id))
			continue
		}
		if err != nil {
			return err
		}
		if g.g == nil || (!g.rec.Leaving && len(g.rec.Leavers) == 0) {
			delete(c.leaveIDs, string(id)) // done
			continue
		}
		if g.rec.Leaving {
			if g.rec.ProposedEpoch != g.g.Epoch()+1 {
				if err := c.proposeLeave(ctx, g); err != nil {
					return err
				}
			}
			continue // a leaving device commits nothing
		}
		if err := c.commitLeaves(ctx, id); err != nil {
			return err
		}
	}
	return nil
}

// scanLeaves finds the groups with a leave under way in the state.
func (c *Client) scanLeaves() error {
	ids := map[string]bool{}
	err := c.st.db.View(func(tx *store.Tx) error {
		cur := tx.Bucket(bGroups).Cursor()
		for k, v, err := cur.First(); k != nil; k, v, err = cur.Next() {
			if err != nil {
				return err
			}
			r, err := parseGroup(v)
			if err != nil {
				return err
			}
			if !r.Removed && (r.Leaving || len(r.Leavers) > 0) {
				ids[string(r.ID)] = true
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.leaveIDs, c.leaveScanned = ids, true
	return nil
}

// noteLeave adds a group to those resolveLeaves looks at.
func (c *Client) noteLeave(id []byte) {
	if c.leaveScanned {
		c.leaveIDs[string(id)] = true
	}
}

// proposeLeave sends Remove proposals for this device (and, with
// LeaveAll, the user's other devices) in the current epoch. The proposals
// and the ratchet state are stored before they leave.
func (c *Client) proposeLeave(ctx context.Context, g *group) error {
	var msgs [][]byte
	var own []byte
	for _, m := range g.g.Members() {
		self := bytes.Equal(m.SignatureKey, c.devKey)
		if !self && (!g.rec.LeaveAll || memberUser(m) != c.prof.User) {
			continue
		}
		msg, err := g.g.ProposeRemove(c.cfg.Rand, m.Leaf, c.now())
		if err != nil {
			c.forget()
			return fmt.Errorf("client: proposing to leave %s: %w", g.rec.Name, err)
		}
		if self {
			own = msg
		} else {
			msgs = append(msgs, msg)
		}
	}
	// Our own proposal goes last, after those of our other devices.
	msgs = append(msgs, own)
	g.rec.ProposedEpoch = g.g.Epoch() + 1
	if err := c.persist([]*group{g}, nil, nil); err != nil {
		return err
	}
	if err := c.cfg.Session.Send(ctx, g.rec.ID, msgs); err != nil {
		// Propose again on the next sync.
		g.rec.ProposedEpoch = 0
		_ = c.persist([]*group{g}, nil, nil)
		if errors.Is(err, ErrNotMember) {
			return nil // a commit removing us is on its way
		}
		return &transientError{fmt.Errorf("client: sending the leave proposal of %s: %w", g.rec.Name, err)}
	}
	return nil
}

// commitLeaves commits the pending self-removals of a group.
func (c *Client) commitLeaves(ctx context.Context, id []byte) error {
	_, err := c.commit(ctx, id, func(g *group) (*mls.CommitOutput, [][]byte, [][]byte, error) {
		if g.rec.Leaving || !anyLeaverIn(g) {
			return nil, nil, nil, errNothingToDo
		}
		out, err := g.g.CommitPending(c.cfg.Rand, c.now())
		if err != nil {
			return nil, nil, nil, err
		}
		if len(out.Removed) == 0 {
			g.g.DiscardPending()
			return nil, nil, nil, errNothingToDo
		}
		return out, nil, nil, nil // commit adds the removed devices' keys
	})
	if errors.Is(err, errNothingToDo) {
		g, lerr := c.loadGroup(ctx, id)
		if lerr == nil && g.g != nil && len(g.rec.Leavers) > 0 {
			g.rec.Leavers = nil
			return c.persist([]*group{g}, nil, nil)
		}
		return nil
	}
	return err
}

// anyLeaverIn says whether a device that proposed to leave is still a
// member.
func anyLeaverIn(g *group) bool {
	for _, k := range g.rec.Leavers {
		if memberWithKey(g.g, k) {
			return true
		}
	}
	return false
}

// noteProposal handles a proposal received in a group: a Remove whose
// sender is a device of the same user as the removed device is a
// self-removal (a leave), which this device commits at the end of the
// sync; when it removes this device, another device of this user left
// with all of the user's devices, and this device leaves too.
func (c *Client) noteProposal(g *group, sender mls.Member, p *mls.Proposal) {
	if p == nil || p.Type != mls.ProposalTypeRemove || p.Remove == nil {
		return
	}
	removed, ok := g.g.Member(uint32(p.Remove.Removed))
	if !ok || memberUser(removed) != memberUser(sender) || memberUser(removed) == "?" {
		return
	}
	if bytes.Equal(removed.SignatureKey, c.devKey) {
		// Our user leaves with every device: so do we. The proposal
		// covers this epoch.
		g.rec.Leaving = true
		g.rec.ProposedEpoch = g.g.Epoch() + 1
	}
	if !containsKey(g.rec.Leavers, removed.SignatureKey) {
		g.rec.Leavers = append(g.rec.Leavers, bytes.Clone(removed.SignatureKey))
	}
	c.noteLeave(g.rec.ID)
}

// splitLeavers splits the members a commit removed into those that asked
// to leave and those removed by the committer.
func splitLeavers(removed []mls.Member, leavers [][]byte) (left, others []mls.Member) {
	for _, m := range removed {
		if containsKey(leavers, m.SignatureKey) {
			left = append(left, m)
		} else {
			others = append(others, m)
		}
	}
	return left, others
}

// noteLeftDevices records which of this user's devices left the group,
// so that the approval flow does not add them again.
func (c *Client) noteLeftDevices(g *group, left []mls.Member) {
	for _, m := range left {
		if memberUser(m) == c.prof.User && !containsKey(g.rec.LeftDevices, m.SignatureKey) {
			g.rec.LeftDevices = append(g.rec.LeftDevices, bytes.Clone(m.SignatureKey))
		}
	}
}

// forgetLeft clears device from every group's LeftDevices: the user
// approved it again.
func (c *Client) forgetLeft(device []byte) error {
	err := c.st.db.Update(func(tx *store.Tx) error {
		cur := tx.Bucket(bGroups).Cursor()
		var recs []*groupRecord
		for k, v, err := cur.First(); k != nil; k, v, err = cur.Next() {
			if err != nil {
				return err
			}
			r, err := parseGroup(v)
			if err != nil {
				return err
			}
			if containsKey(r.LeftDevices, device) {
				recs = append(recs, r)
			}
		}
		for _, r := range recs {
			var keep [][]byte
			for _, d := range r.LeftDevices {
				if !bytes.Equal(d, device) {
					keep = append(keep, d)
				}
			}
			r.LeftDevices = keep
			if err := putGroup(tx, r); err != nil {
				return err
			}
		}
		return nil
	})
	c.forget()
	return err
}
