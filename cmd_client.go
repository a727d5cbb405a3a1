package main

// The client commands: thin wrappers over node/client.

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	nc "qpchat/node/client"
	"qpchat/node/proto"
)

// RegisterUserCmd creates an account.
type RegisterUserCmd struct {
	User  string `arg:"" help:"User name to register."`
	Token string `placeholder:"TOKEN" help:"Invitation token from the node's operator (qpchat serve invite-token), for a node that registers by invitation only; single use."`
}

// Run registers the user and stores the profile.
func (c *RegisterUserCmd) Run(g *Globals, f *ClientFlags, p *ProfileFlags) (err error) {
	user, err := proto.NormalizeUser(c.User)
	if err != nil {
		return err
	}
	st, done, err := openAccountState(g, f, p)
	if err != nil {
		return err
	}
	defer done(&err)
	prof, err := st.Profile()
	if err != nil {
		return err
	}
	if prof.User != "" {
		return fmt.Errorf("profile %q already belongs to %s; use another --profile", p.Profile, prof.User)
	}
	ctx, cancel := opContext(f)
	defer cancel()
	rc, err := dialState(ctx, g, f, st, true)
	if err != nil {
		return err
	}
	defer rc.Close()
	pw, err := password(g, true)
	if err != nil {
		return err
	}
	uk, _, err := nc.RegisterUser(ctx, &nc.RPCEntry{C: rc, InviteToken: c.Token}, user, pw, accountOptions())
	clear(pw)
	if err != nil {
		return err
	}
	pub := uk.Public().(ed25519.PublicKey)
	if err := st.SaveProfile(&nc.Profile{User: user, UserKey: pub, Server: f.Server}); err != nil {
		return err
	}
	newOut(g, p).emit(map[string]any{"user": user, "user_key": nc.Fingerprint(pub), "server": f.Server, "server_key": rc.Fingerprint},
		"registered %s at %s\nuser key %s\nnext: register-state to set up this device", user, f.Server, nc.Fingerprint(pub))
	return nil
}

// LoginCmd checks the password and binds the profile to the account.
type LoginCmd struct {
	User string `arg:"" help:"User name."`
}

// Run logs in.
func (c *LoginCmd) Run(g *Globals, f *ClientFlags, p *ProfileFlags) (err error) {
	user, err := proto.NormalizeUser(c.User)
	if err != nil {
		return err
	}
	st, done, err := openAccountState(g, f, p)
	if err != nil {
		return err
	}
	defer done(&err)
	prof, err := st.Profile()
	if err != nil {
		return err
	}
	if prof.User != "" && prof.User != user {
		return fmt.Errorf("profile %q belongs to %s; use another --profile", p.Profile, prof.User)
	}
	ctx, cancel := opContext(f)
	defer cancel()
	rc, err := dialState(ctx, g, f, st, false)
	if err != nil {
		return err
	}
	defer rc.Close()
	pw, err := password(g, false)
	if err != nil {
		return err
	}
	uk, _, err := nc.Login(ctx, &nc.RPCEntry{C: rc}, user, pw, accountOptions())
	clear(pw)
	if err != nil {
		return err
	}
	pub := uk.Public().(ed25519.PublicKey)
	if prof.UserKey != nil && !ed25519.PublicKey(prof.UserKey).Equal(pub) {
		return errors.New("the password derives another user key than this profile holds")
	}
	if err := st.SaveProfile(&nc.Profile{User: user, UserKey: pub, Server: f.Server}); err != nil {
		return err
	}
	next := ""
	if prof.Device == nil {
		next = "\nnext: register-state to set up this device"
	}
	newOut(g, p).emit(map[string]any{"user": user, "user_key": nc.Fingerprint(pub), "device": prof.Device != nil},
		"logged in as %s\nuser key %s%s", user, nc.Fingerprint(pub), next)
	return nil
}

// LogoutCmd revokes this device and deletes the profile.
type LogoutCmd struct{}

