package tui

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"
)

// theme is the look: plain ASCII without colour for dumb and serial terminals (a vt100 or a BMC's
// serial-over-LAN window shows Unicode box characters and colour codes as garbage), colour and
// Unicode elsewhere. The wizard's words and layout are the same in both.
type theme struct {
	ascii bool

	title, selected, dim, warn, bad, good, key lipgloss.Style

	cursor     string // before the highlighted row
	barFull    string
	barEmpty   string
	rule       string
	ellipsis   string
	checkOn    string
	checkOff   string
	radioOn    string
	radioOff   string
	fieldEnd   string // the text cursor in a focused field
	notAllowed string // before a row that cannot be chosen
}

func newTheme(ascii bool) theme {
	if ascii {
		return theme{ascii: true, cursor: "> ", barFull: "#", barEmpty: ".", rule: "-", ellipsis: "...",
			checkOn: "[x]", checkOff: "[ ]", radioOn: "(*)", radioOff: "( )", fieldEnd: "_", notAllowed: "x "}
	}
	s := lipgloss.NewStyle
	return theme{
		title:    s().Bold(true).Foreground(lipgloss.Color("12")),
		selected: s().Bold(true).Reverse(true),
		dim:      s().Faint(true),
		warn:     s().Foreground(lipgloss.Color("11")),
		bad:      s().Bold(true).Foreground(lipgloss.Color("9")),
		good:     s().Bold(true).Foreground(lipgloss.Color("10")),
		key:      s().Bold(true),
		cursor:   "▶ ", barFull: "█", barEmpty: "░", rule: "─", ellipsis: "…",
		checkOn: "[x]", checkOff: "[ ]", radioOn: "(•)", radioOff: "( )", fieldEnd: "▏", notAllowed: "✗ ",
	}
}

// paint applies a style, or nothing in ASCII mode (no escape codes at all there).
func (t theme) paint(st lipgloss.Style, s string) string {
	if t.ascii || s == "" {
		return s
	}
	return st.Render(s)
}

func (t theme) Title(s string) string    { return t.paint(t.title, s) }
func (t theme) Dim(s string) string      { return t.paint(t.dim, s) }
func (t theme) Warn(s string) string     { return t.paint(t.warn, s) }
func (t theme) Bad(s string) string      { return t.paint(t.bad, s) }
func (t theme) Good(s string) string     { return t.paint(t.good, s) }
func (t theme) Key(s string) string      { return t.paint(t.key, s) }
func (t theme) Selected(s string) string { return t.paint(t.selected, s) }

// row renders one list row with the cursor mark when it is the highlighted one.
func (t theme) row(highlighted bool, s string) string {
	if highlighted {
		return t.cursor + t.Selected(s)
	}
	return strings.Repeat(" ", utf8.RuneCountInString(t.cursor)) + s
}

func (t theme) check(on bool) string {
	if on {
		return t.checkOn
	}
	return t.checkOff
}

func (t theme) radio(on bool) string {
	if on {
		return t.radioOn
	}
	return t.radioOff
}

// bar draws a progress bar of width cells.
func (t theme) bar(done, total int64, width int) string {
	if width < 3 {
		width = 3
	}
	n := 0
	if total > 0 {
		n = int(float64(width) * float64(min(done, total)) / float64(total))
	}
	return "[" + strings.Repeat(t.barFull, n) + strings.Repeat(t.barEmpty, width-n) + "]"
}

// asciiOnly replaces what a plain terminal cannot show: the engine's messages and plan text use
// arrows and dashes.
var asciiReplacer = strings.NewReplacer("→", "->", "←", "<-", "…", "...", "—", "--", "–", "-", "×", "x", "•", "*", "✗", "x", "▶", ">")

func toASCII(s string) string {
	s = asciiReplacer.Replace(s)
	if isASCII(s) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if r < 0x80 {
			b.WriteRune(r)
		} else {
			b.WriteByte('?')
		}
	}
	return b.String()
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// wrapLines breaks lines longer than width cells (at spaces where it can, escape codes kept
// intact): prose must not be cut off on an 80-column console.
func wrapLines(s string, width int) string {
	if width <= 0 {
		return s
	}
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if ansi.StringWidth(l) > width {
			lines[i] = ansi.Wrap(l, width, " ")
		}
	}
	return strings.Join(lines, "\n")
}

// clip cuts every line to width cells (escape codes kept intact) and the text to height lines.
func clip(s string, width, height int) string {
	lines := strings.Split(s, "\n")
	if height > 0 && len(lines) > height {
		lines = lines[:height]
	}
	for i, l := range lines {
		if width > 0 && ansi.StringWidth(l) > width {
			lines[i] = ansi.Truncate(l, width, "")
		}
	}
	return strings.Join(lines, "\n")
}

// human formats a byte count (binary units, as the engine's messages do).
func human(n int64) string {
	neg := n < 0
	if neg {
		n = -n
	}
	const unit = 1024
	var s string
	if n < unit {
		s = fmt.Sprintf("%d B", n)
	} else {
		div, exp := int64(unit), 0
		for m := n / unit; m >= unit; m /= unit {
			div *= unit
			exp++
		}
		s = fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
	}
	if neg {
		return "-" + s
	}
	return s
}

// field is a one-line text input. It is written here rather than taken from bubbles' textinput
// because the wizard needs a field without a blinking cursor (a blink redraws the screen twice a
// second, which a 9600-baud serial console cannot keep up with) and with a pure-ASCII look.
type field struct {
	value string
	mask  bool // passwords: shown as stars
	limit int
}

// handle applies a key to the field and reports whether the key was the field's.
func (f *field) handle(k string, text string) bool {
	switch k {
	case "backspace", "ctrl+h":
		if f.value != "" {
			_, size := utf8.DecodeLastRuneInString(f.value)
			f.value = f.value[:len(f.value)-size]
		}
		return true
	case "ctrl+u":
		f.value = ""
		return true
	case "ctrl+w":
		v := strings.TrimRight(f.value, " ")
		if i := strings.LastIndexAny(v, " /"); i >= 0 {
			f.value = v[:i+1]
		} else {
			f.value = ""
		}
		return true
	}
	if text == "" {
		return false
	}
	for _, r := range text {
		if r < 0x20 || r == 0x7f {
			return true // control characters from a paste: dropped
		}
	}
	limit := f.limit
	if limit == 0 {
		limit = 1024
	}
	if utf8.RuneCountInString(f.value)+utf8.RuneCountInString(text) <= limit {
		f.value += text
	}
	return true
}

func (f field) view(t theme, focused bool, width int) string {
	v := f.value
	if f.mask {
		v = strings.Repeat("*", utf8.RuneCountInString(v))
	}
	if width > 4 && utf8.RuneCountInString(v) > width-2 {
		r := []rune(v)
		v = "<" + string(r[len(r)-(width-3):])
	}
	end := " "
	if focused {
		end = t.fieldEnd
	}
	return "[" + v + end + "]"
}
