package main

import (
	"fmt"
	"strings"
	"testing"
)

// TestSplitServers: a --server list at the limit is taken, one address
// more is refused, spaces are trimmed, repeats dropped, and an empty
// element is refused. (An address with escape codes is refused by the
// dialer and printed escaped, as any address.)
func TestSplitServers(t *testing.T) {
	addrs := make([]string, maxServers)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("n%d:7000", i)
	}
	got, err := splitServers(strings.Join(addrs, ","))
	if err != nil || len(got) != maxServers {
		t.Fatalf("%d addresses: %v, %v", maxServers, got, err)
	}
	if _, err := splitServers(strings.Join(append(addrs, "one-more:7000"), ",")); err == nil {
		t.Errorf("%d addresses were accepted", maxServers+1)
	}
	got, err = splitServers(" a:1 , b:2,a:1")
	if err != nil || strings.Join(got, ",") != "a:1,b:2" {
		t.Errorf("spaces and repeats: %v, %v", got, err)
	}
	if pinKey(" a:1 , b:2,a:1") != "a:1,b:2" || pinKey("a:1") != "a:1" {
		t.Errorf("pin keys %q, %q", pinKey(" a:1 , b:2,a:1"), pinKey("a:1"))
	}
	for _, bad := range []string{"", ",", "a:1,", "a:1,,b:2", " ,a:1"} {
		if _, err := splitServers(bad); err == nil {
			t.Errorf("splitServers(%q) accepted", bad)
		}
	}
}
