package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"qpchat/mls"
	"qpchat/node/proto"
	"qpchat/node/store"
)

// DefaultSuite is the cipher suite of new groups: qpchat's hybrid
// X25519 + ML-KEM-768 suite.
const DefaultSuite = uint16(mls.CipherSuiteMLS128HybridX25519MLKEM768AES128GCMSHA256Ed25519)

// Config configures a Client. Zero fields take defaults.
type Config struct {
	// State is the open profile state (required).
	State *State
	// Session is the device session at the node; nil for commands that
	// only read local state.
	Session Session
	// Rand is the randomness source; nil means crypto/rand.
	Rand io.Reader
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// KeyPackageTarget is the pool size kept at the node for the default
	// suite (other Ed25519 suites keep a third of it). Zero means 10.
	KeyPackageTarget int
	// BeforeSubmit, if set, runs after a commit is prepared and
	// persisted and before it is submitted (tests force races with it).
	BeforeSubmit func()
	// TreeInlineLimit: ratchet trees of more bytes go to new members as
	// a blob, not in the Welcome (bigtree.go). Zero means 256 KiB.
	TreeInlineLimit int
	// CommitBudget bounds the estimated bytes of one invite commit and of
	// its Welcome; larger invites are split. Zero means 768 KiB.
	CommitBudget int
}

// Errors callers branch on.
var (
	// ErrUnknownGroup: no group of that name in this profile.
	ErrUnknownGroup = errors.New("client: unknown group")
	// ErrNoDevice: the profile has no registered device yet.
	ErrNoDevice = errors.New("client: this profile has no device yet (run register-state)")
	// ErrNoKeyPackages: the user has no device with a KeyPackage for the suite.
	ErrNoKeyPackages = errors.New("client: the user has no device that can be invited")
)

// KeyChangedError reports that the node publishes a different user key
// than the one pinned; it is refused until accepted with verify --accept.
type KeyChangedError struct {
	User        string
	Pinned, Got []byte
}

func (e *KeyChangedError) Error() string {
	return fmt.Sprintf("client: the user key of %s changed from %s to %s; compare safety numbers and run `verify --accept %s` if the change is genuine",
		e.User, Fingerprint(e.Pinned), Fingerprint(e.Got), e.User)
}

// transientError marks a failure that says nothing about the message
// being processed (the node could not be asked something): the sync loop
// stops before that delivery and tries it again later.
type transientError struct{ err error }

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

// Client is one device's view of its account and groups. It is not safe
// for concurrent use.
type Client struct {
	cfg     Config
	st      *State
	prof    *Profile
	devKey  []byte
	signers map[uint16]*mls.SignaturePrivateKey
	groups  map[string]*group // by string(group id), loaded on use

	unacked, acked uint64 // last sequence applied, and acknowledged
	overflowNoted  bool   // the queue overflow was reported in this run
	adopting       bool   // resolveAdoptions runs (approvals.go)
	leaving        bool   // resolveLeaves runs (leave.go)
	// leaveIDs are the groups with a leave under way (this device's or
	// another's, leave.go), found by one scan of the state per Client
	// (leaveScanned) and kept up to date after it.
	leaveIDs     map[string]bool
	leaveScanned bool
}

// group is a loaded group.
type group struct {
	rec *groupRecord
	g   *mls.Group // nil when removed
}

// New makes a Client over an open state.
func New(cfg Config) (*Client, error) {
	if cfg.State == nil {
		return nil, errors.New("client: no state")
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.KeyPackageTarget <= 0 {
		cfg.KeyPackageTarget = 10
	}
	prof, err := cfg.State.Profile()
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, st: cfg.State, prof: prof, signers: map[uint16]*mls.SignaturePrivateKey{}, groups: map[string]*group{}}
	if prof.Device != nil {
		c.devKey = prof.DeviceKey()
	}
	return c, nil
}

// Profile returns the profile the client runs as.
func (c *Client) Profile() *Profile { return c.prof }

// DeviceKey returns this device's public key (nil before register-state).
func (c *Client) DeviceKey() []byte { return bytes.Clone(c.devKey) }

