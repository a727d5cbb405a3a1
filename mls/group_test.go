package mls

// Multi-party simulations of whole groups in memory: every member runs its
// own Group and they exchange MLSMessages as a Delivery Service would.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"testing"
	"time"
)

// simSuites are the suites every group-level test runs for: the classical
// suites 1 to 3 and qpchat's two post-quantum suites.
var simSuites = []CipherSuite{
	CipherSuiteMLS128DHKEMX25519AES128GCMSHA256Ed25519,
	CipherSuiteMLS128DHKEMP256AES128GCMSHA256P256,
	CipherSuiteMLS128DHKEMX25519ChaCha20Poly1305SHA256Ed25519,
	CipherSuiteMLS128HybridX25519MLKEM768AES128GCMSHA256Ed25519,
	CipherSuiteMLS128XWingAES128GCMSHA256Ed25519,
}

// testNow is the fixed time of the simulations.
var testNow = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// suiteName names a suite in subtest names.
func suiteName(s CipherSuite) string { return fmt.Sprintf("suite-0x%04x", uint16(s)) }

// testConfig accepts credentials whose identity starts with "member-",
// so that tests can present a credential the application refuses.
func testConfig() Config {
	return Config{ValidateCredential: func(c Credential, _ []byte) error {
		if !bytes.HasPrefix(c.Identity, []byte("member-")) {
			return fmt.Errorf("unknown identity %q", c.Identity)
		}
		return nil
	}}
}

