package main

import (
	"fmt"
	"os"
	"runtime/pprof"
)

// ServeProfileFlags let an operator see where a node spends its CPU
// (README.md, Running a cluster, has a profile of a cluster node under
// qpchat bench).
type ServeProfileFlags struct {
	CPUProfile string `name:"cpu-profile" type:"path" placeholder:"FILE" help:"Write a CPU profile (go tool pprof) of the node to FILE, from start until it stops (SIGTERM or SIGINT)."`
}

// startProfile starts the CPU profile if asked; stop ends it and closes
// the file.
func (f *ServeProfileFlags) startProfile() (stop func(), err error) {
	if f.CPUProfile == "" {
		return func() {}, nil
	}
	out, err := os.OpenFile(f.CPUProfile, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("--cpu-profile: %w", err)
	}
	if err := pprof.StartCPUProfile(out); err != nil {
		out.Close()
		return nil, fmt.Errorf("--cpu-profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		out.Close()
	}, nil
}
