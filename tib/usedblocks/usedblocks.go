package usedblocks

import (
	"errors"
	"fmt"
	"io"
)

// ErrUnsupported is wrapped by errors that mean "this volume's allocation map cannot be trusted or
// understood" rather than "this volume is damaged or truncated": a journal waiting to be replayed,
// a feature that changes the on-disk layout in ways this package does not know. The caller should
// then store the volume whole instead of guessing; errors.Is(err, ErrUnsupported) tells the cases
// apart.
var ErrUnsupported = errors.New("allocation map not usable; store the volume whole")

// ForFilesystem dispatches by filesystem type name, as package partition's DetectFilesystem reports
// it: "ext2", "ext3", "ext4" → Ext, "vfat" → FAT, "ntfs" → NTFS. Any other type returns (nil, nil):
// there is no map, and the caller stores the volume whole.
func ForFilesystem(fsType string, r io.ReaderAt, size int64) (*Map, error) {
	switch fsType {
	case "ext2", "ext3", "ext4":
		return Ext(r, size)
	case "vfat":
		return FAT(r, size)
	case "ntfs":
		return NTFS(r, size)
	}
	return nil, nil
}

// readAt fills buf from r at off, turning a short read into an error. io.ReaderAt may return
// io.EOF together with a full buffer at the end of the volume; that is a success.
func readAt(r io.ReaderAt, buf []byte, off int64) error {
	n, err := r.ReadAt(buf, off)
	if n == len(buf) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("reading %d bytes at byte %d: %w", len(buf), off, err)
}

// newVolumeMap makes an empty map covering size bytes in blocks of bs bytes, the last one perhaps
// partial, and marks used everything from fsEnd (the end of what the filesystem describes) to the
// end of the volume, plus a trailing partial block. Those bytes are outside the filesystem's
// allocation structures, but may still matter: NTFS keeps its backup boot sector there, and md
// RAID (metadata 0.90 and 1.0) its superblock; the price is at most the slack between filesystem
// and partition.
func newVolumeMap(bs, size, fsEnd int64) *Map {
	m := New(bs, (size+bs-1)/bs)
	m.SetRange(fsEnd/bs, m.Blocks)
	if size%bs != 0 {
		m.Set(m.Blocks - 1)
	}
	return m
}
