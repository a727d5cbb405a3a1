package client_test

import (
	"bytes"
	"fmt"

	"qpchat/node/client"
)

// Two users compare the safety number of their user keys; it is the same
// whichever side computes it.
func ExampleSafetyNumber() {
	alice, bob := bytes.Repeat([]byte{0xa1}, 32), bytes.Repeat([]byte{0xb0}, 32)
	onAlicesSide := client.SafetyNumber("alice", alice, "bob", bob)
	onBobsSide := client.SafetyNumber("bob", bob, "alice", alice)
	fmt.Println(onAlicesSide == onBobsSide, len(onAlicesSide))
	// Output: true 71
}
