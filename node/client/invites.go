package client

// Pending invitations. A Welcome waits in this device's queue at the node
// until a sync applies it (recv, join, chat, send: deliveries are applied
// in order, so every sync joins the groups whose Welcomes it meets).
// Invites lists those not yet applied, reading the queue without applying
// or acknowledging anything. Declining one joins the group and leaves it
// at once (leave.go), rather than dropping the Welcome: a device that
// drops its Welcome stays a member in everybody else's tree and at the
// node, which keeps queueing the group's messages for it, while a leave
// removes it for good and the others see "bob left".

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"qpchat/mls"
)

// Invite is a Welcome waiting in this device's queue.
type Invite struct {
	Group []byte
	// Name is the name the group gets when the Welcome is applied, until
	// the inviter's name for it arrives (join prints that one).
	Name    string
	Inviter string
	Members []string // users in the group, the inviter included
	Seq     uint64
}

// maxInvitePages bounds how much of the queue Invites reads.
const maxInvitePages = 16

// placeholderName is the name a joined group has until its inviter's
// name for it arrives (applyWelcome).
func placeholderName(id []byte) string {
	if len(id) > 4 {
		id = id[:4]
	}
	return fmt.Sprintf("%x", id)
}

// Invites lists the Welcomes queued for this device and not yet applied.
// A Welcome is opened (and checked as join would) but nothing is stored
// except first-contact pins of its members' user keys.
func (c *Client) Invites(ctx context.Context) ([]Invite, error) {
	if err := c.needDevice(); err != nil {
		return nil, err
	}
	last, err := c.st.LastSeq()
	if err != nil {
		return nil, err
	}
	var out []Invite
	for range maxInvitePages {
		r, err := c.cfg.Session.Fetch(ctx, last, fetchLimit, 0)
		if err != nil {
			return out, fmt.Errorf("client: fetching messages: %w", err)
		}
		if len(r.Deliveries) == 0 {
			break
		}
		for _, d := range r.Deliveries {
			last = max(last, d.Seq)
			if d.Kind != DeliveryWelcome || !containsKey(d.Added, c.devKey) {
				continue
			}
			inv, err := c.openInvite(ctx, d)
			if err != nil {
				continue // join refuses it and says why
			}
			out = append(out, *inv)
		}
	}
	return out, nil
}

// openInvite opens a queued Welcome without storing the group.
func (c *Client) openInvite(ctx context.Context, d Delivery) (*Invite, error) {
	rec, _, err := c.welcomeKeyPackage(d.Data)
	if err != nil {
		return nil, err
	}
	kp, err := mls.UnmarshalKeyPackagePrivate(rec.Private)
	if err != nil {
		return nil, err
	}
	tree, err := c.welcomeTree(ctx, d.Data, kp)
	if err != nil {
		return nil, err
	}
	g, err := mls.JoinFromWelcome(c.mlsConfig(ctx), d.Data, kp, tree, c.now())
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(g.GroupID(), d.Group) {
		return nil, errors.New("client: Welcome for another group than its stamp names")
	}
	inv := &Invite{Group: d.Group, Name: placeholderName(d.Group), Seq: d.Seq}
	seen := map[string]bool{}
	for _, m := range g.Members() {
		u := memberUser(m)
		if bytes.Equal(m.SignatureKey, d.Sender) {
			inv.Inviter = u
		}
		if !seen[u] && !bytes.Equal(m.SignatureKey, c.devKey) {
			seen[u] = true
			inv.Members = append(inv.Members, u)
		}
	}
	if inv.Inviter == "" {
		return nil, errors.New("client: Welcome whose stamped sender is not in the group")
	}
	return inv, nil
}

// resolveGroup finds the id of a group by its local name, or of a pending
// invitation by the name Invites shows or a prefix (8 hex digits at
// least) of its id.
func (c *Client) resolveGroup(ctx context.Context, name string) ([]byte, error) {
	if g, err := c.loadGroupByName(ctx, name); err == nil {
		return g.rec.ID, nil
	} else if !errors.Is(err, ErrUnknownGroup) {
		return nil, err
	}
	invs, err := c.Invites(ctx)
	if err != nil {
		return nil, err
	}
	want := strings.ToLower(name)
	for _, inv := range invs {
		if inv.Name == name || (len(want) >= 8 && strings.HasPrefix(hex.EncodeToString(inv.Group), want)) {
			return inv.Group, nil
		}
	}
	return nil, fmt.Errorf("%w %q (and no pending invitation of that name)", ErrUnknownGroup, name)
}

// Join applies the queue, joining every group whose Welcome waits, and
// returns the new history entries; with a group name (a local name, the
// inviter's name for the group once applied, or an invitation as Invites
// names it), only the entries of that group. It fails when there is no
// such group, returning every new entry with the error.
func (c *Client) Join(ctx context.Context, name string) ([]*Event, error) {
	if name == "" {
		return c.Recv(ctx, 0)
	}
	id, err := c.resolveGroup(ctx, name)
	if err != nil && !errors.Is(err, ErrUnknownGroup) {
		return nil, err
	}
	evs, err := c.Recv(ctx, 0)
	if err != nil {
		return evs, err
	}
	if id == nil {
		// Maybe the name the inviter gave it, which arrives after the
		// Welcome.
		g, err := c.loadGroupByName(ctx, name)
		if err != nil {
			return evs, err
		}
		id = g.rec.ID
	}
	var out []*Event
	for _, e := range evs {
		if bytes.Equal(e.Group, id) {
			out = append(out, e)
		}
	}
	return out, nil
}

// Decline refuses an invitation (as Invites names it, or by the name the
// inviter gave the group) or leaves a group already joined: it applies the queue, which joins the group, and
// leaves it with every device of the user (Leave). It returns the group's
// name and how far the leave got.
func (c *Client) Decline(ctx context.Context, name string, wait time.Duration) (*LeaveResult, error) {
	if err := c.needDevice(); err != nil {
		return nil, err
	}
	id, err := c.resolveGroup(ctx, name)
	if err != nil && !errors.Is(err, ErrUnknownGroup) {
		return nil, err
	}
	if _, err := c.Sync(ctx, 0); err != nil {
		return nil, err
	}
	var g *group
	if id != nil {
		g, err = c.loadGroup(ctx, id)
	} else {
		g, err = c.loadGroupByName(ctx, name) // the inviter's name for it
	}
	if err != nil {
		return nil, err
	}
	return c.Leave(ctx, g.rec.Name, true, wait)
}
