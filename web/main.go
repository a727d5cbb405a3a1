//go:build js && wasm

// Command web is qpchat's browser client: node/client, mls, kem and
// opaque compiled to WebAssembly (GOOS=js GOARCH=wasm), talking to the
// node over its WebSocket endpoint inside the web channel (rpc), with
// its state in IndexedDB sealed under the user's password. The page
// (web/app/static: index.html, app.js) drives it through the functions
// it installs as globalThis.qpchat; each returns a Promise.
//
// Build: go generate ./web/app (docs/WEB.md).
package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"syscall/js"
	"time"

	nc "qpchat/node/client"
	"qpchat/rpc"
	"qpchat/web/perf"
)

func main() {
	a := &webApp{}
	api := js.Global().Get("Object").New()
	for name, fn := range map[string]func(args []js.Value) (any, error){
		"register":    a.register,
		"login":       a.login,
		"logout":      a.logout,
		"groups":      a.groups,
		"createGroup": a.createGroup,
		"invite":      a.invite,
		"send":        a.send,
		"history":     a.history,
		"members":     a.members,
		"verify":      a.verify,
		"leave":       a.leave,
		"devices":     a.devices,
		"onEvent":     a.onEvent,
		"bench":       bench,
	} {
		api.Set(name, promised(fn))
	}
	api.Set("version", "1")
	js.Global().Set("qpchat", api)
	js.Global().Call("dispatchEvent", js.Global().Get("Event").New("qpchat-ready"))
	select {} // serve calls until the page goes
}

// promised wraps fn as a JS function returning a Promise; fn runs on its
// own goroutine, so it may block (network, IndexedDB, Argon2id).
func promised(fn func(args []js.Value) (any, error)) js.Func {
	return js.FuncOf(func(_ js.Value, args []js.Value) any {
		args = append([]js.Value(nil), args...)
		return js.Global().Get("Promise").New(js.FuncOf(func(_ js.Value, pa []js.Value) any {
			resolve, reject := pa[0], pa[1]
			go func() {
				defer func() {
					if p := recover(); p != nil {
						reject.Invoke(js.Global().Get("Error").New(fmt.Sprint("internal error: ", p)))
					}
				}()
				v, err := fn(args)
				if err != nil {
					reject.Invoke(js.Global().Get("Error").New(err.Error()))
					return
				}
				resolve.Invoke(toJS(v))
			}()
			return nil
		}))
	})
}

// toJS converts Go values made of maps, slices, strings, numbers and
// bools to JS values.
func toJS(v any) any {
	switch v := v.(type) {
	case nil:
		return js.Undefined()
	case map[string]any:
		o := js.Global().Get("Object").New()
		for k, x := range v {
			o.Set(k, toJS(x))
		}
		return o
	case []map[string]any:
		a := js.Global().Get("Array").New(len(v))
		for i, x := range v {
			a.SetIndex(i, toJS(x))
		}
		return a
	case []string:
		a := js.Global().Get("Array").New(len(v))
		for i, x := range v {
			a.SetIndex(i, x)
		}
		return a
	}
	return v
}

// webApp is the signed-in session: one profile, one Live connection.
type webApp struct {
	mu       sync.Mutex
	db       *idb
	st       *nc.State
	live     *nc.Live
	user     string
	listener js.Value // the page's event callback
}

// serverURL is the node's WebSocket endpoint on the page's own origin.
func serverURL() string {
	loc := js.Global().Get("location")
	scheme := "wss://"
	if loc.Get("protocol").String() == "http:" {
		scheme = "ws://"
	}
	return scheme + loc.Get("host").String() + rpc.WebPath
}

func argString(args []js.Value, i int) string {
	if i >= len(args) || args[i].Type() != js.TypeString {
		return ""
	}
	return args[i].String()
}

// openState opens the profile's state from IndexedDB under password.
func (a *webApp) openState(user string, password []byte, mustExist bool) (*nc.State, error) {
	if a.db == nil {
		db, err := openIDB()
		if err != nil {
			return nil, err
		}
		a.db = db
	}
	key := "profile:" + user
	image, err := a.db.get(key)
	if err != nil {
		return nil, err
	}
	return nc.OpenState(nc.StateOptions{
		Passphrase: password,
		MustExist:  mustExist,
		Image:      image,
		Persist:    func(img []byte) error { return a.db.put(key, img) },
	})
}

func (a *webApp) dial(ctx context.Context, st *nc.State) (*rpc.Client, error) {
	// The node key is trusted on first use and pinned in the state: the
	// page came from the same origin, so there is nothing better to go
	// by (docs/PROTOCOL.md, "The web channel").
	return rpc.Dial(ctx, serverURL(), rpc.DialOptions{Pins: st})
}

// register creates the account, this browser's device and its state.
func (a *webApp) register(args []js.Value) (any, error) {
	return a.signIn(argString(args, 0), []byte(argString(args, 1)), true)
}