// newTestKeyPackage makes a KeyPackage for identity name.
func newTestKeyPackage(t testing.TB, rand io.Reader, suite CipherSuite, name string) *KeyPackagePrivate {
	t.Helper()
	sig, err := GenerateSignatureKey(suite, rand)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := NewKeyPackage(rand, suite, Credential{Type: CredentialTypeBasic, Identity: []byte(name)}, sig, testNow, nil)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func kpMessage(t testing.TB, kp *KeyPackagePrivate) []byte {
	t.Helper()
	b, err := kp.Message()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sim is a group of members exchanging messages in memory.
type sim struct {
	t       testing.TB
	suite   CipherSuite
	rand    io.Reader
	members map[string]*Group // by identity
	next    int               // counter for new identities
}

func newSim(t testing.TB, suite CipherSuite, seed uint64) *sim {
	s := &sim{t: t, suite: suite, rand: testRand(seed), members: map[string]*Group{}}
	creator := s.newIdentity()
	kp := newTestKeyPackage(t, s.rand, suite, creator)
	g, err := CreateGroup(s.rand, testConfig(), []byte("group-"+suiteName(suite)), kp, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.members[creator] = g
	return s
}

func (s *sim) newIdentity() string {
	s.next++
	return fmt.Sprintf("member-%d", s.next)
}

// names returns the member identities in leaf order.
func (s *sim) names() []string {
	var out []string
	for _, g := range s.members {
		for _, m := range g.Members() {
			out = append(out, string(m.Credential.Identity))
		}
		return out
	}
	return nil
}

// any returns some member.
func (s *sim) pick(r *mrand.Rand) (string, *Group) {
	names := s.names()
	n := names[r.IntN(len(names))]
	return n, s.members[n]
}

// commit delivers the output of a commit by committer: it merges the
// pending state, every other member processes the commit, added members
// join from the Welcome. Removed members are returned as they were before
// the commit and after processing it.
func (s *sim) commit(committer string, out *CommitOutput, joiners map[string]*KeyPackagePrivate) {
	t := s.t
	t.Helper()
	g := s.members[committer]
	ev, err := g.MergePending()
	if err != nil {
		t.Fatalf("merge: %v", err)
	}
	if len(ev.Added) != len(joiners) {
		t.Fatalf("commit added %d members, want %d", len(ev.Added), len(joiners))
	}
	for name, m := range s.members {
		if name == committer {
			continue
		}
		ev, err := m.ProcessMessage(out.Commit, testNow)
		if err != nil {
			t.Fatalf("%s processing commit of %s: %v", name, committer, err)
		}
		if ev.Kind != EventNewEpoch {
			t.Fatalf("%s: event kind %d, want new epoch", name, ev.Kind)
		}
		if ev.SelfRemoved {
			delete(s.members, name)
		}
	}
	for name, kp := range joiners {
		j, err := JoinFromWelcome(testConfig(), out.Welcome, kp, nil, testNow)
		if err != nil {
			t.Fatalf("%s joining: %v", name, err)
		}
		s.members[name] = j
	}
	s.checkAgreement()
}

// checkAgreement checks that every member is in the same epoch with the
// same epoch authenticator and the same membership.
func (s *sim) checkAgreement() {
	t := s.t
	t.Helper()
	var (
		epoch uint64
		auth  []byte
		first string
		n     = -1
	)
	for name, g := range s.members {
		if auth == nil {
			epoch, auth, first, n = g.Epoch(), g.EpochAuthenticator(), name, len(g.Members())
			continue
		}
		if g.Epoch() != epoch || !bytes.Equal(g.EpochAuthenticator(), auth) {
			t.Fatalf("%s is in epoch %d with authenticator %x; %s in epoch %d with %x",
				name, g.Epoch(), g.EpochAuthenticator(), first, epoch, auth)
		}
	}
	if n != len(s.members) {
		t.Fatalf("tree has %d members, simulation %d", n, len(s.members))
	}
}

// add has a random member add count new members in one commit.
func (s *sim) add(committer string, count int) {
	t := s.t
	t.Helper()
	joiners := map[string]*KeyPackagePrivate{}
	var kps [][]byte
	for range count {
		name := s.newIdentity()
		kp := newTestKeyPackage(t, s.rand, s.suite, name)
		joiners[name] = kp
		kps = append(kps, kpMessage(t, kp))
	}
	out, err := s.members[committer].Add(s.rand, kps, testNow)
	if err != nil {
		t.Fatalf("%s adding %d: %v", committer, count, err)
	}
	if len(out.Added) != count || out.Welcome == nil {
		t.Fatalf("add: %d refs, welcome %v", len(out.Added), out.Welcome != nil)
	}
	s.commit(committer, out, joiners)
}

// broadcast has sender protect a message that every other member must
// decrypt with the right sender.
func (s *sim) broadcast(sender string, data []byte) []byte {
	t := s.t
	t.Helper()
	g := s.members[sender]
	msg, err := g.Protect(s.rand, data, []byte("ad"))
	if err != nil {
		t.Fatalf("%s protect: %v", sender, err)
	}
	for name, m := range s.members {
		if name == sender {
			continue
		}
		ev, err := m.ProcessMessage(msg, testNow)
		if err != nil {
			t.Fatalf("%s decrypting from %s: %v", name, sender, err)
		}
		if ev.Kind != EventApplication || !bytes.Equal(ev.Data, data) || ev.Sender != g.OwnLeaf() ||
			string(ev.SenderCredential.Identity) != sender || string(ev.AuthenticatedData) != "ad" {
			t.Fatalf("%s got %+v from %s", name, ev, sender)
		}
	}
	return msg
}

// leafOf returns the leaf of the member with identity name.
func (s *sim) leafOf(name string) uint32 {
	return s.members[name].OwnLeaf()
}

// TestGroupGrowTo100 grows a group to 100 members by adds in batches; every
// member agrees on the epoch authenticator after each commit and
// everyone decrypts a message from the last member.
func TestGroupGrowTo100(t *testing.T) {
	size, batch := 100, 11
	if testing.Short() {
		size, batch = 30, 7
	}
	for _, suite := range simSuites {
		t.Run(suiteName(suite), func(t *testing.T) {
			s := newSim(t, suite, 1)
			r := mrand.New(mrand.NewPCG(1, 2))
			for len(s.members) < size {
				c, _ := s.pick(r)
				s.add(c, min(batch, size-len(s.members)))
			}
			last := s.names()[size-1]
			s.broadcast(last, []byte("hello, hundred"))
			t.Logf("suite %v: %d members, epoch %d", suite, len(s.members), s.members[last].Epoch())
		})
	}
}

// TestGroupRandomOperations runs a random sequence of adds, removes,
// updates and application messages across at least 20 members.
func TestGroupRandomOperations(t *testing.T) {
	steps := 60
	if testing.Short() {
		steps = 25
	}
	for i, suite := range simSuites {
		t.Run(suiteName(suite), func(t *testing.T) {
			s := newSim(t, suite, uint64(100+i))
			r := mrand.New(mrand.NewPCG(uint64(i), 7))
			s.add(s.names()[0], 21)
			// States of removed members, saved just before their removal,
			// with the number of messages sent until then.
			type removedState struct {
				state []byte
				from  int
			}
			var removed []removedState
			var messages [][]byte
			counts := map[string]int{}
			for step := range steps {
				committer, g := s.pick(r)
				switch op := r.IntN(10); {
				case op < 2 || len(s.members) < 20:
					counts["add"]++
					s.add(committer, 1+r.IntN(3))
				case op < 4:
					counts["remove"]++
					victim, _ := s.pick(r)
					for victim == committer {
						victim, _ = s.pick(r)
					}
					st, err := s.members[victim].Marshal()
					if err != nil {
						t.Fatal(err)
					}
					removed = append(removed, removedState{st, len(messages)})
					out, err := g.Remove(s.rand, []uint32{s.leafOf(victim)}, testNow)
					if err != nil {
						t.Fatalf("step %d: remove: %v", step, err)
					}
					s.commit(committer, out, nil)
					if _, ok := s.members[victim]; ok {
						t.Fatalf("step %d: %s still a member after removal", step, victim)
					}
				case op < 6:
					counts["update"]++
					out, err := g.Update(s.rand, testNow)
					if err != nil {
						t.Fatalf("step %d: update: %v", step, err)
					}
					s.commit(committer, out, nil)
				case op < 7:
					counts["restore"]++
					st, err := g.Marshal()
					if err != nil {
						t.Fatal(err)
					}
					restored, err := UnmarshalGroup(testConfig(), st)
					if err != nil {
						t.Fatalf("step %d: restore: %v", step, err)
					}
					again, err := restored.Marshal()
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(again, st) {
						t.Fatalf("step %d: restored state encodes differently", step)
					}
					s.members[committer] = restored
					s.broadcast(committer, []byte("restored and carrying on"))
				default:
					counts["message"]++
					messages = append(messages, s.broadcast(committer, fmt.Appendf(nil, "message %d", step)))
				}
			}
			// Removed members cannot read anything sent after their removal.
			refused := 0
			for _, rs := range removed {
				g, err := UnmarshalGroup(testConfig(), rs.state)
				if err != nil {
					t.Fatal(err)
				}
				for _, msg := range messages[rs.from:] {
					refused++
					if ev, err := g.ProcessMessage(msg, testNow); err == nil {
						t.Fatalf("removed member decrypted %q", ev.Data)
					}
				}
			}
			t.Logf("suite %v: %d members at the end, operations %v, %d later messages refused to %d removed members",
				suite, len(s.members), counts, refused, len(removed))
		})
	}
}

// TestRemovedMemberCannotDecrypt removes a member and checks that, whether
// it processed its removal or not, it reads nothing of the next epochs.
func TestRemovedMemberCannotDecrypt(t *testing.T) {
	for _, suite := range simSuites {
		t.Run(suiteName(suite), func(t *testing.T) {
			s := newSim(t, suite, 3)
			s.add(s.names()[0], 3)
			names := s.names()
			victim := s.members[names[2]]
			stale, err := victim.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			out, err := s.members[names[0]].Remove(s.rand, []uint32{victim.OwnLeaf()}, testNow)
			if err != nil {
				t.Fatal(err)
			}
			s.commit(names[0], out, nil)
			if _, err := victim.ProcessMessage(out.Commit, testNow); !errors.Is(err, ErrRemoved) {
				t.Errorf("processing after removal: err = %v, want ErrRemoved", err)
			}
			msg := s.broadcast(names[1], []byte("after removal"))
			if _, err := victim.ProcessMessage(msg, testNow); err == nil {
				t.Error("removed member processed a message of the next epoch")
			}
			old, err := UnmarshalGroup(testConfig(), stale)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := old.ProcessMessage(msg, testNow); !errors.Is(err, ErrWrongEpoch) {
				t.Errorf("stale state: err = %v, want ErrWrongEpoch", err)
			}
			ev, err := old.ProcessMessage(out.Commit, testNow)
			if err != nil || !ev.SelfRemoved {
				t.Fatalf("stale state processing its removal: %+v, %v", ev, err)
			}
			if _, err := old.ProcessMessage(msg, testNow); err == nil {
				t.Error("removed member decrypted a message of the next epoch")
			}
		})
	}
}

// deliver has every member but sender process msg, expecting kind.
func (s *sim) deliver(sender string, msg []byte, kind EventKind) {
	s.t.Helper()
	for name, m := range s.members {
		if name == sender {
			continue
		}
		ev, err := m.ProcessMessage(msg, testNow)
		if err != nil {
			s.t.Fatalf("%s processing message of %s: %v", name, sender, err)
		}
		if ev.Kind != kind {
			s.t.Fatalf("%s: event kind %d, want %d", name, ev.Kind, kind)
		}
	}
}

// TestGroupProposalsByReference: members propose an Add and a Remove, a
// third member commits them by reference, and the group agrees.
func TestGroupProposalsByReference(t *testing.T) {
	for _, suite := range simSuites {
		for _, public := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/public=%v", suiteName(suite), public), func(t *testing.T) {
				s := newSim(t, suite, 5)
				s.add(s.names()[0], 4)
				for _, g := range s.members {
					g.cfg.PublicHandshake = public
				}
				names := s.names()
				joiner := s.newIdentity()
				kp := newTestKeyPackage(t, s.rand, suite, joiner)
				p1, err := s.members[names[1]].ProposeAdd(s.rand, kpMessage(t, kp), testNow)
				if err != nil {
					t.Fatal(err)
				}
				s.deliver(names[1], p1, EventProposal)
				p2, err := s.members[names[2]].ProposeRemove(s.rand, s.leafOf(names[4]), testNow)
				if err != nil {
					t.Fatal(err)
				}
				s.deliver(names[2], p2, EventProposal)
				out, err := s.members[names[3]].CommitPending(s.rand, testNow)
				if err != nil {
					t.Fatal(err)
				}
				if len(out.Added) != 1 || len(out.Removed) != 1 {
					t.Fatalf("commit added %d, removed %d", len(out.Added), len(out.Removed))
				}
				s.commit(names[3], out, map[string]*KeyPackagePrivate{joiner: kp})
				if _, ok := s.members[names[4]]; ok {
					t.Fatal("removed member still present")
				}
				s.broadcast(joiner, []byte("joined by reference"))
			})
		}
	}
}

