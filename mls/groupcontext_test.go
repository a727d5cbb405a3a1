package mls

import (
	"bytes"
	"reflect"
	"testing"
)

func sampleGroupContext() GroupContext {
	return GroupContext{
		Version:                 ProtocolVersionMLS10,
		CipherSuite:             CipherSuiteMLS128DHKEMX25519AES128GCMSHA256Ed25519,
		GroupID:                 []byte("gid"),
		Epoch:                   0x0102030405060708,
		TreeHash:                []byte{0xaa},
		ConfirmedTranscriptHash: []byte{0xbb, 0xcc},
		Extensions:              Extensions{{Type: ExtensionTypeExternalSenders, Data: []byte{0}}},
	}
}

func TestGroupContextEncoding(t *testing.T) {
	gc := sampleGroupContext()
	enc, err := gc.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{
		0, 1, // version
		0, 1, // cipher_suite
		3, 'g', 'i', 'd', // group_id
		1, 2, 3, 4, 5, 6, 7, 8, // epoch
		1, 0xaa, // tree_hash
		2, 0xbb, 0xcc, // confirmed_transcript_hash
		4, 0, 5, 1, 0, // extensions
	}
	if !bytes.Equal(enc, want) {
		t.Errorf("GroupContext.Marshal = %x, want %x", enc, want)
	}
	got, err := UnmarshalGroupContext(enc)
	if err != nil || !reflect.DeepEqual(*got, gc) {
		t.Errorf("UnmarshalGroupContext = %+v, %v, want %+v", got, err, gc)
	}
	if _, err := UnmarshalGroupContext(enc[:len(enc)-1]); err == nil {
		t.Error("UnmarshalGroupContext of a truncated encoding succeeded")
	}
}

func FuzzGroupContext(f *testing.F) {
	gc := sampleGroupContext()
	enc, err := gc.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(enc)
	f.Fuzz(func(t *testing.T, data []byte) {
		checkRoundTrip(t, data, UnmarshalGroupContext, (*GroupContext).Marshal)
	})
}
