package main

// What the client commands do and print, shared by the one-shot
// commands (cmd_client.go), the daemon (cmd_client_daemon.go) and the
// commands forwarded to a daemon (cmd_client_forward.go): each op
// returns records, the JSON object `--json` prints (and the daemon
// returns) with the text line the command prints otherwise. Where a
// forwarded command prints text, the text is made from the object alone
// (the *Text functions), so both paths print the same.

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	nc "qpchat/node/client"
	"qpchat/node/proto"
)

// record is one line of a command's output.
type record struct {
	obj  map[string]any // nil: a remark shown only as text
	text string
}

// emitAll prints records.
func (o *out) emitAll(recs []record) {
	for _, r := range recs {
		o.emit(r.obj, "%s", r.text)
	}
}

// objects returns the JSON objects of records (never nil).
func objects(recs []record) []map[string]any {
	out := []map[string]any{}
	for _, r := range recs {
		if r.obj != nil {
			out = append(out, r.obj)
		}
	}
	return out
}

// str reads a string member of an object made here or decoded from JSON.
func str(obj map[string]any, k string) string {
	s, _ := obj[k].(string)
	return s
}

// num reads a number member made here or decoded from JSON.
func num(obj map[string]any, k string) int64 {
	switch v := obj[k].(type) {
	case int:
		return int64(v)
	case uint64:
		return int64(v)
	case float64:
		return int64(v)
	}
	return 0
}

// flag reads a boolean member.
func flag(obj map[string]any, k string) bool {
	b, _ := obj[k].(bool)
	return b
}

// strs reads a list of strings made here or decoded from JSON.
func strs(obj map[string]any, k string) []string {
	switch v := obj[k].(type) {
	case []string:
		return v
	case []any:
		out := make([]string, 0, len(v))
		for _, x := range v {
			s, _ := x.(string)
			out = append(out, s)
		}
		return out
	}
	return nil
}

// sentRecord is the output of send, send --all and dm for one group.
func sentRecord(group string) record {
	obj := map[string]any{"group": group, "sent": true}
	return record{obj, sentText(obj)}
}

func sentText(obj map[string]any) string { return "sent to " + termSafe(str(obj, "group")) }

// dmText is dm's line: it names the user too.
func dmText(user string, obj map[string]any) string {
	return fmt.Sprintf("sent to %s (%s)", termSafe(user), termSafe(str(obj, "group")))
}

// eventObject is the JSON object of one history entry. JSON carries the
// exact strings, and a text that is not valid UTF-8 also as text_base64
// (JSON strings cannot hold it).
func eventObject(group string, e *nc.Event) map[string]any {
	obj := map[string]any{"event": e.Kind.String(), "group": group, "sender": e.Sender, "time": e.Time, "epoch": e.Epoch, "seq": e.Seq}
	if e.Outgoing {
		obj["outgoing"] = true
	}
	switch e.Kind {
	case nc.EventMessage:
		obj["text"] = e.Text
		if !utf8.ValidString(e.Text) {
			obj["text_base64"] = base64.StdEncoding.EncodeToString([]byte(e.Text))
		}
	case nc.EventJoined:
		obj["inviter"] = e.Sender
	case nc.EventMembers:
		obj["text"], obj["users"] = e.Text, e.Users
	case nc.EventRefused:
		obj["reason"] = e.Text
	case nc.EventLost:
		obj["text"] = e.Text
	case nc.EventLeft:
		obj["text"], obj["users"] = e.Text, e.Users
	case nc.EventFile:
		obj["file"] = e.Text
		if ref, err := nc.ParseFileRef(e.File); err == nil {
			obj["size"] = ref.Size
		}
	}
	return obj
}

