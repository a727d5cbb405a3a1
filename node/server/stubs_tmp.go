package server

import (
	"context"

	"qpchat/node/proto"
	"qpchat/rpc"
)

// Temporary: the NodeService methods below are being implemented.

func notYet() error { return proto.Errorf(proto.CodeInternal, "not implemented yet") }

func (n *nodeService) RegisterStart(context.Context, rpc.NodeService_registerStart) error {
	return notYet()
}
func (n *nodeService) RegisterFinish(context.Context, rpc.NodeService_registerFinish) error {
	return notYet()
}
func (n *nodeService) LoginStart(context.Context, rpc.NodeService_loginStart) error { return notYet() }
func (n *nodeService) LoginFinish(context.Context, rpc.NodeService_loginFinish) error {
	return notYet()
}
func (n *nodeService) AuthenticateDevice(context.Context, rpc.NodeService_authenticateDevice) error {
	return notYet()
}
