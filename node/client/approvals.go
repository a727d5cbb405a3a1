package client

// Device approval. The user key is derived from OPAQUE's export key, so
// whoever learns the password can certify a device of the user. A
// certified device therefore joins no group by itself: one of the user's
// devices must approve it (`approve-device FINGERPRINT`), which adds it to
// every group that device is in, and tells the group with an approval
// record:
//
//	approval  = approved ‖ approver ‖ signature
//	signature = SignWithLabel(approver's device key, "qpchat DeviceApproval v1",
//	                          user ‖ approved ‖ approver)
//
// (RFC 9420, Section 5.1.2, SignWithLabel; the exact encoding is
// proto.Approval's). The approving device also publishes its record to
// the node, which hands it to other users inviting this one, so that
// they add only approved devices (devicetrust.go). Each device keeps the
// devices it approved, and those approved by a device it trusts, in its state
// (bucket "approved"). A device honours a record sent by a device of its
// own user that it trusts: it approves the device too, signing its own
// record, and adds it to its groups where it is missing (so a group the
// approver is not in gets the device as well). Trust thus flows only
// from the user's own decisions: a device trusts itself, the devices
// approved on it, and whatever those approve. A device certified with the
// password alone is approved by no one and added nowhere, and its own
// approvals are ignored. Invite of one's own user adds only approved
// devices too.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"qpchat/mls"
	"qpchat/node/proto"
	"qpchat/node/store"
)

// approvalRecord is one device's approval of another of the same user,
// in the format of node/proto (proto.Approval), which the node parses too.
type approvalRecord proto.Approval

func (a *approvalRecord) marshal() []byte { return (*proto.Approval)(a).Marshal() }

func parseApproval(b []byte) (*approvalRecord, error) {
	p, err := proto.ParseApproval(b)
	if err != nil {
		return nil, err
	}
	return (*approvalRecord)(p), nil
}

// verify checks the record's signature for user.
func (a *approvalRecord) verify(user string) bool { return (*proto.Approval)(a).Verify(user) }

// signApproval makes this device's approval of device.
func (c *Client) signApproval(device []byte) *approvalRecord {
	return (*approvalRecord)(proto.SignApproval(c.prof.Device, c.prof.User, device))
}

// isApproved says whether this device trusts an own device: itself, or
// one approved here.
func (c *Client) isApproved(device []byte) bool {
	if bytes.Equal(device, c.devKey) {
		return true
	}
	found := false
	_ = c.st.db.View(func(tx *store.Tx) error {
		_, err := tx.Bucket(bApproved).Get(tx.Ident("device", device))
		found = err == nil
		return nil
	})
	return found
}

// storedApproval is an approval as the state keeps it, with whether the
// device was added to this device's groups yet.
type storedApproval struct {
	Rec     *approvalRecord
	Adopted bool
}

func (s *storedApproval) marshal() []byte {
	return newRec().bytes(s.Rec.marshal()).boolean(s.Adopted).done()
}

func parseStoredApproval(b []byte) (*storedApproval, error) {
	r := readRec(b)
	raw, adopted := r.bytes(), r.boolean()
	if err := r.end(); err != nil {
		return nil, err
	}
	a, err := parseApproval(raw)
	if err != nil {
		return nil, err
	}
	return &storedApproval{Rec: a, Adopted: adopted}, nil
}

func (c *Client) putApproval(a *approvalRecord, adopted bool) error {
	return c.st.db.Update(func(tx *store.Tx) error {
		return tx.Bucket(bApproved).Put(tx.Ident("device", a.Device), (&storedApproval{Rec: a, Adopted: adopted}).marshal())
	})
}

