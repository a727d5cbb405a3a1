package client

// The sync loop (DESIGN.md, "Groups and delivery"): fetch from the
// device's queue, check each delivery's stamp against what MLS says, apply
// in order, persist group states, history and the last applied sequence in
// one transaction, and only then acknowledge. A crash between fetch and
// ack loses nothing (the queue still holds the messages) and applies
// nothing twice (the stored sequence says where to resume).

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sort"
	"time"

	"qpchat/mls"
	"qpchat/node/store"
)

// fetchLimit is the number of deliveries applied per transaction.
const fetchLimit = 256

// ackBatch is the batch size acknowledged at once; smaller batches wait
// for Flush.
const ackBatch = 32

// Flush acknowledges every applied delivery to the node. Call it before
// closing the client. An acknowledgement that fails is retried by the
// next Flush; the node keeps the messages meanwhile, and they are not
// applied twice.
func (c *Client) Flush(ctx context.Context) error {
	if c.unacked == 0 || c.unacked == c.acked || c.cfg.Session == nil {
		return nil
	}
	if err := c.cfg.Session.Ack(ctx, c.unacked); err != nil {
		return fmt.Errorf("client: acknowledging messages: %w", err)
	}
	c.acked = c.unacked
	return nil
}

// Sync applies every queued delivery and returns the new history entries.
// With wait > 0 it waits up to wait for the first delivery (fetchWait)
// when nothing is queued.
func (c *Client) Sync(ctx context.Context, wait time.Duration) ([]*Event, error) {
	if err := c.needDevice(); err != nil {
		return nil, err
	}
	if err := c.resolvePending(ctx); err != nil {
		return nil, err
	}
	if err := c.resolveAdoptions(ctx); err != nil {
		return nil, err
	}
	var all []*Event
	overflowed := false
	for {
		last, err := c.st.LastSeq()
		if err != nil {
			return all, err
		}
		r, err := c.cfg.Session.Fetch(ctx, last, fetchLimit, wait)
		if err != nil {
			return all, fmt.Errorf("client: fetching messages: %w", err)
		}
		ds := withLost(r.Deliveries, r.Lost)
		wait = 0
		if len(r.LowSuites) > 0 {
			if _, err := c.ReplenishKeyPackages(ctx, r.LowSuites); err != nil {
				return all, err
			}
		}
		if r.Overflowed {
			overflowed = true
		}
		if r.Overflowed && !c.overflowNoted {
			// Messages were dropped at the node: the groups' states can
			// no longer follow. Say so; once the queue is drained the
			// mark is cleared (below), and a member must remove and
			// re-add this device (DESIGN.md, "Groups and delivery").
			c.overflowNoted = true
			ev := &Event{Kind: EventRefused, Time: c.now().Unix(),
				Text: "this device's queue at the node overflowed and messages were lost; it receives again from now on, but in groups whose changes it missed, a member must remove and re-add this device"}
			if err := c.persist(nil, []*Event{ev}, nil); err != nil {
				return all, err
			}
			all = append(all, ev)
		}
		if len(ds) > 0 {
			events, err := c.applyBatch(ctx, last, ds)
			all = append(all, events...)
			if err != nil {
				return all, err
			}
			if ds[len(ds)-1].Seq <= last {
				return all, errors.New("client: the node answered a fetch with messages already applied")
			}
			last = ds[len(ds)-1].Seq
		}
		// The node cuts answers by size too, so a short answer does not
		// mean the queue is drained: go on while the deliveries end
		// below the last sequence number it assigned. An empty answer
		// ends the loop whatever Last says (acknowledged or dropped
		// messages leave gaps).
		if len(ds) == 0 || (len(ds) < fetchLimit && last >= r.Last) {
			if overflowed {
				return all, c.recoverOverflow(ctx, last)
			}
			// Leaves: propose ours in a new epoch, commit others'.
			return all, c.resolveLeaves(ctx)
		}
	}
}

