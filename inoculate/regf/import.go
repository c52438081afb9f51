package regf

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// RegOp is one line of .reg text: a key to create or delete, or a value to set or delete.
type RegOp struct {
	Key         string // path below the hive root, without the leading backslash
	DeleteKey   bool   // [-KEY]
	Value       string // value name ("" = default); meaningful when IsValue
	IsValue     bool
	DeleteValue bool // "NAME"=-
	Type        uint32
	Data        []byte
	Line        int
}

// ParseReg reads .reg text as regedit, hivexregedit and reged write it: "Windows Registry Editor
// Version 5.00" or REGEDIT4, UTF-8/Latin-1 or UTF-16LE with a BOM, CRLF or LF, hex lines continued
// with a trailing backslash. prefix is stripped from key paths (case-insensitively), e.g.
// `HKEY_LOCAL_MACHINE\SYSTEM`; paths must then start with a backslash or be the prefix itself.
func ParseReg(r io.Reader, prefix string) ([]RegOp, error) {
	raw, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	text := decodeRegText(raw)
	lines := strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n")
	var ops []RegOp
	key, haveKey := "", false
	headerSeen := false
	for i := 0; i < len(lines); i++ {
		lineNo := i + 1
		line := lines[i]
		if !headerSeen {
			line = strings.TrimPrefix(line, "\ufeff")
			if strings.TrimSpace(line) == "" {
				continue
			}
			headerSeen = true
			if line == "Windows Registry Editor Version 5.00" || line == "REGEDIT4" {
				continue
			}
			// hivexregedit --merge takes text without the header (virt-v2v's fixtures have
			// none); so do we, as long as it starts with a key.
			if !strings.HasPrefix(line, "[") && !strings.HasPrefix(line, ";") {
				return nil, fmt.Errorf("line %d: not .reg text (starts with %q)", lineNo, trunc60(line))
			}
		}
		// Join continuation lines (hex data split by regedit and reged).
		for strings.HasSuffix(line, `\`) && i+1 < len(lines) && !strings.HasPrefix(line, "[") && strings.Contains(line, "=hex") {
			i++
			line = line[:len(line)-1] + strings.TrimLeft(lines[i], " \t")
		}
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, ";") {
			continue
		}
		if strings.HasPrefix(line, "[") {
			end := strings.LastIndex(line, "]")
			if end < 0 {
				return nil, fmt.Errorf("line %d: key line without ]", lineNo)
			}
			p := decodeRegString(line[1:end])
			del := strings.HasPrefix(p, "-")
			p = strings.TrimPrefix(p, "-")
			kp, err := stripPrefix(p, prefix)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", lineNo, err)
			}
			key, haveKey = kp, !del
			ops = append(ops, RegOp{Key: kp, DeleteKey: del, Line: lineNo})
			continue
		}
		if !haveKey {
			return nil, fmt.Errorf("line %d: value outside a key", lineNo)
		}
		op, err := parseValueLine(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", lineNo, err)
		}
		op.Key, op.Line, op.IsValue = key, lineNo, true
		ops = append(ops, op)
	}
	return ops, nil
}

func trunc60(s string) string {
	if len(s) > 60 {
		return s[:60]
	}
	return s
}

func stripPrefix(p, prefix string) (string, error) {
	prefix = strings.TrimSuffix(prefix, `\`)
	if prefix != "" {
		if !strings.EqualFold(p, prefix) && !(len(p) > len(prefix) && strings.EqualFold(p[:len(prefix)], prefix) && p[len(prefix)] == '\\') {
			return "", fmt.Errorf("key %q is not under the prefix %q", p, prefix)
		}
		p = p[len(prefix):]
	}
	if p != "" && !strings.HasPrefix(p, `\`) {
		return "", fmt.Errorf("key %q does not start with a backslash (use a prefix such as HKEY_LOCAL_MACHINE\\SYSTEM)", p)
	}
	return strings.TrimPrefix(p, `\`), nil
}

// decodeRegText turns the file into a Go string. UTF-16LE files (regedit's own) start with a BOM;
// others are kept byte for byte and each quoted string is decoded by decodeRegString.
func decodeRegText(b []byte) string {
	if bytes.HasPrefix(b, []byte{0xFF, 0xFE}) {
		u := make([]uint16, (len(b)-2)/2)
		for i := range u {
			u[i] = le16(b[2+2*i:])
		}
		return string(utf16.Decode(u))
	}
	return string(bytes.TrimPrefix(b, []byte{0xEF, 0xBB, 0xBF}))
}

// decodeRegString reads a name or string of .reg text: UTF-8 when it is valid UTF-8 (hand-written
// files, regedit's text converted to UTF-8, hivexregedit --merge's reading), else Latin-1, one
// character per byte (hivexregedit --export prints names whose characters are all below U+0100
// that way, and those bytes are almost never valid UTF-8). The one ambiguous case, Latin-1 text
// that happens to be valid UTF-8 ("Ã¤"), is read as UTF-8, as hivexregedit --merge reads it.
func decodeRegString(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	r := make([]rune, len(s))
	for i := 0; i < len(s); i++ {
		r[i] = rune(s[i])
	}
	return string(r)
}

// parseQuoted reads a "…" string with \\ and \" escapes from the start of s, returning it and the
// rest of s.
func parseQuoted(s string) (string, string, error) {
	if !strings.HasPrefix(s, `"`) {
		return "", "", fmt.Errorf("expected a quoted string at %q", trunc60(s))
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if i+1 < len(s) {
				i++
				b.WriteByte(s[i])
			}
		case '"':
			return decodeRegString(b.String()), s[i+1:], nil
		default:
			b.WriteByte(s[i])
		}
	}
	return "", "", fmt.Errorf("unterminated string")
}

