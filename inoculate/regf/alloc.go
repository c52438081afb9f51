package regf

import (
	"encoding/binary"
	"sort"
)

// The allocator keeps Windows' cell rules: sizes are multiples of 8 including the 4-byte header,
// negative while allocated, and cells tile their hive bin exactly. Free cells are reused first
// (first fit, split when the rest can still hold a cell); only then does the hive grow by a new
// hive bin, a multiple of 4096 bytes, at the end.

func put16(b []byte, v uint16) { binary.LittleEndian.PutUint16(b, v) }
func put32(b []byte, v uint32) { binary.LittleEndian.PutUint32(b, v) }
func put64(b []byte, v uint64) { binary.LittleEndian.PutUint64(b, v) }

func (h *Hive) size32(off uint32) int32 { return int32(le32(h.buf[baseBlockSize+off:])) }

func (h *Hive) setSize(off uint32, s int32) { put32(h.buf[baseBlockSize+off:], uint32(s)) }

// isCellStart reports whether off is where a cell of its hive bin begins (walking the bin's
// cells, which tile it).
func (h *Hive) isCellStart(off uint32) bool {
	bin, ok := h.binOf(off)
	if !ok || off%8 != 0 {
		return false
	}
	c := bin.off + 32
	for c < off {
		s := int64(h.size32(c))
		if s < 0 {
			s = -s
		}
		if s < 8 || s%8 != 0 {
			return false
		}
		c += uint32(s)
	}
	return c == off
}

// loadFree collects the free cells once, before the first edit.
func (h *Hive) loadFree() {
	if h.freeLoaded {
		return
	}
	h.freeLoaded = true
	for _, bin := range h.bins {
		for off := bin.off + 32; off < bin.off+bin.size; {
			s := h.size32(off)
			size := uint32(s)
			if s < 0 {
				size = uint32(-int64(s))
			} else {
				h.free = append(h.free, off)
			}
			if size == 0 {
				break
			}
			off += size
		}
	}
}

func (h *Hive) removeFree(off uint32) {
	i := sort.Search(len(h.free), func(i int) bool { return h.free[i] >= off })
	if i < len(h.free) && h.free[i] == off {
		h.free = append(h.free[:i], h.free[i+1:]...)
	}
}

func (h *Hive) addFree(off uint32) {
	i := sort.Search(len(h.free), func(i int) bool { return h.free[i] >= off })
	h.free = append(h.free, 0)
	copy(h.free[i+1:], h.free[i:])
	h.free[i] = off
}

// alloc returns a zeroed allocated cell able to hold n payload bytes. It may grow h.buf, so no
// slice into h.buf may be held across a call.
func (h *Hive) alloc(n int) uint32 {
	h.loadFree()
	need := uint32(n+4+7) &^ 7
	for i, off := range h.free {
		size := uint32(h.size32(off))
		if size < need {
			continue
		}
		h.free = append(h.free[:i], h.free[i+1:]...)
		if size-need >= 16 {
			// Split: the tail stays a free cell in the same bin.
			h.setSize(off+need, int32(size-need))
			h.addFree(off + need)
			size = need
		}
		h.setSize(off, -int32(size))
		clear(h.buf[baseBlockSize+off+4 : baseBlockSize+off+size])
		return off
	}
	// Grow by a new hive bin large enough for the cell.
	binSize := (need + 32 + hbinAlign - 1) &^ (hbinAlign - 1)
	off := h.binsEnd
	h.buf = append(h.buf[:baseBlockSize+off], make([]byte, binSize)...)
	b := h.buf[baseBlockSize+off:]
	copy(b, "hbin")
	put32(b[4:], off)
	put32(b[8:], binSize)
	h.bins = append(h.bins, hbin{off, binSize})
	h.binsEnd = off + binSize
	put32(h.buf[40:], h.binsEnd)
	cell := off + 32
	rest := binSize - 32
	if rest-need >= 8 {
		h.setSize(cell+need, int32(rest-need))
		h.addFree(cell + need)
		rest = need
	}
	h.setSize(cell, -int32(rest))
	return cell
}

// freeCell releases a cell, merging it with a free cell right after it in the same bin. An
// offset that is no cell's start (a damaged hive's stale list pointer) is left alone: freeing it
// would corrupt whatever lies there.
func (h *Hive) freeCell(off uint32) {
	if off == noCell || !h.isCellStart(off) {
		return
	}
	h.loadFree()
	s := h.size32(off)
	if s >= 0 {
		return
	}
	size := uint32(-int64(s))
	bin, _ := h.binOf(off)
	if next := off + size; next < bin.off+bin.size {
		if ns := h.size32(next); ns > 0 {
			h.removeFree(next)
			size += uint32(ns)
		}
	}
	// Merge with a free cell just before, as Windows does, so that freeing leaves no run of
	// small free cells that no later allocation fits. The free list is sorted by offset, so
	// that cell, if any, is the list's last entry below off.
	if i := sort.Search(len(h.free), func(i int) bool { return h.free[i] >= off }); i > 0 {
		prev := h.free[i-1]
		if ps := h.size32(prev); ps > 0 && prev >= bin.off && prev+uint32(ps) == off {
			h.setSize(prev, ps+int32(size))
			return
		}
	}
	h.setSize(off, int32(size))
	h.addFree(off)
}

// payload returns the payload of an allocated cell the editor itself knows to be valid.
func (h *Hive) payload(off uint32) []byte {
	size := uint32(-int64(h.size32(off)))
	return h.buf[baseBlockSize+off+4 : baseBlockSize+off+size]
}

// newCell allocates a cell and fills it with data.
func (h *Hive) newCell(data []byte) uint32 {
	off := h.alloc(len(data))
	copy(h.payload(off), data)
	return off
}
