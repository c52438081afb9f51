// Package usedblocks finds which blocks of a volume hold data, so that capture reads and stores
// only those (as partclone does). It reads the allocation structures of ext2/3/4 (block group
// bitmaps), FAT12/16/32 (the FAT) and NTFS ($Bitmap, through go-ntfs) directly from the volume,
// read-only. Any other volume has no map: capture then stores it whole, skipping all-zero blocks.
//
// The ext and FAT readers are written by hand: no maintained Go library exposes those allocation
// maps (go-diskfs reads files, not allocation state).
package usedblocks

import (
	"encoding/binary"
	"math/bits"
)

// Map is one bit per block of a volume: set when the block is in use. Blocks beyond what the
// filesystem's allocation structures cover (e.g. NTFS's backup boot sector in the volume's last
// sector, or a tail shorter than one cluster) are marked used, so that nothing the volume needs is lost.
type Map struct {
	BlockSize int64    // bytes per block
	Blocks    int64    // number of blocks in the volume
	bits      []uint64 // bit i%64 of word i/64 is block i
}

// New returns an empty map (no block used) of n blocks of blockSize bytes.
func New(blockSize, n int64) *Map {
	return &Map{BlockSize: blockSize, Blocks: n, bits: make([]uint64, (n+63)/64)}
}

// FromWords makes a map from its words, as Words returns them (used when decoding a stored map).
// It returns nil when the words do not fit n, or n or blockSize make no sense, since the words come
// from storage and may be damaged.
func FromWords(blockSize, n int64, words []uint64) *Map {
	if n < 0 || blockSize <= 0 || int64(len(words)) != (n+63)/64 {
		return nil
	}
	m := &Map{BlockSize: blockSize, Blocks: n, bits: words}
	if r := n % 64; r != 0 && len(words) > 0 {
		m.bits[len(words)-1] &= (1 << uint(r)) - 1
	}
	return m
}

// Words returns the map's words; bit i%64 of word i/64 is block i. The slice is the map's own.
func (m *Map) Words() []uint64 { return m.bits }

// Set marks block i used.
func (m *Map) Set(i int64) { m.bits[i/64] |= 1 << uint(i%64) }

// SetRange marks blocks [from, to) used. The range is clipped to the map.
func (m *Map) SetRange(from, to int64) {
	from, to = m.clip(from, to)
	for i := from; i < to; {
		if i%64 == 0 && to-i >= 64 {
			m.bits[i/64] = ^uint64(0)
			i += 64
			continue
		}
		m.Set(i)
		i++
	}
}

// Clear marks block i unused.
func (m *Map) Clear(i int64) { m.bits[i/64] &^= 1 << uint(i%64) }

// IsSet reports whether block i is used.
func (m *Map) IsSet(i int64) bool { return m.bits[i/64]&(1<<uint(i%64)) != 0 }

// Count is the number of used blocks.
func (m *Map) Count() int64 {
	var n int64
	for _, w := range m.bits {
		n += int64(bits.OnesCount64(w))
	}
	return n
}

// UsedBytes is Count times the block size.
func (m *Map) UsedBytes() int64 { return m.Count() * m.BlockSize }

// AnyInRange reports whether any block in [from, to) is used. The range is clipped to the map.
func (m *Map) AnyInRange(from, to int64) bool {
	from, to = m.clip(from, to)
	for i := from; i < to; {
		if i%64 == 0 && to-i >= 64 {
			if m.bits[i/64] != 0 {
				return true
			}
			i += 64
			continue
		}
		if m.IsSet(i) {
			return true
		}
		i++
	}
	return false
}

// Run is a stretch of consecutive used blocks [Start, Start+Len).
type Run struct{ Start, Len int64 }

// Runs calls fn for each maximal run of used blocks within [from, to), in order. The range is
// clipped to the map; a run that continues past from or to is cut there.
func (m *Map) Runs(from, to int64, fn func(Run)) {
	from, to = m.clip(from, to)
	for i := from; i < to; {
		start := m.next(i, to, true)
		if start >= to {
			return
		}
		end := m.next(start, to, false)
		fn(Run{start, end - start})
		i = end
	}
}

// next returns the first block in [i, to) whose state is used (or, with used false, unused), or to
// if there is none. It works a word at a time, so that walking the map of a multi-terabyte volume
// stays cheap.
func (m *Map) next(i, to int64, used bool) int64 {
	for i < to {
		w := m.bits[i/64]
		if !used {
			w = ^w
		}
		w >>= uint(i % 64) // bits below i are not wanted
		if w != 0 {
			j := i + int64(bits.TrailingZeros64(w))
			return min(j, to)
		}
		i = (i/64 + 1) * 64
	}
	return to
}

// clip limits [from, to) to the map's blocks, so that callers may pass ranges computed from byte
// offsets without checking them against the volume's end.
func (m *Map) clip(from, to int64) (int64, int64) {
	from = max(from, 0)
	to = min(to, m.Blocks)
	return from, to
}

// orBitmap marks used every block dst+i for which bit i of src is set, for i < n, where bit i is bit
// i%8 of byte i/8 — the order ext and NTFS allocation bitmaps use, and the Map's own. Blocks past
// the map's end are ignored, because a bitmap's last byte often describes blocks the volume lacks.
// It works on 64 bits at a time: an ext volume has one such bitmap per 128 MiB.
func (m *Map) orBitmap(dst int64, src []byte, n int64) {
	n = min(n, int64(len(src))*8, m.Blocks-dst)
	if dst < 0 || n <= 0 {
		return
	}
	for k := int64(0); k < n; k += 64 {
		var w uint64
		if k/8+8 <= int64(len(src)) {
			w = binary.LittleEndian.Uint64(src[k/8:])
		} else {
			for j, b := range src[k/8:] {
				w |= uint64(b) << (8 * uint(j))
			}
		}
		if rest := n - k; rest < 64 {
			w &= 1<<uint(rest) - 1
		}
		if w == 0 {
			continue
		}
		at := dst + k
		sh := uint(at % 64)
		m.bits[at/64] |= w << sh
		if sh != 0 && at/64+1 < int64(len(m.bits)) {
			m.bits[at/64+1] |= w >> (64 - sh)
		}
	}
}

// setBytes marks used every block that holds any byte of [off, off+n). Filesystems whose
// structures are not aligned to the map's blocks (FAT's data region) rely on this rounding outward:
// a block partly used is a used block.
func (m *Map) setBytes(off, n int64) {
	if n <= 0 {
		return
	}
	m.SetRange(off/m.BlockSize, (off+n+m.BlockSize-1)/m.BlockSize)
}
