package write

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/cauldron-dr/cauldron/partition"
	"github.com/cauldron-dr/cauldron/restore/target"
	"github.com/cauldron-dr/cauldron/tib"
	"github.com/cauldron-dr/cauldron/tib/crypto"
	"github.com/cauldron-dr/cauldron/tib/usedblocks"
)

// Verifying a restore: read back what Disk wrote and compare it with the generation, chunk
// by chunk, through the same keyed hashes capture computed. A recovery that resumes after a power
// loss ends with this check, so "the same result" is proven, not assumed.
//
// What cannot be compared byte for byte is reported instead of checked: volumes a plan resized
// (their tools rewrote metadata) and with a plan the gaps between partitions (the plan wrote new
// tables there). The boot sectors a plan rewrites on purpose (FAT and NTFS hidden sectors, NTFS
// sector size and backup) are compared with the generation's bytes after the same rewrite
// (bootcells.go). The recovery engine checks resized volumes with their filesystem checkers.

// VerifyOptions say what to compare.
type VerifyOptions struct {
	Generation *tib.Generation
	Disk       string
	Target     target.Target
	Plan       *partition.LayoutPlan // as given to Disk; nil for a byte-for-byte restore
	// BeforeGrow compares as Options.BeforeGrow sees the target: volumes the plan grows in
	// their partition (all but FAT, which is rebuilt) are still as captured and are compared.
	BeforeGrow bool
	Workers    int
	Progress   func(Progress)
	// Damaged are the ranges a Partial restore left as zeros (Stats.Damaged): not compared, and
	// named among what was skipped.
	Damaged []*tib.DamageError
}

// VerifyStats summarise a verification.
type VerifyStats struct {
	Chunks  int64    // chunks compared
	Bytes   int64    // bytes compared
	Skipped []string // what was not compared, and why
}

// MismatchError lists the byte ranges of the target that differ from the generation.
type MismatchError struct {
	Target string
	Ranges [][2]int64 // target byte offsets [start, end)
}

func (e *MismatchError) Error() string {
	s := fmt.Sprintf("%s differs from the generation in %d chunk(s)", e.Target, len(e.Ranges))
	for i, r := range e.Ranges {
		if i == 5 {
			s += ", …"
			break
		}
		s += fmt.Sprintf("%s bytes %d–%d", map[bool]string{true: ": ", false: ", "}[i == 0], r[0], r[1]-1)
	}
	return s
}

// Verify compares the target with the generation's disk.
func Verify(ctx context.Context, r *tib.Repository, o VerifyOptions) (VerifyStats, error) {
	var st VerifyStats
	disk, err := o.Generation.Disk(o.Disk)
	if err != nil {
		return st, err
	}
	f, err := o.Target.OpenRead()
	if err != nil {
		return st, fmt.Errorf("verify: %w", err)
	}
	defer f.Close()
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	jobs, total, skipped, err := verifyJobs(ctx, r, o, disk)
	if err != nil {
		return st, err
	}
	st.Skipped = skipped

	var mu sync.Mutex
	var mism [][2]int64
	var firstErr error
	var done int64
	next := make(chan verifyJob)
	var wg sync.WaitGroup
	for w := 0; w < o.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			for j := range next {
				s, e := j.g.CellRange(j.cell)
				n := e - s
				if int64(cap(buf)) < n {
					buf = make([]byte, n)
				}
				b := buf[:n]
				err := readCell(f, j.g, j.used, j.cell, j.at, b)
				ok := false
				if err == nil {
					switch {
					case j.expect != nil:
						ok = bytes.Equal(b, j.expect)
					case j.zero:
						ok = tib.AllZero(b)
					default:
						ok = r.Key().ChunkID(b) == j.id
					}
				}
				mu.Lock()
				switch {
				case err != nil && firstErr == nil:
					firstErr = fmt.Errorf("verify: reading %s at byte %d: %w", o.Target.Name(), j.at, err)
				case err == nil && !ok:
					mism = append(mism, [2]int64{j.at, j.at + n})
				}
				done += n
				st.Chunks++
				st.Bytes += n
				if o.Progress != nil {
					o.Progress(Progress{Written: done, Total: total})
				}
				mu.Unlock()
			}
		}()
	}
	for _, j := range jobs {
		if ctx.Err() != nil {
			break
		}
		next <- j
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return st, err
	}
	if firstErr != nil {
		return st, firstErr
	}
	if len(mism) > 0 {
		return st, &MismatchError{Target: o.Target.Name(), Ranges: mism}
	}
	return st, nil
}

// readCell reads a cell's bytes as capture hashed them: whole for whole regions, else the used
// blocks with zeros between them.
func readCell(f io.ReaderAt, g *tib.Region, used *usedblocks.Map, cell, at int64, b []byte) error {
	if g.Whole || used == nil {
		_, err := f.ReadAt(b, at)
		return err
	}
	clear(b)
	bpc := g.CellSize / g.BlockSize
	b0 := cell * bpc
	var err error
	used.Runs(b0, b0+bpc, func(run usedblocks.Run) {
		if err != nil {
			return
		}
		s := (run.Start - b0) * g.BlockSize
		e := min(s+run.Len*g.BlockSize, int64(len(b)))
		_, err = f.ReadAt(b[s:e], at+s)
	})
	return err
}

