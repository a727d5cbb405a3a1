package main

import (
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestFuzzFuncs(t *testing.T) {
	src := `package p

import (
	"testing"
	tt "testing"
)

func Fuzz(f *testing.F)              {}
func FuzzFrame(f *testing.F)         {}
func Fuzz_Under(f *testing.F)        {}
func Fuzz2(f *testing.F)             {}
func FuzzAlias(f *tt.F)              {}
func Fuzzlower(f *testing.F)         {} // lower case after Fuzz: not a target
func FuzzT(t *testing.T)             {} // wrong parameter
func FuzzTwo(f *testing.F, x int)    {} // two parameters
func FuzzValue(f testing.F)          {} // not a pointer
func FuzzResult(f *testing.F) error  { return nil }
func FuzzGeneric[T any](f *testing.F) {}
func (r recv) FuzzMethod(f *testing.F) {}
func TestFuzzX(f *testing.F)         {}
var FuzzVar = func(f *testing.F) {}
`
	got, err := fuzzFuncs("p_test.go", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"Fuzz", "FuzzFrame", "Fuzz_Under", "Fuzz2", "FuzzAlias"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("fuzzFuncs = %q, want %q", got, want)
	}
}

func TestFuzzFuncsNeedTesting(t *testing.T) {
	// Without the testing import, *testing.F names some other package's F.
	src := "package p\n\nimport testing \"example.com/fake\"\n\nfunc FuzzX(f *testing.F) {}\n"
	got, err := fuzzFuncs("p_test.go", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Errorf("fuzzFuncs = %q, want none", got)
	}
	src = "package p\n\nimport . \"testing\"\n\nfunc FuzzDot(f *F) {}\n"
	got, err = fuzzFuncs("p_test.go", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, []string{"FuzzDot"}) {
		t.Errorf("fuzzFuncs with dot import = %q, want [FuzzDot]", got)
	}
}

func TestFuzzFuncsSyntaxError(t *testing.T) {
	if _, err := fuzzFuncs("bad_test.go", []byte("package p\nfunc FuzzX(f *testing.F {")); err == nil {
		t.Error("fuzzFuncs accepted a file that does not parse")
	}
}

func TestParseGoList(t *testing.T) {
	out := "qpchat/rpc\t/src/rpc\ta_test.go b_test.go x_test.go\n" +
		"qpchat/mls\t/src/mls\t \n" +
		"\n"
	got, err := parseGoList([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	want := []listedPackage{
		{importPath: "qpchat/rpc", dir: "/src/rpc", files: []string{"a_test.go", "b_test.go", "x_test.go"}},
		{importPath: "qpchat/mls", dir: "/src/mls", files: []string{}},
	}
	if len(got) != len(want) {
		t.Fatalf("parseGoList = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].importPath != want[i].importPath || got[i].dir != want[i].dir || !slices.Equal(got[i].files, want[i].files) {
			t.Errorf("package %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if _, err := parseGoList([]byte("only-one-field\n")); err == nil {
		t.Error("parseGoList accepted a malformed line")
	}
}

func TestSelectTargets(t *testing.T) {
	ts := []target{
		{Pkg: "qpchat/rpc", Name: "FuzzStreamCodec"},
		{Pkg: "qpchat/mls", Name: "FuzzWelcome"},
		{Pkg: "qpchat/mls", Name: "FuzzCommit"},
	}
	ids := func(ts []target) []string {
		var s []string
		for _, t := range ts {
			s = append(s, t.ID())
		}
		return s
	}
	if got := ids(selectTargets(ts, nil, nil)); len(got) != 3 {
		t.Errorf("no filter kept %q", got)
	}
	if got, want := ids(selectTargets(ts, regexp.MustCompile(`mls\.`), nil)), []string{"qpchat/mls.FuzzWelcome", "qpchat/mls.FuzzCommit"}; !slices.Equal(got, want) {
		t.Errorf("-only mls = %q, want %q", got, want)
	}
	if got, want := ids(selectTargets(ts, regexp.MustCompile(`mls\.`), regexp.MustCompile(`Commit$`))), []string{"qpchat/mls.FuzzWelcome"}; !slices.Equal(got, want) {
		t.Errorf("-only mls -skip Commit = %q, want %q", got, want)
	}
	sortTargets(ts)
	if got, want := ids(ts), []string{"qpchat/mls.FuzzCommit", "qpchat/mls.FuzzWelcome", "qpchat/rpc.FuzzStreamCodec"}; !slices.Equal(got, want) {
		t.Errorf("sorted = %q, want %q", got, want)
	}
}

func TestGoTestArgs(t *testing.T) {
	tg := target{Pkg: "qpchat/rpc", Name: "FuzzStreamCodec"}
	got := strings.Join(goTestArgs(tg, "20s", 1), " ")
	want := "test -run ^$ -fuzz ^FuzzStreamCodec$ -fuzztime 20s -timeout 10m20s -parallel 1 qpchat/rpc"
	if got != want {
		t.Errorf("goTestArgs = %q, want %q", got, want)
	}
	got = strings.Join(goTestArgs(tg, "5000x", 0), " ")
	want = "test -run ^$ -fuzz ^FuzzStreamCodec$ -fuzztime 5000x -timeout 0 qpchat/rpc"
	if got != want {
		t.Errorf("goTestArgs with a count = %q, want %q", got, want)
	}
}

// Output as go1.26's go test -fuzz prints it.
const (
	passOutput = `fuzz: elapsed: 0s, gathering baseline coverage: 0/12 completed
fuzz: elapsed: 0s, gathering baseline coverage: 12/12 completed, now fuzzing with 1 workers
fuzz: elapsed: 3s, execs: 41230 (13741/sec), new interesting: 2 (total: 14)
fuzz: elapsed: 6s, execs: 83011 (13927/sec), new interesting: 2 (total: 14)
fuzz: elapsed: 6s, execs: 83200 (13644/sec), new interesting: 2 (total: 14)
PASS
ok  	qpchat/rpc	6.112s
`
	crashOutput = `fuzz: elapsed: 0s, gathering baseline coverage: 0/1 completed
fuzz: elapsed: 0s, gathering baseline coverage: 1/1 completed, now fuzzing with 1 workers
fuzz: elapsed: 3s, execs: 999 (333/sec), new interesting: 0 (total: 1)
fuzz: minimizing 40-byte failing input file
--- FAIL: FuzzCrash (3.22s)
    --- FAIL: FuzzCrash (0.00s)
        testing.go:1927: panic: boom

    Failing input written to testdata/fuzz/FuzzCrash/1a4feb8ad1fe53b6
    To re-run:
    go test -run=FuzzCrash/1a4feb8ad1fe53b6
FAIL
exit status 1
FAIL	fz	3.218s
`
	seedOutput = `fuzz: elapsed: 0s, gathering baseline coverage: 0/3 completed
failure while testing seed corpus entry: FuzzCrash/1a4feb8ad1fe53b6
fuzz: elapsed: 0s, gathering baseline coverage: 1/3 completed
--- FAIL: FuzzCrash (0.01s)
FAIL
`
	addSeedOutput = `failure while testing seed corpus entry: FuzzCrash/seed#0
--- FAIL: FuzzCrash (0.01s)
`
	buildFailOutput = `# qpchat/rpc [qpchat/rpc.test]
rpc/x_test.go:3:2: undefined: foo
FAIL	qpchat/rpc [build failed]
`
)

func TestParseExecs(t *testing.T) {
	for _, c := range []struct {
		name string
		out  string
		want int64
	}{
		{"pass", passOutput, 83200},
		{"crash", crashOutput, 999},
		{"seed", seedOutput, -1},
		{"build", buildFailOutput, -1},
	} {
		if got := parseExecs(c.out); got != c.want {
			t.Errorf("%s: parseExecs = %d, want %d", c.name, got, c.want)
		}
	}
}

func TestParseCrasher(t *testing.T) {
	for _, c := range []struct {
		name string
		out  string
		want string
	}{
		{"pass", passOutput, ""},
		{"crash", crashOutput, "testdata/fuzz/FuzzCrash/1a4feb8ad1fe53b6"},
		{"seed", seedOutput, filepath.FromSlash("testdata/fuzz/FuzzCrash/1a4feb8ad1fe53b6")},
		{"add seed", addSeedOutput, "FuzzCrash/seed#0"},
		{"build", buildFailOutput, ""},
	} {
		if got := parseCrasher(c.out); got != c.want {
			t.Errorf("%s: parseCrasher = %q, want %q", c.name, got, c.want)
		}
	}
}

func TestFormatSummary(t *testing.T) {
	rs := []result{
		{Target: target{Pkg: "qpchat/rpc", Name: "FuzzA"}, FuzzTime: "20s", Execs: 100, Status: statusOK},
		{Target: target{Pkg: "qpchat/rpc", Name: "FuzzB"}, FuzzTime: "20s", Execs: -1, Status: statusCrash, Crasher: "rpc/testdata/fuzz/FuzzB/00"},
		{Target: target{Pkg: "qpchat/mls", Name: "FuzzC"}, FuzzTime: "5m", Execs: 5, Status: statusFail},
	}
	s := formatSummary(rs, 0)
	for _, want := range []string{
		"qpchat/rpc.FuzzB", "CRASHER", "rpc/testdata/fuzz/FuzzB/00",
		"3 targets: 1 ok, 1 with a crasher, 1 failed; 105 execs",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("summary lacks %q:\n%s", want, s)
		}
	}
}

func TestDeadlineRace(t *testing.T) {
	// Output of a real run (go1.26.8) that hit go.dev/issue/75804.
	race := `fuzz: elapsed: 0s, gathering baseline coverage: 0/31 completed
fuzz: elapsed: 0s, gathering baseline coverage: 31/31 completed, now fuzzing with 1 workers
fuzz: elapsed: 18s, execs: 186964 (10367/sec), new interesting: 0 (total: 31)
fuzz: elapsed: 20s, execs: 208536 (10401/sec), new interesting: 0 (total: 31)
--- FAIL: FuzzWelcome (20.08s)
    context deadline exceeded
FAIL
exit status 1
FAIL	qpchat/mls	20.089s
`
	crash := `fuzz: elapsed: 3s, execs: 1000 (333/sec), new interesting: 0 (total: 5)
--- FAIL: FuzzWelcome (3.01s)
    --- FAIL: FuzzWelcome (0.00s)
        testing.go:1591: panic: runtime error: index out of range
    Failing input written to testdata/fuzz/FuzzWelcome/0123abcd
    To re-run:
    go test -run=FuzzWelcome/0123abcd
FAIL
`
	failed := `--- FAIL: FuzzWelcome (20.08s)
    welcome_test.go:10: decoded twice differently
    context deadline exceeded
FAIL
`
	for _, c := range []struct {
		name, out, target string
		want              bool
	}{
		{"race", race, "FuzzWelcome", true},
		{"other target", race, "FuzzWel", false},
		{"crasher", crash, "FuzzWelcome", false},
		{"test error", failed, "FuzzWelcome", false},
		{"ok", "fuzz: elapsed: 20s, execs: 5 (1/sec)\nPASS\n", "FuzzWelcome", false},
	} {
		if got := deadlineRace(c.out, c.target); got != c.want {
			t.Errorf("%s: deadlineRace = %v, want %v", c.name, got, c.want)
		}
	}
}
