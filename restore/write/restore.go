// Package write puts one disk of a generation onto a target (package restore/target) and proves
// it: byte for byte at the source's offsets, or onto another layout (a partition.LayoutPlan: other
// starts, sizes, sector size, identities), with the filesystem tools that resize volumes; then
// reads the target back and compares it with the generation's chunk hashes. The archive (tib) only
// reads; everything that opens a target for writing or runs a filesystem tool is here.
package write

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/cauldron-dr/cauldron/partition"
	"github.com/cauldron-dr/cauldron/restore/target"
	"github.com/cauldron-dr/cauldron/tib"
	"github.com/cauldron-dr/cauldron/tib/crypto"
	"github.com/cauldron-dr/cauldron/tib/usedblocks"
)

// Options say what to write where.
type Options struct {
	Generation *tib.Generation
	Disk       string // disk0, …
	Target     target.Target
	// Gate is the safety gate the target passed; it is applied again before the first write.
	// Required.
	Gate     *target.Gate
	Workers  int // 0: 2 × GOMAXPROCS (reads wait on storage, writes on the target)
	Progress func(Progress)

	// Plan, when set, restores onto a different layout (partition.Plan of the disk's layout onto
	// the target): see plan.go. The restore writes the plan's table itself after everything that
	// can fail without touching the target has been done.
	Plan *partition.LayoutPlan
	// Scratch is the directory for volumes that must be rebuilt before they fit their new
	// partition (shrunk ext and NTFS volumes, resized FAT volumes); default os.TempDir(). It must
	// not lie on the target.
	Scratch string
	// Log receives one line per step of a planned restore; nil: silent.
	Log func(string)
	// Partial goes on past damage in the repository (a chunk that is missing or fails its
	// check, a region whose chunk list cannot be read): every byte range it hits is left as
	// zeros on the target — nothing is filled that cannot be verified — and named in
	// Stats.Damaged. Byte-for-byte restores only: a damaged volume is not resized.
	Partial bool
	// BeforeGrow, when set, is called in a planned restore once every volume is written and
	// before filesystems are grown in place: a verification against the generation (Verify with
	// BeforeGrow) still finds the captured bytes then. Its error stops the restore.
	BeforeGrow func() error
}

// Progress reports bytes written out of the total.
type Progress struct {
	Written, Total int64
}

// Stats summarise a restore.
type Stats struct {
	Bytes   int64 // data bytes written (used blocks and whole regions' stored cells)
	Zeroed  int64 // bytes zeroed (whole regions' absent cells on a target that was not new)
	Chunks  int64 // distinct chunks fetched
	Seconds float64
	// Resized are the filesystems a planned restore grew or shrank; Warnings what the user
	// should know (e.g. BIOS boot code that cannot follow a sector size change).
	Resized  []partition.FSResize
	Warnings []string
	// Damaged are the byte ranges a Partial restore left as zeros, and why.
	Damaged []*tib.DamageError
}

// Disk writes one disk of a generation to a target: every region, each used block identical to
// the source's. With o.Plan it writes the plan's table instead and every partition at its
// planned place and size (see plan.go).
func Disk(ctx context.Context, r *tib.Repository, o Options) (Stats, error) {
	start := time.Now()
	gen := o.Generation
	disk, err := gen.Disk(o.Disk)
	if err != nil {
		return Stats{}, err
	}
	if o.Target == nil {
		return Stats{}, fmt.Errorf("restore of %s: no target", o.Disk)
	}
	if o.Gate == nil {
		// No default: a forgotten gate would silently protect nothing.
		return Stats{}, fmt.Errorf("restore of %s onto %s: no safety gate given", o.Disk, o.Target.Name())
	}
	if o.Workers <= 0 {
		o.Workers = 2 * runtime.GOMAXPROCS(0)
	}
	lock, err := r.Lock(ctx, false, "restore of "+gen.Machine)
	if err != nil {
		return Stats{}, err
	}
	defer lock.Unlock()
	if err := r.LoadIndexFor(ctx, gen); err != nil {
		return Stats{}, err
	}
	if o.Partial && o.Plan != nil {
		return Stats{}, fmt.Errorf("restore of %s: going on past damage (--partial) works only byte for byte: a damaged volume is not resized; restore onto an image file of the source's size", o.Disk)
	}
	var regions []regionData
	var damaged []*tib.DamageError
	if o.Partial {
		loaded, dmg := r.DiskRegionsIntact(ctx, gen, disk)
		regions, damaged = asRegionData(loaded), dmg
	} else if regions, err = loadRegions(ctx, r, gen, disk); err != nil {
		return Stats{}, err
	}
	if err := o.Target.Check(o.Gate); err != nil {
		return Stats{}, err
	}
	if o.Plan != nil {
		return restorePlanned(ctx, r, o, gen, disk, regions, start)
	}
	t, err := o.Target.Open(disk.Layout.Size)
	if err != nil {
		return Stats{}, err
	}
	defer t.Close()
	for i := range regions {
		rd := &regions[i]
		rd.w, rd.lo, rd.hi = t, rd.g.Start, rd.g.Start+rd.g.Size
		rd.zero = zeroer(t)
	}
	st, err := writeRegions(ctx, r, o, gen, disk, regions)
	if err != nil {
		return st, err
	}
	if st.Damaged, err = leaveZeros(t, append(damaged, st.Damaged...)); err != nil {
		return st, fmt.Errorf("zeroing the damaged ranges of %s: %w", o.Target.Name(), err)
	}
	// A GPT copied onto a bigger disk keeps its backup header at the old end: move it.
	if disk.Layout.Table == partition.TableGPT && t.Size() > disk.Layout.Size {
		if err := partition.MoveBackupGPT(t, disk.Layout.Size, t.Size(), disk.Layout.LogicalSectorSize); err != nil {
			return st, fmt.Errorf("%s: moving the backup GPT to the end of the bigger target: %w", o.Target.Name(), err)
		}
	}
	if err := t.Sync(); err != nil {
		return st, fmt.Errorf("syncing %s: %w", o.Target.Name(), err)
	}
	st.Seconds = time.Since(start).Seconds()
	return st, nil
}

