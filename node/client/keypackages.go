package client

// KeyPackage upkeep (DESIGN.md, "KeyPackages"): keep a target number of
// KeyPackages at the node for every suite a device key can sign for,
// replenish when the pool runs low, keep every unused KeyPackage's private
// keys so a Welcome can be processed after any restart, and delete an
// init key once a Welcome used it. The last-resort package's keys are
// kept while it can still be handed out.

import (
	"context"
	"errors"
	"fmt"

	"qpchat/mls"
	"qpchat/node/proto"
	"qpchat/node/store"
)

// poolTarget is the pool size kept for suite.
func (c *Client) poolTarget(suite uint16) int {
	if suite == DefaultSuite {
		return c.cfg.KeyPackageTarget
	}
	return max(2, c.cfg.KeyPackageTarget/3)
}

// hasLastResort reports whether a current last-resort package of suite
// is stored.
func (c *Client) hasLastResort(suite uint16) (bool, error) {
	found := false
	err := c.st.db.View(func(tx *store.Tx) error {
		cur := tx.Bucket(bKPs).Cursor()
		for k, v, err := cur.First(); k != nil; k, v, err = cur.Next() {
			if err != nil {
				return err
			}
			r, err := parseKP(v)
			if err != nil {
				return err
			}
			if r.Suite == suite && r.LastResort {
				found = true
				return nil
			}
		}
		return nil
	})
	return found, err
}

// ReplenishKeyPackages tops up the node's pools of the given suites (nil:
// every Ed25519 suite) and uploads a last-resort package where none is
// current. The private keys are stored before anything is uploaded. It
// returns the number of packages uploaded.
func (c *Client) ReplenishKeyPackages(ctx context.Context, suites []uint16) (int, error) {
	if err := c.needDevice(); err != nil {
		return 0, err
	}
	if suites == nil {
		suites = proto.Ed25519Suites
	}
	total := 0
	for _, suite := range suites {
		n, err := c.cfg.Session.KeyPackageCount(ctx, suite)
		if err != nil {
			return total, fmt.Errorf("client: counting KeyPackages: %w", err)
		}
		need := c.poolTarget(suite) - n
		hasLR, err := c.hasLastResort(suite)
		if err != nil {
			return total, err
		}
		if need <= 0 && hasLR {
			continue
		}
		var pool [][]byte
		var lr []byte
		var recs []*kpRecord
		var refs [][]byte
		mk := func(lastResort bool) ([]byte, error) {
			kp, err := c.newKeyPackage(suite)
			if err != nil {
				return nil, err
			}
			priv, err := kp.Marshal()
			if err != nil {
				return nil, err
			}
			ref, err := kp.Ref()
			if err != nil {
				return nil, err
			}
			recs = append(recs, &kpRecord{Suite: suite, LastResort: lastResort, Private: priv})
			refs = append(refs, ref)
			return kp.Message()
		}
		for range max(need, 0) {
			m, err := mk(false)
			if err != nil {
				return total, err
			}
			pool = append(pool, m)
		}
		if !hasLR {
			if lr, err = mk(true); err != nil {
				return total, err
			}
		}
		if err := c.st.db.Update(func(tx *store.Tx) error {
			for i, r := range recs {
				if err := tx.Bucket(bKPs).Put(refs[i], r.marshal()); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return total, err
		}
		if _, err := c.cfg.Session.UploadKeyPackages(ctx, suite, pool, lr); err != nil {
			return total, fmt.Errorf("client: uploading KeyPackages: %w", err)
		}
		total += len(recs)
	}
	return total, nil
}

// newKeyPackage makes a KeyPackage of this device for suite.
func (c *Client) newKeyPackage(suite uint16) (*mls.KeyPackagePrivate, error) {
	s, err := c.signer(suite)
	if err != nil {
		return nil, err
	}
	cred := credentialFor(c.prof.User, c.devKey, c.prof.Cert)
	return mls.NewKeyPackage(c.cfg.Rand, mls.CipherSuite(suite), cred, s, c.now(), nil)
}

// keyPackageFor finds the stored private keys of a KeyPackage by ref.
func getKP(tx *store.Tx, ref []byte) (*kpRecord, error) {
	v, err := tx.Bucket(bKPs).Get(ref)
	if err != nil {
		return nil, err
	}
	return parseKP(v)
}

// welcomeKeyPackage returns the stored KeyPackage a Welcome is addressed
// to, with its ref.
func (c *Client) welcomeKeyPackage(welcome []byte) (*kpRecord, []byte, error) {
	msg, err := mls.UnmarshalMLSMessage(welcome)
	if err != nil {
		return nil, nil, err
	}
	if msg.WireFormat != mls.WireFormatWelcome || msg.Welcome == nil {
		return nil, nil, errors.New("client: delivery is not a Welcome")
	}
	var rec *kpRecord
	var ref []byte
	err = c.st.db.View(func(tx *store.Tx) error {
		for _, s := range msg.Welcome.Secrets {
			r, err := getKP(tx, s.NewMember)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			rec, ref = r, s.NewMember
			return nil
		}
		return errors.New("client: the Welcome is for none of this device's KeyPackages")
	})
	return rec, ref, err
}
