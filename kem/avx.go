package kem

// circl's ML-KEM uses AVX2 assembly on amd64 (its NTT and polynomial
// arithmetic) and returns without VZEROUPPER, leaving the upper halves of
// the YMM registers dirty. Until something clears them, every legacy-SSE
// instruction that follows pays a penalty on Intel CPUs, and Go's SHA-256
// (SHA-NI) and AES-GCM are SSE code: measured on a Sapphire Rapids Xeon, an
// HMAC-SHA256 right after a decapsulation took 24 µs instead of 1 µs, which
// made the HPKE key schedule after every hybrid decapsulation, and the MLS
// work that follows it, several times slower. Each call into circl's ML-KEM
// is therefore followed by clearAVXUpper (VZEROUPPER where the CPU has AVX,
// nothing elsewhere); it changes no value, only the register state that
// the Intel optimization manual asks AVX code to clean up on return.
