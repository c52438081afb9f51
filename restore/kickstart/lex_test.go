package kickstart

import (
	"reflect"
	"strings"
	"testing"
)

// lexWords lexes src and returns the words of each unbroken line and the errors as text.
func lexWords(src string) ([][]string, []string) {
	errs := &errorSink{}
	var out [][]string
	for _, l := range lex("t.ks", []byte(src), errs) {
		if l.broken {
			out = append(out, []string{"<broken>"})
			continue
		}
		var ws []string
		for _, w := range l.words {
			ws = append(ws, w.text)
		}
		out = append(out, ws)
	}
	var msgs []string
	if l := errs.list(); l != nil {
		for _, e := range l.Errors {
			msgs = append(msgs, e.Error())
		}
	}
	return out, msgs
}

func TestLex(t *testing.T) {
	for _, c := range []struct {
		name, src string
		want      [][]string
		errs      []string
	}{
		{"words", "disk disk0  --target\t/dev/sda\n", [][]string{{"disk", "disk0", "--target", "/dev/sda"}}, nil},
		{"blank lines and comments", "\n# a comment\n  \nmachine a # trailing\n#x\n", [][]string{{"machine", "a"}}, nil},
		{"hash inside a word", "disk d --target serial:AB#12\n", [][]string{{"disk", "d", "--target", "serial:AB#12"}}, nil},
		{"hash right after a quote", `machine "a"#b`, [][]string{{"machine", "a#b"}}, nil},
		{"double quotes", `machine "web 01" "say \"hi\"" "back\\slash" "C:\Drivers"`,
			[][]string{{"machine", "web 01", `say "hi"`, `back\slash`, `C:\Drivers`}}, nil},
		{"single quotes are literal", `machine 'a \" b' '#x'`, [][]string{{"machine", `a \" b`, "#x"}}, nil},
		{"empty quotes make an empty word", `machine "" ''`, [][]string{{"machine", "", ""}}, nil},
		{"adjacent parts join", `network --hostname=web"01"'-dr'`, [][]string{{"network", "--hostname=web01-dr"}}, nil},
		{"backslash escapes outside quotes", `machine a\ b \#c \"`, [][]string{{"machine", "a b", "#c", `"`}}, nil},
		{"continuation", "disk disk0 \\\n  --target /dev/sda \\\n --resize keep\nmachine m\n",
			[][]string{{"disk", "disk0", "--target", "/dev/sda", "--resize", "keep"}, {"machine", "m"}}, nil},
		{"continuation inside a word", "mach\\\nine m\n", [][]string{{"machine", "m"}}, nil},
		{"continuation inside double quotes", "machine \"a\\\nb\"\n", [][]string{{"machine", "ab"}}, nil},
		{"CRLF", "machine a\r\ndisk d\r\n", [][]string{{"machine", "a"}, {"disk", "d"}}, nil},
		{"continuation with CRLF is a trailing-space error", "machine a \\\r\n", [][]string{{"<broken>"}},
			[]string{"t.ks:1:11: backslash followed by spaces: a line continues only when the backslash is its last character"}},
		{"byte-order mark", "\xef\xbb\xbfmachine a", [][]string{{"machine", "a"}}, nil},
		{"no final newline", "machine a", [][]string{{"machine", "a"}}, nil},
		{"unterminated double quote", "machine \"a\nnext b\n", [][]string{{"<broken>"}, {"next", "b"}},
			[]string{`t.ks:1:9: unterminated double quote: a quoted value must close on its line (end the line with \ inside "…" to continue it)`}},
		{"unterminated single quote", "machine x'a", [][]string{{"<broken>"}},
			[]string{`t.ks:1:10: unterminated single quote: a quoted value must close on its line (end the line with \ inside "…" to continue it)`}},
		{"backslash then spaces", "disk d \\  \n--target x\n", [][]string{{"<broken>"}, {"--target", "x"}},
			[]string{"t.ks:1:8: backslash followed by spaces: a line continues only when the backslash is its last character"}},
		{"backslash at the end of the file", "machine a\\", [][]string{{"<broken>"}},
			[]string{"t.ks:1:10: backslash at the end of the file: nothing follows to continue the line"}},
		{"not UTF-8", "machine \xff\n", [][]string{{"<broken>"}}, []string{"t.ks:1:9: byte 0xff is not UTF-8 text"}},
		{"control character", "machine a\x00b\n", [][]string{{"<broken>"}}, []string{"t.ks:1:10: control character U+0000"}},
		{"columns count characters", "machine é \"ü", [][]string{{"<broken>"}},
			[]string{`t.ks:1:11: unterminated double quote: a quoted value must close on its line (end the line with \ inside "…" to continue it)`}},
		{"junk is reported at most three times a line", "\x01\x02\x03\x04\x05", [][]string{{"<broken>"}},
			[]string{"t.ks:1:1: control character U+0001", "t.ks:1:2: control character U+0002", "t.ks:1:3: control character U+0003"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, errs := lexWords(c.src)
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("words:\n got %q\nwant %q", got, c.want)
			}
			if !reflect.DeepEqual(errs, c.errs) {
				t.Errorf("errors:\n got %q\nwant %q", errs, c.errs)
			}
		})
	}
}

func TestLexPositions(t *testing.T) {
	errs := &errorSink{}
	lines := lex("t.ks", []byte("# c\n  disk \"d 0\" \\\n\t--target=/dev/x\n"), errs)
	if len(lines) != 1 || errs.list() != nil {
		t.Fatalf("lines %d, errors %v", len(lines), errs.list())
	}
	w := lines[0].words
	want := []struct {
		line, col int
		opt       bool
	}{{2, 3, false}, {2, 8, false}, {3, 2, true}}
	for i, x := range want {
		if w[i].start.Line != x.line || w[i].start.Col != x.col || w[i].isOption() != x.opt {
			t.Errorf("word %d %q at %v option %v; want %d:%d option %v", i, w[i].text, w[i].start, w[i].isOption(), x.line, x.col, x.opt)
		}
	}
	// The characters inside the quotes keep their own columns.
	if p := w[1].posAt(2); p.Col != 11 {
		t.Errorf("'0' of \"d 0\" at column %d, want 11", p.Col)
	}
	// The value after = starts 9 characters into --target=.
	if v := w[2].sub(9); v.text != "/dev/x" || v.start.Col != 11 {
		t.Errorf("value %q at %v", v.text, v.start)
	}
}

func TestQuoteRoundTrip(t *testing.T) {
	for _, s := range []string{"plain", "", "a b", `it's`, `say "hi"`, `back\slash`, "#x", "-dash", "--opt", `'"\`, "é ü", "tab\there"} {
		q := quote(s)
		got, errs := lexWords("machine " + q)
		if len(errs) > 0 || len(got) != 1 || len(got[0]) != 2 || got[0][1] != s {
			t.Errorf("quote(%q) = %s lexes to %q %v", s, q, got, errs)
		}
		errsink := &errorSink{}
		if l := lex("t", []byte(q), errsink); len(l) == 1 && l[0].words[0].isOption() {
			t.Errorf("quote(%q) = %s reads as an option", s, q)
		}
		if s == "plain" && strings.ContainsAny(q, `'"`) {
			t.Errorf("quote(%q) = %s: quoted needlessly", s, q)
		}
	}
}
