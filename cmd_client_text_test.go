package main

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	nc "qpchat/node/client"
)

// hostileTexts are message texts a member could send to disguise the
// output of others.
var hostileTexts = []string{
	"hi\n[friends] bob: I owe alice 100 EUR",
	"hi\r[friends] bob: overwritten",
	"hi\r\n[friends] bob: crlf",
	"\x1b[2J\x1b[Hcleared",
	"\x1b]0;title\x07bell",
	"red \x1b[31mtext\x1b[0m",
	"\u202eRUE 001 ecila ewo I",
	"a\u2066b\u2069c\u200fd\u061c",
	"line\u2028sep\u2029para",
	"bad \xff\xfe utf8 \xc3",
	"c1 \u009b31m",
	"del \x7f tab\tend",
	"nul \x00 byte",
}

func TestTermSafe(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain text, ünïcödé, 日本語, emoji 👩‍👩‍👧", "plain text, ünïcödé, 日本語, emoji 👩‍👩‍👧"},
		{"a\nb", `a\nb`},
		{"a\rb", `a\rb`},
		{"\x1b[31m", `\x1b[31m`},
		{"\u202eevil", `\u202eevil`},
		{"\xff", `\xff`},
		{"\u009b", `\u009b`},
		{`C:\path`, `C:\path`},
		{"\ufffd", "\ufffd"},
	} {
		if got := termSafe(tc.in); got != tc.want {
			t.Errorf("termSafe(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestMessageLinesCannotForgeHeaders(t *testing.T) {
	for _, text := range hostileTexts {
		out := "[friends] mallory: " + messageLines(text)
		checkTerminalText(t, text, out)
		lines := strings.Split(out, "\n")
		for _, l := range lines[1:] {
			if !strings.HasPrefix(l, continuation) {
				t.Errorf("text %q: line %q does not start with %q", text, l, continuation)
			}
		}
		if want := strings.Count(text, "\n") + 1; len(lines) != want {
			t.Errorf("text %q printed as %d lines, want %d", text, len(lines), want)
		}
	}
	if got := messageLines("one\r\ntwo\nthree"); got != "one\n"+continuation+"two\n"+continuation+"three" {
		t.Errorf("messageLines = %q", got)
	}
}

// checkTerminalText checks that out is valid UTF-8 without a control
// character but newlines, nor a disguising formatting character.
func checkTerminalText(t *testing.T, in, out string) {
	t.Helper()
	if !utf8.ValidString(out) {
		t.Errorf("text %q printed as invalid UTF-8 %q", in, out)
	}
	for _, r := range out {
		if r != '\n' && nc.DisguisingRune(r) {
			t.Errorf("text %q printed with %U: %q", in, r, out)
		}
	}
}

func FuzzMessageLines(f *testing.F) {
	for _, s := range hostileTexts {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		out := messageLines(text)
		checkTerminalText(t, text, out)
		for _, l := range strings.Split(out, "\n")[1:] {
			if !strings.HasPrefix(l, continuation) {
				t.Fatalf("text %q: line %q does not start with %q", text, l, continuation)
			}
		}
		if s := termSafe(text); strings.ContainsAny(s, "\n\r\x1b") || !utf8.ValidString(s) {
			t.Fatalf("termSafe(%q) = %q", text, s)
		}
	})
}

// TestMessageTextNeverTruncates: a text on stdin over the limit is
// refused with its real size and the limit, one at the limit is kept
// whole.
func TestMessageTextNeverTruncates(t *testing.T) {
	big := strings.Repeat("x", 10<<20)
	_, err := readMessageText(nil, strings.NewReader(big))
	if err == nil {
		t.Fatal("a 10 MiB text on stdin was accepted")
	}
	for _, want := range []string{"10485760 bytes", fmt.Sprint(maxText)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %s", err, want)
		}
	}
	exact := strings.Repeat("y", maxText)
	got, err := readMessageText(nil, strings.NewReader(exact))
	if err != nil || got != exact {
		t.Errorf("a text of exactly %d bytes: %d bytes back, %v", maxText, len(got), err)
	}
	if _, err := readMessageText([]string{exact, "z"}, nil); err == nil || !strings.Contains(err.Error(), fmt.Sprint(maxText+2)) {
		t.Errorf("arguments of %d bytes: %v, want a refusal with the size", maxText+2, err)
	}
	if got, err := readMessageText(nil, strings.NewReader("two\nlines\r\n")); err != nil || got != "two\nlines" {
		t.Errorf("stdin text = %q, %v", got, err)
	}
}
