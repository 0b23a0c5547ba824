package proc

// The part of TOML that a runtime's options table uses: one `key = value`
// per line, bare or quoted keys, values strings, booleans or decimal
// integers, comments. What it reads, it reads as TOML does; what it cannot
// read as TOML does, it refuses rather than guess.

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// tomlValue is a TOML scalar: exactly one field is set.
type tomlValue struct {
	str     *string
	boolean *bool
	integer *int64
}

// tomlKey splits the line s (trimmed, not a comment) into its key, bare
// (A-Za-z0-9_-) or quoted, and the text after the `=`. A dotted key names a
// table, which the runc options are not.
func tomlKey(s string) (key, rest string, err error) {
	n := 0
	if s[0] == '"' || s[0] == '\'' {
		if key, n, err = tomlString(s); err != nil {
			return "", "", fmt.Errorf("key: %w", err)
		}
	} else {
		for n < len(s) && isBareKey(s[n]) {
			n++
		}
		if n == 0 {
			return "", "", errors.New("not key = value")
		}
		key = s[:n]
	}
	rest = strings.TrimLeft(s[n:], " \t")
	switch {
	case strings.HasPrefix(rest, "."):
		return "", "", errors.New("a dotted key: runc options are a flat table")
	case !strings.HasPrefix(rest, "="):
		return "", "", errors.New("not key = value")
	}
	return key, strings.TrimLeft(rest[1:], " \t"), nil
}

func isBareKey(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// tomlScalar parses a string (basic or literal), boolean or decimal
// integer, with an optional comment after it.
func tomlScalar(s string) (tomlValue, error) {
	if s != "" && (s[0] == '"' || s[0] == '\'') {
		str, n, err := tomlString(s)
		if err != nil {
			return tomlValue{}, err
		}
		if err := onlyComment(s[n:]); err != nil {
			return tomlValue{}, err
		}
		return tomlValue{str: &str}, nil
	}
	if i := strings.IndexByte(s, '#'); i >= 0 {
		s = strings.TrimRight(s[:i], " \t")
	}
	switch s {
	case "true", "false":
		b := s == "true"
		return tomlValue{boolean: &b}, nil
	}
	i, err := tomlInt(s)
	if err != nil {
		return tomlValue{}, fmt.Errorf("%q is not a string, boolean or decimal integer", s)
	}
	return tomlValue{integer: &i}, nil
}

// tomlInt parses a decimal integer: an optional sign, no leading zero,
// each underscore between two digits.
func tomlInt(s string) (int64, error) {
	digits := strings.TrimPrefix(strings.TrimPrefix(s, "+"), "-")
	if len(s)-len(digits) > 1 || digits == "" || (digits[0] == '0' && len(digits) > 1) {
		return 0, strconv.ErrSyntax
	}
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		switch {
		case c >= '0' && c <= '9':
		case c == '_' && i > 0 && i < len(digits)-1 && isDigit(digits[i-1]) && isDigit(digits[i+1]):
		default:
			return 0, strconv.ErrSyntax
		}
	}
	return strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 10, 64)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// tomlString reads the basic ("...") or literal ('...') one-line string at
// the start of s: its value and the length of its quoted form.
func tomlString(s string) (string, int, error) {
	quote := s[0]
	var b strings.Builder
	for i := 1; i < len(s); {
		c := s[i]
		switch {
		case c == quote:
			return b.String(), i + 1, nil
		case c == '\\' && quote == '"':
			r, n, err := tomlEscape(s[i:])
			if err != nil {
				return "", 0, err
			}
			b.WriteRune(r)
			i += n
		case c < 0x20 && c != '\t' || c == 0x7f:
			return "", 0, fmt.Errorf("control character %q in a string", c)
		default:
			b.WriteByte(c)
			i++
		}
	}
	return "", 0, errors.New("unterminated string")
}

// tomlEscape reads the escape sequence (a backslash and what follows) at
// the start of s, as TOML defines them, and returns its rune and length.
func tomlEscape(s string) (rune, int, error) {
	if len(s) < 2 {
		return 0, 0, errors.New("unterminated string")
	}
	if r, ok := map[byte]rune{'b': '\b', 't': '\t', 'n': '\n', 'f': '\f', 'r': '\r', '"': '"', '\\': '\\'}[s[1]]; ok {
		return r, 2, nil
	}
	n := map[byte]int{'u': 4, 'U': 8}[s[1]]
	if n == 0 || len(s) < 2+n {
		return 0, 0, fmt.Errorf("invalid escape %q", s[:min(len(s), 2+n)])
	}
	v, err := strconv.ParseUint(s[2:2+n], 16, 32)
	if err != nil || !utf8.ValidRune(rune(v)) {
		return 0, 0, fmt.Errorf("invalid escape %q", s[:2+n])
	}
	return rune(v), 2 + n, nil
}

func onlyComment(rest string) error {
	if rest = strings.TrimLeft(rest, " \t"); rest != "" && rest[0] != '#' {
		return fmt.Errorf("%q after the value", rest)
	}
	return nil
}
