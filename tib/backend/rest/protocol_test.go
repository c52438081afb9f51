package rest

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cauldron-dr/cauldron/tib/backend"
	"github.com/cauldron-dr/cauldron/tib/backend/local"
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
	// A modification time is read when given (a newer server's listing), refused when not a time.
	files, err = parseList([]byte(`[{"name":"ab","size":3,"modTime":"2026-12-07T12:00:00.5Z"}]`))
	if err != nil || len(files) != 1 || !files[0].ModTime.Equal(time.Date(2026, 12, 7, 12, 0, 0, 5e8, time.UTC)) {
		t.Fatalf("parseList with modTime = %v, %v", files, err)
	}
	if _, err := parseList([]byte(`[{"name":"ab","size":3,"modTime":"yesterday"}]`)); err == nil {
		t.Fatal("a listing with a modTime that is not a time was accepted")
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
		`[{"name":"..","size":1}]`, `[{"NAME":"x","Size":1,"x":[1,{"y":null}]}]`, `[{"name":"a\u0000","size":1}]`, `nul`, `[{"name":"ab","size":1e3}]`,
		`[{"name":"ab","size":1,"modTime":"2026-12-07T12:00:00+02:00"}]`, `[{"name":"ab","size":1,"modTime":"9999-12-31T23:59:59-01:00"}]`} {
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

// FuzzHandler sends arbitrary requests to a checking, append-only handler over a repository
// directory: it must answer each with a status of the protocol (never panic, never a 500 for the
// client's mistakes) and store nothing outside the repository's folders.
func FuzzHandler(f *testing.F) {
	f.Add("POST", "/data/ab", "", []byte("x"))
	f.Add("GET", "/data/ab01", "bytes=0-2147483646", []byte(nil))
	f.Add("GET", "/config", "bytes=5-", []byte(nil))
	f.Add("POST", "/keys/0", "", []byte(`{"kdf":"argon2id"}`))
	f.Add("POST", "/generations/"+strings.Repeat("0", 64), "", make([]byte, 40))
	f.Add("DELETE", "/index/../config", "", []byte(nil))
	f.Add("GET", "/locks/", "", []byte(nil))
	root := f.TempDir()
	dir := filepath.Join(root, "repo")
	l := local.New(dir)
	if err := l.Create(context.Background()); err != nil {
		f.Fatal(err)
	}
	if err := l.Save(context.Background(), backend.Handle{Type: backend.Config}, make([]byte, 40)); err != nil {
		f.Fatal(err)
	}
	if err := l.Save(context.Background(), backend.Handle{Type: backend.Pack, Name: "ab01"}, []byte("0123456789")); err != nil {
		f.Fatal(err)
	}
	h := NewHandler(l, HandlerOptions{AppendOnly: true, CheckObjects: true, MaxFileSize: 1 << 20})
	allowed := map[int]bool{200: true, 206: true, 400: true, 403: true, 404: true, 405: true, 409: true, 411: true, 413: true, 416: true}
	f.Fuzz(func(t *testing.T, method, path, rng string, body []byte) {
		switch method {
		case "GET", "HEAD", "POST", "DELETE", "PUT":
		default:
			return
		}
		// The path is set after parsing, as net/http hands a handler the decoded path.
		r := httptest.NewRequest(method, "http://repo/", bytes.NewReader(body))
		r.URL.Path, r.URL.RawPath = path, ""
		if rng != "" {
			r.Header.Set("Range", rng)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if !allowed[w.Code] {
			t.Fatalf("%s %q (range %q, %d bytes): %d %s", method, path, rng, len(body), w.Code, w.Body.String())
		}
		if w.Code >= 400 && method != "HEAD" && strings.TrimSpace(w.Body.String()) == "" {
			t.Fatalf("%s %q: %d without an explanation", method, path, w.Code)
		}
		if entries, _ := os.ReadDir(root); len(entries) != 1 {
			t.Fatalf("%s %q: something was written beside the repository: %v", method, path, entries)
		}
		if _, err := os.Stat(filepath.Join(dir, "config")); err != nil {
			t.Fatalf("%s %q: the config is gone: %v", method, path, err)
		}
	})
}
