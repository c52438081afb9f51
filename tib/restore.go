package tib

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/cauldron-dr/cauldron/partition"
	"github.com/cauldron-dr/cauldron/tib/crypto"
	"github.com/cauldron-dr/cauldron/tib/usedblocks"
	"golang.org/x/sys/unix"
)

// RestoreOptions say what to write where.
type RestoreOptions struct {
	Generation *Generation
	Disk       string // disk0, …
	Target     string // block device or image file (created sparse if missing)
	Workers    int    // 0: 2 × GOMAXPROCS (reads wait on storage, writes on the target)
	Progress   func(RestoreProgress)

	// Plan, when set, restores onto a different layout (partition.Plan of the disk's layout onto
	// Target): see restore_plan.go. The restore writes the plan's table itself (partition.Apply)
	// after everything that can fail without touching the target has been done.
	Plan *partition.LayoutPlan
	// Scratch is the directory for volumes that must be rebuilt before they fit their new
	// partition (shrunk ext and NTFS volumes, resized FAT volumes); default os.TempDir(). It must
	// not lie on the target.
	Scratch string
	// Protect lists paths whose disks must never be written (the repository, the boot medium),
	// as partition.Apply takes them.
	Protect []string
	// Log receives one line per step of a plan-aware restore; nil: silent.
	Log func(string)
	// BeforeGrow, when set, is called in a plan-aware restore once every volume is written and
	// before filesystems are grown in place: a verification against the generation (VerifyTarget
	// with BeforeGrow) still finds the captured bytes then. Its error stops the restore.
	BeforeGrow func() error
}

// RestoreProgress reports bytes written out of the total.
type RestoreProgress struct {
	Written, Total int64
}

// RestoreStats summarise a restore.
type RestoreStats struct {
	Bytes   int64 // data bytes written (used blocks and whole regions' stored cells)
	Zeroed  int64 // bytes zeroed (whole regions' absent cells on a target that was not new)
	Chunks  int64 // distinct chunks fetched
	Seconds float64
	// Resized are the filesystems a plan-aware restore grew or shrank; Warnings what the user
	// should know (e.g. BIOS boot code that cannot follow a sector size change).
	Resized  []partition.FSResize
	Warnings []string
}

// DamageError names what a damaged chunk hits.
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

// target is an opened restore target.
type target struct {
	f     *os.File
	size  int64
	block bool // a block device
	fresh bool // a file created (or empty) now: reads as zeros everywhere
}

// OpenTarget opens (or creates) a restore target and checks that it can take a disk of size
// bytes, before anything is written.
func OpenTarget(path string, size int64) (*target, error) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", path, err)
		}
		if err := f.Truncate(size); err != nil {
			f.Close()
			os.Remove(path)
			return nil, fmt.Errorf("target %s: %w", path, err)
		}
		return &target{f: f, size: size, fresh: true}, nil
	case err != nil:
		return nil, fmt.Errorf("target %s: %w", path, err)
	case fi.Mode().IsRegular():
		if fi.Size() != 0 && fi.Size() < size {
			return nil, fmt.Errorf("target %s: %d bytes is smaller than the disk (%d bytes); nothing written", path, fi.Size(), size)
		}
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", path, err)
		}
		fresh := fi.Size() == 0
		if fresh {
			if err := f.Truncate(size); err != nil {
				f.Close()
				return nil, fmt.Errorf("target %s: %w", path, err)
			}
		}
		return &target{f: f, size: max(fi.Size(), size), fresh: fresh}, nil
	case fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0:
		if err := checkBlockTarget(path); err != nil {
			return nil, err
		}
		// O_EXCL on a block device fails if a filesystem on it is mounted or it is otherwise claimed.
		f, err := os.OpenFile(path, os.O_RDWR|unix.O_EXCL, 0)
		if err != nil {
			return nil, fmt.Errorf("target %s: %w (is it mounted or in use?)", path, err)
		}
		devSize, err := blockSize(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("target %s: size: %w", path, err)
		}
		if int64(devSize) < size {
			f.Close()
			return nil, fmt.Errorf("target %s: %d bytes is smaller than the disk (%d bytes); nothing written", path, devSize, size)
		}
		return &target{f: f, size: int64(devSize), block: true}, nil
	}
	return nil, fmt.Errorf("target %s: not a block device or image file", path)
}

