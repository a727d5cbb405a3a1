package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"qpchat/node/proto"
	"qpchat/node/store"
	"qpchat/rpc"
)

// Who may register, and what is kept (docs/PROTOCOL.md, Registration
// and retention).

// Registration modes.
const (
	RegistrationOpen   = "open"   // anyone may create an account
	RegistrationInvite = "invite" // only with a token from `qpchat serve invite-token`
	RegistrationClosed = "closed" // no new accounts
)

// PolicyConfig configures registration, device expiry and retention.
type PolicyConfig struct {
	// Registration is RegistrationOpen (the default), RegistrationInvite
	// or RegistrationClosed.
	Registration string
	// DeviceExpiry makes a device stale when it has not fetched (or
	// authenticated) for this long: its queue is dropped and marked
	// overflowed, so it must be re-added to its groups. Default 90 days;
	// negative: never.
	DeviceExpiry time.Duration
	// Retention bounds how long an unacknowledged message stays queued
	// (plus up to SweepInterval); the device's queue is then marked
	// overflowed. Default 90 days; negative: forever.
	Retention time.Duration
	// SweepInterval is how often expiry and retention run. Default 1h.
	SweepInterval time.Duration
}

func (p PolicyConfig) withDefaults() PolicyConfig {
	if p.Registration == "" {
		p.Registration = RegistrationOpen
	}
	if p.DeviceExpiry == 0 {
		p.DeviceExpiry = 90 * 24 * time.Hour
	}
	if p.Retention == 0 {
		p.Retention = 90 * 24 * time.Hour
	}
	if p.SweepInterval <= 0 {
		p.SweepInterval = time.Hour
	}
	return p
}

// CheckRegistration checks a registration mode.
func CheckRegistration(mode string) error {
	switch mode {
	case "", RegistrationOpen, RegistrationInvite, RegistrationClosed:
		return nil
	}
	return fmt.Errorf("server: registration mode %q: want open, invite or closed", mode)
}

// Invitation tokens: "qpi-" and 32 random bytes in hex. The node keeps
// only their SHA-256 (a token has 256 bits of entropy, so a plain hash
// is enough to make a stolen database useless for registering).
const (
	invitePrefix   = "qpi-"
	maxInviteToken = 128
)

// NewInviteToken returns a fresh token and the hash the store keeps.
func NewInviteToken() (token string, hash []byte, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", nil, err
	}
	token = invitePrefix + hex.EncodeToString(b)
	return token, InviteHash(token), nil
}

// InviteHash is the stored form of a token.
func InviteHash(token string) []byte {
	h := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return h[:]
}

// MintInvite stores a new invitation valid for ttl and returns its token.
func (s *Server) MintInvite(ctx context.Context, ttl time.Duration) (string, error) {
	return MintInvite(ctx, s.localStore(), s.cfg.Now(), ttl)
}

// MintInvite stores a new invitation in ls.
func MintInvite(ctx context.Context, ls *store.LocalStore, now time.Time, ttl time.Duration) (string, error) {
	if ls == nil {
		return "", errors.New("server: store not open")
	}
	if ttl <= 0 {
		return "", fmt.Errorf("server: invitation lifetime %v must be positive", ttl)
	}
	tok, hash, err := NewInviteToken()
	if err != nil {
		return "", err
	}
	if err := ls.AddInvite(ctx, hash, now.Add(ttl)); err != nil {
		return "", err
	}
	return tok, nil
}

// checkRegistration applies the registration mode to a registerStart
// and returns the invitation hash to use up at registerFinish (nil when
// none is needed).
func (c *conn) checkRegistration(ctx context.Context, args rpc.NodeService_registerStart_Params) ([]byte, error) {
	srv := c.srv
	switch srv.cfg.Policy.Registration {
	case RegistrationClosed:
		srv.metrics.refusedRegistrations.Add(1)
		return nil, proto.Errorf(proto.CodeForbidden, "registerStart: this node accepts no new accounts (--registration closed)")
	case RegistrationInvite:
	default:
		return nil, nil
	}
	tok, err := args.InviteToken()
	if err != nil || tok == "" || len(tok) > maxInviteToken {
		srv.metrics.refusedRegistrations.Add(1)
		return nil, proto.Errorf(proto.CodeForbidden, "registerStart: this node needs an invitation token (register-user --token)")
	}
	hash := InviteHash(tok)
	ls := srv.localStore()
	if ls == nil {
		return nil, proto.Errorf(proto.CodeInternal, "registerStart: invitations need the local store")
	}
	if err := ls.InviteValid(ctx, hash, srv.cfg.Now()); err != nil {
		if errors.Is(err, store.ErrNoInvite) {
			srv.metrics.refusedRegistrations.Add(1)
			c.log.Info("registration refused: invitation token unknown, used or expired")
			return nil, proto.Errorf(proto.CodeForbidden, "registerStart: the invitation token is unknown, used or expired")
		}
		return nil, storeError(c.log, "registerStart", err)
	}
	return hash, nil
}

