package rpc

import (
	"bytes"
	"testing"
)

// TestOutgoingMessagesGrow builds, in one outgoing message, the kind of
// answer that broke on the library's multi-segment arena: a list of
// structs whose fields have mixed sizes, well past the first segment.
func TestOutgoingMessagesGrow(t *testing.T) {
	tr := newSingleSegmentTransport(newStreamCodec(byteStream{bytes.NewReader(nil)}, MessageLimits{}))
	out, err := tr.NewMessage()
	if err != nil {
		t.Fatal(err)
	}
	defer out.Release()
	msg := out.Message().Message()
	seg, err := msg.Segment(0)
	if err != nil {
		t.Fatal(err)
	}
	l, err := NewQueuedMessage_List(seg, 300)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < l.Len(); i++ {
		e := l.At(i)
		if err := e.SetMessage_(bytes.Repeat([]byte{byte(i)}, 200+i)); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if err := e.SetGroup(make([]byte, 32)); err != nil {
			t.Fatalf("group %d: %v", i, err)
		}
		if err := e.SetSender(make([]byte, 32)); err != nil {
			t.Fatalf("sender %d: %v", i, err)
		}
	}
	for i := 0; i < l.Len(); i++ {
		m, _ := l.At(i).Message_()
		if len(m) != 200+i || m[0] != byte(i) {
			t.Fatalf("message %d reads back wrong", i)
		}
	}
}
