package partition

import (
	"bytes"
	"encoding/binary"
	"os"
	"testing"
)

// TestFixGRUBCore: GRUB's boot.img (as grub-pc-bin ships it) points at core.img in a BIOS boot
// partition that the plan moves by 2 MiB; the pointer in sector 0 and core.img's blocklist must
// move with it, and nothing else may change.
func TestFixGRUBCore(t *testing.T) {
	boot := needFile(t, "/usr/lib/grub/i386-pc/boot.img", "grub-pc-bin")
	diskboot := needFile(t, "/usr/lib/grub/i386-pc/diskboot.img", "grub-pc-bin")
	const oldLBA, newLBA = 2048, 6144 // 1 MiB and 3 MiB in 512-byte sectors
	mk := func(kernel int64) string {
		img := newImage(t, "disk.img", 16*MiB)
		mbr := append([]byte(nil), boot[:mbrBootCodeLen]...)
		binary.LittleEndian.PutUint64(mbr[grubKernelSector:], uint64(kernel))
		writeAt(t, img, 0, mbr)
		// core.img's first sector, already restored at its new place, still naming the old
		// sectors: the rest of core.img in two runs.
		db := append([]byte(nil), diskboot...)
		binary.LittleEndian.PutUint64(db[0x1F4:], oldLBA+1)
		binary.LittleEndian.PutUint16(db[0x1FC:], 40)
		binary.LittleEndian.PutUint64(db[0x1E8:], oldLBA+41)
		binary.LittleEndian.PutUint16(db[0x1F0:], 20)
		writeAt(t, img, newLBA*512, db)
		return img
	}
	moves := []Move{{Number: 1, Kind: KindPrimary, OldStart: MiB, OldSize: MiB, NewStart: 3 * MiB, NewSize: MiB},
		{Number: 2, Kind: KindPrimary, OldStart: 2 * MiB, OldSize: 8 * MiB, NewStart: 4 * MiB, NewSize: 8 * MiB}}
	img := mk(oldLBA)
	before := readFileAt(t, img, 0, 512)
	rw := openRW(t, img)
	moved, err := FixGRUBCore(rw, 512, 512, moves)
	if err != nil || !moved {
		t.Fatalf("FixGRUBCore: %v, %v", moved, err)
	}
	after := readFileAt(t, img, 0, 512)
	if k := binary.LittleEndian.Uint64(after[grubKernelSector:]); k != newLBA {
		t.Errorf("boot.img points at LBA %d, want %d", k, newLBA)
	}
	binary.LittleEndian.PutUint64(after[grubKernelSector:], oldLBA)
	if !bytes.Equal(after, before) {
		t.Error("sector 0 changed beyond the core.img pointer")
	}
	db := readFileAt(t, img, newLBA*512, 512)
	if a, b := binary.LittleEndian.Uint64(db[0x1F4:]), binary.LittleEndian.Uint64(db[0x1E8:]); a != newLBA+1 || b != newLBA+41 {
		t.Errorf("core.img blocklists start at %d and %d, want %d and %d", a, b, newLBA+1, newLBA+41)
	}
	if !bytes.Equal(db[:0x1E8], diskboot[:0x1E8]) {
		t.Error("diskboot.img's code changed")
	}

	// Nothing moves: no change. A sector size change: not handled here (restore warns).
	for _, c := range []struct {
		moves    []Move
		lss, src int64
	}{{[]Move{{Number: 1, OldStart: MiB, OldSize: MiB, NewStart: MiB, NewSize: MiB}}, 512, 512}, {moves, 4096, 512}} {
		img := mk(oldLBA)
		before := readFileAt(t, img, 0, 512)
		if moved, err := FixGRUBCore(openRW(t, img), c.lss, c.src, c.moves); err != nil || moved {
			t.Errorf("FixGRUBCore with %+v: %v, %v", c, moved, err)
		}
		if !bytes.Equal(readFileAt(t, img, 0, 512), before) {
			t.Error("sector 0 changed though nothing moved")
		}
	}
}

func openRW(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}
