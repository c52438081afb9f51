package partition

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// Layout of an MBR or EBR sector: boot code, disk signature, four 16-byte entries, 0x55AA.
const (
	mbrBootCodeLen   = 440
	mbrSignatureOff  = 440
	mbrEntriesOff    = 446
	mbrEntrySize     = 16
	maxLogicals      = 128 // more than any real disk has; bounds a corrupt or malicious chain
	firstLogicalNum  = 5   // the kernel numbers logical partitions from 5 whatever the primaries
	mbrEntryBootFlag = 0x80
)

type mbrEntry struct {
	boot  byte
	typ   byte
	start uint32 // LBA, relative to whatever the table kind says
	count uint32 // sectors
}

// empty reports whether the entry is unused. Only the size decides, as for the kernel and sfdisk:
// an entry of type 0 ("empty") with a size is a partition to them (hybrid ISOs use one to cover
// the ISO), so it is one here too.
func (e mbrEntry) empty() bool { return e.count == 0 }

func parseMBREntries(sec []byte) [4]mbrEntry {
	var es [4]mbrEntry
	for i := range es {
		b := sec[mbrEntriesOff+i*mbrEntrySize:]
		// CHS fields (bytes 1–3, 5–7) are ignored: every tool since the 1990s writes the LBA
		// fields, and CHS cannot address past 8 GiB.
		es[i] = mbrEntry{
			boot:  b[0],
			typ:   b[4],
			start: binary.LittleEndian.Uint32(b[8:]),
			count: binary.LittleEndian.Uint32(b[12:]),
		}
	}
	return es
}

func mbrEmpty(es [4]mbrEntry) bool {
	for _, e := range es {
		if !e.empty() {
			return false
		}
	}
	return true
}

func isExtendedType(t byte) bool { return t == 0x05 || t == 0x0f || t == 0x85 }

