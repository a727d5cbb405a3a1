package client

// Group operations and the committing-client rules of DESIGN.md: a commit
// of ours is kept pending (RFC 9420, Section 12.4: a committer cannot
// process its own commit) and persisted before it is submitted; it is
// merged once the node accepts it, and dropped, re-synced and retried when
// the node refuses it as stale.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"qpchat/mls"
	"qpchat/node/proto"
	"qpchat/node/store"
)

// maxCommitAttempts bounds the retries of a commit refused as stale.
const maxCommitAttempts = 8

// CreateGroup creates a group with a fresh random id, named name in this
// profile, registers it at the node and returns its id.
func (c *Client) CreateGroup(ctx context.Context, name string, suite uint16) ([]byte, error) {
	return c.createGroup(ctx, name, suite, "")
}

func (c *Client) createGroup(ctx context.Context, name string, suite uint16, peer string) ([]byte, error) {
	if err := c.needDevice(); err != nil {
		return nil, err
	}
	if err := CheckGroupName(name); err != nil {
		return nil, err
	}
	if suite == 0 {
		suite = DefaultSuite
	}
	if err := c.st.db.View(func(tx *store.Tx) error {
		if _, err := getGroupByName(tx, name); err == nil {
			return fmt.Errorf("client: a group named %q exists already", name)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	id := make([]byte, 32)
	if _, err := io.ReadFull(c.cfg.Rand, id); err != nil {
		return nil, err
	}
	kp, err := c.newKeyPackage(suite)
	if err != nil {
		return nil, err
	}
	g, err := mls.CreateGroup(c.cfg.Rand, c.mlsConfig(ctx), id, kp, nil)
	if err != nil {
		return nil, err
	}
	if err := c.cfg.Session.CreateGroup(ctx, id); err != nil {
		return nil, fmt.Errorf("client: creating the group at the node: %w", err)
	}
	gr := &group{rec: &groupRecord{ID: id, Name: name, Peer: peer, NameSent: true}, g: g}
	ev := &Event{Kind: EventJoined, Group: id, Sender: c.prof.User, Outgoing: true, Time: c.now().Unix(), Text: "created"}
	if err := c.persist([]*group{gr}, []*Event{ev}, func(tx *store.Tx) error { return putGroupName(tx, name, id) }); err != nil {
		return nil, err
	}
	c.groups[string(id)] = gr
	return id, nil
}

// commitFunc prepares a commit on the group's current state.
type commitFunc func(g *group) (*mls.CommitOutput, [][]byte /* added */, [][]byte /* removed */, error)

// commit runs the committing-client loop for one change and returns the
// event of the merged commit.
func (c *Client) commit(ctx context.Context, id []byte, build commitFunc) (*mls.Event, error) {
	for attempt := 1; ; attempt++ {
		// Earlier pending commits and queued messages first: a commit
		// must be made on the newest epoch.
		if _, err := c.Sync(ctx, 0); err != nil {
			return nil, err
		}
		g, err := c.loadGroup(ctx, id)
		if err != nil {
			return nil, err
		}
		if g.g == nil {
			return nil, fmt.Errorf("client: this device was removed from %s", g.rec.Name)
		}
		out, added, removed, err := build(g)
		if err != nil {
			g.g.DiscardPending()
			c.forget()
			return nil, err
		}
		// The commit also covers the proposals received in the epoch by
		// reference (self-removals, leave.go): the node's stamp must
		// declare every device it removes.
		for _, l := range out.Removed {
			if m, ok := g.g.Member(l); ok && !containsKey(removed, m.SignatureKey) {
				removed = append(removed, m.SignatureKey)
			}
		}
		g.rec.Pending = &pendingCommit{Commit: out.Commit, Welcome: out.Welcome, Added: added, Removed: removed}
		if err := c.persist([]*group{g}, nil, nil); err != nil {
			return nil, err
		}
		if c.cfg.BeforeSubmit != nil {
			c.cfg.BeforeSubmit()
		}
		ev, err := c.submitPending(ctx, g)
		if errors.Is(err, ErrStale) && attempt < maxCommitAttempts {
			continue
		}
		return ev, err
	}
}

// submitPending submits the group's pending commit and merges it on
// acceptance (a duplicate counts: the node accepted it before), or drops
// it when refused as stale (returning ErrStale). Other errors keep it
// pending for a later attempt.
func (c *Client) submitPending(ctx context.Context, g *group) (*mls.Event, error) {
	p := g.rec.Pending
	err := c.cfg.Session.Commit(ctx, CommitRequest{Group: g.rec.ID, Commit: p.Commit, Welcome: p.Welcome, Added: p.Added, Removed: p.Removed})
	if errors.Is(err, ErrStale) || refusedCommit(err) {
		// Stale: another commit won. Refused for good (too large, over
		// a limit, invalid): retrying the same bytes cannot succeed, and
		// keeping it pending would block every later sync of the group.
		g.g.DiscardPending()
		g.rec.Pending = nil
		if perr := c.persist([]*group{g}, nil, nil); perr != nil {
			return nil, perr
		}
		if !errors.Is(err, ErrStale) {
			return nil, fmt.Errorf("client: the node refused a commit to %s: %w", g.rec.Name, err)
		}
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("client: submitting a commit to %s: %w", g.rec.Name, err)
	}
	ev, err := g.g.MergePending()
	if err != nil {
		return nil, err
	}
	g.rec.Pending = nil
	events := c.commitEvents(g, ev, c.prof.User, c.devKey, true)
	g.rec.Leavers = nil // proposals count only in their epoch
	if err := c.persist([]*group{g}, events, nil); err != nil {
		return nil, err
	}
	return ev, nil
}

// refusedCommit reports whether the node refused a commit for a reason
// that resubmitting the same bytes cannot change.
func refusedCommit(err error) bool {
	switch proto.CodeOf(err) {
	case proto.CodeLimit, proto.CodeInvalid, proto.CodeNotAcceptable, proto.CodeForbidden:
		return true
	}
	return false
}

// resolvePending submits every pending commit left by an earlier run.
func (c *Client) resolvePending(ctx context.Context) error {
	var ids [][]byte
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
			if r.Pending != nil {
				ids = append(ids, r.ID)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, id := range ids {
		g, err := c.loadGroup(ctx, id)
		if err != nil {
			return err
		}
		if g.rec.Pending == nil || g.g == nil {
			continue
		}
		if g.g.PendingCommit() == nil {
			// The MLS state lost its pending commit (it cannot, since
			// both are written together); drop the request.
			g.rec.Pending = nil
			if err := c.persist([]*group{g}, nil, nil); err != nil {
				return err
			}
			continue
		}
		if _, err := c.submitPending(ctx, g); err != nil && !errors.Is(err, ErrStale) && !refusedCommit(err) {
			return err
		}
	}
	return nil
}

// commitEvents describes a merged or processed commit for the history.
func (c *Client) commitEvents(g *group, ev *mls.Event, sender string, senderDev []byte, outgoing bool) []*Event {
	base := Event{Group: g.rec.ID, Sender: sender, DeviceID: devID(senderDev), Outgoing: outgoing, Time: c.now().Unix(), Epoch: ev.Epoch}
	var out []*Event
	left, removedBy := splitLeavers(ev.Removed, g.rec.Leavers)
	c.noteLeftDevices(g, left)
	for _, m := range left {
		// Asked to leave (leave.go): not the committer's doing.
		e := base
		e.Kind = EventLeft
		e.Sender, e.DeviceID, e.Outgoing = memberUser(m), devID(m.SignatureKey), false
		e.Users = []string{e.Sender}
		e.Text = e.Sender + " left"
		if e.Sender == c.prof.User {
			e.Text = "your device " + Fingerprint(m.SignatureKey) + " left"
		}
		out = append(out, &e)
	}
	if len(ev.Added) > 0 || len(removedBy) > 0 {
		e := base
		e.Kind = EventMembers
		var added, removed []string
		for _, m := range ev.Added {
			added = append(added, memberUser(m))
		}
		for _, m := range removedBy {
			removed = append(removed, memberUser(m))
		}
		e.Users = append(added, removed...)
		e.Text = describeMembers(sender, ev.Added, removedBy)
		out = append(out, &e)
	}
	if len(ev.Added) == 0 && len(ev.Removed) == 0 {
		e := base
		e.Kind = EventKeyRotated
		e.Text = "updated keys"
		out = append(out, &e)
	}
	return out
}

func devID(key []byte) []byte {
	if key == nil {
		return nil
	}
	id := proto.DeviceID(key)
	return id[:]
}

func memberUser(m mls.Member) string {
	id, err := identityOf(m.Credential)
	if err != nil {
		return "?"
	}
	return id.User
}

// InviteResult reports an invitation.
type InviteResult struct {
	Added int // devices added
	// Skipped are devices of other users that no chain of approvals
	// reaches (devicetrust.go), per user; they were not added.
	Skipped []SkippedDevices
}

// Invite adds users to the group (InviteReport) and returns the number
// of devices added.
func (c *Client) Invite(ctx context.Context, name string, users []string) (int, error) {
	r, err := c.InviteReport(ctx, name, users)
	if r == nil {
		return 0, err
	}
	return r.Added, err
}

// InviteReport adds the devices of each user to the group: it fetches one
// KeyPackage per device, checks each (RFC 9420, Section 10.1, and the
// device certificate under the user's pinned key), keeps the devices the
// user approved (another user's: reachable from its first device through
// approval records, devicetrust.go; this user's: approved on this device,
// approvals.go), commits the Adds with a Welcome, and then tells the
// group its name. The result counts the devices added and names the
// devices of other users it skipped as unapproved.
func (c *Client) InviteReport(ctx context.Context, name string, users []string) (*InviteResult, error) {
	res := &InviteResult{}
	if err := c.needDevice(); err != nil {
		return res, err
	}
	g, err := c.loadGroupByName(ctx, name)
	if err != nil {
		return res, err
	}
	if g.g == nil {
		return res, fmt.Errorf("client: this device was removed from %s", name)
	}
	id := g.rec.ID
	suite := uint16(g.g.CipherSuite())
	var kps [][]byte
	var devices [][]byte
	normalized := make([]string, len(users))
	for i, u := range users {
		user, err := proto.NormalizeUser(u)
		if err != nil {
			return res, err
		}
		normalized[i] = user
	}
	if err := c.pinAll(ctx, normalized); err != nil {
		return res, err
	}
	all, err := c.fetchAll(ctx, normalized, suite)
	if err != nil {
		return res, err
	}
	for i, user := range normalized {
		fetched := all[i]
		type checked struct {
			f  FetchedKeyPackage
			kp *mls.KeyPackage
		}
		var ok []checked
		certified := map[string]bool{}
		for _, f := range fetched.Packages {
			if bytes.Equal(f.Device, c.devKey) {
				continue
			}
			kp, err := c.checkKeyPackage(ctx, user, suite, f)
			if err != nil {
				return res, err
			}
			ok = append(ok, checked{f, kp})
			certified[string(f.Device)] = true
		}
		var trusted map[string]bool
		if user != c.prof.User {
			trusted = trustedDevices(user, fetched.FirstDevice, fetched.Approvals, certified)
		}
		skipped := SkippedDevices{User: user, NoRoot: len(fetched.FirstDevice) == 0}
		for _, k := range ok {
			if memberWithKey(g.g, k.kp.LeafNode.SignatureKey) {
				continue // already in the group
			}
			if user == c.prof.User && (!c.isApproved(k.f.Device) || containsKey(g.rec.LeftDevices, k.f.Device)) {
				continue // own devices join once approved (approvals.go), and not again after leaving unless approved again (leave.go)
			}
			if user != c.prof.User && !trusted[string(k.f.Device)] {
				skipped.Devices = append(skipped.Devices, k.f.Device)
				continue // certified with the password only (devicetrust.go)
			}
			kps = append(kps, k.f.KeyPackage)
			devices = append(devices, k.kp.LeafNode.SignatureKey)
		}
		if len(skipped.Devices) > 0 {
			res.Skipped = append(res.Skipped, skipped)
		}
		if user != c.prof.User && len(fetched.Packages) == 0 {
			return res, fmt.Errorf("%w: %s has no KeyPackage for suite 0x%04x", ErrNoKeyPackages, user, suite)
		}
	}
	if len(kps) == 0 {
		return res, nil
	}
	// Large invites go in several commits that each fit the node's
	// message limit (bigtree.go); a commit the node still refuses as too
	// large is split in two and tried again.
	tb, err := g.g.RatchetTree()
	if err != nil {
		return res, err
	}
	inline := len(tb)+totalLen(kps) <= c.treeInline()
	type batch struct{ kps, devices [][]byte }
	var queue []batch
	kb, db := inviteBatches(kps, devices, suite, c.commitBudget(), len(tb), inline)
	for i := range kb {
		queue = append(queue, batch{kb[i], db[i]})
	}
	for len(queue) > 0 {
		b := queue[0]
		queue = queue[1:]
		_, err := c.commit(ctx, id, func(g *group) (*mls.CommitOutput, [][]byte, [][]byte, error) {
			// Skip devices a concurrent commit added meanwhile.
			var k2, d2 [][]byte
			for i, d := range b.devices {
				if !memberWithKey(g.g, d) {
					k2, d2 = append(k2, b.kps[i]), append(d2, d)
				}
			}
			if len(k2) == 0 {
				return nil, nil, nil, errNothingToDo
			}
			opts := &mls.CommitOptions{KeyPackages: k2}
			tree, err := g.g.RatchetTree()
			if err != nil {
				return nil, nil, nil, err
			}
			if len(tree)+totalLen(k2) > c.treeInline() {
				opts.TreeOutOfBand = c.treeOutOfBand(ctx)
			}
			out, err := g.g.Commit(c.cfg.Rand, opts, c.now())
			return out, d2, nil, err
		})
		switch {
		case errors.Is(err, errNothingToDo):
			continue
		case proto.CodeOf(err) == proto.CodeLimit && len(b.kps) > 1:
			h := len(b.kps) / 2
			queue = append([]batch{{b.kps[:h], b.devices[:h]}, {b.kps[h:], b.devices[h:]}}, queue...)
			continue
		case err != nil:
			return res, err
		}
		res.Added += len(b.devices)
	}
	if res.Added == 0 {
		return res, nil
	}
	g, err = c.loadGroup(ctx, id)
	if err != nil {
		return res, err
	}
	// Tell the new members what the group is called.
	meta := &payload{Kind: payloadMeta, Name: g.rec.Name, DM: g.rec.Peer != ""}
	if err := c.sendPayload(ctx, g, meta); err != nil {
		return res, err
	}
	return res, nil
}

var errNothingToDo = errors.New("client: nothing to do")

// fetchConcurrency bounds the KeyPackage fetches an invite has in flight.
const fetchConcurrency = 16

// pinAll pins, on first contact, the keys of the users that have no pin
// yet: fetched several at a time and stored in one transaction (one
// fsync for a large invite instead of one per user). Users already
// pinned are left alone (a changed key is handled where it is checked).
func (c *Client) pinAll(ctx context.Context, users []string) error {
	var fresh []string
	for _, u := range users {
		if u == c.prof.User {
			continue
		}
		p, err := c.st.peer(u)
		if err != nil {
			return err
		}
		if p == nil && !slices.Contains(fresh, u) {
			fresh = append(fresh, u)
		}
	}
	if len(fresh) < 2 {
		return nil // pinnedKey does it as it goes
	}
	keys := make([][]byte, len(fresh))
	errs := make([]error, len(fresh))
	sem := make(chan struct{}, fetchConcurrency)
	var wg sync.WaitGroup
	for i, u := range fresh {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			keys[i], errs[i] = c.fetchUserKey(ctx, u)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return c.st.db.Update(func(tx *store.Tx) error {
		for i, u := range fresh {
			if p, err := getPeer(tx, u); err != nil || p != nil {
				if err != nil {
					return err
				}
				continue
			}
			if err := putPeer(tx, &peerRecord{User: u, Key: keys[i]}); err != nil {
				return err
			}
		}
		return nil
	})
}

// fetchAll fetches the KeyPackages of every user, several at a time (one
// round trip each: a large invite would otherwise wait for them one by
// one). It fails with the first error, in the order of users.
func (c *Client) fetchAll(ctx context.Context, users []string, suite uint16) ([]*KeyPackages, error) {
	out := make([]*KeyPackages, len(users))
	errs := make([]error, len(users))
	sem := make(chan struct{}, fetchConcurrency)
	var wg sync.WaitGroup
	for i, user := range users {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			out[i], errs[i] = c.cfg.Session.FetchKeyPackages(ctx, user, suite)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("client: fetching KeyPackages of %s: %w", users[i], err)
		}
	}
	return out, nil
}

// totalLen is the sum of the lengths of bs.
func totalLen(bs [][]byte) int {
	n := 0
	for _, b := range bs {
		n += len(b)
	}
	return n
}

// checkKeyPackage parses and validates a fetched KeyPackage: RFC 9420,
// Section 10.1 (through mls.ValidateKeyPackage, which also runs the
// credential check), the suite, and that it belongs to the device and
// user the node says.
func (c *Client) checkKeyPackage(ctx context.Context, user string, suite uint16, f FetchedKeyPackage) (*mls.KeyPackage, error) {
	msg, err := mls.UnmarshalMLSMessage(f.KeyPackage)
	if err != nil || msg.WireFormat != mls.WireFormatKeyPackage || msg.KeyPackage == nil {
		return nil, fmt.Errorf("client: the node sent a malformed KeyPackage for %s", user)
	}
	kp := msg.KeyPackage
	if err := mls.ValidateKeyPackage(kp, mls.CipherSuite(suite), c.now(), func(cred mls.Credential, sigKey []byte) error {
		return c.validateCredential(ctx, cred, sigKey)
	}); err != nil {
		return nil, fmt.Errorf("client: refusing a KeyPackage of %s: %w", user, err)
	}
	id, err := identityOf(kp.LeafNode.Credential)
	if err != nil {
		return nil, err
	}
	if id.User != user {
		return nil, fmt.Errorf("client: refusing a KeyPackage of %s: it belongs to %s", user, id.User)
	}
	if !bytes.Equal(kp.LeafNode.SignatureKey, f.Device) {
		return nil, fmt.Errorf("client: refusing a KeyPackage of %s: it is not for the device the node names", user)
	}
	return kp, nil
}

func memberWithKey(g *mls.Group, key []byte) bool {
	for _, m := range g.Members() {
		if bytes.Equal(m.SignatureKey, key) {
			return true
		}
	}
	return false
}

// Remove removes every device of users from the group.
func (c *Client) Remove(ctx context.Context, name string, users []string) (int, error) {
	if err := c.needDevice(); err != nil {
		return 0, err
	}
	g, err := c.loadGroupByName(ctx, name)
	if err != nil {
		return 0, err
	}
	want := map[string]bool{}
	for _, u := range users {
		n, err := proto.NormalizeUser(u)
		if err != nil {
			return 0, err
		}
		want[n] = true
	}
	count := 0
	_, err = c.commit(ctx, g.rec.ID, func(g *group) (*mls.CommitOutput, [][]byte, [][]byte, error) {
		var leaves []uint32
		var keys [][]byte
		for _, m := range g.g.Members() {
			if want[memberUser(m)] && !bytes.Equal(m.SignatureKey, c.devKey) {
				leaves = append(leaves, m.Leaf)
				keys = append(keys, m.SignatureKey)
			}
		}
		if len(leaves) == 0 {
			return nil, nil, nil, fmt.Errorf("client: none of %v is a member of %s", users, name)
		}
		count = len(leaves)
		out, err := g.g.Remove(c.cfg.Rand, leaves, c.now())
		return out, nil, keys, err
	})
	return count, err
}

// RemoveDevice removes a device (by key) from every group it is in; the
// user's other device does this after revoking it.
func (c *Client) RemoveDevice(ctx context.Context, device []byte) ([]string, error) {
	if err := c.needDevice(); err != nil {
		return nil, err
	}
	groups, err := c.Groups(ctx)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, gi := range groups {
		if gi.Removed {
			continue
		}
		g, err := c.loadGroup(ctx, gi.ID)
		if err != nil || g.g == nil || !memberWithKey(g.g, device) {
			continue
		}
		_, err = c.commit(ctx, gi.ID, func(g *group) (*mls.CommitOutput, [][]byte, [][]byte, error) {
			for _, m := range g.g.Members() {
				if bytes.Equal(m.SignatureKey, device) {
					out, err := g.g.Remove(c.cfg.Rand, []uint32{m.Leaf}, c.now())
					return out, nil, [][]byte{device}, err
				}
			}
			return nil, nil, nil, errNothingToDo
		})
		if err != nil && !errors.Is(err, errNothingToDo) {
			return names, err
		}
		names = append(names, gi.Name)
	}
	return names, nil
}

// Update rotates this device's keys in the group (a full commit with a
// fresh leaf and path).
func (c *Client) Update(ctx context.Context, name string) (uint64, error) {
	if err := c.needDevice(); err != nil {
		return 0, err
	}
	g, err := c.loadGroupByName(ctx, name)
	if err != nil {
		return 0, err
	}
	ev, err := c.commit(ctx, g.rec.ID, func(g *group) (*mls.CommitOutput, [][]byte, [][]byte, error) {
		out, err := g.g.Update(c.cfg.Rand, c.now())
		return out, nil, nil, err
	})
	if err != nil {
		return 0, err
	}
	return ev.Epoch, nil
}

// Send sends a text message to the group.
func (c *Client) Send(ctx context.Context, name, text string) error {
	if err := c.needDevice(); err != nil {
		return err
	}
	if _, err := c.Sync(ctx, 0); err != nil {
		return err
	}
	g, err := c.loadGroupByName(ctx, name)
	if err != nil {
		return err
	}
	return c.sendText(ctx, g, text)
}

func (c *Client) sendText(ctx context.Context, g *group, text string) error {
	if g.g == nil {
		return fmt.Errorf("client: this device was removed from %s", g.rec.Name)
	}
	ev := &Event{Kind: EventMessage, Group: g.rec.ID, Sender: c.prof.User, DeviceID: devID(c.devKey), Outgoing: true,
		Time: c.now().Unix(), Epoch: g.g.Epoch(), Text: text}
	return c.sendPayloadWith(ctx, g, &payload{Kind: payloadText, Text: text}, ev)
}

// sendPayload protects and sends a payload. The ratchet state is stored
// before the message leaves, so a key is never used twice.
func (c *Client) sendPayload(ctx context.Context, g *group, p *payload) error {
	return c.sendPayloadWith(ctx, g, p, nil)
}

// sendPayloadWith sends a payload, storing the ratchet state and the
// history entry ev (if not nil) in one transaction before it leaves. A
// message the node refuses is recorded as such.
func (c *Client) sendPayloadWith(ctx context.Context, g *group, p *payload, ev *Event) error {
	msg, err := g.g.Protect(c.cfg.Rand, p.marshal(), nil)
	if err != nil {
		return err
	}
	var evs []*Event
	if ev != nil {
		evs = []*Event{ev}
	}
	if err := c.persist([]*group{g}, evs, nil); err != nil {
		return err
	}
	if err := c.cfg.Session.Send(ctx, g.rec.ID, [][]byte{msg}); err != nil {
		if ev != nil {
			_ = c.persist(nil, []*Event{{Kind: EventRefused, Group: g.rec.ID, Sender: c.prof.User, Outgoing: true,
				Time: c.now().Unix(), Text: "the node refused the message above: " + err.Error()}}, nil)
		}
		return fmt.Errorf("client: sending to %s: %w", g.rec.Name, err)
	}
	return nil
}

// SendAll sends a text message to every group this device is in and
// returns their names.
func (c *Client) SendAll(ctx context.Context, text string) ([]string, error) {
	if err := c.needDevice(); err != nil {
		return nil, err
	}
	if _, err := c.Sync(ctx, 0); err != nil {
		return nil, err
	}
	groups, err := c.Groups(ctx)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, gi := range groups {
		if gi.Removed {
			continue
		}
		g, err := c.loadGroup(ctx, gi.ID)
		if err != nil {
			return names, err
		}
		if err := c.sendText(ctx, g, text); err != nil {
			return names, err
		}
		names = append(names, gi.Name)
	}
	return names, nil
}

// DM sends text to user over the direct-message channel with them,
// creating it (a two-party group) on first use. It returns the channel's
// local name.
func (c *Client) DM(ctx context.Context, user, text string, suite uint16) (string, error) {
	if err := c.needDevice(); err != nil {
		return "", err
	}
	u, err := proto.NormalizeUser(user)
	if err != nil {
		return "", err
	}
	if _, err := c.Sync(ctx, 0); err != nil {
		return "", err
	}
	groups, err := c.Groups(ctx)
	if err != nil {
		return "", err
	}
	name := ""
	for _, gi := range groups {
		if gi.DM == u && !gi.Removed {
			name = gi.Name
			break
		}
	}
	if name == "" {
		// The user must exist before a channel is made for them.
		if _, err := c.pinnedKey(ctx, u); err != nil {
			return "", err
		}
		if err := c.st.db.View(func(tx *store.Tx) error { name = uniqueName(tx, "dm:"+u); return nil }); err != nil {
			return "", err
		}
		if _, err := c.createGroup(ctx, name, suite, u); err != nil {
			return "", err
		}
	}
	if g, err := c.loadGroupByName(ctx, name); err == nil && g.g != nil && len(g.g.Members()) < 2 {
		// New, or an earlier invitation failed: invite (again).
		if _, err := c.Invite(ctx, name, []string{u}); err != nil {
			return name, err
		}
	}
	if text == "" {
		return name, nil
	}
	g, err := c.loadGroupByName(ctx, name)
	if err != nil {
		return name, err
	}
	return name, c.sendText(ctx, g, text)
}