// recoverOverflow acknowledges everything applied up to last and clears
// the node's overflow mark, once the queue is drained, so that the node
// queues messages for this device again (a re-add's Welcome first).
func (c *Client) recoverOverflow(ctx context.Context, last uint64) error {
	c.unacked = max(c.unacked, last)
	if err := c.Flush(ctx); err != nil {
		return err
	}
	if err := c.cfg.Session.ClearOverflow(ctx); err != nil {
		return fmt.Errorf("client: clearing the overflow mark of this device's queue: %w", err)
	}
	return nil
}

// batch collects the effects of a batch of deliveries for one
// transaction.
type batch struct {
	groups  map[string]*group
	order   []*group
	events  []*Event
	usedKPs [][]byte // init keys to delete
	names   map[string][]byte
	drop    []string                          // local names to forget (placeholders of renamed groups)
	after   []func(ctx context.Context) error // work after the commit (Update after a last-resort join, KeyPackage top-up)
	seen    [][32]byte                        // hashes of applied application messages (seen.go)
}

func (b *batch) touch(g *group) {
	if _, ok := b.groups[string(g.rec.ID)]; !ok {
		b.groups[string(g.rec.ID)] = g
		b.order = append(b.order, g)
	}
}

// applyBatch applies deliveries after seq last, persists the result with
// the new last sequence in one transaction, then acks.
func (c *Client) applyBatch(ctx context.Context, last uint64, ds []Delivery) ([]*Event, error) {
	b := &batch{groups: map[string]*group{}, names: map[string][]byte{}}
	top := last
	var stop error // a transient failure: keep what is applied, stop before it
	var lost lostNote
	for _, d := range ds {
		if d.Seq <= top {
			continue // already applied (never happens with a correct node)
		}
		if d.Kind == deliveryLost {
			c.noteLost(b, &lost, d.Seq)
			top = d.Seq
			continue
		}
		if err := c.apply(ctx, b, d); errors.Is(err, errDuplicate) {
			// A resent copy of a message applied before (seen.go).
		} else if err != nil {
			var te *transientError
			if ctx.Err() != nil || errors.As(err, &te) {
				stop = err
				if ctx.Err() != nil {
					stop = ctx.Err()
				}
				break
			}
			b.events = append(b.events, &Event{Kind: EventRefused, Group: d.Group, DeviceID: devID(d.Sender),
				Time: c.now().Unix(), Text: err.Error()})
		}
		top = d.Seq
	}
	err := c.persist(b.order, b.events, func(tx *store.Tx) error {
		if err := putSeen(tx, b); err != nil {
			return err
		}
		for _, ref := range b.usedKPs {
			if err := tx.Bucket(bKPs).Delete(ref); err != nil {
				return err
			}
		}
		for _, name := range b.drop {
			if err := tx.Bucket(bNames).Delete(tx.Ident("name", []byte(name))); err != nil {
				return err
			}
		}
		for name, id := range b.names {
			if err := putGroupName(tx, name, id); err != nil {
				return err
			}
		}
		return tx.Bucket(bProfile).Put(kLastSeq, store.SeqKey(top))
	})
	if err != nil {
		return nil, err
	}
	if stop != nil {
		c.unacked = top
		return b.events, stop
	}
	// The node may now delete what is applied. Small batches are
	// acknowledged together later (Flush), saving the node a write per
	// message; the stored last sequence keeps anything from being
	// applied twice meanwhile.
	c.unacked = top
	if len(ds) >= ackBatch {
		c.Flush(ctx)
	}
	for _, f := range b.after {
		if err := f(ctx); err != nil {
			return b.events, err
		}
	}
	return b.events, nil
}

// apply applies one delivery to the batch. An error refuses the delivery
// (it is reported in the history and skipped); the group is left as it
// was.
func (c *Client) apply(ctx context.Context, b *batch, d Delivery) error {
	switch d.Kind {
	case DeliveryWelcome:
		return c.applyWelcome(ctx, b, d)
	case DeliveryCommit, DeliveryApplication:
		return c.applyMessage(ctx, b, d)
	}
	return fmt.Errorf("client: delivery of unknown kind %d", d.Kind)
}

