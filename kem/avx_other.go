//go:build !amd64 || purego

package kem

// clearAVXUpper does nothing where circl runs no AVX2 code (avx.go).
func clearAVXUpper() {}
