package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

type status string

const (
	statusOK    status = "ok"
	statusCrash status = "CRASHER"
	statusFail  status = "FAIL" // build failure, failing seed, or interrupted
)

// result is the outcome of fuzzing one target.
type result struct {
	Target   target
	FuzzTime string
	Elapsed  time.Duration
	Execs    int64 // -1 if go test printed no count
	Status   status
	Crasher  string // the testdata/fuzz file written, relative to the working directory
	Output   string
	// Retried is set when a first run ended in Go's fuzz-coordinator
	// deadline race (see deadlineRace) and the target was run again.
	Retried bool
}

func (r result) Line() string {
	s := fmt.Sprintf("%s, %s execs, %s", r.Status, execsString(r.Execs), r.Elapsed.Round(time.Second))
	if r.Crasher != "" {
		s += ", crasher " + r.Crasher
	}
	if r.Retried {
		s += " (run again after Go's fuzztime deadline race, go.dev/issue/75804)"
	}
	return s
}

func execsString(n int64) string {
	if n < 0 {
		return "?"
	}
	return strconv.FormatInt(n, 10)
}

// runTarget fuzzes one target with go test in the target's package. A run
// that failed only through Go's fuzz-coordinator deadline race (no input
// failed) is run once more; a second such failure counts as a failure.
func runTarget(ctx context.Context, t target, fuzzTime string, parallel int, verbose bool, stdout io.Writer) result {
	r := runTargetOnce(ctx, t, fuzzTime, parallel, verbose, stdout)
	if r.Status == statusFail && ctx.Err() == nil && deadlineRace(r.Output, t.Name) {
		first := r.Execs
		r = runTargetOnce(ctx, t, fuzzTime, parallel, verbose, stdout)
		r.Retried = true
		if first > 0 && r.Execs >= 0 {
			r.Execs += first // both runs fuzzed; neither found a failing input
		}
	}
	return r
}

// deadlineRace reports whether go test's output shows only the race in
// Go's fuzzing coordinator (go.dev/issue/75804, fixed in Go 1.27): when
// the -fuzztime deadline fires, the coordinator can report the deadline
// itself as the target's error, so the target fails with nothing but
// "context deadline exceeded" and no failing input is written.
func deadlineRace(out, name string) bool {
	if parseCrasher(out) != "" {
		return false
	}
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "--- FAIL: "+name+" ") && i+1 < len(lines) &&
			strings.TrimSpace(lines[i+1]) == "context deadline exceeded" {
			// Nothing else may have failed: no panic, no t.Error text.
			return !strings.Contains(out, "panic:") && strings.Count(out, "--- FAIL:") == 1
		}
	}
	return false
}

// runTargetOnce runs go test -fuzz for one target once.
func runTargetOnce(ctx context.Context, t target, fuzzTime string, parallel int, verbose bool, stdout io.Writer) result {
	args := goTestArgs(t, fuzzTime, parallel)
	cmd := exec.CommandContext(ctx, "go", args...)
	var out bytes.Buffer
	if verbose {
		cmd.Stdout = io.MultiWriter(&out, stdout)
	} else {
		cmd.Stdout = &out
	}
	cmd.Stderr = cmd.Stdout
	// Stop go test with SIGINT so it can stop its workers; kill it after a grace period.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 30 * time.Second
	start := time.Now()
	err := cmd.Run()
	r := result{
		Target:   t,
		FuzzTime: fuzzTime,
		Elapsed:  time.Since(start),
		Output:   out.String(),
	}
	r.Execs = parseExecs(r.Output)
	if crasher := parseCrasher(r.Output); crasher != "" {
		r.Crasher = displayPath(t.Dir, crasher)
	}
	switch {
	case r.Crasher != "":
		r.Status = statusCrash
	case err != nil || ctx.Err() != nil:
		r.Status = statusFail
	default:
		r.Status = statusOK
	}
	return r
}

// goTestArgs builds the go test command line for one target. The test
// binary's -timeout is the fuzz time plus 10 minutes for building and the
// baseline coverage run, or none when the fuzz time is a count (Nx).
func goTestArgs(t target, fuzzTime string, parallel int) []string {
	timeout := "0"
	if d, err := time.ParseDuration(fuzzTime); err == nil {
		timeout = (d + 10*time.Minute).String()
	}
	args := []string{"test", "-run", "^$", "-fuzz", "^" + regexp.QuoteMeta(t.Name) + "$",
		"-fuzztime", fuzzTime, "-timeout", timeout}
	if parallel > 0 {
		args = append(args, "-parallel", strconv.Itoa(parallel))
	}
	return append(args, t.Pkg)
}

var (
	// "fuzz: elapsed: 20s, execs: 123456 (6172/sec), new interesting: 3 (total: 40)"
	execsRE = regexp.MustCompile(`(?m)^fuzz: elapsed: \S+, execs: (\d+) `)
	// "    Failing input written to testdata/fuzz/FuzzFrame/5b1f..."
	crasherRE = regexp.MustCompile(`(?m)Failing input written to (\S+)\s*$`)
	// "failure while testing seed corpus entry: FuzzFrame/5b1f..." (an
	// earlier crasher still in testdata/fuzz, or an f.Add entry "seed#N")
	seedRE = regexp.MustCompile(`(?m)failure while testing seed corpus entry: (\S+)\s*$`)
)

// parseExecs returns the last execution count go test reported, or -1.
func parseExecs(out string) int64 {
	m := execsRE.FindAllStringSubmatch(out, -1)
	if len(m) == 0 {
		return -1
	}
	n, err := strconv.ParseInt(m[len(m)-1][1], 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// parseCrasher returns the failing input go test reported: the corpus file
// it wrote for a new crasher, as printed (relative to the package
// directory), or the seed corpus entry that failed before fuzzing started,
// as testdata/fuzz/FuzzName/entry (for an f.Add seed, FuzzName/seed#N is not
// a file). It returns "" if no input failed.
func parseCrasher(out string) string {
	if m := crasherRE.FindStringSubmatch(out); m != nil {
		return m[1]
	}
	if m := seedRE.FindStringSubmatch(out); m != nil {
		if strings.Contains(m[1], "/seed#") {
			return m[1]
		}
		return filepath.Join("testdata", "fuzz", filepath.FromSlash(m[1]))
	}
	return ""
}

// displayPath makes a crasher path printed relative to the package directory
// relative to the working directory, when it can.
func displayPath(pkgDir, p string) string {
	if strings.Contains(p, "/seed#") {
		return p
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(pkgDir, p)
	}
	if wd, err := os.Getwd(); err == nil {
		if rel, err := filepath.Rel(wd, p); err == nil && !strings.HasPrefix(rel, "..") {
			return rel
		}
	}
	return p
}

func formatSummary(rs []result, total time.Duration) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\tfuzztime\texecs\tresult\tcrasher")
	var execs int64
	counts := map[status]int{}
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Target.ID(), r.FuzzTime, execsString(r.Execs), r.Status, r.Crasher)
		if r.Execs > 0 {
			execs += r.Execs
		}
		counts[r.Status]++
	}
	tw.Flush()
	fmt.Fprintf(&b, "%d targets: %d ok, %d with a crasher, %d failed; %d execs in %s\n",
		len(rs), counts[statusOK], counts[statusCrash], counts[statusFail], execs, total.Round(time.Second))
	return b.String()
}

func tail(s string, lines int) string {
	s = strings.TrimRight(s, "\n")
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}