// regionSkip says how a region of a planned restore is compared: its move, or why it is not
// compared byte for byte (a gap, where the plan wrote a new table; a resized volume, which its
// filesystem checker judges).
func regionSkip(g *tib.Region, plan *partition.LayoutPlan, moves map[int]partition.Move, resized map[int]bool) (partition.Move, string) {
	if g.Kind != tib.RegionPartition {
		return partition.Move{}, fmt.Sprintf("gap at bytes %d–%d: the plan wrote a new table there", g.Start, g.Start+g.Size-1)
	}
	m, ok := moves[g.Partition]
	if !ok {
		return m, fmt.Sprintf("partition %d: not in the plan", g.Partition)
	}
	if resized[g.Partition] {
		return m, fmt.Sprintf("partition %d (%s): resized, checked by its filesystem checker", g.Partition, m.Filesystem)
	}
	if m.Filesystem == "vfat" && plan.Layout.LogicalSectorSize != plan.SourceLSS {
		return m, fmt.Sprintf("partition %d (vfat): rebuilt for %d-byte sectors, checked by its filesystem checker", g.Partition, plan.Layout.LogicalSectorSize)
	}
	return m, ""
}

// verifyJob is one cell to compare.
type verifyJob struct {
	g    *tib.Region
	used *usedblocks.Map
	cell int64
	id   crypto.ID
	at   int64 // target offset of the cell's first byte
	zero bool  // an absent cell of a whole region: must read as zeros
	// expect, when set, is what the cell must read as: the restore changed it on purpose
	// (plannedRewrites).
	expect []byte
}

// verifyJobs lists the cells to compare, their total bytes, and what is not compared and why.
func verifyJobs(ctx context.Context, r *tib.Repository, o VerifyOptions, disk *tib.Disk) ([]verifyJob, int64, []string, error) {
	var jobs []verifyJob
	var total int64
	var skipped []string
	if err := r.LoadIndexFor(ctx, o.Generation); err != nil {
		return nil, 0, nil, err
	}
	var regions []tib.RegionData
	var err error
	if len(o.Damaged) > 0 {
		regions, _ = r.DiskRegionsIntact(ctx, o.Generation, disk)
		for _, d := range o.Damaged {
			skipped = append(skipped, fmt.Sprintf("bytes %d–%d: damaged in the repository, left as zeros (%v)", d.Start, d.End-1, d.Err))
		}
	} else if regions, err = r.DiskRegions(ctx, o.Generation, disk); err != nil {
		return nil, 0, nil, err
	}
	damagedAt := func(s, e int64) bool {
		for _, d := range o.Damaged {
			if s < d.End && d.Start < e {
				return true
			}
		}
		return false
	}
	resized := map[int]bool{}
	moves := map[int]partition.Move{}
	var rewrites map[*tib.Region]map[int64][]byte
	if o.Plan != nil {
		for _, fs := range o.Plan.Filesystems {
			if o.BeforeGrow && fs.Action == "grow" && fs.Type != "vfat" {
				continue // not grown yet
			}
			resized[fs.Partition] = true
		}
		for _, m := range o.Plan.Moves {
			moves[m.Number] = m
		}
		if rewrites, err = plannedRewrites(ctx, r, regions, o.Plan, int64(disk.Layout.LogicalSectorSize)); err != nil {
			return nil, 0, nil, fmt.Errorf("verify: %w", err)
		}
	}
	for i := range regions {
		rd := &regions[i]
		g := rd.Region
		var m partition.Move
		if o.Plan != nil {
			var skip string
			if m, skip = regionSkip(g, o.Plan, moves, resized); skip != "" {
				skipped = append(skipped, skip)
				continue
			}
		}
		fixed := rewrites[g]
		delta := m.NewStart - m.OldStart
		have := map[int64]bool{}
		for _, c := range rd.Cells {
			have[c.Index] = true
			s, e := g.CellRange(c.Index)
			if damagedAt(s, e) {
				continue
			}
			jobs = append(jobs, verifyJob{g: g, used: rd.Used, cell: c.Index, id: c.ID, at: s + delta, expect: fixed[c.Index]})
			total += e - s
		}
		for c, b := range fixed {
			if !have[c] {
				// A cell of zeros (not stored) that a rewrite wrote into.
				s, e := g.CellRange(c)
				jobs = append(jobs, verifyJob{g: g, used: rd.Used, cell: c, at: s + delta, expect: b})
				total += e - s
			}
		}
		if g.Whole {
			// Cells not stored are zero, and the restore zeroed them on the target: within what
			// it wrote of the region (a planned partition that grew keeps its old end).
			end := g.Start + g.Size
			if o.Plan != nil {
				end = g.Start + min(m.OldSize, m.NewSize)
			}
			for c := int64(0); c < g.NumCells(); c++ {
				if s, e := g.CellRange(c); !have[c] && fixed[c] == nil && e <= end && !damagedAt(s, e) {
					jobs = append(jobs, verifyJob{g: g, cell: c, at: s + delta, zero: true})
					total += e - s
				}
			}
		}
	}
	return jobs, total, skipped, nil
}
