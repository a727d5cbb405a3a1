package mls

import (
	"bytes"
	"fmt"
	"testing"

	"qpchat/internal/vectors"
)

// messagesVector mirrors one entry of messages.json (see FORMAT.md,
// "Messages").
type messagesVector struct {
	MLSWelcome                     vectors.Hex `json:"mls_welcome"`
	MLSGroupInfo                   vectors.Hex `json:"mls_group_info"`
	MLSKeyPackage                  vectors.Hex `json:"mls_key_package"`
	RatchetTree                    vectors.Hex `json:"ratchet_tree"`
	GroupSecrets                   vectors.Hex `json:"group_secrets"`
	AddProposal                    vectors.Hex `json:"add_proposal"`
	UpdateProposal                 vectors.Hex `json:"update_proposal"`
	RemoveProposal                 vectors.Hex `json:"remove_proposal"`
	PreSharedKeyProposal           vectors.Hex `json:"pre_shared_key_proposal"`
	ReInitProposal                 vectors.Hex `json:"re_init_proposal"`
	ExternalInitProposal           vectors.Hex `json:"external_init_proposal"`
	GroupContextExtensionsProposal vectors.Hex `json:"group_context_extensions_proposal"`
	Commit                         vectors.Hex `json:"commit"`
	PublicMessageApplication       vectors.Hex `json:"public_message_application"`
	PublicMessageProposal          vectors.Hex `json:"public_message_proposal"`
	PublicMessageCommit            vectors.Hex `json:"public_message_commit"`
	PrivateMessage                 vectors.Hex `json:"private_message"`
}

// roundTrip decodes data into a fresh T, rejecting trailing bytes, then
// re-encodes the decoded value and compares the bytes.
func roundTrip[T any, PT interface {
	*T
	codec
}](t *testing.T, name string, data []byte) *T {
	t.Helper()
	v := PT(new(T))
	if err := unmarshalAll(data, v.unmarshal); err != nil {
		t.Errorf("decode %s: %v", name, err)
		return nil
	}
	got, err := marshalWith(v.marshal)
	if err != nil {
		t.Errorf("encode %s: %v", name, err)
		return nil
	}
	if !bytes.Equal(got, data) {
		t.Errorf("encode(decode(%s)) = %x, want %x", name, got, data)
		return nil
	}
	return (*T)(v)
}

func TestMessages(t *testing.T) {
	var tests []messagesVector
	vectors.Load(t, "QPCHAT_MLS_VECTORS", "mls-test-vectors", "messages.json", &tests)
	if len(tests) == 0 {
		t.Fatal("messages.json has no entries")
	}
	passed := 0
	for i, tc := range tests {
		ok := t.Run(fmt.Sprint(i), func(t *testing.T) { testMessages(t, &tc) })
		if ok {
			passed++
		} else {
			t.Logf("entry %d failed", i)
		}
	}
	t.Logf("messages.json: %d/%d entries passed (17 fields each)", passed, len(tests))

	// Every strict prefix of a real message is truncated and must fail
	// cleanly (the fuzz targets explore the rest).
	tc := tests[0]
	for name, data := range map[string][]byte{
		"mls_welcome": tc.MLSWelcome, "mls_group_info": tc.MLSGroupInfo, "mls_key_package": tc.MLSKeyPackage,
		"public_message_commit": tc.PublicMessageCommit, "private_message": tc.PrivateMessage,
	} {
		for i := range data {
			if m, err := UnmarshalMLSMessage(data[:i]); err == nil || m != nil {
				t.Fatalf("UnmarshalMLSMessage(%s[:%d]) = %v, %v, want error", name, i, m, err)
			}
		}
	}
	for i := range tc.RatchetTree {
		if _, err := UnmarshalRatchetTree(tc.RatchetTree[:i]); err == nil {
			t.Fatalf("UnmarshalRatchetTree(ratchet_tree[:%d]) succeeded", i)
		}
	}
}

func testMessages(t *testing.T, tc *messagesVector) {
	wantWireFormat := func(name string, m *MLSMessage, wf WireFormat) {
		t.Helper()
		if m != nil && m.WireFormat != wf {
			t.Errorf("%s: wire_format = %d, want %d", name, m.WireFormat, wf)
		}
	}
	wantWireFormat("mls_welcome", roundTrip[MLSMessage](t, "mls_welcome", tc.MLSWelcome), WireFormatWelcome)
	wantWireFormat("mls_group_info", roundTrip[MLSMessage](t, "mls_group_info", tc.MLSGroupInfo), WireFormatGroupInfo)
	wantWireFormat("mls_key_package", roundTrip[MLSMessage](t, "mls_key_package", tc.MLSKeyPackage), WireFormatKeyPackage)

	roundTrip[RatchetTree](t, "ratchet_tree", tc.RatchetTree)
	roundTrip[GroupSecrets](t, "group_secrets", tc.GroupSecrets)

	roundTrip[AddProposal](t, "add_proposal", tc.AddProposal)
	roundTrip[UpdateProposal](t, "update_proposal", tc.UpdateProposal)
	roundTrip[RemoveProposal](t, "remove_proposal", tc.RemoveProposal)
	roundTrip[PreSharedKeyProposal](t, "pre_shared_key_proposal", tc.PreSharedKeyProposal)
	roundTrip[ReInitProposal](t, "re_init_proposal", tc.ReInitProposal)
	roundTrip[ExternalInitProposal](t, "external_init_proposal", tc.ExternalInitProposal)
	roundTrip[GroupContextExtensionsProposal](t, "group_context_extensions_proposal", tc.GroupContextExtensionsProposal)

	roundTrip[Commit](t, "commit", tc.Commit)

	publicMessage := func(name string, data []byte, ct ContentType) {
		t.Helper()
		m := roundTrip[MLSMessage](t, name, data)
		if m == nil {
			return
		}
		if m.WireFormat != WireFormatPublicMessage {
			t.Errorf("%s: wire_format = %d, want %d", name, m.WireFormat, WireFormatPublicMessage)
			return
		}
		if got := m.PublicMessage.Content.ContentType; got != ct {
			t.Errorf("%s: content_type = %d, want %d", name, got, ct)
		}
	}
	publicMessage("public_message_application", tc.PublicMessageApplication, ContentTypeApplication)
	publicMessage("public_message_proposal", tc.PublicMessageProposal, ContentTypeProposal)
	publicMessage("public_message_commit", tc.PublicMessageCommit, ContentTypeCommit)
	wantWireFormat("private_message", roundTrip[MLSMessage](t, "private_message", tc.PrivateMessage), WireFormatPrivateMessage)
}