func (c *Client) now() time.Time { return c.cfg.Now() }

func (c *Client) needDevice() error {
	if c.prof.Device == nil || c.prof.User == "" {
		return ErrNoDevice
	}
	if c.cfg.Session == nil {
		return errors.New("client: internal error: no session")
	}
	return nil
}

// signer returns this device's signature key for an Ed25519 suite.
func (c *Client) signer(suite uint16) (*mls.SignaturePrivateKey, error) {
	if s, ok := c.signers[suite]; ok {
		return s, nil
	}
	if !proto.SuiteAllowed(suite) {
		return nil, fmt.Errorf("client: cipher suite 0x%04x is not usable with Ed25519 device keys (use one of 0x0001, 0x0003, 0xfa01, 0xfa02)", suite)
	}
	s, err := mls.ParseSignaturePrivateKey(mls.CipherSuite(suite), c.prof.Device.Seed())
	if err != nil {
		return nil, err
	}
	c.signers[suite] = s
	return s, nil
}

// mlsConfig is the group configuration: every leaf is checked by
// validateCredential.
func (c *Client) mlsConfig(ctx context.Context) mls.Config {
	return mls.Config{ValidateCredential: func(cred mls.Credential, sigKey []byte) error {
		return c.validateCredential(ctx, cred, sigKey)
	}}
}

// validateCredential is the credential check of DESIGN.md: the device
// certificate must verify under the user's pinned user key. The first
// contact with a user pins the key the node publishes; a changed key is
// refused (KeyChangedError) until accepted.
func (c *Client) validateCredential(ctx context.Context, cred mls.Credential, sigKey []byte) error {
	id, err := identityOf(cred)
	if err != nil {
		return err
	}
	if n, err := proto.NormalizeUser(id.User); err != nil || n != id.User {
		return fmt.Errorf("client: credential user name %q is not normalised", id.User)
	}
	key, err := c.pinnedKey(ctx, id.User)
	if err != nil {
		return err
	}
	err = proto.VerifyCredential(cred.Identity, sigKey, id.User, key)
	if err == nil || c.certifiedByRetired(cred, sigKey, id.User) {
		return nil
	}
	// The certificate does not verify under the pinned key: maybe the
	// user changed their password. A change signed by the pinned key is
	// followed (password.go); any other change refuses the device.
	cur, ferr := c.fetchUserKey(ctx, id.User)
	if ferr != nil {
		return fmt.Errorf("client: device of %s is not certified by its user key: %w", id.User, err)
	}
	if bytes.Equal(cur, key) {
		// Maybe a device certified before a password change that this
		// client never saw (it pinned the newer key on first contact).
		if ok, lerr := c.learnRetired(ctx, id.User, key); lerr != nil {
			return lerr
		} else if ok && c.certifiedByRetired(cred, sigKey, id.User) {
			return nil
		}
		return fmt.Errorf("client: device of %s is not certified by its user key: %w", id.User, err)
	}
	var followed bool
	if id.User == c.prof.User {
		followed, ferr = c.SyncOwnKey(ctx)
	} else {
		followed, ferr = c.followPeer(ctx, id.User, cur)
	}
	if ferr != nil {
		return ferr
	}
	if followed {
		if proto.VerifyCredential(cred.Identity, sigKey, id.User, cur) == nil || c.certifiedByRetired(cred, sigKey, id.User) {
			return nil
		}
		return fmt.Errorf("client: device of %s is not certified by its user key: %w", id.User, err)
	}
	_ = c.noteChangedKey(id.User, cur)
	return &KeyChangedError{User: id.User, Pinned: key, Got: cur}
}

// certifiedByRetired reports whether the credential's certificate
// verifies under one of user's retired keys: keys the pin left by a
// verified key transition (a device certified before a password change
// keeps its leaf until it updates).
func (c *Client) certifiedByRetired(cred mls.Credential, sigKey []byte, user string) bool {
	for _, k := range c.retiredKeys(user) {
		if proto.VerifyCredential(cred.Identity, sigKey, user, k) == nil {
			return true
		}
	}
	return false
}