// groupFor returns the group of a delivery, from the batch or the state.
func (c *Client) groupFor(ctx context.Context, b *batch, id []byte) (*group, error) {
	if g, ok := b.groups[string(id)]; ok {
		return g, nil
	}
	return c.loadGroup(ctx, id)
}

func (c *Client) applyWelcome(ctx context.Context, b *batch, d Delivery) error {
	if !containsKey(d.Added, c.devKey) {
		return errors.New("client: refused a Welcome whose stamp does not add this device")
	}
	rec, ref, err := c.welcomeKeyPackage(d.Data)
	if err != nil {
		return err
	}
	kp, err := mls.UnmarshalKeyPackagePrivate(rec.Private)
	if err != nil {
		return err
	}
	tree, err := c.welcomeTree(ctx, d.Data, kp)
	if err != nil {
		return err
	}
	g, err := mls.JoinFromWelcome(c.mlsConfig(ctx), d.Data, kp, tree, c.now())
	if err != nil {
		return fmt.Errorf("client: refused a Welcome: %w", err)
	}
	if !bytes.Equal(g.GroupID(), d.Group) {
		return errors.New("client: refused a Welcome for another group than its stamp names")
	}
	// The stamped sender must be a member of the group the Welcome
	// describes (the committer signed its GroupInfo).
	var inviter string
	for _, m := range g.Members() {
		if bytes.Equal(m.SignatureKey, d.Sender) {
			inviter = memberUser(m)
		}
	}
	if inviter == "" {
		return errors.New("client: refused a Welcome whose stamped sender is not in the group")
	}
	name := fmt.Sprintf("%x", d.Group[:4])
	gr := &group{rec: &groupRecord{ID: g.GroupID(), Name: name, Inviter: inviter}, g: g}
	if old, err := c.groupFor(ctx, b, d.Group); err == nil {
		// Re-added to a group we were in: keep its name.
		gr.rec.Name, gr.rec.NameSent, gr.rec.Peer = old.rec.Name, true, old.rec.Peer
	} else {
		b.names[name] = gr.rec.ID
	}
	c.groups[string(gr.rec.ID)] = gr
	b.groups[string(gr.rec.ID)] = gr
	b.order = append(b.order, gr)
	b.events = append(b.events, &Event{Kind: EventJoined, Group: gr.rec.ID, Sender: inviter, DeviceID: devID(d.Sender),
		Time: c.now().Unix(), Epoch: g.Epoch(), Text: "invited by " + inviter})
	if rec.LastResort {
		// RFC 9420, Section 16.8: a last-resort package may be used again,
		// so keep its keys; refresh our leaf with an Update, and upload a
		// new last resort.
		rec.LastResort = false
		priv := rec.marshal()
		id := gr.rec.ID
		b.after = append(b.after, func(ctx context.Context) error {
			if err := c.st.db.Update(func(tx *store.Tx) error { return tx.Bucket(bKPs).Put(ref, priv) }); err != nil {
				return err
			}
			if _, err := c.commit(ctx, id, func(g *group) (*mls.CommitOutput, [][]byte, [][]byte, error) {
				out, err := g.g.Update(c.cfg.Rand, c.now())
				return out, nil, nil, err
			}); err != nil {
				return err
			}
			_, err := c.ReplenishKeyPackages(ctx, []uint16{rec.Suite})
			return err
		})
	} else {
		b.usedKPs = append(b.usedKPs, ref)
		suite := rec.Suite
		b.after = append(b.after, func(ctx context.Context) error {
			_, err := c.ReplenishKeyPackages(ctx, []uint16{suite})
			return err
		})
	}
	return nil
}

func containsKey(list [][]byte, k []byte) bool {
	for _, x := range list {
		if bytes.Equal(x, k) {
			return true
		}
	}
	return false
}

