package rpc_test

import (
	"fmt"

	"qpchat/rpc"
)

// A fingerprint typed by a user is checked and put in canonical form
// before it is compared or pinned.
func ExampleParseFingerprint() {
	fp, err := rpc.ParseFingerprint("SHA256:8DA81CB5B99140A4B3A64E7C06F6A835277C0E8764AE4B0BE142AF9D46521808")
	fmt.Println(fp, err)
	_, err = rpc.ParseFingerprint("8da81cb5")
	fmt.Println(err)
	// Output:
	// sha256:8da81cb5b99140a4b3a64e7c06f6a835277c0e8764ae4b0be142af9d46521808 <nil>
	// rpc: fingerprint "8da81cb5" does not start with "sha256:"
}
