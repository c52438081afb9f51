package kickstart

import (
	"fmt"
	"sort"
	"strings"
)

// MaxErrors is how many errors an ErrorList lists; past it they are only counted, because the
// first few are what a technician fixes and a file in the wrong format would give one per line.
const MaxErrors = 25

// Error is one problem in a kickstart file.
type Error struct {
	Pos Pos    `json:"pos"`
	Msg string `json:"msg"`
}

func (e *Error) Error() string { return e.Pos.String() + ": " + e.Msg }

// ErrorList is every problem Parse found, sorted by position (problems with the file as a whole,
// such as a missing command, last), at most MaxErrors of them.
type ErrorList struct {
	Errors  []*Error `json:"errors"`
	Omitted int      `json:"omitted,omitempty"` // problems found beyond MaxErrors
}

// Error gives one problem per line.
func (l *ErrorList) Error() string {
	var b strings.Builder
	for i, e := range l.Errors {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	if l.Omitted > 0 {
		fmt.Fprintf(&b, "\n(and %d more)", l.Omitted)
	}
	return b.String()
}

// errorSink collects errors while parsing.
type errorSink struct {
	errs []*Error
}

func (s *errorSink) add(p Pos, format string, a ...any) {
	s.errs = append(s.errs, &Error{Pos: p, Msg: fmt.Sprintf(format, a...)})
}

// list sorts, deduplicates and cuts the errors; nil when there are none.
func (s *errorSink) list() *ErrorList {
	if len(s.errs) == 0 {
		return nil
	}
	key := func(p Pos) (int, int) {
		if p.Line == 0 {
			return 1 << 30, 0
		}
		return p.Line, p.Col
	}
	sort.SliceStable(s.errs, func(i, j int) bool {
		li, ci := key(s.errs[i].Pos)
		lj, cj := key(s.errs[j].Pos)
		if li != lj {
			return li < lj
		}
		return ci < cj
	})
	var out []*Error
	for _, e := range s.errs {
		if n := len(out); n > 0 && *out[n-1] == *e {
			continue
		}
		out = append(out, e)
	}
	l := &ErrorList{Errors: out}
	if len(out) > MaxErrors {
		l.Errors, l.Omitted = out[:MaxErrors], len(out)-MaxErrors
	}
	return l
}
