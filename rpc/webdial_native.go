//go:build !js

package rpc

import (
	"context"
	"crypto/tls"

	"github.com/coder/websocket"
)

// dialWebSocket opens the WebSocket with the web channel's subprotocol;
// tlsConf, if set, verifies a wss:// server (nil: the system roots).
func dialWebSocket(ctx context.Context, u string, tlsConf *tls.Config) (*websocket.Conn, error) {
	ws, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{
		HTTPClient:   webHTTPClient(tlsConf),
		Subprotocols: []string{WebSubprotocol},
	})
	return ws, err
}
