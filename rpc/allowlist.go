package rpc

import (
	"errors"
	"fmt"

	capnp "capnproto.org/go/capnp/v3"
	rpccp "capnproto.org/go/capnp/v3/std/capnp/rpc"
)

// ErrNotAllowed is wrapped by the error of an incoming message that the
// node's allow-list refuses (MessageLimits.ClientShapesOnly).
var ErrNotAllowed = errors.New("rpc: message not allowed from a client")

// maxOpenBootstraps is how many Bootstrap questions a client may have
// open (sent, not yet finished) at once. qpchat's client sends one per
// connection (Dial); a few more cost nothing and leave room for a
// reconnecting library.
const maxOpenBootstraps = 4

// allowListReadLimit is how many bytes of a message the allow-list may
// traverse. An honest message needs well under 1 KiB: the Message root,
// the Call, its target and the Payload struct, never the parameters.
const allowListReadLimit = 64 << 10

// libraryReadLimit is the read limit go-capnp gives a freshly decoded
// message (capnp v3.1.0-alpha.1, message.go: defaultTraverseLimit).
// The allow-list restores it after its own bounded traversal so that the
// library sees the budget it would have had.
const libraryReadLimit = 64 << 20

// allowList checks each message a client sends to the node before
// go-capnp sees it, and lets through only the Cap'n Proto RPC shapes
// qpchat's own clients send (docs/CAPNP.md lists them and why):
//
//   - Bootstrap with no deprecated object id, at most maxOpenBootstraps
//     open at once;
//   - Call whose results go to the caller, with no third-party or
//     pipeline-only flags, no capabilities in its parameters, and a
//     target that is either an imported capability or the promised
//     answer of one of this connection's open Bootstrap questions with
//     an empty transform;
//   - Finish, Release, and Abort (which ends the connection).
//
// Everything else is refused: Return, Resolve, Disembargo, Unimplemented,
// the third-party messages (Provide, Accept, ThirdPartyAnswer, Join),
// the obsolete ones and unknown message types.
//
// Why the promised-answer rule: go-capnp v3.1.0-alpha.1 dereferences
// nil in (*Conn).handleCall when a Call targets a promised answer whose
// results are not ready and that has no pipeline caller (rpc.go, the
// PipelineRecv branch), in its own receive goroutine, which no recover
// of ours can reach. The answer to a Bootstrap always has its results
// before the library reads the next message (handleBootstrap sends the
// Return, or an exception, before it returns), so a promised-answer
// target restricted to open Bootstrap questions never takes that branch.
//
// The node calls nothing on the client (the schema hands the client
// capabilities but takes none), so a client has no question of ours to
// Return to, no promise of its own to Resolve and nothing to embargo.
//
// An allowList is used by one receive goroutine only.
type allowList struct {
	boot map[uint32]struct{} // open Bootstrap question ids
}

func newAllowList() *allowList {
	return &allowList{boot: make(map[uint32]struct{})}
}

func refuse(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrNotAllowed}, args...)...)
}

// check returns nil if m is an allowed message, and updates the
// connection's Bootstrap questions; otherwise it returns an error
// wrapping ErrNotAllowed. It reads at most allowListReadLimit bytes of
// m and leaves m's read limit as the library expects it.
func (a *allowList) check(m *capnp.Message) error {
	m.ResetReadLimit(allowListReadLimit)
	defer m.ResetReadLimit(libraryReadLimit)

	root, err := rpccp.ReadRootMessage(m)
	if err != nil {
		return refuse("unreadable message: %v", err)
	}
	switch w := root.Which(); w {
	case rpccp.Message_Which_bootstrap:
		b, err := root.Bootstrap()
		if err != nil {
			return refuse("unreadable bootstrap: %v", err)
		}
		if b.HasDeprecatedObjectId() {
			return refuse("bootstrap with a deprecated object id")
		}
		q := b.QuestionId()
		if _, open := a.boot[q]; open {
			return refuse("bootstrap reuses open question %d", q)
		}
		if len(a.boot) >= maxOpenBootstraps {
			return refuse("more than %d bootstrap questions open", maxOpenBootstraps)
		}
		a.boot[q] = struct{}{}
		return nil

	case rpccp.Message_Which_call:
		c, err := root.Call()
		if err != nil {
			return refuse("unreadable call: %v", err)
		}
		return a.checkCall(c)

	case rpccp.Message_Which_finish:
		f, err := root.Finish()
		if err != nil {
			return refuse("unreadable finish: %v", err)
		}
		delete(a.boot, f.QuestionId())
		return nil

	case rpccp.Message_Which_release:
		if _, err := root.Release(); err != nil {
			return refuse("unreadable release: %v", err)
		}
		return nil

	case rpccp.Message_Which_abort:
		return nil

	default:
		return refuse("message type %v", w)
	}
}

func (a *allowList) checkCall(c rpccp.Call) error {
	q := c.QuestionId()
	if _, open := a.boot[q]; open {
		return refuse("call reuses open bootstrap question %d", q)
	}
	if w := c.SendResultsTo().Which(); w != rpccp.Call_sendResultsTo_Which_caller {
		return refuse("call sends its results to %v", w)
	}
	if c.AllowThirdPartyTailCall() || c.NoPromisePipelining() || c.OnlyPromisePipeline() {
		return refuse("call with third-party or pipelining flags")
	}
	tgt, err := c.Target()
	if err != nil {
		return refuse("unreadable call target: %v", err)
	}
	switch w := tgt.Which(); w {
	case rpccp.MessageTarget_Which_importedCap:
	case rpccp.MessageTarget_Which_promisedAnswer:
		pa, err := tgt.PromisedAnswer()
		if err != nil {
			return refuse("unreadable promised answer: %v", err)
		}
		if _, ok := a.boot[pa.QuestionId()]; !ok {
			return refuse("call targets promised answer %d, which is not an open bootstrap question", pa.QuestionId())
		}
		if pa.HasTransform() {
			ops, err := pa.Transform()
			if err != nil {
				return refuse("unreadable transform: %v", err)
			}
			if ops.Len() != 0 {
				return refuse("call on the bootstrap promise with a transform of %d ops", ops.Len())
			}
		}
	default:
		return refuse("call target type %v", w)
	}
	if !c.HasParams() {
		return nil
	}
	p, err := c.Params()
	if err != nil {
		return refuse("unreadable call parameters: %v", err)
	}
	if p.HasCapTable() {
		ct, err := p.CapTable()
		if err != nil {
			return refuse("unreadable capability table: %v", err)
		}
		if ct.Len() != 0 {
			return refuse("call passes %d capabilities", ct.Len())
		}
	}
	return nil
}