// resolveAdoptions adds every approved device that is not yet in this
// device's groups: after an approval that a lost connection interrupted,
// the next sync finishes it. A failure other than a lost connection is
// reported in the history once and not retried (approve-device retries).
func (c *Client) resolveAdoptions(ctx context.Context) error {
	if c.adopting {
		return nil // adoptDevice's commits sync too
	}
	c.adopting = true
	defer func() { c.adopting = false }()
	var todo []*approvalRecord
	err := c.st.db.View(func(tx *store.Tx) error {
		cur := tx.Bucket(bApproved).Cursor()
		for k, v, err := cur.First(); k != nil; k, v, err = cur.Next() {
			if err != nil {
				return err
			}
			s, err := parseStoredApproval(v)
			if err != nil {
				return err
			}
			if !s.Adopted {
				todo = append(todo, s.Rec)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, a := range todo {
		if bytes.Equal(a.Approver, c.devKey) {
			if err := c.publishApproval(ctx, a); err != nil {
				if retryable(ctx, err) {
					return err
				}
				if err := c.persist(nil, []*Event{{Kind: EventRefused, Time: c.now().Unix(), Text: err.Error()}}, nil); err != nil {
					return err
				}
			}
		}
		if _, err := c.adoptDevice(ctx, a); err != nil {
			var te *transientError
			var ce *connError
			if errors.As(err, &te) || errors.As(err, &ce) || ctx.Err() != nil {
				return err
			}
			if err := c.persist(nil, []*Event{{Kind: EventRefused, Time: c.now().Unix(),
				Text: fmt.Sprintf("could not add the approved device %s to every group: %v", Fingerprint(a.Device), err)}}, nil); err != nil {
				return err
			}
		}
		if err := c.putApproval(a, true); err != nil {
			return err
		}
	}
	return nil
}

// Errors of ApproveDevice.
var (
	// ErrNoSuchDevice: no certified, unrevoked device of this user has
	// that key.
	ErrNoSuchDevice = errors.New("client: no such device of this user")
)

// ApproveDevice approves a device of this user: it records the approval,
// adds the device to every group this device is in where it is missing,
// and sends the approval record to those groups so that the user's other
// devices that trust this one add it where this one is not a member. It
// returns the names of the groups the device was added to.
func (c *Client) ApproveDevice(ctx context.Context, device []byte) ([]string, error) {
	if err := c.needDevice(); err != nil {
		return nil, err
	}
	if bytes.Equal(device, c.devKey) {
		return nil, errors.New("client: this is the current device")
	}
	devs, err := c.Devices(ctx)
	if err != nil {
		return nil, err
	}
	ok := false
	for _, d := range devs {
		if bytes.Equal(d.Key, device) {
			if d.Revoked {
				return nil, fmt.Errorf("client: device %s is revoked", Fingerprint(device))
			}
			if !d.Certified {
				return nil, fmt.Errorf("client: device %s is not certified by your user key", Fingerprint(device))
			}
			ok = true
		}
	}
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNoSuchDevice, Fingerprint(device))
	}
	a := c.signApproval(device)
	if err := c.forgetLeft(device); err != nil { // approved again: it may rejoin groups it left
		return nil, err
	}
	if err := c.putApproval(a, false); err != nil {
		return nil, err
	}
	pubErr := c.publishApproval(ctx, a)
	if retryable(ctx, pubErr) {
		return nil, pubErr // the next sync goes on (resolveAdoptions)
	}
	c.adopting = true // no sync in between adopts it behind our back
	added, err := c.adoptDevice(ctx, a)
	c.adopting = false
	if retryable(ctx, err) {
		return added, err // the next sync goes on (resolveAdoptions)
	}
	if perr := c.putApproval(a, true); perr != nil {
		return added, perr
	}
	return added, errors.Join(pubErr, err)
}

// retryable says whether err is a lost connection or a transient refusal,
// which the next sync retries.
func retryable(ctx context.Context, err error) bool {
	var te *transientError
	var ce *connError
	return err != nil && (errors.As(err, &te) || errors.As(err, &ce) || ctx.Err() != nil)
}

// publishApproval stores an approval of this device's at the node, where
// inviters of this user find it (devicetrust.go). Publishing the same
// record again is harmless, so an interrupted approval publishes again
// on the next sync.
func (c *Client) publishApproval(ctx context.Context, a *approvalRecord) error {
	if err := c.cfg.Session.PublishApproval(ctx, a.marshal()); err != nil {
		return fmt.Errorf("client: publishing the approval of %s to the node (other users' invitations add the device only once it is published): %w", Fingerprint(a.Device), err)
	}
	return nil
}

// adoptDevice adds an approved device of this user to every group this
// device is in where it is missing, and sends our approval record to
// every group with another device of the user in it.
func (c *Client) adoptDevice(ctx context.Context, a *approvalRecord) ([]string, error) {
	groups, err := c.Groups(ctx)
	if err != nil {
		return nil, err
	}
	var added []string
	var errs []error
	for _, gi := range groups {
		if gi.Removed {
			continue
		}
		g, err := c.loadGroup(ctx, gi.ID)
		if err != nil || g.g == nil {
			continue
		}
		if containsKey(g.rec.LeftDevices, a.Device) {
			continue // it left this group: only a new approval adds it (leave.go)
		}
		if !memberWithKey(g.g, a.Device) {
			if err := c.addOwnDevice(ctx, g, a.Device); err != nil {
				if errors.Is(err, errNothingToDo) {
					continue
				}
				var te *transientError
				var ce *connError
				if errors.As(err, &te) || errors.As(err, &ce) || ctx.Err() != nil {
					return added, err
				}
				errs = append(errs, fmt.Errorf("%s: %w", gi.Name, err))
				continue
			}
			added = append(added, gi.Name)
		} else if err := c.sendPayload(ctx, g, &payload{Kind: payloadMeta, Name: g.rec.Name, DM: g.rec.Peer != ""}); err != nil {
			// Already a member, maybe through a commit of ours that a
			// lost connection left pending: the name may not have
			// reached it (a device that knows it ignores this).
			errs = append(errs, fmt.Errorf("%s: %w", gi.Name, err))
		}
		if g, err = c.loadGroup(ctx, gi.ID); err != nil || g.g == nil {
			continue
		}
		if otherOwnDevice(g.g, c.prof.User, c.devKey, a.Device) {
			if err := c.sendPayload(ctx, g, &payload{Kind: payloadApproval, Text: string(a.marshal())}); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", gi.Name, err))
			}
		}
	}
	return added, errors.Join(errs...)
}

// otherOwnDevice says whether a device of user other than the two given
// is in the group.
func otherOwnDevice(g *mls.Group, user string, self, device []byte) bool {
	for _, m := range g.Members() {
		if memberUser(m) == user && !bytes.Equal(m.SignatureKey, self) && !bytes.Equal(m.SignatureKey, device) {
			return true
		}
	}
	return false
}

// addOwnDevice commits the Add of one of this user's devices, with a
// KeyPackage the node hands out for it, and tells it the group's name.
func (c *Client) addOwnDevice(ctx context.Context, g *group, device []byte) error {
	suite := uint16(g.g.CipherSuite())
	fetched, err := c.cfg.Session.FetchKeyPackages(ctx, c.prof.User, suite)
	if err != nil {
		return fmt.Errorf("client: fetching the KeyPackage of device %s: %w", Fingerprint(device), err)
	}
	var kpData []byte
	for _, f := range fetched.Packages {
		if !bytes.Equal(f.Device, device) {
			continue
		}
		if _, err := c.checkKeyPackage(ctx, c.prof.User, suite, f); err != nil {
			return err
		}
		kpData = f.KeyPackage
	}
	if kpData == nil {
		return fmt.Errorf("client: the node has no KeyPackage of device %s for suite 0x%04x", Fingerprint(device), suite)
	}
	id := g.rec.ID
	if _, err := c.commit(ctx, id, func(g *group) (*mls.CommitOutput, [][]byte, [][]byte, error) {
		if memberWithKey(g.g, device) {
			return nil, nil, nil, errNothingToDo
		}
		out, err := g.g.Add(c.cfg.Rand, [][]byte{kpData}, c.now())
		return out, [][]byte{device}, nil, err
	}); err != nil {
		return err
	}
	g, err = c.loadGroup(ctx, id)
	if err != nil {
		return err
	}
	return c.sendPayload(ctx, g, &payload{Kind: payloadMeta, Name: g.rec.Name, DM: g.rec.Peer != ""})
}

// applyApproval handles an approval record received in a group: from a
// device of this user that this device trusts, for a device not yet
// approved here, it approves the device too and adds it to this device's
// groups once the batch is stored. Other records change nothing.
func (c *Client) applyApproval(b *batch, sender string, senderDev []byte, p *payload) {
	if sender != c.prof.User {
		return // another user's devices are theirs to approve
	}
	a, err := parseApproval([]byte(p.Text))
	if err != nil || !bytes.Equal(a.Approver, senderDev) || !a.verify(c.prof.User) {
		return
	}
	if bytes.Equal(a.Device, c.devKey) || c.isApproved(a.Device) || !c.isApproved(a.Approver) {
		return
	}
	own := c.signApproval(a.Device)
	b.after = append(b.after, func(ctx context.Context) error {
		if c.isApproved(own.Device) {
			return nil
		}
		if err := c.putApproval(own, false); err != nil {
			return err
		}
		return c.resolveAdoptions(ctx)
	})
}

// describeMembers describes a membership change by sender for the
// history, naming each device by its fingerprint, which the device's
// owner can compare with what register-state printed: "added bob
// (device sha256:…)", or "added a device sha256:…" for a device of the
// sender's own user.
func describeMembers(sender string, added, removed []mls.Member) string {
	name := func(m mls.Member) string {
		u := memberUser(m)
		if u == sender {
			return "a device " + Fingerprint(m.SignatureKey)
		}
		return u + " (device " + Fingerprint(m.SignatureKey) + ")"
	}
	var parts []string
	if len(added) > 0 {
		var l []string
		for _, m := range added {
			l = append(l, name(m))
		}
		parts = append(parts, "added "+strings.Join(l, ", "))
	}
	if len(removed) > 0 {
		var l []string
		for _, m := range removed {
			l = append(l, name(m))
		}
		parts = append(parts, "removed "+strings.Join(l, ", "))
	}
	return strings.Join(parts, "; ")
}