// pinnedKey returns the pinned user key of user, pinning the key the node
// publishes on first contact. Our own key is pinned at login.
func (c *Client) pinnedKey(ctx context.Context, user string) ([]byte, error) {
	if user == c.prof.User && c.prof.UserKey != nil {
		return c.prof.UserKey, nil
	}
	p, err := c.st.peer(user)
	if err != nil {
		return nil, err
	}
	if p != nil {
		return p.Key, nil
	}
	key, err := c.fetchUserKey(ctx, user)
	if err != nil {
		return nil, err
	}
	if err := c.st.db.Update(func(tx *store.Tx) error {
		if p, err := getPeer(tx, user); err != nil || p != nil {
			return err
		}
		return putPeer(tx, &peerRecord{User: user, Key: key})
	}); err != nil {
		return nil, err
	}
	return key, nil
}

func (c *Client) fetchUserKey(ctx context.Context, user string) ([]byte, error) {
	if c.cfg.Session == nil {
		return nil, fmt.Errorf("client: no pinned key for %s and no connection to fetch it", user)
	}
	key, err := c.cfg.Session.UserKey(ctx, user)
	if err != nil {
		err = fmt.Errorf("client: fetching the user key of %s: %w", user, err)
		if !errors.Is(err, ErrUnknownUser) {
			// The node may just be unreachable: retry the delivery
			// later instead of refusing it for good.
			err = &transientError{err}
		}
		return nil, err
	}
	if len(key) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("client: the node sent a user key of %d bytes for %s", len(key), user)
	}
	return key, nil
}

func (c *Client) noteChangedKey(user string, key []byte) error {
	return c.st.db.Update(func(tx *store.Tx) error {
		p, err := getPeer(tx, user)
		if err != nil || p == nil {
			return err
		}
		p.Changed = key
		return putPeer(tx, p)
	})
}