// login opens this browser's state for the user, or, on a browser that
// has none, logs in with the password and registers a new device.
func (a *webApp) login(args []js.Value) (any, error) {
	return a.signIn(argString(args, 0), []byte(argString(args, 1)), false)
}

func (a *webApp) signIn(user string, password []byte, register bool) (any, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.live != nil {
		return nil, errors.New("already signed in")
	}
	if user == "" || len(password) == 0 {
		return nil, errors.New("user name and password are required")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The state is sealed under the same password (its own Argon2id
	// salt); a wrong one fails here, before the network.
	st, err := a.openState(user, password, false)
	if err != nil {
		return nil, err
	}
	prof, err := st.Profile()
	if err != nil {
		st.Close()
		return nil, err
	}
	if prof.Device == nil {
		if err := a.newDevice(ctx, st, user, password, register); err != nil {
			st.Close()
			return nil, err
		}
	}
	cl, err := nc.New(nc.Config{State: st})
	if err != nil {
		st.Close()
		return nil, err
	}
	live, err := nc.StartLive(ctx, nc.LiveConfig{Client: cl, Dial: func(ctx context.Context) (nc.Session, func(), error) {
		rc, err := a.dial(ctx, st)
		if err != nil {
			return nil, nil, err
		}
		p, err := st.Profile()
		if err != nil {
			rc.Close()
			return nil, nil, err
		}
		s, err := nc.AuthenticateDevice(ctx, &nc.RPCEntry{C: rc}, p)
		if err != nil {
			rc.Close()
			return nil, nil, err
		}
		return s, func() { rc.Close() }, nil
	}})
	if err != nil {
		st.Close()
		return nil, err
	}
	a.st, a.live, a.user = st, live, user
	go a.pump(live, cl)
	live.DoOnce(ctx, func(ctx context.Context, c *nc.Client) error {
		_, err := c.ReplenishKeyPackages(ctx, nil)
		return err
	})
	p, _ := st.Profile()
	return map[string]any{"user": user, "device": nc.Fingerprint(p.DeviceKey()), "userKey": nc.Fingerprint(p.UserKey)}, nil
}

// newDevice registers the account (register) or logs in, and makes this
// browser's device.
func (a *webApp) newDevice(ctx context.Context, st *nc.State, user string, password []byte, register bool) error {
	rc, err := a.dial(ctx, st)
	if err != nil {
		return err
	}
	defer rc.Close()
	e := &nc.RPCEntry{C: rc}
	if register {
		if _, _, err := nc.RegisterUser(ctx, e, user, password, nc.AccountOptions{}); err != nil {
			return err
		}
	}
	uk, ls, err := nc.Login(ctx, e, user, password, nc.AccountOptions{})
	if err != nil {
		return err
	}
	dev, cert, err := nc.NewDevice(ctx, e, ls, user, uk, nil)
	if err != nil {
		return err
	}
	return st.SaveProfile(&nc.Profile{User: user, UserKey: uk.Public().(ed25519.PublicKey), Device: dev, Cert: cert, Server: serverURL()})
}

// pump hands the Live's events to the page's callback.
func (a *webApp) pump(l *nc.Live, cl *nc.Client) {
	for ev := range l.Events() {
		a.mu.Lock()
		cb := a.listener
		a.mu.Unlock()
		if cb.IsUndefined() || cb.Type() != js.TypeFunction {
			continue
		}
		m := map[string]any{}
		if ev.State != 0 {
			m["state"] = ev.State.String()
		}
		if ev.Err != nil {
			m["error"] = ev.Err.Error()
		}
		if ev.Event != nil {
			m = eventJS(cl, ev.Event, m)
		}
		cb.Invoke(toJS(m))
	}
}

func eventJS(cl *nc.Client, e *nc.Event, m map[string]any) map[string]any {
	if m == nil {
		m = map[string]any{}
	}
	m["kind"] = e.Kind.String()
	m["group"] = ""
	if cl != nil {
		m["group"] = cl.GroupName(e.Group)
	}
	m["sender"] = e.Sender
	m["text"] = e.Text
	m["time"] = e.Time
	m["outgoing"] = e.Outgoing
	m["users"] = e.Users
	return m
}

func (a *webApp) onEvent(args []js.Value) (any, error) {
	if len(args) == 0 || args[0].Type() != js.TypeFunction {
		return nil, errors.New("onEvent needs a function")
	}
	a.mu.Lock()
	a.listener = args[0]
	a.mu.Unlock()
	return nil, nil
}

// do runs f with the client on the Live's goroutine.
func (a *webApp) do(once bool, f func(ctx context.Context, c *nc.Client) error) error {
	a.mu.Lock()
	l := a.live
	a.mu.Unlock()
	if l == nil {
		return errors.New("not signed in")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if once {
		return l.DoOnce(ctx, f)
	}
	return l.Do(ctx, f)
}

func (a *webApp) logout(args []js.Value) (any, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.live != nil {
		a.live.Close()
		a.st.Close()
		a.live, a.st = nil, nil
	}
	return nil, nil
}

func (a *webApp) groups(args []js.Value) (any, error) {
	var out []map[string]any
	err := a.do(false, func(ctx context.Context, c *nc.Client) error {
		gs, err := c.Groups(ctx)
		out = out[:0]
		for _, g := range gs {
			out = append(out, map[string]any{"name": g.Name, "members": g.Members, "dm": g.DM, "removed": g.Removed || g.Left, "epoch": int(g.Epoch)})
		}
		return err
	})
	return out, err
}

func (a *webApp) createGroup(args []js.Value) (any, error) {
	name := argString(args, 0)
	return nil, a.do(true, func(ctx context.Context, c *nc.Client) error {
		_, err := c.CreateGroup(ctx, name, 0)
		return err
	})
}

func (a *webApp) invite(args []js.Value) (any, error) {
	group, users := argString(args, 0), []string{}
	if len(args) > 1 && args[1].Type() == js.TypeObject {
		for i := range args[1].Length() {
			users = append(users, args[1].Index(i).String())
		}
	}
	var n int
	err := a.do(true, func(ctx context.Context, c *nc.Client) error {
		var err error
		n, err = c.Invite(ctx, group, users)
		return err
	})
	return map[string]any{"devices": n}, err
}

func (a *webApp) send(args []js.Value) (any, error) {
	a.mu.Lock()
	l := a.live
	a.mu.Unlock()
	if l == nil {
		return nil, errors.New("not signed in")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	group, text := argString(args, 0), argString(args, 1)
	err := l.SendWait(ctx, group, text)
	if err != nil {
		// A text over the node's message size: say how much fits.
		var msg string
		var ok bool
		a.do(false, func(ctx context.Context, c *nc.Client) error {
			msg, ok = nc.ExplainTooLarge(ctx, c, group, text, err)
			return nil
		})
		if ok {
			return nil, errors.New(msg)
		}
	}
	return nil, err
}

func (a *webApp) history(args []js.Value) (any, error) {
	group := argString(args, 0)
	var out []map[string]any
	err := a.do(false, func(ctx context.Context, c *nc.Client) error {
		evs, _, err := c.History(group, nc.HistoryOptions{})
		out = out[:0]
		for _, e := range evs {
			m := eventJS(nil, e, nil)
			m["group"] = group
			out = append(out, m)
		}
		return err
	})
	return out, err
}

func (a *webApp) members(args []js.Value) (any, error) {
	group := argString(args, 0)
	var out []map[string]any
	err := a.do(false, func(ctx context.Context, c *nc.Client) error {
		ms, err := c.Members(ctx, group)
		out = out[:0]
		for _, m := range ms {
			out = append(out, map[string]any{"user": m.User, "device": m.Device, "self": m.Self, "verified": m.Verified})
		}
		return err
	})
	return out, err
}

// verify shows the safety number with a user; accept marks them verified.
func (a *webApp) verify(args []js.Value) (any, error) {
	user := argString(args, 0)
	accept := len(args) > 1 && args[1].Truthy()
	var res map[string]any
	err := a.do(accept, func(ctx context.Context, c *nc.Client) error {
		v, err := c.Verify(ctx, user, accept)
		if err != nil {
			return err
		}
		res = map[string]any{"user": v.User, "safetyNumber": v.SafetyNumber, "verified": v.Verified, "changed": v.Changed != nil}
		return nil
	})
	return res, err
}

func (a *webApp) leave(args []js.Value) (any, error) {
	group := argString(args, 0)
	return nil, a.do(true, func(ctx context.Context, c *nc.Client) error {
		_, err := c.Leave(ctx, group, false, 5*time.Second)
		return err
	})
}

func (a *webApp) devices(args []js.Value) (any, error) {
	var out []map[string]any
	err := a.do(false, func(ctx context.Context, c *nc.Client) error {
		ds, err := c.Devices(ctx)
		out = out[:0]
		self := nc.Fingerprint(c.DeviceKey())
		for _, d := range ds {
			fp := nc.Fingerprint(d.Key)
			out = append(out, map[string]any{"device": fp, "self": fp == self, "revoked": d.Revoked, "approved": d.Approved})
		}
		return err
	})
	return out, err
}

// bench runs perf.Run(members, iterations, argon2id) in the browser and
// returns its result as JSON text (web/app's BenchmarkWebVsNative compares
// it with the same code run natively). It needs no session.
func bench(args []js.Value) (any, error) {
	if len(args) != 3 || args[0].Type() != js.TypeNumber || args[1].Type() != js.TypeNumber || args[2].Type() != js.TypeBoolean {
		return nil, errors.New("bench(members, iterations, argon2id) takes two numbers and a boolean")
	}
	r, err := perf.Run(args[0].Int(), args[1].Int(), args[2].Bool())
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(r)
	return string(b), err
}
