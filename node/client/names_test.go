package client

import (
	"strings"
	"testing"
)

func TestCheckGroupName(t *testing.T) {
	for _, ok := range []string{"friends", "Ünïcödé group", "日本語", "dm:alice", "a-b_c.d 1", "emoji 👩‍👩‍👧"} {
		if err := CheckGroupName(ok); err != nil {
			t.Errorf("CheckGroupName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a\nb", "a\rb", "\x1b[31mred", "tab\there", "\u202eevil", "a\u2066b", "\u200f", "a\u2028b",
		"bad\xff", "c1\u009b", "del\x7f", "nul\x00", strings.Repeat("x", MaxGroupNameLen+1)} {
		if err := CheckGroupName(bad); err == nil {
			t.Errorf("CheckGroupName(%q) accepted", bad)
		}
	}
}
