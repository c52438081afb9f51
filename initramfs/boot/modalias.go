package boot

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// AliasTable is a parsed modules.alias: which module drives a device with a given modalias.
type AliasTable struct {
	entries []aliasEntry
}

type aliasEntry struct {
	pattern string // fnmatch pattern as depmod wrote it
	prefix  string // the pattern's literal part before its first wildcard, for a quick reject
	module  string
}

// ParseAliases reads the format depmod writes: "alias PATTERN MODULE" lines and # comments.
func ParseAliases(r io.Reader) (*AliasTable, error) {
	t := &AliasTable{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || s[0] == '#' {
			continue
		}
		f := strings.Fields(s)
		if len(f) != 3 || f[0] != "alias" {
			return nil, fmt.Errorf("modules.alias:%d: want \"alias PATTERN MODULE\", got %q", line, s)
		}
		p := f[1]
		pre := p
		if i := strings.IndexAny(p, "*?["); i >= 0 {
			pre = p[:i]
		}
		t.entries = append(t.entries, aliasEntry{pattern: p, prefix: pre, module: f[2]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("modules.alias: %w", err)
	}
	return t, nil
}

// Len is the number of aliases.
func (t *AliasTable) Len() int { return len(t.entries) }

// Modules returns the modules whose aliases match modalias, each once, in the table's order.
func (t *AliasTable) Modules(modalias string) []string {
	var out []string
	seen := map[string]bool{}
	for _, e := range t.entries {
		if !strings.HasPrefix(modalias, e.prefix) || seen[e.module] {
			continue
		}
		if globMatch(e.pattern, modalias) {
			seen[e.module] = true
			out = append(out, e.module)
		}
	}
	return out
}

// globMatch is fnmatch(3) without flags, as the kernel's modalias tools use it: * matches any
// run (slashes included, unlike path.Match), ? one byte, [...] a set with ranges and ! or ^
// negation. A malformed set matches nothing.
func globMatch(pattern, s string) bool {
	// Iterative with one backtrack point for the last star: linear in practice, never exponential.
	px, sx := 0, 0
	starP, starS := -1, 0
	for sx < len(s) {
		if px < len(pattern) {
			switch c := pattern[px]; c {
			case '*':
				starP, starS = px, sx
				px++
				continue
			case '?':
				px++
				sx++
				continue
			case '[':
				if n, ok := matchSet(pattern[px:], s[sx]); n > 0 {
					if ok {
						px += n
						sx++
						continue
					}
				} else if s[sx] == '[' { // unterminated set: a literal '['
					px++
					sx++
					continue
				}
			default:
				if c == s[sx] {
					px++
					sx++
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		starS++
		px, sx = starP+1, starS
	}
	for px < len(pattern) && pattern[px] == '*' {
		px++
	}
	return px == len(pattern)
}

// matchSet matches one byte against the set at the start of p ("[...]"). It returns the set's
// length (0 when it is not terminated) and whether c is in it.
func matchSet(p string, c byte) (int, bool) {
	i := 1
	neg := false
	if i < len(p) && (p[i] == '!' || p[i] == '^') {
		neg = true
		i++
	}
	in := false
	first := true
	for i < len(p) {
		if p[i] == ']' && !first {
			return i + 1, in != neg
		}
		first = false
		lo := p[i]
		if i+2 < len(p) && p[i+1] == '-' && p[i+2] != ']' {
			if lo <= c && c <= p[i+2] {
				in = true
			}
			i += 3
			continue
		}
		if lo == c {
			in = true
		}
		i++
	}
	return 0, false
}
