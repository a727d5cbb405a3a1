package client

// Changing the password and deleting the account (docs/PROTOCOL.md,
// "Changing the password"). The user key is derived from OPAQUE's
// export_key, so a new password is a new user key: the client registers a
// new OPAQUE record (RFC 9807, Section 5), re-certifies every device of
// the user under the new key and publishes a key transition signed by the
// old key. Contacts who pinned the old key follow such transitions, and
// nothing else, to the new key.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"

	"qpchat/node/proto"
	"qpchat/node/store"
	"qpchat/opaque"
)

// AccountSession is the part of a login Session that changes or deletes
// the account; the rpc adapter implements it.
type AccountSession interface {
	ChangePasswordStart(ctx context.Context, request []byte) (response, ksf []byte, err error)
	ChangePassword(ctx context.Context, record, userKey, transition []byte, certificates [][]byte) error
	DeleteAccount(ctx context.Context) error
}

// TransitionSession is the part of a Session that serves key transitions;
// the rpc adapter implements it.
type TransitionSession interface {
	KeyTransitions(ctx context.Context, user string) ([][]byte, error)
}

var errNoAccountOps = errors.New("client: this node connection cannot change accounts")

// ErrChangeUnconfirmed is returned by ChangePassword when the node's
// answer to the change itself was lost (the connection failed, no
// refusal): the node may or may not have taken the new password. The
// next device session finds out (SyncOwnKey follows a change that
// happened); logging in with the new password tells too.
var ErrChangeUnconfirmed = errors.New("client: the node's answer to the password change was lost: the new password may or may not be in force (the next command on this profile follows the change if it happened; otherwise the old password still logs in)")

// ChangePassword logs in with the old password, registers a new OPAQUE
// record made with the new one, and moves the account to the user key
// the new export_key derives: every non-revoked device is re-certified
// under it, and the old key signs the transition. The node applies all
// of it in one transaction, so a crash leaves either the old account or
// the new one. It returns the old and the new user key.
func ChangePassword(ctx context.Context, e Entry, user string, oldPassword, newPassword []byte, opts AccountOptions) (oldKey, newKey ed25519.PrivateKey, err error) {
	opts.fill()
	oldKey, ls, err := Login(ctx, e, user, oldPassword, opts)
	if err != nil {
		return nil, nil, err
	}
	as, ok := ls.(AccountSession)
	if !ok {
		return nil, nil, errNoAccountOps
	}
	cfg := opaque.QPChat()
	cr, req, err := cfg.NewClientRegistration(opts.Rand, newPassword)
	if err != nil {
		return nil, nil, err
	}
	respB, ksfB, err := as.ChangePasswordStart(ctx, req.Marshal())
	if err != nil {
		return nil, nil, fmt.Errorf("client: changing the password: %w", err)
	}
	ksf, err := parseKSF(ksfB, opts.Bounds)
	if err != nil {
		return nil, nil, err
	}
	resp, err := cfg.ParseRegistrationResponse(respB)
	if err != nil {
		return nil, nil, fmt.Errorf("client: changing the password: %w", err)
	}
	record, exportKey, err := cr.Finish(opts.Rand, resp, ksf, opaque.Identities{})
	if err != nil {
		return nil, nil, fmt.Errorf("client: changing the password: %w", err)
	}
	newKey, err = proto.UserKey(exportKey)
	clear(exportKey)
	if err != nil {
		return nil, nil, err
	}
	newPub := newKey.Public().(ed25519.PublicKey)
	devices, err := ls.ListDevices(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("client: listing devices: %w", err)
	}
	var certs [][]byte
	for _, d := range devices {
		if !d.Revoked {
			certs = append(certs, append(bytes.Clone(d.Key), proto.SignDeviceCert(newKey, user, d.Key)...))
		}
	}
	// The statement numbers this change after the account's last one.
	var seq uint64 = 1
	if ts, ok := ls.(TransitionSession); ok {
		raw, err := ts.KeyTransitions(ctx, user)
		if err != nil {
			return nil, nil, fmt.Errorf("client: fetching the key transitions of %s: %w", user, err)
		}
		seq = proto.LastSeq(raw) + 1
	}
	tr := proto.SignTransition(oldKey, newKey, user, seq)
	if err := as.ChangePassword(ctx, record.Marshal(), newPub, tr.Marshal(), certs); err != nil {
		if proto.CodeOf(err) == "" { // no refusal: a lost answer, a timeout
			return nil, nil, fmt.Errorf("%w (%w)", ErrChangeUnconfirmed, err)
		}
		return nil, nil, fmt.Errorf("client: changing the password: %w", err)
	}
	return oldKey, newKey, nil
}

