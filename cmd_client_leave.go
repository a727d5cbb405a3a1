package main

// Client commands of daily use: leave, invites, decline, history, and
// recv --follow (node/client's leave.go, invites.go, history.go, live.go).

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	nc "qpchat/node/client"
)

// ClientLeaveCmds are the commands of this file; ClientCmd embeds them.
type ClientLeaveCmds struct {
	Leave   LeaveCmd   `cmd:"" help:"Leave a group with all your devices (--this-device: only this one); waits --wait for a member to commit the removal."`
	Invites InvitesCmd `cmd:"" help:"List invitations waiting at the node, not yet joined (join, recv, chat and send join them)."`
	Decline DeclineCmd `cmd:"" help:"Refuse an invitation (as invites names it), or leave a group already joined: the group sees you leave."`
	History HistoryCmd `cmd:"" help:"Print a group's history from this device's encrypted state (no connection)."`
}

// LeaveCmd leaves a group.
type LeaveCmd struct {
	Group      string        `arg:"" help:"Group name."`
	ThisDevice bool          `help:"Leave with this device only; your other devices stay in the group."`
	Wait       time.Duration `default:"30s" help:"How long to wait for another member to commit the removal; if it has not by then, the leave stays pending and later recv or chat complete it."`
}

// Run proposes the removal and waits for it.
func (c *LeaveCmd) Run(g *Globals, f *ClientFlags, p *ProfileFlags) error {
	return withConnWait(g, f, p, c.Wait, func(ctx context.Context, cn *conn) error {
		res, err := cn.c.Leave(ctx, c.Group, !c.ThisDevice, c.Wait)
		if err != nil {
			return err
		}
		printLeave(newOut(g, p), res, "left")
		return nil
	})
}

// printLeave reports a leave (verb: "left" or "declined").
func printLeave(o *out, res *nc.LeaveResult, verb string) {
	obj := map[string]any{"group": res.Group, "done": res.Done, "pending": !res.Done, "event": verb}
	if res.Done {
		o.emit(obj, "%s %s", verb, termSafe(res.Group))
		return
	}
	o.emit(obj, "%s %s: pending until another member commits your removal (it is proposed again each epoch; recv or chat complete it)", verb, termSafe(res.Group))
}

// withConnWait is withConn with wait more time for the operation.
func withConnWait(g *Globals, f *ClientFlags, p *ProfileFlags, wait time.Duration, fn func(ctx context.Context, cn *conn) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 6*f.Timeout+30*time.Second+wait)
	defer cancel()
	cn, err := connect(ctx, g, f, p)
	if err != nil {
		return err
	}
	defer cn.Close()
	return cn.lost(f.Server, fn(ctx, cn))
}

// InvitesCmd lists pending invitations.
type InvitesCmd struct{}

// Run lists the Welcomes queued for this device.
func (c *InvitesCmd) Run(g *Globals, f *ClientFlags, p *ProfileFlags) error {
	return withConn(g, f, p, func(ctx context.Context, cn *conn) error {
		invs, err := cn.c.Invites(ctx)
		if err != nil {
			return err
		}
		o := newOut(g, p)
		if len(invs) == 0 {
			o.emit(nil, "no invitations are waiting")
		}
		for _, inv := range invs {
			o.emit(map[string]any{"group": inv.Name, "id": hexID(inv.Group), "inviter": inv.Inviter, "members": inv.Members},
				"%s: invited by %s (members: %s); join %s or decline %s", inv.Name, termSafe(inv.Inviter),
				termSafe(strings.Join(inv.Members, ", ")), inv.Name, inv.Name)
		}
		return nil
	})
}

// DeclineCmd refuses an invitation.
type DeclineCmd struct {
	Group string        `arg:"" help:"The invitation as invites names it (or 8+ hex digits of its id), or a group's name."`
	Wait  time.Duration `default:"30s" help:"How long to wait for a member to commit the removal (as leave --wait)."`
}

