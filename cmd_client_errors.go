package main

// What a failed command says and which exit code it returns: a node's
// refusal arrives as "node.capnp:Session.method: qpchat <code>: text"
// (node/proto); users read what it means instead.

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	nc "qpchat/node/client"
	"qpchat/node/proto"
	"qpchat/rpc"
)

// Exit codes (documented in `qpchat client --help` and the README).
const (
	exitOK          = 0
	exitError       = 1  // the command failed for another reason
	exitAuth        = 2  // wrong password or state passphrase, or the node refused the login
	exitUnreachable = 3  // the node did not answer or the connection failed
	exitUntrusted   = 4  // the node's key is not the trusted one
	exitRefused     = 5  // the node refused the request (see the message)
	exitUsage       = 80 // bad command line (kong's code)
)

// exitCodesHelp is the list printed by `qpchat client --help`.
const exitCodesHelp = "Exit codes: 0 success, 1 other failure, 2 authentication failed (password or state passphrase), " +
	"3 node unreachable, 4 untrusted server key, 5 refused by the node, 80 usage error."

// unreachableError is a failure to reach the node.
type unreachableError struct{ err error }

func (e *unreachableError) Error() string { return e.err.Error() }
func (e *unreachableError) Unwrap() error { return e.err }

// authError is a wrong password or passphrase.
type authError struct{ err error }

func (e *authError) Error() string { return e.err.Error() }
func (e *authError) Unwrap() error { return e.err }

// refusedError is a node's refusal the command has already put in
// words.
type refusedError struct{ msg string }

func (e *refusedError) Error() string { return e.msg }

// usageError is a command line the parser accepted but the command
// cannot use.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// dialError classifies an error of rpc.Dial: an untrusted key stays as
// it is, everything else means the node was not reached.
func dialError(err error) error {
	var pm *rpc.PinMismatchError
	if err == nil || errors.As(err, &pm) || strings.Contains(err.Error(), "not trusted by the given CA") ||
		strings.Contains(err.Error(), "fingerprint") {
		return err
	}
	return &unreachableError{err}
}

// exitCode returns the exit code of a command's error.
func exitCode(err error) int {
	var (
		pm *rpc.PinMismatchError
		ue *unreachableError
		ae *authError
		us *usageError
		re *refusedError
		fe *forwardedError
	)
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &fe):
		return fe.exit
	case errors.As(err, &us):
		return exitUsage
	case errors.As(err, &pm), strings.Contains(err.Error(), "not trusted by the given CA"):
		return exitUntrusted
	case errors.As(err, &ae), errors.Is(err, nc.ErrLoginFailed), proto.CodeOf(err) == proto.CodeAuth:
		return exitAuth
	case errors.As(err, &ue):
		return exitUnreachable
	case errors.As(err, &re), proto.CodeOf(err) != "", errors.Is(err, nc.ErrAccountDeleted):
		return exitRefused
	}
	return exitError
}

var (
	// capnpMethod is the method prefix Cap'n Proto puts on a remote
	// exception.
	capnpMethod = regexp.MustCompile(`node\.capnp:\w+\.\w+: `)
	// nodeCode is a node's code and, usually, the method it names.
	nodeCode = regexp.MustCompile(`qpchat ([a-z-]+): (?:[a-zA-Z]+: )?`)
	// unknownUser finds the user a not-found refusal is about.
	unknownUser = regexp.MustCompile(`(?:fetching KeyPackages of|fetching the user key of) (\S+): .*qpchat not-found`)
)

// codeWords say what a node's refusal means.
var codeWords = map[proto.Code]string{
	proto.CodeInvalid:       "the node refused the request as malformed",
	proto.CodeAuth:          "the node refused the authentication",
	proto.CodeForbidden:     "the node does not allow this",
	proto.CodeExpired:       "the session at the node ended; run the command again",
	proto.CodeNotFound:      "the node does not know it",
	proto.CodeExists:        "it exists already at the node",
	proto.CodeNotMember:     "the node says this device is not a member of the group",
	proto.CodeStale:         "another member changed the group at the same time; run the command again",
	proto.CodeWrongEpoch:    "this device is behind the group; run recv, then try again",
	proto.CodeLimit:         "over a limit of the node",
	proto.CodeRateLimited:   "the node limits how often this may be done; try again later",
	proto.CodeBusy:          "the node is busy; try again",
	proto.CodeShuttingDown:  "the node is shutting down; try again in a moment",
	proto.CodeInternal:      "the node failed (nothing was changed)",
	proto.CodeNotAcceptable: "the node refused the content",
	proto.CodeUnavailable:   "the node cannot serve now; try again or another node of the cluster",
}

// userMessage is the one line a failed command prints: the error with
// the RPC plumbing left out and a node's code in words.
func userMessage(err error) string {
	s := oneLine(err)
	if m := unknownUser.FindStringSubmatch(s); m != nil {
		return fmt.Sprintf("no user named %s on this node", m[1])
	}
	s = capnpMethod.ReplaceAllString(s, "")
	s = strings.ReplaceAll(s, "client: ", "")
	if loc := nodeCode.FindStringSubmatchIndex(s); loc != nil {
		code := proto.Code(s[loc[2]:loc[3]])
		if words, ok := codeWords[code]; ok {
			head, rest, closing := s[:loc[0]], strings.TrimSpace(s[loc[1]:]), ""
			if strings.Count(head, "(") > strings.Count(head, ")") && strings.HasSuffix(rest, ")") {
				rest, closing = rest[:len(rest)-1], ")"
			}
			s = head + words
			if rest != "not found" && rest != "" {
				s += ": " + rest
			}
			s += closing
		}
	}
	return s
}

// Help is the detail of `qpchat client --help`.
func (c *ClientCmd) Help() string { return exitCodesHelp }

// sendError explains a refused message: a node refuses a message over
// its --max-message-size with the encrypted size and its limit; the user
// learns the text's size and how much text fits.
func sendError(ctx context.Context, c *nc.Client, group, text string, err error) error {
	if msg, ok := nc.ExplainTooLarge(ctx, c, group, text, err); ok {
		return &refusedError{msg}
	}
	return err
}