// createAccount creates the account, using up the invitation (if any) in
// the same transaction.
func (s *Server) createAccount(ctx context.Context, a store.Account, invite []byte) error {
	if invite == nil {
		return s.store.CreateAccount(ctx, a)
	}
	ls := s.localStore()
	if ls == nil {
		return errors.New("server: invitations need the local store")
	}
	err := ls.CreateAccountInvited(ctx, a, invite, s.cfg.Now())
	if errors.Is(err, store.ErrNoInvite) {
		s.metrics.refusedRegistrations.Add(1)
		return proto.Errorf(proto.CodeForbidden, "registerFinish: the invitation token was used meanwhile or expired")
	}
	return err
}

// seenDevices throttles the writes recording when a device was seen.
type seenDevices struct {
	mu sync.Mutex
	m  map[string]time.Time
}

// touchDevice records that a device fetched or authenticated, at most
// once per sweep interval (the precision expiry needs), so it costs a
// commit per device per interval, not per fetch.
func (s *Server) touchDevice(device []byte) {
	if s.cfg.Policy.DeviceExpiry < 0 || device == nil {
		return
	}
	now := s.cfg.Now()
	k := string(device)
	s.seen.mu.Lock()
	if s.seen.m == nil {
		s.seen.m = make(map[string]time.Time)
	}
	last, ok := s.seen.m[k]
	if ok && now.Sub(last) < s.cfg.Policy.SweepInterval {
		s.seen.mu.Unlock()
		return
	}
	s.seen.m[k] = now
	s.seen.mu.Unlock()
	ls := s.localStore()
	if ls == nil {
		return
	}
	if err := ls.TouchDevice(context.Background(), device, now); err != nil && !errors.Is(err, store.ErrClosed) {
		s.log.Warn("recording device activity failed", "err", err)
	}
}

// policySweeps runs sweep every SweepInterval until ctx is done.
func (s *Server) policySweeps(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.cfg.Policy.SweepInterval):
		}
		s.sweep(ctx)
	}
}

// sweep applies device expiry, retention and invitation expiry once.
func (s *Server) sweep(ctx context.Context) {
	ls := s.localStore()
	if ls == nil {
		return
	}
	p := s.cfg.Policy
	now := s.cfg.Now()
	if p.DeviceExpiry > 0 {
		n, err := ls.ExpireDevices(ctx, now.Add(-p.DeviceExpiry), now)
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Warn("device expiry failed", "err", err)
		case n > 0:
			s.metrics.expiredDevices.Add(uint64(n))
			s.log.Info("devices expired: queues dropped, devices stale until re-added", "count", n, "device_expiry", p.DeviceExpiry)
		}
	}
	if p.Retention > 0 {
		n, q, err := ls.RetentionSweep(ctx, now, p.Retention)
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Warn("retention sweep failed", "err", err)
		case n > 0:
			s.metrics.retentionDropped.Add(n)
			s.log.Info("messages past retention dropped", "messages", n, "queues", q, "retention", p.Retention)
		}
	}
	for {
		n, err := ls.ExpireBlobs(ctx, now, 1000)
		if err != nil && ctx.Err() == nil {
			s.log.Warn("file expiry failed", "err", err)
		}
		if n > 0 {
			s.log.Info("expired files deleted", "count", n)
		}
		if err != nil || n < 1000 {
			break
		}
	}
	if n, err := ls.PruneInvites(ctx, now); err == nil && n > 0 {
		s.log.Info("expired invitations removed", "count", n)
	}
}
