package mls

import (
	"bytes"
	"reflect"
	"testing"

	"golang.org/x/crypto/cryptobyte"
)

func TestSenderEncoding(t *testing.T) {
	for _, tc := range []struct {
		s    Sender
		want []byte
	}{
		{Sender{Type: SenderTypeMember, LeafIndex: 0x01020304}, []byte{1, 1, 2, 3, 4}},
		{Sender{Type: SenderTypeExternal, SenderIndex: 7}, []byte{2, 0, 0, 0, 7}},
		{Sender{Type: SenderTypeNewMemberProposal}, []byte{3}},
		{Sender{Type: SenderTypeNewMemberCommit}, []byte{4}},
	} {
		enc, err := marshalWith(tc.s.marshal)
		if err != nil || !bytes.Equal(enc, tc.want) {
			t.Errorf("Sender %+v encodes to %x, %v, want %x", tc.s, enc, err, tc.want)
		}
		var got Sender
		if err := unmarshalAll(tc.want, got.unmarshal); err != nil || got != tc.s {
			t.Errorf("Sender decode(%x) = %+v, %v, want %+v", tc.want, got, err, tc.s)
		}
	}
	for _, bad := range [][]byte{{0}, {5}, {1, 0, 0, 0}} {
		var got Sender
		if err := unmarshalAll(bad, got.unmarshal); err == nil {
			t.Errorf("Sender decode(%x) succeeded", bad)
		}
	}
}

// sampleFramedContents returns one FramedContent of every content type,
// from different kinds of sender.
func sampleFramedContents() []FramedContent {
	props := sampleProposals()
	commits := sampleCommits()
	return []FramedContent{
		{GroupID: []byte("g"), Epoch: 1, Sender: Sender{Type: SenderTypeMember, LeafIndex: 1},
			AuthenticatedData: []byte("aad"), ContentType: ContentTypeApplication, ApplicationData: []byte("hello")},
		{GroupID: []byte("g"), Epoch: 2, Sender: Sender{Type: SenderTypeExternal, SenderIndex: 0},
			ContentType: ContentTypeProposal, Proposal: &props[2]},
		{GroupID: []byte("g"), Epoch: 3, Sender: Sender{Type: SenderTypeNewMemberProposal},
			ContentType: ContentTypeProposal, Proposal: &props[0]},
		{GroupID: []byte("g"), Epoch: 4, Sender: Sender{Type: SenderTypeNewMemberCommit},
			ContentType: ContentTypeCommit, Commit: &commits[1]},
		{GroupID: []byte("g"), Epoch: 5, Sender: Sender{Type: SenderTypeMember, LeafIndex: 3},
			ContentType: ContentTypeCommit, Commit: &commits[0]},
	}
}

func sampleAuth(ct ContentType) FramedContentAuthData {
	a := FramedContentAuthData{Signature: []byte("sig")}
	if ct == ContentTypeCommit {
		a.ConfirmationTag = []byte("confirm")
	}
	return a
}

func TestFramedContentRoundTrip(t *testing.T) {
	for i, fc := range sampleFramedContents() {
		enc, err := fc.Marshal()
		if err != nil {
			t.Fatalf("Marshal(content %d): %v", i, err)
		}
		got, err := UnmarshalFramedContent(enc)
		if err != nil || !reflect.DeepEqual(*got, fc) {
			t.Errorf("UnmarshalFramedContent(Marshal(content %d)) = %+v, %v", i, got, err)
		}
	}
	bad := FramedContent{ContentType: ContentTypeCommit, Sender: Sender{Type: SenderTypeMember}}
	if _, err := bad.Marshal(); err == nil {
		t.Error("Marshal of commit content without a Commit succeeded")
	}
	bad.ContentType = 0
	if _, err := bad.Marshal(); err == nil {
		t.Error("Marshal of content type 0 succeeded")
	}
}

func TestPublicMessageRoundTrip(t *testing.T) {
	for i, fc := range sampleFramedContents() {
		pm := PublicMessage{Content: fc, Auth: sampleAuth(fc.ContentType)}
		if fc.Sender.Type == SenderTypeMember {
			pm.MembershipTag = []byte("membership")
		}
		enc, err := pm.Marshal()
		if err != nil {
			t.Fatalf("Marshal(public %d): %v", i, err)
		}
		got, err := UnmarshalPublicMessage(enc)
		if err != nil || !reflect.DeepEqual(*got, pm) {
			t.Errorf("UnmarshalPublicMessage(Marshal(public %d)) = %+v, %v", i, got, err)
		}
		// The membership tag is present exactly for member senders.
		content, _ := fc.Marshal()
		auth, _ := marshalWith(func(b *cryptobyte.Builder) { pm.Auth.marshal(b, fc.ContentType) })
		want := len(content) + len(auth)
		if fc.Sender.Type == SenderTypeMember {
			want += 1 + len(pm.MembershipTag)
		}
		if len(enc) != want {
			t.Errorf("public %d: encoding is %d bytes, want %d", i, len(enc), want)
		}
	}
}

