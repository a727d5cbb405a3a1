package main

import (
	"qpchat/node/server"
	"qpchat/web/app"
)

// ServeWebFlags are the flags of the web listener of `qpchat serve`:
// HTTPS serving the embedded web app and NodeService over a WebSocket
// (node/server/web.go, docs/PROTOCOL.md "The web channel").
type ServeWebFlags struct {
	WebListen     string `placeholder:"ADDR" help:"TCP address of the web listener (HTTPS: the browser app and its WebSocket); off when empty. Plain HTTP only on a loopback address; elsewhere give --web-tls-cert/--web-tls-key or --acme-domain."`
	WebTLSCert    string `name:"web-tls-cert" type:"path" placeholder:"FILE" help:"PEM certificate (chain) of the web listener; its own, not the node's pinned QUIC identity."`
	WebTLSKey     string `name:"web-tls-key" type:"path" placeholder:"FILE" help:"PEM private key of --web-tls-cert."`
	ACMEDomain    string `name:"acme-domain" placeholder:"NAME" help:"Get the web listener's certificate for NAME from an ACME CA (Let's Encrypt by default; accepts its terms) through TLS-ALPN-01: --web-listen must be reachable as NAME:443. Certificates are kept in DATA/acme."`
	ACMEDirectory string `name:"acme-directory" placeholder:"URL" help:"ACME directory URL for --acme-domain (default: Let's Encrypt production)."`
}

// applyWeb copies the web flags into cfg and checks them.
func (w *ServeWebFlags) applyWeb(cfg *server.Config) error {
	if w.WebListen == "" {
		return nil
	}
	cfg.Web = server.WebConfig{
		Listen:           w.WebListen,
		TLSCertFile:      w.WebTLSCert,
		TLSKeyFile:       w.WebTLSKey,
		ACMEDomain:       w.ACMEDomain,
		ACMEDirectoryURL: w.ACMEDirectory,
		App:              app.Files(),
	}
	return server.CheckWebAddr(cfg.Web)
}