// eventText is the text line of a history entry: everything others
// wrote is escaped (termSafe) and a multi-line message continues on
// marked lines (messageLines).
func eventText(obj map[string]any) string {
	g, sender := termSafe(str(obj, "group")), termSafe(str(obj, "sender"))
	switch str(obj, "event") {
	case "message":
		text := str(obj, "text")
		if b64 := str(obj, "text_base64"); b64 != "" {
			if b, err := base64.StdEncoding.DecodeString(b64); err == nil {
				text = string(b)
			}
		}
		return fmt.Sprintf("[%s] %s: %s", g, sender, messageLines(text))
	case "joined":
		return fmt.Sprintf("[%s] joined, invited by %s", g, sender)
	case "members":
		return fmt.Sprintf("[%s] %s %s", g, sender, termSafe(str(obj, "text")))
	case "removed":
		return fmt.Sprintf("[%s] you were removed by %s", g, sender)
	case "update":
		return fmt.Sprintf("[%s] %s updated their keys", g, sender)
	case "refused":
		return fmt.Sprintf("[%s] REFUSED a message: %s", g, termSafe(str(obj, "reason")))
	case "lost":
		return "LOST: " + termSafe(str(obj, "text"))
	case "left":
		return fmt.Sprintf("[%s] %s", g, termSafe(str(obj, "text")))
	case "file":
		return fmt.Sprintf("[%s] %s sent a file: %s (%s)", g, sender, termSafe(str(obj, "file")), humanBytes(uint64(max(0, num(obj, "size")))))
	}
	return fmt.Sprintf("[%s] %s: %s", g, sender, termSafe(str(obj, "event")))
}

func eventRecord(c *nc.Client, e *nc.Event) record {
	obj := eventObject(c.GroupName(e.Group), e)
	return record{obj, eventText(obj)}
}

// groupObject is one group of groups (listGroups).
func groupObject(x nc.GroupInfo) map[string]any {
	if x.Removed {
		// No group state is left: no suite, epoch or members to show.
		return map[string]any{"group": x.Name, "id": hexID(x.ID), "dm": x.DM, "removed": true, "left": x.Left}
	}
	return map[string]any{"group": x.Name, "id": hexID(x.ID), "suite": fmt.Sprintf("0x%04x", x.Suite), "epoch": x.Epoch, "members": x.Members, "dm": x.DM, "removed": x.Removed}
}

func groupText(obj map[string]any) string {
	note := ""
	if dm := str(obj, "dm"); dm != "" {
		note = " (direct messages with " + dm + ")"
	}
	if removed, _ := obj["removed"].(bool); removed {
		how := "removed"
		if flag(obj, "left") {
			how = "left"
		}
		return fmt.Sprintf("%s: %s (this device is no longer a member)%s", termSafe(str(obj, "group")), how, termSafe(note))
	}
	return fmt.Sprintf("%s: %v members, epoch %v, suite %s%s", termSafe(str(obj, "group")), obj["members"], obj["epoch"], str(obj, "suite"), termSafe(note))
}

func opGroups(ctx context.Context, c *nc.Client) ([]record, error) {
	gs, err := c.Groups(ctx)
	if err != nil {
		return nil, err
	}
	var recs []record
	for _, x := range gs {
		obj := groupObject(x)
		recs = append(recs, record{obj, groupText(obj)})
	}
	return recs, nil
}

func memberText(obj map[string]any) string {
	state := "not verified"
	if v, _ := obj["verified"].(bool); v {
		state = "verified"
	}
	if s, _ := obj["self"].(bool); s {
		state = "this device"
	}
	return fmt.Sprintf("%s %s (%s)", termSafe(str(obj, "user")), str(obj, "device"), state)
}

func opMembers(ctx context.Context, c *nc.Client, group string) ([]record, error) {
	ms, err := c.Members(ctx, group)
	if err != nil {
		return nil, err
	}
	var recs []record
	for _, m := range ms {
		obj := map[string]any{"user": m.User, "device": m.Device, "verified": m.Verified, "self": m.Self}
		recs = append(recs, record{obj, memberText(obj)})
	}
	return recs, nil
}

func opDevices(ctx context.Context, c *nc.Client) ([]record, error) {
	devs, err := c.Devices(ctx)
	if err != nil {
		return nil, err
	}
	self := c.DeviceKey()
	var recs []record
	for _, d := range devs {
		isSelf := ed25519.PublicKey(d.Key).Equal(ed25519.PublicKey(self))
		obj := map[string]any{"device": nc.Fingerprint(d.Key), "revoked": d.Revoked, "self": isSelf, "certified": d.Certified,
			"approved": d.Approved, "pending": devicePending(d)}
		recs = append(recs, record{obj, deviceText(obj)})
	}
	return recs, nil
}

func deviceText(obj map[string]any) string {
	note := ""
	if flag(obj, "revoked") {
		note = " (revoked)"
	}
	if flag(obj, "self") {
		note += " (this device)"
	}
	fp := str(obj, "device")
	note += deviceNote(fp, flag(obj, "revoked"), flag(obj, "certified"), flag(obj, "approved"), flag(obj, "self"))
	return fp + note
}