// loadGroup returns the group with a local name.
func (c *Client) loadGroupByName(ctx context.Context, name string) (*group, error) {
	var id []byte
	err := c.st.db.View(func(tx *store.Tx) error {
		var err error
		id, err = getGroupByName(tx, name)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w %q", ErrUnknownGroup, name)
	}
	if err != nil {
		return nil, err
	}
	return c.loadGroup(ctx, id)
}

// loadGroup returns the group with an id, from the cache or the state.
func (c *Client) loadGroup(ctx context.Context, id []byte) (*group, error) {
	if g, ok := c.groups[string(id)]; ok {
		return g, nil
	}
	var rec *groupRecord
	err := c.st.db.View(func(tx *store.Tx) error {
		var err error
		rec, err = getGroup(tx, id)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w %x", ErrUnknownGroup, id)
	}
	if err != nil {
		return nil, err
	}
	g := &group{rec: rec}
	if !rec.Removed {
		if g.g, err = mls.UnmarshalGroup(c.mlsConfig(ctx), rec.State); err != nil {
			return nil, fmt.Errorf("client: group %s: %w", rec.Name, err)
		}
	}
	c.groups[string(id)] = g
	return g, nil
}

// forget drops the cache (after a failed write, memory may be ahead of
// the file).
func (c *Client) forget() { clear(c.groups) }

// saveGroupTx stores a loaded group's record with its current MLS state.
func saveGroupTx(tx *store.Tx, g *group) error {
	if g.g != nil {
		st, err := g.g.Marshal()
		if err != nil {
			return err
		}
		g.rec.State = st
	} else {
		g.rec.State = nil
	}
	return putGroup(tx, g.rec)
}

// persist writes groups and events in one transaction.
func (c *Client) persist(groups []*group, events []*Event, extra func(tx *store.Tx) error) error {
	err := c.st.db.Update(func(tx *store.Tx) error {
		for _, g := range groups {
			if err := saveGroupTx(tx, g); err != nil {
				return err
			}
		}
		for _, e := range events {
			if err := appendEvent(tx, e); err != nil {
				return err
			}
		}
		if extra != nil {
			return extra(tx)
		}
		return nil
	})
	if err != nil {
		c.forget()
	}
	return err
}

// GroupInfo describes a group for listing.
type GroupInfo struct {
	Name    string
	ID      []byte
	Suite   uint16
	Epoch   uint64
	Members int
	DM      string // the peer of a direct-message channel
	Removed bool
	Left    bool // removed because this device left (leave.go)
}

// Groups lists this profile's groups by name.
func (c *Client) Groups(ctx context.Context) ([]GroupInfo, error) {
	var recs []*groupRecord
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
			recs = append(recs, r)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []GroupInfo
	for _, r := range recs {
		gi := GroupInfo{Name: r.Name, ID: r.ID, DM: r.Peer, Removed: r.Removed, Left: r.Left}
		if g, err := c.loadGroup(ctx, r.ID); err == nil && g.g != nil {
			gi.Suite = uint16(g.g.CipherSuite())
			gi.Epoch = g.g.Epoch()
			gi.Members = len(g.g.Members())
		}
		out = append(out, gi)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// MemberInfo describes one member device of a group.
type MemberInfo struct {
	User     string
	Device   string // device fingerprint
	Leaf     uint32
	Self     bool
	Verified bool // the user's key was accepted with verify --accept
	Pinned   bool
}

// Members lists the members of a group.
func (c *Client) Members(ctx context.Context, name string) ([]MemberInfo, error) {
	g, err := c.loadGroupByName(ctx, name)
	if err != nil {
		return nil, err
	}
	if g.g == nil {
		return nil, fmt.Errorf("client: this device was removed from %s", name)
	}
	var out []MemberInfo
	for _, m := range g.g.Members() {
		id, err := identityOf(m.Credential)
		if err != nil {
			continue
		}
		mi := MemberInfo{User: id.User, Device: Fingerprint(m.SignatureKey), Leaf: m.Leaf, Self: bytes.Equal(m.SignatureKey, c.devKey)}
		if id.User == c.prof.User {
			mi.Verified, mi.Pinned = true, true
		} else if p, err := c.st.peer(id.User); err == nil && p != nil {
			mi.Verified, mi.Pinned = p.Verified, true
		}
		out = append(out, mi)
	}
	return out, nil
}

// uniqueName returns name, or name-2, name-3, ... if taken.
func uniqueName(tx *store.Tx, name string) string {
	n := name
	for i := 2; ; i++ {
		if _, err := getGroupByName(tx, n); errors.Is(err, store.ErrNotFound) {
			return n
		}
		n = fmt.Sprintf("%s-%d", name, i)
	}
}

// Recv applies queued deliveries (waiting up to wait for the first) and
// returns the history entries not shown before, except this device's own
// messages, marking them shown.
func (c *Client) Recv(ctx context.Context, wait time.Duration) ([]*Event, error) {
	if _, err := c.Sync(ctx, wait); err != nil {
		return nil, err
	}
	read, err := c.st.ReadSeq()
	if err != nil {
		return nil, err
	}
	evs, err := c.st.Events(read, 0)
	if err != nil || len(evs) == 0 {
		return nil, err
	}
	var out []*Event
	for _, e := range evs {
		if !e.Outgoing {
			out = append(out, e)
		}
	}
	return out, c.st.SetReadSeq(evs[len(evs)-1].Seq)
}

// GroupName returns the local name of a group id ("" if unknown).
func (c *Client) GroupName(id []byte) string {
	var name string
	_ = c.st.db.View(func(tx *store.Tx) error {
		if r, err := getGroup(tx, id); err == nil {
			name = r.Name
		}
		return nil
	})
	return name
}

// WaitForDelivery waits up to wait until a delivery is queued for this
// device, without applying anything; it reports whether one is. It only
// reads the state, so it may run while another goroutine uses the Client
// (chat does, to wake up while the user types).
func (c *Client) WaitForDelivery(ctx context.Context, wait time.Duration) (bool, error) {
	last, err := c.st.LastSeq()
	if err != nil {
		return false, err
	}
	r, err := c.cfg.Session.Fetch(ctx, last, 1, wait)
	if err != nil {
		return false, err
	}
	return len(r.Deliveries)+len(r.Lost) > 0, nil
}