// zero makes [off, off+n) read as zeros.
func (t *target) zero(off, n int64) error {
	if t.fresh || n <= 0 {
		return nil
	}
	if t.block {
		if err := zeroOut(t.f, off, n); err == nil {
			return nil
		}
	} else if err := unix.Fallocate(int(t.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n); err == nil {
		return nil
	}
	buf := make([]byte, min(n, 1<<20))
	for n > 0 {
		k := min(n, int64(len(buf)))
		if _, err := t.f.WriteAt(buf[:k], off); err != nil {
			return err
		}
		off += k
		n -= k
	}
	return nil
}

// RestoreDisk writes one disk of a generation to a target: every region, each used block
// identical to the source's. With o.Plan it writes the plan's table instead and every partition
// at its planned place and size (see restore_plan.go).
func (r *Repository) RestoreDisk(ctx context.Context, o RestoreOptions) (RestoreStats, error) {
	start := time.Now()
	gen := o.Generation
	disk, err := gen.Disk(o.Disk)
	if err != nil {
		return RestoreStats{}, err
	}
	if o.Workers <= 0 {
		o.Workers = 2 * runtime.GOMAXPROCS(0)
	}
	lock, err := r.Lock(ctx, false, "restore of "+gen.Machine)
	if err != nil {
		return RestoreStats{}, err
	}
	defer lock.Unlock()
	if err := r.LoadIndex(ctx); err != nil {
		return RestoreStats{}, err
	}
	regions, err := r.loadRegions(ctx, gen, disk)
	if err != nil {
		return RestoreStats{}, err
	}
	if o.Plan != nil {
		return r.restorePlanned(ctx, o, gen, disk, regions, start)
	}
	t, err := OpenTarget(o.Target, disk.Layout.Size)
	if err != nil {
		return RestoreStats{}, err
	}
	defer t.f.Close()
	for i := range regions {
		rd := &regions[i]
		rd.w, rd.lo, rd.hi = t.f, rd.g.Start, rd.g.Start+rd.g.Size
		rd.zero = t.zero
	}
	st, err := r.writeRegions(ctx, o, gen, disk, regions)
	if err != nil {
		return st, err
	}
	// A GPT copied onto a bigger disk keeps its backup header at the old end: move it.
	if disk.Layout.Table == partition.TableGPT && t.size > disk.Layout.Size {
		if err := partition.MoveBackupGPT(t.f, disk.Layout.Size, t.size, disk.Layout.LogicalSectorSize); err != nil {
			return st, fmt.Errorf("%s: moving the backup GPT to the end of the bigger target: %w", o.Target, err)
		}
	}
	if err := t.f.Sync(); err != nil {
		return st, fmt.Errorf("syncing %s: %w", o.Target, err)
	}
	st.Seconds = time.Since(start).Seconds()
	return st, nil
}

// regionData is a region with its chunk list and used map, and where its bytes go: disk byte
// off of the region, if lo <= off < hi, is written to w at off+delta. zero, when set, makes a
// range of w (already shifted) read as zeros: whole regions' absent cells on a used target.
type regionData struct {
	g      *Region
	cells  []Cell
	used   *usedblocks.Map
	w      io.WriterAt
	delta  int64
	lo, hi int64
	zero   func(off, n int64) error
}

// loadRegions reads every region's chunk list and used map and checks that every chunk is
// indexed, before anything is written.
func (r *Repository) loadRegions(ctx context.Context, gen *Generation, disk *Disk) ([]regionData, error) {
	var regions []regionData
	for i := range disk.Regions {
		g := &disk.Regions[i]
		cells, used, err := r.LoadRegion(ctx, g)
		if err != nil {
			return nil, &DamageError{gen.Machine, gen.ID, disk.Name, g.Start, g.Start + g.Size, err}
		}
		for _, c := range cells {
			if !r.idx.Has(c.ID) {
				s, e := cellRange(g, c.Index)
				return nil, &DamageError{gen.Machine, gen.ID, disk.Name, s, e, fmt.Errorf("chunk %s is missing from the repository", c.ID.Short())}
			}
		}
		regions = append(regions, regionData{g: g, cells: cells, used: used})
	}
	return regions, nil
}

// writeRegions fetches every chunk the regions with a destination (w != nil) need, once each in
// pack order, writes it wherever it is used, and zeroes whole regions' absent cells.
func (r *Repository) writeRegions(ctx context.Context, o RestoreOptions, gen *Generation, disk *Disk, regions []regionData) (RestoreStats, error) {
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
			s, e := cellRange(rd.g, c.Index)
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
	sort.Slice(order, func(i, j int) bool {
		a, _ := r.idx.Lookup(order[i])
		b, _ := r.idx.Lookup(order[j])
		if a.Pack != b.Pack {
			return string(a.Pack[:]) < string(b.Pack[:])
		}
		return a.Offset < b.Offset
	})

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
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
	ids := make(chan crypto.ID)
	var wg sync.WaitGroup
	for w := 0; w < o.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			for id := range ids {
				plain, err := r.LoadBlob(ctx, id, buf)
				if err != nil {
					p := uses[id][0]
					s, e := cellRange(p.rd.g, p.cell)
					fail(&DamageError{gen.Machine, gen.ID, disk.Name, s, e, err})
					continue
				}
				buf = plain
				var n int64
				for _, p := range uses[id] {
					k, err := writeCell(p.rd, p.cell, plain)
					if err != nil {
						fail(fmt.Errorf("writing %s: %w", o.Target, err))
						break
					}
					n += k
				}
				mu.Lock()
				written += n
				if o.Progress != nil && time.Since(lastRep) > 200*time.Millisecond {
					lastRep = time.Now()
					o.Progress(RestoreProgress{Written: written, Total: total})
				}
				mu.Unlock()
			}
		}()
	}
