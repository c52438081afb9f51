package kickstart

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestReferenceMatchesTable holds docs/kickstart.md to the parser's table: every command has its
// section, every option its bullet there, and the reference lists no option the parser lacks.
func TestReferenceMatchesTable(t *testing.T) {
	b, err := os.ReadFile("../../docs/kickstart.md")
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]string{} // command → its section's text
	var order []string
	heading := regexp.MustCompile("^### `([a-z-]+)")
	var cur string
	for _, l := range strings.Split(string(b), "\n") {
		if m := heading.FindStringSubmatch(l); m != nil {
			cur = m[1]
			order = append(order, cur)
			continue
		}
		if strings.HasPrefix(l, "## ") || strings.HasPrefix(l, "### ") {
			cur = ""
		}
		if cur != "" {
			sections[cur] += l + "\n"
		}
	}
	bullet := regexp.MustCompile("(?m)^- `--([a-z-]+)")
	for _, c := range Commands() {
		text, ok := sections[c.Name]
		if !ok {
			t.Errorf("docs/kickstart.md has no section \"### `%s\"", c.Name)
			continue
		}
		documented := map[string]bool{}
		for _, m := range bullet.FindAllStringSubmatch(text, -1) {
			documented[m[1]] = true
			if c.option(m[1]) == nil {
				t.Errorf("docs/kickstart.md documents --%s for %s, which the parser does not take", m[1], c.Name)
			}
		}
		for _, o := range c.Options {
			if !documented[o.Name] {
				t.Errorf("docs/kickstart.md: %s has no bullet for --%s", c.Name, o.Name)
			}
		}
		if c.Args != "" && !strings.Contains(string(b), "### `"+c.Name+" "+c.Args+"`") {
			t.Errorf("docs/kickstart.md: the heading of %s does not read `%s %s`", c.Name, c.Name, c.Args)
		}
		if c.Required && !strings.Contains(text, "Required") {
			t.Errorf("docs/kickstart.md: %s is required, and its section does not say so", c.Name)
		}
	}
	for _, name := range order {
		if findCommand(name) == nil {
			t.Errorf("docs/kickstart.md documents a command %q that the parser does not know", name)
		}
	}
	// The reference's example is the design's, and it parses.
	if !strings.Contains(string(b), strings.SplitN(designExample, "\n", 2)[1]) {
		t.Error("docs/kickstart.md's example differs from the design's")
	}
}
