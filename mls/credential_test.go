package mls

import (
	"bytes"
	"reflect"
	"testing"
)

func TestCredentialRoundTrip(t *testing.T) {
	for _, c := range []Credential{
		{Type: CredentialTypeBasic, Identity: []byte("alice")},
		{Type: CredentialTypeBasic},
		{Type: CredentialTypeX509, Certificates: [][]byte{[]byte("leaf"), []byte("ca")}},
		{Type: CredentialTypeX509},
	} {
		enc, err := c.Marshal()
		if err != nil {
			t.Fatalf("Marshal(%+v): %v", c, err)
		}
		got, err := UnmarshalCredential(enc)
		if err != nil {
			t.Fatalf("UnmarshalCredential(%x): %v", enc, err)
		}
		if !reflect.DeepEqual(*got, c) {
			t.Errorf("UnmarshalCredential(Marshal(%+v)) = %+v", c, *got)
		}
	}
}

func TestCredentialEncoding(t *testing.T) {
	c := Credential{Type: CredentialTypeBasic, Identity: []byte("ab")}
	enc, err := c.Marshal()
	if want := []byte{0, 1, 2, 'a', 'b'}; err != nil || !bytes.Equal(enc, want) {
		t.Errorf("Marshal(basic \"ab\") = %x, %v, want %x", enc, err, want)
	}
	c = Credential{Type: CredentialTypeX509, Certificates: [][]byte{{7}, {8, 9}}}
	enc, err = c.Marshal()
	if want := []byte{0, 2, 5, 1, 7, 2, 8, 9}; err != nil || !bytes.Equal(enc, want) {
		t.Errorf("Marshal(x509) = %x, %v, want %x", enc, err, want)
	}
}

func TestCredentialUnknownType(t *testing.T) {
	if _, err := UnmarshalCredential([]byte{0x0a, 0x0a, 0}); err == nil {
		t.Error("UnmarshalCredential of an unknown type succeeded")
	}
	if _, err := (&Credential{Type: 0x0a0a}).Marshal(); err == nil {
		t.Error("Marshal of an unknown credential type succeeded")
	}
}

func FuzzCredential(f *testing.F) {
	f.Add([]byte{0, 1, 2, 'a', 'b'})
	f.Add([]byte{0, 2, 5, 1, 7, 2, 8, 9})
	f.Fuzz(func(t *testing.T, data []byte) {
		checkRoundTrip(t, data, UnmarshalCredential, (*Credential).Marshal)
	})
}
