package partition

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// FAT resizing. No tool in the boot image resizes FAT: Debian 12 packages fatresize (1.1.0, not
// installed by default), a front end to libparted's FAT resizer, which acts on a whole partition
// device and would be one more library whose limits Cauldron would have to vouch for. So FAT is
// resized here, by a method simple enough to be obviously right:
//
//   - The cluster size in bytes and every cluster's number stay the same where they can: FAT
//     chains and directory entries name clusters by number. Only when the volume shrinks below a
//     used cluster are the clusters beyond the new end given the lowest free numbers, and the
//     chains, the directory entries naming them (with every directory's "." and "..") and the
//     FAT32 root cluster follow.
//   - Only the geometry around the clusters changes: the sector size (to the target disk's
//     logical sector size: Linux refuses a FAT whose sectors are smaller than the disk's, "logical
//     sector size too small for device"), the reserved area, the FAT size (for the new cluster count), the total sector count
//     and the hidden-sectors field (the partition's new start).
//   - The data area therefore starts at a new byte offset; every used cluster is copied from its
//     old place to its new one, which needs the old volume readable while the new one is written
//     (restore keeps it in a scratch file), and never modifies the old one.
//
// What cannot be done this way is refused before anything is written: more used clusters than
// the new volume has, a new cluster count outside the FAT type's range (changing FAT16 to FAT32
// is a reformat), FAT12, and a target sector size larger than the cluster size.

// FATGeometry is what the boot sector of a FAT volume says about its layout.
type FATGeometry struct {
	Bits               int   // 12, 16 or 32
	BytesPerSector     int64 // BPB_BytsPerSec
	SectorsPerCluster  int64
	Reserved           int64 // sectors before the first FAT
	NumFATs            int64
	RootEntries        int64 // FAT12/16 fixed root directory entries; 0 on FAT32
	TotalSectors       int64
	FATSectors         int64 // sectors per FAT
	RootCluster        uint32
	FSInfo, BackupBoot int64 // FAT32 sector numbers; 0 when absent
	ActiveFAT          int64 // the FAT to copy (FAT32 with mirroring off names one); else 0
}

// ClusterBytes is the cluster size in bytes.
func (g *FATGeometry) ClusterBytes() int64 { return g.BytesPerSector * g.SectorsPerCluster }

// rootDirSectors is the size of the fixed root directory (FAT12/16).
func (g *FATGeometry) rootDirSectors() int64 {
	return (g.RootEntries*32 + g.BytesPerSector - 1) / g.BytesPerSector
}

// DataStart is the byte offset of cluster 2 from the start of the volume.
func (g *FATGeometry) DataStart() int64 {
	return (g.Reserved + g.NumFATs*g.FATSectors + g.rootDirSectors()) * g.BytesPerSector
}

// Clusters is the number of data clusters.
func (g *FATGeometry) Clusters() int64 {
	data := g.TotalSectors - g.Reserved - g.NumFATs*g.FATSectors - g.rootDirSectors()
	if data <= 0 || g.SectorsPerCluster == 0 {
		return 0
	}
	return data / g.SectorsPerCluster
}

// Size is the volume's size in bytes.
func (g *FATGeometry) Size() int64 { return g.TotalSectors * g.BytesPerSector }