// DeleteAccount logs in with the password and deletes the account at the
// node: every device is revoked and the name is freed. Leaving the groups
// first is the caller's part (Client.LeaveAll).
func DeleteAccount(ctx context.Context, e Entry, user string, password []byte, opts AccountOptions) error {
	_, ls, err := Login(ctx, e, user, password, opts)
	if err != nil {
		return err
	}
	as, ok := ls.(AccountSession)
	if !ok {
		return errNoAccountOps
	}
	if err := as.DeleteAccount(ctx); err != nil {
		return fmt.Errorf("client: deleting the account: %w", err)
	}
	return nil
}

// followTransitions asks the node for user's key transitions and returns
// the chain of keys from pinned to cur if every step verifies (nil if
// there is no such chain: a changed key that must be verified by hand).
func (c *Client) followTransitions(ctx context.Context, user string, pinned, cur []byte) ([][]byte, error) {
	ts, ok := c.cfg.Session.(TransitionSession)
	if !ok {
		return nil, nil
	}
	raw, err := ts.KeyTransitions(ctx, user)
	if err != nil {
		return nil, &transientError{fmt.Errorf("client: fetching the key transitions of %s: %w", user, err)}
	}
	if len(raw) > proto.MaxTransitions {
		return nil, fmt.Errorf("client: the node sent %d key transitions for %s", len(raw), user)
	}
	return proto.FollowTransitions(user, pinned, cur, parseTransitions(raw)), nil
}

// parseTransitions parses the statements a node sent, leaving out those
// that do not parse (of a format this client does not know: they form no
// chain).
func parseTransitions(raw [][]byte) []*proto.Transition {
	var out []*proto.Transition
	for _, b := range raw {
		if t, err := proto.ParseTransition(b); err == nil {
			out = append(out, t)
		}
	}
	return out
}

// followPeer moves the pin of user from p.Key to cur when a chain of
// verified transitions leads there; it reports whether it did. The old
// keys are kept as retired, for certificates made under them.
func (c *Client) followPeer(ctx context.Context, user string, cur []byte) (bool, error) {
	p, err := c.st.peer(user)
	if err != nil || p == nil {
		return false, err
	}
	chain, err := c.followTransitions(ctx, user, p.Key, cur)
	if err != nil || chain == nil {
		return false, err
	}
	err = c.st.db.Update(func(tx *store.Tx) error {
		q, err := getPeer(tx, user)
		if err != nil || q == nil || !bytes.Equal(q.Key, p.Key) {
			return err // moved meanwhile: leave it
		}
		q.Retired = appendRetired(q.Retired, chain[:len(chain)-1])
		q.Key, q.Changed = bytes.Clone(cur), nil
		return putPeer(tx, q)
	})
	return err == nil, err
}

// appendRetired adds keys to a retired list, keeping the newest
// proto.MaxTransitions.
func appendRetired(list, keys [][]byte) [][]byte {
	for _, k := range keys {
		list = append(list, bytes.Clone(k))
	}
	if len(list) > proto.MaxTransitions {
		list = list[len(list)-proto.MaxTransitions:]
	}
	return list
}

// retiredKeys returns the retired keys of user (see peerRecord.Retired).
func (c *Client) retiredKeys(user string) [][]byte {
	p, err := c.st.peer(user)
	if err != nil || p == nil {
		return nil
	}
	return p.Retired
}