func opFetchKey(ctx context.Context, c *nc.Client, user string) ([]record, error) {
	info, err := c.FetchKey(ctx, user)
	if err != nil {
		return nil, err
	}
	recs := []record{keyRecord(map[string]any{"user": info.User, "user_key": nc.Fingerprint(info.UserKey), "status": info.Status})}
	for _, d := range info.Devices {
		recs = append(recs, keyRecord(map[string]any{"user": info.User, "device": nc.Fingerprint(d)}))
	}
	if info.Skipped != nil && len(info.Skipped.Devices) > 0 {
		recs = append(recs, skippedRecord("", *info.Skipped))
	}
	return recs, nil
}

func keyRecord(obj map[string]any) record { return record{obj, keyText(obj)} }

func keyText(obj map[string]any) string {
	if _, ok := obj["skipped_unapproved"]; ok {
		return skippedText(obj)
	}
	if d := str(obj, "device"); d != "" {
		return "device " + d
	}
	return fmt.Sprintf("user %s key %s (%s)", str(obj, "user"), str(obj, "user_key"), str(obj, "status"))
}

func opVerify(ctx context.Context, c *nc.Client, user string, accept bool) (record, error) {
	v, err := c.Verify(ctx, user, accept)
	if err != nil {
		return record{}, err
	}
	obj := map[string]any{"user": v.User, "safety_number": v.SafetyNumber, "user_key": nc.Fingerprint(v.Key), "verified": v.Verified, "changed": v.Changed != nil}
	if v.Changed != nil {
		obj["new_user_key"] = nc.Fingerprint(v.Changed)
		obj["new_safety_number"] = v.ChangedSafetyNumber
	}
	return record{obj, verifyText(obj)}, nil
}

func verifyText(obj map[string]any) string {
	user := str(obj, "user")
	if flag(obj, "changed") {
		return fmt.Sprintf("WARNING: the node now publishes another key for %s: %s\nsafety number with the NEW key: %s\ncompare it with %s, then run verify --accept %s",
			user, str(obj, "new_user_key"), str(obj, "new_safety_number"), user, user)
	}
	state := "not verified yet: compare the number with " + user + " and run verify --accept"
	if flag(obj, "verified") {
		state = "verified"
	}
	return fmt.Sprintf("safety number with %s: %s\n%s", user, str(obj, "safety_number"), state)
}

func opCreateGroup(ctx context.Context, c *nc.Client, name string, suite uint16) (record, error) {
	id, err := c.CreateGroup(ctx, name, suite)
	if err != nil {
		return record{}, err
	}
	obj := map[string]any{"group": name, "id": hexID(id), "suite": fmt.Sprintf("0x%04x", suite)}
	return record{obj, createdText(obj)}, nil
}

func createdText(obj map[string]any) string {
	return fmt.Sprintf("created group %s (suite %s)", str(obj, "group"), str(obj, "suite"))
}

func opInvite(ctx context.Context, c *nc.Client, group string, users []string) ([]record, error) {
	r, err := c.InviteReport(ctx, group, users)
	var recs []record
	for _, s := range r.Skipped {
		if len(s.Devices) > 0 {
			recs = append(recs, skippedRecord(group, s))
		}
	}
	if err != nil {
		return recs, err
	}
	if n := r.Added; n > 0 {
		obj := map[string]any{"group": group, "users": users, "devices": n}
		return append(recs, record{obj, inviteText(obj)}), nil
	}
	// Nothing was added: every device of each user is in already.
	ms, err := c.Members(ctx, group)
	if err != nil {
		return recs, err
	}
	for _, u := range users {
		user, _ := proto.NormalizeUser(u)
		member := false
		for _, m := range ms {
			member = member || m.User == user
		}
		if !member {
			return recs, fmt.Errorf("no device of %s could be added to %s", u, group)
		}
		obj := map[string]any{"group": group, "user": user, "already_member": true}
		recs = append(recs, record{obj, inviteText(obj)})
	}
	return recs, nil
}

