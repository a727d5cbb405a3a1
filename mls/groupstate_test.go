package mls

import (
	"bytes"
	"testing"
)

// TestGroupStateRoundTrip encodes members in every situation the state can
// be in — with past epochs, cached proposals, a pending commit — decodes
// them, checks the re-encoding is identical, and that the restored member
// carries on: merges its pending commit, processes and sends messages.
func TestGroupStateRoundTrip(t *testing.T) {
	for _, suite := range simSuites {
		t.Run(suiteName(suite), func(t *testing.T) {
			s := newSim(t, suite, 11)
			s.add(s.names()[0], 3)
			names := s.names()
			s.broadcast(names[1], []byte("before"))
			prop, err := s.members[names[1]].ProposeRemove(s.rand, s.leafOf(names[3]), testNow)
			if err != nil {
				t.Fatal(err)
			}
			s.deliver(names[1], prop, EventProposal)
			out, err := s.members[names[2]].CommitPending(s.rand, testNow)
			if err != nil {
				t.Fatal(err)
			}
			// Restore every member, the committer with its pending commit.
			for name, g := range s.members {
				st, err := g.Marshal()
				if err != nil {
					t.Fatal(err)
				}
				r, err := UnmarshalGroup(testConfig(), st)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				again, err := r.Marshal()
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(st, again) {
					t.Fatalf("%s: restored state encodes differently", name)
				}
				if !bytes.Equal(r.EpochAuthenticator(), g.EpochAuthenticator()) || r.OwnLeaf() != g.OwnLeaf() {
					t.Fatalf("%s: restored group differs", name)
				}
				s.members[name] = r
			}
			s.commit(names[2], out, nil)
			s.broadcast(names[0], []byte("after restore"))
			out, err = s.members[names[1]].Update(s.rand, testNow)
			if err != nil {
				t.Fatal(err)
			}
			s.commit(names[1], out, nil)
		})
	}
}

// TestUnmarshalGroupRefusals checks that a truncated or altered state is
// refused, and that an unknown version is.
func TestUnmarshalGroupRefusals(t *testing.T) {
	s := newSim(t, CipherSuiteMLS128DHKEMX25519AES128GCMSHA256Ed25519, 12)
	s.add(s.names()[0], 1)
	st, err := s.members[s.names()[0]].Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 1, 4, len(st) / 2, len(st) - 1} {
		if _, err := UnmarshalGroup(testConfig(), st[:n]); err == nil {
			t.Errorf("state truncated to %d bytes accepted", n)
		}
	}
	bad := bytes.Clone(st)
	bad[1] = 9
	if _, err := UnmarshalGroup(testConfig(), bad); err == nil {
		t.Error("state of an unknown version accepted")
	}
	if _, err := UnmarshalGroup(testConfig(), append(bytes.Clone(st), 0)); err == nil {
		t.Error("state with trailing bytes accepted")
	}
}

// FuzzUnmarshalGroup checks that decoding a state never panics and that a
// decoded state re-encodes to the same bytes.
func FuzzUnmarshalGroup(f *testing.F) {
	s := newSim(f, CipherSuiteMLS128DHKEMX25519AES128GCMSHA256Ed25519, 13)
	s.add(s.names()[0], 2)
	for _, g := range s.members {
		st, err := g.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(st)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := UnmarshalGroup(testConfig(), data)
		if err != nil {
			if g != nil {
				t.Fatal("error with a partial value")
			}
			return
		}
		again, err := g.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, data) {
			t.Fatal("decoded state re-encodes differently")
		}
	})
}
