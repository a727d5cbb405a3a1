package server

import (
	"context"

	"qpchat/rpc"
)

// nodeService is the bootstrap capability of one connection
// (NodeService in schemas/node.capnp). Each connection gets its own, so
// capnp's per-object call queue never lets one client hold up another.
//
// Every method starts with the same two steps: count the call
// (beginCall, so shutdown can wait for it), then, if it can block (disk,
// key stretching, long polls), call.Go() so the connection's other calls
// are not queued behind it (TECH-NOTES 1.3).
type nodeService struct {
	c *conn
}

var _ rpc.NodeService_Server = (*nodeService)(nil)

// Ping echoes the nonce and names the node's version.
func (n *nodeService) Ping(ctx context.Context, call rpc.NodeService_ping) error {
	done, err := n.c.begin()
	if err != nil {
		return err
	}
	defer done()
	call.Go()
	res, err := call.AllocResults()
	if err != nil {
		return err
	}
	res.SetNonce(call.Args().Nonce())
	return res.SetVersion(n.c.srv.cfg.Version)
}
