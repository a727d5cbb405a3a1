// Package daemon serves [JSON-RPC 2.0] over newline-delimited streams: a
// Unix socket or a process's stdin and stdout. `qpchat client daemon`
// registers the methods (the client commands) and sends notifications
// (what arrives from the node); this package only frames, checks and
// dispatches.
//
// One request per line, one response per line, in the order the
// requests finish (a client matches them by id). Batches (JSON-RPC 2.0,
// Section 6) are refused with one Invalid Request error: a bot sends its
// requests one per line instead. A line is at most MaxLine bytes.
//
// [JSON-RPC 2.0]: https://www.jsonrpc.org/specification
package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// MaxLine bounds one request line, newline excluded: 4 MiB, room for
// the largest message text a node accepts (3 MiB) when it needs little
// escaping. Reading stops at the bound, so a client cannot make the
// daemon buffer more.
const MaxLine = 4 << 20

// Error codes of JSON-RPC 2.0, Section 5.1.
const (
	CodeParseError     = -32700 // the line is not JSON
	CodeInvalidRequest = -32600 // JSON, but not a request object
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602
	CodeInternalError  = -32603
)

// Error is a JSON-RPC error object (Section 5.1).
type Error struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data,omitempty"`
}

func (e *Error) Error() string { return fmt.Sprintf("daemon: error %d: %s", e.Code, e.Message) }

// InvalidParams is the error of a method whose params do not fit.
func InvalidParams(format string, args ...any) *Error {
	return &Error{Code: CodeInvalidParams, Message: fmt.Sprintf(format, args...)}
}

// Request is one request (ID set) or notification (ID nil) from a
// client.
type Request struct {
	// ID is the request's id exactly as sent (a string, a number or
	// null), or nil for a notification, which gets no response.
	ID     json.RawMessage
	Method string
	// Params is the params member as sent (an object or an array), or
	// nil when absent.
	Params json.RawMessage
}

// DecodeRequest parses one line. It never panics; an error is a *Error
// to send back, with the request's id when it could be read (else null,
// as Section 5 says). A line over MaxLine is refused.
func DecodeRequest(line []byte) (*Request, json.RawMessage, *Error) {
	if len(line) > MaxLine {
		return nil, nil, &Error{Code: CodeInvalidRequest, Message: fmt.Sprintf("request line of %d bytes is longer than %d bytes", len(line), MaxLine)}
	}
	trimmed := bytes.TrimSpace(line)
	if !json.Valid(trimmed) {
		return nil, nil, &Error{Code: CodeParseError, Message: "parse error: the line is not valid JSON"}
	}
	if len(trimmed) > 0 && trimmed[0] == '[' {
		return nil, nil, &Error{Code: CodeInvalidRequest, Message: "batch requests are not supported: send one request object per line"}
	}
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, nil, &Error{Code: CodeInvalidRequest, Message: "invalid request: not a JSON object"}
	}
	// Members by their exact names (Section 4; encoding/json would also
	// match "Method" to a field method).
	var members map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &members); err != nil {
		return nil, nil, &Error{Code: CodeInvalidRequest, Message: "invalid request: " + err.Error()}
	}
	// The id is echoed back only if it is of a kind Section 4 allows.
	var id json.RawMessage
	if raw, ok := members["id"]; ok {
		if !validID(raw) {
			return nil, nil, &Error{Code: CodeInvalidRequest, Message: "invalid request: id must be a string, a number or null"}
		}
		id = bytes.Clone(bytes.TrimSpace(raw))
	}
	var version, method string
	if err := json.Unmarshal(members["jsonrpc"], &version); err != nil || version != "2.0" {
		return nil, id, &Error{Code: CodeInvalidRequest, Message: `invalid request: "jsonrpc" must be "2.0"`}
	}
	if err := json.Unmarshal(members["method"], &method); err != nil || method == "" {
		return nil, id, &Error{Code: CodeInvalidRequest, Message: `invalid request: "method" must be a non-empty string`}
	}
	r := &Request{ID: id, Method: method}
	// A params of null is taken as absent: Section 4 lets params be
	// omitted, and many client libraries send null instead.
	if p := bytes.TrimSpace(members["params"]); len(p) > 0 && !bytes.Equal(p, null) {
		if len(p) == 0 || (p[0] != '{' && p[0] != '[') {
			return nil, id, &Error{Code: CodeInvalidRequest, Message: `invalid request: "params" must be an object or an array`}
		}
		r.Params = bytes.Clone(p)
	}
	return r, id, nil
}

// validID says whether an id member is a string, a number or null.
func validID(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return false
	}
	switch c := raw[0]; {
	case c == '"', c == '-', c >= '0' && c <= '9':
		return true
	case bytes.Equal(raw, []byte("null")):
		return true
	}
	return false
}

// DecodeParams decodes params (an object) into v, refusing unknown
// members so that a misspelt one is not silently ignored. Absent params
// leave v as it is.
func DecodeParams(params json.RawMessage, v any) *Error {
	if params == nil {
		return nil
	}
	if params[0] != '{' {
		return InvalidParams("params must be an object with named members")
	}
	d := json.NewDecoder(bytes.NewReader(params))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return InvalidParams("params member %q must be a %s, not %s", te.Field, te.Type, te.Value)
		}
		return InvalidParams("invalid params: %v", err)
	}
	return nil
}

// response is a response object (Section 5): exactly one of result and
// error.
type response struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  any             `json:"result"`
}

type errorResponse struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Error   *Error          `json:"error"`
}

type notification struct {
	JSONRPC string `json:"jsonrpc"`
	Method  string `json:"method"`
	Params  any    `json:"params,omitempty"`
}

var null = json.RawMessage("null")

func encodeResult(id json.RawMessage, result any) ([]byte, error) {
	return json.Marshal(response{JSONRPC: "2.0", ID: id, Result: result})
}

func encodeError(id json.RawMessage, e *Error) []byte {
	if id == nil {
		id = null
	}
	b, err := json.Marshal(errorResponse{JSONRPC: "2.0", ID: id, Error: e})
	if err != nil { // Data that does not encode: drop it
		b, _ = json.Marshal(errorResponse{JSONRPC: "2.0", ID: id, Error: &Error{Code: e.Code, Message: e.Message}})
	}
	return b
}
