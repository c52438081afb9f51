package tib_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cauldron-dr/cauldron/tib"
	"github.com/cauldron-dr/cauldron/tib/backend/local"
)

var ctx = context.Background()

func capture(t *testing.T, r *tib.Repository, machine string, src ...string) *tib.Generation {
	t.Helper()
	g, err := r.Capture(ctx, tib.CaptureOptions{Machine: machine, Sources: src})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func verifyClean(t *testing.T, r *tib.Repository, readData bool) {
	t.Helper()
	rep, err := r.Verify(ctx, tib.VerifyOptions{ReadData: readData})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) > 0 {
		t.Fatalf("verify found problems:\n%s", strings.Join(rep.Problems, "\n"))
	}
}

func TestCaptureRestoreIncremental(t *testing.T) {
	dir := t.TempDir()
	s := makeSample(t, dir, 1)
	r := newRepo(t, dir, "secret")
	g1 := capture(t, r, "web01", s.Path)
	if g1.Parent != nil {
		t.Fatal("first generation has a parent")
	}
	if len(g1.Disks) != 1 || len(g1.Disks[0].Regions) < 4 {
		t.Fatalf("want 1 disk with 3 partitions and gaps, got %+v", g1.Disks)
	}
	kinds := map[string]bool{}
	for _, rg := range g1.Disks[0].Regions {
		kinds[rg.Filesystem+"/"+map[bool]string{true: "whole", false: "mapped"}[rg.Whole]] = true
	}
	for _, k := range []string{"ext4/mapped", "vfat/mapped", "/whole"} {
		if !kinds[k] {
			t.Errorf("no %s region in %v", k, kinds)
		}
	}
	// Only used blocks are read: far less than the 96 MiB disk.
	if g1.Stats.UsedBytes > 40*MiB || g1.Stats.UsedBytes < 4*MiB {
		t.Errorf("used bytes %d out of the expected range", g1.Stats.UsedBytes)
	}

	// Change one file on FAT and some blocks of the raw partition, then capture again.
	f := filepath.Join(dir, "changed.dat")
	writeFile(t, f, []byte(strings.Repeat("generation two\n", 4000)))
	run(t, "mcopy", "-o", "-i", s.FatImg(), f, "::/fat1.dat")
	writeAt(t, s.Path, []byte("new raw data"), s.RawOff+4096)

	r = reopen(t, r, "secret")
	g2 := capture(t, r, "web01", s.Path)
	if g2.Parent == nil || *g2.Parent != g1.ID {
		t.Fatalf("second generation's parent = %v, want %v", g2.Parent, g1.ID)
	}
	if g2.Stats.NewBytes > g1.Stats.NewBytes/10 {
		t.Errorf("incremental stored %d bytes, first %d: want < 10%%", g2.Stats.NewBytes, g1.Stats.NewBytes)
	}
	verifyClean(t, r, true)

	out := filepath.Join(dir, "restored.img")
	readDisk(t, r, g2, "disk0", out)
	checkRestored(t, s, out, dir)

	// The first generation still restores to the first state.
	out1 := filepath.Join(dir, "restored1.img")
	readDisk(t, r, g1, "disk0", out1)
	if string(readRange(t, out1, s.RawOff+4096, 12)) == "new raw data" {
		t.Fatal("generation 1 restored generation 2's data")
	}
	run(t, "sgdisk", "-v", out1)

	gens, err := r.Generations(ctx, "web01")
	if err != nil || len(gens) != 2 {
		t.Fatalf("Generations = %d, %v", len(gens), err)
	}
}

func TestConcurrentCapturesOfTwoMachines(t *testing.T) {
	dir := t.TempDir()
	a := makeSample(t, filepath.Join(dir, "a"), 3)
	b := makeSample(t, filepath.Join(dir, "b"), 4)
	r := newRepo(t, dir, "pw")
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, src := range []string{a.Path, b.Path} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Separate Repository values, as two processes would have.
			ri := reopen(t, r, "pw")
			_, errs[i] = ri.Capture(ctx, tib.CaptureOptions{Machine: []string{"alpha", "beta"}[i], Sources: []string{src}})
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	r = reopen(t, r, "pw")
	verifyClean(t, r, true)
	for _, m := range []string{"alpha", "beta"} {
		if _, err := r.FindGeneration(ctx, m, "latest"); err != nil {
			t.Fatal(err)
		}
	}
}