// Run declines.
func (c *DeclineCmd) Run(g *Globals, f *ClientFlags, p *ProfileFlags) error {
	return withConnWait(g, f, p, c.Wait, func(ctx context.Context, cn *conn) error {
		res, err := cn.c.Decline(ctx, c.Group, c.Wait)
		if err != nil {
			return err
		}
		printLeave(newOut(g, p), res, "declined")
		return nil
	})
}

// joinGroup is join GROUP: it joins and shows what happened in one group.
func joinGroup(g *Globals, f *ClientFlags, p *ProfileFlags, group string) error {
	return withConn(g, f, p, func(ctx context.Context, cn *conn) error {
		evs, err := cn.c.Join(ctx, group)
		o := newOut(g, p)
		for _, e := range evs {
			printEvent(o, cn.c, e)
		}
		if err == nil && len(evs) == 0 {
			o.emit(nil, "nothing new in %s", termSafe(group))
		}
		return err
	})
}

// HistoryCmd prints a group's history.
type HistoryCmd struct {
	Group string `arg:"" help:"Group name."`
	Limit int    `placeholder:"N" help:"Print only the newest N entries (0: all)."`
	Since string `placeholder:"WHEN" help:"Print only entries since WHEN: a duration back from now (24h, 90m) or an RFC 3339 time (2026-12-01T09:00:00Z)."`
}

// Run prints the history (from local state; no connection).
func (c *HistoryCmd) Run(g *Globals, f *ClientFlags, p *ProfileFlags) error {
	if c.Limit < 0 {
		return &usageError{"--limit must be 0 or more"}
	}
	since, err := parseSince(c.Since, time.Now())
	if err != nil {
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
	evs, skipped, err := cl.History(c.Group, nc.HistoryOptions{Limit: c.Limit, Since: since})
	if err != nil {
		return err
	}
	o := newOut(g, p)
	for _, e := range evs {
		if !o.json {
			fmt.Fprintf(o.w, "%s ", time.Unix(e.Time, 0).Local().Format("2006-01-02 15:04:05"))
		}
		printEvent(o, cl, e)
	}
	if skipped > 0 {
		fmt.Fprintf(g.stderr, "note: %d damaged history entr%s skipped\n", skipped, map[bool]string{true: "y was", false: "ies were"}[skipped == 1])
	}
	return nil
}

// parseSince parses --since: empty, a duration back from now, or an RFC
// 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, &usageError{"--since takes a positive duration (24h) or an RFC 3339 time"}
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, &usageError{fmt.Sprintf("--since %q is neither a duration (24h, 90m) nor an RFC 3339 time (2026-12-01T09:00:00Z)", s)}
}

// recvFollow is recv --follow: print messages as they arrive, like
// tail -f, through the reconnecting session (client.Live), until SIGINT
// or SIGTERM, which end it with exit status 0.
func recvFollow(g *Globals, f *ClientFlags, p *ProfileFlags, dir string) (err error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	lc, err := openLiveClient(g, f, p)
	if err != nil {
		return err
	}
	defer lc.st.Close()
	cl := lc.cl
	startCtx, cancel := opContext(f)
	lv, err := lc.start(startCtx, g, f)
	cancel()
	if err != nil {
		return err
	}
	o := newOut(g, p)
	printed := make(chan struct{})
	go func() {
		defer close(printed)
		for e := range lv.Events() {
			printLive(o, cl, e)
			if ev := e.Event; ev != nil && ev.Kind == nc.EventFile && !ev.Outgoing && dir != "" {
				// Saved before the next line is printed, as recv does; a
				// failure is reported and following goes on.
				err := lv.Do(ctx, func(ctx context.Context, c *nc.Client) error {
					fctx, fcancel := fileContext(f, 0)
					defer fcancel()
					return saveFile(fctx, g, o, c, ev, dir)
				})
				if err != nil && ctx.Err() == nil {
					fmt.Fprintf(g.stderr, "qpchat: %v (download saves it later)\n", err)
				}
			}
		}
	}()
	select {
	case <-ctx.Done():
	case <-lv.Done():
	}
	err = lv.Close()
	<-printed
	if ctx.Err() != nil && (err == nil || errors.Is(err, context.Canceled)) {
		return nil // stopped by a signal
	}
	return err
}
