package main

import (
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cauldron-dr/cauldron/internal/testenv"
)

// restore-disk plans by itself when the target differs from the captured disk: a bigger image
// gets the layout planned, printed and applied and its ext4 grown; --dry-run writes nothing; a
// target too small for the data is refused before anything is written.
func TestRestoreDiskPlans(t *testing.T) {
	testenv.NeedTools(t, "sgdisk", "e2fsck", "resize2fs", "dumpe2fs", "losetup")
	testenv.NeedRoot(t) // growing a restored filesystem in an image needs a loop device
	dir := t.TempDir()
	img := makeDisk(t, dir, 24, 5)
	repo := filepath.Join(dir, "repo")
	env := []string{"CAULDRON_PASSWORD="}
	ok(t, env, "init", "--repo", repo, "--no-password")
	ok(t, env, "capture", "--repo", repo, "--machine", "m", img)

	target := filepath.Join(dir, "bigger.img")
	sparse(t, target, 64<<20)
	hash := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%x", sha256.Sum256(b))
	}
	empty := hash(target)
	out := ok(t, env, "restore-disk", "--repo", repo, "--machine", "m", "--to", target, "--dry-run")
	if !strings.Contains(out, "plan: disk0 of m") || !strings.Contains(out, "grow ext4") || !strings.Contains(out, "dry run: nothing written") {
		t.Fatalf("restore-disk --dry-run onto a bigger target:\n%s", out)
	}
	if hash(target) != empty {
		t.Fatal("--dry-run wrote to the target")
	}

	out = ok(t, env, "restore-disk", "--repo", repo, "--machine", "m", "--to", target, "--yes")
	if !strings.Contains(out, "partition 1: ext4 grown") {
		t.Fatalf("restore-disk onto a bigger target:\n%s", out)
	}
	sgdiskClean(t, target)
	// The partition now ends 1 MiB before the disk's end (the backup GPT's MiB, aligned).
	start, size := int64(1<<20), int64(62<<20)
	e2 := fmt.Sprintf("%s?offset=%d", target, start)
	mustRun(t, "e2fsck", "-fn", e2)
	dump, err := exec.Command("dumpe2fs", "-h", e2).Output()
	if err != nil {
		t.Fatal(err)
	}
	var count, bs int64
	for _, l := range strings.Split(string(dump), "\n") {
		if v, ok := strings.CutPrefix(l, "Block count:"); ok {
			count, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
		if v, ok := strings.CutPrefix(l, "Block size:"); ok {
			bs, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	if count*bs != size {
		t.Fatalf("ext4 is %d×%d bytes after restore onto the bigger disk, want the partition's %d", count, bs, size)
	}

	// An existing image smaller than the disk, without --resize, is extended and takes the disk
	// byte for byte (the engine's rule for image files); without --yes it is not touched.
	small := filepath.Join(dir, "small.img")
	sparse(t, small, 12<<20)
	before := hash(small)
	if _, errs, code := cauldron(t, env, "restore-disk", "--repo", repo, "--machine", "m", "--to", small); code == 0 || !strings.Contains(errs, "--yes") || hash(small) != before {
		t.Fatalf("restore-disk onto an existing image without --yes: exit %d %s", code, errs)
	}
	grown := filepath.Join(dir, "grown.img")
	sparse(t, grown, 12<<20)
	if out := ok(t, env, "restore-disk", "--repo", repo, "--machine", "m", "--to", grown, "--yes"); !strings.Contains(out, "byte for byte") {
		t.Fatalf("restore-disk onto a smaller image:\n%s", out)
	}
	if fi, _ := os.Stat(grown); fi.Size() != 26<<20 {
		t.Fatalf("the smaller image is %d bytes after the restore, want the disk's %d", fi.Size(), 26<<20)
	}
	sgdiskClean(t, grown)

	// Planned onto it (--resize): too small for the data: refused, naming the volume and the
	// bytes missing; untouched.
	stdout, stderr, code := cauldron(t, env, "restore-disk", "--repo", repo, "--machine", "m", "--to", small, "--resize", "proportional", "--yes")
	if code == 0 || !strings.Contains(stdout+stderr, "partition 1 (ext4) holds") || !strings.Contains(stdout+stderr, "more bytes") {
		t.Fatalf("restore-disk onto a target too small: exit %d\n%s%s", code, stdout, stderr)
	}
	if hash(small) != before {
		t.Fatal("the refused target was written")
	}
}

// TestRestoreDiskPartial: restore-disk over a damaged pack stops, naming the bytes; with
// --partial it restores the rest, names each damaged range, and exits with status 3.
func TestRestoreDiskPartial(t *testing.T) {
	dir := t.TempDir()
	img := makeDisk(t, dir, 16, 8)
	repo := filepath.Join(dir, "repo")
	env := []string{"CAULDRON_PASSWORD="}
	ok(t, env, "init", "--repo", repo, "--no-password")
	ok(t, env, "capture", "--repo", repo, "--machine", "m", img)
	// The largest pack holds data (the generation's own metadata pack is small, and damage to it
	// alone hits no restore).
	packs, _ := filepath.Glob(filepath.Join(repo, "data", "*", "*"))
	largest, size := "", int64(0)
	for _, p := range packs {
		if fi, err := os.Stat(p); err == nil && fi.Size() > size {
			largest, size = p, fi.Size()
		}
	}
	if largest == "" {
		t.Fatal("no packs")
	}
	b, _ := os.ReadFile(largest)
	b[len(b)/2] ^= 0x40
	os.WriteFile(largest, b, 0o644)
	out := filepath.Join(dir, "out.img")
	if _, errs, code := cauldron(t, env, "restore-disk", "--repo", repo, "--machine", "m", "--to", out); code == 0 || !strings.Contains(errs, "bytes") {
		t.Fatalf("restore-disk over a damaged pack: exit %d\n%s", code, errs)
	}
	os.Remove(out)
	os.Remove(out + ".cauldron-journal")
	stdout, errs, code := cauldron(t, env, "restore-disk", "--repo", repo, "--machine", "m", "--to", out, "--partial")
	if code != 3 || !strings.Contains(stdout, "DAMAGED, left as zeros: bytes") || !strings.Contains(errs, "damaged in the repository") {
		t.Fatalf("restore-disk --partial: exit %d\n%s%s", code, stdout, errs)
	}
}