// TestGroupExternalJoin: an outsider joins from a GroupInfo by external
// commit (RFC 9420, Section 12.4.3.2).
func TestGroupExternalJoin(t *testing.T) {
	for _, suite := range simSuites {
		for _, withTree := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/tree=%v", suiteName(suite), withTree), func(t *testing.T) {
				s := newSim(t, suite, 6)
				s.add(s.names()[0], 4)
				names := s.names()
				gi, err := s.members[names[2]].GroupInfo(s.rand, withTree)
				if err != nil {
					t.Fatal(err)
				}
				var tree []byte
				if !withTree {
					if tree, err = s.members[names[2]].tree.Marshal(); err != nil {
						t.Fatal(err)
					}
				}
				name := s.newIdentity()
				kp := newTestKeyPackage(t, s.rand, suite, name)
				g, commit, err := JoinExternal(s.rand, testConfig(), gi, tree, kp, testNow)
				if err != nil {
					t.Fatal(err)
				}
				for n, m := range s.members {
					ev, err := m.ProcessMessage(commit, testNow)
					if err != nil {
						t.Fatalf("%s processing external commit: %v", n, err)
					}
					if len(ev.Added) != 1 || string(ev.Added[0].Credential.Identity) != name {
						t.Fatalf("%s: external commit event %+v", n, ev)
					}
				}
				s.members[name] = g
				s.checkAgreement()
				s.broadcast(name, []byte("joined externally"))
				out, err := g.Update(s.rand, testNow)
				if err != nil {
					t.Fatal(err)
				}
				s.commit(name, out, nil)
			})
		}
	}
}

