package partition

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strconv"
	"strings"
	"unicode/utf16"
)

// Tables are written by hand rather than with go-diskfs v1.9.4: it cannot write logical
// partitions, the disk signature or boot code, it writes 0x7FFFFFFF instead of 0xFFFFFFFF into the
// protective MBR of disks over 2 TiB, it panics on partition names outside the basic plane, and it
// validates nothing (see ../shared/notes/platform.md). The formats are small and are checked here
// against sgdisk and sfdisk.

// encodeTable returns the sectors of d's partition table as (offset, bytes) pairs, in the order
// they should be written: for GPT the backup first and the protective MBR last, so that a crash
// part-way leaves no disk that looks complete but is not.
func encodeTable(d *Disk) ([]chunk, error) {
	if err := checkWritable(d); err != nil {
		return nil, err
	}
	switch d.Table {
	case TableGPT:
		return encodeGPT(d)
	case TableMBR:
		return encodeMBR(d)
	}
	return nil, fmt.Errorf("write: table %q cannot be written", d.Table)
}

// chunk is bytes to write at an offset.
type chunk struct {
	off int64
	b   []byte
}

// checkWritable refuses a layout that would write outside the disk or produce a table Read refuses.
func checkWritable(d *Disk) error {
	lss := int64(d.LogicalSectorSize)
	if lss < 512 || lss > 4096 || lss&(lss-1) != 0 {
		return fmt.Errorf("write: logical sector size %d", lss)
	}
	if d.Size < 64*lss {
		return fmt.Errorf("write: disk of %d bytes is too small", d.Size)
	}
	for _, p := range d.Partitions {
		if p.Start%lss != 0 || p.Size%lss != 0 || p.Size <= 0 || p.Start < lss || p.End() > d.Size/lss*lss {
			return fmt.Errorf("write: partition %d [%d, %d) is not whole sectors inside the disk", p.Number, p.Start, p.End())
		}
	}
	return nil
}

// outEntry is an MBR or EBR entry to write; abs is its absolute first LBA (for the CHS fields,
// since EBR entries hold relative starts).
type outEntry struct {
	boot, typ         byte
	start, count, abs uint32
}

// mbrSector builds sector 0 (or an EBR) with the given entries; bootCode and signature only for
// sector 0.
func mbrSector(bootCode []byte, signature uint32, entries [4]outEntry, lss int64) []byte {
	b := make([]byte, 512)
	copy(b[:mbrBootCodeLen], bootCode)
	binary.LittleEndian.PutUint32(b[mbrSignatureOff:], signature)
	for i, e := range entries {
		if e.count == 0 {
			continue
		}
		o := b[mbrEntriesOff+i*mbrEntrySize:]
		o[0] = e.boot
		putCHS(o[1:4], uint64(e.abs), lss)
		o[4] = e.typ
		putCHS(o[5:8], uint64(e.abs)+uint64(e.count)-1, lss)
		binary.LittleEndian.PutUint32(o[8:], e.start)
		binary.LittleEndian.PutUint32(o[12:], e.count)
	}
	b[510], b[511] = 0x55, 0xAA
	return b
}

// putCHS writes the legacy cylinder/head/sector address of an absolute LBA with the 255-head,
// 63-sector geometry every tool assumes, or the "beyond CHS" marker 1023/254/63. Nothing reads
// CHS any more, but some BIOSes check that it is plausible before booting.
func putCHS(b []byte, lba uint64, lss int64) {
	const heads, spt = 255, 63
	if lss != 512 || lba >= 1024*heads*spt {
		b[0], b[1], b[2] = 0xFE, 0xFF, 0xFF
		return
	}
	c := lba / (heads * spt)
	h := (lba / spt) % heads
	s := lba%spt + 1
	b[0] = byte(h)
	b[1] = byte(s) | byte((c>>8)<<6)
	b[2] = byte(c)
}