func TestAuthenticatedContentRoundTrip(t *testing.T) {
	for i, fc := range sampleFramedContents() {
		for _, wf := range []WireFormat{WireFormatPublicMessage, WireFormatPrivateMessage} {
			ac := AuthenticatedContent{WireFormat: wf, Content: fc, Auth: sampleAuth(fc.ContentType)}
			enc, err := ac.Marshal()
			if err != nil {
				t.Fatalf("Marshal(authenticated %d): %v", i, err)
			}
			got, err := UnmarshalAuthenticatedContent(enc)
			if err != nil || !reflect.DeepEqual(*got, ac) {
				t.Errorf("UnmarshalAuthenticatedContent(Marshal(authenticated %d)) = %+v, %v", i, got, err)
			}
		}
	}
	ac := AuthenticatedContent{WireFormat: WireFormatWelcome, Content: sampleFramedContents()[0], Auth: sampleAuth(ContentTypeApplication)}
	enc, err := ac.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := UnmarshalAuthenticatedContent(enc); err == nil {
		t.Error("UnmarshalAuthenticatedContent accepted wire format mls_welcome")
	}
}

func TestFramedContentTBS(t *testing.T) {
	gc := sampleGroupContext()
	gcEnc, _ := gc.Marshal()
	for i, fc := range sampleFramedContents() {
		content, _ := fc.Marshal()
		want := append([]byte{0, 1, 0, 1}, content...)
		needsContext := fc.Sender.Type == SenderTypeMember || fc.Sender.Type == SenderTypeNewMemberCommit
		if needsContext {
			want = append(want, gcEnc...)
			if _, err := marshalFramedContentTBS(WireFormatPublicMessage, &fc, nil); err == nil {
				t.Errorf("content %d: FramedContentTBS without group context succeeded", i)
			}
		}
		got, err := marshalFramedContentTBS(WireFormatPublicMessage, &fc, &gc)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("content %d: FramedContentTBS = %x, %v, want %x", i, got, err, want)
		}
		auth := sampleAuth(fc.ContentType)
		tbm, err := marshalAuthenticatedContentTBM(got, &auth, fc.ContentType)
		authEnc, _ := marshalWith(func(b *cryptobyte.Builder) { auth.marshal(b, fc.ContentType) })
		if err != nil || !bytes.Equal(tbm, append(bytes.Clone(got), authEnc...)) {
			t.Errorf("content %d: AuthenticatedContentTBM != FramedContentTBS || auth", i)
		}
	}
}

func TestPrivateMessageRoundTrip(t *testing.T) {
	pm := PrivateMessage{
		GroupID: []byte("g"), Epoch: 1 << 40, ContentType: ContentTypeCommit,
		AuthenticatedData: []byte("aad"), EncryptedSenderData: []byte("esd"), Ciphertext: []byte("ct"),
	}
	enc, err := pm.Marshal()
	want := []byte{1, 'g', 0, 0, 1, 0, 0, 0, 0, 0, 3, 3, 'a', 'a', 'd', 3, 'e', 's', 'd', 2, 'c', 't'}
	if err != nil || !bytes.Equal(enc, want) {
		t.Errorf("PrivateMessage.Marshal = %x, %v, want %x", enc, err, want)
	}
	got, err := UnmarshalPrivateMessage(enc)
	if err != nil || !reflect.DeepEqual(*got, pm) {
		t.Errorf("UnmarshalPrivateMessage = %+v, %v", got, err)
	}
	for _, ct := range []byte{0, 4} {
		bad := bytes.Clone(enc)
		bad[10] = ct
		if _, err := UnmarshalPrivateMessage(bad); err == nil {
			t.Errorf("UnmarshalPrivateMessage with content type %d succeeded", ct)
		}
	}
}