// TestGroupPSKs injects an external PSK and a resumption PSK of the
// previous epoch into commits (RFC 9420, Section 8.4, Section 8.6).
func TestGroupPSKs(t *testing.T) {
	for _, suite := range simSuites {
		t.Run(suiteName(suite), func(t *testing.T) {
			s := newSim(t, suite, 8)
			s.add(s.names()[0], 3)
			names := s.names()
			cs, _ := suite.suite()
			psk := []byte("an external pre-shared key")
			for _, g := range s.members {
				g.cfg.ExternalPSKs = func(id []byte) ([]byte, bool) {
					return psk, string(id) == "shared"
				}
			}
			nonce := func() []byte {
				b := make([]byte, cs.nh)
				io.ReadFull(s.rand, b)
				return b
			}
			prev := s.members[names[0]].Epoch()
			out, err := s.members[names[1]].Commit(s.rand, &CommitOptions{PSKs: []PreSharedKeyID{
				{Type: PSKTypeExternal, PSKID: []byte("shared"), PSKNonce: nonce()},
			}}, testNow)
			if err != nil {
				t.Fatal(err)
			}
			s.commit(names[1], out, nil)
			out, err = s.members[names[2]].Commit(s.rand, &CommitOptions{ForcePath: true, PSKs: []PreSharedKeyID{
				{Type: PSKTypeResumption, Usage: ResumptionPSKUsageApplication, PSKGroupID: s.members[names[2]].GroupID(),
					PSKEpoch: prev, PSKNonce: nonce()},
			}}, testNow)
			if err != nil {
				t.Fatal(err)
			}
			s.commit(names[2], out, nil)
			// An unknown external PSK is refused by the committer.
			_, err = s.members[names[0]].Commit(s.rand, &CommitOptions{PSKs: []PreSharedKeyID{
				{Type: PSKTypeExternal, PSKID: []byte("unknown"), PSKNonce: nonce()},
			}}, testNow)
			if err == nil {
				t.Fatal("commit with an unknown PSK accepted")
			}
		})
	}
}

