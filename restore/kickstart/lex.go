package kickstart

import (
	"strings"
	"unicode/utf8"
)

// The lexer turns a file into logical lines of words. The rules (docs/kickstart.md, "Syntax"):
//   - words are separated by spaces and tabs; a line ends at a newline (CR LF too);
//   - `#` at the start of a word begins a comment that runs to the end of the line (inside a word,
//     as in serial:AB#12, it is an ordinary character);
//   - a backslash outside quotes takes the next character literally; as the last character of a
//     line it joins the next line to this one;
//   - "…" quotes with \" and \\ as the only escapes (any other backslash stays, so Windows paths
//     need no doubling) and backslash-newline joining lines; '…' quotes take everything literally;
//     a quote must close on its line;
//   - quoted and unquoted parts next to each other make one word, as in a shell.

// word is one word of a line with the position of each of its characters, so that an error can
// point at a character inside it (a value after `=`, an item of a comma-separated list).
type word struct {
	text  string
	start Pos   // where the word begins (its opening quote, if it begins with one)
	at    []Pos // the position of each rune of text
	lit   int   // how many leading runes were neither quoted nor escaped
}

// isOption reports whether w is an option: it begins with an unquoted "--". Quoting lets a value
// that begins with dashes through ("--weird").
func (w word) isOption() bool { return w.lit >= 2 && strings.HasPrefix(w.text, "--") }

// posAt is the position of the rune at index i (the end of the word past its last rune).
func (w word) posAt(i int) Pos {
	if i < len(w.at) {
		return w.at[i]
	}
	if len(w.at) == 0 {
		return w.start
	}
	p := w.at[len(w.at)-1]
	p.Col++
	return p
}

// sub returns the part of w from rune i on, keeping positions.
func (w word) sub(i int) word {
	r := []rune(w.text)
	if i > len(r) {
		i = len(r)
	}
	out := word{text: string(r[i:]), start: w.posAt(i), at: w.at[min(i, len(w.at)):], lit: max(w.lit-i, 0)}
	return out
}

// line is a logical line: one command with its arguments.
type line struct {
	words  []word
	broken bool // a lexical error spoiled it: the parser skips it rather than pile up errors
}

// maxLineErrors stops a line of binary junk from yielding an error per byte.
const maxLineErrors = 3

type lexer struct {
	file  string
	src   []rune
	pos   []Pos // position of each rune of src
	i     int
	errs  *errorSink
	lines []line
	cur   line
	nerr  int // errors on the current physical line
	eline int // the physical line nerr counts for
}

// lex splits src into logical lines, reporting lexical errors to errs.
func lex(file string, src []byte, errs *errorSink) []line {
	lx := &lexer{file: file, errs: errs}
	lx.decode(src)
	lx.run()
	return lx.lines
}

// decode turns src into runes with their positions, reporting bytes that are not UTF-8 and
// control characters (they are kept as U+FFFD so that columns stay true).
func (lx *lexer) decode(src []byte) {
	if len(src) >= 3 && src[0] == 0xEF && src[1] == 0xBB && src[2] == 0xBF {
		src = src[3:] // a byte-order mark, as Windows editors write
	}
	ln, col := 1, 1
	for len(src) > 0 {
		r, n := utf8.DecodeRune(src)
		p := Pos{File: lx.file, Line: ln, Col: col}
		switch {
		case r == utf8.RuneError && n == 1:
			lx.errorf(p, "byte 0x%02x is not UTF-8 text", src[0])
		case r < 0x20 && r != '\t' && r != '\n' && r != '\r', r == 0x7f:
			lx.errorf(p, "control character U+%04X", r)
			r = utf8.RuneError
		}
		lx.src = append(lx.src, r)
		lx.pos = append(lx.pos, p)
		src = src[n:]
		if r == '\n' {
			ln, col = ln+1, 1
		} else {
			col++
		}
	}
}

func (lx *lexer) errorf(p Pos, format string, a ...any) {
	if p.Line != lx.eline {
		lx.eline, lx.nerr = p.Line, 0
	}
	lx.nerr++
	if lx.nerr <= maxLineErrors {
		lx.errs.add(p, format, a...)
	}
	lx.cur.broken = true
}

func (lx *lexer) peek(k int) rune {
	if lx.i+k < len(lx.src) {
		return lx.src[lx.i+k]
	}
	return -1
}