// Run logs out.
func (c *LogoutCmd) Run(g *Globals, f *ClientFlags, p *ProfileFlags) error {
	st, err := openState(g, f, p, false)
	if err != nil {
		return err
	}
	prof, err := st.Profile()
	if err != nil {
		st.Close()
		return err
	}
	if prof.Device != nil {
		if prof.Server != "" && f.Server == defaultServer {
			f.Server = prof.Server
		}
		ctx, cancel := opContext(f)
		defer cancel()
		rc, err := dialState(ctx, g, f, st, false)
		if err != nil {
			st.Close()
			return err
		}
		pw, err := password(g, false)
		if err != nil {
			rc.Close()
			st.Close()
			return err
		}
		_, ls, err := nc.Login(ctx, &nc.RPCEntry{C: rc}, prof.User, pw, accountOptions())
		clear(pw)
		if err == nil {
			err = ls.RevokeDevice(ctx, prof.DeviceKey())
		}
		rc.Close()
		if err != nil {
			st.Close()
			return err
		}
	}
	st.Close()
	path, _ := nc.StatePath(stateDir(f.StateDir), p.Profile)
	if err := os.Remove(path); err != nil {
		return err
	}
	newOut(g, p).emit(map[string]any{"user": prof.User, "logged_out": true}, "logged out %s: this device is revoked and profile %q deleted", prof.User, p.Profile)
	return nil
}

// RegisterStateCmd sets up this profile's device.
type RegisterStateCmd struct{}

// Run creates the device key and certificate, registers them and uploads
// KeyPackages.
func (c *RegisterStateCmd) Run(g *Globals, f *ClientFlags, p *ProfileFlags) error {
	st, err := openState(g, f, p, false)
	if err != nil {
		return err
	}
	defer st.Close()
	prof, err := st.Profile()
	if err != nil {
		return err
	}
	if prof.User == "" {
		return fmt.Errorf("profile %q has no account (run register-user or login first)", p.Profile)
	}
	if prof.Device != nil {
		return fmt.Errorf("profile %q already has device %s", p.Profile, nc.Fingerprint(prof.DeviceKey()))
	}
	if prof.Server != "" && f.Server == defaultServer {
		f.Server = prof.Server
	}
	ctx, cancel := opContext(f)
	defer cancel()
	rc, err := dialState(ctx, g, f, st, false)
	if err != nil {
		return err
	}
	defer rc.Close()
	entry := &nc.RPCEntry{C: rc}
	pw, err := password(g, false)
	if err != nil {
		return err
	}
	uk, ls, err := nc.Login(ctx, entry, prof.User, pw, accountOptions())
	clear(pw)
	if err != nil {
		return err
	}
	dev, cert, err := nc.NewDevice(ctx, entry, ls, prof.User, uk, nil)
	if err != nil {
		return err
	}
	prof.Device, prof.Cert = dev, cert
	if err := st.SaveProfile(prof); err != nil {
		return err
	}
	sess, err := nc.AuthenticateDevice(ctx, entry, prof)
	if err != nil {
		return err
	}
	cl, err := nc.New(nc.Config{State: st, Session: sess})
	if err != nil {
		return err
	}
	n, err := cl.ReplenishKeyPackages(ctx, nil)
	if err != nil {
		return err
	}
	fp := nc.Fingerprint(prof.DeviceKey())
	newOut(g, p).emit(map[string]any{"user": prof.User, "device": fp, "user_key": nc.Fingerprint(prof.UserKey), "key_packages": n},
		"device %s\nuser key %s\nuploaded %d KeyPackages%s", fp, nc.Fingerprint(prof.UserKey), n, approvalHint(ctx, cl, fp))
	return nil
}

// DevicesCmd lists the user's devices.
type DevicesCmd struct{}

// Run lists devices.
func (c *DevicesCmd) Run(g *Globals, f *ClientFlags, p *ProfileFlags) error {
	if d := runningDaemon(f, p); d != nil {
		_, err := forward(g, f, p, d, "devices", map[string]any{}, 0, deviceText)
		return err
	}
	return withConn(g, f, p, func(ctx context.Context, cn *conn) error {
		recs, err := opDevices(ctx, cn.c)
		newOut(g, p).emitAll(recs)
		return err
	})
}

