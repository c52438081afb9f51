package tib_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cauldron-dr/cauldron/tib"
)

// When every fingerprint matches, a capture skips every new chunk as "maybe stored"; it must find
// them missing before it commits, read them again from the source and store them.
func TestFingerprintFalsePresentIsStored(t *testing.T) {
	dir := t.TempDir()
	s := makeSample(t, dir, 31)
	r := newRepo(t, dir, "pw")
	capture(t, r, "web", s.Path)
	writeAt(t, s.Path, content(newRand(32), 3*MiB, false), s.RawOff)
	defer tib.SetFingerprintCollide(nil)()
	r = reopen(t, r, "pw")
	g := capture(t, r, "web", s.Path)
	if g.Stats.NewChunks == 0 {
		t.Fatal("the changed chunks were not stored")
	}
	out := filepath.Join(dir, "back.img")
	readDisk(t, reopen(t, r, "pw"), g, "disk0", out)
	checkRestored(t, s, out, dir)
	verifyClean(t, reopen(t, r, "pw"), true)
}

// A chunk skipped on its fingerprint whose source bytes changed before it could be stored: the
// capture fails loudly and saves no generation.
func TestFingerprintSourceChangedFails(t *testing.T) {
	dir := t.TempDir()
	s := makeSample(t, dir, 33)
	r := newRepo(t, dir, "pw")
	capture(t, r, "web", s.Path)
	writeAt(t, s.Path, content(newRand(34), MiB, false), s.RawOff)
	defer tib.SetFingerprintCollide(func() { writeAt(t, s.Path, content(newRand(35), MiB, false), s.RawOff) })()
	r = reopen(t, r, "pw")
	_, err := r.Capture(ctx, tib.CaptureOptions{Machine: "web", Sources: []string{s.Path}})
	if err == nil || !strings.Contains(err.Error(), "changed while the capture ran") {
		t.Fatalf("capture of a source changed under it: %v", err)
	}
	gens, _ := os.ReadDir(filepath.Join(dir, "repo", "generations"))
	if len(gens) != 1 {
		t.Fatalf("%d generations stored, want only the first", len(gens))
	}
}

// A reader of one generation keeps only what it needs: another machine's chunks stay out of the
// in-memory index (its memory follows the generation, not the repository), and the whole
// index — LoadIndex — has them.
func TestReaderKeepsOnlyItsGeneration(t *testing.T) {
	dir := t.TempDir()
	web, db := makeSample(t, filepath.Join(dir, "web"), 36), makeSample(t, filepath.Join(dir, "db"), 37)
	r := newRepo(t, dir, "pw")
	gw := capture(t, r, "web", web.Path)
	capture(t, r, "db", db.Path)

	r = reopen(t, r, "pw")
	if err := r.LoadIndexFor(ctx, gw); err != nil {
		t.Fatal(err)
	}
	kept := r.Index().Len()
	all := reopen(t, r, "pw")
	if err := all.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if total := all.Index().Len(); kept == 0 || kept > total*2/3 {
		t.Fatalf("a reader of one of two machines' generations keeps %d of %d blobs", kept, total)
	}
	readDisk(t, r, gw, "disk0", filepath.Join(dir, "web-back.img"))
	checkRestored(t, web, filepath.Join(dir, "web-back.img"), dir)
}
