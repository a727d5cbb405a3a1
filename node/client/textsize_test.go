package client

import "testing"

// TestMaxTextLen: the longest text fits the limit, one byte more does
// not, for every suite.
func TestMaxTextLen(t *testing.T) {
	for _, suite := range []uint16{0x0001, 0xfa01, 0xfa02} {
		limit := 1 << 20
		n, err := MaxTextLen(suite, limit)
		if err != nil {
			t.Fatal(err)
		}
		measure, err := textSizer(suite)
		if err != nil {
			t.Fatal(err)
		}
		fits, _ := measure(n)
		over, _ := measure(n + 1)
		if fits > limit || over <= limit || n < limit-4096 {
			t.Errorf("suite 0x%04x: text of %d bytes makes %d, %d bytes make %d; limit %d", suite, n, fits, n+1, over, limit)
		}
	}
	if n, err := MaxTextLen(0xfa01, 10); err != nil || n != -1 {
		t.Errorf("MaxTextLen(10 bytes) = %d, %v; want -1", n, err)
	}
}
