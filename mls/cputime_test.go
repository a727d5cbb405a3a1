//go:build !js

package mls

import (
	"syscall"
	"time"
)

// cpuTime returns the CPU time the process has used. The benchmarks report
// it per operation as cpu-ns/op beside the wall-clock ns/op: on a shared
// machine the wall clock also counts time spent waiting for a core.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