// FuzzProcessMessage feeds arbitrary MLSMessages to a member of an
// established group of one of simSuites, chosen by the first input byte
// (modulo the number of suites); the rest is the message. Processing must
// never panic, and a refused message must leave the member's state
// unchanged. It is seeded, for every suite, with valid messages of every
// kind for the member's epoch.
func FuzzProcessMessage(f *testing.F) {
	states := make([][]byte, len(simSuites))
	for i, suite := range simSuites {
		seeds, state := processMessageSeeds(f, suite)
		states[i] = state
		for _, msg := range seeds {
			f.Add(append([]byte{byte(i)}, msg...))
		}
	}
	cfg := testConfig()
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		state := states[int(in[0])%len(states)]
		g, err := UnmarshalGroup(cfg, state)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := g.ProcessMessage(in[1:], testNow); err != nil {
			after, err := g.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(after, state) {
				t.Fatalf("refused message changed the state")
			}
		}
	})
}

// processMessageSeeds builds a group of four members in suite and returns
// valid messages of every kind from one member, in both wire formats for
// handshakes, and the state of another member that receives them.
func processMessageSeeds(f *testing.F, suite CipherSuite) (seeds [][]byte, state []byte) {
	s := newSim(f, suite, 9)
	s.add(s.names()[0], 3)
	names := s.names()
	sender, receiver := s.members[names[0]], s.members[names[1]]
	for _, public := range []bool{false, true} {
		sender.cfg.PublicHandshake = public
		app, err := sender.Protect(s.rand, []byte("seed"), []byte("ad"))
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, app)
		prop, err := sender.ProposeRemove(s.rand, s.leafOf(names[3]), testNow)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, prop)
		sender.cache = nil
		out, err := sender.Update(s.rand, testNow)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, out.Commit)
		sender.DiscardPending()
		kp := newTestKeyPackage(f, s.rand, suite, "member-fuzz")
		out, err = sender.Add(s.rand, [][]byte{kpMessage(f, kp)}, testNow)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, out.Commit, out.Welcome, kpMessage(f, kp))
		sender.DiscardPending()
	}
	gi, err := sender.GroupInfo(s.rand, true)
	if err != nil {
		f.Fatal(err)
	}
	seeds = append(seeds, gi)
	state, err = receiver.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	return seeds, state
}