func sameKeySet(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	x := append([][]byte(nil), a...)
	y := append([][]byte(nil), b...)
	sort.Slice(x, func(i, j int) bool { return bytes.Compare(x[i], x[j]) < 0 })
	sort.Slice(y, func(i, j int) bool { return bytes.Compare(y[i], y[j]) < 0 })
	for i := range x {
		if !bytes.Equal(x[i], y[i]) {
			return false
		}
	}
	return true
}

func memberKeys(ms []mls.Member) [][]byte {
	var out [][]byte
	for _, m := range ms {
		out = append(out, m.SignatureKey)
	}
	return out
}

func (c *Client) applyMessage(ctx context.Context, b *batch, d Delivery) error {
	g, err := c.groupFor(ctx, b, d.Group)
	if err != nil {
		return err
	}
	if g.g == nil {
		return fmt.Errorf("client: message for %s, which this device was removed from", g.rec.Name)
	}
	var snapshot []byte
	var before []mls.Member
	if d.Kind == DeliveryCommit {
		// A commit that MLS accepts may still disagree with its stamp;
		// keep the state to go back to.
		if g.g.PendingCommit() != nil {
			// Another member's commit won the epoch: ours is stale.
			g.g.DiscardPending()
			g.rec.Pending = nil
		}
		if snapshot, err = g.g.Marshal(); err != nil {
			return err
		}
		before = g.g.Members()
	}
	ev, err := g.g.ProcessMessage(d.Data, c.now())
	if err != nil && errors.Is(err, mls.ErrReplay) && d.Kind == DeliveryApplication && c.seenBefore(b, d.Data) {
		return errDuplicate
	}
	if err != nil && errors.Is(err, mls.ErrWrongEpoch) && d.Kind == DeliveryApplication && staleProposal(d.Data, g.g.Epoch()) {
		// A proposal of an epoch a commit has ended: void (RFC 9420,
		// Section 12.1); a leaver proposes again (leave.go).
		return errDuplicate
	}
	if err != nil {
		return fmt.Errorf("client: refused a message for %s: %w", g.rec.Name, err)
	}
	restore := func(reason error) error {
		if snapshot != nil {
			if ng, err := mls.UnmarshalGroup(c.mlsConfig(ctx), snapshot); err == nil {
				g.g = ng
			}
		}
		return fmt.Errorf("client: refused a message for %s: %w", g.rec.Name, reason)
	}
	// The stamp's sender must be the MLS sender.
	cred := ev.SenderCredential
	if cred.Type == 0 {
		// A commit that removed us names its sender only by leaf.
		for _, m := range before {
			if m.Leaf == ev.Sender {
				cred = m.Credential
			}
		}
	}
	sid, err := identityOf(cred)
	if err != nil {
		return restore(err)
	}
	if sid.DeviceID != [32]byte(devID(d.Sender)) {
		return restore(fmt.Errorf("the node's sender stamp disagrees with the MLS sender %s", sid.User))
	}
	b.touch(g)
	switch ev.Kind {
	case mls.EventApplication:
		b.seen = append(b.seen, sha256.Sum256(d.Data))
		p, err := parsePayload(ev.Data)
		if err != nil {
			return fmt.Errorf("client: undecodable message in %s from %s", g.rec.Name, sid.User)
		}
		switch p.Kind {
		case payloadText:
			b.events = append(b.events, &Event{Kind: EventMessage, Group: g.rec.ID, Sender: sid.User, DeviceID: sid.DeviceID[:],
				Time: c.now().Unix(), Epoch: ev.Epoch, Text: p.Text})
		case payloadMeta:
			c.applyMeta(b, g, sid.User, p)
		case payloadApproval:
			c.applyApproval(b, sid.User, d.Sender, p)
		case payloadFile:
			ref, err := ParseFileRef([]byte(p.Text))
			if err != nil {
				return fmt.Errorf("client: undecodable file reference in %s from %s", g.rec.Name, sid.User)
			}
			b.events = append(b.events, &Event{Kind: EventFile, Group: g.rec.ID, Sender: sid.User, DeviceID: sid.DeviceID[:],
				Time: c.now().Unix(), Epoch: ev.Epoch, Text: SafeFileName(ref.Name), File: ref.marshal()})
		}
	case mls.EventProposal:
		// Held by the group for the next commit; a self-removal is
		// committed at the end of the sync (leave.go).
		if m, ok := g.g.Member(ev.Sender); ok {
			c.noteProposal(g, m, ev.Proposal)
		}
	case mls.EventNewEpoch:
		if !sameKeySet(memberKeys(ev.Added), d.Added) || !sameKeySet(memberKeys(ev.Removed), d.Removed) {
			return restore(errors.New("the node's stamp declares other added or removed devices than the commit"))
		}
		// An Update, or the committer's new leaf, may not change who a
		// leaf is (RFC 9420, Section 7.9 leaves this to the application).
		updated := ev.Updated
		if !ev.SelfRemoved {
			if m, ok := g.g.Member(ev.Sender); ok {
				updated = append(updated[:len(updated):len(updated)], m)
			}
		}
		for _, u := range updated {
			for _, m := range before {
				if m.Leaf != u.Leaf {
					continue
				}
				a, err1 := identityOf(m.Credential)
				n, err2 := identityOf(u.Credential)
				if err1 != nil || err2 != nil || a.User != n.User || a.DeviceID != n.DeviceID {
					return restore(errors.New("an update changes the identity of a member"))
				}
			}
		}
		if !ev.SelfRemoved {
			// A removed member hears it once, below, not also as a
			// change of members.
			b.events = append(b.events, c.commitEvents(g, ev, sid.User, d.Sender, false)...)
			g.rec.Leavers = nil // proposals count only in their epoch
		}
		if ev.SelfRemoved && g.rec.Leaving {
			// The removal this device asked for (leave.go): its group
			// state is deleted now.
			g.g = nil
			g.rec.Removed, g.rec.Left, g.rec.Leaving, g.rec.LeaveAll, g.rec.Leavers = true, true, false, false, nil
			b.events = append(b.events, &Event{Kind: EventLeft, Group: g.rec.ID, Sender: c.prof.User, DeviceID: devID(c.devKey),
				Time: c.now().Unix(), Epoch: ev.Epoch, Users: []string{c.prof.User}, Text: "you left"})
		} else if ev.SelfRemoved {
			g.g = nil
			g.rec.Removed = true
			b.events = append(b.events, &Event{Kind: EventRemoved, Group: g.rec.ID, Sender: sid.User, DeviceID: sid.DeviceID[:],
				Time: c.now().Unix(), Epoch: ev.Epoch, Text: "removed by " + sid.User})
		}
	}
	return nil
}