// RevokeDeviceCmd revokes a device and removes it from every group.
type RevokeDeviceCmd struct {
	Device string `arg:"" help:"Fingerprint (or a unique prefix of it) of the device to revoke, as devices shows it."`
}

// Run revokes.
func (c *RevokeDeviceCmd) Run(g *Globals, f *ClientFlags, p *ProfileFlags) error {
	return withConn(g, f, p, func(ctx context.Context, cn *conn) error {
		r, err := opRevokeDevice(ctx, g, f, cn.st, cn.c, c.Device)
		if err != nil {
			return err
		}
		newOut(g, p).emitAll([]record{r})
		return nil
	})
}

// FetchKeyCmd fetches and pins a user's keys.
type FetchKeyCmd struct {
	User string `arg:"" help:"User whose keys to fetch. The devices are learnt from their KeyPackages, so this uses up one of each device's (the device uploads more); devices the user did not approve are listed as skipped."`
}

// Run fetches.
func (c *FetchKeyCmd) Run(g *Globals, f *ClientFlags, p *ProfileFlags) error {
	if d := runningDaemon(f, p); d != nil {
		_, err := forward(g, f, p, d, "fetchKey", map[string]any{"user": c.User}, 0, keyText)
		return err
	}
	return withConn(g, f, p, func(ctx context.Context, cn *conn) error {
		recs, err := opFetchKey(ctx, cn.c, c.User)
		newOut(g, p).emitAll(recs)
		return err
	})
}

// VerifyCmd shows the safety number with a user.
type VerifyCmd struct {
	User   string `arg:"" help:"User to verify."`
	Accept bool   `help:"Accept the user's current key (after comparing safety numbers), also after a key change."`
}

// Run verifies.
func (c *VerifyCmd) Run(g *Globals, f *ClientFlags, p *ProfileFlags) error {
	if d := runningDaemon(f, p); d != nil {
		_, err := forward(g, f, p, d, "verify", map[string]any{"user": c.User, "accept": c.Accept}, 0, verifyText)
		return err
	}
	return withConn(g, f, p, func(ctx context.Context, cn *conn) error {
		r, err := opVerify(ctx, cn.c, c.User, c.Accept)
		if err != nil {
			return err
		}
		newOut(g, p).emitAll([]record{r})
		return nil
	})
}

// CreateGroupCmd creates a group.
type CreateGroupCmd struct {
	Name  string `arg:"" help:"Local name of the group."`
	Suite string `default:"0xfa01" help:"MLS cipher suite: 0xfa01 (hybrid X25519+ML-KEM-768, default), 0xfa02 (X-Wing), 0x0001 or 0x0003."`
}

// parseSuite reads a suite number.
func parseSuite(s string) (uint16, error) {
	var v uint16
	if _, err := fmt.Sscan(s, &v); err != nil {
		if _, err := fmt.Sscanf(strings.ToLower(s), "0x%x", &v); err != nil {
			return 0, fmt.Errorf("invalid suite %q", s)
		}
	}
	if !proto.SuiteAllowed(v) {
		return 0, fmt.Errorf("suite 0x%04x is not usable (Ed25519 suites only: 0x0001, 0x0003, 0xfa01, 0xfa02)", v)
	}
	return v, nil
}

// Run creates the group.
func (c *CreateGroupCmd) Run(g *Globals, f *ClientFlags, p *ProfileFlags) error {
	suite, err := parseSuite(c.Suite)
	if err != nil {
		return err
	}
	if d := runningDaemon(f, p); d != nil {
		_, err := forward(g, f, p, d, "createGroup", map[string]any{"group": c.Name, "suite": c.Suite}, 0, createdText)
		return err
	}
	return withConn(g, f, p, func(ctx context.Context, cn *conn) error {
		r, err := opCreateGroup(ctx, cn.c, c.Name, suite)
		if err != nil {
			return err
		}
		newOut(g, p).emitAll([]record{r})
		return nil
	})
}

