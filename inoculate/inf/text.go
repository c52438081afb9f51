package inf

import (
	"encoding/binary"
	"fmt"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Error is a problem in an INF file, at a line (0 when it concerns the whole file).
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

func errorf(file string, line int, format string, args ...any) *Error {
	return &Error{File: file, Line: line, Msg: fmt.Sprintf(format, args...)}
}

// cp1252 maps bytes 0x80–0x9F of Windows-1252 to Unicode; the rest of the upper half is Latin-1.
// Unassigned bytes (0x81, 0x8D, 0x8F, 0x90, 0x9D) map to the C1 control of the same value, as
// Windows' MultiByteToWideChar does.
var cp1252 = [32]rune{
	0x20AC, 0x81, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x8D, 0x017D, 0x8F,
	0x90, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D, 0x017E, 0x0178,
}

// decode turns an INF file's bytes into text. Windows reads a file with a UTF-16LE byte-order mark
// as UTF-16, one with a UTF-8 BOM as UTF-8, and anything else in the system's ANSI code page —
// Windows-1252 on the Western systems INFs are written for.
func decode(name string, b []byte) (string, string, error) {
	switch {
	case len(b) >= 2 && b[0] == 0xFF && b[1] == 0xFE:
		return decodeUTF16(name, b[2:], binary.LittleEndian, "UTF-16LE")
	case len(b) >= 2 && b[0] == 0xFE && b[1] == 0xFF:
		return decodeUTF16(name, b[2:], binary.BigEndian, "UTF-16BE")
	case len(b) >= 3 && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF:
		if !utf8.Valid(b[3:]) {
			return "", "", errorf(name, lineAt(b[3:], firstInvalidUTF8(b[3:])), "the file has a UTF-8 byte-order mark but is not valid UTF-8")
		}
		return string(b[3:]), "UTF-8", nil
	}
	if len(b) >= 4 && b[0] != 0 && b[1] == 0 && b[2] != 0 && b[3] == 0 {
		return "", "", errorf(name, 0, "the file looks like UTF-16LE text without a byte-order mark (FF FE); Windows reads such a file as ANSI")
	}
	var sb strings.Builder
	sb.Grow(len(b))
	for _, c := range b {
		switch {
		case c < 0x80:
			sb.WriteByte(c)
		case c < 0xA0:
			sb.WriteRune(cp1252[c-0x80])
		default:
			sb.WriteRune(rune(c))
		}
	}
	return sb.String(), "Windows-1252", nil
}

func decodeUTF16(name string, b []byte, order binary.ByteOrder, enc string) (string, string, error) {
	if len(b)%2 != 0 {
		return "", "", errorf(name, 0, "truncated %s text: %d bytes after the byte-order mark, an odd number", enc, len(b))
	}
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = order.Uint16(b[2*i:])
	}
	return string(utf16.Decode(u)), enc, nil
}

func firstInvalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(b)
}

func lineAt(b []byte, off int) int {
	return 1 + strings.Count(string(b[:off]), "\n")
}

// rawLine is one logical line: continuation lines joined, comments removed, split into an optional
// key and comma-separated fields. Quotes are removed from fields but remembered per field, since
// a quoted empty string differs from an omitted field for some directives.
type rawLine struct {
	line   int // first physical line
	key    string
	hasKey bool
	fields []string
	quoted []bool
}

// tokenize splits text into section headers and lines. Section names keep their case; callers
// compare them case-insensitively.
func tokenize(name, text string) ([]token, error) {
	phys := strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n")
	var out []token
	for i := 0; i < len(phys); i++ {
		start := i + 1
		s := strings.ReplaceAll(phys[i], "\r", "")
		s = strings.TrimLeft(s, " \t\x00\x1a")
		if s == "" {
			continue
		}
		if s[0] == '[' {
			end := strings.IndexByte(s, ']')
			if end < 0 {
				return nil, errorf(name, start, "section header %q has no closing ]", s)
			}
			sec := strings.TrimSpace(s[1:end])
			if sec == "" {
				return nil, errorf(name, start, "empty section name")
			}
			rest := strings.TrimSpace(s[end+1:])
			if rest != "" && rest[0] != ';' {
				return nil, errorf(name, start, "text %q after section header [%s]", rest, sec)
			}
			out = append(out, token{section: sec, line: start})
			continue
		}
		// Collect the logical line: a backslash continues it when only blanks or a comment follow.
		var l rawLine
		l.line = start
		var field strings.Builder
		fieldQuoted := false
		inQuote := false
		sawEq := false
		flush := func() {
			v := field.String()
			if !fieldQuoted {
				v = strings.TrimSpace(v)
			} else {
				v = trimOutsideQuotes(v)
			}
			l.fields = append(l.fields, v)
			l.quoted = append(l.quoted, fieldQuoted)
			field.Reset()
			fieldQuoted = false
		}
		for {
			cont := false
			for j := 0; j < len(s); j++ {
				c := s[j]
				if inQuote {
					if c == '"' {
						if j+1 < len(s) && s[j+1] == '"' {
							field.WriteByte('"')
							j++
							continue
						}
						inQuote = false
						field.WriteByte(quoteEnd)
						continue
					}
					field.WriteByte(c)
					continue
				}
				switch c {
				case '"':
					inQuote = true
					fieldQuoted = true
					field.WriteByte(quoteStart)
				case ';':
					j = len(s)
				case '\\':
					if onlyBlankOrComment(s[j+1:]) {
						cont = true
						j = len(s)
					} else {
						field.WriteByte(c)
					}
				case '=':
					// Only the first '=' before any comma separates the key: in
					// "HKR,,Name,,a=b" it is part of a value.
					if !sawEq && len(l.fields) == 0 {
						sawEq = true
						flush()
						l.key = l.fields[0]
						l.fields = l.fields[:0]
						l.quoted = l.quoted[:0]
						l.hasKey = true
					} else {
						field.WriteByte(c)
					}
				case ',':
					flush()
				default:
					field.WriteByte(c)
				}
			}
			if inQuote {
				return nil, errorf(name, i+1, "unterminated quoted string")
			}
			if !cont || i+1 >= len(phys) {
				break
			}
			i++
			s = strings.ReplaceAll(phys[i], "\r", "")
		}
		flush()
		if l.hasKey && l.key == "" {
			return nil, errorf(name, start, "line %q has an empty key before =", strings.TrimSpace(phys[start-1]))
		}
		if !l.hasKey && len(l.fields) == 1 && l.fields[0] == "" && !l.quoted[0] {
			continue // a line holding only a comment or a lone continuation
		}
		out = append(out, token{line: start, l: l})
	}
	return out, nil
}

