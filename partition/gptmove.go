package partition

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// DiskReadWriter is what MoveBackupGPT needs of a disk: an image file or a block device.
type DiskReadWriter interface {
	io.ReaderAt
	io.WriterAt
}

// MoveBackupGPT makes a GPT disk copied verbatim onto a bigger disk valid there: the backup
// entry array and header move to the new end, the primary header's alternate LBA and last
// usable LBA follow, the protective MBR covers the new size, and the old backup header is
// zeroed so no stale GPT signature is left in what is now free space. Partitions do not change.
func MoveBackupGPT(d DiskReadWriter, oldSize, newSize int64, sectorSize int) error {
	ss := int64(sectorSize)
	if ss != 512 && ss != 4096 {
		return fmt.Errorf("gpt: sector size %d is not 512 or 4096", sectorSize)
	}
	if newSize < oldSize {
		return fmt.Errorf("gpt: the new disk (%d bytes) is smaller than the old (%d)", newSize, oldSize)
	}
	if newSize == oldSize {
		return nil
	}
	hdr := make([]byte, ss)
	if _, err := d.ReadAt(hdr, ss); err != nil {
		return fmt.Errorf("gpt: reading the primary header: %w", err)
	}
	hsize := binary.LittleEndian.Uint32(hdr[12:])
	if string(hdr[:8]) != "EFI PART" || hsize < 92 || int64(hsize) > ss {
		return errors.New("gpt: no valid primary header at LBA 1")
	}
	if gptHeaderCRC(hdr[:hsize]) != binary.LittleEndian.Uint32(hdr[16:]) {
		return errors.New("gpt: primary header checksum is wrong")
	}
	entriesLBA := int64(binary.LittleEndian.Uint64(hdr[72:]))
	count := int64(binary.LittleEndian.Uint32(hdr[80:]))
	esize := int64(binary.LittleEndian.Uint32(hdr[84:]))
	arrayBytes := count * esize
	if count <= 0 || esize < 128 || arrayBytes > 1<<24 {
		return fmt.Errorf("gpt: implausible entry array (%d entries of %d bytes)", count, esize)
	}
	array := make([]byte, arrayBytes)
	if _, err := d.ReadAt(array, entriesLBA*ss); err != nil {
		return fmt.Errorf("gpt: reading the entry array: %w", err)
	}
	if crc32.ChecksumIEEE(array) != binary.LittleEndian.Uint32(hdr[88:]) {
		return errors.New("gpt: entry array checksum is wrong")
	}
	oldBackup := int64(binary.LittleEndian.Uint64(hdr[32:]))
	newLast := newSize/ss - 1
	arraySectors := (arrayBytes + ss - 1) / ss
	backupEntries := newLast - arraySectors

	binary.LittleEndian.PutUint64(hdr[32:], uint64(newLast))         // alternate LBA
	binary.LittleEndian.PutUint64(hdr[48:], uint64(backupEntries-1)) // last usable LBA
	putGPTHeaderCRC(hdr[:hsize])
	backup := append([]byte(nil), hdr...)
	binary.LittleEndian.PutUint64(backup[24:], uint64(newLast)) // my LBA
	binary.LittleEndian.PutUint64(backup[32:], 1)               // alternate LBA
	binary.LittleEndian.PutUint64(backup[72:], uint64(backupEntries))
	putGPTHeaderCRC(backup[:hsize])

	// New backup first, then the primary that points to it: a crash in between leaves the old
	// primary, whose alternate is still the old (intact) backup.
	if _, err := d.WriteAt(array, backupEntries*ss); err != nil {
		return err
	}
	if _, err := d.WriteAt(backup, newLast*ss); err != nil {
		return err
	}
	if _, err := d.WriteAt(hdr, ss); err != nil {
		return err
	}
	if oldBackup > 1 && oldBackup < newLast-arraySectors {
		if _, err := d.WriteAt(make([]byte, ss), oldBackup*ss); err != nil {
			return err
		}
	}
	// The protective MBR's single 0xEE entry covers the disk, capped at 32 bits.
	mbr := make([]byte, 512)
	if _, err := d.ReadAt(mbr, 0); err != nil {
		return err
	}
	for i := 0; i < 4; i++ {
		e := mbr[446+16*i:]
		if e[4] == 0xEE {
			n := uint64(newLast)
			if n > 0xFFFFFFFF {
				n = 0xFFFFFFFF
			}
			binary.LittleEndian.PutUint32(e[12:], uint32(n))
			_, err := d.WriteAt(mbr, 0)
			return err
		}
	}
	return nil
}

func gptHeaderCRC(h []byte) uint32 {
	c := append([]byte(nil), h...)
	binary.LittleEndian.PutUint32(c[16:], 0)
	return crc32.ChecksumIEEE(c)
}

func putGPTHeaderCRC(h []byte) {
	binary.LittleEndian.PutUint32(h[16:], 0)
	binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h))
}
