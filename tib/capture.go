package tib

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cauldron-dr/cauldron/partition"
	"github.com/cauldron-dr/cauldron/tib/backend"
	"github.com/cauldron-dr/cauldron/tib/crypto"
	"github.com/cauldron-dr/cauldron/tib/pack"
	"github.com/cauldron-dr/cauldron/tib/usedblocks"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// CaptureOptions say what to capture.
type CaptureOptions struct {
	Machine string
	Sources []string // block devices or raw image files, captured as disk0, disk1, …
	// Parent names the parent generation (an ID prefix); empty means the machine's latest. The
	// parent is recorded for the timeline: every generation is complete on its own, and what it
	// shares with earlier ones is shared through deduplication.
	Parent   string
	NoParent bool
	Level    zstd.EncoderLevel // 0: zstd.SpeedFastest
	Workers  int               // 0: GOMAXPROCS
	Progress func(CaptureProgress)
}

// CaptureProgress reports a capture's progress; it is called from one goroutine at a time.
type CaptureProgress struct {
	Disk       string
	Region     int
	Regions    int
	ReadBytes  int64 // bytes read so far (all disks)
	TotalBytes int64 // bytes that will be read (used blocks of mapped regions, all of whole regions)
	NewBytes   int64 // stored bytes added so far
}

// ValidMachineName checks a machine name: printable, no path separators, at most 128 bytes.
func ValidMachineName(name string) error {
	if name == "" || len(name) > 128 {
		return fmt.Errorf("machine name %q: must be 1 to 128 characters", name)
	}
	for _, c := range name {
		if c < 0x20 || c == 0x7f || c == '/' || c == '\\' {
			return fmt.Errorf("machine name %q: control characters and slashes are not allowed", name)
		}
	}
	return nil
}

// source is one opened disk to capture.
type source struct {
	path    string
	f       *os.File
	layout  *partition.Disk
	regions []*regionPlan
}

type regionPlan struct {
	Region
	used *usedblocks.Map
}

// planSource reads a disk's layout and decides how each region is read.
func planSource(path string, chunkSize int64) (*source, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() && fi.Mode()&os.ModeDevice == 0 {
		return nil, fmt.Errorf("source %s: not a disk (neither a block device nor an image file)", path)
	}
	layout, err := partition.ReadPath(path)
	if err != nil {
		return nil, fmt.Errorf("source %s: reading the disk layout: %w", path, err)
	}
	// A disk holds at least one sector: a 1-byte or 511-byte file is something else given by
	// mistake. (Image files of other sizes that are not whole sectors are accepted, as before.)
	if layout.Size < 512 {
		return nil, fmt.Errorf("source %s: not a disk (%d bytes: less than one 512-byte sector)", path, layout.Size)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", path, err)
	}
	// A shared lock for the capture's length: a restore takes an exclusive one on its target
	// (package restore/target), so a disk is never written while it is being captured.
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("source %s: another process is restoring onto it", path)
		}
		return nil, fmt.Errorf("source %s: lock: %w", path, err)
	}
	s := &source{path: path, f: f, layout: layout}
	for _, p := range layout.Partitions {
		if !p.HoldsData() || p.Size <= 0 {
			continue
		}
		rp := &regionPlan{Region: Region{Kind: RegionPartition, Partition: p.Number, Start: p.Start, Size: p.Size}}
		if p.Filesystem != nil {
			rp.Filesystem = p.Filesystem.Type
		}
		m, err := usedblocks.ForFilesystem(rp.Filesystem, io.NewSectionReader(f, p.Start, p.Size), p.Size)
		switch {
		case errors.Is(err, usedblocks.ErrUnsupported):
			// e.g. an ext4 journal needing recovery (mounted, or not cleanly unmounted): its
			// bitmaps may be stale, so the volume is stored whole — slower, never lossy.
			rp.Note = "stored whole: " + err.Error()
		case err != nil:
			rp.Note = "stored whole, the allocation map is unreadable: " + err.Error()
		case m != nil:
			rp.used = m
			rp.BlockSize = m.BlockSize
		}
		s.regions = append(s.regions, rp)
	}
	for _, g := range layout.Gaps() {
		if g.Size > 0 {
			s.regions = append(s.regions, &regionPlan{Region: Region{Kind: RegionGap, Start: g.Start, Size: g.Size}})
		}
	}
	sortRegions(s.regions)
	for _, rp := range s.regions {
		if rp.used == nil {
			rp.Whole = true
			rp.BlockSize = 512
			if rp.Start%4096 == 0 && rp.Size%4096 == 0 {
				rp.BlockSize = 4096
			}
			rp.used = usedblocks.New(rp.BlockSize, rp.Blocks())
		}
		rp.CellSize = (chunkSize + rp.BlockSize - 1) / rp.BlockSize * rp.BlockSize
	}
	return s, nil
}

