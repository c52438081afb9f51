package partition

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"strings"
	"unicode/utf16"
)

const (
	gptSignature     = "EFI PART"
	gptMinHeaderSize = 92 // the fields UEFI defines; the rest of the sector is reserved
	gptMinEntrySize  = 128
	gptNameOffset    = 56 // in an entry
	gptNameLen       = 72 // bytes: 36 UTF-16 code units
	// gptMaxArrayBytes bounds the partition entry array a header may ask for. Real arrays are
	// 16 KiB (128 entries of 128 bytes); the bound keeps a corrupt header from making Read
	// allocate gigabytes.
	gptMaxArrayBytes = 4 << 20
)

// gptHeader is a parsed, CRC-checked GPT header with its CRC-checked entry array.
type gptHeader struct {
	myLBA, alternateLBA      uint64
	firstUsable, lastUsable  uint64
	diskGUID                 []byte
	entriesLBA               uint64
	entryCount, entrySize    uint32
	arrayCRC                 uint32
	array                    []byte // entryCount*entrySize bytes
	arraySectors             uint64
	arrayOffset, headerBytes int64 // byte offsets of the array and header on the disk
}

// readGPTHeader reads and checks the GPT header at lba. The error says what is wrong with it in
// words a user can act on; the caller decides whether that is fatal.
func (rd *reader) readGPTHeader(lba uint64) (*gptHeader, error) {
	if lba >= rd.sectors {
		return nil, fmt.Errorf("LBA %d is past the end of the disk", lba)
	}
	off := int64(lba) * rd.lss
	b := make([]byte, rd.lss)
	if err := rd.readAt(b, off); err != nil {
		return nil, err
	}
	if string(b[:8]) != gptSignature {
		return nil, fmt.Errorf("no %q signature", gptSignature)
	}
	hsize := binary.LittleEndian.Uint32(b[12:])
	if hsize < gptMinHeaderSize || int64(hsize) > rd.lss {
		return nil, fmt.Errorf("header size %d is not between %d and the sector size %d", hsize, gptMinHeaderSize, rd.lss)
	}
	stored := binary.LittleEndian.Uint32(b[16:])
	hdr := bytes.Clone(b[:hsize])
	clear(hdr[16:20]) // the CRC is computed with its own field zeroed
	if got := crc32.ChecksumIEEE(hdr); got != stored {
		return nil, fmt.Errorf("header CRC32 mismatch (stored %08x, computed %08x)", stored, got)
	}
	h := &gptHeader{
		myLBA:        binary.LittleEndian.Uint64(b[24:]),
		alternateLBA: binary.LittleEndian.Uint64(b[32:]),
		firstUsable:  binary.LittleEndian.Uint64(b[40:]),
		lastUsable:   binary.LittleEndian.Uint64(b[48:]),
		diskGUID:     bytes.Clone(b[56:72]),
		entriesLBA:   binary.LittleEndian.Uint64(b[72:]),
		entryCount:   binary.LittleEndian.Uint32(b[80:]),
		entrySize:    binary.LittleEndian.Uint32(b[84:]),
		arrayCRC:     binary.LittleEndian.Uint32(b[88:]),
		headerBytes:  off,
	}
	if h.myLBA != lba {
		return nil, fmt.Errorf("header says it is at LBA %d but was read from LBA %d", h.myLBA, lba)
	}
	// UEFI: the entry size is 128 × 2^n.
	if h.entrySize < gptMinEntrySize || h.entrySize%gptMinEntrySize != 0 || (h.entrySize/gptMinEntrySize)&(h.entrySize/gptMinEntrySize-1) != 0 {
		return nil, fmt.Errorf("partition entry size %d is not 128 × 2^n", h.entrySize)
	}
	arrayBytes := uint64(h.entryCount) * uint64(h.entrySize)
	if arrayBytes > gptMaxArrayBytes {
		return nil, fmt.Errorf("partition entry array of %d × %d bytes is larger than %d bytes", h.entryCount, h.entrySize, gptMaxArrayBytes)
	}
	// A usable range past the end of the disk is not refused here: an image cut short or a disk
	// cloned to a smaller one keeps a valid header, and readGPT says what happened.
	if h.lastUsable == math.MaxUint64 || h.firstUsable > h.lastUsable+1 {
		return nil, fmt.Errorf("usable LBAs %d–%d are not a range", h.firstUsable, h.lastUsable)
	}
	h.arraySectors = (arrayBytes + uint64(rd.lss) - 1) / uint64(rd.lss)
	if h.entriesLBA < 1 || h.entriesLBA >= rd.sectors || h.arraySectors > rd.sectors-h.entriesLBA {
		return nil, fmt.Errorf("partition entry array at LBA %d (%d sectors) does not fit the disk", h.entriesLBA, h.arraySectors)
	}
	if lba >= h.entriesLBA && lba < h.entriesLBA+h.arraySectors {
		return nil, fmt.Errorf("partition entry array at LBA %d overlaps its own header", h.entriesLBA)
	}
	h.arrayOffset = int64(h.entriesLBA) * rd.lss
	h.array = make([]byte, arrayBytes)
	if err := rd.readAt(h.array, h.arrayOffset); err != nil {
		return nil, err
	}
	if got := crc32.ChecksumIEEE(h.array); got != h.arrayCRC {
		return nil, fmt.Errorf("partition entry array at byte %d: CRC32 mismatch (stored %08x, computed %08x)", h.arrayOffset, h.arrayCRC, got)
	}
	return h, nil
}

