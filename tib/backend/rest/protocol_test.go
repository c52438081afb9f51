package rest

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/cauldron-dr/cauldron/tib/backend"
)

func TestParsePath(t *testing.T) {
	good := map[string]target{
		"/":                 {root: true},
		"/config":           {handle: backend.Handle{Type: backend.Config}},
		"/data/":            {list: backend.Pack},
		"/data/ab12":        {handle: backend.Handle{Type: backend.Pack, Name: "ab12"}},
		"/journals/x_y-z.1": {handle: backend.Handle{Type: backend.Journal, Name: "x_y-z.1"}},
	}
	for p, want := range good {
		got, err := parsePath(p)
		if err != nil || got != want {
			t.Errorf("parsePath(%q) = %+v, %v; want %+v", p, got, err, want)
		}
	}
	for _, p := range []string{"/config/x", "/data", "/tmp/x", "/nosuch/", "/data/..", "/data/.", "/data/a/b",
		"/data/../config", "/data/.hidden", "/data/a b", "/data/a\\b", "/Data/ab", "/data/" + strings.Repeat("a", 256), "//config"} {
		if got, err := parsePath(p); err == nil {
			t.Errorf("parsePath(%q) = %+v, want an error", p, got)
		}
	}
}

func TestParseRange(t *testing.T) {
	good := map[string]byteRange{
		"bytes=0-0":     {0, 1},
		"bytes=5-104":   {5, 100},
		"bytes=3000-":   {3000, 0},
		"bytes=0-":      {0, 0},
		"bytes=10-9999": {10, 9990},
	}
	for s, want := range good {
		got, err := parseRange(s)
		if err != nil || got != want {
			t.Errorf("parseRange(%q) = %+v, %v; want %+v", s, got, err, want)
		}
		if again, err := parseRange(got.header()); err != nil || again != got {
			t.Errorf("header %q of %q does not read back: %+v %v", got.header(), s, again, err)
		}
	}
	for _, s := range []string{"", "bytes=", "bytes=-5", "bytes=5-4", "bytes=0-1,3-4", "items=0-1", "bytes=a-b", "bytes=-1-", "bytes=0-99999999999"} {
		if got, err := parseRange(s); err == nil {
			t.Errorf("parseRange(%q) = %+v, want an error", s, got)
		}
	}
}

func TestParseList(t *testing.T) {
	files, err := parseList([]byte(`[{"name":"ab","size":3},{"name":"cd","size":0,"mtime":"later"}]` + "\n"))
	if err != nil || !reflect.DeepEqual(files, []backend.FileInfo{{Name: "ab", Size: 3}, {Name: "cd", Size: 0}}) {
		t.Fatalf("parseList = %v, %v", files, err)
	}
	if files, err := parseList([]byte(" [] ")); err != nil || len(files) != 0 {
		t.Fatalf("empty listing: %v, %v", files, err)
	}
	for _, s := range []string{``, `null`, `{}`, `[null]`, `[{"name":"ab"}]`, `[{"size":1}]`, `[{"name":"ab","size":-1}]`,
		`[{"name":"..","size":1}]`, `[{"name":"a/b","size":1}]`, `[{"name":"ab","size":1},{"name":"ab","size":1}]`,
		`[] []`, `[{"name":"ab","size":1.5}]`, `[{"name":"ab","size":"1"}]`, `[{"name":"ab","size":1}`} {
		if files, err := parseList([]byte(s)); err == nil {
			t.Errorf("parseList(%s) = %v, want an error", s, files)
		}
	}
}

// FuzzParseList feeds the client's listing parser what a broken or hostile server might send:
// it must never panic, and whatever it accepts must be valid and survive a round trip through
// the server's encoder.
func FuzzParseList(f *testing.F) {
	for _, s := range []string{`[]`, `[{"name":"ab","size":3}]`, `[{"name":"ab","size":3},{"name":"cd","size":9007199254740993}]`,
		`[{"name":"..","size":1}]`, `[{"NAME":"x","Size":1,"x":[1,{"y":null}]}]`, `[{"name":"a\u0000","size":1}]`, `nul`, `[{"name":"ab","size":1e3}]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		files, err := parseList(data)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, fi := range files {
			if checkName(fi.Name) != nil || fi.Size < 0 || seen[fi.Name] {
				t.Fatalf("parseList accepted %+v from %q", fi, data)
			}
			seen[fi.Name] = true
		}
		var b bytes.Buffer
		if err := encodeList(&b, files); err != nil {
			t.Fatal(err)
		}
		again, err := parseList(b.Bytes())
		if err != nil || len(again) != len(files) || len(files) > 0 && !reflect.DeepEqual(again, files) {
			t.Fatalf("round trip of %v gave %v, %v", files, again, err)
		}
	})
}
