package daemon

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestDecodeRequest(t *testing.T) {
	tests := []struct {
		line   string
		code   int    // 0: valid
		id     string // the id echoed (or to echo)
		method string
	}{
		{`{"jsonrpc":"2.0","id":1,"method":"send","params":{"group":"g"}}`, 0, "1", "send"},
		{`{"jsonrpc":"2.0","id":"a","method":"listGroups"}`, 0, `"a"`, "listGroups"},
		{`{"jsonrpc":"2.0","method":"send"}`, 0, "", "send"},
		{`{"jsonrpc":"2.0","id":null,"method":"x","params":[]}`, 0, "null", "x"},
		{``, CodeParseError, "", ""},
		{`{"jsonrpc":"2.0",`, CodeParseError, "", ""},
		{`{"jsonrpc":"2.0","id":1,"method":"x"} trailing`, CodeParseError, "", ""},
		{`[{"jsonrpc":"2.0","id":1,"method":"x"}]`, CodeInvalidRequest, "", ""},
		{`"hello"`, CodeInvalidRequest, "", ""},
		{`{"jsonrpc":"1.0","id":7,"method":"x"}`, CodeInvalidRequest, "7", ""},
		{`{"id":7,"method":"x"}`, CodeInvalidRequest, "7", ""},
		{`{"jsonrpc":"2.0","id":7}`, CodeInvalidRequest, "7", ""},
		{`{"jsonrpc":"2.0","id":7,"method":5}`, CodeInvalidRequest, "7", ""},
		{`{"jsonrpc":"2.0","id":7,"Method":"x"}`, CodeInvalidRequest, "7", ""},
		{`{"jsonrpc":"2.0","id":7,"method":null}`, CodeInvalidRequest, "7", ""},
		{`{"jsonrpc":"2.0","id":7,"method":"x","params":null}`, 0, "7", "x"},
		{`{"jsonrpc":"2.0","id":{"a":1},"method":"x"}`, CodeInvalidRequest, "", ""},
		{`{"jsonrpc":"2.0","id":7,"method":"x","params":"s"}`, CodeInvalidRequest, "7", ""},
	}
	for _, tc := range tests {
		r, id, err := DecodeRequest([]byte(tc.line))
		switch {
		case tc.code == 0 && err != nil:
			t.Errorf("DecodeRequest(%s) = error %v, want a request", tc.line, err)
		case tc.code != 0 && (err == nil || err.Code != tc.code):
			t.Errorf("DecodeRequest(%s) = %v, want error code %d", tc.line, err, tc.code)
		case tc.code == 0 && (r.Method != tc.method || string(r.ID) != tc.id):
			t.Errorf("DecodeRequest(%s) = method %q id %s, want %q %s", tc.line, r.Method, r.ID, tc.method, tc.id)
		case tc.code != 0 && string(id) != tc.id:
			t.Errorf("DecodeRequest(%s) id = %s, want %q", tc.line, id, tc.id)
		}
	}
	if _, _, err := DecodeRequest(bytes.Repeat([]byte(" "), MaxLine+1)); err == nil || err.Code != CodeInvalidRequest {
		t.Errorf("DecodeRequest(line over MaxLine) = %v, want invalid request", err)
	}
}