// loadRegions is the disk's regions with their chunk lists and used maps (tib.DiskRegions),
// with nowhere to write them yet.
func loadRegions(ctx context.Context, r *tib.Repository, gen *tib.Generation, disk *tib.Disk) ([]regionData, error) {
	loaded, err := r.DiskRegions(ctx, gen, disk)
	if err != nil {
		return nil, err
	}
	return asRegionData(loaded), nil
}

func asRegionData(loaded []tib.RegionData) []regionData {
	regions := make([]regionData, len(loaded))
	for i := range loaded {
		regions[i] = regionData{g: loaded[i].Region, cells: loaded[i].Cells, used: loaded[i].Used}
	}
	return regions
}

// leaveZeros makes every damaged range read as zeros on the target (a used target would
// otherwise show its old bytes there as if they were restored) and returns the damage sorted by
// where it lies.
func leaveZeros(t target.Writer, damaged []*tib.DamageError) ([]*tib.DamageError, error) {
	sort.Slice(damaged, func(i, j int) bool { return damaged[i].Start < damaged[j].Start })
	for _, d := range damaged {
		if t.Fresh() {
			break
		}
		if err := t.Zero(d.Start, d.End-d.Start); err != nil {
			return damaged, err
		}
	}
	return damaged, nil
}

// zeroer is a target's Zero, or nil when it reads as zeros already.
func zeroer(t target.Writer) func(off, n int64) error {
	if t.Fresh() {
		return nil
	}
	return t.Zero
}

// regionData is a region with its chunk list and used map, and where its bytes go: disk byte
// off of the region, if lo <= off < hi, is written to w at off+delta. zero, when set, makes a
// range of w (already shifted) read as zeros: whole regions' absent cells on a used target.
type regionData struct {
	g      *tib.Region
	cells  []tib.Cell
	used   *usedblocks.Map
	w      io.WriterAt
	delta  int64
	lo, hi int64
	zero   func(off, n int64) error
}

