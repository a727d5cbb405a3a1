//go:build amd64 && !purego

package kem

import "golang.org/x/sys/cpu"

// hasAVX says whether VZEROUPPER exists on this CPU; circl only runs its
// AVX2 code where it does.
var hasAVX = cpu.X86.HasAVX

// vzeroupper executes VZEROUPPER (avx_amd64.s).
func vzeroupper()

// clearAVXUpper clears the upper halves of the AVX registers after circl's
// ML-KEM ran (avx.go).
func clearAVXUpper() {
	if hasAVX {
		vzeroupper()
	}
}
