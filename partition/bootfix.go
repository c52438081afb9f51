package partition

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// FAT and NTFS boot sectors record where their partition starts ("hidden sectors", BPB offset
// 0x1C, in the disk's sectors) and the sector size. The boot code of DOS, Windows (bootmgr's
// volume boot record) and syslinux reads the start from there to find the rest of the volume, and
// Windows refuses an NTFS volume whose sector size is smaller than the disk's. After a volume is
// restored at a new start or onto a disk with another sector size, these fields must follow.

// FixFATBoot sets the hidden-sectors field of the FAT volume in rw (the partition: offset 0 is
// its boot sector) and of its FAT32 backup boot sector. The sector size is not changed here:
// that needs new FAT geometry (ResizeFAT).
func FixFATBoot(rw DiskReadWriter, startSector uint64) error {
	b := make([]byte, 512)
	if _, err := rw.ReadAt(b, 0); err != nil {
		return fmt.Errorf("fat: reading the boot sector: %w", err)
	}
	g, err := ParseFATBoot(b)
	if err != nil {
		return err
	}
	if startSector > 0xFFFFFFFF {
		return fmt.Errorf("fat: partition start sector %d does not fit the 32-bit hidden-sectors field", startSector)
	}
	offs := []int64{0}
	if g.Bits == 32 && g.BackupBoot > 0 && g.BackupBoot < g.Reserved {
		offs = append(offs, g.BackupBoot*g.BytesPerSector)
	}
	for _, off := range offs {
		s := make([]byte, 512)
		if _, err := rw.ReadAt(s, off); err != nil {
			return fmt.Errorf("fat: reading the boot sector at byte %d: %w", off, err)
		}
		if s[510] != 0x55 || s[511] != 0xAA {
			continue // a backup that was never written: nothing to keep in step
		}
		binary.LittleEndian.PutUint32(s[28:], uint32(startSector))
		if _, err := rw.WriteAt(s, off); err != nil {
			return fmt.Errorf("fat: writing the boot sector at byte %d: %w", off, err)
		}
	}
	return nil
}

// NTFSGeometry is what an NTFS boot sector says about sizes.
type NTFSGeometry struct {
	BytesPerSector    int64
	SectorsPerCluster int64
	TotalSectors      int64
}

// ClusterBytes is the cluster size in bytes.
func (g *NTFSGeometry) ClusterBytes() int64 { return g.BytesPerSector * g.SectorsPerCluster }

// ParseNTFSBoot reads the sizes from an NTFS boot sector.
func ParseNTFSBoot(b []byte) (*NTFSGeometry, error) {
	if len(b) < 512 || string(b[3:11]) != "NTFS    " {
		return nil, errors.New("ntfs: no NTFS boot sector")
	}
	g := &NTFSGeometry{BytesPerSector: int64(binary.LittleEndian.Uint16(b[11:])), TotalSectors: int64(binary.LittleEndian.Uint64(b[40:]))}
	spc := int64(b[13])
	if spc > 0x80 {
		// Values above 0x80 are a negative power of two: clusters of 2^(256−n) sectors.
		spc = 1 << (256 - spc)
	}
	g.SectorsPerCluster = spc
	bps := g.BytesPerSector
	if bps < 256 || bps > 4096 || bps&(bps-1) != 0 || spc == 0 || spc&(spc-1) != 0 || g.TotalSectors <= 0 {
		return nil, fmt.Errorf("ntfs: implausible boot sector: %d bytes per sector, %d sectors per cluster, %d sectors", bps, spc, g.TotalSectors)
	}
	return g, nil
}

// FixNTFSBoot sets the NTFS volume's hidden-sectors field to startSector and its sector size to
// sectorSize (recounting sectors per cluster and total sectors, which keeps the cluster count),
// in the boot sector and in the backup boot sector in the partition's last sector. partSize is
// the partition's size.
func FixNTFSBoot(rw DiskReadWriter, partSize int64, sectorSize int, startSector uint64) error {
	b := make([]byte, 512)
	if _, err := rw.ReadAt(b, 0); err != nil {
		return fmt.Errorf("ntfs: reading the boot sector: %w", err)
	}
	g, err := ParseNTFSBoot(b)
	if err != nil {
		return err
	}
	if startSector > 0xFFFFFFFF {
		// The field is 32 bits in NTFS too; Windows boots such volumes only by UEFI.
		startSector = 0
	}
	ss := int64(sectorSize)
	if ss != g.BytesPerSector {
		c := g.ClusterBytes()
		if c < ss {
			return fmt.Errorf("ntfs: its %d-byte clusters are smaller than the target's %d-byte sectors; only a reformat can change that", c, ss)
		}
		// The volume's bytes, now counted in the new sectors: the cluster count is unchanged,
		// and the backup boot sector goes to the sector after the last one.
		g.TotalSectors = g.TotalSectors * g.BytesPerSector / ss
		g.BytesPerSector, g.SectorsPerCluster = ss, c/ss
		binary.LittleEndian.PutUint16(b[11:], uint16(ss))
		b[13] = byte(g.SectorsPerCluster)
		if g.SectorsPerCluster > 0x80 {
			return fmt.Errorf("ntfs: %d sectors per cluster", g.SectorsPerCluster)
		}
		binary.LittleEndian.PutUint64(b[40:], uint64(g.TotalSectors))
	}
	binary.LittleEndian.PutUint32(b[28:], uint32(startSector))
	// The backup boot sector is the partition's last sector (where Windows, mkntfs and
	// ntfsresize put it and ntfsfix looks for it), after the volume's sectors.
	backup := partSize - g.BytesPerSector
	if g.TotalSectors*g.BytesPerSector > backup {
		return fmt.Errorf("ntfs: the volume (%d sectors of %d bytes) does not fit its %d-byte partition", g.TotalSectors, g.BytesPerSector, partSize)
	}
	if _, err := rw.WriteAt(b, 0); err != nil {
		return fmt.Errorf("ntfs: writing the boot sector: %w", err)
	}
	// The backup is the whole first sector (ntfsfix compares all of it; with 4096-byte sectors
	// the boot code's continuation follows the first 512 bytes).
	sec := make([]byte, g.BytesPerSector)
	if _, err := rw.ReadAt(sec, 0); err != nil {
		return fmt.Errorf("ntfs: reading the boot sector: %w", err)
	}
	if _, err := rw.WriteAt(sec, backup); err != nil {
		return fmt.Errorf("ntfs: writing the backup boot sector: %w", err)
	}
	return nil
}
