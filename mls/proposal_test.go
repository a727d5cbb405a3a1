package mls

import (
	"bytes"
	"reflect"
	"testing"
)

// sampleProposals returns one Proposal of every type RFC 9420 defines.
func sampleProposals() []Proposal {
	return []Proposal{
		{Type: ProposalTypeAdd, Add: &AddProposal{KeyPackage: sampleKeyPackage()}},
		{Type: ProposalTypeUpdate, Update: &UpdateProposal{LeafNode: sampleLeafNode(LeafNodeSourceUpdate)}},
		{Type: ProposalTypeRemove, Remove: &RemoveProposal{Removed: 0xfffffffe}},
		{Type: ProposalTypePSK, PreSharedKey: &PreSharedKeyProposal{PSK: PreSharedKeyID{
			Type: PSKTypeExternal, PSKID: []byte("psk id"), PSKNonce: []byte("nonce"),
		}}},
		{Type: ProposalTypePSK, PreSharedKey: &PreSharedKeyProposal{PSK: PreSharedKeyID{
			Type: PSKTypeResumption, Usage: ResumptionPSKUsageBranch, PSKGroupID: []byte("old"),
			PSKEpoch: 9, PSKNonce: []byte("nonce"),
		}}},
		{Type: ProposalTypeReInit, ReInit: &ReInitProposal{
			GroupID: []byte("new"), Version: ProtocolVersionMLS10,
			CipherSuite: CipherSuiteMLS256DHKEMP384AES256GCMSHA384P384,
			Extensions:  Extensions{{Type: 0xfafa, Data: []byte{1}}},
		}},
		{Type: ProposalTypeExternalInit, ExternalInit: &ExternalInitProposal{KEMOutput: []byte("kem output")}},
		{Type: ProposalTypeGroupContextExtensions, GroupContextExtensions: &GroupContextExtensionsProposal{
			Extensions: Extensions{{Type: ExtensionTypeRequiredCapabilities, Data: []byte{0, 0, 0}}},
		}},
		{Type: ProposalTypeGroupContextExtensions, GroupContextExtensions: &GroupContextExtensionsProposal{}},
	}
}

func TestProposalRoundTrip(t *testing.T) {
	for _, p := range sampleProposals() {
		enc, err := p.Marshal()
		if err != nil {
			t.Fatalf("Marshal(type %d): %v", p.Type, err)
		}
		if got := ProposalType(uint16(enc[0])<<8 | uint16(enc[1])); got != p.Type {
			t.Errorf("encoded proposal_type = %d, want %d", got, p.Type)
		}
		got, err := UnmarshalProposal(enc)
		if err != nil {
			t.Fatalf("UnmarshalProposal(type %d): %v", p.Type, err)
		}
		if !reflect.DeepEqual(*got, p) {
			t.Errorf("UnmarshalProposal(Marshal(p)) = %+v, want %+v", *got, p)
		}
	}
}

func TestProposalEncoding(t *testing.T) {
	p := Proposal{Type: ProposalTypeRemove, Remove: &RemoveProposal{Removed: 0x01020304}}
	enc, err := p.Marshal()
	if want := []byte{0, 3, 1, 2, 3, 4}; err != nil || !bytes.Equal(enc, want) {
		t.Errorf("Marshal(remove) = %x, %v, want %x", enc, err, want)
	}
	id := PreSharedKeyID{Type: PSKTypeResumption, Usage: ResumptionPSKUsageReInit, PSKGroupID: []byte{7}, PSKEpoch: 2, PSKNonce: []byte{8, 9}}
	enc, err = id.Marshal()
	if want := []byte{2, 2, 1, 7, 0, 0, 0, 0, 0, 0, 0, 2, 2, 8, 9}; err != nil || !bytes.Equal(enc, want) {
		t.Errorf("Marshal(resumption psk id) = %x, %v, want %x", enc, err, want)
	}
}

func TestProposalRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"reserved proposal type", []byte{0, 0, 0, 0, 0, 1}},
		{"unknown proposal type", []byte{0x0a, 0x0a, 0, 0, 0, 1}},
		{"truncated remove", []byte{0, 3, 0, 0, 0}},
		{"psk type 0", []byte{0, 4, 0, 0, 0}},
		{"psk type 3", []byte{0, 4, 3, 0, 0}},
		{"resumption usage 0", []byte{0, 4, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
		{"resumption usage 4", []byte{0, 4, 2, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
	} {
		if p, err := UnmarshalProposal(tc.in); err == nil || p != nil {
			t.Errorf("UnmarshalProposal(%x) [%s] = %+v, %v, want error", tc.in, tc.name, p, err)
		}
	}
	// The resumption encoding above is valid with usage 1.
	if _, err := UnmarshalProposal([]byte{0, 4, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}); err != nil {
		t.Errorf("UnmarshalProposal(valid resumption psk): %v", err)
	}
	for _, p := range []Proposal{
		{Type: ProposalTypeAdd},
		{Type: ProposalTypeAdd, Remove: &RemoveProposal{}},
		{Type: 0x0a0a, Remove: &RemoveProposal{}},
		{Type: ProposalTypePSK, PreSharedKey: &PreSharedKeyProposal{PSK: PreSharedKeyID{Type: 3}}},
	} {
		if _, err := p.Marshal(); err == nil {
			t.Errorf("Marshal(%+v) succeeded, want error", p)
		}
	}
}

func TestProposalOrRefRoundTrip(t *testing.T) {
	for _, p := range []ProposalOrRef{
		{Type: ProposalOrRefTypeProposal, Proposal: &sampleProposals()[2]},
		{Type: ProposalOrRefTypeReference, Reference: ProposalRef("0123456789abcdef0123456789abcdef")},
	} {
		enc, err := marshalWith(p.marshal)
		if err != nil {
			t.Fatal(err)
		}
		var got ProposalOrRef
		if err := unmarshalAll(enc, got.unmarshal); err != nil || !reflect.DeepEqual(got, p) {
			t.Errorf("ProposalOrRef round trip = %+v, %v, want %+v", got, err, p)
		}
	}
	var got ProposalOrRef
	if err := unmarshalAll([]byte{3, 0}, got.unmarshal); err == nil {
		t.Error("ProposalOrRef of type 3 decoded")
	}
}

func FuzzProposal(f *testing.F) {
	for _, p := range sampleProposals() {
		enc, err := p.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc)
	}
	addMessageSeeds(f, func(tc *messagesVector) [][]byte {
		// The vectors hold proposal bodies; prefix the type to get Proposals.
		withType := func(t ProposalType, body []byte) []byte {
			return append([]byte{byte(t >> 8), byte(t)}, body...)
		}
		return seeds(
			withType(ProposalTypeAdd, tc.AddProposal),
			withType(ProposalTypeUpdate, tc.UpdateProposal),
			withType(ProposalTypeRemove, tc.RemoveProposal),
			withType(ProposalTypePSK, tc.PreSharedKeyProposal),
			withType(ProposalTypeReInit, tc.ReInitProposal),
			withType(ProposalTypeExternalInit, tc.ExternalInitProposal),
			withType(ProposalTypeGroupContextExtensions, tc.GroupContextExtensionsProposal),
		)
	})
	f.Fuzz(func(t *testing.T, data []byte) {
		checkRoundTrip(t, data, UnmarshalProposal, (*Proposal).Marshal)
	})
}

func FuzzPreSharedKeyID(f *testing.F) {
	for _, p := range sampleProposals() {
		if p.PreSharedKey != nil {
			enc, err := p.PreSharedKey.PSK.Marshal()
			if err != nil {
				f.Fatal(err)
			}
			f.Add(enc)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkRoundTrip(t, data, UnmarshalPreSharedKeyID, (*PreSharedKeyID).Marshal)
	})
}
