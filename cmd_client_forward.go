package main

// One-shot commands while a daemon holds the profile: the state file is
// locked, so the commands the daemon has a method for (forwardedCommands)
// are passed to it over its socket (found through the PROFILE.daemon
// file it leaves in the state directory) and print what they print
// otherwise. Every other command fails with an error that names the
// daemon and its socket (openStateFile).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"qpchat/node/daemon"
)

// readDaemonInfo reads the info file a daemon of the profile left, or
// returns nil.
func readDaemonInfo(f *ClientFlags, p *ProfileFlags) *daemonInfo {
	fh, err := os.Open(daemonInfoPath(stateDir(f.StateDir), p.Profile))
	if err != nil {
		return nil
	}
	defer fh.Close()
	var info daemonInfo
	if err := json.NewDecoder(io.LimitReader(fh, 8192)).Decode(&info); err != nil || info.PID <= 0 {
		return nil
	}
	if err := syscall.Kill(info.PID, 0); errors.Is(err, syscall.ESRCH) {
		return nil // left by a daemon that was killed
	}
	return &info
}

// runningDaemon returns the daemon holding the profile, or nil when
// none answers on the socket its info file names (none runs, it ended
// without removing the file, or it serves only its stdin and stdout).
func runningDaemon(f *ClientFlags, p *ProfileFlags) *daemonInfo {
	info := readDaemonInfo(f, p)
	if info == nil || info.Socket == "" {
		return nil
	}
	c, err := net.DialTimeout("unix", info.Socket, time.Second)
	if err != nil {
		return nil
	}
	c.Close()
	return info
}

// heldError is the error of a command that cannot run while the daemon
// holds the profile.
func heldError(profile string, d *daemonInfo) error {
	if d.Socket == "" {
		return fmt.Errorf("profile %q is held by a running qpchat daemon (pid %d) that serves only its stdin and stdout; stop it to run this command, or start it with --socket too",
			profile, d.PID)
	}
	return fmt.Errorf("profile %q is held by a running qpchat daemon (pid %d, socket %s): stop it to run this command (%s go through it by themselves)",
		profile, d.PID, d.Socket, forwardedCommands)
}

// forwardedCommands are the commands that go through a daemon.
const forwardedCommands = "send, dm, recv, join, groups, members, create-group, invite, remove, update, verify, fetch-key, devices and approve-device"

// forwardedError is an error the daemon answered.
type forwardedError struct {
	msg  string
	exit int
}

func (e *forwardedError) Error() string { return e.msg }

// callDaemon sends one request to the daemon and returns its result,
// skipping the notifications that arrive meanwhile.
func callDaemon(ctx context.Context, d *daemonInfo, method string, params any, result any) error {
	var dl net.Dialer
	c, err := dl.DialContext(ctx, "unix", d.Socket)
	if err != nil {
		return &unreachableError{fmt.Errorf("reaching the daemon at %s: %w", d.Socket, err)}
	}
	defer c.Close()
	if t, ok := ctx.Deadline(); ok {
		c.SetDeadline(t)
	}
	req, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
	if err != nil {
		return err
	}
	if _, err := c.Write(append(req, '\n')); err != nil {
		return &unreachableError{fmt.Errorf("writing to the daemon at %s: %w", d.Socket, err)}
	}
	dec := json.NewDecoder(c)
	for {
		var resp struct {
			ID     json.RawMessage `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *daemon.Error   `json:"error"`
		}
		if err := dec.Decode(&resp); err != nil {
			return &unreachableError{fmt.Errorf("reading the daemon's answer: %w", err)}
		}
		if string(resp.ID) != "1" {
			continue // a notification
		}
		if resp.Error != nil {
			exit := exitError
			if data, ok := resp.Error.Data.(map[string]any); ok {
				if n, ok := data["exit_code"].(float64); ok {
					exit = int(n)
				}
			}
			return &forwardedError{msg: resp.Error.Message, exit: exit}
		}
		return json.Unmarshal(resp.Result, result)
	}
}

// forward runs a command at the daemon and prints its objects, as text
// made by text (or as JSON lines).
func forward(g *Globals, f *ClientFlags, p *ProfileFlags, d *daemonInfo, method string, params any, wait time.Duration, text func(map[string]any) string) (int, error) {
	objs, err := forwardObjects(g, f, p, d, method, params, wait, text)
	return len(objs), err
}

// forwardObjects is forward that also returns the printed objects.
func forwardObjects(g *Globals, f *ClientFlags, p *ProfileFlags, d *daemonInfo, method string, params any, wait time.Duration, text func(map[string]any) string) ([]map[string]any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*f.Timeout+30*time.Second+wait)
	defer cancel()
	var raw json.RawMessage
	if err := callDaemon(ctx, d, method, params, &raw); err != nil {
		return nil, err
	}
	var objs []map[string]any
	if len(raw) > 0 && raw[0] == '[' {
		if err := json.Unmarshal(raw, &objs); err != nil {
			return nil, fmt.Errorf("the daemon's answer to %s: %w", method, err)
		}
	} else {
		var obj map[string]any
		if err := json.Unmarshal(raw, &obj); err != nil {
			return nil, fmt.Errorf("the daemon's answer to %s: %w", method, err)
		}
		objs = append(objs, obj)
	}
	o := newOut(g, p)
	for _, obj := range objs {
		o.emit(obj, "%s", text(obj))
	}
	return objs, nil
}

// recvThroughDaemon is recv while a daemon holds the profile: the daemon
// applies the queue and returns the events, and each file received is
// then saved into dir (none when empty) by the daemon's download method,
// as recv saves files itself.
func recvThroughDaemon(g *Globals, f *ClientFlags, p *ProfileFlags, d *daemonInfo, wait time.Duration, dir string) error {
	objs, err := forwardObjects(g, f, p, d, "recv", map[string]any{"wait": wait.Seconds()}, wait, eventText)
	if err != nil || dir == "" {
		return err
	}
	o := newOut(g, p)
	for _, e := range objs {
		seq, _ := e["seq"].(float64)
		if e["event"] != "file" || e["outgoing"] == true || seq < 1 {
			continue
		}
		group, sender, name := str(e, "group"), str(e, "sender"), str(e, "file")
		ctx, cancel := fileContext(f, 0)
		var res struct {
			Path string `json:"path"`
		}
		err := callDaemon(ctx, d, "download", map[string]any{"group": group, "seq": uint64(seq), "dir": dir}, &res)
		cancel()
		if err != nil {
			return fmt.Errorf("saving %s from %s: %w", termSafe(name), termSafe(sender), err)
		}
		emitSaved(o, group, sender, name, e["size"], res.Path)
	}
	return nil
}
