package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"qpchat/node/daemon"
)

// A server with one method, serving requests read from a string (as
// --stdio does from stdin).
func Example() {
	s := &daemon.Server{Methods: map[string]daemon.Method{
		"hello": func(ctx context.Context, params json.RawMessage) (any, error) {
			var p struct {
				Name string `json:"name"`
			}
			if err := daemon.DecodeParams(params, &p); err != nil {
				return nil, err
			}
			return map[string]any{"greeting": "hello " + p.Name}, nil
		},
	}}
	in := strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"hello","params":{"name":"bot"}}` + "\n" +
		`{"jsonrpc":"2.0","id":2,"method":"bye"}` + "\n")
	var out strings.Builder
	s.ServeConn(context.Background(), struct {
		io.Reader
		io.Writer
		io.Closer
	}{in, &out, io.NopCloser(nil)})
	// Answers come in the order the requests finish; sort for the example.
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if strings.Contains(lines[0], `"id":2`) {
		lines[0], lines[1] = lines[1], lines[0]
	}
	fmt.Println(strings.Join(lines, "\n"))
	// Output:
	// {"jsonrpc":"2.0","id":1,"result":{"greeting":"hello bot"}}
	// {"jsonrpc":"2.0","id":2,"error":{"code":-32601,"message":"method not found: bye"}}
}