// DMCmd sends a direct message.
type DMCmd struct {
	User  string   `arg:"" help:"User to write to."`
	Text  []string `arg:"" optional:"" help:"Message; read from stdin when absent."`
	Suite string   `default:"0xfa01" help:"Cipher suite of a new channel."`
}

// Run sends.
func (c *DMCmd) Run(g *Globals, f *ClientFlags, p *ProfileFlags) error {
	suite, err := parseSuite(c.Suite)
	if err != nil {
		return err
	}
	text, err := messageText(c.Text)
	if err != nil {
		return err
	}
	if d := runningDaemon(f, p); d != nil {
		_, err := forward(g, f, p, d, "dm", map[string]any{"user": c.User, "text": text, "suite": c.Suite}, 0,
			func(obj map[string]any) string { return dmText(c.User, obj) })
		return err
	}
	return withConn(g, f, p, func(ctx context.Context, cn *conn) error {
		name, err := cn.c.DM(ctx, c.User, text, suite)
		if err != nil {
			return sendError(ctx, cn.c, "dm:"+c.User, text, err)
		}
		r := sentRecord(name)
		r.text = dmText(c.User, r.obj)
		newOut(g, p).emitAll([]record{r})
		return nil
	})
}

// maxText bounds a message text: the largest MLS message any node
// accepts (proto.MaxMessageSize). A node's own --max-message-size may be
// smaller; it refuses larger messages with their size and its limit.
const maxText = proto.MaxMessageSize

// maxStdinCount bounds how far stdin is read to report the size of a
// text that is too long.
const maxStdinCount = 1 << 30

// messageText joins arguments, or reads stdin when there are none. A
// text over maxText is refused with its size, never cut.
func messageText(args []string) (string, error) {
	return readMessageText(args, os.Stdin)
}

func readMessageText(args []string, stdin io.Reader) (string, error) {
	if len(args) > 0 {
		t := strings.Join(args, " ")
		if len(t) > maxText {
			return "", fmt.Errorf("the message is %d bytes, more than the %d bytes a message may hold; nothing was sent", len(t), maxText)
		}
		return t, nil
	}
	b, err := io.ReadAll(io.LimitReader(stdin, maxText+1))
	if err != nil {
		return "", fmt.Errorf("reading the message from stdin: %w", err)
	}
	if len(b) > maxText {
		// Say how long it really is, without keeping it.
		n, err := io.Copy(io.Discard, io.LimitReader(stdin, maxStdinCount-int64(len(b))))
		size := fmt.Sprintf("%d bytes", int64(len(b))+n)
		if err == nil && int64(len(b))+n >= maxStdinCount {
			size = fmt.Sprintf("more than %d bytes", maxStdinCount)
		}
		return "", fmt.Errorf("the message on stdin is %s, more than the %d bytes a message may hold; nothing was sent", size, maxText)
	}
	t := strings.TrimRight(string(b), "\r\n")
	if t == "" {
		return "", errors.New("empty message")
	}
	return t, nil
}

// InviteCmd adds users to a group.
type InviteCmd struct {
	Group string   `arg:"" help:"Group name."`
	Users []string `arg:"" help:"Users to add (every approved device of each: another user's devices that none of its approved devices approved are skipped and listed)."`
}

// Run invites.
func (c *InviteCmd) Run(g *Globals, f *ClientFlags, p *ProfileFlags) error {
	if d := runningDaemon(f, p); d != nil {
		_, err := forward(g, f, p, d, "invite", map[string]any{"group": c.Group, "users": c.Users}, 0, inviteText)
		return err
	}
	return withConn(g, f, p, func(ctx context.Context, cn *conn) error {
		recs, err := opInvite(ctx, cn.c, c.Group, c.Users)
		newOut(g, p).emitAll(recs)
		return err
	})
}

