package partition

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"unicode/utf16"
)

// DetectFilesystem inspects the volume at [off, off+size) of r and returns what it holds, from the
// magic numbers of its superblock, the way blkid does: ext2/3/4 (and ext journal devices, "jbd"),
// xfs, btrfs, ntfs, exfat, vfat, swap, lvm2, luks and iso9660. It reads a few KiB and never
// writes. Type is "unknown" when nothing is recognised (or the volume cannot be read); the result
// is never nil.
//
// Signatures are tried in an order that prefers the structure a newer mkfs would have rewritten:
// those in sector 0 first, then ext (1024), btrfs (64 KiB), swap (end of the first page) and
// iso9660 (32 KiB, which mkfs tools that only zero the start of a volume leave behind).
func DetectFilesystem(r io.ReaderAt, off, size int64) *Filesystem {
	v := volume{r: r, off: off, size: size}
	for _, probe := range []func(volume) *Filesystem{
		probeLUKS, probeXFS, probeNTFS, probeExFAT, probeVFAT, probeLVM2, probeExt, probeBtrfs, probeSwap, probeISO9660,
	} {
		if fs := probe(v); fs != nil {
			return fs
		}
	}
	return &Filesystem{Type: "unknown"}
}

// volume is a bounded window of a disk.
type volume struct {
	r         io.ReaderAt
	off, size int64
}

// read returns n bytes at at (relative to the volume), or nil when they lie outside the volume or
// cannot be read: a probe then simply does not match.
func (v volume) read(at int64, n int) []byte {
	if at < 0 || n < 0 || at > v.size || int64(n) > v.size-at || v.off < 0 || at > (1<<62)-v.off {
		return nil
	}
	b := make([]byte, n)
	if got, _ := v.r.ReadAt(b, v.off+at); got != n {
		return nil
	}
	return b
}

var (
	le = binary.LittleEndian
	be = binary.BigEndian
)

