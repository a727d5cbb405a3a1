package proto

import (
	"errors"
	"fmt"
	"strings"
)

// Code classifies a node's refusal. A node's error message is
// "qpchat <code>: <text>"; Cap'n Proto carries it as the exception's
// reason, and CodeOf finds the code again on the client.
type Code string

// Error codes (docs/PROTOCOL.md, Errors).
const (
	CodeInvalid       Code = "invalid"        // malformed or inconsistent request
	CodeAuth          Code = "auth-failed"    // login, proof or signature refused
	CodeForbidden     Code = "forbidden"      // this session may not do that
	CodeExpired       Code = "expired"        // the session expired or ended
	CodeNotFound      Code = "not-found"      // no such user, device or group
	CodeExists        Code = "exists"         // name, device key or group id taken
	CodeNotMember     Code = "not-member"     // caller is not a member of the group
	CodeStale         Code = "stale"          // another commit won this epoch
	CodeWrongEpoch    Code = "wrong-epoch"    // the commit's epoch is ahead of the group's
	CodeLimit         Code = "limit"          // a configured limit would be exceeded
	CodeRateLimited   Code = "rate-limited"   // too many requests; retry later
	CodeBusy          Code = "busy"           // e.g. a second fetchWait at once
	CodeShuttingDown  Code = "shutting-down"  // the node is stopping
	CodeInternal      Code = "internal"       // the node failed; nothing was changed
	CodeNotAcceptable Code = "not-acceptable" // refused by content checks (KeyPackage, Welcome)
	CodeUnavailable   Code = "unavailable"    // a cluster node without a quorum
)

// Error is a node's refusal with its code.
type Error struct {
	Code Code
	Msg  string
}

func (e *Error) Error() string { return "qpchat " + string(e.Code) + ": " + e.Msg }

// Errorf makes an *Error.
func Errorf(code Code, format string, args ...any) error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// CodeOf returns the code of err: of an *Error in its chain, else of the
// first "qpchat <code>: " in its text (an error that crossed the wire),
// else "".
func CodeOf(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	s := err.Error()
	i := strings.Index(s, "qpchat ")
	for i >= 0 {
		rest := s[i+len("qpchat "):]
		if j := strings.Index(rest, ": "); j > 0 {
			c := Code(rest[:j])
			if known(c) {
				return c
			}
		}
		k := strings.Index(rest, "qpchat ")
		if k < 0 {
			break
		}
		i += len("qpchat ") + k
	}
	return ""
}

func known(c Code) bool {
	switch c {
	case CodeInvalid, CodeAuth, CodeForbidden, CodeExpired, CodeNotFound, CodeExists,
		CodeNotMember, CodeStale, CodeWrongEpoch, CodeLimit, CodeRateLimited, CodeBusy,
		CodeShuttingDown, CodeInternal, CodeNotAcceptable, CodeUnavailable:
		return true
	}
	return false
}