func TestPrivateMessageContent(t *testing.T) {
	for i, fc := range sampleFramedContents() {
		for _, padding := range []int{0, 1, 100} {
			c := PrivateMessageContent{
				ApplicationData: fc.ApplicationData, Proposal: fc.Proposal, Commit: fc.Commit,
				Auth: sampleAuth(fc.ContentType), Padding: padding,
			}
			enc, err := c.Marshal(fc.ContentType)
			if err != nil {
				t.Fatalf("content %d: Marshal: %v", i, err)
			}
			if !bytes.Equal(enc[len(enc)-padding:], make([]byte, padding)) {
				t.Errorf("content %d: padding is not zero", i)
			}
			got, err := UnmarshalPrivateMessageContent(enc, fc.ContentType)
			if err != nil || !reflect.DeepEqual(*got, c) {
				t.Errorf("content %d padding %d: round trip = %+v, %v, want %+v", i, padding, got, err, c)
			}
			if padding > 0 {
				enc[len(enc)-1] = 1
				if _, err := UnmarshalPrivateMessageContent(enc, fc.ContentType); err == nil {
					t.Errorf("content %d: non-zero padding accepted", i)
				}
			}
		}
	}
	if _, err := UnmarshalPrivateMessageContent([]byte{0, 0}, 0); err == nil {
		t.Error("UnmarshalPrivateMessageContent with content type 0 succeeded")
	}
	if _, err := (&PrivateMessageContent{Padding: -1}).Marshal(ContentTypeApplication); err == nil {
		t.Error("Marshal with negative padding succeeded")
	}
}

func TestSenderDataAndAAD(t *testing.T) {
	sd := SenderData{LeafIndex: 2, Generation: 0x01000000, ReuseGuard: [4]byte{9, 8, 7, 6}}
	enc, err := sd.Marshal()
	want := []byte{0, 0, 0, 2, 1, 0, 0, 0, 9, 8, 7, 6}
	if err != nil || !bytes.Equal(enc, want) {
		t.Errorf("SenderData.Marshal = %x, %v, want %x", enc, err, want)
	}
	got, err := UnmarshalSenderData(enc)
	if err != nil || *got != sd {
		t.Errorf("UnmarshalSenderData = %+v, %v", got, err)
	}
	if _, err := UnmarshalSenderData(enc[:11]); err == nil {
		t.Error("UnmarshalSenderData of 11 bytes succeeded")
	}
	aad, n := appendPrivateContentAAD(nil, &PrivateMessage{GroupID: []byte("g"), Epoch: 7, ContentType: ContentTypeProposal})
	if want := []byte{1, 'g', 0, 0, 0, 0, 0, 0, 0, 7, 2}; !bytes.Equal(aad[:n], want) {
		t.Errorf("SenderDataAAD = %x, want %x", aad[:n], want)
	}
	aad, _ = appendPrivateContentAAD(nil, &PrivateMessage{GroupID: []byte("g"), Epoch: 7, ContentType: ContentTypeApplication, AuthenticatedData: []byte("x")})
	if want := []byte{1, 'g', 0, 0, 0, 0, 0, 0, 0, 7, 1, 1, 'x'}; !bytes.Equal(aad, want) {
		t.Errorf("PrivateContentAAD = %x, want %x", aad, want)
	}
}

func FuzzFramedContent(f *testing.F) {
	for _, fc := range sampleFramedContents() {
		enc, err := fc.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkRoundTrip(t, data, UnmarshalFramedContent, (*FramedContent).Marshal)
	})
}

func FuzzAuthenticatedContent(f *testing.F) {
	for _, fc := range sampleFramedContents() {
		ac := AuthenticatedContent{WireFormat: WireFormatPublicMessage, Content: fc, Auth: sampleAuth(fc.ContentType)}
		enc, err := ac.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkRoundTrip(t, data, UnmarshalAuthenticatedContent, (*AuthenticatedContent).Marshal)
	})
}

// FuzzPrivateMessageContent takes the content type from the first byte,
// as a receiver takes it from the clear PrivateMessage header.
func FuzzPrivateMessageContent(f *testing.F) {
	for _, fc := range sampleFramedContents() {
		c := PrivateMessageContent{ApplicationData: fc.ApplicationData, Proposal: fc.Proposal,
			Commit: fc.Commit, Auth: sampleAuth(fc.ContentType), Padding: 3}
		enc, err := c.Marshal(fc.ContentType)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(append([]byte{byte(fc.ContentType)}, enc...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		ct := ContentType(data[0])
		checkRoundTrip(t, data[1:],
			func(b []byte) (*PrivateMessageContent, error) { return UnmarshalPrivateMessageContent(b, ct) },
			func(c *PrivateMessageContent) ([]byte, error) { return c.Marshal(ct) })
	})
}

func FuzzSenderData(f *testing.F) {
	f.Add([]byte{0, 0, 0, 2, 1, 0, 0, 0, 9, 8, 7, 6})
	f.Fuzz(func(t *testing.T, data []byte) {
		checkRoundTrip(t, data, UnmarshalSenderData, (*SenderData).Marshal)
	})
}
