package client

import (
	"bytes"
	"testing"
)

// Seeds of every record type.
func recordSeeds() map[string][]byte {
	return map[string][]byte{
		"peer":   (&peerRecord{User: "bob", Key: bytes.Repeat([]byte{1}, 32), Verified: true, Changed: []byte{2}}).marshal(),
		"peer2":  (&peerRecord{User: "bob", Key: bytes.Repeat([]byte{1}, 32), Retired: [][]byte{bytes.Repeat([]byte{3}, 32), bytes.Repeat([]byte{4}, 32)}}).marshal(),
		"kp":     (&kpRecord{Suite: DefaultSuite, LastResort: true, Private: []byte("private")}).marshal(),
		"group":  (&groupRecord{ID: []byte("id"), Name: "g", Peer: "bob", State: []byte("state"), Pending: &pendingCommit{Commit: []byte("c"), Added: [][]byte{{1}, {}}}, Inviter: "alice", NameSent: true}).marshal(),
		"group2": (&groupRecord{ID: []byte("id"), Name: "g", Removed: true}).marshal(),
		"group3": (&groupRecord{ID: []byte("id"), Name: "g", State: []byte("state"), Leaving: true, LeaveAll: true, ProposedEpoch: 4,
			Leavers: [][]byte{{1}}, LeftDevices: [][]byte{{2}, {3}}}).marshal(),
		"event":   (&Event{Kind: EventMembers, Group: []byte("g"), Sender: "alice", Time: 5, Epoch: 2, Text: "added", Users: []string{"bob", "carol"}}).marshal(),
		"payload": (&payload{Kind: payloadMeta, Name: "friends", DM: true}).marshal(),
	}
}

func TestRecordRoundTrip(t *testing.T) {
	for name, b := range recordSeeds() {
		var again []byte
		switch name {
		case "peer", "peer2":
			r, err := parsePeer(b)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			again = r.marshal()
		case "kp":
			r, err := parseKP(b)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			again = r.marshal()
		case "group", "group2", "group3":
			r, err := parseGroup(b)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			again = r.marshal()
		case "event":
			r, err := parseEvent(b)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			again = r.marshal()
		case "payload":
			r, err := parsePayload(b)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			again = r.marshal()
		}
		if !bytes.Equal(again, b) {
			t.Errorf("%s: re-marshal differs", name)
		}
		// Truncations and trailing bytes are refused.
		if _, err := parseGroup(append(bytes.Clone(b), 0)); name == "group" && err == nil {
			t.Errorf("%s: trailing byte accepted", name)
		}
		for i := 0; i < len(b); i++ {
			if _, err := parseEvent(b[:i]); name == "event" && err == nil {
				t.Errorf("%s: truncation to %d accepted", name, i)
			}
		}
	}
}

// fuzzRecord checks that a successful parse re-marshals to the input.
func fuzzRecord[T interface{ marshal() []byte }](f *testing.F, parse func([]byte) (T, error)) {
	for _, s := range recordSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parse(b)
		if err != nil {
			return
		}
		if again := r.marshal(); !bytes.Equal(again, b) {
			t.Fatalf("parse(%x) re-marshals to %x", b, again)
		}
	})
}

func FuzzPeerRecord(f *testing.F)  { fuzzRecord(f, parsePeer) }
func FuzzKPRecord(f *testing.F)    { fuzzRecord(f, parseKP) }
func FuzzGroupRecord(f *testing.F) { fuzzRecord(f, parseGroup) }
func FuzzEvent(f *testing.F)       { fuzzRecord(f, parseEvent) }
func FuzzPayload(f *testing.F)     { fuzzRecord(f, parsePayload) }
