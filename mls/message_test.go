package mls

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"

	"qpchat/internal/vectors"
)

// sampleMessages returns one MLSMessage of every wire format.
func sampleMessages() []MLSMessage {
	fcs := sampleFramedContents()
	w := sampleWelcome()
	gi := sampleGroupInfo()
	kp := sampleKeyPackage()
	return []MLSMessage{
		{Version: ProtocolVersionMLS10, WireFormat: WireFormatPublicMessage, PublicMessage: &PublicMessage{
			Content: fcs[4], Auth: sampleAuth(fcs[4].ContentType), MembershipTag: []byte("tag"),
		}},
		{Version: ProtocolVersionMLS10, WireFormat: WireFormatPublicMessage, PublicMessage: &PublicMessage{
			Content: fcs[3], Auth: sampleAuth(fcs[3].ContentType),
		}},
		{Version: ProtocolVersionMLS10, WireFormat: WireFormatPrivateMessage, PrivateMessage: &PrivateMessage{
			GroupID: []byte("g"), Epoch: 3, ContentType: ContentTypeApplication,
			EncryptedSenderData: []byte("esd"), Ciphertext: []byte("ct"),
		}},
		{Version: ProtocolVersionMLS10, WireFormat: WireFormatWelcome, Welcome: &w},
		{Version: ProtocolVersionMLS10, WireFormat: WireFormatGroupInfo, GroupInfo: &gi},
		{Version: ProtocolVersionMLS10, WireFormat: WireFormatKeyPackage, KeyPackage: &kp},
	}
}

func TestMLSMessageRoundTrip(t *testing.T) {
	for _, m := range sampleMessages() {
		enc, err := m.Marshal()
		if err != nil {
			t.Fatalf("Marshal(wire format %d): %v", m.WireFormat, err)
		}
		if enc[0] != 0 || enc[1] != 1 || enc[2] != 0 || WireFormat(enc[3]) != m.WireFormat {
			t.Errorf("MLSMessage header = %x, want 0001 %04x", enc[:4], m.WireFormat)
		}
		got, err := UnmarshalMLSMessage(enc)
		if err != nil || !reflect.DeepEqual(*got, m) {
			t.Errorf("UnmarshalMLSMessage(Marshal(wire format %d)) = %+v, %v", m.WireFormat, got, err)
		}
		// Every strict prefix is truncated and must fail cleanly.
		for i := range enc {
			if got, err := UnmarshalMLSMessage(enc[:i]); err == nil || got != nil {
				t.Fatalf("UnmarshalMLSMessage of a %d-byte prefix = %v, %v", i, got, err)
			}
		}
	}
	// The zero Version encodes as mls10.
	m := sampleMessages()[2]
	m.Version = 0
	enc, err := m.Marshal()
	if err != nil || enc[1] != 1 {
		t.Errorf("Marshal with zero version = %x, %v", enc, err)
	}
}

func TestMLSMessageRejects(t *testing.T) {
	m := sampleMessages()[2]
	enc, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		off  int
		val  byte
	}{
		{"version 0", 1, 0},
		{"version 2", 1, 2},
		{"wire format 0", 3, 0},
		{"wire format 6", 3, 6},
		{"wire format 0x0102", 2, 1},
	} {
		bad := append([]byte(nil), enc...)
		bad[tc.off] = tc.val
		if got, err := UnmarshalMLSMessage(bad); err == nil || got != nil {
			t.Errorf("UnmarshalMLSMessage [%s] = %+v, %v, want error", tc.name, got, err)
		}
	}
	for _, m := range []MLSMessage{
		{WireFormat: WireFormatWelcome},
		{WireFormat: WireFormatWelcome, KeyPackage: &KeyPackage{}},
		{WireFormat: 9, KeyPackage: &KeyPackage{}},
		{Version: 2, WireFormat: WireFormatPrivateMessage, PrivateMessage: &PrivateMessage{ContentType: ContentTypeApplication}},
	} {
		if _, err := m.Marshal(); err == nil {
			t.Errorf("Marshal(%+v) succeeded, want error", m)
		}
	}
}