// ParseFATBoot reads the geometry from a FAT boot sector (at least its first 512 bytes).
func ParseFATBoot(b []byte) (*FATGeometry, error) {
	if len(b) < 512 {
		return nil, errors.New("fat: boot sector shorter than 512 bytes")
	}
	if b[510] != 0x55 || b[511] != 0xAA {
		return nil, errors.New("fat: no boot sector signature (55 AA at byte 510)")
	}
	le16 := func(o int) int64 { return int64(binary.LittleEndian.Uint16(b[o:])) }
	le32 := func(o int) int64 { return int64(binary.LittleEndian.Uint32(b[o:])) }
	g := &FATGeometry{BytesPerSector: le16(11), SectorsPerCluster: int64(b[13]), Reserved: le16(14),
		NumFATs: int64(b[16]), RootEntries: le16(17), TotalSectors: le16(19), FATSectors: le16(22)}
	if g.TotalSectors == 0 {
		g.TotalSectors = le32(32)
	}
	bps, spc := g.BytesPerSector, g.SectorsPerCluster
	switch {
	case bps < 512 || bps > 4096 || bps&(bps-1) != 0:
		return nil, fmt.Errorf("fat: %d bytes per sector", bps)
	case spc == 0 || spc&(spc-1) != 0:
		return nil, fmt.Errorf("fat: %d sectors per cluster", spc)
	case g.Reserved == 0 || g.NumFATs == 0 || g.NumFATs > 4:
		return nil, fmt.Errorf("fat: %d reserved sectors, %d FATs", g.Reserved, g.NumFATs)
	}
	if g.FATSectors == 0 {
		// FAT32: the 16-bit FAT size is zero and the extended BPB holds the rest.
		g.FATSectors = le32(36)
		g.RootCluster = uint32(le32(44))
		g.FSInfo, g.BackupBoot = le16(48), le16(50)
		if flags := le16(40); flags&0x80 != 0 {
			g.ActiveFAT = flags & 0x0F
		}
		g.Bits = 32
	}
	if g.FATSectors == 0 || g.TotalSectors == 0 {
		return nil, errors.New("fat: FAT size or total sectors is zero")
	}
	n := g.Clusters()
	switch {
	case g.Bits == 32:
		if g.RootEntries != 0 {
			return nil, errors.New("fat: FAT32 boot sector with a fixed root directory")
		}
	case n < 4085:
		g.Bits = 12
	default:
		g.Bits = 16
	}
	if g.ActiveFAT >= g.NumFATs {
		return nil, fmt.Errorf("fat: active FAT %d of %d", g.ActiveFAT, g.NumFATs)
	}
	if g.NumFATs*g.FATSectors*bps*8/int64(g.Bits) < (n+2)*g.NumFATs {
		return nil, fmt.Errorf("fat: a FAT of %d sectors cannot hold %d clusters", g.FATSectors, n)
	}
	return g, nil
}

// fatClusterRange is the cluster counts each FAT type must have (Microsoft's FAT specification
// decides the type by the count alone, and so do Windows and Linux).
func fatClusterRange(bits int) (lo, hi int64) {
	if bits == 16 {
		return 4085, 65524
	}
	return 65525, 0x0FFFFFF5 - 2
}

// PlanFATResize returns the geometry a FAT volume gets in a partition of newSize bytes on a
// disk with sectorSize-byte logical sectors, or why it cannot. usedClusters is the number of used
// data clusters, -1 when unknown (then the FAT itself is checked when the resize runs).
func PlanFATResize(old *FATGeometry, newSize int64, sectorSize int, usedClusters int64) (*FATGeometry, error) {
	if old.Bits == 12 {
		return nil, errors.New("FAT12 volumes are not resized (floppy-sized; nothing needs it)")
	}
	bps := int64(sectorSize)
	c := old.ClusterBytes()
	if c < bps || c%bps != 0 {
		return nil, fmt.Errorf("its %d-byte clusters are smaller than the target's %d-byte sectors; only a reformat can change that", c, bps)
	}
	n := *old
	n.BytesPerSector, n.SectorsPerCluster = bps, c/bps
	// The reserved area keeps its size in bytes (boot code may live there), and on FAT32 keeps
	// room for the boot sector, FSInfo and their backups at their usual sector numbers.
	n.Reserved = (old.Reserved*old.BytesPerSector + bps - 1) / bps
	if n.Bits == 32 {
		n.FSInfo, n.BackupBoot = 1, 6
		n.Reserved = max(n.Reserved, 8)
	}
	n.TotalSectors = newSize / bps
	if n.Bits == 16 && n.TotalSectors > 0xFFFFFFFF {
		return nil, errors.New("too big for FAT16")
	}
	// Smallest FAT that holds the cluster count it leaves room for: the count shrinks as the FAT
	// grows, so iterating from a FAT of one sector converges upward.
	n.FATSectors = 1
	for i := 0; i < 64; i++ {
		need := ((n.Clusters()+2)*int64(n.Bits)/8 + bps - 1) / bps
		if need <= n.FATSectors {
			break
		}
		n.FATSectors = need
	}
	cl := n.Clusters()
	lo, hi := fatClusterRange(n.Bits)
	if cl < lo || cl > hi {
		return nil, fmt.Errorf("FAT%d must have %d to %d clusters; %d bytes with %d-byte clusters gives %d (changing the FAT type is a reformat)",
			n.Bits, lo, hi, newSize, c, cl)
	}
	if usedClusters > cl {
		need := n.DataStart() + usedClusters*c
		return nil, fmt.Errorf("its %d used clusters need %d bytes; the new partition has %d (%d bytes missing)", usedClusters, need, newSize, need-newSize)
	}
	return &n, nil
}

