package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	nc "qpchat/node/client"
	"qpchat/node/server"
	"qpchat/node/store"
	"qpchat/opaque"
	"qpchat/rpc"
)

// DemoGroupCmd runs the whole flow with three users.
type DemoGroupCmd struct{}

// demoUser is one user of the demo.
type demoUser struct {
	name string
	st   *nc.State
	rc   *rpc.Client
	c    *nc.Client
}

// Run starts a node in-process (unless --server is given), then registers
// Alice, Bob and Carol, sets up their devices, makes a group, invites,
// joins, exchanges messages, removes Carol and rotates Bob's keys,
// printing each step.
func (c *DemoGroupCmd) Run(g *Globals, f *ClientFlags, p *ProfileFlags) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	o := newOut(g, p)
	step := func(format string, args ...any) {
		o.emit(map[string]any{"step": fmt.Sprintf(format, args...)}, "== "+format, args...)
	}
	tmp, err := os.MkdirTemp("", "qpchat-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	addr, fp := f.Server, f.ServerFingerprint
	opts := nc.AccountOptions{}
	external := f.Server != defaultServer // --server given
	if !external {
		// No --server: a node of our own on a free loopback port. It
		// uses the cheap test KDF: its accounts die with it.
		srv, err := server.New(server.Config{Listen: "127.0.0.1:0", DataDir: filepath.Join(tmp, "node"),
			OPAQUE: opaque.QPChatTest(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			return err
		}
		sctx, scancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- srv.Serve(sctx) }()
		defer func() { scancel(); <-done }()
		addr, fp = srv.Addr().String(), srv.Fingerprint()
		opts.Bounds = opaque.TestKSFBounds
		step("started a node in-process on %s, key %s", addr, fp)
	} else if fp == "" {
		return fmt.Errorf("demo-group against --server needs --server-fingerprint")
	}

	suffix := make([]byte, 3)
	rand.Read(suffix)
	tag := hex.EncodeToString(suffix)
	users := map[string]*demoUser{}
	for _, base := range []string{"alice", "bob", "carol"} {
		name := base
		if external {
			name = base + "-" + tag // do not collide with real accounts
		}
		u, err := demoSetup(ctx, tmp, addr, fp, name, opts)
		if err != nil {
			return err
		}
		defer u.rc.Close()
		defer u.st.Close()
		users[base] = u
		step("%s registered, logged in and set up device %s", name, nc.Fingerprint(u.c.DeviceKey()))
	}
	alice, bob, carol := users["alice"], users["bob"], users["carol"]
	show := func(u *demoUser) error {
		evs, err := u.c.Recv(ctx, 0)
		for _, e := range evs {
			if !o.json {
				fmt.Fprintf(g.stdout, "   %s sees: ", u.name)
			}
			printEvent(&out{w: g.stdout, json: o.json, extra: map[string]any{"viewer": u.name}}, u.c, e)
		}
		return err
	}
	if _, err := alice.c.CreateGroup(ctx, "friends", 0); err != nil {
		return err
	}
	step("%s created group friends (suite 0x%04x)", alice.name, nc.DefaultSuite)
	for _, u := range []*demoUser{bob, carol} {
		if _, err := alice.c.Invite(ctx, "friends", []string{u.name}); err != nil {
			return err
		}
		step("%s invited %s", alice.name, u.name)
		if err := show(u); err != nil {
			return err
		}
	}
	for _, u := range []*demoUser{alice, bob, carol} {
		if err := u.c.Send(ctx, "friends", "hello from "+u.name); err != nil {
			return err
		}
		step("%s sent a message", u.name)
	}
	for _, u := range []*demoUser{alice, bob, carol} {
		if err := show(u); err != nil {
			return err
		}
	}
	v, err := alice.c.Verify(ctx, bob.name, false)
	if err != nil {
		return err
	}
	w, err := bob.c.Verify(ctx, alice.name, false)
	if err != nil {
		return err
	}
	step("safety number %s / %s: %s and %s", alice.name, bob.name, v.SafetyNumber, map[bool]string{true: "equal on both sides", false: "DIFFERENT"}[v.SafetyNumber == w.SafetyNumber])
	if _, err := alice.c.Remove(ctx, "friends", []string{carol.name}); err != nil {
		return err
	}
	step("%s removed %s", alice.name, carol.name)
	if _, err := bob.c.Update(ctx, "friends"); err != nil {
		return err
	}
	step("%s rotated his keys", bob.name)
	if err := alice.c.Send(ctx, "friends", "carol cannot read this"); err != nil {
		return err
	}
	step("%s sent a message after the removal", alice.name)
	for _, u := range []*demoUser{bob, carol} {
		if err := show(u); err != nil {
			return err
		}
	}
	step("done")
	return nil
}

// demoSetup registers a user with a fresh profile and device.
func demoSetup(ctx context.Context, dir, addr, fp, name string, opts nc.AccountOptions) (*demoUser, error) {
	pass := make([]byte, 16)
	rand.Read(pass)
	st, err := nc.OpenState(nc.StateOptions{Path: filepath.Join(dir, name+".state"), Passphrase: pass,
		KDF: store.KDFParams{Time: 1, MemoryKiB: 8 * 1024, Threads: 1}})
	if err != nil {
		return nil, err
	}
	rc, err := rpc.Dial(ctx, addr, rpc.DialOptions{Fingerprint: fp, Pins: st, Limits: clientLimits})
	if err != nil {
		st.Close()
		return nil, err
	}
	u := &demoUser{name: name, st: st, rc: rc}
	entry := &nc.RPCEntry{C: rc}
	pw := []byte(hex.EncodeToString(pass))
	uk, ls, err := nc.RegisterUser(ctx, entry, name, pw, opts)
	if err != nil {
		return u, err
	}
	dev, cert, err := nc.NewDevice(ctx, entry, ls, name, uk, nil)
	if err != nil {
		return u, err
	}
	prof := &nc.Profile{User: name, UserKey: uk.Public().(ed25519.PublicKey), Device: dev, Cert: cert, Server: addr}
	if err := st.SaveProfile(prof); err != nil {
		return u, err
	}
	sess, err := nc.AuthenticateDevice(ctx, entry, prof)
	if err != nil {
		return u, err
	}
	if u.c, err = nc.New(nc.Config{State: st, Session: sess, KeyPackageTarget: 3}); err != nil {
		return u, err
	}
	_, err = u.c.ReplenishKeyPackages(ctx, []uint16{nc.DefaultSuite})
	return u, err
}