// encodeMBR writes sector 0 with the primaries and, for an extended partition, the EBR chain:
// one EBR one alignment unit before each logical partition, each linking to the next.
func encodeMBR(d *Disk) ([]chunk, error) {
	lss := int64(d.LogicalSectorSize)
	var entries [4]outEntry
	var ext *Partition
	var logicals []Partition
	for _, p := range d.Partitions {
		typ, err := mbrTypeByte(p.Type)
		if err != nil {
			return nil, fmt.Errorf("write: partition %d: %w", p.Number, err)
		}
		e := outEntry{typ: typ, start: uint32(p.Start / lss), count: uint32(p.Size / lss)}
		e.abs = e.start
		if p.Start/lss > 1<<32-1 || p.Size/lss > 1<<32-1 {
			return nil, fmt.Errorf("write: partition %d is beyond what an MBR addresses", p.Number)
		}
		if p.Active {
			e.boot = mbrEntryBootFlag
		}
		switch p.Kind {
		case KindPrimary, KindExtended:
			if p.Number < 1 || p.Number > 4 || entries[p.Number-1].count != 0 {
				return nil, fmt.Errorf("write: primary partition number %d is not a free slot 1–4", p.Number)
			}
			if p.Kind == KindExtended {
				if ext != nil || !isExtendedType(typ) {
					return nil, fmt.Errorf("write: extended partition %d: one extended partition of type 0x05, 0x0f or 0x85 is allowed", p.Number)
				}
				q := p
				ext = &q
			}
			entries[p.Number-1] = e
		case KindLogical:
			logicals = append(logicals, p)
		}
	}
	if len(logicals) > 0 && ext == nil {
		return nil, errors.New("write: logical partitions without an extended partition")
	}
	// Logicals in number order are the chain order.
	for i := 1; i < len(logicals); i++ {
		for j := i; j > 0 && logicals[j].Number < logicals[j-1].Number; j-- {
			logicals[j], logicals[j-1] = logicals[j-1], logicals[j]
		}
	}
	var out []chunk
	extStart := int64(0)
	if ext != nil {
		extStart = ext.Start / lss
		if len(logicals) == 0 {
			// An empty container: a zeroed first sector, as fdisk leaves it.
			out = append(out, chunk{ext.Start, make([]byte, lss)})
		}
	}
	ebrOf := func(i int) int64 { // the EBR's LBA: Align before the logical, the first at the container's start
		if i == 0 {
			return extStart
		}
		return (logicals[i].Start - Align) / lss
	}
	for i, l := range logicals {
		ebr := ebrOf(i)
		if l.Number != firstLogicalNum+i {
			return nil, fmt.Errorf("write: logical partitions must be numbered from %d without gaps; found %d", firstLogicalNum, l.Number)
		}
		if ebr*lss < ext.Start || l.Start/lss <= ebr || l.End() > ext.End() || (i > 0 && ebr*lss < logicals[i-1].End()) {
			return nil, fmt.Errorf("write: logical partition %d does not fit its EBR at byte %d inside extended partition %d", l.Number, ebr*lss, ext.Number)
		}
		typ, _ := mbrTypeByte(l.Type)
		var es [4]outEntry
		es[0] = outEntry{typ: typ, start: uint32(l.Start/lss - ebr), count: uint32(l.Size / lss), abs: uint32(l.Start / lss)}
		if l.Active {
			es[0].boot = mbrEntryBootFlag
		}
		if i+1 < len(logicals) {
			next := ebrOf(i + 1)
			es[1] = outEntry{typ: 0x05, start: uint32(next - extStart), count: uint32(logicals[i+1].End()/lss - next), abs: uint32(next)}
		}
		sec := mbrSector(nil, 0, es, lss)
		out = append(out, chunk{ebr * lss, padSector(sec, lss)})
	}
	// Sector 0 last: until it is written the disk shows no (or the wiped) table.
	out = append(out, chunk{0, padSector(mbrSector(d.BootCode, d.Signature, entries, lss), lss)})
	return out, nil
}

// padSector extends a 512-byte structure to a whole logical sector (zeros after it).
func padSector(b []byte, lss int64) []byte {
	if int64(len(b)) >= lss {
		return b
	}
	out := make([]byte, lss)
	copy(out, b)
	return out
}

// mbrTypeByte parses the model's "0x83" form.
func mbrTypeByte(s string) (byte, error) {
	v, err := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(s), "0x"), 16, 8)
	if err != nil || !strings.HasPrefix(strings.ToLower(s), "0x") {
		return 0, fmt.Errorf("MBR partition type %q is not a byte like 0x83", s)
	}
	return byte(v), nil
}

// parseGUID is the inverse of formatGUID: canonical text to the on-disk mixed-endian bytes.
func parseGUID(s string) ([]byte, error) {
	h := strings.ReplaceAll(s, "-", "")
	if len(s) != 36 || len(h) != 32 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return nil, fmt.Errorf("GUID %q is not in the form XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX", s)
	}
	raw := make([]byte, 16)
	for i := range raw {
		v, err := strconv.ParseUint(h[2*i:2*i+2], 16, 8)
		if err != nil {
			return nil, fmt.Errorf("GUID %q: %w", s, err)
		}
		raw[i] = byte(v)
	}
	b := make([]byte, 16)
	binary.LittleEndian.PutUint32(b[0:], binary.BigEndian.Uint32(raw[0:]))
	binary.LittleEndian.PutUint16(b[4:], binary.BigEndian.Uint16(raw[4:]))
	binary.LittleEndian.PutUint16(b[6:], binary.BigEndian.Uint16(raw[6:]))
	copy(b[8:], raw[8:])
	return b, nil
}

// encodeGPTName encodes a partition name as UTF-16LE in the 72-byte field, cut at 36 code units
// without splitting a surrogate pair (go-diskfs panics on such names).
func encodeGPTName(name string) []byte {
	u := utf16.Encode([]rune(name))
	if len(u) > gptNameLen/2 {
		u = u[:gptNameLen/2]
		if last := u[len(u)-1]; last >= 0xD800 && last < 0xDC00 {
			u = u[:len(u)-1] // a high surrogate whose pair was cut off
		}
	}
	b := make([]byte, gptNameLen)
	for i, c := range u {
		binary.LittleEndian.PutUint16(b[2*i:], c)
	}
	return b
}