// SyncOwnKey follows a password change made on another device (or one
// this device made but did not record, having crashed): when the node
// publishes another key for this user, and a chain of transitions signed
// by the key this profile holds leads to it, the profile takes the new
// key and this device's new certificate. It reports whether it changed
// anything. A key without such a chain is left alone (FetchKey reports
// it as CHANGED).
func (c *Client) SyncOwnKey(ctx context.Context) (bool, error) {
	if err := c.needDevice(); err != nil || c.prof.UserKey == nil {
		return false, err
	}
	cur, err := c.fetchUserKey(ctx, c.prof.User)
	if err != nil || bytes.Equal(cur, c.prof.UserKey) {
		return false, err
	}
	chain, err := c.followTransitions(ctx, c.prof.User, c.prof.UserKey, cur)
	if err != nil || chain == nil {
		return false, err
	}
	ds, err := c.cfg.Session.Devices(ctx)
	if err != nil {
		return false, err
	}
	var cert []byte
	for _, d := range ds {
		if bytes.Equal(d.Key, c.devKey) && proto.VerifyDeviceCert(cur, c.prof.User, d.Key, d.Certificate) {
			cert = d.Certificate
		}
	}
	if cert == nil {
		return false, errors.New("client: the node holds no certificate of this device under the new user key")
	}
	return true, c.AdoptUserKey(chain[:len(chain)-1], cur, cert)
}

// AdoptUserKey records a password change in this profile: the new user
// key and this device's certificate under it, and the keys it replaced
// as retired (certificates of this user's devices made under them are
// still accepted).
func (c *Client) AdoptUserKey(retired [][]byte, key, cert []byte) error {
	if err := c.st.db.Update(func(tx *store.Tx) error {
		p, err := getPeer(tx, c.prof.User)
		if err != nil {
			return err
		}
		if p == nil {
			p = &peerRecord{User: c.prof.User}
		}
		p.Key, p.Changed = bytes.Clone(key), nil
		p.Retired = appendRetired(p.Retired, retired)
		return putPeer(tx, p)
	}); err != nil {
		return err
	}
	prof := *c.prof
	prof.UserKey, prof.Cert = bytes.Clone(key), bytes.Clone(cert)
	if err := c.st.SaveProfile(&prof); err != nil {
		return err
	}
	c.prof.UserKey, c.prof.Cert = prof.UserKey, prof.Cert
	return nil
}

// learnRetired records as retired the keys from which a chain of verified
// transitions (each signed by both keys) leads to key, the pinned key of user (a contact pinned on
// first contact after a password change meets devices certified before
// it). It reports whether it found any key not yet retired.
func (c *Client) learnRetired(ctx context.Context, user string, key []byte) (bool, error) {
	ts, ok := c.cfg.Session.(TransitionSession)
	if !ok {
		return false, nil
	}
	raw, err := ts.KeyTransitions(ctx, user)
	if err != nil {
		return false, &transientError{fmt.Errorf("client: fetching the key transitions of %s: %w", user, err)}
	}
	if len(raw) > proto.MaxTransitions {
		return false, fmt.Errorf("client: the node sent %d key transitions for %s", len(raw), user)
	}
	// Only key itself can name its predecessor (both keys sign each
	// statement), so a key the node made up never becomes retired.
	earlier := proto.Predecessors(user, key, parseTransitions(raw)) // newest first
	known := c.retiredKeys(user)
	var fresh [][]byte
	for i := len(earlier) - 1; i >= 0; i-- {
		if !slices.ContainsFunc(known, func(r []byte) bool { return bytes.Equal(r, earlier[i]) }) {
			fresh = append(fresh, earlier[i])
		}
	}
	if len(fresh) == 0 {
		return false, nil
	}
	err = c.st.db.Update(func(tx *store.Tx) error {
		p, err := getPeer(tx, user)
		if err != nil {
			return err
		}
		if p == nil {
			p = &peerRecord{User: user, Key: bytes.Clone(key)}
		}
		p.Retired = appendRetired(p.Retired, fresh)
		return putPeer(tx, p)
	})
	return err == nil, err
}