// JoinCmd processes queued Welcomes and commits.
type JoinCmd struct {
	Group string `arg:"" optional:"" help:"Only this group: an invitation as invites names it, or a group's name (the whole queue is applied all the same)."`
}

// Run joins and shows what happened.
func (c *JoinCmd) Run(g *Globals, f *ClientFlags, p *ProfileFlags) error {
	var n int
	var err error
	switch d := runningDaemon(f, p); {
	case c.Group != "":
		return joinGroup(g, f, p, c.Group)
	case d != nil:
		n, err = forward(g, f, p, d, "join", map[string]any{}, 0, eventText)
	default:
		n, err = recvEvents(g, f, p, 0)
	}
	if err == nil && n == 0 {
		newOut(g, p).emit(nil, "nothing to join: no invitations or group changes are waiting")
	}
	return err
}

// RecvCmd prints new messages.
type RecvCmd struct {
	Wait        time.Duration `help:"Wait up to this long for a message when none is queued."`
	Follow      bool          `short:"f" help:"Keep printing messages as they arrive, like tail -f, saving files as they come and reconnecting when the node goes away; SIGINT or SIGTERM end it."`
	DownloadDir string        `type:"path" env:"QPCHAT_DOWNLOAD_DIR" placeholder:"DIR" help:"Where received files are saved (default: $XDG_DOWNLOAD_DIR/qpchat, else ~/Downloads/qpchat)."`
	NoDownload  bool          `help:"Do not save received files now (download saves them later, while the node keeps them)."`
}

// Run receives.
func (c *RecvCmd) Run(g *Globals, f *ClientFlags, p *ProfileFlags) error {
	dir := ""
	if !c.NoDownload {
		var err error
		if dir, err = downloadDir(c.DownloadDir, p); err != nil {
			return err
		}
	}
	if d := runningDaemon(f, p); d != nil && !c.Follow {
		return recvThroughDaemon(g, f, p, d, c.Wait, dir)
	}
	if c.Follow {
		return recvFollow(g, f, p, dir)
	}
	_, err := recvEventsTo(g, f, p, c.Wait, dir)
	return err
}

func recvOnce(g *Globals, f *ClientFlags, p *ProfileFlags, wait time.Duration) error {
	if d := runningDaemon(f, p); d != nil {
		_, err := forward(g, f, p, d, "recv", map[string]any{"wait": wait.Seconds()}, wait, eventText)
		return err
	}
	_, err := recvEvents(g, f, p, wait)
	return err
}

// recvEvents receives and prints what is new; it returns the number of
// events printed.
func recvEvents(g *Globals, f *ClientFlags, p *ProfileFlags, wait time.Duration) (int, error) {
	return recvEventsTo(g, f, p, wait, "")
}

// recvEventsTo is recvEvents that also saves received files into dir
// (none when dir is empty).
func recvEventsTo(g *Globals, f *ClientFlags, p *ProfileFlags, wait time.Duration, dir string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*f.Timeout+30*time.Second+wait)
	defer cancel()
	cn, err := connect(ctx, g, f, p)
	if err != nil {
		return 0, err
	}
	defer cn.Close()
	evs, err := cn.c.Recv(ctx, wait)
	o := newOut(g, p)
	for _, e := range evs {
		printEvent(o, cn.c, e)
		if e.Kind == nc.EventFile && !e.Outgoing && dir != "" && err == nil {
			fctx, fcancel := fileContext(f, 0)
			err = saveFile(fctx, g, o, cn.c, e, dir)
			fcancel()
		}
	}
	return len(evs), cn.lost(f.Server, err)
}

// SendCmd sends a message.
type SendCmd struct {
	All   bool     `help:"Send to every group; all arguments are the text."`
	Group string   `arg:"" optional:"" help:"Group name (omit with --all)."`
	Text  []string `arg:"" optional:"" help:"Message; read from stdin when absent."`
}

