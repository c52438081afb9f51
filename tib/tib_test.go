package tib_test

import (
	"bytes"
	"context"
	"errors"
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

func restore(t *testing.T, r *tib.Repository, g *tib.Generation, to string) tib.RestoreStats {
	t.Helper()
	st, err := r.RestoreDisk(ctx, tib.RestoreOptions{Generation: g, Disk: "disk0", Target: to})
	if err != nil {
		t.Fatal(err)
	}
	return st
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
	g1 := capture(t, r, "web01", s.path)
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
	run(t, "mcopy", "-o", "-i", s.fatImg(), f, "::/fat1.dat")
	writeAt(t, s.path, []byte("new raw data"), s.rawOff+4096)

	r = reopen(t, r, "secret")
	g2 := capture(t, r, "web01", s.path)
	if g2.Parent == nil || *g2.Parent != g1.ID {
		t.Fatalf("second generation's parent = %v, want %v", g2.Parent, g1.ID)
	}
	if g2.Stats.NewBytes > g1.Stats.NewBytes/10 {
		t.Errorf("incremental stored %d bytes, first %d: want < 10%%", g2.Stats.NewBytes, g1.Stats.NewBytes)
	}
	verifyClean(t, r, true)

	out := filepath.Join(dir, "restored.img")
	restore(t, r, g2, out)
	checkRestored(t, s, out, dir)

	// The first generation still restores to the first state.
	out1 := filepath.Join(dir, "restored1.img")
	restore(t, r, g1, out1)
	if string(readRange(t, out1, s.rawOff+4096, 12)) == "new raw data" {
		t.Fatal("generation 1 restored generation 2's data")
	}
	run(t, "sgdisk", "-v", out1)

	gens, err := r.Generations(ctx, "web01")
	if err != nil || len(gens) != 2 {
		t.Fatalf("Generations = %d, %v", len(gens), err)
	}
}

func TestRestoreOntoDirtyTargetAndBigger(t *testing.T) {
	dir := t.TempDir()
	s := makeSample(t, dir, 2)
	r := newRepo(t, dir, "")
	g := capture(t, r, "db01", s.path)
	// An existing target full of garbage: whole regions must come back exact (zeros included).
	out := filepath.Join(dir, "dirty.img")
	fi, _ := os.Stat(s.path)
	garbage := make([]byte, fi.Size())
	for i := range garbage {
		garbage[i] = byte(i*7 + 3)
	}
	writeFile(t, out, garbage)
	st := restore(t, r, g, out)
	if st.Zeroed == 0 {
		t.Error("no bytes zeroed on a garbage target")
	}
	checkRestored(t, s, out, dir)

	// A bigger target: the GPT's backup moves to the new end (sgdisk -v clean, checked by
	// checkRestored), partitions and data as on the source.
	big := filepath.Join(dir, "big.img")
	writeFile(t, big, append(garbage, garbage[:32*MiB]...))
	restore(t, r, g, big)
	if o := run(t, "sgdisk", "-v", big); !strings.Contains(o, "No problems found") {
		t.Fatalf("sgdisk -v on the bigger target:\n%s", o)
	}
	ext := filepath.Join(dir, "big-ext")
	writeFile(t, ext, readRange(t, big, s.extOff, s.extSize))
	run(t, "e2fsck", "-fn", ext)
	if !bytes.Equal(readRange(t, s.path, s.rawOff, s.rawSize), readRange(t, big, s.rawOff, s.rawSize)) {
		t.Fatal("raw partition differs on the bigger target")
	}
}

func TestConcurrentCapturesOfTwoMachines(t *testing.T) {
	dir := t.TempDir()
	a := makeSample(t, filepath.Join(dir, "a"), 3)
	b := makeSample(t, filepath.Join(dir, "b"), 4)
	r := newRepo(t, dir, "pw")
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, src := range []string{a.path, b.path} {
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
	g1 := capture(t, r, "m", s.path)
	writeAt(t, s.path, content(newRand(9), 2*MiB, false), s.rawOff)
	g2 := capture(t, r, "m", s.path)
	writeAt(t, s.path, content(newRand(10), 2*MiB, false), s.rawOff)
	g3 := capture(t, r, "m", s.path)
	before := dirSize(t, filepath.Join(dir, "repo", "data"))

	if err := r.Forget(ctx, g2); err != nil {
		t.Fatal(err)
	}
	r = reopen(t, r, "")
	st, err := r.Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	after := dirSize(t, filepath.Join(dir, "repo", "data"))
	if st.BlobsRemoved == 0 || after >= before-MiB {
		t.Fatalf("prune removed %d blobs; data %d → %d bytes: want about 2 MiB less", st.BlobsRemoved, before, after)
	}
	r = reopen(t, r, "")
	verifyClean(t, r, true)
	if _, err := r.FindGeneration(ctx, "m", g2.ID.String()[:12]); !errors.Is(err, tib.ErrUnknownGeneration) {
		t.Fatalf("forgotten generation still found: %v", err)
	}
	// The remaining generations restore: g3 equals the current source.
	out := filepath.Join(dir, "g3.img")
	restore(t, r, g3, out)
	checkRestored(t, s, out, dir)
	restore(t, r, g1, filepath.Join(dir, "g1.img"))
	// A second prune has nothing to do.
	if st, err := reopen(t, r, "").Prune(ctx); err != nil || st.BlobsRemoved != 0 {
		t.Fatalf("second prune: %+v, %v", st, err)
	}
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	s := makeSample(t, dir, 6)
	r := newRepo(t, dir, "right")
	g := capture(t, r, "m1", s.path)
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
	// A target smaller than the disk: refused, untouched.
	small := filepath.Join(dir, "small.img")
	writeFile(t, small, []byte(strings.Repeat("x", 1<<20)))
	if _, err := r.RestoreDisk(ctx, tib.RestoreOptions{Generation: g, Disk: "disk0", Target: small}); err == nil || !strings.Contains(err.Error(), "smaller") {
		t.Errorf("small target: %v", err)
	}
	if b, _ := os.ReadFile(small); string(b) != strings.Repeat("x", 1<<20) {
		t.Error("the small target was written")
	}
	if _, err := r.RestoreDisk(ctx, tib.RestoreOptions{Generation: g, Disk: "disk7", Target: filepath.Join(dir, "x.img")}); err == nil {
		t.Error("unknown disk accepted")
	}
	// A source that is not a disk.
	if _, err := r.Capture(ctx, tib.CaptureOptions{Machine: "m2", Sources: []string{dir}}); err == nil || !strings.Contains(err.Error(), "not a disk") {
		t.Errorf("directory as source: %v", err)
	}
	if _, err := r.Capture(ctx, tib.CaptureOptions{Machine: "a/b", Sources: []string{s.path}}); err == nil {
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
