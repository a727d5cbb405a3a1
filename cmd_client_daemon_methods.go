package main

// The daemon's methods: the client commands in camelCase, their
// arguments as named params, their `--json` objects as results (one
// object, or an array for commands that print a list).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	nc "qpchat/node/client"
	"qpchat/node/daemon"
)

// maxRecvWait bounds recv's wait.
const maxRecvWait = 10 * time.Minute

// seconds is a duration given as a number of seconds or as a Go
// duration string ("1m30s").
type seconds time.Duration

func (s *seconds) UnmarshalJSON(b []byte) error {
	var n float64
	if err := json.Unmarshal(b, &n); err == nil {
		if n < 0 || n > maxRecvWait.Seconds() {
			return fmt.Errorf("wait must be between 0 and %v", maxRecvWait)
		}
		*s = seconds(time.Duration(n * float64(time.Second)))
		return nil
	}
	var str string
	if err := json.Unmarshal(b, &str); err != nil {
		return errors.New(`wait must be a number of seconds or a duration like "30s"`)
	}
	d, err := time.ParseDuration(str)
	if err != nil || d < 0 || d > maxRecvWait {
		return fmt.Errorf("wait %q must be a duration between 0 and %v", str, maxRecvWait)
	}
	*s = seconds(d)
	return nil
}

// params decodes a method's params, as Invalid params when they do not
// fit.
func params[T any](raw json.RawMessage) (*T, error) {
	v := new(T)
	if err := daemon.DecodeParams(raw, v); err != nil {
		return nil, err
	}
	return v, nil
}

// need refuses an empty required param.
func need(name, v string) error {
	if strings.TrimSpace(v) == "" {
		return daemon.InvalidParams("params member %q is required", name)
	}
	return nil
}

// checkText refuses a text the CLI would refuse.
func checkText(text string) error {
	if strings.TrimSpace(text) == "" {
		return daemon.InvalidParams(`params member "text" is required (and not blank)`)
	}
	if len(text) > maxText {
		return daemon.InvalidParams("the message is %d bytes, more than the %d bytes a message may hold; nothing was sent", len(text), maxText)
	}
	return nil
}

func needUsers(users []string) error {
	if len(users) == 0 {
		return daemon.InvalidParams(`params member "users" must list at least one user`)
	}
	return nil
}

// suiteOf reads an optional suite param (default 0xfa01).
func suiteOf(s string) (uint16, error) {
	if s == "" {
		s = "0xfa01"
	}
	v, err := parseSuite(s)
	if err != nil {
		return 0, daemon.InvalidParams("%v", err)
	}
	return v, nil
}

// opCtx bounds one method's work as a command's deadline does.
func (d *daemonState) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 6*d.f.Timeout+30*time.Second)
}

// do runs f on the connection (again after a reconnection if it was
// lost: f must be safe to repeat).
func (d *daemonState) do(ctx context.Context, f func(ctx context.Context, c *nc.Client) error) error {
	ctx, cancel := d.opCtx(ctx)
	defer cancel()
	return d.lv.Do(ctx, f)
}

// list runs op through the session and returns its records as the JSON
// objects --json prints.
func (d *daemonState) list(ctx context.Context, op func(ctx context.Context, c *nc.Client) ([]record, error)) (any, error) {
	var recs []record
	err := d.do(ctx, func(ctx context.Context, c *nc.Client) (err error) {
		recs, err = op(ctx, c)
		return err
	})
	return objects(recs), err
}

// one is list for an operation that yields one record.
func (d *daemonState) one(ctx context.Context, op func(ctx context.Context, c *nc.Client) (record, error)) (any, error) {
	var r record
	err := d.do(ctx, func(ctx context.Context, c *nc.Client) (err error) {
		r, err = op(ctx, c)
		return err
	})
	return r.obj, err
}

// once runs f that changes something at most once; a lost connection
// meanwhile is an error (the client may check and call again).
func (d *daemonState) once(ctx context.Context, f func(ctx context.Context, c *nc.Client) error) error {
	ctx, cancel := d.opCtx(ctx)
	defer cancel()
	return d.lv.DoOnce(ctx, f)
}