func parseValueLine(line string) (RegOp, error) {
	var op RegOp
	var rest string
	if strings.HasPrefix(line, "@=") {
		rest = line[2:]
	} else {
		name, r, err := parseQuoted(line)
		if err != nil {
			return op, err
		}
		if !strings.HasPrefix(r, "=") {
			return op, fmt.Errorf("expected = after the value name")
		}
		op.Value, rest = name, r[1:]
	}
	switch {
	case rest == "-":
		op.DeleteValue = true
	case strings.HasPrefix(rest, `"`):
		s, tail, err := parseQuoted(rest)
		if err != nil {
			return op, err
		}
		if strings.TrimSpace(tail) != "" {
			return op, fmt.Errorf("text after the string: %q", trunc60(tail))
		}
		op.Type, op.Data = RegSz, utf16z(s)
	case strings.HasPrefix(rest, "dword:"):
		v, err := strconv.ParseUint(strings.TrimSpace(rest[6:]), 16, 32)
		if err != nil {
			return op, fmt.Errorf("bad dword: %v", err)
		}
		op.Type, op.Data = RegDword, []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)}
	case strings.HasPrefix(rest, "str:"):
		// Wine's fake registries: str:"text" is a REG_SZ.
		s, _, err := parseQuoted(rest[4:])
		if err != nil {
			return op, err
		}
		op.Type, op.Data = RegSz, utf16z(s)
	case strings.HasPrefix(rest, "str("):
		// hivexregedit --unsafe-printable-strings: str(T):"text".
		end := strings.Index(rest, "):")
		if end < 0 {
			return op, fmt.Errorf("bad str(T)")
		}
		t, err := strconv.ParseUint(rest[4:end], 16, 32)
		if err != nil {
			return op, err
		}
		s, _, err := parseQuoted(rest[end+2:])
		if err != nil {
			return op, err
		}
		op.Type, op.Data = uint32(t), utf16z(s)
	case strings.HasPrefix(rest, "hex"):
		t := uint64(RegBinary)
		body := rest[3:]
		if strings.HasPrefix(body, "(") {
			end := strings.Index(body, ")")
			if end < 0 {
				return op, fmt.Errorf("bad hex(T)")
			}
			var err error
			if t, err = strconv.ParseUint(body[1:end], 16, 32); err != nil {
				return op, fmt.Errorf("bad type in hex(T): %v", err)
			}
			body = body[end+1:]
		}
		if !strings.HasPrefix(body, ":") {
			return op, fmt.Errorf("expected : after hex")
		}
		body = strings.ReplaceAll(strings.TrimSpace(body[1:]), " ", "")
		var data []byte
		if body != "" {
			for _, p := range strings.Split(body, ",") {
				if len(p) != 2 {
					return op, fmt.Errorf("bad hex byte %q", p)
				}
				bb, err := hex.DecodeString(p)
				if err != nil {
					return op, fmt.Errorf("bad hex byte %q", p)
				}
				data = append(data, bb[0])
			}
		}
		op.Type, op.Data = uint32(t), data
		if op.Data == nil {
			op.Data = []byte{}
		}
	default:
		return op, fmt.Errorf("unknown value syntax %q", trunc60(rest))
	}
	return op, nil
}

// utf16z encodes s as Windows stores string values: UTF-16LE with a terminating NUL.
func utf16z(s string) []byte {
	return append(utf16Bytes(utf16.Encode([]rune(s))), 0, 0)
}

// Import applies .reg operations to the hive, creating parent keys as needed.
func (h *Hive) Import(ops []RegOp) error {
	for _, op := range ops {
		var err error
		switch {
		case op.DeleteKey:
			if _, lerr := h.Lookup(op.Key); lerr == nil {
				err = h.DeleteKey(op.Key)
			}
		case op.IsValue && op.DeleteValue:
			if k, lerr := h.Lookup(op.Key); lerr == nil {
				if _, ok, _ := k.Value(op.Value); ok {
					err = h.DeleteValue(op.Key, op.Value)
				}
			}
		case op.IsValue:
			err = h.SetValue(op.Key, op.Value, op.Type, op.Data)
		default:
			_, err = h.CreateKey(op.Key)
		}
		if err != nil {
			return fmt.Errorf("line %d: %w", op.Line, err)
		}
	}
	return nil
}
