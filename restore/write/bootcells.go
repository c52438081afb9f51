package write

import (
	"context"
	"fmt"

	"github.com/cauldron-dr/cauldron/partition"
	"github.com/cauldron-dr/cauldron/tib"
	"github.com/cauldron-dr/cauldron/tib/crypto"
	"github.com/cauldron-dr/cauldron/tib/usedblocks"
)

// A planned restore rewrites the boot sectors of every FAT and NTFS volume on purpose (fixBoots:
// the hidden-sectors field names the partition's new start, NTFS's sector size follows the
// target's, NTFS's backup boot sector is the partition's last sector) — also where the volume did
// not move, since a volume made on a file and copied into place may have had any value there.
// The verification must not call those bytes damage, nor leave them unchecked: it applies the
// same fix to the generation's cells in memory and compares the target with the result.

// fixedBootCells returns the cells of a FAT or NTFS partition's region that the boot-sector fix
// changes, as they must read on the target (unused blocks zero, as readCell reads them).
func fixedBootCells(ctx context.Context, r *tib.Repository, g *tib.Region, cells []tib.Cell, used *usedblocks.Map, m partition.Move, lss int64) (map[int64][]byte, error) {
	mp := &memPartition{ctx: ctx, r: r, g: g, loaded: map[int64][]byte{}, touched: map[int64]bool{}, ids: map[int64]crypto.ID{}}
	for _, c := range cells {
		mp.ids[c.Index] = c.ID
	}
	start := uint64(m.NewStart / lss)
	var err error
	switch m.Filesystem {
	case "ntfs":
		err = partition.FixNTFSBoot(mp, m.NewSize, int(lss), start)
	case "vfat":
		err = partition.FixFATBoot(mp, start)
	default:
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("partition %d (%s): the boot sector as the restore rewrote it: %w", m.Number, m.Filesystem, err)
	}
	out := map[int64][]byte{}
	for c := range mp.touched {
		b := mp.loaded[c]
		if !g.Whole && used != nil {
			maskUnused(b, g, used, c)
		}
		out[c] = b
	}
	return out, nil
}

// maskUnused zeroes the blocks of a cell that the used map says are free: the target's bytes
// there are whatever it held, and readCell reads zeros in their place.
func maskUnused(b []byte, g *tib.Region, used *usedblocks.Map, cell int64) {
	bpc := g.CellSize / g.BlockSize
	b0 := cell * bpc
	next := int64(0) // offset in b up to which used blocks were kept
	used.Runs(b0, b0+bpc, func(run usedblocks.Run) {
		s := (run.Start - b0) * g.BlockSize
		clear(b[next:min(s, int64(len(b)))])
		next = min(s+run.Len*g.BlockSize, int64(len(b)))
	})
	clear(b[next:])
}

// memPartition is a partition's captured bytes in memory, loaded cell by cell as they are read:
// what FixFATBoot and FixNTFSBoot see of it. Writes past the captured region (a partition that
// grew) are dropped: no captured cell holds them.
type memPartition struct {
	ctx     context.Context
	r       *tib.Repository
	g       *tib.Region
	ids     map[int64]crypto.ID
	loaded  map[int64][]byte
	touched map[int64]bool
}

func (p *memPartition) cell(c int64) ([]byte, error) {
	if b, ok := p.loaded[c]; ok {
		return b, nil
	}
	s, e := p.g.CellRange(c)
	b := make([]byte, e-s)
	if id, ok := p.ids[c]; ok {
		plain, err := p.r.LoadBlob(p.ctx, id, nil)
		if err != nil {
			return nil, err
		}
		if len(plain) != len(b) {
			return nil, fmt.Errorf("chunk %s has %d bytes, want %d", id.Short(), len(plain), len(b))
		}
		copy(b, plain)
	}
	p.loaded[c] = b
	return b, nil
}

// each calls fn for every piece of [off, off+n) inside the region: the cell, the offset in it,
// and the offset in the caller's buffer.
func (p *memPartition) each(off int64, n int, fn func(cell []byte, c, in, at int64) int) error {
	for at := int64(0); at < int64(n); {
		pos := off + at
		if pos >= p.g.Size {
			return nil
		}
		c := pos / p.g.CellSize
		b, err := p.cell(c)
		if err != nil {
			return err
		}
		at += int64(fn(b, c, pos-c*p.g.CellSize, at))
	}
	return nil
}

func (p *memPartition) ReadAt(b []byte, off int64) (int, error) {
	clear(b)
	err := p.each(off, len(b), func(cell []byte, _, in, at int64) int { return copy(b[at:], cell[in:]) })
	if err != nil {
		return 0, err
	}
	return len(b), nil
}

func (p *memPartition) WriteAt(b []byte, off int64) (int, error) {
	err := p.each(off, len(b), func(cell []byte, c, in, at int64) int {
		p.touched[c] = true
		return copy(cell[in:], b[at:])
	})
	if err != nil {
		return 0, err
	}
	return len(b), nil
}
