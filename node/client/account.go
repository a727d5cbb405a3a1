package client

// This file holds the account side: OPAQUE registration and login
// (RFC 9807) with the channel-binding proofs of DESIGN.md, the user key
// derived from export_key, device registration and authentication.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"

	"qpchat/node/proto"
	"qpchat/opaque"
)

// Entry is the node's unauthenticated service on one connection.
type Entry interface {
	RegisterStart(ctx context.Context, user string, request []byte) (response, ksf []byte, err error)
	RegisterFinish(ctx context.Context, record, userKey []byte) (LoginSession, error)
	LoginStart(ctx context.Context, user string, ke1 []byte) (ke2, ksf []byte, err error)
	LoginFinish(ctx context.Context, ke3, proof []byte) (LoginSession, []byte, error)
	AuthenticateDevice(ctx context.Context, user string, device, signature []byte) (Session, error)
	// ChannelBinding is the value authentications on this connection
	// are bound to: the TLS exporter on QUIC (RFC 9266), the web
	// channel's binding on a WebSocket.
	ChannelBinding() ([]byte, error)
	// BindingType is the kind of ChannelBinding; it selects the proof
	// key and signature labels (proto.Binding).
	BindingType() proto.Binding
	// ServerFingerprint is the fingerprint of the node's key.
	ServerFingerprint() string
}

// LoginSession is a session opened with the password: it manages devices.
type LoginSession interface {
	UserKey(ctx context.Context, user string) ([]byte, error)
	RegisterDevice(ctx context.Context, device, certificate, proof []byte) error
	ListDevices(ctx context.Context) ([]DeviceInfo, error)
	RevokeDevice(ctx context.Context, device []byte) error
}

// ErrLoginFailed is returned by Login for a wrong password or an unknown
// user (the node does not say which).
var ErrLoginFailed = errors.New("client: login failed: wrong user name or password")

// ErrAccountDeleted is returned by AuthenticateDevice when the node says
// the device's account was deleted (delete-account, here or on another
// device of the user): the profile is of no further use.
var ErrAccountDeleted = errors.New("client: the account was deleted at the node")

// AccountOptions tune registration and login.
type AccountOptions struct {
	// Rand is the randomness; nil means crypto/rand.
	Rand io.Reader
	// Bounds limit the key-stretching parameters the node may ask for.
	// The zero value means opaque.DefaultKSFBounds.
	Bounds opaque.KSFBounds
}

func (o *AccountOptions) fill() {
	if o.Rand == nil {
		o.Rand = randReader
	}
	if o.Bounds == (opaque.KSFBounds{}) {
		o.Bounds = opaque.DefaultKSFBounds
	}
}

// parseKSF parses the node's key-stretching parameters and checks them
// against the bounds before the client spends memory on them.
func parseKSF(b []byte, bounds opaque.KSFBounds) (opaque.KSF, error) {
	ksf, err := opaque.ParseKSF(b)
	if err != nil {
		return nil, fmt.Errorf("client: node sent bad key-stretching parameters: %w", err)
	}
	if err := bounds.Check(ksf); err != nil {
		return nil, fmt.Errorf("client: refusing the node's key-stretching parameters: %w", err)
	}
	return ksf, nil
}

// RegisterUser creates the account user with password (RFC 9807, Section
// 5) and publishes the user key derived from the export key. It returns
// the user's key pair and the login session registration opens.
func RegisterUser(ctx context.Context, e Entry, user string, password []byte, opts AccountOptions) (ed25519.PrivateKey, LoginSession, error) {
	opts.fill()
	cfg := opaque.QPChat()
	cr, req, err := cfg.NewClientRegistration(opts.Rand, password)
	if err != nil {
		return nil, nil, err
	}
	respB, ksfB, err := e.RegisterStart(ctx, user, req.Marshal())
	if err != nil {
		return nil, nil, fmt.Errorf("client: registering %s: %w", user, err)
	}
	ksf, err := parseKSF(ksfB, opts.Bounds)
	if err != nil {
		return nil, nil, err
	}
	resp, err := cfg.ParseRegistrationResponse(respB)
	if err != nil {
		return nil, nil, fmt.Errorf("client: registering %s: %w", user, err)
	}
	record, exportKey, err := cr.Finish(opts.Rand, resp, ksf, opaque.Identities{})
	if err != nil {
		return nil, nil, fmt.Errorf("client: registering %s: %w", user, err)
	}
	userKey, err := proto.UserKey(exportKey)
	clear(exportKey)
	if err != nil {
		return nil, nil, err
	}
	ls, err := e.RegisterFinish(ctx, record.Marshal(), userKey.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, nil, fmt.Errorf("client: registering %s: %w", user, err)
	}
	return userKey, ls, nil
}

