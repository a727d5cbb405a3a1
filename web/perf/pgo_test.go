package perf

import "testing"

// BenchmarkPGO runs Run natively, for the profile-guided build of the
// browser client: web/default.pgo is its CPU profile with the purego tag,
// which makes the standard library, circl and x/crypto run the same
// portable Go code they run in WebAssembly (no assembly), so the
// compiler inlines what is hot there. Refresh it (then go generate
// ./web/app) with
//
//	go test -tags purego ./web/perf -run XXX -bench PGO -benchtime 1x -cpuprofile web/default.pgo
func BenchmarkPGO(b *testing.B) {
	for b.Loop() {
		// Login once; then mostly groups of the sizes people chat in,
		// where messages and commits dominate, and one larger group.
		for i := range 8 {
			if _, err := Run(32, 20, i == 0); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := Run(512, 2, false); err != nil {
			b.Fatal(err)
		}
	}
}
