package rpc

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	capnp "capnproto.org/go/capnp/v3"
	rpccp "capnproto.org/go/capnp/v3/std/capnp/rpc"
	"github.com/quic-go/quic-go"
)

// byteStream feeds a fixed input to the codec; writes are discarded.
type byteStream struct{ *bytes.Reader }

func (byteStream) Write(p []byte) (int, error)      { return len(p), nil }
func (byteStream) SetReadDeadline(time.Time) error  { return nil }
func (byteStream) CancelRead(quic.StreamErrorCode)  {}
func (byteStream) SetWriteDeadline(time.Time) error { return nil }
func (byteStream) CancelWrite(quic.StreamErrorCode) {}
func (byteStream) Close() error                     { return nil }

// bootstrapFrame returns an RPC Bootstrap message, framed.
func bootstrapFrame(t testing.TB) []byte {
	t.Helper()
	msg, seg := capnp.NewSingleSegmentMessage(nil)
	m, err := rpccp.NewRootMessage(seg)
	if err != nil {
		t.Fatal(err)
	}
	bs, err := m.NewBootstrap()
	if err != nil {
		t.Fatal(err)
	}
	bs.SetQuestionId(7)
	b, err := msg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestStreamCodecLimits(t *testing.T) {
	frame := bootstrapFrame(t)
	c := newStreamCodec(byteStream{bytes.NewReader(frame)}, MessageLimits{})
	m, err := c.Decode()
	if err != nil {
		t.Fatalf("Decode(bootstrap) = %v", err)
	}
	root, err := rpccp.ReadRootMessage(m)
	if err != nil || root.Which() != rpccp.Message_Which_bootstrap {
		t.Fatalf("decoded message = %v, %v; want a bootstrap", root, err)
	}
	if bs, err := root.Bootstrap(); err != nil || bs.QuestionId() != 7 {
		t.Errorf("bootstrap question = %v, %v; want 7", bs.QuestionId(), err)
	}
	if _, err := c.Decode(); !errors.Is(err, io.EOF) {
		t.Errorf("Decode at end = %v, want EOF", err)
	}

	// A frame larger than MaxMessageSize is refused.
	big := newStreamCodec(byteStream{bytes.NewReader(frame)}, MessageLimits{MaxMessageSize: uint64(len(frame) - 8)})
	if _, err := big.Decode(); err == nil {
		t.Error("Decode accepted a frame above MaxMessageSize")
	}
}

// stallStream delivers some bytes, then blocks until its read deadline.
type stallStream struct {
	mu       sync.Mutex
	data     []byte
	deadline time.Time
}

func (s *stallStream) Read(p []byte) (int, error) {
	s.mu.Lock()
	if len(s.data) > 0 {
		n := copy(p, s.data)
		s.data = s.data[n:]
		s.mu.Unlock()
		return n, nil
	}
	d := s.deadline
	s.mu.Unlock()
	if d.IsZero() {
		return 0, errors.New("test: read with no deadline would block forever")
	}
	time.Sleep(time.Until(d))
	return 0, timeoutErr{}
}

type timeoutErr struct{}

func (timeoutErr) Error() string { return "deadline exceeded" }
func (timeoutErr) Timeout() bool { return true }

func (s *stallStream) Write(p []byte) (int, error) { return len(p), nil }
func (s *stallStream) SetReadDeadline(t time.Time) error {
	s.mu.Lock()
	s.deadline = t
	s.mu.Unlock()
	return nil
}
func (s *stallStream) CancelRead(quic.StreamErrorCode)  {}
func (s *stallStream) SetWriteDeadline(time.Time) error { return nil }
func (s *stallStream) CancelWrite(quic.StreamErrorCode) {}
func (s *stallStream) Close() error                     { return nil }

func TestStreamCodecFrameTimeout(t *testing.T) {
	frame := bootstrapFrame(t)
	st := &stallStream{data: frame[:len(frame)/2]}
	c := newStreamCodec(st, MessageLimits{FrameTimeout: 50 * time.Millisecond})
	_, err := c.Decode()
	if err == nil || !strings.Contains(err.Error(), "frame not completed") {
		t.Errorf("Decode of a stalled half frame = %v, want a frame timeout", err)
	}
	if !st.deadline.IsZero() {
		t.Error("the frame deadline outlived Decode")
	}
}

// FuzzStreamCodec feeds arbitrary bytes to the codec the node reads its
// peers with: it must not panic, and a frame it accepts must re-marshal
// to exactly the bytes it consumed.
func FuzzStreamCodec(f *testing.F) {
	frame := bootstrapFrame(f)
	f.Add(frame)
	f.Add(frame[:len(frame)/2])
	f.Add(append(append([]byte{}, frame...), frame...))
	f.Add(bytes.Repeat([]byte{0xff}, 16))
	f.Add([]byte{0, 0, 0, 0, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		c := newStreamCodec(byteStream{r}, MessageLimits{MaxMessageSize: 1 << 16})
		m, err := c.Decode()
		if err != nil {
			if m != nil {
				t.Fatal("Decode returned a message with an error")
			}
			return
		}
		consumed := in[:len(in)-r.Len()]
		out, err := m.Marshal()
		if err != nil {
			t.Fatalf("re-marshal: %v", err)
		}
		if !bytes.Equal(out, consumed) {
			t.Fatalf("re-marshal = %x, want %x", out, consumed)
		}
		// What the RPC layer does next must not panic either.
		if root, err := rpccp.ReadRootMessage(m); err == nil {
			_ = root.Which()
		}
	})
}

// FuzzParseFingerprint checks that an accepted fingerprint is canonical:
// parsing it again gives the same string.
func FuzzParseFingerprint(f *testing.F) {
	f.Add("sha256:" + strings.Repeat("ab", 32))
	f.Add("SHA256:" + strings.Repeat("AB", 32))
	f.Add("sha256:zz")
	f.Fuzz(func(t *testing.T, s string) {
		fp, err := ParseFingerprint(s)
		if err != nil {
			return
		}
		again, err := ParseFingerprint(fp)
		if err != nil || again != fp || len(fp) != len("sha256:")+64 {
			t.Fatalf("ParseFingerprint(%q) = %q, then %q, %v", s, fp, again, err)
		}
	})
}