feed:
	for _, id := range order {
		select {
		case ids <- id:
		case <-ctx.Done():
			break feed
		}
	}
	close(ids)
	wg.Wait()
	if firstEr != nil {
		return RestoreStats{}, firstEr
	}
	if err := ctx.Err(); err != nil {
		return RestoreStats{}, err
	}
	st := RestoreStats{Bytes: written, Chunks: int64(len(order))}
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
			s, _ := cellRange(rd.g, next)
			_, e := cellRange(rd.g, idx-1)
			s, e = max(s, rd.lo), min(e, rd.hi)
			if e <= s {
				return nil
			}
			st.Zeroed += e - s
			return rd.zero(s+rd.delta, e-s)
		}
		for _, c := range rd.cells {
			if err := zeroTo(c.Index); err != nil {
				return st, fmt.Errorf("zeroing %s: %w", o.Target, err)
			}
			next = c.Index + 1
		}
		if err := zeroTo(rd.g.NumCells()); err != nil {
			return st, fmt.Errorf("zeroing %s: %w", o.Target, err)
		}
	}
	if o.Progress != nil {
		o.Progress(RestoreProgress{Written: written, Total: total})
	}
	return st, nil
}

// cellRange is the disk byte range of a region's cell.
func cellRange(g *Region, cell int64) (int64, int64) {
	s := cell * g.CellSize
	return g.Start + s, g.Start + min(s+g.CellSize, g.Size)
}

// writeCell writes a cell's used blocks (all of it for whole regions) that lie in [rd.lo, rd.hi)
// to rd.w, shifted by rd.delta, with as few, as large writes as possible, and returns the bytes
// written.
func writeCell(rd *regionData, cell int64, data []byte) (int64, error) {
	g := rd.g
	s, e := cellRange(g, cell)
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