// TestVectorFilesRoundTrip decodes and re-encodes every serialized MLS
// struct in the other IETF vector files, whose crypto checks live in their
// own tests; here only the codecs are under test.
func TestVectorFilesRoundTrip(t *testing.T) {
	type field struct {
		name string
		kind string
	}
	files := []struct {
		name   string
		fields []field
	}{
		{"welcome.json", []field{{"key_package", "MLSMessage"}, {"welcome", "MLSMessage"}}},
		{"message-protection.json", []field{
			{"proposal", "Proposal"}, {"proposal_pub", "MLSMessage"}, {"proposal_priv", "MLSMessage"},
			{"commit", "Commit"}, {"commit_pub", "MLSMessage"}, {"commit_priv", "MLSMessage"},
			{"application_priv", "MLSMessage"},
		}},
		{"transcript-hashes.json", []field{{"authenticated_content", "AuthenticatedContent"}}},
		{"tree-validation.json", []field{{"tree", "RatchetTree"}}},
		{"tree-operations.json", []field{{"tree_before", "RatchetTree"}, {"tree_after", "RatchetTree"}, {"proposal", "Proposal"}}},
		{"treekem.json", []field{{"ratchet_tree", "RatchetTree"}, {"update_paths.update_path", "UpdatePath"}}},
		{"passive-client-welcome.json", []field{
			{"key_package", "MLSMessage"}, {"welcome", "MLSMessage"}, {"ratchet_tree", "RatchetTree"},
			{"epochs.proposals", "MLSMessage"}, {"epochs.commit", "MLSMessage"},
		}},
		{"passive-client-handling-commit.json", []field{
			{"key_package", "MLSMessage"}, {"welcome", "MLSMessage"}, {"ratchet_tree", "RatchetTree"},
			{"epochs.proposals", "MLSMessage"}, {"epochs.commit", "MLSMessage"},
		}},
	}
	for _, file := range files {
		t.Run(file.name, func(t *testing.T) {
			var entries []map[string]json.RawMessage
			vectors.Load(t, "QPCHAT_MLS_VECTORS", "mls-test-vectors", file.name, &entries)
			if len(entries) == 0 {
				t.Fatalf("%s has no entries", file.name)
			}
			if testing.Short() && len(entries) > 10 {
				entries = entries[:10]
			}
			count := 0
			for i, e := range entries {
				for _, f := range file.fields {
					for _, data := range hexValues(t, e, f.name) {
						count++
						switch f.kind {
						case "MLSMessage":
							roundTrip[MLSMessage](t, f.name, data)
						case "Proposal":
							roundTrip[Proposal](t, f.name, data)
						case "Commit":
							roundTrip[Commit](t, f.name, data)
						case "AuthenticatedContent":
							roundTrip[AuthenticatedContent](t, f.name, data)
						case "RatchetTree":
							roundTrip[RatchetTree](t, f.name, data)
						case "UpdatePath":
							roundTrip[UpdatePath](t, f.name, data)
						default:
							t.Fatalf("%s: no codec for kind %q", f.name, f.kind)
						}
					}
				}
				if t.Failed() {
					t.Fatalf("entry %d failed", i)
				}
			}
			t.Logf("%s: %d entries, %d structs decoded and re-encoded byte-exact", file.name, len(entries), count)
		})
	}
}

// hexValues returns the hex strings at path in e: "a" is a hex string or
// null, "a.b" is field b of each object of list a, and a field may also be
// a list of hex strings.
func hexValues(t *testing.T, e map[string]json.RawMessage, path string) [][]byte {
	t.Helper()
	for i := 0; i < len(path); i++ {
		if path[i] == '.' {
			var list []map[string]json.RawMessage
			if err := json.Unmarshal(e[path[:i]], &list); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			var out [][]byte
			for _, sub := range list {
				out = append(out, hexValues(t, sub, path[i+1:])...)
			}
			return out
		}
	}
	raw, ok := e[path]
	if !ok {
		t.Fatalf("field %s missing", path)
	}
	var strs []*string
	if len(raw) > 0 && raw[0] == '[' {
		if err := json.Unmarshal(raw, &strs); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	} else {
		var s *string
		if err := json.Unmarshal(raw, &s); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		strs = []*string{s}
	}
	var out [][]byte
	for _, s := range strs {
		if s == nil {
			continue // optional value absent
		}
		b, err := hex.DecodeString(*s)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, b)
	}
	return out
}

func FuzzMLSMessage(f *testing.F) {
	for _, m := range sampleMessages() {
		enc, err := m.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc)
	}
	addMessageSeeds(f, func(tc *messagesVector) [][]byte {
		return seeds(tc.MLSWelcome, tc.MLSGroupInfo, tc.MLSKeyPackage, tc.PublicMessageApplication,
			tc.PublicMessageProposal, tc.PublicMessageCommit, tc.PrivateMessage)
	})
	f.Fuzz(func(t *testing.T, data []byte) {
		checkRoundTrip(t, data, UnmarshalMLSMessage, (*MLSMessage).Marshal)
	})
}

func ExampleUnmarshalMLSMessage() {
	msg := &MLSMessage{
		WireFormat: WireFormatPrivateMessage,
		PrivateMessage: &PrivateMessage{
			GroupID:             []byte("room"),
			Epoch:               7,
			ContentType:         ContentTypeApplication,
			EncryptedSenderData: []byte{0xaa},
			Ciphertext:          []byte{0xbb, 0xcc},
		},
	}
	data, err := msg.Marshal()
	if err != nil {
		panic(err)
	}
	fmt.Printf("%x\n", data)

	got, err := UnmarshalMLSMessage(data)
	if err != nil {
		panic(err)
	}
	fmt.Println(got.WireFormat == WireFormatPrivateMessage, string(got.PrivateMessage.GroupID), got.PrivateMessage.Epoch)

	_, err = UnmarshalMLSMessage(append(data, 0))
	fmt.Println(err)
	// Output:
	// 0001000204726f6f6d0000000000000007010001aa02bbcc
	// true room 7
	// mls: malformed encoding: 1 trailing bytes
}

func BenchmarkUnmarshalMLSMessage(b *testing.B) {
	for i, m := range sampleMessages() {
		data, err := m.Marshal()
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("wire_format=%d/%d/%dB", m.WireFormat, i, len(data)), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := UnmarshalMLSMessage(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkMarshalMLSMessage(b *testing.B) {
	for i, m := range sampleMessages() {
		b.Run(fmt.Sprintf("wire_format=%d/%d", m.WireFormat, i), func(b *testing.B) {
			for b.Loop() {
				if _, err := m.Marshal(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
