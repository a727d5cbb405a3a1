package main

import (
	"errors"
	"net"
	"os"
	"strings"
)

// sd_notify: telling systemd (Type=notify) that the node is ready or
// stopping, by a datagram to the socket named in NOTIFY_SOCKET
// (sd_notify(3)). Without that variable nothing is sent.

// notifySocket returns the address of systemd's notification socket, or
// "" when the node does not run under Type=notify.
func notifySocket() string {
	s := os.Getenv("NOTIFY_SOCKET")
	if s == "" {
		return ""
	}
	if strings.HasPrefix(s, "@") {
		s = "\x00" + s[1:] // abstract namespace
	}
	return s
}

// sdNotify sends state ("READY=1", "STOPPING=1") to systemd.
func sdNotify(state string) error {
	addr := notifySocket()
	if addr == "" {
		return nil
	}
	if !strings.HasPrefix(addr, "/") && !strings.HasPrefix(addr, "\x00") {
		return errors.New("NOTIFY_SOCKET is not a unix socket path")
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte(state))
	return err
}
