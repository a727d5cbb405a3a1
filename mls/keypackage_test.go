package mls

import (
	"bytes"
	"reflect"
	"testing"
)

func sampleKeyPackage() KeyPackage {
	return KeyPackage{
		Version:     ProtocolVersionMLS10,
		CipherSuite: CipherSuiteMLS128DHKEMP256AES128GCMSHA256P256,
		InitKey:     []byte("init key"),
		LeafNode:    sampleLeafNode(LeafNodeSourceKeyPackage),
		Extensions:  Extensions{{Type: 0x0a0a, Data: []byte{0}}},
		Signature:   []byte("kp signature"),
	}
}

func TestKeyPackageRoundTrip(t *testing.T) {
	kp := sampleKeyPackage()
	enc, err := kp.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := UnmarshalKeyPackage(enc)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*got, kp) {
		t.Errorf("UnmarshalKeyPackage(Marshal(kp)) = %+v, want %+v", *got, kp)
	}
	// Signature covers KeyPackageTBS: the encoding minus the signature.
	tbs, err := kp.marshalTBS()
	if err != nil {
		t.Fatal(err)
	}
	want := append(bytes.Clone(tbs), byte(len(kp.Signature)))
	want = append(want, kp.Signature...)
	if !bytes.Equal(enc, want) {
		t.Errorf("Marshal(kp) != KeyPackageTBS || opaque(signature)")
	}
	// Every strict prefix is a truncated KeyPackage.
	for i := range enc {
		if _, err := UnmarshalKeyPackage(enc[:i]); err == nil {
			t.Fatalf("UnmarshalKeyPackage of a %d-byte prefix succeeded", i)
		}
	}
}

func FuzzKeyPackage(f *testing.F) {
	kp := sampleKeyPackage()
	enc, err := kp.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(enc)
	addMessageSeeds(f, func(tc *messagesVector) [][]byte {
		// The Add proposal body is exactly a KeyPackage.
		return seeds(tc.AddProposal)
	})
	f.Fuzz(func(t *testing.T, data []byte) {
		checkRoundTrip(t, data, UnmarshalKeyPackage, (*KeyPackage).Marshal)
	})
}