// fatTable is a volume's FAT read into memory.
type fatTable struct {
	b       []byte
	bits    int
	entries int64 // entries that describe clusters (2 … entries−1 are clusters)
}

func (t *fatTable) entry(i int64) uint32 {
	if t.bits == 16 {
		return uint32(binary.LittleEndian.Uint16(t.b[2*i:]))
	}
	return binary.LittleEndian.Uint32(t.b[4*i:]) & 0x0FFFFFFF
}

func readFAT(src io.ReaderAt, old *FATGeometry) (*fatTable, error) {
	fat := make([]byte, old.FATSectors*old.BytesPerSector)
	if _, err := src.ReadAt(fat, (old.Reserved+old.ActiveFAT*old.FATSectors)*old.BytesPerSector); err != nil {
		return nil, fmt.Errorf("fat: reading the FAT: %w", err)
	}
	return &fatTable{b: fat, bits: old.Bits, entries: min(old.Clusters()+2, int64(len(fat))*8/int64(old.Bits))}, nil
}

// fatBad is the bad-cluster mark of a FAT of this width.
func (t *fatTable) bad() uint32 {
	if t.bits == 16 {
		return 0xFFF7
	}
	return 0x0FFFFFF7
}

// layout counts the used clusters and, when some lie beyond the new count (newEntries − 2
// clusters), gives them the lowest free numbers below it: remap old → new. Bad clusters beyond
// the new end are dropped (they are no longer part of the volume); bad ones inside stay bad.
func (t *fatTable) layout(n *FATGeometry) (used int64, remap map[uint32]uint32, err error) {
	newEntries := n.Clusters() + 2
	next := int64(2) // the next free cluster to try, below newEntries
	for i := int64(2); i < t.entries; i++ {
		v := t.entry(i)
		if v == 0 || (i >= newEntries && v == t.bad()) {
			continue
		}
		used++
		if i < newEntries {
			continue
		}
		for next < newEntries && t.entry(next) != 0 {
			next++
		}
		if next >= newEntries {
			return 0, nil, fmt.Errorf("fat: more used clusters than the resized volume's %d (%d bytes missing at least)", newEntries-2, n.ClusterBytes())
		}
		if remap == nil {
			remap = map[uint32]uint32{}
		}
		remap[uint32(i)] = uint32(next)
		next++
	}
	if free := newEntries - 2 - int64(len(remap)); used > newEntries-2 || free < 0 {
		return 0, nil, fmt.Errorf("fat: %d used clusters, the resized volume has %d (%d bytes missing)", used, newEntries-2, (used-newEntries+2)*n.ClusterBytes())
	}
	return used, remap, nil
}