// encodeGPT writes the protective MBR (with the source's boot code and signature), both headers
// and both entry arrays, for the usable range the plan chose.
func encodeGPT(d *Disk) ([]chunk, error) {
	lss := int64(d.LogicalSectorSize)
	sectors := d.Size / lss
	count := int64(max(d.EntryCount, 128))
	arraySectors := (count*128 + lss - 1) / lss
	firstUsable, lastUsable := 2+arraySectors, sectors-2-arraySectors
	if d.FirstUsableLBA != 0 && (int64(d.FirstUsableLBA) < firstUsable || int64(d.LastUsableLBA) > lastUsable) {
		return nil, fmt.Errorf("write: usable LBAs %d–%d do not fit the GPT structures (%d–%d)", d.FirstUsableLBA, d.LastUsableLBA, firstUsable, lastUsable)
	}
	if d.FirstUsableLBA != 0 {
		firstUsable, lastUsable = int64(d.FirstUsableLBA), int64(d.LastUsableLBA)
	}
	diskGUID, err := parseGUID(d.DiskGUID)
	if err != nil {
		return nil, fmt.Errorf("write: disk GUID: %w", err)
	}
	array := make([]byte, arraySectors*lss)
	for _, p := range d.Partitions {
		if p.Number < 1 || int64(p.Number) > count {
			return nil, fmt.Errorf("write: partition number %d does not fit %d GPT entries", p.Number, count)
		}
		first, last := p.Start/lss, p.End()/lss-1
		if first < firstUsable || last > lastUsable {
			return nil, fmt.Errorf("write: partition %d (LBAs %d–%d) outside the usable LBAs %d–%d", p.Number, first, last, firstUsable, lastUsable)
		}
		e := array[(p.Number-1)*128:][:128]
		if !allZero(e) {
			return nil, fmt.Errorf("write: two partitions numbered %d", p.Number)
		}
		typ, err := parseGUID(p.Type)
		if err != nil {
			return nil, fmt.Errorf("write: partition %d type: %w", p.Number, err)
		}
		if allZero(typ) {
			return nil, fmt.Errorf("write: partition %d has the unused type GUID", p.Number)
		}
		guid, err := parseGUID(p.GUID)
		if err != nil {
			return nil, fmt.Errorf("write: partition %d: %w", p.Number, err)
		}
		copy(e[0:], typ)
		copy(e[16:], guid)
		binary.LittleEndian.PutUint64(e[32:], uint64(first))
		binary.LittleEndian.PutUint64(e[40:], uint64(last))
		binary.LittleEndian.PutUint64(e[48:], p.Attributes)
		copy(e[gptNameOffset:], encodeGPTName(p.Name))
	}
	arrayCRC := crc32.ChecksumIEEE(array[:count*128])
	header := func(my, alt, entries int64) []byte {
		h := make([]byte, lss)
		copy(h, gptSignature)
		binary.LittleEndian.PutUint32(h[8:], 0x00010000) // revision 1.0
		binary.LittleEndian.PutUint32(h[12:], gptMinHeaderSize)
		binary.LittleEndian.PutUint64(h[24:], uint64(my))
		binary.LittleEndian.PutUint64(h[32:], uint64(alt))
		binary.LittleEndian.PutUint64(h[40:], uint64(firstUsable))
		binary.LittleEndian.PutUint64(h[48:], uint64(lastUsable))
		copy(h[56:], diskGUID)
		binary.LittleEndian.PutUint64(h[72:], uint64(entries))
		binary.LittleEndian.PutUint32(h[80:], uint32(count))
		binary.LittleEndian.PutUint32(h[84:], 128)
		binary.LittleEndian.PutUint32(h[88:], arrayCRC)
		binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:gptMinHeaderSize]))
		return h
	}
	lastLBA := sectors - 1
	// The protective MBR covers the disk from LBA 1, capped at 32 bits (0xFFFFFFFF: go-diskfs
	// writes 0x7FFFFFFF there for disks over 2 TiB).
	n := min(uint64(lastLBA), 0xFFFFFFFF)
	var pm [4]outEntry
	pm[0] = outEntry{typ: 0xEE, start: 1, count: uint32(n), abs: 1}
	return []chunk{
		{(lastLBA - arraySectors) * lss, array},
		{lastLBA * lss, header(lastLBA, 1, lastLBA-arraySectors)},
		{2 * lss, array},
		{lss, header(1, lastLBA, 2)},
		{0, padSector(mbrSector(d.BootCode, d.Signature, pm, lss), lss)},
	}, nil
}

// writeChunks writes the chunks in order.
func writeChunks(w io.WriterAt, cs []chunk) error {
	for _, c := range cs {
		if _, err := w.WriteAt(c.b, c.off); err != nil {
			return fmt.Errorf("write: %d bytes at byte %d: %w", len(c.b), c.off, err)
		}
	}
	return nil
}
