package mountinfo

import "testing"

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{
		`/mnt/with\040space`: "/mnt/with space",
		`/tab\011x`:          "/tab\tx",
		`/back\134slash`:     `/back\slash`,
		`/ends\040`:          "/ends ", // an escape at the very end (three earlier copies missed it)
		`\040`:               " ",
		`/not\08octal`:       `/not\08octal`,
		`/short\04`:          `/short\04`,
		`/big\777`:           `/big\777`,
		`/plain`:             "/plain",
		`/trailing\`:         `/trailing\`,
	} {
		if got := Unescape(in); got != want {
			t.Errorf("Unescape(%q) = %q, want %q", in, got, want)
		}
	}
}
