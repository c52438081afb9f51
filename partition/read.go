package partition

import (
	"errors"
	"fmt"
	"io"
	"sort"
)

// Error reports a disk layout that cannot be read as it stands. It names the problem and the byte
// offset on the disk of the structure at fault (a table entry, an EBR, a GPT header), so that a
// user can look at the bytes themselves, e.g. with `hexdump -C -s <offset> -n 512`.
type Error struct {
	Offset int64  // byte offset on the disk of the structure at fault
	Msg    string // what is wrong, naming the partition and byte range where there is one
}

func (e *Error) Error() string {
	return fmt.Sprintf("partition table: %s (at byte %d)", e.Msg, e.Offset)
}

func errorf(off int64, format string, args ...any) *Error {
	return &Error{Offset: off, Msg: fmt.Sprintf(format, args...)}
}

// Extent is a byte range of a disk.
type Extent struct {
	Start int64 `json:"start"` // bytes from the start of the disk
	Size  int64 `json:"size"`  // bytes
}

// End is the first byte after the extent.
func (e Extent) End() int64 { return e.Start + e.Size }

// Read reads the layout of a disk of size bytes with the given logical sector size (512 or 4096)
// from r. It never writes. A layout that cannot be trusted (partitions past the end of the disk,
// overlapping partitions, a broken EBR chain, two damaged GPT headers) is an *Error rather than a
// best guess: a restore from a guessed layout would silently lose data.
func Read(r io.ReaderAt, size int64, logicalSectorSize int) (*Disk, error) {
	lss := logicalSectorSize
	// 512 and 4096 are what disks use; the powers of two in between are what the kernel would
	// accept, so they are accepted too rather than refused for no reason.
	if lss < 512 || lss > 4096 || lss&(lss-1) != 0 {
		return nil, fmt.Errorf("partition: logical sector size %d is not a power of two from 512 to 4096", lss)
	}
	if size < 0 {
		return nil, fmt.Errorf("partition: negative disk size %d", size)
	}
	d := &Disk{
		Table:              TableNone,
		Size:               size,
		LogicalSectorSize:  lss,
		PhysicalSectorSize: lss,
		Partitions:         []Partition{},
	}
	if size < int64(lss) || size < 512 {
		return d, nil // too small to hold any table
	}
	rd := &reader{r: r, size: size, lss: int64(lss), sectors: uint64(size / int64(lss)), d: d}
	if err := rd.read(); err != nil {
		return nil, err
	}
	return d, nil
}

// reader holds the state of one Read.
type reader struct {
	r       io.ReaderAt
	size    int64
	lss     int64
	sectors uint64 // whole logical sectors on the disk
	d       *Disk

	// entryAt[i] is the byte offset of the table entry that defines d.Partitions[i], so that an
	// error about a partition can point at the bytes that define it.
	entryAt []int64
	// meta are the table structures (MBR, EBRs, GPT headers and arrays) no data partition may cover.
	meta []region
}

// region is a named byte range of table structures.
type region struct {
	Extent
	what string
}

func (rd *reader) warn(format string, args ...any) {
	rd.d.Warnings = append(rd.d.Warnings, fmt.Sprintf(format, args...))
}