// CheckFATResize reads the FAT of the volume in src and checks that ResizeFAT can make it
// geometry n: the used clusters must fit.
func CheckFATResize(src io.ReaderAt, old, n *FATGeometry) error {
	t, err := readFAT(src, old)
	if err != nil {
		return err
	}
	_, _, err = t.layout(n)
	return err
}

// ResizeFAT writes the FAT volume read from src (with geometry old) into dst as a volume of
// geometry n (from PlanFATResize), whose partition starts at sector hidden of its disk. Only the
// metadata and the used clusters are written; dst must not be src.
func ResizeFAT(src io.ReaderAt, dst io.WriterAt, old, n *FATGeometry, hidden uint32) error {
	t, err := readFAT(src, old)
	if err != nil {
		return err
	}
	entries := t.entries
	newEntries := n.Clusters() + 2
	used, remap, err := t.layout(n)
	if err != nil {
		return err
	}
	moved := func(c uint32) uint32 {
		if m, ok := remap[c]; ok {
			return m
		}
		return c
	}
	n.RootCluster = moved(old.RootCluster)
	// The new FAT: every entry kept by number (FAT32's reserved top bits too), moved clusters'
	// entries at their new numbers, and every link to a moved cluster redirected.
	nfat := make([]byte, n.FATSectors*n.BytesPerSector)
	width := int64(n.Bits / 8)
	put := func(i int64, v uint32) {
		if n.Bits == 16 {
			binary.LittleEndian.PutUint16(nfat[2*i:], uint16(v))
		} else {
			top := binary.LittleEndian.Uint32(nfat[4*i:]) & 0xF0000000
			binary.LittleEndian.PutUint32(nfat[4*i:], top|v&0x0FFFFFFF)
		}
	}
	copy(nfat, t.b[:min(int64(len(t.b)), min(newEntries, entries)*width)])
	for c, f := range remap {
		put(int64(f), t.entry(int64(c)))
	}
	for i := int64(2); remap != nil && i < newEntries; i++ {
		var v uint32
		if n.Bits == 16 {
			v = uint32(binary.LittleEndian.Uint16(nfat[2*i:]))
		} else {
			v = binary.LittleEndian.Uint32(nfat[4*i:]) & 0x0FFFFFFF
		}
		if m, ok := remap[v]; ok {
			put(i, m)
		}
	}

	// The reserved area: the old bytes as far as they fit (boot code, FSInfo), then the fields.
	res := make([]byte, n.Reserved*n.BytesPerSector)
	oldRes := make([]byte, old.Reserved*old.BytesPerSector)
	if _, err := src.ReadAt(oldRes, 0); err != nil {
		return fmt.Errorf("fat: reading the reserved sectors: %w", err)
	}
	boot := make([]byte, n.BytesPerSector)
	copy(boot, oldRes[:512])
	var fsinfo []byte
	if n.Bits == 32 && old.FSInfo > 0 && old.FSInfo < old.Reserved {
		fsinfo = make([]byte, n.BytesPerSector)
		copy(fsinfo, oldRes[old.FSInfo*old.BytesPerSector:old.FSInfo*old.BytesPerSector+512])
	}
	if n.BytesPerSector == old.BytesPerSector {
		copy(res, oldRes)
	}
	le16 := binary.LittleEndian.PutUint16
	le32 := binary.LittleEndian.PutUint32
	le16(boot[11:], uint16(n.BytesPerSector))
	boot[13] = byte(n.SectorsPerCluster)
	le16(boot[14:], uint16(n.Reserved))
	le32(boot[28:], hidden)
	if n.Bits == 32 {
		le16(boot[19:], 0)
		le32(boot[32:], uint32(n.TotalSectors))
		le32(boot[36:], uint32(n.FATSectors))
		le16(boot[48:], uint16(n.FSInfo))
		le16(boot[50:], uint16(n.BackupBoot))
		le32(boot[44:], n.RootCluster)
	} else {
		if n.TotalSectors < 0x10000 {
			le16(boot[19:], uint16(n.TotalSectors))
			le32(boot[32:], 0)
		} else {
			le16(boot[19:], 0)
			le32(boot[32:], uint32(n.TotalSectors))
		}
		le16(boot[22:], uint16(n.FATSectors))
	}
	if n.Reserved*n.BytesPerSector < 512 || uint64(n.Reserved) > 0xFFFF {
		return errors.New("fat: reserved area out of range")
	}
	sector := func(i int64) []byte { return res[i*n.BytesPerSector : (i+1)*n.BytesPerSector] }
	copy(sector(0), boot)
	if n.Bits == 32 {
		if fsinfo == nil || string(fsinfo[0:4]) != "RRaA" || string(fsinfo[484:488]) != "rrAa" {
			fsinfo = make([]byte, n.BytesPerSector)
			copy(fsinfo[0:], "RRaA")
			copy(fsinfo[484:], "rrAa")
			fsinfo[510], fsinfo[511] = 0x55, 0xAA
		}
		// The free count is exact (counted above); the next-free hint is "unknown".
		le32(fsinfo[488:], uint32(n.Clusters()-used))
		le32(fsinfo[492:], 0xFFFFFFFF)
		copy(sector(n.FSInfo), fsinfo)
		copy(sector(n.BackupBoot), boot)
		copy(sector(n.BackupBoot+1), fsinfo)
	}
	if _, err := dst.WriteAt(res, 0); err != nil {
		return fmt.Errorf("fat: writing the reserved sectors: %w", err)
	}
	for i := int64(0); i < n.NumFATs; i++ {
		if _, err := dst.WriteAt(nfat, (n.Reserved+i*n.FATSectors)*n.BytesPerSector); err != nil {
			return fmt.Errorf("fat: writing FAT %d: %w", i+1, err)
		}
	}
	var root []byte
	if n.Bits == 16 {
		// The fixed root directory sits between the FATs and the data area.
		root = make([]byte, n.rootDirSectors()*n.BytesPerSector)
		if _, err := src.ReadAt(root[:old.RootEntries*32], (old.Reserved+old.NumFATs*old.FATSectors)*old.BytesPerSector); err != nil {
			return fmt.Errorf("fat: reading the root directory: %w", err)
		}
	}
	// Used clusters from their old place to their new one: in runs where the numbers stay, one
	// by one where a cluster gets a new number.
	c := old.ClusterBytes()
	oldAt := func(cl int64) int64 { return old.DataStart() + (cl-2)*c }
	newAt := func(cl int64) int64 { return n.DataStart() + (cl-2)*c }
	keep := func(i int64) bool { return i < newEntries && t.entry(i) != 0 }
	buf := make([]byte, 0, 4<<20)
	for i := int64(2); i < entries; {
		if !keep(i) {
			if f, ok := remap[uint32(i)]; ok {
				b := buf[:c]
				if _, err := src.ReadAt(b, oldAt(i)); err != nil && !errors.Is(err, io.EOF) {
					return fmt.Errorf("fat: reading cluster %d: %w", i, err)
				}
				if _, err := dst.WriteAt(b, newAt(int64(f))); err != nil {
					return fmt.Errorf("fat: writing cluster %d as %d: %w", i, f, err)
				}
			}
			i++
			continue
		}
		j := i
		for j < entries && keep(j) && (j-i+1)*c <= int64(cap(buf)) {
			j++
		}
		b := buf[:(j-i)*c]
		if _, err := src.ReadAt(b, oldAt(i)); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("fat: reading clusters %d–%d: %w", i, j-1, err)
		}
		if _, err := dst.WriteAt(b, newAt(i)); err != nil {
			return fmt.Errorf("fat: writing clusters %d–%d: %w", i, j-1, err)
		}
		i = j
	}
	if remap != nil {
		// Directory entries naming moved clusters: every directory is read from the old volume
		// (old numbers, old chains), patched and written where its clusters now are.
		d := &dirPatcher{src: src, dst: dst, t: t, old: old, remap: remap, oldAt: oldAt, newAt: newAt, moved: moved, seen: map[uint32]bool{}}
		if n.Bits == 16 {
			if err := d.patch(root, 0); err != nil {
				return err
			}
		} else if err := d.dir(old.RootCluster, 0); err != nil {
			return err
		}
	}
	if root != nil {
		if _, err := dst.WriteAt(root, (n.Reserved+n.NumFATs*n.FATSectors)*n.BytesPerSector); err != nil {
			return fmt.Errorf("fat: writing the root directory: %w", err)
		}
	}
	return nil
}