func inviteText(obj map[string]any) string {
	if _, ok := obj["skipped_unapproved"]; ok {
		return skippedText(obj)
	}
	if flag(obj, "already_member") {
		return fmt.Sprintf("%s is already a member of %s", str(obj, "user"), str(obj, "group"))
	}
	return fmt.Sprintf("invited %s to %s (%d device(s))", strings.Join(strs(obj, "users"), ", "), str(obj, "group"), num(obj, "devices"))
}

func opRemove(ctx context.Context, c *nc.Client, group string, users []string) (record, error) {
	n, err := c.Remove(ctx, group, users)
	if err != nil {
		return record{}, err
	}
	obj := map[string]any{"group": group, "users": users, "devices": n}
	return record{obj, removeText(obj)}, nil
}

func removeText(obj map[string]any) string {
	return fmt.Sprintf("removed %s from %s (%d device(s))", strings.Join(strs(obj, "users"), ", "), str(obj, "group"), num(obj, "devices"))
}

func opUpdate(ctx context.Context, c *nc.Client, group string) (record, error) {
	epoch, err := c.Update(ctx, group)
	if err != nil {
		return record{}, err
	}
	obj := map[string]any{"group": group, "epoch": epoch}
	return record{obj, updateText(obj)}, nil
}

func updateText(obj map[string]any) string {
	return fmt.Sprintf("updated keys in %s (epoch %d)", str(obj, "group"), num(obj, "epoch"))
}

// opApproveDevice approves a device; errors past the approval itself
// come with the record, which says where the device went.
func opApproveDevice(ctx context.Context, c *nc.Client, device string) (*record, error) {
	devs, err := c.Devices(ctx)
	if err != nil {
		return nil, err
	}
	d, err := matchDevice(devs, device)
	if err != nil {
		return nil, err
	}
	fp := nc.Fingerprint(d.Key)
	switch {
	case d.Revoked:
		return nil, fmt.Errorf("device %s is revoked", fp)
	case !d.Certified:
		return nil, fmt.Errorf("device %s is not certified by your user key; it cannot be approved", fp)
	}
	groups, err := c.ApproveDevice(ctx, d.Key)
	if groups == nil {
		groups = []string{}
	}
	obj := map[string]any{"approved": fp, "groups": groups}
	return &record{obj, approvedText(obj)}, err
}

func approvedText(obj map[string]any) string {
	groups := strs(obj, "groups")
	return fmt.Sprintf("approved %s; added it to %d group(s) %s", str(obj, "approved"), len(groups), strings.Join(groups, ", "))
}

// opRevokeDevice revokes one of the user's other devices (a login
// session on a second connection, with the account password read as
// every command reads it) and removes it from every group.
func opRevokeDevice(ctx context.Context, g *Globals, f *ClientFlags, st *nc.State, c *nc.Client, device string) (record, error) {
	devs, err := c.Devices(ctx)
	if err != nil {
		return record{}, err
	}
	want := strings.TrimPrefix(strings.ToLower(device), "sha256:")
	var match [][]byte
	for _, d := range devs {
		if strings.HasPrefix(strings.TrimPrefix(nc.Fingerprint(d.Key), "sha256:"), want) && len(want) >= 8 {
			match = append(match, d.Key)
		}
	}
	if len(match) != 1 {
		return record{}, fmt.Errorf("%d devices match %q (give at least 8 hex digits of one fingerprint)", len(match), device)
	}
	dev := match[0]
	if ed25519.PublicKey(dev).Equal(ed25519.PublicKey(c.DeviceKey())) {
		return record{}, errors.New("this is the current device; use logout instead")
	}
	pw, err := password(g, false)
	if err != nil {
		return record{}, err
	}
	// A second connection for the login session keeps the device
	// session for removing the device from groups.
	rc2, err := dialState(ctx, g, f, st, false)
	if err != nil {
		return record{}, err
	}
	defer rc2.Close()
	_, ls, err := nc.Login(ctx, &nc.RPCEntry{C: rc2}, c.Profile().User, pw, accountOptions())
	clear(pw)
	if err != nil {
		return record{}, err
	}
	if err := ls.RevokeDevice(ctx, dev); err != nil {
		return record{}, err
	}
	groups, err := c.RemoveDevice(ctx, dev)
	if err != nil {
		return record{}, err
	}
	return record{map[string]any{"revoked": nc.Fingerprint(dev), "groups": groups},
		fmt.Sprintf("revoked %s; removed it from %d groups %v", nc.Fingerprint(dev), len(groups), groups)}, nil
}