// Quote marks are kept as private-use runes inside a field until blanks outside them are trimmed,
// then removed: `  "a b" ` is `a b`, `x "y"` is `x y`.
const (
	quoteStart = '\x01'
	quoteEnd   = '\x02'
)

func trimOutsideQuotes(v string) string {
	// Blanks at either end lie outside the quote marks (the marks protect those inside), so a
	// plain trim removes exactly those; then the marks go.
	v = strings.TrimSpace(v)
	return strings.NewReplacer(string(rune(quoteStart)), "", string(rune(quoteEnd)), "").Replace(v)
}

func onlyBlankOrComment(s string) bool {
	t := strings.TrimLeft(s, " \t")
	return t == "" || t[0] == ';'
}

type token struct {
	section string // non-empty for a section header
	line    int
	l       rawLine
}

// Template variables of virtio-win's .inx files and of stampinf, with what the virtio-win build
// (build/Driver.Common.props, Driver.Vendor.props, Driver.RHEL.props) replaces them with for a
// Windows 10 build. INX_PLATFORM_DRIVERS_DIR is 12 there (System32\drivers) and 13 (the driver
// store) only for Windows 11 builds; an offline copy wants 12.
var defaultTemplateVars = map[string]string{
	"INX_PLATFORM_DRIVERS_DIR":           "12",
	"_INX_SUBSYS_VENDOR_ID":              "1AF4",
	"INX_BASE_ON_SYSTEM_ROOT_DRIVER_DIR": `%%SystemRoot%%\System32\drivers`,
	"INX_COMPANY":                        "Red Hat, Inc.",
	"INX_PREFIX_VENDOR":                  "Red Hat ",
	"INX_PREFIX_VIRTIO":                  "",
	"INX_PREFIX_QEMU":                    "",
	"INX_COPYRIGHT_1":                    "",
	"INX_COPYRIGHT_2":                    "",
	"INX_NETKVM_SEPARATE_TAIL":           "1",
	"$KMDFVERSION$":                      "1.15",
	"$UMDFVERSION$":                      "2.15",
}

// isTemplate reports whether text still holds stampinf or virtio-win template variables. Such
// text appears in .inx files and in sample INFs that were never stamped (e.g. NT$ARCH$).
func isTemplate(text string) bool {
	if strings.Contains(text, "$ARCH$") || strings.Contains(text, "$KMDFVERSION$") || strings.Contains(text, "$UMDFVERSION$") {
		return true
	}
	return strings.Contains(text, "INX_")
}

// substituteTemplate replaces template variables the way virtio-win's build does: one pass,
// longest name first so that _INX_SUBSYS_VENDOR_ID is not cut short by a shorter name.
func substituteTemplate(text, arch string, vars map[string]string) (string, []string) {
	all := map[string]string{"$ARCH$": arch}
	for k, v := range defaultTemplateVars {
		all[k] = v
	}
	for k, v := range vars {
		all[k] = v
	}
	names := make([]string, 0, len(all))
	for k := range all {
		names = append(names, k)
	}
	// Longest first, then by name, so the replacement is deterministic.
	sortByLengthDesc(names)
	var used []string
	var sb strings.Builder
	for i := 0; i < len(text); {
		hit := ""
		for _, n := range names {
			if strings.HasPrefix(text[i:], n) {
				hit = n
				break
			}
		}
		if hit == "" {
			sb.WriteByte(text[i])
			i++
			continue
		}
		sb.WriteString(all[hit])
		used = appendOnce(used, hit+"="+all[hit])
		i += len(hit)
	}
	return sb.String(), used
}

func sortByLengthDesc(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0; j-- {
			a, b := s[j-1], s[j]
			if len(a) > len(b) || (len(a) == len(b) && a < b) {
				break
			}
			s[j-1], s[j] = b, a
		}
	}
}

func appendOnce(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}