// dirPatcher rewrites the cluster numbers in directories after clusters were renumbered.
type dirPatcher struct {
	src          io.ReaderAt
	dst          io.WriterAt
	t            *fatTable
	old          *FATGeometry
	remap        map[uint32]uint32
	oldAt, newAt func(int64) int64
	moved        func(uint32) uint32
	seen         map[uint32]bool
}

// dir patches the directory whose chain starts at old cluster first.
func (d *dirPatcher) dir(first uint32, depth int) error {
	if depth > 64 {
		return errors.New("fat: directories nested more than 64 deep (a loop?)")
	}
	c := d.old.ClusterBytes()
	var chain []uint32
	for cl := first; cl >= 2 && int64(cl) < d.t.entries; cl = d.t.entry(int64(cl)) {
		if d.seen[cl] {
			if len(chain) == 0 {
				return nil // a directory reached twice (a hard link FAT does not have): done once
			}
			return fmt.Errorf("fat: the directory chain from cluster %d loops at %d", first, cl)
		}
		d.seen[cl] = true
		chain = append(chain, cl)
	}
	buf := make([]byte, int64(len(chain))*c)
	for k, cl := range chain {
		if _, err := d.src.ReadAt(buf[int64(k)*c:int64(k+1)*c], d.oldAt(int64(cl))); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("fat: reading directory cluster %d: %w", cl, err)
		}
	}
	if err := d.patch(buf, depth); err != nil {
		return err
	}
	for k, cl := range chain {
		if _, err := d.dst.WriteAt(buf[int64(k)*c:int64(k+1)*c], d.newAt(int64(d.moved(cl)))); err != nil {
			return fmt.Errorf("fat: writing directory cluster %d: %w", cl, err)
		}
	}
	return nil
}

