package write

import (
	"context"
	"fmt"

	"github.com/cauldron-dr/cauldron/partition"
	"github.com/cauldron-dr/cauldron/restore/target"
	"github.com/cauldron-dr/cauldron/tib"
	"github.com/cauldron-dr/cauldron/tib/usedblocks"
)

// A planned restore rewrites some captured bytes on purpose: the boot sectors of FAT and NTFS
// volumes (fixBoots: the hidden-sectors field names the partition's new start, NTFS's sector size
// follows the target's, NTFS's backup boot sector is the partition's last sector) — also where
// the volume did not move, since a volume made on a file and copied into place may have had any
// value there — and GRUB's core.img, whose blocklists follow a moved partition (FixGRUBCore).
// The verification must not call those bytes damage, nor leave them unchecked: it lays the
// generation out in memory as the plan lays it out on the target, applies the same rewrites
// there, and compares the target's cells with the result.

// plannedRewrites returns, for each region of the disk, the cells a planned restore changes on
// purpose, as they must read on the target (unused blocks zero, as readCell reads them).
func plannedRewrites(ctx context.Context, r *tib.Repository, regions []tib.RegionData, plan *partition.LayoutPlan, srcLSS int64) (map[*tib.Region]map[int64][]byte, error) {
	lss := int64(plan.Layout.LogicalSectorSize)
	img := &plannedImage{ctx: ctx, r: r, boot: plan.Layout.BootCode}
	moves := map[int]partition.Move{}
	for _, m := range plan.Moves {
		moves[m.Number] = m
	}
	for i := range regions {
		rd := &regions[i]
		m, ok := moves[rd.Partition]
		if rd.Kind != tib.RegionPartition || !ok {
			continue
		}
		img.parts = append(img.parts, &plannedRegion{RegionData: rd, move: m, loaded: map[int64][]byte{}, touched: map[int64]bool{}})
	}
	// The same rewrites as fixBoots and writeDirect, in the same order.
	for _, p := range img.parts {
		m := p.move
		part := target.Section(img, m.NewStart, m.NewSize)
		var err error
		switch {
		case m.Filesystem == "ntfs":
			err = partition.FixNTFSBoot(part, m.NewSize, int(lss), uint64(m.NewStart/lss))
		case m.Filesystem == "vfat" && m.NewSize == m.OldSize && lss == srcLSS:
			err = partition.FixFATBoot(part, uint64(m.NewStart/lss))
		}
		if err != nil {
			return nil, fmt.Errorf("partition %d (%s): the boot sector as the restore rewrote it: %w", m.Number, m.Filesystem, err)
		}
	}
	if _, err := partition.FixGRUBCore(img, lss, srcLSS, plan.Moves); err != nil {
		return nil, fmt.Errorf("GRUB's core.img as the restore rewrote it: %w", err)
	}
	out := map[*tib.Region]map[int64][]byte{}
	for _, p := range img.parts {
		for c := range p.touched {
			b := p.loaded[c]
			if !p.Whole && p.Used != nil {
				maskUnused(b, p.Region, p.Used, c)
			}
			if out[p.Region] == nil {
				out[p.Region] = map[int64][]byte{}
			}
			out[p.Region][c] = b
		}
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

// plannedImage is the target as a planned restore writes it, in memory and only where it is
// read: each moved partition's captured bytes at its new start (cell by cell, loaded from the
// repository when first read), the plan's boot code in sector 0, zeros elsewhere. Writes land in
// the partitions' cells; writes elsewhere (sector 0, the new table) are dropped: the verify does
// not compare those bytes.
type plannedImage struct {
	ctx   context.Context
	r     *tib.Repository
	boot  []byte
	parts []*plannedRegion
}

// plannedRegion is one partition's region in a plannedImage.
type plannedRegion struct {
	*tib.RegionData
	move    partition.Move
	loaded  map[int64][]byte
	touched map[int64]bool
}

// cell returns cell c of the region, loading it from the repository (zeros when not stored).
func (p *plannedRegion) cell(ctx context.Context, r *tib.Repository, c int64) ([]byte, error) {
	if b, ok := p.loaded[c]; ok {
		return b, nil
	}
	s, e := p.CellRange(c)
	b := make([]byte, e-s)
	for _, cl := range p.Cells {
		if cl.Index != c {
			continue
		}
		plain, err := r.LoadBlob(ctx, cl.ID, nil)
		if err != nil {
			return nil, err
		}
		if len(plain) != len(b) {
			return nil, fmt.Errorf("chunk %s has %d bytes, want %d", cl.ID.Short(), len(plain), len(b))
		}
		copy(b, plain)
	}
	p.loaded[c] = b
	return b, nil
}

// piece finds what holds target byte pos: a partition's cell (with the offset in it and how
// many bytes of it follow), or nothing (n is then how far the nothing reaches, at most max).
func (img *plannedImage) piece(pos, max int64) (p *plannedRegion, c, in, n int64) {
	next := pos + max
	for _, q := range img.parts {
		lo, hi := q.move.NewStart, q.move.NewStart+min(q.move.OldSize, q.move.NewSize)
		if pos >= lo && pos < hi {
			off := pos - lo
			c = off / q.CellSize
			s, e := q.CellRange(c)
			return q, c, q.Start + off - s, min(max, e-(q.Start+off), hi-pos)
		}
		if lo > pos && lo < next {
			next = lo
		}
	}
	return nil, 0, 0, next - pos
}

func (img *plannedImage) ReadAt(b []byte, off int64) (int, error) {
	for at := int64(0); at < int64(len(b)); {
		pos := off + at
		p, c, in, n := img.piece(pos, int64(len(b))-at)
		dst := b[at : at+n]
		switch {
		case p != nil:
			cell, err := p.cell(img.ctx, img.r, c)
			if err != nil {
				return int(at), err
			}
			copy(dst, cell[in:])
		default:
			clear(dst)
			if pos < int64(len(img.boot)) {
				copy(dst, img.boot[pos:])
			}
		}
		at += n
	}
	return len(b), nil
}

func (img *plannedImage) WriteAt(b []byte, off int64) (int, error) {
	for at := int64(0); at < int64(len(b)); {
		p, c, in, n := img.piece(off+at, int64(len(b))-at)
		if p != nil {
			cell, err := p.cell(img.ctx, img.r, c)
			if err != nil {
				return int(at), err
			}
			copy(cell[in:], b[at:at+n])
			p.touched[c] = true
		}
		at += n
	}
	return len(b), nil
}
