package rpc

import (
	"context"
	"errors"
)

// The transport tests only ping; echoNode refuses every other
// NodeService method of the schema.

var errEchoOnly = errors.New("rpc: echoNode only answers ping")

func (echoNode) RegisterStart(context.Context, NodeService_registerStart) error   { return errEchoOnly }
func (echoNode) RegisterFinish(context.Context, NodeService_registerFinish) error { return errEchoOnly }
func (echoNode) LoginStart(context.Context, NodeService_loginStart) error         { return errEchoOnly }
func (echoNode) LoginFinish(context.Context, NodeService_loginFinish) error       { return errEchoOnly }
func (echoNode) AuthenticateDevice(context.Context, NodeService_authenticateDevice) error {
	return errEchoOnly
}
