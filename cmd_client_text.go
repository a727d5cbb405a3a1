package main

// Terminal output of text that other people wrote: message texts, group
// and user names, refusal reasons. None of it may reach the terminal
// raw, or a member could forge lines of other members, move the cursor
// or recolour the screen.

import (
	"fmt"
	"strings"
	"unicode/utf8"

	nc "qpchat/node/client"
)

// continuation starts each further line of a multi-line message. Every
// event line starts with "[", so a continuation line can never pass for
// the header of another message.
const continuation = "  | "

// termSafe escapes what a terminal would interpret in s: invalid UTF-8
// bytes as \xNN, control characters (C0 including newline and carriage
// return, DEL, C1) and the line separators and bidirectional formatting
// characters of Unicode (UAX #9) as \u.... Everything else, including
// backslashes, passes through.
func termSafe(s string) string {
	if isTermSafe(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x80 && nc.DisguisingRune(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case nc.DisguisingRune(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

func isTermSafe(s string) bool {
	for _, r := range s {
		if r == utf8.RuneError || nc.DisguisingRune(r) {
			return false
		}
	}
	return true
}

// messageLines formats a message text for the terminal after its
// header: each line escaped by termSafe, lines after the first on lines
// of their own that start with continuation. A "\r\n" ends a line like
// "\n".
func messageLines(text string) string {
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		lines[i] = termSafe(strings.TrimSuffix(l, "\r"))
	}
	return strings.Join(lines, "\n"+continuation)
}
