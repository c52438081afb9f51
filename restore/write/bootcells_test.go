package write_test

import (
	"bytes"
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

// TestVerifyKnowsMovedGRUBCore: GRUB's core.img in a BIOS boot partition that a plan moves gets
// its blocklists rewritten (FixGRUBCore) with the partition's new place; the verification must
// accept exactly that (it used to fail every planned restore of such a disk with "differs from
// the generation in 1 chunk(s)") and still catch anything else changed in that sector.
func TestVerifyKnowsMovedGRUBCore(t *testing.T) {
	testenv.NeedTools(t, "sgdisk", "mkfs.ext4", "e2fsck", "resize2fs", "losetup")
	testenv.NeedRoot(t)
	boot, err := os.ReadFile("/usr/lib/grub/i386-pc/boot.img")
	if err != nil {
		testenv.SkipOrFail(t, "GRUB's boot.img (grub-pc-bin): %v", err)
	}
	diskboot, err := os.ReadFile("/usr/lib/grub/i386-pc/diskboot.img")
	if err != nil {
		testenv.SkipOrFail(t, "GRUB's diskboot.img (grub-pc-bin): %v", err)
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "source.img")
	run(t, "truncate", "-s", "24M", src)
	run(t, "sgdisk", "-n1:1M:+16M", "-t1:8300", "-n2:0:+1M", "-t2:ef02", src)
	run(t, "mkfs.ext4", "-q", "-F", "-E", "offset=1048576", src, "16M")
	const coreLBA = 17 << 20 / 512
	mbr := append([]byte(nil), boot[:440]...)
	binary.LittleEndian.PutUint64(mbr[0x5C:], coreLBA)
	db := append([]byte(nil), diskboot...)
	binary.LittleEndian.PutUint64(db[0x1F4:], coreLBA+1) // the rest of core.img: 60 sectors after it
	binary.LittleEndian.PutUint16(db[0x1FC:], 60)
	core := content(newRand(4), 61*512, false)
	copy(core, db)
	f, err := os.OpenFile(src, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt(mbr, 0)
	f.WriteAt(core, coreLBA*512)
	f.Close()

	r := newRepo(t, dir, "")
	g := capture(t, r, "m", src)
	disk, _ := g.Disk("disk0")
	// A used disk: what the generation holds as zeros must be zeros on it afterwards.
	out := filepath.Join(dir, "bigger.img")
	writeFile(t, out, bytes.Repeat([]byte{0xAA}, 128<<20))
	tgt, err := partition.ReadTarget(out)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := partition.Plan(&disk.Layout, tgt, partition.PlanOptions{Resize: partition.ResizeProportional, Used: disk.UsedByPartition()})
	if err != nil {
		t.Fatal(err)
	}
	m := plan.Moves[1]
	if m.NewStart == m.OldStart {
		t.Fatalf("the BIOS boot partition should move: %+v", m)
	}
	verify := func(beforeGrow bool) error {
		_, err = write.Verify(ctx, r, write.VerifyOptions{Generation: g, Disk: "disk0", Target: mustTarget(t, out), Plan: plan, BeforeGrow: beforeGrow})
		return err
	}
	// The restore itself verifies before growing ext4, as the engine does.
	if _, err := write.Disk(ctx, r, write.Options{Generation: g, Disk: "disk0", Target: mustTarget(t, out), Gate: &target.Gate{}, Plan: plan, Scratch: dir,
		BeforeGrow: func() error { return verify(true) }}); err != nil {
		t.Fatalf("restore with its verification: %v", err)
	}
	newLBA := m.NewStart / 512
	if got := binary.LittleEndian.Uint64(readRange(t, out, 0x5C, 8)); got != uint64(newLBA) {
		t.Fatalf("boot.img points at LBA %d, want %d", got, newLBA)
	}
	if got := binary.LittleEndian.Uint64(readRange(t, out, newLBA*512+0x1F4, 8)); got != uint64(newLBA+1) {
		t.Fatalf("core.img's blocklist starts at %d, want %d", got, newLBA+1)
	}
	// A byte in the BIOS boot partition's all-zero cells (not stored, zeroed by the restore) is
	// damage too.
	zeroAt := m.NewStart + 512<<10
	if b := readRange(t, out, zeroAt, 1); b[0] != 0 {
		t.Fatalf("the restore left the old disk's byte %#x in a cell the generation holds as zeros", b[0])
	}
	f, _ = os.OpenFile(out, os.O_RDWR, 0)
	f.WriteAt([]byte{0xAA}, zeroAt)
	f.Close()
	var zme *write.MismatchError
	if err := verify(false); !errors.As(err, &zme) || len(zme.Ranges) != 1 || zme.Ranges[0][0] > zeroAt || zme.Ranges[0][1] <= zeroAt {
		t.Fatalf("verify after a byte written into a zero cell: %v", err)
	}
	f, _ = os.OpenFile(out, os.O_RDWR, 0)
	f.WriteAt([]byte{0}, zeroAt)
	f.Close()

	// Any other byte of that sector changed is damage.
	f, _ = os.OpenFile(out, os.O_RDWR, 0)
	f.WriteAt([]byte{0x90}, newLBA*512+5)
	f.Close()
	var me *write.MismatchError
	if err := verify(false); !errors.As(err, &me) || len(me.Ranges) != 1 || me.Ranges[0][0] > newLBA*512 || me.Ranges[0][1] <= newLBA*512 {
		t.Fatalf("verify after a changed byte of core.img's first sector: %v", err)
	}
}

func mustTarget(t *testing.T, path string) target.Target {
	t.Helper()
	tt, err := target.New(path)
	if err != nil {
		t.Fatal(err)
	}
	return tt
}
