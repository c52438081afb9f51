package usedblocks

import (
	"encoding/binary"
	"fmt"
	"io"
)

const (
	// fatMaxBlocks bounds the map of a FAT volume whose data region is not aligned to its
	// clusters (see FAT): 2^27 blocks is a 16 MiB map. Past that, blocks grow towards the cluster
	// size and straddled blocks are marked whole.
	fatMaxBlocks = 1 << 27

	// Largest cluster counts of each FAT width, as Microsoft's specification and the Linux
	// kernel (MAX_FAT12, MAX_FAT16, MAX_FAT32) define them.
	fat12MaxClusters = 4084
	fat16MaxClusters = 65524
	fat32MaxClusters = 0x0FFFFFF6 - 2
)

// fatFS is the layout a FAT boot sector describes, in bytes.
type fatFS struct {
	name        string // FAT12, FAT16, FAT32
	bits        int64  // width of a FAT entry
	sectorSize  int64
	clusterSize int64
	fatOffset   int64 // first FAT
	fatSize     int64
	fats        int64
	dataOffset  int64 // first byte of cluster 2
	clusters    int64 // data clusters, numbered 2..clusters+1
	end         int64 // total sectors × sector size
}

// FAT reads a FAT12/16/32 volume's allocation. The reserved sectors (boot sector, FAT32's FSInfo
// and backup boot sector), the FATs and, for FAT12/16, the root directory are used; a data cluster
// is used when its entry is non-zero in any of the FATs (free is 0; bad clusters and end-of-chain
// markers are non-zero, and copies that disagree keep both answers).
//
// The map's block size is the cluster size when the data region starts on a cluster boundary
// from the volume's start (as mkfs.fat and Windows lay it out), so that the map is exact and
// small. Otherwise it is the largest power of two dividing both the cluster size and the data
// region's offset, down to a sector, so that it stays exact; only if that made the map larger
// than fatMaxBlocks does it grow again, and then every block holding any byte of a used cluster
// is used. Either way every byte the filesystem needs is in a used block.
func FAT(r io.ReaderAt, size int64) (*Map, error) {
	r = io.NewSectionReader(r, 0, size)
	boot := make([]byte, 512)
	if err := readAt(r, boot, 0); err != nil {
		return nil, fmt.Errorf("FAT: boot sector at byte 0: %w", err)
	}
	fs, err := parseFATBoot(boot, size)
	if err != nil {
		return nil, err
	}
	used, err := fs.usedClusters(r)
	if err != nil {
		return nil, err
	}

	bs := fs.clusterSize
	for bs > fs.sectorSize && fs.dataOffset%bs != 0 {
		bs /= 2
	}
	for bs < fs.clusterSize && (size+bs-1)/bs > fatMaxBlocks {
		bs *= 2
	}
	m := newVolumeMap(bs, size, fs.end)
	m.setBytes(0, fs.dataOffset) // reserved sectors, FATs, FAT12/16 root directory
	used.Runs(0, used.Blocks, func(run Run) {
		m.setBytes(fs.dataOffset+run.Start*fs.clusterSize, run.Len*fs.clusterSize)
	})
	return m, nil
}