// cString returns b up to its first NUL, as valid UTF-8.
func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// uuidString formats 16 bytes in the usual lower-case 8-4-4-4-12 form, as blkid prints them.
func uuidString(b []byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func isPow2(n uint64) bool { return n != 0 && n&(n-1) == 0 }

// --- ext2/3/4 ---------------------------------------------------------------------------------

const (
	extCompatHasJournal   = 0x4
	extIncompatJournalDev = 0x8
	extIncompat64Bit      = 0x80
	ext3IncompatSupported = 0x2 | 0x4 | 0x10 // filetype, recover, meta_bg
	ext3ROCompatSupported = 0x1 | 0x2 | 0x4  // sparse_super, large_file, btree_dir
	extSuperblockOffset   = 1024
	extMagic              = 0xEF53
	extMaxLogBlockSize    = 6 // 64 KiB blocks
	extDynamicRevision    = 1
	extFeatureCompatOff   = 0x5C
	extFeatureIncompatOff = 0x60
	extFeatureROCompatOff = 0x64
	extBlocksHiOff        = 0x150
	extFreeBlocksHiOff    = 0x158
)

func probeExt(v volume) *Filesystem {
	sb := v.read(extSuperblockOffset, 1024)
	if sb == nil || le.Uint16(sb[0x38:]) != extMagic {
		return nil
	}
	logBS := le.Uint32(sb[0x18:])
	if logBS > extMaxLogBlockSize {
		return nil
	}
	bs := uint64(1024) << logBS
	var compat, incompat, roCompat uint32
	if le.Uint32(sb[0x4C:]) >= extDynamicRevision {
		compat = le.Uint32(sb[extFeatureCompatOff:])
		incompat = le.Uint32(sb[extFeatureIncompatOff:])
		roCompat = le.Uint32(sb[extFeatureROCompatOff:])
	}
	fs := &Filesystem{Label: cString(sb[0x78:0x88]), UUID: uuidString(sb[0x68:0x78])}
	// The same rule as blkid: a feature ext3 does not know makes it ext4; otherwise a journal
	// makes it ext3.
	switch {
	case incompat&extIncompatJournalDev != 0:
		fs.Type = "jbd" // an external journal, not a filesystem
		return fs
	case incompat&^ext3IncompatSupported != 0 || roCompat&^ext3ROCompatSupported != 0:
		fs.Type = "ext4"
	case compat&extCompatHasJournal != 0:
		fs.Type = "ext3"
	default:
		fs.Type = "ext2"
	}
	blocks := uint64(le.Uint32(sb[0x04:]))
	free := uint64(le.Uint32(sb[0x0C:]))
	if incompat&extIncompat64Bit != 0 {
		blocks |= uint64(le.Uint32(sb[extBlocksHiOff:])) << 32
		free |= uint64(le.Uint32(sb[extFreeBlocksHiOff:])) << 32
	}
	fs.UsedBytes = usedBytes(blocks, free, bs)
	return fs
}

// usedBytes is (total-free)*unit when the counters are consistent and the result fits an int64,
// otherwise 0 (unknown).
func usedBytes(total, free, unit uint64) int64 {
	if free > total || unit == 0 {
		return 0
	}
	used := total - free
	if used > (1<<63-1)/unit {
		return 0
	}
	return int64(used * unit)
}

// --- xfs --------------------------------------------------------------------------------------

func probeXFS(v volume) *Filesystem {
	sb := v.read(0, 512)
	if sb == nil || string(sb[:4]) != "XFSB" {
		return nil
	}
	bs := uint64(be.Uint32(sb[4:]))
	if bs < 512 || bs > 65536 || !isPow2(bs) {
		return nil
	}
	dblocks := be.Uint64(sb[8:])
	fdblocks := be.Uint64(sb[144:])
	return &Filesystem{
		Type:  "xfs",
		Label: cString(sb[108:120]),
		UUID:  uuidString(sb[32:48]),
		// sb_fdblocks is exact after mkfs and a clean unmount; with lazy counters (the default)
		// a mounted filesystem's on-disk value lags, which is good enough for planning.
		UsedBytes: usedBytes(dblocks, fdblocks, bs),
	}
}

// --- btrfs ------------------------------------------------------------------------------------

const btrfsSuperOffset = 64 << 10

func probeBtrfs(v volume) *Filesystem {
	sb := v.read(btrfsSuperOffset, 4096)
	if sb == nil || string(sb[0x40:0x48]) != "_BHRfS_M" {
		return nil
	}
	// csum_type 0 is crc32c, the default. Checking it rejects stale superblocks left half
	// overwritten; other checksum types (xxhash, sha256, blake2) are trusted on the magic.
	if le.Uint16(sb[0xC4:]) == 0 {
		if crc32.Checksum(sb[0x20:], crc32.MakeTable(crc32.Castagnoli)) != le.Uint32(sb[0:]) {
			return nil
		}
	}
	used := le.Uint64(sb[0x78:])
	fs := &Filesystem{Type: "btrfs", Label: cString(sb[0x12B : 0x12B+256]), UUID: uuidString(sb[0x20:0x30])}
	if used <= 1<<62 {
		fs.UsedBytes = int64(used) // bytes_used: allocated data and metadata, all devices
	}
	return fs
}

// --- ntfs -------------------------------------------------------------------------------------

func probeNTFS(v volume) *Filesystem {
	bs := v.read(0, 512)
	if bs == nil || string(bs[3:11]) != "NTFS    " {
		return nil
	}
	bps := uint64(le.Uint16(bs[0x0B:]))
	if bps < 256 || bps > 4096 || !isPow2(bps) {
		return nil
	}
	// Sectors per cluster: a power of two, or for clusters above 64 KiB the negated shift.
	var clusterSize uint64
	spc := bs[0x0D]
	switch {
	case spc == 0:
		return nil
	case spc <= 0x80:
		if !isPow2(uint64(spc)) {
			return nil
		}
		clusterSize = uint64(spc) * bps
	default:
		shift := 256 - int(spc)
		if shift > 20 {
			return nil
		}
		clusterSize = 1 << shift
	}
	fs := &Filesystem{Type: "ntfs", UUID: fmt.Sprintf("%016X", le.Uint64(bs[0x48:]))}
	fs.Label = ntfsVolumeName(v, bs, clusterSize)
	return fs
}

// ntfsVolumeName reads the volume label, which NTFS keeps not in the boot sector but in the
// $VOLUME_NAME attribute of MFT record 3 ($Volume).
func ntfsVolumeName(v volume, bs []byte, clusterSize uint64) string {
	mftLCN := le.Uint64(bs[0x30:])
	var recSize uint64
	if c := int8(bs[0x40]); c > 0 {
		recSize = uint64(c) * clusterSize
	} else if c < 0 && c >= -20 {
		recSize = 1 << uint(-c)
	}
	if recSize < 512 || recSize > 64<<10 || mftLCN > (1<<62)/clusterSize {
		return ""
	}
	at := mftLCN*clusterSize + 3*recSize
	if at > 1<<62 {
		return ""
	}
	rec := v.read(int64(at), int(recSize))
	if rec == nil || string(rec[:4]) != "FILE" {
		return ""
	}
	// Undo the update sequence ("fixups"): the last two bytes of every 512-byte stride were
	// replaced on disk by a check value, and their real contents are kept in the array.
	usaOff, usaCount := int(le.Uint16(rec[4:])), int(le.Uint16(rec[6:]))
	if usaCount < 1 || usaOff+2*usaCount > len(rec) || (usaCount-1)*512 > len(rec) {
		return ""
	}
	check := rec[usaOff : usaOff+2]
	for i := 1; i < usaCount; i++ {
		end := i * 512
		if !bytes.Equal(rec[end-2:end], check) {
			return "" // torn write
		}
		copy(rec[end-2:end], rec[usaOff+2*i:usaOff+2*i+2])
	}
	pos := int(le.Uint16(rec[0x14:]))
	for pos+16 <= len(rec) {
		typ := le.Uint32(rec[pos:])
		alen := int(le.Uint32(rec[pos+4:]))
		if typ == 0xFFFFFFFF || alen < 16 || pos+alen > len(rec) {
			return ""
		}
		const volumeName = 0x60
		if typ == volumeName && rec[pos+8] == 0 && alen >= 24 { // resident
			vlen := int(le.Uint32(rec[pos+0x10:]))
			voff := int(le.Uint16(rec[pos+0x14:]))
			if voff+vlen > alen {
				return ""
			}
			return utf16le(rec[pos+voff : pos+voff+vlen])
		}
		pos += alen
	}
	return ""
}

// utf16le decodes little-endian UTF-16 up to the first NUL.
func utf16le(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := le.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}

// --- exfat ------------------------------------------------------------------------------------

func probeExFAT(v volume) *Filesystem {
	bs := v.read(0, 512)
	if bs == nil || string(bs[3:11]) != "EXFAT   " {
		return nil
	}
	bpsShift, spcShift := uint(bs[108]), uint(bs[109])
	if bpsShift < 9 || bpsShift > 12 || bpsShift+spcShift > 25 {
		return nil
	}
	serial := le.Uint32(bs[100:])
	fs := &Filesystem{Type: "exfat", UUID: fmt.Sprintf("%04X-%04X", serial>>16, serial&0xFFFF)}
	// The label is a directory entry (type 0x83) in the root directory; look in its first cluster,
	// where mkfs.exfat and Windows put it.
	clusterSize := uint64(1) << (bpsShift + spcShift)
	heap := uint64(le.Uint32(bs[88:])) << bpsShift
	root := uint64(le.Uint32(bs[96:]))
	if root >= 2 {
		// The first 4 KiB hold the label, bitmap and up-case entries mkfs writes; clusters can be
		// up to 32 MiB, far more than is worth reading.
		if dir := v.read(int64(heap+(root-2)*clusterSize), int(min(clusterSize, 4096))); dir != nil {
			for i := 0; i+32 <= len(dir); i += 32 {
				t := dir[i]
				if t == 0 {
					break
				}
				if t == 0x83 {
					n := min(int(dir[i+1]), 11)
					fs.Label = utf16le(dir[i+2 : i+2+2*n])
					break
				}
			}
		}
	}
	return fs
}

// --- vfat -------------------------------------------------------------------------------------

func probeVFAT(v volume) *Filesystem {
	bs := v.read(0, 512)
	if bs == nil {
		return nil
	}
	bps := uint64(le.Uint16(bs[11:]))
	spc := uint64(bs[13])
	reserved := uint64(le.Uint16(bs[14:]))
	nfats := uint64(bs[16])
	rootEntries := uint64(le.Uint16(bs[17:]))
	media := bs[21]
	fatSize := uint64(le.Uint16(bs[22:]))
	total := uint64(le.Uint16(bs[19:]))
	if total == 0 {
		total = uint64(le.Uint32(bs[32:]))
	}
	// The BPB must be sane (the checks Windows and the kernel make) before the "FAT" strings are
	// believed: those strings alone are in many boot sectors' code.
	if (bs[0] != 0xEB && bs[0] != 0xE9) || bps < 512 || bps > 4096 || !isPow2(bps) || spc == 0 || spc > 128 || !isPow2(spc) ||
		reserved == 0 || nfats == 0 || nfats > 4 || (media != 0xF0 && media < 0xF8) || total == 0 {
		return nil
	}
	fat32 := fatSize == 0
	var idOff, labelOff int
	if fat32 {
		fatSize = uint64(le.Uint32(bs[36:]))
		if string(bs[82:87]) != "FAT32" || rootEntries != 0 || fatSize == 0 {
			return nil
		}
		idOff, labelOff = 67, 71
	} else {
		if string(bs[54:57]) != "FAT" {
			return nil
		}
		idOff, labelOff = 39, 43
	}
	rootSectors := (rootEntries*32 + bps - 1) / bps
	meta := reserved + nfats*fatSize + rootSectors
	if meta >= total {
		return nil
	}
	clusters := (total - meta) / spc
	fs := &Filesystem{Type: "vfat"}
	if sig := bs[idOff-1]; sig == 0x29 || sig == 0x28 { // extended boot signature: the id is valid
		id := le.Uint32(bs[idOff:])
		fs.UUID = fmt.Sprintf("%04X-%04X", id>>16, id&0xFFFF)
		if sig == 0x29 {
			fs.Label = fatLabel(bs[labelOff : labelOff+11])
		}
	}
	// The root directory's volume-label entry is what Windows and mlabel change; blkid prefers it.
	clusterSize := spc * bps
	dataStart := meta * bps
	var dirLabel string
	var found bool
	if fat32 {
		dirLabel, found = fat32RootLabel(v, le.Uint32(bs[44:]), reserved*bps, dataStart, clusterSize, clusters)
	} else {
		dirLabel, found = fatDirLabel(v.read(int64((reserved+nfats*fatSize)*bps), int(min(rootEntries, 4096)*32)))
	}
	if found {
		fs.Label = dirLabel
	}
	if fat32 {
		fs.UsedBytes = fat32Used(v, bs, bps, total, clusters, clusterSize)
	}
	return fs
}

// fatLabel trims an 11-byte label; "NO NAME" is FAT's way of saying there is none.
func fatLabel(b []byte) string {
	s := strings.TrimRight(cString(b), " ")
	if s == "NO NAME" {
		return ""
	}
	return s
}

// fatDirLabel finds the volume-label entry in directory bytes.
func fatDirLabel(dir []byte) (string, bool) {
	for i := 0; i+32 <= len(dir); i += 32 {
		e := dir[i : i+32]
		if e[0] == 0 {
			break // end of directory
		}
		attr := e[11]
		if e[0] == 0xE5 || attr&0x0F == 0x0F { // deleted, long-name part
			continue
		}
		if attr&0x08 != 0 {
			return fatLabel(e[:11]), true
		}
	}
	return "", false
}

// fat32RootLabel follows the root directory's cluster chain looking for the volume-label entry.
// It gives up after 16 clusters: mkfs and Windows put the label first, and mlabel in the first
// free slot, so only a root crowded with files before a label was added puts it further.
func fat32RootLabel(v volume, cluster uint32, fatOff, dataStart, clusterSize, clusters uint64) (string, bool) {
	for n := 0; n < 16 && cluster >= 2 && uint64(cluster) < clusters+2; n++ {
		dir := v.read(int64(dataStart+uint64(cluster-2)*clusterSize), int(clusterSize))
		if dir == nil {
			return "", false
		}
		for i := 0; i+32 <= len(dir); i += 32 {
			if dir[i] == 0 {
				return fatDirLabel(dir[:i])
			}
		}
		if l, ok := fatDirLabel(dir); ok {
			return l, true
		}
		next := v.read(int64(fatOff+uint64(cluster)*4), 4)
		if next == nil {
			return "", false
		}
		cluster = le.Uint32(next) & 0x0FFFFFFF
	}
	return "", false
}

// fat32Used is the volume's size less its free clusters, from the FSInfo sector's free count when
// that is set and plausible; 0 otherwise.
func fat32Used(v volume, bs []byte, bps, total, clusters, clusterSize uint64) int64 {
	sector := uint64(le.Uint16(bs[48:]))
	if sector == 0 || sector == 0xFFFF {
		return 0
	}
	fi := v.read(int64(sector*bps), 512)
	if fi == nil || le.Uint32(fi[0:]) != 0x41615252 || le.Uint32(fi[484:]) != 0x61417272 {
		return 0
	}
	free := uint64(le.Uint32(fi[488:]))
	if free == 0xFFFFFFFF || free > clusters {
		return 0
	}
	return usedBytes(total*bps, free*clusterSize, 1)
}

// --- swap -------------------------------------------------------------------------------------

func probeSwap(v volume) *Filesystem {
	// The signature ends the first page, whose size is the creating machine's.
	for _, page := range []int64{4096, 8192, 16384, 65536} {
		sig := v.read(page-10, 10)
		if sig == nil {
			return nil
		}
		switch string(sig) {
		case "SWAP-SPACE":
			return &Filesystem{Type: "swap"} // version 0: no UUID or label
		case "SWAPSPACE2":
			fs := &Filesystem{Type: "swap"}
			if h := v.read(1024, 44); h != nil && (le.Uint32(h) == 1 || be.Uint32(h) == 1) {
				if !allZero(h[12:28]) {
					fs.UUID = uuidString(h[12:28])
				}
				fs.Label = cString(h[28:44])
			}
			return fs
		}
	}
	return nil
}

// --- lvm2 -------------------------------------------------------------------------------------

// lvmCRC is LVM's CRC: the IEEE polynomial with LVM's own initial value and no final inversion.
func lvmCRC(b []byte) uint32 {
	const lvmInitialCRC = 0xf597a6cf
	return ^crc32.Update(^uint32(lvmInitialCRC), crc32.IEEETable, b)
}

func probeLVM2(v volume) *Filesystem {
	for s := int64(0); s < 4; s++ {
		b := v.read(s*512, 512)
		if b == nil {
			return nil
		}
		if string(b[:8]) != "LABELONE" || string(b[24:32]) != "LVM2 001" || le.Uint64(b[8:]) != uint64(s) {
			continue
		}
		if lvmCRC(b[20:]) != le.Uint32(b[16:]) {
			continue
		}
		fs := &Filesystem{Type: "lvm2"}
		if off := int(le.Uint32(b[20:])); off >= 32 && off+32 <= len(b) {
			id := b[off : off+32]
			// Printed the way blkid and pvs do: 6-4-4-4-4-4-6.
			fs.UUID = fmt.Sprintf("%s-%s-%s-%s-%s-%s-%s", id[0:6], id[6:10], id[10:14], id[14:18], id[18:22], id[22:26], id[26:32])
		}
		return fs
	}
	return nil
}

// --- luks -------------------------------------------------------------------------------------

func probeLUKS(v volume) *Filesystem {
	h := v.read(0, 512)
	if h == nil || string(h[:6]) != "LUKS\xba\xbe" {
		return nil
	}
	fs := &Filesystem{Type: "luks", UUID: cString(h[168:208])}
	if be.Uint16(h[6:]) == 2 {
		fs.Label = cString(h[24:72]) // LUKS2 only; LUKS1 has no label
	}
	return fs
}

// --- iso9660 ----------------------------------------------------------------------------------

func probeISO9660(v volume) *Filesystem {
	pvd := v.read(32768, 2048)
	if pvd == nil || pvd[0] != 1 || string(pvd[1:6]) != "CD001" || pvd[6] != 1 {
		return nil
	}
	// The label is the primary descriptor's volume id. blkid prefers a Joliet descriptor's when
	// one exists; the two differ only for names the primary descriptor's character set cannot hold.
	fs := &Filesystem{Type: "iso9660", Label: strings.TrimRight(cString(pvd[40:72]), " ")}
	// blkid makes the "UUID" of an ISO from its modification date, or its creation date when
	// that is unset.
	for _, at := range []int{830, 813} {
		if d := isoDate(pvd[at : at+17]); d != "" {
			fs.UUID = d
			break
		}
	}
	blocks := uint64(le.Uint32(pvd[80:]))
	blockSize := uint64(le.Uint16(pvd[128:]))
	fs.UsedBytes = usedBytes(blocks, 0, blockSize) // read-only: all of it is used
	return fs
}

// isoDate turns a 17-byte ISO 9660 date ("YYYYMMDDHHMMSScc" + zone) into "YYYY-MM-DD-HH-MM-SS-cc",
// or "" when it is unset (all '0' or NUL) or not digits.
func isoDate(b []byte) string {
	d := b[:16]
	unset := true
	for _, c := range d {
		if c < '0' || c > '9' {
			return ""
		}
		if c != '0' {
			unset = false
		}
	}
	if unset {
		return ""
	}
	return fmt.Sprintf("%s-%s-%s-%s-%s-%s-%s", d[0:4], d[4:6], d[6:8], d[8:10], d[10:12], d[12:14], d[14:16])
}