// Run sends.
func (c *SendCmd) Run(g *Globals, f *ClientFlags, p *ProfileFlags) error {
	args := c.Text
	if c.All && c.Group != "" {
		args = append([]string{c.Group}, args...)
	}
	if !c.All && c.Group == "" {
		return &usageError{"send needs a group (or --all)"}
	}
	text, err := messageText(args)
	if err != nil {
		return err
	}
	if d := runningDaemon(f, p); d != nil {
		method, params := "send", map[string]any{"group": c.Group, "text": text}
		if c.All {
			method, params = "sendAll", map[string]any{"text": text}
		}
		_, err := forward(g, f, p, d, method, params, 0, sentText)
		return err
	}
	return withConn(g, f, p, func(ctx context.Context, cn *conn) error {
		o := newOut(g, p)
		if c.All {
			names, err := cn.c.SendAll(ctx, text)
			for _, n := range names {
				o.emitAll([]record{sentRecord(n)})
			}
			return err
		}
		if err := cn.c.Send(ctx, c.Group, text); err != nil {
			return sendError(ctx, cn.c, c.Group, text, err)
		}
		o.emitAll([]record{sentRecord(c.Group)})
		return nil
	})
}

// RemoveCmd removes users from a group.
type RemoveCmd struct {
	Group string   `arg:"" help:"Group name."`
	Users []string `arg:"" help:"Users to remove (every device of each)."`
}

// Run removes.
func (c *RemoveCmd) Run(g *Globals, f *ClientFlags, p *ProfileFlags) error {
	if d := runningDaemon(f, p); d != nil {
		_, err := forward(g, f, p, d, "remove", map[string]any{"group": c.Group, "users": c.Users}, 0, removeText)
		return err
	}
	return withConn(g, f, p, func(ctx context.Context, cn *conn) error {
		r, err := opRemove(ctx, cn.c, c.Group, c.Users)
		if err != nil {
			return err
		}
		newOut(g, p).emitAll([]record{r})
		return nil
	})
}

// UpdateCmd rotates this device's keys in a group.
type UpdateCmd struct {
	Group string `arg:"" help:"Group name."`
}

// Run updates.
func (c *UpdateCmd) Run(g *Globals, f *ClientFlags, p *ProfileFlags) error {
	if d := runningDaemon(f, p); d != nil {
		_, err := forward(g, f, p, d, "update", map[string]any{"group": c.Group}, 0, updateText)
		return err
	}
	return withConn(g, f, p, func(ctx context.Context, cn *conn) error {
		r, err := opUpdate(ctx, cn.c, c.Group)
		if err != nil {
			return err
		}
		newOut(g, p).emitAll([]record{r})
		return nil
	})
}

// GroupsCmd lists groups.
type GroupsCmd struct{}

// Run lists groups (from local state; no connection).
func (c *GroupsCmd) Run(g *Globals, f *ClientFlags, p *ProfileFlags) error {
	if d := runningDaemon(f, p); d != nil {
		_, err := forward(g, f, p, d, "listGroups", map[string]any{}, 0, groupText)
		return err
	}
	st, err := openState(g, f, p, false)
	if err != nil {
		return err
	}
	defer st.Close()
	cl, err := nc.New(nc.Config{State: st})
	if err != nil {
		return err
	}
	recs, err := opGroups(context.Background(), cl)
	newOut(g, p).emitAll(recs)
	return err
}

// MembersCmd lists a group's members.
type MembersCmd struct {
	Group string `arg:"" help:"Group name."`
}

// Run lists members (from local state).
func (c *MembersCmd) Run(g *Globals, f *ClientFlags, p *ProfileFlags) error {
	if d := runningDaemon(f, p); d != nil {
		_, err := forward(g, f, p, d, "members", map[string]any{"group": c.Group}, 0, memberText)
		return err
	}
	st, err := openState(g, f, p, false)
	if err != nil {
		return err
	}
	defer st.Close()
	cl, err := nc.New(nc.Config{State: st})
	if err != nil {
		return err
	}
	recs, err := opMembers(context.Background(), cl, c.Group)
	newOut(g, p).emitAll(recs)
	return err
}
