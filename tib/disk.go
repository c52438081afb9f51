package tib

import (
	"context"
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/cauldron-dr/cauldron/tib/crypto"
	"github.com/cauldron-dr/cauldron/tib/usedblocks"
)

// What a restore reads: a generation's disk as regions with their chunk lists and used maps
// (DiskRegions), and the disk's bytes as captured (DiskReader). Writing them anywhere is the
// recovery side's job (package restore/write); the archive only reads.

// DamageError names what a damaged or missing chunk hits.
type DamageError struct {
	Machine    string
	Generation crypto.ID
	Disk       string
	Start, End int64 // byte range of the disk affected
	Err        error
}

func (e *DamageError) Error() string {
	return fmt.Sprintf("machine %s, generation %s, %s bytes %d–%d: %v", e.Machine, e.Generation.Short(), e.Disk, e.Start, e.End-1, e.Err)
}

func (e *DamageError) Unwrap() error { return e.Err }

// CellRange is the disk byte range [start, end) of a region's cell.
func (g *Region) CellRange(cell int64) (int64, int64) {
	s := cell * g.CellSize
	return g.Start + s, g.Start + min(s+g.CellSize, g.Size)
}

func cellRange(g *Region, cell int64) (int64, int64) { return g.CellRange(cell) }

// RegionData is a region with its chunk list and used-block map.
type RegionData struct {
	*Region
	Cells []Cell
	Used  *usedblocks.Map
}

// DiskRegions loads every region of a generation's disk with its chunk list and used map, and
// checks that every chunk they name is indexed (LoadIndex first), so that a restore fails before
// it writes anything. Damage is a *DamageError naming the bytes it hits.
func (r *Repository) DiskRegions(ctx context.Context, gen *Generation, disk *Disk) ([]RegionData, error) {
	regions, damaged := r.DiskRegionsIntact(ctx, gen, disk)
	if len(damaged) > 0 {
		return nil, damaged[0]
	}
	return regions, nil
}

// DiskRegionsIntact is DiskRegions for a restore that goes on past damage: it returns what is
// intact and names the rest. A region whose chunk list or used map cannot be read is left out
// and named whole; a chunk that is not indexed is left out of its region's cells (which then
// read as zeros) and named.
func (r *Repository) DiskRegionsIntact(ctx context.Context, gen *Generation, disk *Disk) ([]RegionData, []*DamageError) {
	var out []RegionData
	var damaged []*DamageError
	for i := range disk.Regions {
		g := &disk.Regions[i]
		cells, used, err := r.LoadRegion(ctx, gen, g)
		if err != nil {
			damaged = append(damaged, &DamageError{gen.Machine, gen.ID, disk.Name, g.Start, g.Start + g.Size, err})
			continue
		}
		intact := cells[:0:0]
		for _, c := range cells {
			if !r.idx.Has(c.ID) {
				s, e := g.CellRange(c.Index)
				damaged = append(damaged, &DamageError{gen.Machine, gen.ID, disk.Name, s, e, fmt.Errorf("chunk %s is missing from the repository", c.ID.Short())})
				continue
			}
			intact = append(intact, c)
		}
		out = append(out, RegionData{Region: g, Cells: intact, Used: used})
	}
	return out, damaged
}

// SortByPack orders chunk IDs as they lie in the packs, so that fetching them in that order
// reads each pack front to back.
func (r *Repository) SortByPack(ids []crypto.ID) {
	sort.Slice(ids, func(i, j int) bool {
		a, _ := r.idx.Lookup(ids[i])
		b, _ := r.idx.Lookup(ids[j])
		if a.Pack != b.Pack {
			return string(a.Pack[:]) < string(b.Pack[:])
		}
		return a.Offset < b.Offset
	})
}

