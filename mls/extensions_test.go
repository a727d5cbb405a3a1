package mls

import (
	"bytes"
	"reflect"
	"testing"
)

// unmarshalExtensions decodes a whole extension list, for tests and fuzzing.
func unmarshalExtensions(data []byte) (Extensions, error) {
	var es Extensions
	if err := unmarshalAll(data, es.unmarshal); err != nil {
		return nil, err
	}
	return es, nil
}

func marshalExtensions(es Extensions) ([]byte, error) { return marshalWith(es.marshal) }

func TestExtensionsRoundTrip(t *testing.T) {
	es := Extensions{
		{Type: ExtensionTypeApplicationID, Data: []byte("app")},
		{Type: 0x0a0a, Data: []byte{1, 2, 3}}, // GREASE (RFC 9420, Section 13.5)
		{Type: 0xff00},                        // private use, empty body
	}
	enc, err := marshalExtensions(es)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{15, 0, 1, 3, 'a', 'p', 'p', 0x0a, 0x0a, 3, 1, 2, 3, 0xff, 0, 0}
	if !bytes.Equal(enc, want) {
		t.Errorf("marshalExtensions = %x, want %x", enc, want)
	}
	got, err := unmarshalExtensions(enc)
	if err != nil || !reflect.DeepEqual(got, es) {
		t.Errorf("unmarshalExtensions(%x) = %+v, %v, want %+v", enc, got, err, es)
	}
	if d, ok := got.Find(0x0a0a); !ok || !bytes.Equal(d, []byte{1, 2, 3}) {
		t.Errorf("Find(0x0a0a) = %x, %v", d, ok)
	}
	if _, ok := got.Find(ExtensionTypeRatchetTree); ok {
		t.Error("Find(ratchet_tree) found an absent extension")
	}
}

func TestExtensionsRejectDuplicates(t *testing.T) {
	dup := []byte{6, 0, 5, 0, 0, 5, 0}
	if _, err := unmarshalExtensions(dup); err == nil {
		t.Error("unmarshalExtensions accepted two external_senders extensions")
	}
	// The same list inside a GroupContext is rejected too.
	gc := []byte{0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	if _, err := UnmarshalGroupContext(append(gc, dup...)); err == nil {
		t.Error("UnmarshalGroupContext accepted duplicate extensions")
	}
}

func TestRequiredCapabilitiesRoundTrip(t *testing.T) {
	r := RequiredCapabilities{
		ExtensionTypes:  []ExtensionType{ExtensionTypeExternalSenders, 0x1a1a},
		ProposalTypes:   []ProposalType{ProposalTypeReInit, 0x2a2a},
		CredentialTypes: []CredentialType{CredentialTypeBasic},
	}
	enc, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{4, 0, 5, 0x1a, 0x1a, 4, 0, 5, 0x2a, 0x2a, 2, 0, 1}
	if !bytes.Equal(enc, want) {
		t.Errorf("RequiredCapabilities.Marshal = %x, want %x", enc, want)
	}
	got, err := UnmarshalRequiredCapabilities(enc)
	if err != nil || !reflect.DeepEqual(*got, r) {
		t.Errorf("UnmarshalRequiredCapabilities = %+v, %v", got, err)
	}
	// A 16-bit list with an odd body length is malformed.
	if _, err := UnmarshalRequiredCapabilities([]byte{3, 0, 5, 0, 0, 0}); err == nil {
		t.Error("UnmarshalRequiredCapabilities accepted an odd-length list")
	}
}

func TestExternalSendersRoundTrip(t *testing.T) {
	es := ExternalSenders{
		{SignatureKey: []byte{1, 2}, Credential: Credential{Type: CredentialTypeBasic, Identity: []byte("ds")}},
		{SignatureKey: []byte{3}, Credential: Credential{Type: CredentialTypeX509, Certificates: [][]byte{{4}}}},
	}
	enc, err := es.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := UnmarshalExternalSenders(enc)
	if err != nil || !reflect.DeepEqual(got, es) {
		t.Errorf("UnmarshalExternalSenders(Marshal(es)) = %+v, %v", got, err)
	}
}

func TestExternalPubAndApplicationID(t *testing.T) {
	e := ExternalPub{ExternalPub: []byte{9, 9, 9}}
	enc, err := e.Marshal()
	if err != nil || !bytes.Equal(enc, []byte{3, 9, 9, 9}) {
		t.Errorf("ExternalPub.Marshal = %x, %v", enc, err)
	}
	got, err := UnmarshalExternalPub(enc)
	if err != nil || !reflect.DeepEqual(*got, e) {
		t.Errorf("UnmarshalExternalPub = %+v, %v", got, err)
	}
	a := ApplicationID("qpchat")
	enc, err = a.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	a2, err := UnmarshalApplicationID(enc)
	if err != nil || !bytes.Equal(a2, a) {
		t.Errorf("UnmarshalApplicationID = %q, %v", a2, err)
	}
	if _, err := UnmarshalApplicationID(append(enc, 0)); err == nil {
		t.Error("UnmarshalApplicationID accepted a trailing byte")
	}
}

func FuzzExtensions(f *testing.F) {
	f.Add([]byte{15, 0, 1, 3, 'a', 'p', 'p', 0x0a, 0x0a, 3, 1, 2, 3, 0xff, 0, 0})
	f.Add([]byte{6, 0, 5, 0, 0, 5, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		checkRoundTrip(t, data, unmarshalExtensions, marshalExtensions)
		// The extension bodies qpchat interprets must never panic either.
		checkRoundTrip(t, data, UnmarshalExternalSenders, ExternalSenders.Marshal)
		checkRoundTrip(t, data, UnmarshalRequiredCapabilities, (*RequiredCapabilities).Marshal)
		checkRoundTrip(t, data, UnmarshalExternalPub, (*ExternalPub).Marshal)
	})
}
