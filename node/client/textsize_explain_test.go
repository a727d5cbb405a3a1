package client

import "testing"

func TestTooLargeSizes(t *testing.T) {
	for _, c := range []struct {
		msg         string
		size, limit int
		ok          bool
	}{
		{"node.capnp:Session.send: qpchat limit: the message is 1049000 bytes, the limit (--max-message-size) is 1048576", 1049000, 1048576, true},
		{"qpchat limit: message is 12 bytes, the limit (--max-message-size) is 10 (and more)", 12, 10, true},
		{"qpchat limit: is  bytes, the limit (--max-message-size) is 10", 0, 0, false},
		{"qpchat limit: the message is 99999999999999999999999 bytes, the limit (--max-message-size) is 10", 0, 0, false},
		{"qpchat limit: too many messages", 0, 0, false},
		{"the limit (--max-message-size) is 5", 0, 0, false},
	} {
		size, limit, ok := tooLargeSizes(c.msg)
		if size != c.size || limit != c.limit || ok != c.ok {
			t.Errorf("tooLargeSizes(%q) = %d, %d, %v; want %d, %d, %v", c.msg, size, limit, ok, c.size, c.limit, c.ok)
		}
	}
}

func FuzzTooLargeSizes(f *testing.F) {
	f.Add("x is 12 bytes, the limit (--max-message-size) is 10")
	f.Fuzz(func(t *testing.T, msg string) {
		size, limit, ok := tooLargeSizes(msg)
		if ok && (size < 0 || limit < 0) {
			t.Fatalf("negative sizes %d, %d from %q", size, limit, msg)
		}
	})
}
