package server

import (
	"strings"
	"testing"

	"qpchat/node/bench"
	"qpchat/node/proto"
	"qpchat/rpc"
)

// TestMaxDevicesCountsActiveDevices: revoked devices do not count
// against --max-devices, so reinstalling never locks an account; the
// records of revoked devices have their own, larger bound.
func TestMaxDevicesCountsActiveDevices(t *testing.T) {
	n := startNode(t, func(c *Config) { c.Limits.MaxDevices = 2 })
	ctx := testCtx(t)
	alice := n.register("alice")
	revoke := func(dev []byte) {
		t.Helper()
		f, rel := alice.login.RevokeDevice(ctx, func(p rpc.Session_revokeDevice_Params) error { return p.SetDevice(dev) })
		_, err := f.Struct()
		rel()
		must(t, "revokeDevice", err)
	}
	register := func() ([]byte, error) {
		dk, err := bench.NewDeviceKey(nil)
		must(t, "device key", err)
		return bench.Pub(dk), alice.conn.RegisterDevice(ctx, alice.login, alice.name, alice.key, dk)
	}
	_, err := register()
	must(t, "first device", err)
	// Reinstalls: register a device, revoke it, many times over.
	records := maxDeviceRecords(2)
	for i := 1; i < records; i++ {
		dev, err := register()
		if err != nil {
			t.Fatalf("reinstall %d: %v", i, err)
		}
		revoke(dev)
	}
	_, err = register()
	wantCode(t, "a device past the record bound", err, proto.CodeLimit)
	if err != nil && !strings.Contains(err.Error(), "device records") {
		t.Errorf("error %q does not say what is full", err)
	}
}

// TestMaxDevicesBoundsActiveDevices: two active devices fill a limit of
// two, whatever was revoked.
func TestMaxDevicesBoundsActiveDevices(t *testing.T) {
	n := startNode(t, func(c *Config) { c.Limits.MaxDevices = 2 })
	ctx := testCtx(t)
	alice := n.register("alice")
	n.addDevice(alice)
	n.addDevice(alice)
	dk, err := bench.NewDeviceKey(nil)
	must(t, "device key", err)
	err = alice.conn.RegisterDevice(ctx, alice.login, alice.name, alice.key, dk)
	wantCode(t, "a third active device", err, proto.CodeLimit)
	if err != nil && !strings.Contains(err.Error(), "--max-devices") {
		t.Errorf("error %q does not name --max-devices", err)
	}
}
