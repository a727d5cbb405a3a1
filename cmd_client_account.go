package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	nc "qpchat/node/client"
	"qpchat/node/proto"
)

// ClientAccountCmds are change-password and delete-account.
type ClientAccountCmds struct {
	ChangePassword ChangePasswordCmd `cmd:"" help:"Change the password: a new user key, your devices re-certified, and a key transition signed by the old and the new key that contacts follow automatically. Asks for the old and the new password (or QPCHAT_PASSWORD_FILE and QPCHAT_NEW_PASSWORD_FILE)."`
	DeleteAccount  DeleteAccountCmd  `cmd:"" help:"Leave every group, revoke every device and delete the account at the node, then this profile's state. Asks for the password and a confirmation (or --yes)."`
}

const (
	envNewPassword     = "QPCHAT_NEW_PASSWORD"
	envNewPasswordFile = "QPCHAT_NEW_PASSWORD_FILE"
)

// ChangePasswordCmd changes the account's password.
type ChangePasswordCmd struct{}

// Run changes the password (node/client/password.go).
func (c *ChangePasswordCmd) Run(g *Globals, f *ClientFlags, p *ProfileFlags) error {
	announceHoldAt(g)
	st, err := openState(g, f, p, false)
	if err != nil {
		return err
	}
	defer st.Close()
	prof, err := st.Profile()
	if err != nil {
		return err
	}
	if prof.User == "" || prof.UserKey == nil {
		return fmt.Errorf("profile %q has no account (run register-user or login first)", p.Profile)
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
	oldPw, err := password(g, false)
	if err != nil {
		return err
	}
	defer clear(oldPw)
	newPw, err := secret(g, "new password", envNewPasswordFile, envNewPassword, true)
	if err != nil {
		return err
	}
	defer clear(newPw)
	if len(newPw) == 0 {
		return &usageError{"the new password is empty"}
	}
	oldKey, newKey, err := nc.ChangePassword(ctx, &nc.RPCEntry{C: rc}, prof.User, oldPw, newPw, accountOptions())
	if err != nil {
		return err
	}
	// The node holds the new password, key and certificates; a crash
	// from here on leaves this profile on the old key, and the next
	// command follows the transition (SyncOwnKey in connect).
	holdAt("password-changed")
	oldPub, newPub := oldKey.Public().(ed25519.PublicKey), newKey.Public().(ed25519.PublicKey)
	if !oldPub.Equal(ed25519.PublicKey(prof.UserKey)) {
		// The password was right but this profile held another key: it
		// missed an earlier change. Still record the new one.
		fmt.Fprintf(g.stderr, "qpchat: this profile held an older user key than the node; it now holds the new one\n")
	}
	if prof.Device == nil {
		prof.UserKey = newPub
		if err := st.SaveProfile(prof); err != nil {
			return err
		}
	} else {
		cl, err := nc.New(nc.Config{State: st})
		if err != nil {
			return err
		}
		// Ed25519 signatures are deterministic: this is the certificate
		// the node now holds for this device.
		cert := proto.SignDeviceCert(newKey, prof.User, prof.DeviceKey())
		if err := cl.AdoptUserKey([][]byte{oldPub}, newPub, cert); err != nil {
			return fmt.Errorf("the password was changed, but saving the new key here failed (the next command repairs it): %w", err)
		}
	}
	newOut(g, p).emit(map[string]any{"user": prof.User, "user_key": nc.Fingerprint(newPub), "old_user_key": nc.Fingerprint(oldPub)},
		"password changed for %s\nnew user key %s (was %s)\ncontacts who pinned the old key follow the change automatically: the old key signed it; your other devices pick it up on their next command",
		prof.User, nc.Fingerprint(newPub), nc.Fingerprint(oldPub))
	return nil
}

// DeleteAccountCmd deletes the account.
type DeleteAccountCmd struct {
	Yes  bool          `help:"Do not ask for confirmation."`
	Wait time.Duration `default:"10s" help:"How long to wait, in all, for other members to commit your removal from your groups; removals still pending then are committed when they next sync."`
}

// Run leaves every group (proposing the removal of all the user's devices,
// which other members commit), deletes the account at the node and then
// this profile's state. Run again after an interruption, it goes on where
// it stopped: groups already left are skipped, and a profile whose
// account the node already deleted is removed.
func (c *DeleteAccountCmd) Run(g *Globals, f *ClientFlags, p *ProfileFlags) error {
	announceHoldAt(g)
	st, err := openState(g, f, p, false)
	if err != nil {
		return err
	}
	prof, err := st.Profile()
	if err != nil {
		st.Close()
		return err
	}
	st.Close()
	if prof.User == "" {
		return fmt.Errorf("profile %q has no account", p.Profile)
	}
	if !c.Yes {
		if err := confirmDeletion(g, prof.User); err != nil {
			return err
		}
	}
	res, already := &nc.LeaveAllResult{}, false
	if prof.Device != nil {
		// Leave first, while this device can still propose.
		err := withConnWait(g, f, p, c.Wait, func(ctx context.Context, cn *conn) error {
			r, err := cn.c.LeaveEveryGroup(ctx, c.Wait)
			if r != nil {
				res = r
			}
			return err
		})
		switch {
		case errors.Is(err, nc.ErrAccountDeleted):
			// An earlier delete-account stopped after the node deleted
			// the account (or another device of the user deleted it):
			// only this profile is left to remove.
			already = true
		case err != nil:
			return err
		}
	}
	holdAt("groups-left")
	if !already {
		if err := deleteAtNode(g, f, p, prof); err != nil {
			return err
		}
	}
	holdAt("account-deleted")
	path, _ := nc.StatePath(stateDir(f.StateDir), p.Profile)
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("the account is deleted, but removing this profile's state failed: %w", err)
	}
	list := func(l []string) []string {
		if l == nil {
			return []string{}
		}
		return l
	}
	text := fmt.Sprintf("deleted the account %s: every device is revoked", prof.User)
	if already {
		text = fmt.Sprintf("the account %s was already deleted at the node", prof.User)
	}
	text += fmt.Sprintf("; left %d group(s)", len(res.Left))
	if len(res.Pending) > 0 {
		text += fmt.Sprintf(", %d more when their members next sync (%s)", len(res.Pending), termSafe(strings.Join(res.Pending, ", ")))
	}
	if len(res.Abandoned) > 0 {
		text += fmt.Sprintf(", %d with nobody else in them (%s)", len(res.Abandoned), termSafe(strings.Join(res.Abandoned, ", ")))
	}
	text += fmt.Sprintf("; profile %q removed; the name %s can be registered again", p.Profile, prof.User)
	newOut(g, p).emit(map[string]any{"user": prof.User, "deleted": true, "already_deleted": already,
		"left": list(res.Left), "pending": list(res.Pending), "abandoned": list(res.Abandoned)}, "%s", text)
	return nil
}

// deleteAtNode logs in with the password and deletes the account.
func deleteAtNode(g *Globals, f *ClientFlags, p *ProfileFlags, prof *nc.Profile) error {
	st, err := openState(g, f, p, false)
	if err != nil {
		return err
	}
	defer st.Close()
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
	pw, err := password(g, false)
	if err != nil {
		return err
	}
	defer clear(pw)
	return nc.DeleteAccount(ctx, &nc.RPCEntry{C: rc}, prof.User, pw, accountOptions())
}

// confirmDeletion asks for the user name on the terminal.
func confirmDeletion(g *Globals, user string) error {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil || !term.IsTerminal(int(tty.Fd())) {
		if tty != nil {
			tty.Close()
		}
		return &usageError{"delete-account needs a terminal to confirm, or --yes"}
	}
	defer tty.Close()
	fmt.Fprintf(tty, "This deletes the account %s at the node for good: every device is revoked and every group left.\nType the user name to confirm: ", user)
	line, err := bufio.NewReader(tty).ReadString('\n')
	if err != nil && line == "" {
		return errors.New("not confirmed")
	}
	if strings.TrimSpace(line) != user {
		return errors.New("not confirmed: the name typed differs; nothing was deleted")
	}
	return nil
}