// cloneGroup returns an independent copy of g through its state encoding.
func cloneGroup(tb testing.TB, g *Group) *Group {
	tb.Helper()
	st, err := g.Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	c, err := UnmarshalGroup(g.cfg, st)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// TestGroupLateAndOutOfOrderMessages checks the bounded windows: messages
// of a past epoch decrypt while that epoch is kept, messages within an
// epoch decrypt out of order within the generation window, and neither
// window is unbounded.
func TestGroupLateAndOutOfOrderMessages(t *testing.T) {
	for _, suite := range simSuites {
		t.Run(suiteName(suite), func(t *testing.T) {
			s := newSim(t, suite, 14)
			s.add(s.names()[0], 2)
			names := s.names()
			sender, receiver := s.members[names[1]], s.members[names[2]]
			late, err := sender.Protect(s.rand, []byte("late"), nil)
			if err != nil {
				t.Fatal(err)
			}
			tooLate, err := sender.Protect(s.rand, []byte("too late"), nil)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 3 {
				out, err := s.members[names[0]].Update(s.rand, testNow)
				if err != nil {
					t.Fatal(err)
				}
				s.commit(names[0], out, nil)
				if i == 1 {
					ev, err := receiver.ProcessMessage(late, testNow)
					if err != nil || string(ev.Data) != "late" || ev.Epoch != receiver.Epoch()-2 {
						t.Fatalf("message of two epochs ago: %+v, %v", ev, err)
					}
				}
			}
			for range 2 {
				out, err := s.members[names[0]].Update(s.rand, testNow)
				if err != nil {
					t.Fatal(err)
				}
				s.commit(names[0], out, nil)
			}
			if _, err := receiver.ProcessMessage(tooLate, testNow); !errors.Is(err, ErrWrongEpoch) {
				t.Errorf("message of five epochs ago (3 kept): err = %v, want ErrWrongEpoch", err)
			}
			// Out of order within the window; beyond it refused.
			var msgs [][]byte
			for i := range 40 {
				m, err := sender.Protect(s.rand, fmt.Appendf(nil, "%d", i), nil)
				if err != nil {
					t.Fatal(err)
				}
				msgs = append(msgs, m)
			}
			// The secret tree keeps the keys of the 32 generations behind
			// the newest one received.
			for _, i := range []int{39, 10, 38, 7, 20} {
				ev, err := receiver.ProcessMessage(msgs[i], testNow)
				if err != nil || string(ev.Data) != fmt.Sprint(i) {
					t.Fatalf("message %d out of order: %v", i, err)
				}
			}
			if _, err := receiver.ProcessMessage(msgs[0], testNow); !errors.Is(err, ErrReplay) {
				t.Errorf("message 39 generations behind: err = %v, want ErrReplay (key deleted)", err)
			}
			narrow := testConfig()
			narrow.MaxGenerationGap = 10
			st, err := receiver.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			r, err := UnmarshalGroup(narrow, st)
			if err != nil {
				t.Fatal(err)
			}
			var far []byte
			for range 60 {
				if far, err = sender.Protect(s.rand, []byte("far"), nil); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := r.ProcessMessage(far, testNow); err == nil {
				t.Error("message beyond the generation window accepted")
			}
		})
	}
}

// TestGroupContextExtensions changes the GroupContext extensions by commit
// (RFC 9420, Section 12.1.7) and checks every member applies them, and
// that an extension a member does not support is refused.
func TestGroupContextExtensions(t *testing.T) {
	for _, suite := range simSuites {
		t.Run(suiteName(suite), func(t *testing.T) {
			s := newSim(t, suite, 15)
			s.add(s.names()[0], 2)
			names := s.names()
			appID, err := ApplicationID("qpchat test").Marshal()
			if err != nil {
				t.Fatal(err)
			}
			exts := Extensions{{Type: ExtensionTypeApplicationID, Data: appID}}
			out, err := s.members[names[1]].Commit(s.rand, &CommitOptions{Extensions: exts}, testNow)
			if err != nil {
				t.Fatal(err)
			}
			s.commit(names[1], out, nil)
			for name, g := range s.members {
				if got, ok := g.Extensions().Find(ExtensionTypeApplicationID); !ok || !bytes.Equal(got, appID) {
					t.Errorf("%s: extensions %v", name, g.Extensions())
				}
			}
			unsupported := Extensions{{Type: 0xff00, Data: []byte{1}}}
			if _, err := s.members[names[0]].Commit(s.rand, &CommitOptions{Extensions: unsupported}, testNow); err == nil {
				t.Error("commit with an extension no member supports was created")
			}
		})
	}
}

// TestGroupWelcomeWithoutTree adds a member with a Welcome that leaves out
// the ratchet tree, which the joiner then gets out of band.
func TestGroupWelcomeWithoutTree(t *testing.T) {
	for _, suite := range simSuites {
		t.Run(suiteName(suite), func(t *testing.T) {
			s := newSim(t, suite, 16)
			s.add(s.names()[0], 2)
			names := s.names()
			name := s.newIdentity()
			kp := newTestKeyPackage(t, s.rand, suite, name)
			committer := s.members[names[1]]
			out, err := committer.Commit(s.rand, &CommitOptions{KeyPackages: [][]byte{kpMessage(t, kp)}, OmitTreeInWelcome: true}, testNow)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := JoinFromWelcome(testConfig(), out.Welcome, kp, nil, testNow); err == nil {
				t.Fatal("joined without any ratchet tree")
			}
			// Apply the commit everywhere, then join with the tree given
			// out of band.
			for n, m := range s.members {
				if n == names[1] {
					if _, err := m.MergePending(); err != nil {
						t.Fatal(err)
					}
				} else if _, err := m.ProcessMessage(out.Commit, testNow); err != nil {
					t.Fatal(err)
				}
			}
			tree, err := committer.RatchetTree()
			if err != nil {
				t.Fatal(err)
			}
			g, err := JoinFromWelcome(testConfig(), out.Welcome, kp, tree, testNow)
			if err != nil {
				t.Fatal(err)
			}
			s.members[name] = g
			s.checkAgreement()
			s.broadcast(name, []byte("tree out of band"))
		})
	}
}

// TestGroupTreeOutOfBand: the committer hands the new tree to the
// application, which names where it put it in a GroupInfo extension; the
// joiner reads the extension, and only the right tree joins.
func TestGroupTreeOutOfBand(t *testing.T) {
	for _, suite := range simSuites {
		t.Run(suiteName(suite), func(t *testing.T) {
			s := newSim(t, suite, 17)
			s.add(s.names()[0], 3)
			names := s.names()
			name := s.newIdentity()
			kp := newTestKeyPackage(t, s.rand, suite, name)
			committer := s.members[names[1]]
			var handed []byte
			const locator = ExtensionType(0xf0a1)
			out, err := committer.Commit(s.rand, &CommitOptions{KeyPackages: [][]byte{kpMessage(t, kp)},
				TreeOutOfBand: func(tree []byte) (Extension, error) {
					handed = bytes.Clone(tree)
					return Extension{Type: locator, Data: []byte("where the tree is")}, nil
				}}, testNow)
			if err != nil {
				t.Fatal(err)
			}
			exts, err := WelcomeGroupInfoExtensions(out.Welcome, kp)
			if err != nil {
				t.Fatal(err)
			}
			if b, ok := exts.Find(locator); !ok || string(b) != "where the tree is" {
				t.Errorf("the GroupInfo's extensions %v lack the locator", exts)
			}
			if _, ok := exts.Find(ExtensionTypeRatchetTree); ok {
				t.Error("the Welcome still carries the tree")
			}
			if _, err := JoinFromWelcome(testConfig(), out.Welcome, kp, nil, testNow); err == nil {
				t.Fatal("joined without the tree")
			}
			for n, m := range s.members {
				if n == names[1] {
					if _, err := m.MergePending(); err != nil {
						t.Fatal(err)
					}
				} else if _, err := m.ProcessMessage(out.Commit, testNow); err != nil {
					t.Fatal(err)
				}
			}
			old, err := s.members[names[0]].RatchetTree()
			if err != nil {
				t.Fatal(err)
			}
			old[len(old)-1] ^= 1
			if _, err := JoinFromWelcome(testConfig(), out.Welcome, kp, old, testNow); err == nil {
				t.Fatal("joined with a tampered tree")
			}
			g, err := JoinFromWelcome(testConfig(), out.Welcome, kp, handed, testNow)
			if err != nil {
				t.Fatal(err)
			}
			s.members[name] = g
			s.checkAgreement()
			s.broadcast(name, []byte("tree from the application"))
			// A failing callback fails the commit.
			if _, err := committer.Commit(s.rand, &CommitOptions{KeyPackages: [][]byte{kpMessage(t, newTestKeyPackage(t, s.rand, suite, s.newIdentity()))},
				TreeOutOfBand: func([]byte) (Extension, error) { return Extension{}, errors.New("no room") }}, testNow); err == nil {
				t.Error("a commit whose tree could not be placed was made")
			}
		})
	}
}

// TestGroupUpdateProposal: a member proposes an Update of its leaf,
// another commits it by reference, and the group agrees (RFC 9420,
// Section 12.1.2); the proposer is restored from its state in between.
func TestGroupUpdateProposal(t *testing.T) {
	for _, suite := range simSuites {
		for _, public := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/public=%v", suiteName(suite), public), func(t *testing.T) {
				s := newSim(t, suite, 17)
				s.add(s.names()[0], 4)
				for _, g := range s.members {
					g.cfg.PublicHandshake = public
				}
				names := s.names()
				proposer := s.members[names[2]]
				msg, err := proposer.ProposeUpdate(s.rand, testNow)
				if err != nil {
					t.Fatal(err)
				}
				s.deliver(names[2], msg, EventProposal)
				st, err := proposer.Marshal()
				if err != nil {
					t.Fatal(err)
				}
				if s.members[names[2]], err = UnmarshalGroup(testConfig(), st); err != nil {
					t.Fatal(err)
				}
				// The proposer's own commit leaves its Update out (Section
				// 12.2: a committer cannot cover its own Update).
				out, err := s.members[names[2]].CommitPending(s.rand, testNow)
				if err != nil {
					t.Fatal(err)
				}
				s.members[names[2]].DiscardPending()
				if m, _ := UnmarshalMLSMessage(out.Commit); m.WireFormat == WireFormatPublicMessage &&
					len(m.PublicMessage.Content.Commit.Proposals) != 0 {
					t.Error("the proposer's commit covers its own update")
				}
				out, err = s.members[names[0]].CommitPending(s.rand, testNow)
				if err != nil {
					t.Fatal(err)
				}
				ev, err := cloneGroup(t, s.members[names[1]]).ProcessMessage(out.Commit, testNow)
				if err != nil || len(ev.Updated) != 1 || ev.Updated[0].Leaf != s.leafOf(names[2]) {
					t.Fatalf("update commit: %+v, %v", ev, err)
				}
				s.commit(names[0], out, nil)
				s.broadcast(names[2], []byte("updated"))
				// A path commit from another member reaches the updated leaf.
				out, err = s.members[names[3]].Update(s.rand, testNow)
				if err != nil {
					t.Fatal(err)
				}
				s.commit(names[3], out, nil)
			})
		}
	}
}

