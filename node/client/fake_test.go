package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"sync"
	"time"

	"qpchat/mls"
	"qpchat/node/proto"
)

// fakeNode is an in-memory node with the delivery rules of DESIGN.md:
// commits accepted only for the group's current epoch (first wins), fan-out
// to the members before the commit except the committer, Welcomes to the
// added devices, per-device ordered queues, fetch without delete, ack.
// Its hooks let tests make it lie.
type fakeNode struct {
	mu       sync.Mutex
	userKeys map[string][]byte
	owner    map[string]string   // device key → user
	first    map[string][]byte   // user → first device key
	approved map[string][][]byte // user → published approval records
	pools    map[string]map[uint16][][]byte
	lastRes  map[string]map[uint16][]byte
	groups   map[string]*fakeGroup
	queues   map[string][]Delivery
	seq      map[string]uint64
	wake     chan struct{}

	// Hooks (nil: honest).
	forgeKeyPackages func(user string, got []FetchedKeyPackage) []FetchedKeyPackage
	forgeStamp       func(to string, d *Delivery)
	overflowed       map[string]bool
	low              map[string][]uint16 // device → suites reported low (keyPackagesLow)
	commits          int
}

type fakeGroup struct {
	epoch    uint64
	members  [][]byte
	accepted map[[32]byte]bool
}

func newFakeNode() *fakeNode {
	return &fakeNode{userKeys: map[string][]byte{}, owner: map[string]string{}, first: map[string][]byte{}, approved: map[string][][]byte{}, pools: map[string]map[uint16][][]byte{},
		lastRes: map[string]map[uint16][]byte{}, groups: map[string]*fakeGroup{}, queues: map[string][]Delivery{},
		seq: map[string]uint64{}, wake: make(chan struct{})}
}

func (n *fakeNode) addUser(user string, key []byte) {
	n.mu.Lock()
	n.userKeys[user] = key
	n.mu.Unlock()
}
func (n *fakeNode) addDevice(user string, dev []byte) {
	n.mu.Lock()
	n.owner[string(dev)] = user
	if n.first[user] == nil {
		n.first[user] = dev
	}
	n.mu.Unlock()
}

func (n *fakeNode) session(dev []byte) *fakeSession { return &fakeSession{n: n, dev: dev} }

type fakeSession struct {
	n   *fakeNode
	dev []byte
}

func (s *fakeSession) UploadKeyPackages(ctx context.Context, suite uint16, pool [][]byte, lr []byte) (int, error) {
	n := s.n
	n.mu.Lock()
	defer n.mu.Unlock()
	d := string(s.dev)
	if n.pools[d] == nil {
		n.pools[d] = map[uint16][][]byte{}
		n.lastRes[d] = map[uint16][]byte{}
	}
	n.pools[d][suite] = append(n.pools[d][suite], pool...)
	if lr != nil {
		n.lastRes[d][suite] = lr
	}
	return len(n.pools[d][suite]), nil
}

func (s *fakeSession) KeyPackageCount(ctx context.Context, suite uint16) (int, error) {
	s.n.mu.Lock()
	defer s.n.mu.Unlock()
	return len(s.n.pools[string(s.dev)][suite]), nil
}

// PublishApproval keeps an approval by this device of another device of
// its user (the real node's checks are tested in node/server).
func (s *fakeSession) PublishApproval(ctx context.Context, approval []byte) error {
	a, err := proto.ParseApproval(approval)
	if err != nil {
		return err
	}
	n := s.n
	n.mu.Lock()
	defer n.mu.Unlock()
	user := n.owner[string(s.dev)]
	if !bytes.Equal(a.Approver, s.dev) || n.owner[string(a.Device)] != user || !a.Verify(user) {
		return fmt.Errorf("fake: approval refused")
	}
	n.approved[user] = append(n.approved[user], approval)
	return nil
}

func (s *fakeSession) FetchKeyPackages(ctx context.Context, user string, suite uint16) (*KeyPackages, error) {
	n := s.n
	n.mu.Lock()
	if _, ok := n.userKeys[user]; !ok {
		n.mu.Unlock()
		return nil, fmt.Errorf("fake: %w %s", ErrUnknownUser, user)
	}
	var out []FetchedKeyPackage
	for dev, u := range n.owner {
		if u != user {
			continue
		}
		if p := n.pools[dev][suite]; len(p) > 0 {
			out = append(out, FetchedKeyPackage{Device: []byte(dev), KeyPackage: p[0]})
			n.pools[dev][suite] = p[1:]
		} else if lr := n.lastRes[dev][suite]; lr != nil {
			out = append(out, FetchedKeyPackage{Device: []byte(dev), KeyPackage: lr, LastResort: true})
		}
	}
	hook := n.forgeKeyPackages
	res := &KeyPackages{FirstDevice: n.first[user], Approvals: n.approved[user]}
	n.mu.Unlock()
	if hook != nil {
		out = hook(user, out)
	}
	res.Packages = out
	return res, nil
}

func (s *fakeSession) UserKey(ctx context.Context, user string) ([]byte, error) {
	s.n.mu.Lock()
	defer s.n.mu.Unlock()
	k, ok := s.n.userKeys[user]
	if !ok {
		return nil, fmt.Errorf("fake: %w %s", ErrUnknownUser, user)
	}
	return k, nil
}