// sendWait sends text to a group through the outbox: sent exactly once
// even across reconnections.
func (d *daemonState) sendWait(ctx context.Context, group, text string) error {
	ctx, cancel := d.opCtx(ctx)
	defer cancel()
	err := d.lv.SendWait(ctx, group, text)
	if errors.Is(err, context.DeadlineExceeded) {
		return &unreachableError{fmt.Errorf("the message to %s is not sent yet: the node did not take it in time; it stays queued and goes out once the node answers", group)}
	}
	if errors.Is(err, nc.ErrOutboxFull) {
		return &refusedError{"too many messages wait to be sent (the node is unreachable); try again once reconnected"}
	}
	if err != nil {
		return sendError(ctx, nil, group, text, err)
	}
	return nil
}

// settle lets the events a Do just applied reach the backlog: they
// wait in the Live's event channel until the notifier took them (it
// never blocks, so this is short; bounded all the same).
func (d *daemonState) settle() {
	for i := 0; i < 200 && len(d.lv.Events()) > 0; i++ {
		time.Sleep(5 * time.Millisecond)
	}
}

// methods is the method table.
func (d *daemonState) methods() map[string]daemon.Method {
	m := map[string]daemon.Method{
		"send":          d.send,
		"sendAll":       d.sendAll,
		"dm":            d.dm,
		"recv":          d.recv,
		"join":          d.join,
		"createGroup":   d.createGroup,
		"invite":        d.invite,
		"remove":        d.remove,
		"update":        d.update,
		"listGroups":    d.listGroups,
		"members":       d.members,
		"verify":        d.verify,
		"fetchKey":      d.fetchKey,
		"devices":       d.devices,
		"approveDevice": d.approveDevice,
		"revokeDevice":  d.revokeDevice,
		"status":        d.status,
	}
	m["leave"] = d.leave
	m["history"] = d.history
	m["sendFile"] = d.sendFile
	m["download"] = d.download
	return m
}

// maxLeaveWait bounds leave's wait.
const maxLeaveWait = 10 * time.Minute

