// Command fuzzall runs every Go fuzz target (func FuzzXxx(*testing.F)) of the
// module, one after the other, for a fixed time each, and fails if any of
// them finds a crasher.
//
// Run it from the module root:
//
//	go run ./internal/fuzzall -time 20s
//	go run ./internal/fuzzall -time 20s -long 'Conn|Frame' -longtime 5m
//	go run ./internal/fuzzall -only '^rpc\.' -time 1m -parallel 1
//	go run ./internal/fuzzall -list
//
// Targets are found by parsing the test files that `go list` reports for each
// package, so the list follows build constraints and needs no compilation.
// Each target runs as
//
//	go test -run '^$' -fuzz '^Name$' -fuzztime T -parallel P ./pkg
//
// because `go test -fuzz` takes exactly one package and one target. The
// summary gives each target's executions and result; a crasher is named by
// the testdata/fuzz file Go wrote, which then stays in the seed corpus and
// fails plain `go test` until the bug is fixed.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("fuzzall", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		fuzzTime = fs.String("time", "20s", "fuzz `duration` of each target (a go test -fuzztime value: 20s, 5m or 10000x)")
		only     = fs.String("only", "", "run only targets whose \"pkg.FuzzName\" matches this `regexp` (pkg is the import path)")
		skip     = fs.String("skip", "", "skip targets whose \"pkg.FuzzName\" matches this `regexp`")
		long     = fs.String("long", "", "targets matching this `regexp` run for -longtime instead of -time")
		longTime = fs.String("longtime", "5m", "fuzz `duration` of the targets matching -long")
		parallel = fs.Int("parallel", 0, "fuzzing workers per target (go test -parallel; 0 means GOMAXPROCS)")
		list     = fs.Bool("list", false, "only list the targets found, one \"pkg.FuzzName\" a line")
		verbose  = fs.Bool("v", false, "stream each go test's output")
		summary  = fs.String("summary", "", "also write the summary table to this `file`")
		pkgs     = fs.String("pkgs", "./...", "package `pattern` to search for fuzz targets")
	)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: go run ./internal/fuzzall [flags]\n\nRuns every Fuzz* target of the module for a fixed time each; exits 1 on any crasher or failure.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "fuzzall: unexpected arguments %q\n", fs.Args())
		return 2
	}
	var onlyRE, skipRE, longRE *regexp.Regexp
	for _, f := range []struct {
		expr string
		re   **regexp.Regexp
		name string
	}{{*only, &onlyRE, "-only"}, {*skip, &skipRE, "-skip"}, {*long, &longRE, "-long"}} {
		if f.expr == "" {
			continue
		}
		re, err := regexp.Compile(f.expr)
		if err != nil {
			fmt.Fprintf(stderr, "fuzzall: %s: %v\n", f.name, err)
			return 2
		}
		*f.re = re
	}
	if *parallel < 0 {
		fmt.Fprintf(stderr, "fuzzall: -parallel must be 0 or more\n")
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	targets, err := findTargets(ctx, *pkgs)
	if err != nil {
		fmt.Fprintf(stderr, "fuzzall: %v\n", err)
		return 2
	}
	targets = selectTargets(targets, onlyRE, skipRE)
	if len(targets) == 0 {
		fmt.Fprintf(stderr, "fuzzall: no fuzz targets selected\n")
		return 2
	}
	if *list {
		for _, t := range targets {
			fmt.Fprintln(stdout, t.ID())
		}
		return 0
	}

	fmt.Fprintf(stdout, "fuzzall: %d targets, -time %s", len(targets), *fuzzTime)
	if longRE != nil {
		fmt.Fprintf(stdout, ", -long %q -longtime %s", *long, *longTime)
	}
	fmt.Fprintln(stdout)

	start := time.Now()
	results := make([]result, 0, len(targets))
	for i, t := range targets {
		ft := *fuzzTime
		if longRE != nil && longRE.MatchString(t.ID()) {
			ft = *longTime
		}
		fmt.Fprintf(stdout, "[%d/%d] %s (%s) ... ", i+1, len(targets), t.ID(), ft)
		r := runTarget(ctx, t, ft, *parallel, *verbose, stdout)
		results = append(results, r)
		fmt.Fprintln(stdout, r.Line())
		if r.Status != statusOK && !*verbose {
			fmt.Fprintf(stdout, "%s\n", indent(tail(r.Output, 40)))
		}
		if ctx.Err() != nil {
			fmt.Fprintln(stdout, "fuzzall: interrupted")
			break
		}
	}

	table := formatSummary(results, time.Since(start))
	fmt.Fprint(stdout, "\n"+table)
	if *summary != "" {
		if err := os.WriteFile(*summary, []byte(table), 0o644); err != nil {
			fmt.Fprintf(stderr, "fuzzall: %v\n", err)
			return 2
		}
	}
	for _, r := range results {
		if r.Status != statusOK {
			return 1
		}
	}
	if ctx.Err() != nil {
		return 1
	}
	return 0
}
