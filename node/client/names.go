package client

import (
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// MaxGroupNameLen bounds a group's local name, in bytes.
const MaxGroupNameLen = 512

// CheckGroupName refuses group names that could disguise terminal
// output: empty or over MaxGroupNameLen bytes, invalid UTF-8, control
// characters (C0, DEL, C1), line and paragraph separators, and the
// bidirectional formatting characters (Unicode UAX #9: U+061C,
// U+200E/F, U+202A–U+202E, U+2066–U+2069) that reorder what follows.
// A group name is shown in every line of the group, so it is checked
// where it enters: when a group is created, and when an inviter names
// it (a refused name keeps the placeholder).
func CheckGroupName(name string) error {
	if name == "" {
		return errors.New("client: empty group name")
	}
	if len(name) > MaxGroupNameLen {
		return fmt.Errorf("client: a group name of %d bytes, at most %d allowed", len(name), MaxGroupNameLen)
	}
	if !utf8.ValidString(name) {
		return errors.New("client: a group name must be valid UTF-8")
	}
	for _, r := range name {
		if DisguisingRune(r) {
			return fmt.Errorf("client: a group name may not contain the control or formatting character %U", r)
		}
	}
	return nil
}

// DisguisingRune reports whether r may change how a terminal shows the
// text around it: a control character, a line or paragraph separator or
// a bidirectional formatting character.
func DisguisingRune(r rune) bool {
	switch {
	case unicode.IsControl(r): // C0, DEL, C1
		return true
	case r == '\u2028' || r == '\u2029': // line and paragraph separator
		return true
	case r == '\u061c' || r == '\u200e' || r == '\u200f',
		r >= '\u202a' && r <= '\u202e',
		r >= '\u2066' && r <= '\u2069':
		return true
	}
	return false
}