func (s *fakeSession) Devices(ctx context.Context) ([]DeviceInfo, error) { return nil, nil }

func (s *fakeSession) CreateGroup(ctx context.Context, id []byte) error {
	s.n.mu.Lock()
	defer s.n.mu.Unlock()
	if s.n.groups[string(id)] != nil {
		return fmt.Errorf("fake: group exists")
	}
	s.n.groups[string(id)] = &fakeGroup{members: [][]byte{s.dev}, accepted: map[[32]byte]bool{}}
	return nil
}

func headerEpoch(msg []byte) (uint64, error) {
	m, err := mls.UnmarshalMLSMessage(msg)
	if err != nil {
		return 0, err
	}
	switch {
	case m.PrivateMessage != nil:
		return m.PrivateMessage.Epoch, nil
	case m.PublicMessage != nil:
		return m.PublicMessage.Content.Epoch, nil
	}
	return 0, fmt.Errorf("fake: not a framed message")
}

func (n *fakeNode) enqueue(to []byte, d Delivery) {
	if n.overflowed[string(to)] {
		return // dropped, as the node does until ClearOverflow
	}
	n.seq[string(to)]++
	d.Seq = n.seq[string(to)]
	if n.forgeStamp != nil {
		n.forgeStamp(string(to), &d)
	}
	n.queues[string(to)] = append(n.queues[string(to)], d)
}

func (n *fakeNode) signal() {
	close(n.wake)
	n.wake = make(chan struct{})
}

func isIn(list [][]byte, k []byte) bool { return containsKey(list, k) }

func (s *fakeSession) Commit(ctx context.Context, req CommitRequest) error {
	n := s.n
	n.mu.Lock()
	defer n.mu.Unlock()
	g := n.groups[string(req.Group)]
	if g == nil || !isIn(g.members, s.dev) {
		return fmt.Errorf("fake: %w", ErrNotMember)
	}
	h := sha256.Sum256(req.Commit)
	if g.accepted[h] {
		return nil
	}
	ep, err := headerEpoch(req.Commit)
	if err != nil {
		return err
	}
	if ep < g.epoch {
		return fmt.Errorf("fake: %w", ErrStale)
	}
	if ep > g.epoch {
		return fmt.Errorf("fake: wrong epoch %d > %d", ep, g.epoch)
	}
	n.commits++
	g.accepted[h] = true
	g.epoch++
	for _, m := range g.members {
		if !bytes.Equal(m, s.dev) {
			n.enqueue(m, Delivery{Kind: DeliveryCommit, Group: req.Group, Sender: s.dev, Added: req.Added, Removed: req.Removed, Data: req.Commit})
		}
	}
	var members [][]byte
	for _, m := range g.members {
		if !isIn(req.Removed, m) {
			members = append(members, m)
		}
	}
	g.members = append(members, req.Added...)
	for _, a := range req.Added {
		n.enqueue(a, Delivery{Kind: DeliveryWelcome, Group: req.Group, Sender: s.dev, Added: req.Added, Removed: req.Removed, Data: req.Welcome})
	}
	n.signal()
	return nil
}

func (s *fakeSession) Send(ctx context.Context, group []byte, msgs [][]byte) error {
	n := s.n
	n.mu.Lock()
	defer n.mu.Unlock()
	g := n.groups[string(group)]
	if g == nil || !isIn(g.members, s.dev) {
		return fmt.Errorf("fake: %w", ErrNotMember)
	}
	for _, m := range g.members {
		if !bytes.Equal(m, s.dev) {
			for _, msg := range msgs {
				n.enqueue(m, Delivery{Kind: DeliveryApplication, Group: group, Sender: s.dev, Data: msg})
			}
		}
	}
	n.signal()
	return nil
}

func (s *fakeSession) Fetch(ctx context.Context, after uint64, limit int, wait time.Duration) (*FetchResult, error) {
	deadline := time.Now().Add(wait)
	for {
		n := s.n
		n.mu.Lock()
		var out []Delivery
		var lost []uint64 // queued entries of kind deliveryLost: damaged at the node
		for _, d := range n.queues[string(s.dev)] {
			if d.Seq > after && len(out)+len(lost) < limit {
				if d.Kind == deliveryLost {
					lost = append(lost, d.Seq)
				} else {
					out = append(out, d)
				}
			}
		}
		wake := n.wake
		over := n.overflowed[string(s.dev)]
		low := n.low[string(s.dev)]
		n.mu.Unlock()
		if len(out)+len(lost) > 0 || wait <= 0 || time.Now().After(deadline) {
			return &FetchResult{Deliveries: out, Overflowed: over, LowSuites: low, Lost: lost}, nil
		}
		select {
		case <-wake:
		case <-time.After(time.Until(deadline)):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (s *fakeSession) Ack(ctx context.Context, upTo uint64) error {
	n := s.n
	n.mu.Lock()
	defer n.mu.Unlock()
	q := n.queues[string(s.dev)]
	i := 0
	for i < len(q) && q[i].Seq <= upTo {
		i++
	}
	n.queues[string(s.dev)] = q[i:]
	return nil
}

func (s *fakeSession) ClearOverflow(ctx context.Context) error {
	s.n.mu.Lock()
	defer s.n.mu.Unlock()
	delete(s.n.overflowed, string(s.dev))
	return nil
}
