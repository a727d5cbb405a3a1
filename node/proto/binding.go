package proto

import (
	"crypto/hkdf"
	"crypto/sha512"
	"fmt"
)

// Binding is the kind of channel an authentication is bound to. The
// node decides it from the transport a connection arrived on, never
// from anything the client says, and each kind has its own proof key
// and signature labels: a login proof or device signature made for one
// kind never verifies as the other, so a login over QUIC cannot be
// replayed, relayed or "downgraded" onto a web connection, nor the
// other way round (docs/PROTOCOL.md, "The web channel").
type Binding uint8

// Binding kinds.
const (
	// BindingTLSExporter: the TLS exporter of a QUIC connection
	// (RFC 9266). Its labels are the original ones (LabelDeviceAuth,
	// "qpchat cb v1"), so QUIC clients are unchanged.
	BindingTLSExporter Binding = 1
	// BindingWeb: the binding value of the web channel (rpc's
	// WebChannel), for clients on a WebSocket.
	BindingWeb Binding = 2
)

// Labels and HKDF info strings of the web binding.
const (
	LabelDeviceAuthWeb     = "qpchat DeviceAuth web v1"
	LabelDeviceRegisterWeb = "qpchat DeviceRegister web v1"
	channelBindingInfoWeb  = "qpchat cb web v1"
)

func (b Binding) String() string {
	switch b {
	case BindingTLSExporter:
		return "tls-exporter"
	case BindingWeb:
		return "qpchat-web"
	}
	return fmt.Sprintf("binding(%d)", uint8(b))
}

// ChannelBindingKeyFor derives the key of the login binding proofs for
// kind b: HKDF-Expand-SHA512(session_key, info, 32) with info
// "qpchat cb v1" for BindingTLSExporter (ChannelBindingKey) and
// "qpchat cb web v1" for BindingWeb.
func ChannelBindingKeyFor(b Binding, sessionKey []byte) ([]byte, error) {
	var info string
	switch b {
	case BindingTLSExporter:
		info = channelBindingInfo
	case BindingWeb:
		info = channelBindingInfoWeb
	default:
		return nil, fmt.Errorf("proto: unknown channel binding %v", b)
	}
	k, err := hkdf.Expand(sha512.New, sessionKey, info, 32)
	if err != nil {
		return nil, fmt.Errorf("proto: channel binding key: %w", err)
	}
	return k, nil
}

// DeviceAuthLabel returns the SignWithLabel label of a device's
// authentication (register false) or registration proof (register true)
// over DeviceAuth on a connection of kind b.
func DeviceAuthLabel(b Binding, register bool) (string, error) {
	switch {
	case b == BindingTLSExporter && register:
		return LabelDeviceRegister, nil
	case b == BindingTLSExporter:
		return LabelDeviceAuth, nil
	case b == BindingWeb && register:
		return LabelDeviceRegisterWeb, nil
	case b == BindingWeb:
		return LabelDeviceAuthWeb, nil
	}
	return "", fmt.Errorf("proto: unknown channel binding %v", b)
}
