package target_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cauldron-dr/cauldron/restore/target"
)

func TestNewNamesTheKind(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	os.WriteFile(img, make([]byte, 4096), 0o644)
	for _, c := range []struct {
		path   string
		kind   target.Kind
		exists bool
		err    string
	}{
		{filepath.Join(dir, "new.img"), target.KindImageFile, false, ""},
		{img, target.KindImageFile, true, ""},
		{dir, "", false, "is a directory"},
		{"/dev/null", "", false, "neither a block device nor an image file"},
		{"", "", false, "no path"},
	} {
		tg, err := target.New(c.path)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("New(%q) = %v, want an error saying %q", c.path, err, c.err)
			}
			continue
		}
		if err != nil || tg.Kind() != c.kind || tg.Exists() != c.exists || tg.Name() != c.path {
			t.Errorf("New(%q) = %v (%v, exists %v), %v", c.path, tg, tg.Kind(), tg.Exists(), err)
		}
	}
}

// TestImageFileGate: a new image only in an existing folder outside every protected path; an
// existing one not while another process holds it.
func TestImageFileGate(t *testing.T) {
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	os.Mkdir(repo, 0o755)
	g := &target.Gate{Protect: []string{repo}}
	for _, c := range []struct{ path, want string }{
		{filepath.Join(repo, "x.img"), "never be written"},
		{filepath.Join(repo, "sub", "x.img"), "does not exist"},
		{filepath.Join(dir, "nofolder", "x.img"), "does not exist"},
	} {
		tg, err := target.New(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if err := g.Check(tg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("gate on %s: %v, want %q", c.path, err, c.want)
		}
	}
	// Through a symlink to the protected folder too.
	link := filepath.Join(dir, "link")
	os.Symlink(repo, link)
	tg, _ := target.New(filepath.Join(link, "x.img"))
	var ref *target.Refusal
	if err := g.Check(tg); !errors.As(err, &ref) {
		t.Errorf("gate on an image through a symlink into the repository: %v", err)
	}

	img := filepath.Join(dir, "ok.img")
	tg, _ = target.New(img)
	if err := g.Check(tg); err != nil {
		t.Fatalf("gate on a new image beside the repository: %v", err)
	}
	w, err := tg.Open(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	if !w.Fresh() || w.Size() != 1<<20 {
		t.Errorf("a new image: fresh %v, size %d", w.Fresh(), w.Size())
	}
	// While it is open for writing, another restore (or a capture) cannot have it.
	again, _ := target.New(img)
	if err := g.Check(again); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Errorf("gate on an image being written: %v", err)
	}
	if _, err := again.Open(1 << 20); err == nil {
		t.Error("a second writer opened the image")
	}
	w.Close()
	if err := g.Check(again); err != nil {
		t.Errorf("gate once the writer closed: %v", err)
	}
}

// TestImageFileWriter: an image smaller than the disk grows to take it; Zero leaves zeros (a hole
// where the filesystem can punch one); Section keeps writes inside their partition.
func TestImageFileWriter(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "old.img")
	old := bytes.Repeat([]byte("old disk "), 1<<17)
	os.WriteFile(img, old, 0o644)
	tg, _ := target.New(img)
	if _, err := tg.Open(int64(len(old))); err == nil || !strings.Contains(err.Error(), "not checked") {
		t.Fatalf("open before the gate: %v", err)
	}
	if err := tg.Check(&target.Gate{}); err != nil {
		t.Fatal(err)
	}
	w, err := tg.Open(int64(len(old)) + 4096)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(img); w.Size() != int64(len(old))+4096 || !bytes.Equal(b, append(append([]byte(nil), old...), make([]byte, 4096)...)) {
		t.Fatalf("an image smaller than the disk: %d bytes after Open, want it extended with zeros", w.Size())
	}
	w.Close()
	w, err = tg.Open(int64(len(old)))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if w.Fresh() {
		t.Error("an image with data called fresh")
	}
	if err := w.Zero(4096, 65536); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(old)+4096)
	w.ReadAt(got, 0)
	want := append(append([]byte(nil), old...), make([]byte, 4096)...)
	clear(want[4096 : 4096+65536])
	if !bytes.Equal(got, want) {
		t.Fatal("Zero changed other bytes or left data")
	}
	part := target.Section(w, 8192, 4096)
	if _, err := part.WriteAt(make([]byte, 10), 4090); err == nil {
		t.Error("a write across the partition's end was allowed")
	}
	if _, err := part.WriteAt([]byte("inside"), 0); err != nil {
		t.Fatal(err)
	}
	w.ReadAt(got[:6], 8192)
	if string(got[:6]) != "inside" {
		t.Errorf("section write landed elsewhere: %q", got[:6])
	}
}

// TestTargetSwappedAfterCheck: what is opened must be what the gate judged. An image replaced by
// a symlink to a protected file after the check, or a new image's path taken by a symlink after
// the plan, is refused and the file behind it left alone.
func TestTargetSwappedAfterCheck(t *testing.T) {
	dir := t.TempDir()
	precious := filepath.Join(dir, "repository.img")
	os.WriteFile(precious, []byte("the repository's filesystem"), 0o644)
	img := filepath.Join(dir, "target.img")
	os.WriteFile(img, make([]byte, 4096), 0o644)
	g := &target.Gate{Protect: []string{precious}}
	tg, _ := target.New(img)
	if err := tg.Check(g); err != nil {
		t.Fatal(err)
	}
	os.Remove(img)
	os.Symlink(precious, img)
	if _, err := tg.Open(4096); err == nil || !strings.Contains(err.Error(), "no longer the file") {
		t.Fatalf("open after the path was swapped for a symlink: %v", err)
	}
	newImg := filepath.Join(dir, "new.img")
	nt, _ := target.New(newImg)
	if err := nt.Check(g); err != nil {
		t.Fatal(err)
	}
	os.Symlink(precious, newImg)
	if _, err := nt.Open(4096); err == nil || !strings.Contains(err.Error(), "appeared") {
		t.Fatalf("open of a new image whose path became a symlink: %v", err)
	}
	if b, _ := os.ReadFile(precious); string(b) != "the repository's filesystem" {
		t.Fatal("the protected file was written")
	}
	// A hard link to the protected file is the protected file; an image with another name at
	// all is refused too (the gate cannot know every name a protected image may have).
	hard := filepath.Join(dir, "hard.img")
	os.Link(precious, hard)
	ht, _ := target.New(hard)
	if err := ht.Check(g); err == nil || !strings.Contains(err.Error(), "protected path") {
		t.Fatalf("gate on a hard link to a protected file: %v", err)
	}
	other := filepath.Join(dir, "other.img")
	os.WriteFile(other, make([]byte, 4096), 0o644)
	os.Link(other, filepath.Join(dir, "other-name.img"))
	ot, _ := target.New(other)
	if err := ot.Check(g); err == nil || !strings.Contains(err.Error(), "hard links") {
		t.Fatalf("gate on an image with two names: %v", err)
	}
	// A disk that is not there is not a new file in /dev.
	if _, err := target.New("/dev/cauldron-no-such-disk"); err == nil || !strings.Contains(err.Error(), "no such device") {
		t.Fatalf("a missing device: %v", err)
	}
}