// FuzzDaemonRequest: DecodeRequest never panics, a request it accepts
// has a method and object or array params, and every error it returns
// encodes to a valid response line carrying a valid id.
func FuzzDaemonRequest(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"send","params":{"group":"g","text":"hi"}}`,
		`{"jsonrpc":"2.0","method":"recv","params":[]}`,
		`{"jsonrpc":"2.0","id":"x","method":"listGroups"}`,
		`{"jsonrpc":"2.0","id":1e400,"method":"x"}`,
		`[{"jsonrpc":"2.0","id":1,"method":"x"}]`,
		`{"jsonrpc":"2.0","id":1,"method":"x","params":"s"}`,
		`{"jsonrpc":"2.0","id":1,"id":2,"method":"x","method":""}`,
		"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\"}",
		`null`, `{`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		r, id, err := DecodeRequest(line)
		if err != nil {
			if r != nil {
				t.Fatalf("DecodeRequest returned a request and error %v", err)
			}
			b := encodeError(id, err)
			if !json.Valid(b) {
				t.Fatalf("error response %q is not JSON", b)
			}
			return
		}
		if r.Method == "" {
			t.Fatal("accepted a request without a method")
		}
		if r.Params != nil && r.Params[0] != '{' && r.Params[0] != '[' {
			t.Fatalf("accepted params %q", r.Params)
		}
		if r.ID != nil && !json.Valid(r.ID) {
			t.Fatalf("accepted id %q", r.ID)
		}
		var v struct {
			A string `json:"a"`
		}
		_ = DecodeParams(r.Params, &v)
		if b, err := encodeResult(r.ID, map[string]any{"ok": true}); r.ID != nil && (err != nil || !json.Valid(b)) {
			t.Fatalf("result response %q: %v", b, err)
		}
	})
}

func TestDecodeParams(t *testing.T) {
	var p struct {
		Group string   `json:"group"`
		Users []string `json:"users"`
	}
	if err := DecodeParams(json.RawMessage(`{"group":"g","users":["a"]}`), &p); err != nil || p.Group != "g" || len(p.Users) != 1 {
		t.Errorf("DecodeParams = %v, %+v", err, p)
	}
	for _, bad := range []string{`{"grup":"g"}`, `{"group":1}`, `["g"]`, `{"users":"a"}`} {
		if err := DecodeParams(json.RawMessage(bad), &p); err == nil || err.Code != CodeInvalidParams {
			t.Errorf("DecodeParams(%s) = %v, want invalid params", bad, err)
		}
	}
}

// pipeClient is the client end of a connection served by ServeConn.
type pipeClient struct {
	t  *testing.T
	c  net.Conn
	sc *bufio.Scanner
}

func servePipe(t *testing.T, s *Server) *pipeClient {
	a, b := net.Pipe()
	done := make(chan struct{})
	go func() { s.ServeConn(context.Background(), b); close(done) }()
	t.Cleanup(func() { a.Close(); <-done })
	sc := bufio.NewScanner(a)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	return &pipeClient{t: t, c: a, sc: sc}
}

func (p *pipeClient) send(line string) {
	p.t.Helper()
	p.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(p.c, line+"\n"); err != nil {
		p.t.Fatal(err)
	}
}

func (p *pipeClient) read() map[string]any {
	p.t.Helper()
	p.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if !p.sc.Scan() {
		p.t.Fatalf("no line: %v", p.sc.Err())
	}
	var m map[string]any
	if err := json.Unmarshal(p.sc.Bytes(), &m); err != nil {
		p.t.Fatalf("line %q: %v", p.sc.Bytes(), err)
	}
	return m
}

func errCode(m map[string]any) int {
	e, _ := m["error"].(map[string]any)
	c, _ := e["code"].(float64)
	return int(c)
}

func TestServeConn(t *testing.T) {
	s := &Server{
		Methods: map[string]Method{
			"echo": func(ctx context.Context, params json.RawMessage) (any, error) {
				var p struct {
					Text string `json:"text"`
				}
				if err := DecodeParams(params, &p); err != nil {
					return nil, err
				}
				return map[string]any{"text": p.Text}, nil
			},
			"fail":  func(context.Context, json.RawMessage) (any, error) { return nil, errors.New("boom") },
			"panic": func(context.Context, json.RawMessage) (any, error) { panic("bug") },
		},
		ErrorOf: func(err error) *Error { return &Error{Code: -32001, Message: err.Error()} },
	}
	p := servePipe(t, s)
	checks := []struct {
		line string
		code int
		id   any
	}{
		{`{"jsonrpc":"2.0","id":1,"method":"echo","params":{"text":"hi"}}`, 0, 1.0},
		{`not json`, CodeParseError, nil},
		{`{"jsonrpc":"2.0","id":2,"method":"nope"}`, CodeMethodNotFound, 2.0},
		{`{"jsonrpc":"2.0","id":3,"method":"echo","params":{"txt":"hi"}}`, CodeInvalidParams, 3.0},
		{`{"jsonrpc":"2.0","id":4,"method":"fail"}`, -32001, 4.0},
		{`{"jsonrpc":"2.0","id":5,"method":"panic"}`, CodeInternalError, 5.0},
		{`{"jsonrpc":"2.0","id":"six","method":"echo"}`, 0, "six"},
	}
	for _, c := range checks {
		p.send(`{"jsonrpc":"2.0","method":"echo"}`) // a notification: never answered
		p.send(c.line)
		m := p.read()
		if errCode(m) != c.code || m["id"] != c.id || m["jsonrpc"] != "2.0" {
			t.Errorf("%s: got %v, want code %d id %v", c.line, m, c.code, c.id)
		}
		if c.code == 0 {
			if _, ok := m["result"]; !ok {
				t.Errorf("%s: no result in %v", c.line, m)
			}
		}
	}
	// A line over the limit is answered and skipped; the next one works.
	go func() {
		p.c.SetWriteDeadline(time.Now().Add(20 * time.Second))
		io.WriteString(p.c, `{"jsonrpc":"2.0","id":9,"method":"echo","params":{"text":"`+strings.Repeat("x", MaxLine)+"\"}}\n")
		io.WriteString(p.c, `{"jsonrpc":"2.0","id":10,"method":"echo","params":{"text":"ok"}}`+"\n")
	}()
	if m := p.read(); errCode(m) != CodeInvalidRequest || m["id"] != nil {
		t.Errorf("line over MaxLine: got %v, want invalid request with id null", m)
	}
	if m := p.read(); m["id"] != 10.0 {
		t.Errorf("after a long line: got %v, want the answer to id 10", m)
	}
	// Notifications reach the connection.
	s.Notify("receive", map[string]any{"event": "message"})
	if m := p.read(); m["method"] != "receive" || m["id"] != nil {
		t.Errorf("notification: got %v", m)
	}
}

