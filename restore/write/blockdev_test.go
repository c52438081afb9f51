package write_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cauldron-dr/cauldron/internal/testenv"
	"github.com/cauldron-dr/cauldron/restore/write"
)

// loop attaches an image file to a loop device and detaches it when the test ends.
func loop(t *testing.T, img string) string {
	t.Helper()
	return testenv.AttachLoop(t, img)
}

func TestCaptureAndRestoreBlockDevices(t *testing.T) {
	dir := t.TempDir()
	s := makeSample(t, dir, 11)
	r := newRepo(t, dir, "")
	// Capture from a block device (a loop device over the sample) as from a real disk.
	g := capture(t, r, "m", loop(t, s.Path))
	if g.Disks[0].Layout.Table != "gpt" || len(g.Disks[0].Layout.Partitions) != 3 {
		t.Fatalf("layout read from the loop device: %+v", g.Disks[0].Layout)
	}

	// A target that is a loop device over a file of garbage, beside a decoy device that must stay
	// untouched byte for byte.
	fi, _ := os.Stat(s.Path)
	garbage := bytes.Repeat([]byte("old disk "), int(fi.Size())/9+1)[:fi.Size()]
	targetImg, decoyImg := filepath.Join(dir, "target.img"), filepath.Join(dir, "decoy.img")
	writeFile(t, targetImg, garbage)
	writeFile(t, decoyImg, garbage)
	dev := loop(t, targetImg)
	loop(t, decoyImg)
	st := restore(t, r, g, dev)
	if st.Zeroed == 0 {
		t.Error("nothing zeroed on a garbage block device")
	}
	testenv.DetachLoop(dev)
	checkRestored(t, s, targetImg, dir)
	if b, _ := os.ReadFile(decoyImg); !bytes.Equal(b, garbage) {
		t.Fatal("the decoy device was written")
	}

	// A device with a mounted filesystem is refused, and nothing is written to it.
	testenv.NeedTools(t, "mkfs.ext4", "mount", "umount")
	busyImg := filepath.Join(dir, "busy.img")
	run(t, "truncate", "-s", "128M", busyImg)
	run(t, "mkfs.ext4", "-q", "-F", busyImg)
	busy := loop(t, busyImg)
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	run(t, "mount", busy, mnt)
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	before := readRange(t, busyImg, 0, 1024)
	_, err := restoreTo(r, g, busy, restoreOpts{})
	if err == nil || !strings.Contains(err.Error(), "mounted") {
		t.Fatalf("restore onto a mounted device: %v", err)
	}
	if !bytes.Equal(before, readRange(t, busyImg, 0, 1024)) {
		t.Fatal("the mounted device's first sector was written")
	}
}

func TestRestoreOntoDirtyTargetAndBigger(t *testing.T) {
	dir := t.TempDir()
	s := makeSample(t, dir, 2)
	r := newRepo(t, dir, "")
	g := capture(t, r, "db01", s.Path)
	// An existing target full of garbage: whole regions must come back exact (zeros included).
	out := filepath.Join(dir, "dirty.img")
	fi, _ := os.Stat(s.Path)
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
	writeFile(t, ext, readRange(t, big, s.ExtOff, s.ExtSize))
	run(t, "e2fsck", "-fn", ext)
	if !bytes.Equal(readRange(t, s.Path, s.RawOff, s.RawSize), readRange(t, big, s.RawOff, s.RawSize)) {
		t.Fatal("raw partition differs on the bigger target")
	}
}

// TestRefusedTargets: a device smaller than the disk, or a disk the generation does not have, is
// refused before anything is written (an image file smaller than the disk grows instead).
func TestRefusedTargets(t *testing.T) {
	dir := t.TempDir()
	s := makeSample(t, dir, 6)
	r := newRepo(t, dir, "")
	g := capture(t, r, "m1", s.Path)
	small := filepath.Join(dir, "small.img")
	writeFile(t, small, []byte(strings.Repeat("x", 1<<20)))
	dev := loop(t, small)
	if _, err := restoreTo(r, g, dev, restoreOpts{}); err == nil || !strings.Contains(err.Error(), "smaller") {
		t.Errorf("small device: %v", err)
	}
	if b, _ := os.ReadFile(small); string(b) != strings.Repeat("x", 1<<20) {
		t.Error("the small device was written")
	}
	// No gate, no write: a forgotten gate used to default to one that protects nothing.
	nogate := filepath.Join(dir, "nogate.img")
	if _, err := write.Disk(ctx, r, write.Options{Generation: g, Disk: "disk0", Target: mustTarget(t, nogate)}); err == nil || !strings.Contains(err.Error(), "no safety gate") {
		t.Fatalf("a restore without a gate: %v", err)
	}
	if _, err := os.Stat(nogate); err == nil {
		t.Fatal("a restore without a gate created its target")
	}
	grown := filepath.Join(dir, "grown.img")
	writeFile(t, grown, []byte(strings.Repeat("x", 1<<20)))
	restore(t, r, g, grown)
	checkRestored(t, s, grown, dir)
	if _, err := restoreTo(r, g, filepath.Join(dir, "x.img"), restoreOpts{disk: "disk7"}); err == nil {
		t.Error("unknown disk accepted")
	}
}
