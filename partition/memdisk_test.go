package partition

import (
	"encoding/binary"
	"errors"
	"io"
)

// memDisk is a sparse in-memory disk: 512-byte chunks that were written, zeros elsewhere. It lets
// the tests and fuzz targets describe large disks (EBRs megabytes apart, a backup GPT at the end)
// with a few sectors.
type memDisk struct {
	size   int64
	chunks map[int64][]byte
}

func newMemDisk(size int64) *memDisk { return &memDisk{size: size, chunks: map[int64][]byte{}} }

func (m *memDisk) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= m.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), m.size-off))
	for i := 0; i < n; {
		pos := off + int64(i)
		within := int(pos % 512)
		c := min(512-within, n-i)
		if s, ok := m.chunks[pos/512]; ok {
			copy(p[i:i+c], s[within:within+c])
		} else {
			clear(p[i : i+c])
		}
		i += c
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memDisk) write(off int64, b []byte) {
	for i := 0; i < len(b); {
		pos := off + int64(i)
		within := int(pos % 512)
		c := min(512-within, len(b)-i)
		s, ok := m.chunks[pos/512]
		if !ok {
			s = make([]byte, 512)
			m.chunks[pos/512] = s
		}
		copy(s[within:within+c], b[i:i+c])
		i += c
	}
}

// WriteAt makes memDisk an io.WriterAt, for the GPT builder.
func (m *memDisk) WriteAt(p []byte, off int64) (int, error) {
	m.write(off, p)
	return len(p), nil
}

// tEntry is an MBR partition entry for hand-made tables.
type tEntry struct {
	boot, typ    byte
	start, count uint32
}

// putMBR writes an MBR or EBR sector with the given entries (up to 4) and the 0x55AA signature at
// byte offset off.
func (m *memDisk) putMBR(off int64, es ...tEntry) {
	sec := make([]byte, 512)
	for i, e := range es {
		b := sec[446+16*i:]
		b[0], b[4] = e.boot, e.typ
		binary.LittleEndian.PutUint32(b[8:], e.start)
		binary.LittleEndian.PutUint32(b[12:], e.count)
	}
	sec[510], sec[511] = 0x55, 0xAA
	m.write(off, sec)
}