// ExampleCreateGroup shows the life of a two-member group: Alice creates
// it, adds Bob from his KeyPackage, merges her commit once the Delivery
// Service accepted it, Bob joins from the Welcome, and they exchange a
// message.
func ExampleCreateGroup() {
	rand := testRand(2026) // use crypto/rand.Reader in real code
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	suite := CipherSuiteMLS128HybridX25519MLKEM768AES128GCMSHA256Ed25519
	cfg := Config{ValidateCredential: func(c Credential, _ []byte) error { return nil }}

	newMember := func(name string) *KeyPackagePrivate {
		sig, err := GenerateSignatureKey(suite, rand)
		if err != nil {
			panic(err)
		}
		kp, err := NewKeyPackage(rand, suite, Credential{Type: CredentialTypeBasic, Identity: []byte(name)}, sig, now, nil)
		if err != nil {
			panic(err)
		}
		return kp
	}
	alice, bob := newMember("alice"), newMember("bob")

	group, err := CreateGroup(rand, cfg, []byte("a random 32-byte group id......."), alice, nil)
	if err != nil {
		panic(err)
	}
	bobKP, err := bob.Message() // what Bob uploads and Alice fetches
	if err != nil {
		panic(err)
	}
	out, err := group.Add(rand, [][]byte{bobKP}, now)
	if err != nil {
		panic(err)
	}
	// ... the Delivery Service accepts out.Commit and out.Welcome ...
	ev, err := group.MergePending()
	if err != nil {
		panic(err)
	}
	fmt.Println("epoch", ev.Epoch, "added", string(ev.Added[0].Credential.Identity))

	bobGroup, err := JoinFromWelcome(cfg, out.Welcome, bob, nil, now)
	if err != nil {
		panic(err)
	}
	msg, err := group.Protect(rand, []byte("hello Bob"), nil)
	if err != nil {
		panic(err)
	}
	got, err := bobGroup.ProcessMessage(msg, now)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s: %s\n", got.SenderCredential.Identity, got.Data)
	fmt.Println("same epoch authenticator:", bytes.Equal(group.EpochAuthenticator(), bobGroup.EpochAuthenticator()))
	// Output:
	// epoch 1 added bob
	// alice: hello Bob
	// same epoch authenticator: true
}