// DiskReader reads a generation's disk as it was captured: used blocks hold their data; blocks
// of a volume's allocation map that were unused, and cells of whole regions that were not stored
// (all zero), read as zeros, as they do on a restored new image file. Reads fetch only the chunks
// they touch; the last few are cached. It is safe for concurrent use.
type DiskReader struct {
	ctx     context.Context // the reads' context: ReadAt has no parameter for one
	r       *Repository
	gen     *Generation
	disk    *Disk
	regions []RegionData
	cells   []map[int64]crypto.ID // per region: cell index → chunk

	mu    sync.Mutex
	cache []cachedChunk // most recent last
}

type cachedChunk struct {
	id   crypto.ID
	data []byte
}

const diskReaderCache = 8

// NewDiskReader opens one disk of a generation for reading.
func (r *Repository) NewDiskReader(ctx context.Context, gen *Generation, name string) (*DiskReader, error) {
	disk, err := gen.Disk(name)
	if err != nil {
		return nil, err
	}
	if err := r.LoadIndexFor(ctx, gen); err != nil {
		return nil, err
	}
	regions, err := r.DiskRegions(ctx, gen, disk)
	if err != nil {
		return nil, err
	}
	d := &DiskReader{ctx: ctx, r: r, gen: gen, disk: disk, regions: regions}
	for _, rd := range regions {
		m := make(map[int64]crypto.ID, len(rd.Cells))
		for _, c := range rd.Cells {
			m[c.Index] = c.ID
		}
		d.cells = append(d.cells, m)
	}
	return d, nil
}

// Size is the disk's size in bytes.
func (d *DiskReader) Size() int64 { return d.disk.Layout.Size }

// ReadAt reads the disk's bytes [off, off+len(p)); past the end it returns io.EOF.
func (d *DiskReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read at negative offset %d", off)
	}
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		if pos >= d.Size() {
			return n, io.EOF
		}
		k, err := d.readSome(p[n:], pos)
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// readSome fills a prefix of p from the disk at pos: up to the end of the cell (or the gap
// between regions) pos lies in.
func (d *DiskReader) readSome(p []byte, pos int64) (int, error) {
	limit := min(int64(len(p)), d.Size()-pos)
	for i, rd := range d.regions {
		g := rd.Region
		if pos < g.Start {
			// Not in any region (before this one): no region covers it, so it reads as zeros.
			k := min(limit, g.Start-pos)
			clear(p[:k])
			return int(k), nil
		}
		if pos >= g.Start+g.Size {
			continue
		}
		cell := (pos - g.Start) / g.CellSize
		s, e := g.CellRange(cell)
		k := min(limit, e-pos)
		id, ok := d.cells[i][cell]
		if !ok {
			clear(p[:k])
			return int(k), nil
		}
		data, err := d.chunk(id)
		if err != nil {
			return 0, &DamageError{d.gen.Machine, d.gen.ID, d.disk.Name, s, e, err}
		}
		if int64(len(data)) != e-s {
			return 0, &DamageError{d.gen.Machine, d.gen.ID, d.disk.Name, s, e, fmt.Errorf("chunk %s has %d bytes, want %d", id.Short(), len(data), e-s)}
		}
		// Capture stored unused blocks as zeros: the chunk is the cell as it reads.
		copy(p[:k], data[pos-s:])
		return int(k), nil
	}
	clear(p[:limit])
	return int(limit), nil
}

// chunk returns a chunk's plaintext, through the small cache.
func (d *DiskReader) chunk(id crypto.ID) ([]byte, error) {
	d.mu.Lock()
	for i, c := range d.cache {
		if c.id == id {
			d.cache = append(append(d.cache[:i:i], d.cache[i+1:]...), c)
			d.mu.Unlock()
			return c.data, nil
		}
	}
	d.mu.Unlock()
	data, err := d.r.LoadBlob(d.ctx, id, nil)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	if len(d.cache) >= diskReaderCache {
		d.cache = d.cache[1:]
	}
	d.cache = append(d.cache, cachedChunk{id, data})
	d.mu.Unlock()
	return data, nil
}