// readAt reads exactly len(b) bytes at off. A short read is an error naming the offset: Read is
// told the disk's size, so every structure it reads lies inside it.
func (rd *reader) readAt(b []byte, off int64) error {
	n, err := rd.r.ReadAt(b, off)
	if n == len(b) {
		return nil // io.ReaderAt may report io.EOF with a full read at the end of the data
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("partition: reading %d bytes at byte %d: %w", len(b), off, err)
}

func (rd *reader) add(p Partition, entryOffset int64) {
	rd.d.Partitions = append(rd.d.Partitions, p)
	rd.entryAt = append(rd.entryAt, entryOffset)
}

func (rd *reader) read() error {
	// The MBR (or the protective MBR of a GPT disk) is the first 512 bytes whatever the sector size.
	sec0 := make([]byte, 512)
	if err := rd.readAt(sec0, 0); err != nil {
		return err
	}
	fs0 := DetectFilesystem(rd.r, 0, rd.size)
	if sec0[510] != 0x55 || sec0[511] != 0xAA {
		rd.d.Filesystem = knownOrNil(fs0)
		return nil
	}
	entries := parseMBREntries(sec0)
	if fs0.Type == "iso9660" {
		// A hybrid ISO (isohybrid, xorriso) carries an MBR, sometimes a GPT too, whose partitions
		// start at 0 or at the volume descriptors and overlap the ISO by design: the ISO is the
		// volume, captured and restored whole. But a USB stick that once held an ISO and was
		// repartitioned keeps the old descriptors in the gap before its first partition; there
		// the table is real. Tell them apart by whether the table holds up and spares the
		// descriptors.
		trial := &reader{r: rd.r, size: rd.size, lss: rd.lss, sectors: rd.sectors, d: &Disk{Table: TableNone}}
		err := trial.readTable(sec0, entries, &Filesystem{Type: "unknown"})
		if err != nil || trial.d.Table == TableNone || trial.covers(isoDescriptorsOffset) || rd.entryCovers(entries, isoDescriptorsOffset) {
			rd.d.Filesystem = fs0
			if !mbrEmpty(entries) {
				rd.warn("hybrid ISO 9660 image: its partition table points into the ISO and is not read")
			}
			return nil
		}
	}
	if err := rd.readTable(sec0, entries, fs0); err != nil {
		return err
	}
	if rd.d.Table != TableNone {
		rd.detectFilesystems()
	}
	return nil
}

// isoDescriptorsOffset is where an ISO 9660 volume's descriptors start (sector 16 of 2048 bytes).
const isoDescriptorsOffset = 32768

// covers reports whether any partition read so far holds byte off of the disk.
func (rd *reader) covers(off int64) bool {
	for _, p := range rd.d.Partitions {
		if p.Start <= off && off < p.End() {
			return true
		}
	}
	return false
}

// entryCovers reports whether an MBR entry other than a protective one holds byte off, counting
// entries of type 0 with a size: hybrid ISOs mark the ISO itself that way (the kernel, which
// ignores the type, sees them too).
func (rd *reader) entryCovers(entries [4]mbrEntry, off int64) bool {
	for _, e := range entries {
		if e.typ != 0xEE && e.count > 0 && int64(e.start)*rd.lss <= off && off < int64(e.start+e.count)*rd.lss {
			return true
		}
	}
	return false
}

// readTable reads and validates the GPT or MBR that sector 0 announces, or decides that the disk
// has no table; fs0 is the filesystem recognised at offset 0 ("unknown" if none).
func (rd *reader) readTable(sec0 []byte, entries [4]mbrEntry, fs0 *Filesystem) error {
	for _, e := range entries {
		if e.typ == 0xEE {
			// A protective entry makes this a GPT disk, as for the kernel and UEFI (the GPT
			// headers' CRCs are stronger evidence than any signature at offset 0).
			rd.d.Table = TableGPT
			rd.readMBRIdentity(sec0)
			if fs0.Type != "unknown" {
				rd.warn("stale %s signature at offset 0 beside the GPT; the GPT is used", fs0.Type)
			}
			if err := rd.readGPT(entries); err != nil {
				return err
			}
			return rd.validate()
		}
	}

	// Sector 0 carries 0x55AA but may be a filesystem's boot sector rather than an MBR: FAT and
	// NTFS boot sectors end with the same signature. Like libblkid, prefer the filesystem when
	// one is recognised at offset 0, otherwise the volume's boot code at bytes 446–509 would be
	// read as garbage partitions.
	if fs0.Type != "unknown" {
		if ownsSectorZero(fs0.Type) || mbrEmpty(entries) {
			rd.d.Filesystem = fs0
			return nil
		}
		// A superblock outside sector 0 (ext at 1024, btrfs at 64 KiB, swap at the end of the
		// first page, ISO descriptors at 32 KiB) beside real MBR partitions is a leftover of the
		// disk's previous life: partitioning tools write only sector 0 and leave it. The
		// partitions win.
		rd.warn("stale %s signature at offset 0 beside the MBR partitions; the MBR is used", fs0.Type)
	}
	for i, e := range entries {
		if e.boot != 0x00 && e.boot != 0x80 {
			// The kernel and libblkid refuse such a sector as a partition table too.
			rd.warn("sector 0 has the 0x55AA signature but entry %d has boot flag 0x%02x: not a partition table", i+1, e.boot)
			return nil
		}
	}
	rd.d.Table = TableMBR
	rd.readMBRIdentity(sec0)
	if err := rd.readMBR(entries); err != nil {
		return err
	}
	return rd.validate()
}

func knownOrNil(fs *Filesystem) *Filesystem {
	if fs.Type == "unknown" {
		return nil
	}
	return fs
}

// ownsSectorZero reports whether a filesystem of this type keeps its own boot sector or superblock
// in sector 0, so that a 0x55AA there belongs to it and not to a partition table.
func ownsSectorZero(fsType string) bool {
	switch fsType {
	case "vfat", "ntfs", "exfat", "xfs", "luks":
		return true
	}
	return false
}

// detectFilesystems detects the filesystems of the (validated) data partitions.
func (rd *reader) detectFilesystems() {
	for i := range rd.d.Partitions {
		p := &rd.d.Partitions[i]
		if p.HoldsData() {
			p.Filesystem = DetectFilesystem(rd.r, p.Start, p.Size)
		}
	}
}

func rangeString(start, end int64) string { return fmt.Sprintf("bytes [%d, %d)", start, end) }

// validate refuses layouts a restore cannot reproduce faithfully: partitions past the end of the
// disk, data partitions that overlap each other or the table structures, and (MBR) a primary
// partition overlapping the extended container.
func (rd *reader) validate() error {
	ps := rd.d.Partitions
	for i, p := range ps {
		if p.Start < 0 || p.Size <= 0 || p.End() > rd.size || p.End() < p.Start {
			return errorf(rd.entryAt[i], "partition %d (%s) extends past the end of the disk (%d bytes)",
				p.Number, rangeString(p.Start, p.End()), rd.size)
		}
	}
	// Data partitions against each other: sort by start, then each must end before the next begins.
	idx := make([]int, 0, len(ps))
	for i, p := range ps {
		if p.HoldsData() {
			idx = append(idx, i)
		}
	}
	sort.SliceStable(idx, func(a, b int) bool { return ps[idx[a]].Start < ps[idx[b]].Start })
	for k := 1; k < len(idx); k++ {
		a, b := ps[idx[k-1]], ps[idx[k]]
		if b.Start < a.End() {
			return errorf(rd.entryAt[idx[k]], "partition %d (%s) overlaps partition %d (%s)",
				b.Number, rangeString(b.Start, b.End()), a.Number, rangeString(a.Start, a.End()))
		}
	}
	for _, i := range idx {
		p := ps[i]
		for _, m := range rd.meta {
			if p.Start < m.End() && m.Start < p.End() {
				return errorf(rd.entryAt[i], "partition %d (%s) overlaps the %s (%s)",
					p.Number, rangeString(p.Start, p.End()), m.what, rangeString(m.Start, m.End()))
			}
		}
	}
	// A primary data partition inside the extended container would share space with its EBRs and
	// logical partitions.
	for i, e := range ps {
		if e.Kind != KindExtended {
			continue
		}
		for j, p := range ps {
			if p.Kind == KindPrimary && p.Start < e.End() && e.Start < p.End() {
				return errorf(rd.entryAt[j], "partition %d (%s) overlaps the extended partition %d (%s)",
					p.Number, rangeString(p.Start, p.End()), e.Number, rangeString(e.Start, e.End()))
			}
		}
		for j, o := range ps {
			if j != i && o.Kind == KindExtended && o.Start < e.End() && e.Start < o.End() {
				return errorf(rd.entryAt[j], "extended partitions %d and %d overlap", e.Number, o.Number)
			}
		}
	}
	return nil
}

// Gaps returns the byte ranges of the disk not covered by any partition that HoldsData(): the
// MBR or GPT structures, EBR sectors, the backup GPT and free space, merged and sorted. A disk
// without partitions (Table none) is one gap. A capture stores these ranges raw, so that boot code
// in them (e.g. GRUB's core.img after the MBR) survives a restore.
func (d *Disk) Gaps() []Extent {
	var data []Extent
	for _, p := range d.Partitions {
		if p.HoldsData() && p.Size > 0 {
			data = append(data, Extent{Start: p.Start, Size: p.Size})
		}
	}
	sort.Slice(data, func(i, j int) bool { return data[i].Start < data[j].Start })
	var gaps []Extent
	pos := int64(0)
	for _, e := range data {
		start := min(e.Start, d.Size)
		if start > pos {
			gaps = append(gaps, Extent{Start: pos, Size: start - pos})
		}
		// Read refuses overlaps, but a Disk built by hand may have them: take the furthest end
		// so that nothing covered is reported as a gap.
		pos = max(pos, min(e.End(), d.Size))
	}
	if pos < d.Size {
		gaps = append(gaps, Extent{Start: pos, Size: d.Size - pos})
	}
	return gaps
}