// TestServeConnAnswersBeforeEOF: requests still running when the input
// ends are answered before the connection closes (stdio).
func TestServeConnAnswersBeforeEOF(t *testing.T) {
	release := make(chan struct{})
	s := &Server{Methods: map[string]Method{
		"slow": func(context.Context, json.RawMessage) (any, error) { <-release; return "done", nil },
	}}
	in := strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"slow"}`) // no newline at the end
	var out bytes.Buffer
	done := make(chan struct{})
	go func() {
		s.ServeConn(context.Background(), struct {
			io.Reader
			io.Writer
			io.Closer
		}{in, &out, io.NopCloser(nil)})
		close(done)
	}()
	close(release)
	<-done
	if got := strings.TrimSpace(out.String()); got != `{"jsonrpc":"2.0","id":1,"result":"done"}` {
		t.Errorf("output %q", got)
	}
}

// TestNotifySlowReader: a connection that does not read loses
// notifications beyond its queue, never blocks Notify, and is told how
// many it lost; every notification is either delivered or counted.
func TestNotifySlowReader(t *testing.T) {
	s := &Server{Methods: map[string]Method{}, Dropped: func(n int) (string, any) { return "dropped", n }}
	p := servePipe(t, s)
	// The connection is registered once it answered something.
	p.send(`{"jsonrpc":"2.0","id":1,"method":"nope"}`)
	p.read()
	const sent = 400
	done := make(chan struct{})
	go func() {
		for i := range sent {
			s.Notify("receive", i)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Notify blocked on a connection that does not read")
	}
	got, lost := 0, 0
	for got+lost < sent {
		m := p.read()
		switch m["method"] {
		case "receive":
			got++
		case "dropped":
			lost += int(m["params"].(float64))
		default:
			t.Fatalf("unexpected line %v", m)
		}
	}
	if got+lost != sent || lost == 0 {
		t.Errorf("%d delivered and %d reported lost, want %d in all and some lost", got, lost, sent)
	}
}