func sortRegions(rs []*regionPlan) {
	for i := 1; i < len(rs); i++ {
		for j := i; j > 0 && rs[j].Start < rs[j-1].Start; j-- {
			rs[j], rs[j-1] = rs[j-1], rs[j]
		}
	}
}

// toRead is how many bytes capture reads from a region.
func (rp *regionPlan) toRead() int64 {
	if rp.Whole {
		return rp.Size
	}
	return rp.used.UsedBytes()
}

// Capture stores one generation of a machine's disks.
func (r *Repository) Capture(ctx context.Context, o CaptureOptions) (*Generation, error) {
	start := time.Now()
	if err := ValidMachineName(o.Machine); err != nil {
		return nil, err
	}
	if len(o.Sources) == 0 {
		return nil, errors.New("capture needs at least one source disk")
	}
	if o.Level == 0 {
		o.Level = zstd.SpeedFastest
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	// Read every layout before taking the lock or writing anything: a bad source fails fast.
	var sources []*source
	defer func() {
		for _, s := range sources {
			s.f.Close()
		}
	}()
	for _, p := range o.Sources {
		s, err := planSource(p, int64(r.cfg.ChunkSize))
		if err != nil {
			return nil, err
		}
		sources = append(sources, s)
	}

	lock, err := r.Lock(ctx, false, "capture of "+o.Machine)
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	if _, err := r.checkNotFrozen(ctx, o.Machine); err != nil {
		return nil, err
	}
	gen := &Generation{Machine: o.Machine, Time: time.Now().UTC()}
	gen.Hostname, _ = os.Hostname()
	// Every manifest is read before the packs no index lists are indexed: the generations' own
	// metadata packs among them stay unindexed (metapack.go).
	if _, _, err := r.ListGenerations(ctx, ""); err != nil {
		return nil, err
	}
	if err := r.loadFingerprints(ctx); err != nil {
		return nil, err
	}
	if _, err := r.IndexOrphanPacks(ctx); err != nil {
		return nil, fmt.Errorf("indexing packs of an interrupted capture: %w", err)
	}
	if !o.NoParent {
		parent, err := r.FindGeneration(ctx, o.Machine, o.Parent)
		switch {
		case err == nil:
			gen.Parent = &parent.ID
		case errors.Is(err, ErrUnknownMachine) && o.Parent == "":
			// first generation of this machine
		default:
			return nil, fmt.Errorf("parent: %w", err)
		}
	}

	packer := r.NewPacker(ctx)
	usedPacks := map[crypto.ID]bool{}
	var unconfirmed []assumedCell
	enc := NewEncoder(r.key, zstd.SpeedDefault)
	meta := r.newMetaPackWriter(enc)
	prog := &captureProgress{fn: o.Progress}
	for _, s := range sources {
		prog.total += s.totalRead()
	}
	for i, s := range sources {
		d := Disk{Name: fmt.Sprintf("disk%d", i), Source: s.path, Layout: *s.layout}
		prog.disk = d.Name
		for j, rp := range s.regions {
			prog.region, prog.regions = j, len(s.regions)
			cells, assumed, err := r.captureRegion(ctx, s.f, rp, packer, o, prog)
			for _, c := range assumed {
				unconfirmed = append(unconfirmed, assumedCell{s, rp, c})
			}
			if err != nil {
				packer.Flush() // keep what was stored: the next capture reuses it
				return nil, fmt.Errorf("%s (%s) region %d [%d, %d): %w", d.Name, s.path, j, rp.Start, rp.Start+rp.Size, err)
			}
			// The packs this generation reuses; the ones it writes the packer lists.
			for _, c := range cells {
				if loc, ok := r.idx.Lookup(c.ID); ok {
					usedPacks[loc.Pack] = true
				}
			}
			if rp.Chunks, err = saveMetaTwice(ctx, enc, packer, meta, EncodeChunkList(cells)); err != nil {
				return nil, err
			}
			if rp.UsedMap, err = saveMetaTwice(ctx, enc, packer, meta, EncodeUsedMap(rp.used)); err != nil {
				return nil, err
			}
			rp.Cells = int64(len(cells))
			rp.UsedBlocks = rp.used.Count()
			gen.Stats.Chunks += rp.Cells
			gen.Stats.UsedBytes += rp.UsedBytes()
			d.Regions = append(d.Regions, rp.Region)
		}
		gen.Stats.LogicalBytes += s.layout.Size
		gen.Disks = append(gen.Disks, d)
	}
	if err := r.confirmAssumed(ctx, unconfirmed, packer, usedPacks, o.Level); err != nil {
		packer.Flush()
		return nil, fmt.Errorf("capture of %s: %w", o.Machine, err)
	}
	ps, err := packer.Flush()
	if err != nil {
		return nil, err
	}
	if gen.MetaPacks, err = meta.finish(ctx); err != nil {
		return nil, err
	}
	gen.Stats.NewChunks, gen.Stats.NewBytes = ps.Blobs, ps.Bytes
	gen.Stats.Seconds = time.Since(start).Seconds()
	// Again before the commit: a recovery may have frozen the machine while this capture read
	// its disks, and from then on no generation may land (the packs written stay unreferenced
	// until prune, as after a killed capture).
	session, err := r.checkNotFrozen(ctx, o.Machine)
	if err != nil {
		return nil, err
	}
	// And the lock and the data: if this capture's lock was removed (unlock, or a process that
	// judged it stale), a prune may have deleted packs it wrote or reuses. Committing then would
	// save a generation that cannot be restored, and report success.
	if err := lock.Check(ctx); err != nil {
		return nil, fmt.Errorf("capture of %s: %w: the generation is not saved; run the capture again", o.Machine, err)
	}
	for _, id := range append(packer.Written(), gen.MetaPacks...) {
		usedPacks[id] = true
	}
	if err := r.checkPacksPresent(ctx, usedPacks); err != nil {
		return nil, fmt.Errorf("capture of %s: %w: the generation is not saved; run the capture again", o.Machine, err)
	}
	if err := r.SaveGeneration(ctx, gen); err != nil {
		return nil, fmt.Errorf("saving the generation: %w", err)
	}
	if err := r.noteCapture(ctx, session, gen); err != nil {
		return gen, fmt.Errorf("generation %s saved, but: %w", gen.ID.Short(), err)
	}
	return gen, nil
}

// saveMetaTwice stores a metadata blob deduplicated (packer) and as the generation's own copy
// (meta), and returns its ID.
func saveMetaTwice(ctx context.Context, enc *Encoder, packer *Packer, meta *metaPackWriter, plain []byte) (crypto.ID, error) {
	id, err := packer.SaveMeta(enc, plain)
	if err != nil {
		return id, err
	}
	return id, meta.add(ctx, id, plain)
}

func (s *source) totalRead() int64 {
	var n int64
	for _, rp := range s.regions {
		n += rp.toRead()
	}
	return n
}

type captureProgress struct {
	mu              sync.Mutex
	fn              func(CaptureProgress)
	disk            string
	region, regions int
	read, total     int64
	newBytes        int64
	last            time.Time
}

func (p *captureProgress) add(read, stored int64) {
	if p.fn == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.read += read
	p.newBytes += stored
	if time.Since(p.last) < 200*time.Millisecond && p.read < p.total {
		return
	}
	p.last = time.Now()
	p.fn(CaptureProgress{Disk: p.disk, Region: p.region, Regions: p.regions, ReadBytes: p.read, TotalBytes: p.total, NewBytes: p.newBytes})
}

type cellJob struct {
	index int64
	buf   []byte
	read  int64
}

type cellResult struct {
	index   int64
	id      crypto.ID
	skip    bool // whole region, all zero: not stored
	assumed bool // not stored: its fingerprint says the repository may have it
}

// readCell reads cell i of a region into buf (of at least the cell size): the whole cell of a
// whole region, else the used blocks with zeros between. It returns the cell's bytes and how
// many it read from the source.
func (rp *regionPlan) readCell(f *os.File, i int64, buf []byte) ([]byte, int64, error) {
	cellSize := rp.CellSize
	off := i * cellSize
	buf = buf[:min(cellSize, rp.Size-off)]
	if rp.Whole {
		if _, err := f.ReadAt(buf, rp.Start+off); err != nil {
			return nil, 0, fmt.Errorf("reading at byte %d: %w", rp.Start+off, err)
		}
		return buf, int64(len(buf)), nil
	}
	clear(buf)
	var read int64
	var err error
	blocksPerCell := cellSize / rp.BlockSize
	b0 := i * blocksPerCell
	rp.used.Runs(b0, b0+blocksPerCell, func(run usedblocks.Run) {
		if err != nil {
			return
		}
		s := (run.Start - b0) * rp.BlockSize
		e := min(s+run.Len*rp.BlockSize, int64(len(buf)))
		if _, err = f.ReadAt(buf[s:e], rp.Start+off+s); err != nil {
			err = fmt.Errorf("reading at byte %d: %w", rp.Start+off+s, err)
		}
		read += e - s
	})
	return buf, read, err
}

// captureRegion reads a region's cells and stores them; it returns the chunk list, and the cells
// it did not store because the fingerprint table says the repository may have them already
// (confirmed, or stored after all, by confirmAssumed).
func (r *Repository) captureRegion(ctx context.Context, f *os.File, rp *regionPlan, packer *Packer, o CaptureOptions, prog *captureProgress) (cells, assumed []Cell, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cellSize := rp.CellSize
	blocksPerCell := cellSize / rp.BlockSize
	pool := sync.Pool{New: func() any { return make([]byte, cellSize) }}
	jobs := make(chan cellJob, o.Workers*2)
	results := make(chan cellResult, o.Workers*2)
	var readErr error

	// One reader keeps the source's reads in disk order (sequential on spinning disks).
	go func() {
		defer close(jobs)
		n := rp.NumCells()
		for i := int64(0); i < n; i++ {
			if !rp.Whole && !rp.used.AnyInRange(i*blocksPerCell, (i+1)*blocksPerCell) {
				continue
			}
			buf, read, err := rp.readCell(f, i, pool.Get().([]byte))
			if err != nil {
				readErr = err
				return
			}
			select {
			case jobs <- cellJob{index: i, buf: buf, read: read}:
			case <-ctx.Done():
				return
			}
		}
	}()

	var wg sync.WaitGroup
	var errMu sync.Mutex
	var workErr error
	for w := 0; w < o.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			enc := NewEncoder(r.key, o.Level)
			for j := range jobs {
				res := cellResult{index: j.index}
				var stored int64
				if rp.Whole && markNonZero(rp.used, j.index*blocksPerCell, j.buf, rp.BlockSize) == 0 {
					res.skip = true
				} else {
					res.id = r.key.ChunkID(j.buf)
					var store bool
					if store, res.assumed = packer.reserveData(res.id); store {
						sealed, c := enc.Seal(j.buf)
						stored = int64(len(sealed))
						if err := packer.Add(pack.DataBlob, c, res.id, len(j.buf), sealed); err != nil {
							errMu.Lock()
							workErr = err
							errMu.Unlock()
							cancel()
						}
					}
				}
				prog.add(j.read, stored)
				pool.Put(j.buf[:cap(j.buf)])
				select {
				case results <- res:
				case <-ctx.Done():
				}
			}
		}()
	}
	go func() { wg.Wait(); close(results) }()

	for res := range results {
		if !res.skip {
			cells = append(cells, Cell{Index: res.index, ID: res.id})
		}
		if res.assumed {
			assumed = append(assumed, Cell{Index: res.index, ID: res.id})
		}
	}
	if workErr != nil {
		return nil, nil, workErr
	}
	if readErr != nil {
		return nil, nil, readErr
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	// Workers finish out of order.
	sortCells(cells)
	return cells, assumed, nil
}