// patch renumbers the entries of one directory's bytes and descends into its subdirectories.
func (d *dirPatcher) patch(b []byte, depth int) error {
	var subdirs []uint32
	for off := 0; off+32 <= len(b); off += 32 {
		e := b[off : off+32]
		if e[0] == 0 {
			break // no entries after the end mark
		}
		if e[0] == 0xE5 || e[11] == 0x0F || e[11]&0x08 != 0 {
			continue // deleted, a long-name part, the volume label
		}
		cl := uint32(binary.LittleEndian.Uint16(e[26:]))
		if d.t.bits == 32 {
			cl |= uint32(binary.LittleEndian.Uint16(e[20:])) << 16
		}
		if m, ok := d.remap[cl]; ok {
			binary.LittleEndian.PutUint16(e[26:], uint16(m))
			if d.t.bits == 32 {
				binary.LittleEndian.PutUint16(e[20:], uint16(m>>16))
			}
		}
		dot := e[0] == '.' && (e[1] == ' ' || e[1] == '.')
		if e[11]&0x10 != 0 && !dot && cl >= 2 {
			subdirs = append(subdirs, cl)
		}
	}
	for _, cl := range subdirs {
		if err := d.dir(cl, depth+1); err != nil {
			return err
		}
	}
	return nil
}