// writeRegions fetches every chunk the regions with a destination (w != nil) need, once each in
// pack order, writes it wherever it is used, and zeroes whole regions' absent cells.
func writeRegions(ctx context.Context, r *tib.Repository, o Options, gen *tib.Generation, disk *tib.Disk, regions []regionData) (Stats, error) {
	if o.Workers <= 0 {
		o.Workers = 2 * runtime.GOMAXPROCS(0)
	}
	type place struct {
		rd   *regionData
		cell int64
	}
	uses := map[crypto.ID][]place{}
	var order []crypto.ID
	var total int64
	for i := range regions {
		rd := &regions[i]
		if rd.w == nil {
			continue
		}
		for _, c := range rd.cells {
			s, e := rd.g.CellRange(c.Index)
			if e <= rd.lo || s >= rd.hi {
				continue // wholly outside what this restore writes of the region
			}
			if _, ok := uses[c.ID]; !ok {
				order = append(order, c.ID)
			}
			uses[c.ID] = append(uses[c.ID], place{rd, c.Index})
			total += min(e, rd.hi) - max(s, rd.lo)
		}
	}
	r.SortByPack(order)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var damaged []*tib.DamageError // a Partial restore's chunks that would not load
	var (
		mu      sync.Mutex
		firstEr error
		written int64
		lastRep time.Time
	)
	fail := func(err error) {
		mu.Lock()
		if firstEr == nil {
			firstEr = err
		}
		mu.Unlock()
		cancel()
	}
	// Chunks are fetched in runs of neighbours in a pack, a request each (see tib.BlobRun).
	runs, missing := r.BlobRuns(order)
	// put writes one fetched chunk wherever the regions use it, or records why it could not.
	put := func(id crypto.ID, plain []byte, err error) error {
		if err != nil {
			var hits []*tib.DamageError
			for _, p := range uses[id] {
				s, e := p.rd.g.CellRange(p.cell)
				hits = append(hits, &tib.DamageError{Machine: gen.Machine, Generation: gen.ID, Disk: disk.Name, Start: s, End: e, Err: err})
			}
			if !o.Partial {
				return hits[0]
			}
			mu.Lock()
			damaged = append(damaged, hits...)
			mu.Unlock()
			return nil
		}
		var n int64
		for _, p := range uses[id] {
			k, err := writeCell(p.rd, p.cell, plain)
			if err != nil {
				return fmt.Errorf("writing %s: %w", o.Target.Name(), err)
			}
			n += k
		}
		mu.Lock()
		written += n
		if o.Progress != nil && time.Since(lastRep) > 200*time.Millisecond {
			lastRep = time.Now()
			o.Progress(Progress{Written: written, Total: total})
		}
		mu.Unlock()
		return nil
	}
	for _, id := range missing {
		if err := put(id, nil, tib.ErrNotIndexed(id)); err != nil {
			return Stats{}, err
		}
	}
	work := make(chan tib.BlobRun)
	var wg sync.WaitGroup
	for w := 0; w < o.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for run := range work {
				if err := r.LoadRun(ctx, run, put); err != nil {
					fail(err)
				}
			}
		}()
	}
feed:
	for _, run := range runs {
		select {
		case work <- run:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if firstEr != nil {
		return Stats{}, firstEr
	}
	if err := ctx.Err(); err != nil {
		return Stats{}, err
	}
	st := Stats{Bytes: written, Chunks: int64(len(order)), Damaged: damaged}
	// Whole regions: cells not stored are zero.
	for _, rd := range regions {
		if !rd.g.Whole || rd.w == nil || rd.zero == nil {
			continue
		}
		next := int64(0)
		zeroTo := func(idx int64) error {
			if idx <= next {
				return nil
			}
			s, _ := rd.g.CellRange(next)
			_, e := rd.g.CellRange(idx - 1)
			s, e = max(s, rd.lo), min(e, rd.hi)
			if e <= s {
				return nil
			}
			st.Zeroed += e - s
			return rd.zero(s+rd.delta, e-s)
		}
		for _, c := range rd.cells {
			if err := zeroTo(c.Index); err != nil {
				return st, fmt.Errorf("zeroing %s: %w", o.Target.Name(), err)
			}
			next = c.Index + 1
		}
		if err := zeroTo(rd.g.NumCells()); err != nil {
			return st, fmt.Errorf("zeroing %s: %w", o.Target.Name(), err)
		}
	}
	if o.Progress != nil {
		o.Progress(Progress{Written: written, Total: total})
	}
	return st, nil
}

// writeCell writes a cell's used blocks (all of it for whole regions) that lie in [rd.lo, rd.hi)
// to rd.w, shifted by rd.delta, with as few, as large writes as possible, and returns the bytes
// written.
func writeCell(rd *regionData, cell int64, data []byte) (int64, error) {
	g := rd.g
	s, e := g.CellRange(cell)
	if int64(len(data)) != e-s {
		return 0, fmt.Errorf("chunk for bytes %d–%d has %d bytes, want %d", s, e-1, len(data), e-s)
	}
	// put writes cell bytes [a, b) (offsets in data), clipped to the destination's range.
	put := func(a, b int64) (int64, error) {
		a, b = max(a, rd.lo-s), min(b, rd.hi-s)
		if b <= a {
			return 0, nil
		}
		_, err := rd.w.WriteAt(data[a:b], s+a+rd.delta)
		return b - a, err
	}
	bpc := g.CellSize / g.BlockSize
	b0 := cell * bpc
	if g.Whole || allSet(rd.used, b0, b0+bpc) {
		return put(0, int64(len(data)))
	}
	var n int64
	var err error
	rd.used.Runs(b0, b0+bpc, func(run usedblocks.Run) {
		if err != nil {
			return
		}
		a := (run.Start - b0) * g.BlockSize
		b := min(a+run.Len*g.BlockSize, int64(len(data)))
		var k int64
		k, err = put(a, b)
		n += k
	})
	return n, err
}

func allSet(m *usedblocks.Map, from, to int64) bool {
	all := true
	m.Runs(from, to, func(run usedblocks.Run) {
		if run.Start != from || run.Len < min(to, m.Blocks)-from {
			all = false
		}
	})
	return all
}
