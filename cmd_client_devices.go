package main

// Approving devices (node/client/approvals.go): a new device of a user
// joins no group until one of the user's devices approves it, because
// the password alone can certify a device.

import (
	"context"
	"fmt"
	"strings"

	nc "qpchat/node/client"
)

// ApproveDeviceCmd approves one of the user's devices.
type ApproveDeviceCmd struct {
	Device string `arg:"" help:"Fingerprint (or a unique prefix of at least 8 hex digits) of the device to approve, as register-state printed it on that device and devices lists it."`
}

// Run approves the device and adds it to this device's groups.
func (c *ApproveDeviceCmd) Run(g *Globals, f *ClientFlags, p *ProfileFlags) error {
	if d := runningDaemon(f, p); d != nil {
		_, err := forward(g, f, p, d, "approveDevice", map[string]any{"device": c.Device}, 0, approvedText)
		return err
	}
	return withConn(g, f, p, func(ctx context.Context, cn *conn) error {
		r, err := opApproveDevice(ctx, cn.c, c.Device)
		if r != nil {
			newOut(g, p).emitAll([]record{*r})
		}
		return err
	})
}

// matchDevice finds the one device whose fingerprint starts with arg
// (with or without "sha256:", at least 8 hex digits).
func matchDevice(devs []nc.Device, arg string) (nc.Device, error) {
	want := strings.TrimPrefix(strings.ToLower(strings.TrimSpace(arg)), "sha256:")
	var match []nc.Device
	if len(want) >= 8 {
		for _, d := range devs {
			if strings.HasPrefix(strings.TrimPrefix(nc.Fingerprint(d.Key), "sha256:"), want) {
				match = append(match, d)
			}
		}
	}
	if len(match) != 1 {
		return nc.Device{}, fmt.Errorf("%d of your devices match %q (give at least 8 hex digits of one fingerprint, as devices lists them)", len(match), arg)
	}
	return match[0], nil
}

// devicePending says whether a device waits for approval on this device.
func devicePending(d nc.Device) bool { return d.Certified && !d.Revoked && !d.Approved }

// deviceNote describes a device's approval state for devices.
func deviceNote(fp string, revoked, certified, approved, self bool) string {
	switch {
	case self || revoked:
		return ""
	case !certified:
		return " (NOT certified by your user key: ignored)"
	case approved:
		return " (approved)"
	}
	return " (pending: in none of your groups; if it is yours, run approve-device " + fp + ")"
}

// approvalHint tells a new device how it joins the user's groups, when
// the user has other devices.
func approvalHint(ctx context.Context, cl *nc.Client, fp string) string {
	devs, err := cl.Devices(ctx)
	if err != nil {
		return ""
	}
	others := 0
	for _, d := range devs {
		if !d.Revoked && nc.Fingerprint(d.Key) != fp {
			others++
		}
	}
	if others == 0 {
		return ""
	}
	return "\nthis device joins none of your groups until you approve it: on one of your other devices, run\n  approve-device " + fp
}

// emitSkipped tells the user which devices of another user were left
// out because none of that user's approved devices vouches for them
// (node/client/devicetrust.go): certified with the password alone.
func emitSkipped(o *out, group string, s nc.SkippedDevices) {
	if len(s.Devices) == 0 {
		return
	}
	o.emitAll([]record{skippedRecord(group, s)})
}

// skippedRecord reports devices of another user left out because no
// approval chain reaches them (devicetrust.go).
func skippedRecord(group string, s nc.SkippedDevices) record {
	fps := make([]string, len(s.Devices))
	for i, d := range s.Devices {
		fps[i] = nc.Fingerprint(d)
	}
	obj := map[string]any{"user": s.User, "skipped_unapproved": fps, "no_first_device": s.NoRoot}
	if group != "" {
		obj["group"] = group
	}
	return record{obj, skippedText(obj)}
}

func skippedText(obj map[string]any) string {
	fps, user := strs(obj, "skipped_unapproved"), str(obj, "user")
	noun := "device"
	if len(fps) > 1 {
		noun = "devices"
	}
	why := "no approved device of " + user + " approved it; " + user + " can run approve-device on an approved device"
	if flag(obj, "no_first_device") {
		why = "the node names no first device for " + user + " (an account that had several devices before nodes kept approvals), so no device of it can be trusted"
	}
	return fmt.Sprintf("skipped %d unapproved %s of %s (%s): %s", len(fps), noun, termSafe(user), strings.Join(fps, ", "), why)
}