// readMBRIdentity fills the disk signature, boot code and recognised boot loader from sector 0.
func (rd *reader) readMBRIdentity(sec0 []byte) {
	rd.d.Signature = binary.LittleEndian.Uint32(sec0[mbrSignatureOff:])
	code := sec0[:mbrBootCodeLen]
	if !allZero(code) {
		rd.d.BootCode = bytes.Clone(code)
		rd.d.Bootloader = Bootloader(code)
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// readMBR reads the four primary entries and walks the EBR chain of each extended partition.
func (rd *reader) readMBR(entries [4]mbrEntry) error {
	lss := rd.lss
	rd.meta = append(rd.meta, region{Extent{0, lss}, "MBR (sector 0)"})
	next := firstLogicalNum
	for i, e := range entries {
		if e.empty() {
			continue
		}
		p := Partition{
			Number:   i + 1,
			Kind:     KindPrimary,
			Start:    int64(e.start) * lss,
			Size:     int64(e.count) * lss,
			Type:     fmt.Sprintf("0x%02x", e.typ),
			TypeName: mbrTypeName(e.typ),
			Active:   e.boot == mbrEntryBootFlag,
		}
		if isExtendedType(e.typ) {
			p.Kind = KindExtended
		}
		rd.add(p, int64(mbrEntriesOff+i*mbrEntrySize))
	}
	// Walk after all primaries are known so that logical numbers follow the kernel's (from 5, in
	// chain order, extended partitions taken in slot order).
	for _, p := range append([]Partition(nil), rd.d.Partitions...) {
		if p.Kind != KindExtended {
			continue
		}
		if p.End() > rd.size {
			// validate would name the partition; do it before reading EBRs past the end.
			return errorf(int64(mbrEntriesOff+(p.Number-1)*mbrEntrySize),
				"extended partition %d (%s) extends past the end of the disk (%d bytes)",
				p.Number, rangeString(p.Start, p.End()), rd.size)
		}
		if err := rd.walkEBRs(p, &next); err != nil {
			return err
		}
	}
	return nil
}

// walkEBRs follows the chain of extended boot records inside the extended partition ext. Each EBR
// holds one logical partition, whose start is relative to that EBR, and a link to the next EBR,
// whose start is relative to the start of the extended partition.
func (rd *reader) walkEBRs(ext Partition, next *int) error {
	lss := rd.lss
	extStart := uint64(ext.Start / lss)
	extEnd := uint64(ext.End() / lss) // first sector after the extended partition
	seen := make(map[uint64]bool)
	ebr := extStart
	sec := make([]byte, 512)
	for first := true; ; first = false {
		off := int64(ebr) * lss
		if seen[ebr] {
			return errorf(off, "EBR chain of extended partition %d loops back to the EBR at byte %d", ext.Number, off)
		}
		if len(seen) >= maxLogicals {
			return errorf(off, "EBR chain of extended partition %d is longer than %d", ext.Number, maxLogicals)
		}
		seen[ebr] = true
		if err := rd.readAt(sec, off); err != nil {
			return err
		}
		if sec[510] != 0x55 || sec[511] != 0xAA {
			if first {
				// fdisk leaves an empty extended partition with a zeroed first sector; the kernel
				// stops silently at a missing signature too.
				if !allZero(sec) {
					rd.warn("extended partition %d has no EBR signature at byte %d: no logical partitions read", ext.Number, off)
				}
				return nil
			}
			return errorf(off, "EBR at byte %d (linked from the chain of extended partition %d) has no 0x55AA signature", off, ext.Number)
		}
		rd.meta = append(rd.meta, region{Extent{off, lss}, fmt.Sprintf("EBR at byte %d", off)})
		es := parseMBREntries(sec)
		if !es[2].empty() || !es[3].empty() {
			// Only the first two entries of an EBR are defined; DOS-era tools left garbage in the
			// others, which the kernel also skips.
			rd.warn("EBR at byte %d has entries in slots 3–4; they are ignored", off)
		}
		var link *mbrEntry
		for slot := 0; slot < 2; slot++ {
			e := es[slot]
			entryOff := off + int64(mbrEntriesOff+slot*mbrEntrySize)
			if e.empty() {
				continue
			}
			if isExtendedType(e.typ) {
				if link != nil {
					return errorf(entryOff, "EBR at byte %d has two links to a next EBR", off)
				}
				link = &es[slot]
				continue
			}
			if *next-firstLogicalNum >= maxLogicals {
				return errorf(entryOff, "more than %d logical partitions", maxLogicals)
			}
			start := ebr + uint64(e.start)
			end := start + uint64(e.count)
			if e.start == 0 {
				return errorf(entryOff, "logical partition %d starts on its own EBR at byte %d", *next, off)
			}
			if end > extEnd {
				return errorf(entryOff, "logical partition %d (%s) in the EBR at byte %d lies outside extended partition %d (%s)",
					*next, rangeString(int64(start)*lss, int64(end)*lss), off, ext.Number, rangeString(ext.Start, ext.End()))
			}
			rd.add(Partition{
				Number:   *next,
				Kind:     KindLogical,
				Start:    int64(start) * lss,
				Size:     int64(e.count) * lss,
				Type:     fmt.Sprintf("0x%02x", e.typ),
				TypeName: mbrTypeName(e.typ),
				Active:   e.boot == mbrEntryBootFlag,
			}, entryOff)
			*next++
		}
		if link == nil {
			return nil
		}
		nextEBR := extStart + uint64(link.start)
		if nextEBR >= extEnd {
			return errorf(off, "EBR at byte %d links to the next EBR at byte %d, outside extended partition %d (%s)",
				off, int64(nextEBR)*lss, ext.Number, rangeString(ext.Start, ext.End()))
		}
		ebr = nextEBR
	}
}

// mbrTypeName names the common MBR partition types (names as fdisk shows them, shortened).
func mbrTypeName(t byte) string {
	switch t {
	case 0x00:
		return "Empty"
	case 0x01:
		return "FAT12"
	case 0x04, 0x06, 0x0e:
		return "FAT16"
	case 0x05, 0x0f, 0x85:
		return "Extended"
	case 0x07:
		return "NTFS/exFAT"
	case 0x0b, 0x0c:
		return "FAT32"
	case 0x11, 0x14, 0x16, 0x1b, 0x1c, 0x1e:
		return "Hidden FAT"
	case 0x12:
		return "Compaq diagnostics"
	case 0x17:
		return "Hidden NTFS"
	case 0x27:
		return "Windows recovery"
	case 0x42:
		return "Windows dynamic"
	case 0x82:
		return "Linux swap"
	case 0x83:
		return "Linux"
	case 0x8e:
		return "Linux LVM"
	case 0xa5:
		return "FreeBSD"
	case 0xa6:
		return "OpenBSD"
	case 0xa9:
		return "NetBSD"
	case 0xaf:
		return "Apple HFS/HFS+"
	case 0xde:
		return "Dell utility"
	case 0xee:
		return "GPT protective"
	case 0xef:
		return "EFI System"
	case 0xfb:
		return "VMware VMFS"
	case 0xfd:
		return "Linux RAID"
	}
	return ""
}

// Bootloader names the boot loader whose MBR code is in bootCode (bytes 0–439 of sector 0), from
// the messages each one carries; "" when none is recognised. Best effort: the code is only the
// first stage, and any tool can write any bytes there.
func Bootloader(bootCode []byte) string {
	has := func(s string) bool { return bytes.Contains(bootCode, []byte(s)) }
	switch {
	case has("GRUB") && has("Geom"):
		// GRUB 2's boot.img. GRUB legacy's stage1 carries the same messages and is not told apart.
		return "grub2"
	case has("LILO"):
		return "lilo"
	case has("isolinux.bin missing"):
		// isohdpfx.bin / isohdppx.bin, the MBR of isohybrid images.
		return "isolinux"
	case has("SYSLINUX"),
		has("Operating system load error"),          // mbr.bin, altmbr.bin
		has("Missing OS") && has("Multiple active"): // gptmbr.bin
		return "syslinux"
	case has("Invalid partition table") && has("Error loading operating system"),
		has("BOOTMGR"), has("Bootmgr"):
		// The Windows MBR (the same three messages since NT; the code then loads the volume's
		// boot sector, which loads BOOTMGR).
		return "windows"
	}
	return ""
}
