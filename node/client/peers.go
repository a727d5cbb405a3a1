package client

// Looking up other users: their published keys, pinned on first contact,
// safety numbers and accepting a changed key.

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"qpchat/node/proto"
	"qpchat/node/store"
)

// KeyInfo is what FetchKey found out about a user.
type KeyInfo struct {
	User    string
	UserKey []byte
	// Status is "pinned now" (first contact), "pinned" (matches the pin)
	// or "CHANGED" (differs from the pin; refused until verify --accept).
	Status string
	// Followed: the pin moved to UserKey just now along key transitions
	// signed by the pinned key (the user changed their password).
	Followed bool
	Devices  [][]byte // device keys with a KeyPackage whose certificate verifies, approved (devicetrust.go)
	// Skipped are the certified devices no chain of approvals reaches.
	Skipped *SkippedDevices
}

// FetchKey fetches a user's key (pinning it on first contact) and the
// device keys of the KeyPackages the node hands out for them, keeping
// only the devices whose certificates verify under the pinned key and
// that the user approved (devicetrust.go); the others are in Skipped. The
// node offers no read-only listing of another user's devices, so this
// consumes one pool KeyPackage per device (or hands out the last resort);
// the owner's client replenishes its pool when told it runs low.
func (c *Client) FetchKey(ctx context.Context, name string) (*KeyInfo, error) {
	if err := c.needDevice(); err != nil {
		return nil, err
	}
	user, err := proto.NormalizeUser(name)
	if err != nil {
		return nil, err
	}
	cur, err := c.fetchUserKey(ctx, user)
	if err != nil {
		return nil, err
	}
	info := &KeyInfo{User: user, UserKey: cur}
	p, err := c.st.peer(user)
	if err != nil {
		return nil, err
	}
	switch {
	case user == c.prof.User:
		info.Status = "own key"
		if !bytes.Equal(cur, c.prof.UserKey) {
			info.Status = "CHANGED"
			if ok, err := c.SyncOwnKey(ctx); err != nil {
				return nil, err
			} else if ok {
				info.Status, info.Followed = "own key", true
			}
		}
	case p == nil:
		if _, err := c.pinnedKey(ctx, user); err != nil {
			return nil, err
		}
		info.Status = "pinned now"
	case bytes.Equal(p.Key, cur):
		info.Status = "pinned"
	default:
		// A password change signed by the pinned key is followed
		// (password.go); any other change is refused until verified.
		ok, err := c.followPeer(ctx, user, cur)
		if err != nil {
			return nil, err
		}
		if ok {
			info.Status, info.Followed = "pinned", true
			break
		}
		info.Status = "CHANGED"
		if err := c.noteChangedKey(user, cur); err != nil {
			return nil, err
		}
		return info, &KeyChangedError{User: user, Pinned: p.Key, Got: cur}
	}
	kps, err := c.cfg.Session.FetchKeyPackages(ctx, user, DefaultSuite)
	if err != nil {
		return nil, fmt.Errorf("client: fetching KeyPackages of %s: %w", user, err)
	}
	certified := map[string]bool{}
	for _, f := range kps.Packages {
		if _, err := c.checkKeyPackage(ctx, user, DefaultSuite, f); err != nil {
			return info, err
		}
		certified[string(f.Device)] = true
	}
	trusted := trustedDevices(user, kps.FirstDevice, kps.Approvals, certified)
	info.Skipped = &SkippedDevices{User: user, NoRoot: len(kps.FirstDevice) == 0}
	for _, f := range kps.Packages {
		if trusted[string(f.Device)] {
			info.Devices = append(info.Devices, f.Device)
		} else {
			info.Skipped.Devices = append(info.Skipped.Devices, f.Device)
		}
	}
	return info, nil
}

// Verification is a safety number and the state of a user's key.
type Verification struct {
	User         string
	Key          []byte // the pinned key
	Verified     bool
	SafetyNumber string
	// Changed is a different key the node now publishes (nil if none),
	// with the safety number it would give.
	Changed             []byte
	ChangedSafetyNumber string
}

// Verify returns the safety number between this user and another. With
// accept, it marks the user verified, replacing the pin by the key the
// node now publishes if it changed.
func (c *Client) Verify(ctx context.Context, name string, accept bool) (*Verification, error) {
	if c.prof.UserKey == nil {
		return nil, errors.New("client: this profile has no account")
	}
	user, err := proto.NormalizeUser(name)
	if err != nil {
		return nil, err
	}
	if user == c.prof.User {
		return nil, errors.New("client: verify compares your key with another user's")
	}
	if _, err := c.pinnedKey(ctx, user); err != nil {
		return nil, err
	}
	// Look for a change at the node.
	if cur, err := c.fetchUserKey(ctx, user); err == nil {
		if p, _ := c.st.peer(user); p != nil && !bytes.Equal(cur, p.Key) {
			ok, err := c.followPeer(ctx, user, cur)
			if err != nil {
				return nil, err
			}
			if !ok {
				if err := c.noteChangedKey(user, cur); err != nil {
					return nil, err
				}
			}
		}
	}
	var v *Verification
	err = c.st.db.Update(func(tx *store.Tx) error {
		p, err := getPeer(tx, user)
		if err != nil {
			return err
		}
		if p == nil {
			return fmt.Errorf("client: no key pinned for %s", user)
		}
		if accept {
			if p.Changed != nil {
				p.Key, p.Changed = p.Changed, nil
			}
			p.Verified = true
			if err := putPeer(tx, p); err != nil {
				return err
			}
		}
		v = &Verification{User: user, Key: p.Key, Verified: p.Verified, Changed: p.Changed,
			SafetyNumber: SafetyNumber(c.prof.User, c.prof.UserKey, user, p.Key)}
		if p.Changed != nil {
			v.ChangedSafetyNumber = SafetyNumber(c.prof.User, c.prof.UserKey, user, p.Changed)
		}
		return nil
	})
	return v, err
}

// Device is one of this user's devices as the node lists it.
type Device struct {
	Key       []byte
	Revoked   bool
	Certified bool // its certificate verifies under our user key
	// Approved: this device trusts it (itself, or approved here;
	// approvals.go). A certified, unrevoked device that is not approved
	// is pending: it is added to no group.
	Approved bool
}

// Devices lists this user's devices.
func (c *Client) Devices(ctx context.Context) ([]Device, error) {
	if err := c.needDevice(); err != nil {
		return nil, err
	}
	ds, err := c.cfg.Session.Devices(ctx)
	if err != nil {
		return nil, err
	}
	var out []Device
	for _, d := range ds {
		out = append(out, Device{Key: d.Key, Revoked: d.Revoked,
			Certified: proto.VerifyDeviceCert(c.prof.UserKey, c.prof.User, d.Key, d.Certificate), Approved: c.isApproved(d.Key)})
	}
	return out, nil
}
