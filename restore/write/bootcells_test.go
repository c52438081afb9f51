package write_test

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/cauldron-dr/cauldron/internal/testenv"
	"github.com/cauldron-dr/cauldron/partition"
	"github.com/cauldron-dr/cauldron/restore/target"
	"github.com/cauldron-dr/cauldron/restore/write"
)

// TestVerifyKnowsRewrittenBootSectors: an ESP made by mkfs.vfat on a file and copied into place
// records 0 hidden sectors. A planned restore onto a bigger disk (grow-last: the ESP keeps its
// start and size) rewrites the field to the partition's start on purpose; the verification must
// accept exactly that change (it used to report "differs from the generation in 1 chunk(s):
// bytes 1048576–…" on every try) and still catch any other change to the same cell.
func TestVerifyKnowsRewrittenBootSectors(t *testing.T) {
	testenv.NeedTools(t, "sgdisk", "mkfs.vfat", "mcopy", "mkfs.ext4", "e2fsck", "resize2fs", "losetup", "dd")
	testenv.NeedRoot(t) // growing the ext4 volume of an image goes through a loop device
	dir := t.TempDir()
	src := filepath.Join(dir, "source.img")
	run(t, "truncate", "-s", "64M", src)
	run(t, "sgdisk", "-n1:1M:+16M", "-t1:ef00", "-n2:0:+40M", "-t2:8300", src)
	esp := filepath.Join(dir, "esp.img")
	run(t, "truncate", "-s", "16M", esp)
	run(t, "mkfs.vfat", "-n", "ESP", esp)
	writeFile(t, filepath.Join(dir, "grubx64.efi"), content(newRand(1), 300000, false))
	run(t, "mcopy", "-i", esp, filepath.Join(dir, "grubx64.efi"), "::/")
	if h := binary.LittleEndian.Uint32(readRange(t, esp, 28, 4)); h != 0 {
		t.Fatalf("mkfs.vfat on a file wrote %d hidden sectors; the test needs 0", h)
	}
	run(t, "dd", "if="+esp, "of="+src, "bs=1M", "seek=1", "conv=notrunc", "status=none")
	run(t, "mkfs.ext4", "-q", "-F", "-E", "offset=17825792", src, "40M")

	r := newRepo(t, dir, "")
	g := capture(t, r, "m", src)
	disk, _ := g.Disk("disk0")
	out := filepath.Join(dir, "bigger.img")
	run(t, "truncate", "-s", "96M", out)
	tgt, err := partition.ReadTarget(out)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := partition.Plan(&disk.Layout, tgt, partition.PlanOptions{Resize: partition.ResizeGrowLast, Used: disk.UsedByPartition()})
	if err != nil {
		t.Fatal(err)
	}
	if m := plan.Moves[0]; m.NewStart != m.OldStart || m.NewSize != m.OldSize || m.Filesystem != "vfat" {
		t.Fatalf("the ESP should keep its place: %+v", m)
	}
	if _, err := restoreTo(r, g, out, restoreOpts{plan: plan, scratch: dir}); err != nil {
		t.Fatal(err)
	}
	if h := binary.LittleEndian.Uint32(readRange(t, out, 1<<20+28, 4)); h != 2048 {
		t.Fatalf("the restored ESP records %d hidden sectors, want its start, 2048", h)
	}
	verify := func() error {
		tt, err := target.New(out)
		if err != nil {
			t.Fatal(err)
		}
		_, err = write.Verify(ctx, r, write.VerifyOptions{Generation: g, Disk: "disk0", Target: tt, Plan: plan})
		return err
	}
	if err := verify(); err != nil {
		t.Fatalf("verify of a restore whose only change is the planned one: %v", err)
	}
	espOut := filepath.Join(dir, "esp.out")
	writeFile(t, espOut, readRange(t, out, 1<<20, 16<<20))
	run(t, "fsck.vfat", "-n", espOut)

	// Any other byte of the same boot sector changed is damage, named by its range.
	f, err := os.OpenFile(out, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("X"), 1<<20+3) // the OEM name
	f.Close()
	var me *write.MismatchError
	if err := verify(); !errors.As(err, &me) || len(me.Ranges) != 1 || me.Ranges[0][0] != 1<<20 {
		t.Fatalf("verify after a changed OEM name in the ESP's boot sector: %v", err)
	}
}