// readGPT reads the primary GPT, or the backup at the last LBA when the primary is damaged, and
// fills the disk's GPT facts and partitions.
func (rd *reader) readGPT(pmbr [4]mbrEntry) error {
	for _, e := range pmbr {
		if !e.empty() && e.typ != 0xEE {
			// Hybrid MBRs (rEFIt/gptsync, Boot Camp) mirror some GPT partitions for BIOS
			// systems; the GPT is authoritative.
			rd.warn("hybrid MBR: its entries besides the protective one are ignored; the GPT is read")
			break
		}
	}
	lastLBA := rd.sectors - 1
	primary, perr := rd.readGPTHeader(1)
	backupLBA := lastLBA
	var backup *gptHeader
	var berr error
	if perr == nil {
		if primary.lastUsable > lastLBA {
			rd.warn("the GPT was made for a disk of at least %d sectors; this one has %d: it was truncated or shrunk", primary.lastUsable+1, rd.sectors)
		}
		switch alt := primary.alternateLBA; {
		case alt == lastLBA:
		case alt > 1 && alt < rd.sectors:
			// The disk grew (an image copied to a larger disk): the backup is where the header
			// says, not at the end.
			rd.warn("the backup GPT header is at LBA %d, not at the last LBA %d", alt, lastLBA)
			backupLBA = alt
		default:
			rd.warn("the primary GPT header places the backup at LBA %d, past the end of the disk (last LBA %d)", alt, lastLBA)
			berr = fmt.Errorf("LBA %d is past the end of the disk", alt)
		}
	}
	if berr == nil {
		backup, berr = rd.readGPTHeader(backupLBA)
	}
	var h *gptHeader
	switch {
	case perr == nil:
		h = primary
		switch {
		case berr != nil:
			if backupLBA == primary.alternateLBA { // (a backup past the end was warned about above)
				rd.warn("backup GPT header at byte %d is damaged: %v", int64(backupLBA)*rd.lss, berr)
			}
		case !bytes.Equal(primary.array, backup.array) || !bytes.Equal(primary.diskGUID, backup.diskGUID) ||
			primary.firstUsable != backup.firstUsable || primary.lastUsable != backup.lastUsable:
			rd.warn("primary and backup GPT differ; the primary is used")
		}
	case berr == nil:
		h = backup
		rd.warn("primary GPT header at byte %d is damaged (%v); the backup at byte %d is used", rd.lss, perr, backup.headerBytes)
	default:
		return errorf(rd.lss, "no valid GPT on a disk with a protective MBR: primary header at byte %d: %v; backup header at byte %d: %v",
			rd.lss, perr, int64(backupLBA)*rd.lss, berr)
	}

	d := rd.d
	d.DiskGUID = formatGUID(h.diskGUID)
	d.FirstUsableLBA = h.firstUsable
	d.LastUsableLBA = h.lastUsable
	d.EntryCount = h.entryCount
	d.EntrySize = h.entrySize

	// The table structures no partition may cover. A damaged copy's position is taken from the
	// good one and the usual layout (primary array at LBA 2, backup array just before the backup
	// header): sgdisk and the kernel would rewrite it there.
	lss := rd.lss
	arrayBytes := func(g *gptHeader) int64 { return int64(g.arraySectors) * lss }
	rd.meta = append(rd.meta, region{Extent{0, 2 * lss}, "protective MBR and primary GPT header"})
	if primary != nil {
		rd.meta = append(rd.meta, region{Extent{primary.arrayOffset, arrayBytes(primary)}, "primary GPT partition array"})
	} else {
		rd.meta = append(rd.meta, region{Extent{2 * lss, arrayBytes(h)}, "primary GPT partition array"})
	}
	if backup != nil {
		rd.meta = append(rd.meta, region{Extent{backup.arrayOffset, arrayBytes(backup)}, "backup GPT partition array"})
		rd.meta = append(rd.meta, region{Extent{backup.headerBytes, lss}, "backup GPT header"})
	} else if (primary == nil || primary.alternateLBA == backupLBA) && backupLBA > h.arraySectors {
		rd.meta = append(rd.meta, region{Extent{int64(backupLBA-h.arraySectors) * lss, arrayBytes(h)}, "backup GPT partition array"})
		rd.meta = append(rd.meta, region{Extent{int64(backupLBA) * lss, lss}, "backup GPT header"})
	}

	for i := uint32(0); i < h.entryCount; i++ {
		e := h.array[uint64(i)*uint64(h.entrySize):][:h.entrySize]
		if allZero(e[:16]) {
			continue // unused entry; the kernel still counts it, so numbering stays index + 1
		}
		entryOff := h.arrayOffset + int64(i)*int64(h.entrySize)
		num := int(i) + 1
		first := binary.LittleEndian.Uint64(e[32:])
		last := binary.LittleEndian.Uint64(e[40:])
		if last < first {
			return errorf(entryOff, "partition %d ends (LBA %d) before it starts (LBA %d)", num, last, first)
		}
		if last >= rd.sectors {
			// Checked here, in sectors, before bytes could overflow int64.
			return errorf(entryOff, "partition %d (LBAs %d–%d) extends past the end of the disk (%d sectors of %d bytes)",
				num, first, last, rd.sectors, lss)
		}
		if first < h.firstUsable || last > h.lastUsable {
			rd.warn("partition %d (LBAs %d–%d) lies outside the usable LBAs %d–%d", num, first, last, h.firstUsable, h.lastUsable)
		}
		typ := formatGUID(e[:16])
		rd.add(Partition{
			Number:     num,
			Kind:       KindPrimary,
			Start:      int64(first) * lss,
			Size:       int64(last-first+1) * lss,
			Type:       typ,
			TypeName:   gptTypeNames[typ],
			GUID:       formatGUID(e[16:32]),
			Name:       decodeGPTName(e[gptNameOffset : gptNameOffset+gptNameLen]),
			Attributes: binary.LittleEndian.Uint64(e[48:]),
		}, entryOff)
	}
	return nil
}

