package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Write(p, []byte("new"), func(f *os.File) error { return f.Chmod(0o640) }); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	fi, _ := os.Stat(p)
	if string(b) != "new" || fi.Mode().Perm() != 0o640 {
		t.Fatalf("content %q mode %v", b, fi.Mode())
	}
	// A failing prepare leaves the old content and no temporary file.
	if err := Write(p, []byte("newer"), func(*os.File) error { return errors.New("no") }); err == nil {
		t.Fatal("prepare's error was ignored")
	}
	b, _ = os.ReadFile(p)
	ents, _ := os.ReadDir(dir)
	if string(b) != "new" || len(ents) != 1 {
		t.Fatalf("after a failed write: %q, %d files", b, len(ents))
	}
	if err := Write(filepath.Join(dir, "missing", "f"), nil, nil); err == nil {
		t.Fatal("a write into a missing folder succeeded")
	}
}
