package rpc

import (
	"crypto/tls"
	"fmt"
	"net"

	"github.com/quic-go/quic-go"
)

// TransportOptions are the settings of a node's QUIC transport that
// outlive one process or react to load.
type TransportOptions struct {
	// StatelessResetKey derives stateless reset tokens (RFC 9000, Section
	// 10.3). Keeping it across restarts lets a restarted node reset its
	// old connections at once instead of leaving clients to time out.
	StatelessResetKey *quic.StatelessResetKey
	// TokenKey protects Retry and NEW_TOKEN address-validation tokens
	// (RFC 9000, Section 8.1); kept across restarts, tokens stay valid.
	TokenKey *quic.TokenGeneratorKey
	// VerifySourceAddress, if set, is asked for each connection attempt
	// from an unvalidated address; returning true makes the client prove
	// its address with a Retry round trip first (RFC 9000, Section 8.1.2).
	VerifySourceAddress func(net.Addr) bool
}

// ListenWith is Listen with the transport options opts.
func ListenWith(addr string, cert tls.Certificate, conf *quic.Config, opts TransportOptions) (*Listener, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("rpc: listen address %q: %w", addr, err)
	}
	uc, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("rpc: %w", err)
	}
	tr := &quic.Transport{
		Conn:                uc,
		StatelessResetKey:   opts.StatelessResetKey,
		TokenGeneratorKey:   opts.TokenKey,
		VerifySourceAddress: opts.VerifySourceAddress,
	}
	ln, err := tr.Listen(ServerTLSConfig(cert), conf)
	if err != nil {
		tr.Close()
		uc.Close()
		return nil, fmt.Errorf("rpc: %w", err)
	}
	return &Listener{ln: ln, tr: tr, uc: uc}, nil
}