// formatGUID formats 16 bytes of an on-disk GUID in the canonical upper-case form. GPT stores the
// first three fields little-endian and the last two as bytes, so the text is not the bytes in order.
func formatGUID(b []byte) string {
	return fmt.Sprintf("%08X-%04X-%04X-%X-%X",
		binary.LittleEndian.Uint32(b[0:]), binary.LittleEndian.Uint16(b[4:]), binary.LittleEndian.Uint16(b[6:]),
		b[8:10], b[10:16])
}

// decodeGPTName decodes a UTF-16LE partition name up to its first NUL. Characters outside the
// basic plane are surrogate pairs; an unpaired surrogate becomes U+FFFD rather than an error, so
// a damaged name never stops a table from being read.
func decodeGPTName(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return strings.ToValidUTF8(string(utf16.Decode(u)), "\uFFFD")
}

// gptTypeNames names the common GPT partition type GUIDs.
var gptTypeNames = map[string]string{
	"C12A7328-F81F-11D2-BA4B-00A0C93EC93B": "EFI System",
	"21686148-6449-6E6F-744E-656564454649": "BIOS boot",
	"024DEE41-33E7-11D3-9D69-0008C781F39F": "MBR partition scheme",
	"E3C9E316-0B5C-4DB8-817D-F92DF00215AE": "Microsoft reserved",
	"EBD0A0A2-B9E5-4433-87C0-68B6B72699C7": "Microsoft basic data",
	"DE94BBA4-06D1-4D40-A16A-BFD50179D6AC": "Windows recovery environment",
	"5808C8AA-7E8F-42E0-85D2-E1E90434CFB3": "Windows LDM metadata",
	"AF9B60A0-1431-4F62-BC68-3311714A69AD": "Windows LDM data",
	"E75CAF8F-F680-4CEE-AFA3-B001E56EFC2D": "Windows Storage Spaces",
	"0FC63DAF-8483-4772-8E79-3D69D8477DE4": "Linux filesystem",
	"0657FD6D-A4AB-43C4-84E5-0933C84B4F4F": "Linux swap",
	"E6D6D379-F507-44C2-A23C-238F2A3DF928": "Linux LVM",
	"A19D880F-05FC-4D3B-A006-743F0F84911E": "Linux RAID",
	"933AC7E1-2EB4-4F13-B844-0E14E2AEF915": "Linux /home",
	"3B8F8425-20E0-4F3B-907F-1A25A76F98E8": "Linux /srv",
	"BC13C2FF-59E6-4262-A352-B275FD6F7172": "Linux extended boot",
	"CA7D7CCB-63ED-4C53-861C-1742536059CC": "Linux LUKS",
	"7FFEC5C9-2D00-49B7-8941-3EA10A5586B7": "Linux dm-crypt",
	"4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709": "Linux root (x86-64)",
	"44479540-F297-41B2-9AF7-D131D5F0458A": "Linux root (x86)",
	"B921B045-1DF0-41C3-AF44-4C6F280D3FAE": "Linux root (ARM64)",
	"69DAD710-2CE4-4E3C-B16C-21A1D49ABED3": "Linux root (ARM)",
	"8484680C-9521-48C6-9C11-B0720656F69E": "Linux /usr (x86-64)",
	"4D21B016-B534-45C2-A9FB-5C16E091FD2D": "Linux /var",
	"7EC6F557-3BC5-4ACA-B293-16EF5DF639D1": "Linux /var/tmp",
	"48465300-0000-11AA-AA11-00306543ECAC": "Apple HFS+",
	"7C3457EF-0000-11AA-AA11-00306543ECAC": "Apple APFS",
	"516E7CB6-6ECF-11D6-8FF8-00022D09712B": "FreeBSD UFS",
	"516E7CBA-6ECF-11D6-8FF8-00022D09712B": "FreeBSD ZFS",
	"6A898CC3-1DD2-11B2-99A6-080020736631": "Solaris /usr or Apple ZFS",
	"AA31E02A-400F-11DB-9590-000C2911D1B8": "VMware VMFS",
}
