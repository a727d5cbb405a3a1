package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// target is one fuzz function of one package.
type target struct {
	Pkg  string // import path, e.g. "qpchat/rpc"
	Dir  string // the package's directory
	Name string // e.g. "FuzzFrame"
}

// ID is how targets are named on the command line and in the summary.
func (t target) ID() string { return t.Pkg + "." + t.Name }

// findTargets lists the packages matching pattern with `go list` and parses
// their test files (in-package and external) for fuzz functions.
func findTargets(ctx context.Context, pattern string) ([]target, error) {
	cmd := exec.CommandContext(ctx, "go", "list", "-f",
		`{{.ImportPath}}{{"\t"}}{{.Dir}}{{"\t"}}{{join .TestGoFiles " "}} {{join .XTestGoFiles " "}}`,
		pattern)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list %s: %v: %s", pattern, err, strings.TrimSpace(stderr.String()))
	}
	pkgs, err := parseGoList(out)
	if err != nil {
		return nil, err
	}
	var targets []target
	for _, p := range pkgs {
		for _, file := range p.files {
			path := filepath.Join(p.dir, file)
			src, err := os.ReadFile(path)
			if err != nil {
				return nil, err
			}
			names, err := fuzzFuncs(path, src)
			if err != nil {
				return nil, err
			}
			for _, n := range names {
				targets = append(targets, target{Pkg: p.importPath, Dir: p.dir, Name: n})
			}
		}
	}
	sortTargets(targets)
	return targets, nil
}

type listedPackage struct {
	importPath, dir string
	files           []string
}

// parseGoList reads the lines of the template in findTargets:
// import path, tab, directory, tab, space-separated test file names.
func parseGoList(out []byte) ([]listedPackage, error) {
	var pkgs []listedPackage
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		fields := strings.Split(line, "\t")
		if len(fields) != 3 || fields[0] == "" || fields[1] == "" {
			return nil, fmt.Errorf("unexpected go list line %q", line)
		}
		pkgs = append(pkgs, listedPackage{
			importPath: fields[0],
			dir:        fields[1],
			files:      strings.Fields(fields[2]),
		})
	}
	return pkgs, sc.Err()
}

// fuzzFuncs returns the names of the fuzz targets declared in one test
// file, in source order. It applies the rules of `go help testfunc`: a
// top-level function without receiver or type parameters, named Fuzz or
// FuzzXxx where Xxx does not start with a lower-case letter, taking a single
// *testing.F.
func fuzzFuncs(filename string, src []byte) ([]string, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, filename, src, parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	// The names the file imports package testing under (usually just "testing").
	testingNames := map[string]bool{}
	for _, imp := range f.Imports {
		if imp.Path.Value != `"testing"` {
			continue
		}
		name := "testing"
		if imp.Name != nil {
			name = imp.Name.Name
		}
		testingNames[name] = true
	}
	var names []string
	for _, decl := range f.Decls {
		fn, ok := decl.(*ast.FuncDecl)
		if !ok || fn.Recv != nil || fn.Type.TypeParams != nil || !isFuzzName(fn.Name.Name) {
			continue
		}
		if fn.Type.Results != nil && len(fn.Type.Results.List) > 0 {
			continue
		}
		params := fn.Type.Params.List
		if len(params) != 1 || len(params[0].Names) > 1 {
			continue
		}
		if isTestingF(params[0].Type, testingNames) {
			names = append(names, fn.Name.Name)
		}
	}
	return names, nil
}

// isFuzzName is the name rule of cmd/go's isTest for the "Fuzz" prefix.
func isFuzzName(name string) bool {
	rest, ok := strings.CutPrefix(name, "Fuzz")
	if !ok {
		return false
	}
	if rest == "" {
		return true
	}
	r, _ := utf8.DecodeRuneInString(rest)
	return !unicode.IsLower(r)
}

// isTestingF reports whether expr is *T.F where T names the testing import
// (or F itself when testing is dot-imported).
func isTestingF(expr ast.Expr, testingNames map[string]bool) bool {
	star, ok := expr.(*ast.StarExpr)
	if !ok {
		return false
	}
	switch x := star.X.(type) {
	case *ast.SelectorExpr:
		id, ok := x.X.(*ast.Ident)
		return ok && testingNames[id.Name] && x.Sel.Name == "F"
	case *ast.Ident:
		return testingNames["."] && x.Name == "F"
	}
	return false
}

// selectTargets keeps the targets whose ID matches only (if set) and not
// skip (if set).
func selectTargets(ts []target, only, skip *regexp.Regexp) []target {
	var out []target
	for _, t := range ts {
		if only != nil && !only.MatchString(t.ID()) {
			continue
		}
		if skip != nil && skip.MatchString(t.ID()) {
			continue
		}
		out = append(out, t)
	}
	return out
}

func sortTargets(ts []target) {
	sort.SliceStable(ts, func(i, j int) bool {
		if ts[i].Pkg != ts[j].Pkg {
			return ts[i].Pkg < ts[j].Pkg
		}
		return ts[i].Name < ts[j].Name
	})
}