// parseFATBoot decodes the BIOS parameter block. The FAT width follows the Linux kernel: FAT32
// when the 16-bit FAT size is zero, otherwise FAT12 or FAT16 by cluster count, which is also
// Microsoft's rule for every volume formatted by the book.
func parseFATBoot(b []byte, size int64) (*fatFS, error) {
	le16 := func(off int) int64 { return int64(binary.LittleEndian.Uint16(b[off:])) }
	le32 := func(off int) int64 { return int64(binary.LittleEndian.Uint32(b[off:])) }
	bad := func(format string, a ...any) error {
		return fmt.Errorf("FAT: boot sector at byte 0: %s", fmt.Sprintf(format, a...))
	}
	fs := &fatFS{sectorSize: le16(0x0B)}
	switch fs.sectorSize {
	case 512, 1024, 2048, 4096:
	default:
		return nil, bad("%d bytes per sector", fs.sectorSize)
	}
	spc := int64(b[0x0D])
	if spc == 0 || spc&(spc-1) != 0 {
		return nil, bad("%d sectors per cluster is not a power of two", spc)
	}
	fs.clusterSize = spc * fs.sectorSize
	reserved := le16(0x0E)
	if reserved == 0 {
		return nil, bad("no reserved sectors: the boot sector itself is one")
	}
	fs.fats = int64(b[0x10])
	if fs.fats == 0 {
		return nil, bad("no FATs")
	}
	rootEntries := le16(0x11)
	total := le16(0x13)
	if total == 0 {
		total = le32(0x20)
	}
	fatSectors := le16(0x16)
	fat32 := fatSectors == 0
	if fat32 {
		fatSectors = le32(0x24)
		if fatSectors == 0 {
			return nil, bad("FAT size is zero")
		}
	}
	fs.end = total * fs.sectorSize
	if fs.end > size {
		return nil, bad("%d sectors of %d bytes do not fit the volume's %d bytes", total, fs.sectorSize, size)
	}
	fs.fatOffset = reserved * fs.sectorSize
	fs.fatSize = fatSectors * fs.sectorSize
	rootSectors := (rootEntries*32 + fs.sectorSize - 1) / fs.sectorSize
	dataSector := reserved + fs.fats*fatSectors + rootSectors
	if dataSector >= total {
		return nil, bad("the data region would start at sector %d, past the volume's %d sectors", dataSector, total)
	}
	fs.dataOffset = dataSector * fs.sectorSize
	fs.clusters = (total - dataSector) / spc

	switch {
	case fat32:
		fs.name, fs.bits = "FAT32", 32
		fs.clusters = min(fs.clusters, fat32MaxClusters)
	case fs.clusters <= fat12MaxClusters:
		fs.name, fs.bits = "FAT12", 12
	case fs.clusters <= fat16MaxClusters:
		fs.name, fs.bits = "FAT16", 16
	default:
		return nil, bad("%d clusters is too many for FAT16, but the FAT32 size field is not used", fs.clusters)
	}
	// Clusters the FAT has no entry for cannot be allocated; the kernel ignores them too.
	fs.clusters = min(fs.clusters, fs.fatSize*8/fs.bits-2)
	if fs.clusters < 1 {
		return nil, bad("%s with no data clusters", fs.name)
	}
	return fs, nil
}

// usedClusters returns a map with one block per data cluster (block i is cluster i+2), used when
// any FAT copy has a non-zero entry for it. FATs are read in pieces so that a 2 TiB FAT32's
// 256 MiB table is never held whole.
func (fs *fatFS) usedClusters(r io.ReaderAt) (*Map, error) {
	used := New(fs.clusterSize, fs.clusters)
	// Entries 0 and 1 are the media byte and dirty flags, not clusters.
	need := ((fs.clusters+2)*fs.bits + 7) / 8
	const chunk = 3 << 18 // a multiple of 3 and 4: FAT12 entry pairs and FAT32 entries never straddle
	buf := make([]byte, min(chunk, need))
	for f := range fs.fats {
		base := fs.fatOffset + f*fs.fatSize
		for off := int64(0); off < need; off += chunk {
			p := buf[:min(chunk, need-off)]
			if err := readAt(r, p, base+off); err != nil {
				return nil, fmt.Errorf("%s: FAT %d at byte %d: %w", fs.name, f+1, base, err)
			}
			first := off * 8 / fs.bits // entry number of p[0]
			for i := int64(0); i < int64(len(p))*8/fs.bits; i++ {
				n := first + i
				if n < 2 || n >= fs.clusters+2 {
					continue
				}
				var v uint32
				switch fs.bits {
				case 12:
					// Entry i uses bytes 3i/2 and 3i/2+1; need is rounded so both are read.
					at := i * 3 / 2
					w := uint32(binary.LittleEndian.Uint16(p[at:]))
					if i%2 == 1 {
						v = w >> 4
					} else {
						v = w & 0xFFF
					}
				case 16:
					v = uint32(binary.LittleEndian.Uint16(p[i*2:]))
				case 32:
					// The top four bits are reserved; a free cluster may still have them set.
					v = binary.LittleEndian.Uint32(p[i*4:]) & 0x0FFFFFFF
				}
				if v != 0 {
					used.Set(n - 2)
				}
			}
		}
	}
	return used, nil
}
