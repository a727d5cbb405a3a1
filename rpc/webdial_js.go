//go:build js

package rpc

import (
	"context"
	"crypto/tls"

	"github.com/coder/websocket"
)

// dialWebSocket opens the WebSocket through the browser, which verifies
// a wss:// server against its own roots; tlsConf does not apply.
func dialWebSocket(ctx context.Context, u string, _ *tls.Config) (*websocket.Conn, error) {
	ws, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{Subprotocols: []string{WebSubprotocol}})
	return ws, err
}
