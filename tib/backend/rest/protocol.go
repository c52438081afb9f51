package rest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/cauldron-dr/cauldron/tib/backend"
)

// The parts of the protocol that client and server share: paths, names, ranges and the listing.

// maxNameLen bounds a file name; real names are 64 hex digits.
const maxNameLen = 255

// maxListBytes bounds a listing the client accepts, so that a broken or hostile server cannot
// make it read without end. A million packs list in about 100 MB.
const maxListBytes = 256 << 20

// hashHeader carries the hex SHA-256 of a saved file's bytes, so that the server refuses an
// upload that a proxy or a broken link changed without changing its length.
const hashHeader = "X-Cauldron-Content-Sha256"

// checkName refuses names that could leave the type's folder or that no writer of ours makes.
// The character set is deliberately narrow (every name in the format is hex): it keeps paths
// free of escaping questions and of names that mean something to a filesystem.
func checkName(name string) error {
	if name == "" {
		return errors.New("empty file name")
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("file name of %d bytes is too long (at most %d)", len(name), maxNameLen)
	}
	if name[0] == '.' {
		return fmt.Errorf("invalid file name %q: starts with a dot", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("invalid file name %q: only letters, digits, '.', '_' and '-' are allowed", name)
		}
	}
	return nil
}

// checkType accepts the file types that have folders (every type but Config).
func checkType(t backend.FileType) error {
	for _, k := range backend.Types {
		if t == k {
			return nil
		}
	}
	return fmt.Errorf("unknown file type %q", string(t))
}

// checkHandle validates a handle before it becomes a path.
func checkHandle(h backend.Handle) error {
	if h.Type == backend.Config {
		if h.Name != "" {
			return fmt.Errorf("the config file has no name (got %q)", h.Name)
		}
		return nil
	}
	if err := checkType(h.Type); err != nil {
		return err
	}
	if err := checkName(h.Name); err != nil {
		return fmt.Errorf("%s: %w", h.Type, err)
	}
	return nil
}

// handlePath is a handle's path relative to the repository URL.
func handlePath(h backend.Handle) string {
	if h.Type == backend.Config {
		return "config"
	}
	return string(h.Type) + "/" + h.Name
}

// target is what a request path names.
type target struct {
	root   bool             // "/": the repository itself (create)
	list   backend.FileType // "/TYPE/": a listing; empty otherwise
	handle backend.Handle   // "/config" or "/TYPE/NAME"
}

// parsePath reads a request path (already stripped of any prefix the server is mounted under).
func parsePath(p string) (target, error) {
	if p == "/" || p == "" {
		return target{root: true}, nil
	}
	p = strings.TrimPrefix(p, "/")
	if p == "config" {
		return target{handle: backend.Handle{Type: backend.Config}}, nil
	}
	typ, name, ok := strings.Cut(p, "/")
	if !ok {
		return target{}, fmt.Errorf("path /%s names no file: want /config, /TYPE/ or /TYPE/NAME", p)
	}
	t := backend.FileType(typ)
	if err := checkType(t); err != nil {
		return target{}, err
	}
	if name == "" {
		return target{list: t}, nil
	}
	h := backend.Handle{Type: t, Name: name}
	if err := checkHandle(h); err != nil {
		return target{}, err
	}
	return target{handle: h}, nil
}

// byteRange is one "bytes=" range: from start, length bytes, or to the end when length is 0.
type byteRange struct {
	start, length int64
}

// header renders r for a Range header; the whole file needs none.
func (r byteRange) header() string {
	if r.length == 0 {
		return fmt.Sprintf("bytes=%d-", r.start)
	}
	return fmt.Sprintf("bytes=%d-%d", r.start, r.start+r.length-1)
}

// parseRange reads the two forms the protocol allows: "bytes=A-B" and "bytes=A-". Suffix
// ranges and lists of ranges are refused: Load never asks for them, and one form per meaning
// keeps the server exact.
func parseRange(s string) (byteRange, error) {
	spec, ok := strings.CutPrefix(s, "bytes=")
	if !ok {
		return byteRange{}, fmt.Errorf("range %q: only \"bytes=\" ranges are supported", s)
	}
	a, b, ok := strings.Cut(spec, "-")
	if !ok || a == "" || strings.Contains(b, ",") {
		return byteRange{}, fmt.Errorf("range %q: want bytes=START-END or bytes=START-", s)
	}
	start, err := strconv.ParseInt(a, 10, 64)
	if err != nil || start < 0 {
		return byteRange{}, fmt.Errorf("range %q: bad start", s)
	}
	if b == "" {
		return byteRange{start: start}, nil
	}
	end, err := strconv.ParseInt(b, 10, 64)
	if err != nil || end < start || end-start >= 1<<31 {
		return byteRange{}, fmt.Errorf("range %q: bad end", s)
	}
	return byteRange{start: start, length: end - start + 1}, nil
}

// listEntry is one element of a listing's JSON array.
type listEntry struct {
	Name string `json:"name"`
	Size *int64 `json:"size"` // a pointer, so that a missing size is told from 0
	// ModTime is the file's modification time by the server's clock; absent from an older
	// server's listing (then unknown).
	ModTime *time.Time `json:"modTime,omitempty"`
}

// encodeList writes a listing. Names the protocol cannot carry are the caller's to skip.
func encodeList(w io.Writer, files []backend.FileInfo) error {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, f := range files {
		if i > 0 {
			b.WriteByte(',')
		}
		size := f.Size
		le := listEntry{Name: f.Name, Size: &size}
		if !f.ModTime.IsZero() {
			mt := f.ModTime.UTC()
			le.ModTime = &mt
		}
		e, err := json.Marshal(le)
		if err != nil {
			return err
		}
		b.Write(e)
	}
	b.WriteString("]\n")
	_, err := w.Write(b.Bytes())
	return err
}

// parseList reads a server's listing strictly: a JSON array of objects with a valid name and a
// size of at least 0, each name once, and nothing after the array. Unknown fields are allowed so
// that a newer server may say more.
func parseList(data []byte) ([]backend.FileInfo, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var entries []listEntry
	if err := dec.Decode(&entries); err != nil {
		return nil, fmt.Errorf("listing is not a JSON array of {name, size}: %w", err)
	}
	if entries == nil {
		return nil, errors.New("listing is not a JSON array")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("listing has data after its array")
	}
	files := make([]backend.FileInfo, 0, len(entries))
	seen := make(map[string]bool, len(entries))
	for i, e := range entries {
		if err := checkName(e.Name); err != nil {
			return nil, fmt.Errorf("listing entry %d: %w", i, err)
		}
		if e.Size == nil || *e.Size < 0 {
			return nil, fmt.Errorf("listing entry %d (%s): missing or negative size", i, e.Name)
		}
		if seen[e.Name] {
			return nil, fmt.Errorf("listing names %s twice", e.Name)
		}
		seen[e.Name] = true
		fi := backend.FileInfo{Name: e.Name, Size: *e.Size}
		if e.ModTime != nil {
			// In UTC, as the server's encoder writes it; a year RFC 3339 cannot write is no
			// file's time.
			if fi.ModTime = e.ModTime.UTC(); fi.ModTime.Year() < 1 || fi.ModTime.Year() > 9999 {
				return nil, fmt.Errorf("listing entry %d (%s): modTime %s is out of range", i, e.Name, fi.ModTime)
			}
		}
		files = append(files, fi)
	}
	return files, nil
}