func (d *daemonState) leave(ctx context.Context, raw json.RawMessage) (any, error) {
	p, err := params[struct {
		Group      string   `json:"group"`
		ThisDevice bool     `json:"thisDevice"`
		Wait       *seconds `json:"wait"`
	}](raw)
	if err != nil {
		return nil, err
	}
	if err := need("group", p.Group); err != nil {
		return nil, err
	}
	wait := 30 * time.Second
	if p.Wait != nil {
		wait = min(time.Duration(*p.Wait), maxLeaveWait)
	}
	// Propose (Leave with no wait: the Live already waits for messages,
	// and a session has one fetchWait at a time), then watch the Live
	// apply the removing commit.
	var res *nc.LeaveResult
	err = d.once(ctx, func(ctx context.Context, c *nc.Client) (err error) {
		res, err = c.Leave(ctx, p.Group, !p.ThisDevice, 0)
		return err
	})
	if err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(wait); !res.Done && time.Now().Before(deadline); {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		err = d.do(ctx, func(ctx context.Context, c *nc.Client) error {
			gs, err := c.Groups(ctx)
			for _, x := range gs {
				if x.Name == res.Group && x.Left {
					res.Done = true
				}
			}
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	return map[string]any{"group": res.Group, "done": res.Done, "pending": !res.Done, "event": "left"}, nil
}

func (d *daemonState) history(ctx context.Context, raw json.RawMessage) (any, error) {
	p, err := params[struct {
		Group string `json:"group"`
		Limit int    `json:"limit"`
		Since string `json:"since"`
	}](raw)
	if err != nil {
		return nil, err
	}
	if err := need("group", p.Group); err != nil {
		return nil, err
	}
	if p.Limit < 0 {
		return nil, daemon.InvalidParams("limit must be 0 or more")
	}
	since, err := parseSince(p.Since, time.Now())
	if err != nil {
		return nil, daemon.InvalidParams("%v", err)
	}
	var out []map[string]any
	err = d.do(ctx, func(ctx context.Context, c *nc.Client) error {
		evs, _, err := c.History(p.Group, nc.HistoryOptions{Limit: p.Limit, Since: since})
		out = out[:0]
		for _, e := range evs {
			out = append(out, eventRecord(c, e).obj)
		}
		return err
	})
	return out, err
}

func (d *daemonState) sendFile(ctx context.Context, raw json.RawMessage) (any, error) {
	p, err := params[struct {
		Group string `json:"group"`
		Path  string `json:"path"`
	}](raw)
	if err != nil {
		return nil, err
	}
	if err := need("group", p.Group); err != nil {
		return nil, err
	}
	if err := need("path", p.Path); err != nil {
		return nil, err
	}
	var ref *nc.FileRef
	err = d.lv.DoOnce(ctx, func(ctx context.Context, c *nc.Client) (err error) {
		ref, err = c.SendFile(ctx, p.Group, p.Path, nil)
		return err
	})
	if err != nil {
		return nil, err
	}
	return map[string]any{"group": p.Group, "sent": true, "file": ref.Name, "size": ref.Size}, nil
}

// download saves the newest file of a group (or the newest with the
// given name, or the one at history position seq) into dir (default: the
// download directory).
func (d *daemonState) download(ctx context.Context, raw json.RawMessage) (any, error) {
	p, err := params[struct {
		Group string `json:"group"`
		Name  string `json:"name"`
		Seq   uint64 `json:"seq"`
		Dir   string `json:"dir"`
	}](raw)
	if err != nil {
		return nil, err
	}
	if err := need("group", p.Group); err != nil {
		return nil, err
	}
	dir, err := downloadDir(p.Dir, d.p)
	if err != nil {
		return nil, err
	}
	var path string
	err = d.do(ctx, func(ctx context.Context, c *nc.Client) error {
		evs, _, err := c.History(p.Group, nc.HistoryOptions{})
		if err != nil {
			return err
		}
		var pick *nc.Event
		for _, e := range evs {
			if e.Kind == nc.EventFile && (p.Name == "" || e.Text == p.Name) && (p.Seq == 0 || e.Seq == p.Seq) {
				pick = e
			}
		}
		if pick == nil {
			return daemon.InvalidParams("no such file in %s", p.Group)
		}
		ref, err := nc.ParseFileRef(pick.File)
		if err != nil {
			return err
		}
		path, err = c.DownloadFile(ctx, ref, dir, nil)
		return err
	})
	if err != nil {
		return nil, err
	}
	return map[string]any{"group": p.Group, "path": path}, nil
}

func (d *daemonState) send(ctx context.Context, raw json.RawMessage) (any, error) {
	p, err := params[struct {
		Group string `json:"group"`
		Text  string `json:"text"`
	}](raw)
	if err != nil {
		return nil, err
	}
	if err := need("group", p.Group); err != nil {
		return nil, err
	}
	if err := checkText(p.Text); err != nil {
		return nil, err
	}
	if err := d.sendWait(ctx, p.Group, p.Text); err != nil {
		return nil, err
	}
	return sentRecord(p.Group).obj, nil
}

func (d *daemonState) sendAll(ctx context.Context, raw json.RawMessage) (any, error) {
	p, err := params[struct {
		Text string `json:"text"`
	}](raw)
	if err != nil {
		return nil, err
	}
	if err := checkText(p.Text); err != nil {
		return nil, err
	}
	var names []string
	err = d.do(ctx, func(ctx context.Context, c *nc.Client) error {
		gs, err := c.Groups(ctx)
		names = nil
		for _, g := range gs {
			if !g.Removed {
				names = append(names, g.Name)
			}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	out := []map[string]any{}
	for _, n := range names {
		if err := d.sendWait(ctx, n, p.Text); err != nil {
			return nil, fmt.Errorf("sent to %d of %d groups: %w", len(out), len(names), err)
		}
		out = append(out, sentRecord(n).obj)
	}
	return out, nil
}

func (d *daemonState) dm(ctx context.Context, raw json.RawMessage) (any, error) {
	p, err := params[struct {
		User  string `json:"user"`
		Text  string `json:"text"`
		Suite string `json:"suite"`
	}](raw)
	if err != nil {
		return nil, err
	}
	if err := need("user", p.User); err != nil {
		return nil, err
	}
	if err := checkText(p.Text); err != nil {
		return nil, err
	}
	suite, err := suiteOf(p.Suite)
	if err != nil {
		return nil, err
	}
	// Find or make the channel (at most once), then send through the
	// outbox like send.
	var name string
	if err := d.once(ctx, func(ctx context.Context, c *nc.Client) (err error) {
		name, err = c.DM(ctx, p.User, "", suite)
		return err
	}); err != nil {
		return nil, err
	}
	if err := d.sendWait(ctx, name, p.Text); err != nil {
		return nil, err
	}
	return sentRecord(name).obj, nil
}

func (d *daemonState) recv(ctx context.Context, raw json.RawMessage) (any, error) {
	p, err := params[struct {
		Wait seconds `json:"wait"`
	}](raw)
	if err != nil {
		return nil, err
	}
	if err := d.do(ctx, nil); err != nil { // apply what is queued
		return nil, err
	}
	d.settle()
	return d.take(ctx, time.Duration(p.Wait)), nil
}

func (d *daemonState) join(ctx context.Context, raw json.RawMessage) (any, error) {
	if _, err := params[struct{}](raw); err != nil {
		return nil, err
	}
	if err := d.do(ctx, nil); err != nil {
		return nil, err
	}
	d.settle()
	return d.take(ctx, 0), nil
}

func (d *daemonState) createGroup(ctx context.Context, raw json.RawMessage) (any, error) {
	p, err := params[struct {
		Group string `json:"group"`
		Suite string `json:"suite"`
	}](raw)
	if err != nil {
		return nil, err
	}
	if err := need("group", p.Group); err != nil {
		return nil, err
	}
	suite, err := suiteOf(p.Suite)
	if err != nil {
		return nil, err
	}
	var r record
	err = d.once(ctx, func(ctx context.Context, c *nc.Client) (err error) {
		r, err = opCreateGroup(ctx, c, p.Group, suite)
		return err
	})
	return r.obj, err
}

type groupUsers struct {
	Group string   `json:"group"`
	Users []string `json:"users"`
}

func (d *daemonState) invite(ctx context.Context, raw json.RawMessage) (any, error) {
	p, err := params[groupUsers](raw)
	if err != nil {
		return nil, err
	}
	if err := need("group", p.Group); err != nil {
		return nil, err
	}
	if err := needUsers(p.Users); err != nil {
		return nil, err
	}
	var recs []record
	err = d.once(ctx, func(ctx context.Context, c *nc.Client) (err error) {
		recs, err = opInvite(ctx, c, p.Group, p.Users)
		return err
	})
	return objects(recs), err
}

func (d *daemonState) remove(ctx context.Context, raw json.RawMessage) (any, error) {
	p, err := params[groupUsers](raw)
	if err != nil {
		return nil, err
	}
	if err := need("group", p.Group); err != nil {
		return nil, err
	}
	if err := needUsers(p.Users); err != nil {
		return nil, err
	}
	var r record
	err = d.once(ctx, func(ctx context.Context, c *nc.Client) (err error) {
		r, err = opRemove(ctx, c, p.Group, p.Users)
		return err
	})
	return r.obj, err
}

type groupParam struct {
	Group string `json:"group"`
}

func (d *daemonState) update(ctx context.Context, raw json.RawMessage) (any, error) {
	p, err := params[groupParam](raw)
	if err != nil {
		return nil, err
	}
	if err := need("group", p.Group); err != nil {
		return nil, err
	}
	var r record
	err = d.once(ctx, func(ctx context.Context, c *nc.Client) (err error) {
		r, err = opUpdate(ctx, c, p.Group)
		return err
	})
	return r.obj, err
}

func (d *daemonState) listGroups(ctx context.Context, raw json.RawMessage) (any, error) {
	if _, err := params[struct{}](raw); err != nil {
		return nil, err
	}
	return d.list(ctx, func(ctx context.Context, c *nc.Client) ([]record, error) {
		return opGroups(ctx, c)
	})
}

func (d *daemonState) members(ctx context.Context, raw json.RawMessage) (any, error) {
	p, err := params[groupParam](raw)
	if err != nil {
		return nil, err
	}
	if err := need("group", p.Group); err != nil {
		return nil, err
	}
	return d.list(ctx, func(ctx context.Context, c *nc.Client) ([]record, error) {
		return opMembers(ctx, c, p.Group)
	})
}

func (d *daemonState) verify(ctx context.Context, raw json.RawMessage) (any, error) {
	p, err := params[struct {
		User   string `json:"user"`
		Accept bool   `json:"accept"`
	}](raw)
	if err != nil {
		return nil, err
	}
	if err := need("user", p.User); err != nil {
		return nil, err
	}
	return d.one(ctx, func(ctx context.Context, c *nc.Client) (record, error) {
		return opVerify(ctx, c, p.User, p.Accept)
	})
}

func (d *daemonState) fetchKey(ctx context.Context, raw json.RawMessage) (any, error) {
	p, err := params[struct {
		User string `json:"user"`
	}](raw)
	if err != nil {
		return nil, err
	}
	if err := need("user", p.User); err != nil {
		return nil, err
	}
	return d.list(ctx, func(ctx context.Context, c *nc.Client) ([]record, error) {
		return opFetchKey(ctx, c, p.User)
	})
}

func (d *daemonState) devices(ctx context.Context, raw json.RawMessage) (any, error) {
	if _, err := params[struct{}](raw); err != nil {
		return nil, err
	}
	return d.list(ctx, func(ctx context.Context, c *nc.Client) ([]record, error) {
		return opDevices(ctx, c)
	})
}

func (d *daemonState) approveDevice(ctx context.Context, raw json.RawMessage) (any, error) {
	p, err := params[struct {
		Device string `json:"device"`
	}](raw)
	if err != nil {
		return nil, err
	}
	if err := need("device", p.Device); err != nil {
		return nil, err
	}
	var r *record
	err = d.once(ctx, func(ctx context.Context, c *nc.Client) (err error) {
		r, err = opApproveDevice(ctx, c, p.Device)
		return err
	})
	if err != nil {
		if r != nil {
			// Approved, but not added everywhere: say where it went.
			return nil, &daemon.Error{Code: rpcError(err).Code, Message: userMessage(err), Data: r.obj}
		}
		return nil, err
	}
	return r.obj, nil
}

// revokeDevice needs the account password: the daemon reads it as
// every command does (QPCHAT_PASSWORD_FILE or QPCHAT_PASSWORD in its
// environment, else its terminal), never from the socket.
func (d *daemonState) revokeDevice(ctx context.Context, raw json.RawMessage) (any, error) {
	p, err := params[struct {
		Device string `json:"device"`
	}](raw)
	if err != nil {
		return nil, err
	}
	if err := need("device", p.Device); err != nil {
		return nil, err
	}
	var r record
	err = d.once(ctx, func(ctx context.Context, c *nc.Client) (err error) {
		r, err = opRevokeDevice(ctx, d.g, d.f, d.st, c, p.Device)
		return err
	})
	return r.obj, err
}

// status says who the daemon is and whether it is connected.
func (d *daemonState) status(ctx context.Context, raw json.RawMessage) (any, error) {
	if _, err := params[struct{}](raw); err != nil {
		return nil, err
	}
	return map[string]any{"user": d.user, "device": d.device, "server": d.f.Server,
		"profile": d.p.Profile, "connected": d.connected.Load(), "pending": d.lv.Pending()}, nil
}