// markNonZero sets the used bit of every non-zero block of a whole region's cell and returns
// how many it set. The used map of a whole region is written by the workers, each on its own cell,
// and cells never share a map word unless blocks per cell is below 64 — so guard with a lock.
func markNonZero(m *usedblocks.Map, first int64, buf []byte, bs int64) int {
	n := 0
	var set []int64
	for off := int64(0); off < int64(len(buf)); off += bs {
		end := min(off+bs, int64(len(buf)))
		if !AllZero(buf[off:end]) {
			set = append(set, first+off/bs)
			n++
		}
	}
	if n > 0 {
		mapMu.Lock()
		for _, b := range set {
			m.Set(b)
		}
		mapMu.Unlock()
	}
	return n
}

var mapMu sync.Mutex

var zeros = make([]byte, 64<<10)

// AllZero reports whether b holds only zero bytes (compared against a zero buffer: bytes.Equal
// is vectorised). Capture skips such cells; a restore's verification expects them.
func AllZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeros))
		if !bytes.Equal(b[:n], zeros[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

func sortCells(c []Cell) {
	// Nearly sorted already: insertion sort is linear here.
	for i := 1; i < len(c); i++ {
		for j := i; j > 0 && c[j].Index < c[j-1].Index; j-- {
			c[j], c[j-1] = c[j-1], c[j]
		}
	}
}

// checkPacksPresent makes sure every pack in packs is stored.
func (r *Repository) checkPacksPresent(ctx context.Context, packs map[crypto.ID]bool) error {
	have := map[crypto.ID]bool{}
	if err := r.be.List(ctx, backend.Pack, func(fi backend.FileInfo) error {
		if id, err := crypto.ParseID(fi.Name); err == nil {
			have[id] = true
		}
		return nil
	}); err != nil {
		return fmt.Errorf("listing packs: %w", err)
	}
	var missing []string
	for id := range packs {
		if !have[id] {
			missing = append(missing, "data/"+id.String())
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("%d pack(s) it needs disappeared while it ran (%s): removed by a prune that took its lock for stale?",
			len(missing), strings.Join(missing[:min(3, len(missing))], ", "))
	}
	return nil
}
