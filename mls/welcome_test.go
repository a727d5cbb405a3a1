package mls

import (
	"bytes"
	"reflect"
	"testing"

	"golang.org/x/crypto/cryptobyte"
)

func sampleGroupInfo() GroupInfo {
	return GroupInfo{
		GroupContext:    sampleGroupContext(),
		Extensions:      Extensions{{Type: ExtensionTypeExternalPub, Data: []byte{2, 1, 2}}},
		ConfirmationTag: []byte("tag"),
		Signer:          3,
		Signature:       []byte("gi signature"),
	}
}

func sampleGroupSecrets() []GroupSecrets {
	return []GroupSecrets{
		{JoinerSecret: []byte("joiner")},
		{
			JoinerSecret: []byte("joiner"),
			PathSecret:   &PathSecret{PathSecret: []byte("path")},
			PSKs: []PreSharedKeyID{
				{Type: PSKTypeExternal, PSKID: []byte("id"), PSKNonce: []byte("n1")},
				{Type: PSKTypeResumption, Usage: ResumptionPSKUsageApplication, PSKGroupID: []byte("g"), PSKEpoch: 4, PSKNonce: []byte("n2")},
			},
		},
	}
}

func sampleWelcome() Welcome {
	return Welcome{
		CipherSuite: CipherSuiteMLS256DHKEMX448AES256GCMSHA512Ed448,
		Secrets: []EncryptedGroupSecrets{
			{NewMember: KeyPackageRef("ref1"), EncryptedGroupSecrets: HPKECiphertext{KEMOutput: []byte("k1"), Ciphertext: []byte("c1")}},
			{NewMember: KeyPackageRef("ref2"), EncryptedGroupSecrets: HPKECiphertext{KEMOutput: []byte("k2"), Ciphertext: []byte("c2")}},
		},
		EncryptedGroupInfo: []byte("encrypted group info"),
	}
}

func TestGroupInfoRoundTrip(t *testing.T) {
	gi := sampleGroupInfo()
	enc, err := gi.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := UnmarshalGroupInfo(enc)
	if err != nil || !reflect.DeepEqual(*got, gi) {
		t.Errorf("UnmarshalGroupInfo(Marshal(gi)) = %+v, %v, want %+v", got, err, gi)
	}
	tbs, err := gi.marshalTBS()
	if err != nil {
		t.Fatal(err)
	}
	// GroupInfoTBS ends with the signer's leaf index; the signature follows.
	if !bytes.HasSuffix(tbs, []byte{0, 0, 0, 3}) {
		t.Errorf("GroupInfoTBS = %x, want it to end with signer 00000003", tbs)
	}
	want := append(bytes.Clone(tbs), byte(len(gi.Signature)))
	if !bytes.Equal(enc, append(want, gi.Signature...)) {
		t.Error("GroupInfo encoding != GroupInfoTBS || opaque(signature)")
	}
}

func TestGroupSecretsRoundTrip(t *testing.T) {
	for i, gs := range sampleGroupSecrets() {
		enc, err := gs.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		got, err := UnmarshalGroupSecrets(enc)
		if err != nil || !reflect.DeepEqual(*got, gs) {
			t.Errorf("UnmarshalGroupSecrets(Marshal(gs %d)) = %+v, %v, want %+v", i, got, err, gs)
		}
	}
	// joiner_secret "j", path_secret absent, no PSKs.
	enc, err := (&GroupSecrets{JoinerSecret: []byte("j")}).Marshal()
	if want := []byte{1, 'j', 0, 0}; err != nil || !bytes.Equal(enc, want) {
		t.Errorf("Marshal(GroupSecrets) = %x, %v, want %x", enc, err, want)
	}
	if _, err := UnmarshalGroupSecrets([]byte{1, 'j', 2, 0}); err == nil {
		t.Error("UnmarshalGroupSecrets with optional presence 2 succeeded")
	}
}

func TestWelcomeRoundTrip(t *testing.T) {
	w := sampleWelcome()
	enc, err := w.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := UnmarshalWelcome(enc)
	if err != nil || !reflect.DeepEqual(*got, w) {
		t.Errorf("UnmarshalWelcome(Marshal(w)) = %+v, %v, want %+v", got, err, w)
	}
}

func FuzzWelcome(f *testing.F) {
	w := sampleWelcome()
	enc, err := w.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(enc)
	addMessageSeeds(f, func(tc *messagesVector) [][]byte {
		return seeds(tc.MLSWelcome[4:]) // strip the MLSMessage header
	})
	f.Fuzz(func(t *testing.T, data []byte) {
		checkRoundTrip(t, data, UnmarshalWelcome, (*Welcome).Marshal)
		// Decoding without copies (openWelcomeFor) accepts the same
		// inputs and gives the same Welcome.
		copied, err := UnmarshalWelcome(data)
		shared := new(Welcome)
		errShared := unmarshalAll(data, func(s *cryptobyte.String) error { return shared.decode(s, true) })
		if (err == nil) != (errShared == nil) || (err == nil && !reflect.DeepEqual(copied, shared)) {
			t.Fatalf("shared decode = %+v, %v; copying decode = %+v, %v", shared, errShared, copied, err)
		}
	})
}

func FuzzGroupInfo(f *testing.F) {
	gi := sampleGroupInfo()
	enc, err := gi.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(enc)
	addMessageSeeds(f, func(tc *messagesVector) [][]byte {
		return seeds(tc.MLSGroupInfo[4:]) // strip the MLSMessage header
	})
	f.Fuzz(func(t *testing.T, data []byte) {
		checkRoundTrip(t, data, UnmarshalGroupInfo, (*GroupInfo).Marshal)
	})
}

func FuzzGroupSecrets(f *testing.F) {
	for _, gs := range sampleGroupSecrets() {
		enc, err := gs.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc)
	}
	addMessageSeeds(f, func(tc *messagesVector) [][]byte { return seeds(tc.GroupSecrets) })
	f.Fuzz(func(t *testing.T, data []byte) {
		checkRoundTrip(t, data, UnmarshalGroupSecrets, (*GroupSecrets).Marshal)
	})
}