func (lx *lexer) here() Pos {
	if lx.i < len(lx.pos) {
		return lx.pos[lx.i]
	}
	if len(lx.pos) == 0 {
		return Pos{File: lx.file, Line: 1, Col: 1}
	}
	p := lx.pos[len(lx.pos)-1]
	if lx.src[len(lx.src)-1] == '\n' {
		return Pos{File: lx.file, Line: p.Line + 1, Col: 1}
	}
	p.Col++
	return p
}

func (lx *lexer) endLine() {
	if len(lx.cur.words) > 0 || lx.cur.broken {
		lx.lines = append(lx.lines, lx.cur)
	}
	lx.cur = line{}
}

func (lx *lexer) run() {
	for {
		c := lx.peek(0)
		switch {
		case c == -1:
			lx.endLine()
			return
		case c == ' ' || c == '\t' || c == '\r':
			lx.i++
		case c == '\n':
			lx.i++
			lx.endLine()
		case c == '#':
			for lx.peek(0) != -1 && lx.peek(0) != '\n' {
				lx.i++
			}
		case c == '\\' && lx.peek(1) == '\n':
			lx.i += 2 // continuation between words
		default:
			if w, ok := lx.word(); ok {
				lx.cur.words = append(lx.cur.words, w)
			}
		}
	}
}

// onlyBlanksToEOL reports whether everything from index j to the end of the physical line is
// spaces, tabs or CR.
func (lx *lexer) onlyBlanksToEOL(j int) bool {
	for ; j < len(lx.src) && lx.src[j] != '\n'; j++ {
		if c := lx.src[j]; c != ' ' && c != '\t' && c != '\r' {
			return false
		}
	}
	return true
}

// word reads one word; ok is false when nothing was read (a lone stray character that was an
// error on its own).
func (lx *lexer) word() (word, bool) {
	w := word{start: lx.here()}
	var b []rune
	litDone := false
	add := func(r rune, p Pos, literal bool) {
		b = append(b, r)
		w.at = append(w.at, p)
		if literal && !litDone {
			w.lit++
		} else {
			litDone = true
		}
	}
	quoted := false
loop:
	for {
		c := lx.peek(0)
		switch c {
		case -1, ' ', '\t', '\r', '\n':
			break loop
		case '\\':
			next := lx.peek(1)
			switch {
			case next == '\n':
				lx.i += 2
			case next == -1:
				lx.errorf(lx.here(), "backslash at the end of the file: nothing follows to continue the line")
				lx.i++
				break loop
			case (next == ' ' || next == '\t' || next == '\r') && lx.onlyBlanksToEOL(lx.i+1):
				lx.errorf(lx.here(), "backslash followed by spaces: a line continues only when the backslash is its last character")
				lx.i++
				break loop
			default:
				add(next, lx.pos[lx.i+1], false)
				lx.i += 2
			}
		case '"', '\'':
			quoted = true
			litDone = true
			if !lx.quoted(c, &b, &w.at) {
				break loop
			}
		default:
			add(c, lx.pos[lx.i], true)
			lx.i++
		}
	}
	w.text = string(b)
	return w, len(b) > 0 || quoted
}

// quoted reads a quoted part starting at the opening quote q; false when it did not close.
func (lx *lexer) quoted(q rune, b *[]rune, at *[]Pos) bool {
	open := lx.here()
	lx.i++
	for {
		c := lx.peek(0)
		switch {
		case c == -1 || c == '\n':
			name := "double"
			if q == '\'' {
				name = "single"
			}
			lx.errorf(open, "unterminated %s quote: a quoted value must close on its line (end the line with \\ inside \"…\" to continue it)", name)
			return false
		case c == q:
			lx.i++
			return true
		case q == '"' && c == '\\' && lx.peek(1) == '\n':
			lx.i += 2
		case q == '"' && c == '\\' && (lx.peek(1) == '"' || lx.peek(1) == '\\'):
			*b = append(*b, lx.peek(1))
			*at = append(*at, lx.pos[lx.i+1])
			lx.i += 2
		default:
			*b = append(*b, c)
			*at = append(*at, lx.pos[lx.i])
			lx.i++
		}
	}
}

// quote writes s as one word that lexes back to s: bare when nothing in it is special, else in
// single quotes, or double quotes when it holds a single quote.
func quote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\"'\\#") && !strings.HasPrefix(s, "-") {
		return s
	}
	if !strings.Contains(s, "'") {
		return "'" + s + "'"
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(s) + `"`
}