func TestForgetAndPrune(t *testing.T) {
	dir := t.TempDir()
	s := makeSample(t, dir, 5)
	r := newRepo(t, dir, "")
	g1 := capture(t, r, "m", s.Path)
	writeAt(t, s.Path, content(newRand(9), 2*MiB, false), s.RawOff)
	g2 := capture(t, r, "m", s.Path)
	// Half a MiB further: g2's first cells stay needed beside unneeded ones in one pack, which
	// prune then rewrites.
	writeAt(t, s.Path, content(newRand(10), 2*MiB, false), s.RawOff+MiB/2)
	g3 := capture(t, r, "m", s.Path)
	before := dirSize(t, filepath.Join(dir, "repo", "data"))

	if err := r.Forget(ctx, g2); err != nil {
		t.Fatal(err)
	}
	// The packs were all written a moment ago: old enough for this test.
	pruneEverything(t)
	r = reopen(t, r, "")
	st, err := r.Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	after := dirSize(t, filepath.Join(dir, "repo", "data"))
	if st.BlobsRemoved == 0 || after >= before-MiB {
		t.Fatalf("prune removed %d blobs; data %d → %d bytes: want about 2 MiB less", st.BlobsRemoved, before, after)
	}
	// Freed is what the folder lost: rewritten packs count as what they were less what their
	// live blobs take again (they were counted whole).
	if st.PacksRewritten == 0 || st.BytesFreed != before-after {
		t.Fatalf("prune rewrote %d packs and says %d bytes freed; data %d → %d bytes (%d freed)", st.PacksRewritten, st.BytesFreed, before, after, before-after)
	}
	r = reopen(t, r, "")
	verifyClean(t, r, true)
	if _, err := r.FindGeneration(ctx, "m", g2.ID.String()[:12]); !errors.Is(err, tib.ErrUnknownGeneration) {
		t.Fatalf("forgotten generation still found: %v", err)
	}
	// The remaining generations restore: g3 equals the current source.
	out := filepath.Join(dir, "g3.img")
	readDisk(t, r, g3, "disk0", out)
	checkRestored(t, s, out, dir)
	readDisk(t, r, g1, "disk0", filepath.Join(dir, "g1.img"))
	// A second prune has nothing to do.
	if st, err := reopen(t, r, "").Prune(ctx); err != nil || st.BlobsRemoved != 0 {
		t.Fatalf("second prune: %+v, %v", st, err)
	}
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	s := makeSample(t, dir, 6)
	r := newRepo(t, dir, "right")
	g := capture(t, r, "m1", s.Path)
	open := func(pw string) error {
		_, err := tib.Open(ctx, local.New(r.Location()), func() ([]byte, error) { return []byte(pw), nil })
		return err
	}
	if err := open("wrong"); !errors.Is(err, tib.ErrWrongPassword) {
		t.Errorf("wrong password: %v", err)
	}
	if _, err := tib.Open(ctx, local.New(filepath.Join(dir, "nope")), nil); !errors.Is(err, tib.ErrNoRepository) {
		t.Errorf("missing repository: %v", err)
	}
	if _, err := r.FindGeneration(ctx, "nobody", "latest"); !errors.Is(err, tib.ErrUnknownMachine) || !strings.Contains(err.Error(), "m1") {
		t.Errorf("unknown machine: %v", err)
	}
	if _, err := r.FindGeneration(ctx, "m1", "ffffffff"); !errors.Is(err, tib.ErrUnknownGeneration) {
		t.Errorf("unknown generation: %v", err)
	}
	if _, err := r.NewDiskReader(ctx, g, "disk7"); err == nil || !strings.Contains(err.Error(), "disk0") {
		t.Errorf("unknown disk: %v", err)
	}
	// A source that is not a disk.
	if _, err := r.Capture(ctx, tib.CaptureOptions{Machine: "m2", Sources: []string{dir}}); err == nil || !strings.Contains(err.Error(), "not a disk") {
		t.Errorf("directory as source: %v", err)
	}
	// Files too small to be disks.
	for _, n := range []int{1, 511} {
		small := filepath.Join(dir, fmt.Sprintf("small%d.img", n))
		writeFile(t, small, make([]byte, n))
		_, err := r.Capture(ctx, tib.CaptureOptions{Machine: "m2", Sources: []string{small}})
		if want := fmt.Sprintf("source %s: not a disk (%d bytes", small, n); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("a %d-byte file as source: %v", n, err)
		}
	}
	if _, err := r.Capture(ctx, tib.CaptureOptions{Machine: "a/b", Sources: []string{s.Path}}); err == nil {
		t.Error("machine name with a slash accepted")
	}
}

func dirSize(t *testing.T, dir string) int64 {
	var n int64
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			n += info.Size()
		}
		return nil
	})
	return n
}

// TestDiskReaderWindows reads a generation's disk through windows that straddle cells, regions
// and the disk's end, and compares each with the same bytes of one whole read.
func TestDiskReaderWindows(t *testing.T) {
	dir := t.TempDir()
	s := makeSample(t, dir, 12)
	r := newRepo(t, dir, "")
	g := capture(t, r, "m", s.Path)
	whole := filepath.Join(dir, "whole.img")
	readDisk(t, r, g, "disk0", whole)
	d, err := r.NewDiskReader(ctx, g, "disk0")
	if err != nil {
		t.Fatal(err)
	}
	all, err := os.ReadFile(whole)
	if err != nil || int64(len(all)) != d.Size() {
		t.Fatalf("whole read: %d bytes of %d, %v", len(all), d.Size(), err)
	}
	rng := newRand(3)
	cell := int64(g.Disks[0].Regions[0].CellSize)
	for i := 0; i < 200; i++ {
		off := rng.Int64N(d.Size())
		if i%4 == 0 {
			off = (off/cell)*cell - 1 - rng.Int64N(3) // just before a cell boundary
		}
		off = max(off, 0)
		n := 1 + rng.Int64N(3*cell)
		buf := make([]byte, n)
		k, err := d.ReadAt(buf, off)
		want := min(n, d.Size()-off)
		if int64(k) != want || (want < n) != (err == io.EOF) || (want == n && err != nil) {
			t.Fatalf("ReadAt(%d bytes at %d) = %d, %v; want %d", n, off, k, err, want)
		}
		if !bytes.Equal(buf[:k], all[off:off+int64(k)]) {
			t.Fatalf("ReadAt(%d bytes at %d) differs from the whole read", n, off)
		}
	}
	if _, err := d.ReadAt(make([]byte, 1), d.Size()); err != io.EOF {
		t.Fatalf("read at the end: %v, want io.EOF", err)
	}
}
