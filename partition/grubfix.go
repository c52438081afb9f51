package partition

import (
	"encoding/binary"
	"fmt"
)

// GRUB's BIOS boot on a GPT disk: boot.img in sector 0 loads core.img from the BIOS boot
// partition by absolute sector number (a 64-bit LBA at boot.img's byte 0x5C), and core.img's first
// sector (diskboot.img) lists the rest of core.img as absolute blocklists. When a plan moves the
// partition holding core.img, both must follow or the disk stops booting by BIOS. On MBR disks
// core.img lives in the gap before the first partition, which restore copies to the same offsets,
// so nothing moves there.

const (
	grubKernelSector = 0x5C  // boot.img: LBA of core.img's first sector
	grubListEnd      = 0x200 // diskboot.img: blocklists run backwards from the sector's end
	grubListSize     = 12    // start (8), length in sectors (2), load segment (2)
)

// FixGRUBCore rewrites GRUB's pointers to core.img on the disk in rw (sector size lss, the table
// already written) when core.img lies in a data partition that moves (by the moves, with the
// source's sector size srcLSS). It does nothing, and reports false, when sector 0 holds no GRUB
// boot.img or core.img did not lie in a moved partition. A sector size change is not handled
// (restore warns that BIOS boot code cannot follow it).
func FixGRUBCore(rw DiskReadWriter, lss, srcLSS int64, moves []Move) (bool, error) {
	if lss != srcLSS {
		return false, nil
	}
	mbr := make([]byte, 512)
	if _, err := rw.ReadAt(mbr, 0); err != nil {
		return false, fmt.Errorf("grub: reading sector 0: %w", err)
	}
	if Bootloader(mbr[:mbrBootCodeLen]) != "grub2" {
		return false, nil
	}
	kernel := int64(binary.LittleEndian.Uint64(mbr[grubKernelSector:]))
	shift := func(lba int64) (int64, bool) {
		for _, m := range moves {
			if m.Kind == KindExtended || m.NewStart == m.OldStart {
				continue
			}
			if b := lba * lss; b >= m.OldStart && b < m.OldStart+min(m.OldSize, m.NewSize) {
				return lba + (m.NewStart-m.OldStart)/lss, true
			}
		}
		return lba, false
	}
	nk, moved := shift(kernel)
	if !moved {
		return false, nil
	}
	// diskboot.img, already restored at its new place.
	db := make([]byte, 512)
	if _, err := rw.ReadAt(db, nk*lss); err != nil {
		return false, fmt.Errorf("grub: reading core.img's first sector at LBA %d: %w", nk, err)
	}
	for off := grubListEnd - grubListSize; off >= grubListSize; off -= grubListSize {
		start := int64(binary.LittleEndian.Uint64(db[off:]))
		n := binary.LittleEndian.Uint16(db[off+8:])
		if n == 0 {
			break
		}
		ns, ok := shift(start)
		if !ok {
			return false, fmt.Errorf("grub: core.img's blocklist names sectors %d–%d, outside the partition that holds its first sector", start, start+int64(n)-1)
		}
		binary.LittleEndian.PutUint64(db[off:], uint64(ns))
	}
	if _, err := rw.WriteAt(db, nk*lss); err != nil {
		return false, fmt.Errorf("grub: writing core.img's first sector: %w", err)
	}
	binary.LittleEndian.PutUint64(mbr[grubKernelSector:], uint64(nk))
	if _, err := rw.WriteAt(mbr[grubKernelSector:grubKernelSector+8], grubKernelSector); err != nil {
		return false, fmt.Errorf("grub: writing boot.img's core.img sector: %w", err)
	}
	return true, nil
}