// applyMeta names a group we were invited to, the first time its name
// arrives.
func (c *Client) applyMeta(b *batch, g *group, sender string, p *payload) {
	if g.rec.NameSent || g.rec.Inviter == "" {
		return // our own group, or named already
	}
	want := p.Name
	if p.DM {
		g.rec.Peer = sender
		want = "dm:" + sender
	}
	if CheckGroupName(want) != nil {
		return // an empty or disguising name: keep the placeholder
	}
	_ = c.st.db.View(func(tx *store.Tx) error {
		n := uniqueName(tx, want)
		for taken := b.names[n] != nil; taken; taken = b.names[n] != nil {
			n += "'"
		}
		delete(b.names, g.rec.Name)
		b.drop = append(b.drop, g.rec.Name)
		g.rec.Name = n
		return nil
	})
	b.names[g.rec.Name] = g.rec.ID
	g.rec.NameSent = true
}

// staleProposal says whether msg is a proposal of an epoch before epoch.
func staleProposal(msg []byte, epoch uint64) bool {
	m, err := mls.UnmarshalMLSMessage(msg)
	if err != nil {
		return false
	}
	switch {
	case m.PrivateMessage != nil:
		return m.PrivateMessage.ContentType == mls.ContentTypeProposal && m.PrivateMessage.Epoch < epoch
	case m.PublicMessage != nil:
		return m.PublicMessage.Content.ContentType == mls.ContentTypeProposal && m.PublicMessage.Content.Epoch < epoch
	}
	return false
}