// Login runs OPAQUE login (RFC 9807, Section 6) and the channel-binding
// proofs both ways, and derives the user key. A relay between two TLS
// connections fails the proofs.
func Login(ctx context.Context, e Entry, user string, password []byte, opts AccountOptions) (ed25519.PrivateKey, LoginSession, error) {
	opts.fill()
	cfg := opaque.QPChat()
	cl, ke1, err := cfg.NewClientLogin(opts.Rand, password)
	if err != nil {
		return nil, nil, err
	}
	ke2B, ksfB, err := e.LoginStart(ctx, user, ke1.Marshal())
	if err != nil {
		return nil, nil, fmt.Errorf("client: login: %w", err)
	}
	ksf, err := parseKSF(ksfB, opts.Bounds)
	if err != nil {
		return nil, nil, err
	}
	ke2, err := cfg.ParseKE2(ke2B)
	if err != nil {
		return nil, nil, fmt.Errorf("client: login: %w", err)
	}
	res, err := cl.Finish(ke2, ksf, opaque.Identities{})
	if err != nil {
		if errors.Is(err, opaque.ErrEnvelopeRecovery) || errors.Is(err, opaque.ErrServerAuthentication) {
			return nil, nil, ErrLoginFailed
		}
		return nil, nil, fmt.Errorf("client: login: %w", err)
	}
	defer clear(res.SessionKey)
	exporter, err := e.ChannelBinding()
	if err != nil {
		return nil, nil, err
	}
	cbKey, err := proto.ChannelBindingKeyFor(e.BindingType(), res.SessionKey)
	if err != nil {
		return nil, nil, err
	}
	defer clear(cbKey)
	ls, serverProof, err := e.LoginFinish(ctx, res.KE3.Marshal(), proto.BindingProof(cbKey, proto.RoleClient, exporter))
	if err != nil {
		if proto.CodeOf(err) == proto.CodeAuth {
			return nil, nil, ErrLoginFailed
		}
		return nil, nil, fmt.Errorf("client: login: %w", err)
	}
	if !proto.VerifyBindingProof(cbKey, proto.RoleServer, exporter, serverProof) {
		return nil, nil, errors.New("client: login: the node's channel-binding proof is wrong (a relay between two connections?)")
	}
	userKey, err := proto.UserKey(res.ExportKey)
	clear(res.ExportKey)
	if err != nil {
		return nil, nil, err
	}
	// The published key must be the one the password derives; anything
	// else means the account was tampered with at the node.
	pub, err := ls.UserKey(ctx, user)
	if err != nil {
		return nil, nil, fmt.Errorf("client: login: reading own user key: %w", err)
	}
	if !bytes.Equal(pub, userKey.Public().(ed25519.PublicKey)) {
		return nil, nil, errors.New("client: login: the node publishes a user key that the password does not derive")
	}
	return userKey, ls, nil
}

// NewDevice makes a device key, its certificate under the user key, and
// registers it through a login session with the possession proof. It
// returns the device's private key.
func NewDevice(ctx context.Context, e Entry, ls LoginSession, user string, userKey ed25519.PrivateKey, rnd io.Reader) (ed25519.PrivateKey, []byte, error) {
	if rnd == nil {
		rnd = randReader
	}
	seed := make([]byte, ed25519.SeedSize)
	if _, err := io.ReadFull(rnd, seed); err != nil {
		return nil, nil, err
	}
	dev := ed25519.NewKeyFromSeed(seed)
	clear(seed)
	devPub := dev.Public().(ed25519.PublicKey)
	cert := proto.SignDeviceCert(userKey, user, devPub)
	proof, err := deviceProof(e, dev, true, user)
	if err != nil {
		return nil, nil, err
	}
	if err := ls.RegisterDevice(ctx, devPub, cert, proof); err != nil {
		return nil, nil, fmt.Errorf("client: registering the device: %w", err)
	}
	return dev, cert, nil
}

// deviceProof signs DeviceAuth for this connection with the device key,
// under the label of a registration proof (register) or an
// authentication, for the connection's binding kind.
func deviceProof(e Entry, dev ed25519.PrivateKey, register bool, user string) ([]byte, error) {
	label, err := proto.DeviceAuthLabel(e.BindingType(), register)
	if err != nil {
		return nil, err
	}
	exporter, err := e.ChannelBinding()
	if err != nil {
		return nil, err
	}
	spki, err := proto.SPKIHashFromFingerprint(e.ServerFingerprint())
	if err != nil {
		return nil, err
	}
	content := proto.DeviceAuth(exporter, user, dev.Public().(ed25519.PublicKey), spki)
	return proto.SignWithLabel(dev, label, content), nil
}

// AuthenticateDevice opens a device session for the profile's device.
func AuthenticateDevice(ctx context.Context, e Entry, p *Profile) (Session, error) {
	if p.Device == nil || p.User == "" {
		return nil, ErrNoDevice
	}
	sig, err := deviceProof(e, p.Device, false, p.User)
	if err != nil {
		return nil, err
	}
	s, err := e.AuthenticateDevice(ctx, p.User, p.DeviceKey(), sig)
	if proto.CodeOf(err) == proto.CodeNotFound {
		// Only a device that proved its key hears this (node/server
		// errRevoked).
		return nil, fmt.Errorf("%w: %s is no longer an account there and this device is revoked (delete-account removes this profile)", ErrAccountDeleted, p.User)
	}
	if err != nil {
		return nil, fmt.Errorf("client: authenticating the device: %w", err)
	}
	return s, nil
}
