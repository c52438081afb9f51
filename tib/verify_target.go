package tib

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync"

	"github.com/cauldron-dr/cauldron/partition"
	"github.com/cauldron-dr/cauldron/tib/crypto"
	"github.com/cauldron-dr/cauldron/tib/usedblocks"
)

// Verifying a restore: read back what RestoreDisk wrote and compare it with the generation, chunk
// by chunk, through the same keyed hashes capture computed. A recovery that resumes after a power
// loss ends with this check, so "the same result" is proven, not assumed.
//
// What cannot be compared byte for byte is reported instead of checked: volumes a plan resized
// (their tools rewrote metadata), the boot sectors of moved FAT and NTFS volumes (hidden sectors
// rewritten), and with a plan the gaps between partitions (the plan wrote new tables there).
// The recovery engine checks those volumes with their filesystem checkers.

// VerifyTargetOptions say what to compare.
type VerifyTargetOptions struct {
	Generation *Generation
	Disk       string
	Target     string
	Plan       *partition.LayoutPlan // as given to RestoreDisk; nil for a byte-for-byte restore
	// BeforeGrow compares as RestoreOptions.BeforeGrow sees the target: volumes the plan grows in
	// their partition (all but FAT, which is rebuilt) are still as captured and are compared.
	BeforeGrow bool
	Workers    int
	Progress   func(RestoreProgress)
}

// VerifyTargetStats summarise a verification.
type VerifyTargetStats struct {
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

// VerifyTarget compares the target with the generation's disk.
func (r *Repository) VerifyTarget(ctx context.Context, o VerifyTargetOptions) (VerifyTargetStats, error) {
	var st VerifyTargetStats
	disk, err := o.Generation.Disk(o.Disk)
	if err != nil {
		return st, err
	}
	f, err := os.Open(o.Target)
	if err != nil {
		return st, fmt.Errorf("verify: %w", err)
	}
	defer f.Close()
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	type job struct {
		g    *Region
		used *usedblocks.Map
		cell int64
		id   crypto.ID
		at   int64 // target offset of the cell's first byte
		zero bool  // an absent cell of a whole region: must read as zeros
	}
	var jobs []job
	var total int64
	resized := map[int]bool{}
	moves := map[int]partition.Move{}
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
	}
	for i := range disk.Regions {
		g := &disk.Regions[i]
		delta := int64(0)
		var skipCells map[int64]bool
		if o.Plan != nil {
			if g.Kind != RegionPartition {
				st.Skipped = append(st.Skipped, fmt.Sprintf("gap at bytes %d–%d: the plan wrote a new table there", g.Start, g.Start+g.Size-1))
				continue
			}
			m, ok := moves[g.Partition]
			if !ok {
				st.Skipped = append(st.Skipped, fmt.Sprintf("partition %d: not in the plan", g.Partition))
				continue
			}
			if resized[g.Partition] {
				st.Skipped = append(st.Skipped, fmt.Sprintf("partition %d (%s): resized, checked by its filesystem checker", g.Partition, m.Filesystem))
				continue
			}
			delta = m.NewStart - m.OldStart
			if (m.Filesystem == "vfat" || m.Filesystem == "ntfs") && (delta != 0 || o.Plan.Layout.LogicalSectorSize != o.Plan.SourceLSS) {
				// Boot sectors (the first, and NTFS's backup in the last sector) got a new
				// hidden-sectors field; their cells are left to the filesystem checker.
				last := (g.Size - 1) / g.CellSize
				skipCells = map[int64]bool{0: true, last: true}
				st.Skipped = append(st.Skipped, fmt.Sprintf("partition %d (%s): boot sector cells, rewritten for the new start", g.Partition, m.Filesystem))
			}
		}
		cells, used, err := r.LoadRegion(ctx, g)
		if err != nil {
			return st, err
		}
		have := map[int64]bool{}
		for _, c := range cells {
			have[c.Index] = true
			if skipCells[c.Index] {
				continue
			}
			s, e := cellRange(g, c.Index)
			jobs = append(jobs, job{g: g, used: used, cell: c.Index, id: c.ID, at: s + delta})
			total += e - s
		}
		if g.Whole && o.Plan == nil {
			for c := int64(0); c < g.NumCells(); c++ {
				if !have[c] {
					s, e := cellRange(g, c)
					jobs = append(jobs, job{g: g, cell: c, at: s, zero: true})
					total += e - s
				}
			}
		}
	}

	var mu sync.Mutex
	var mism [][2]int64
	var firstErr error
	var done int64
	next := make(chan job)
	var wg sync.WaitGroup
	for w := 0; w < o.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			for j := range next {
				s, e := cellRange(j.g, j.cell)
				n := e - s
				if int64(cap(buf)) < n {
					buf = make([]byte, n)
				}
				b := buf[:n]
				err := readCell(f, j.g, j.used, j.cell, j.at, b)
				ok := false
				if err == nil {
					if j.zero {
						ok = allZero(b)
					} else {
						ok = r.key.ChunkID(b) == j.id
					}
				}
				mu.Lock()
				switch {
				case err != nil && firstErr == nil:
					firstErr = fmt.Errorf("verify: reading %s at byte %d: %w", o.Target, j.at, err)
				case err == nil && !ok:
					mism = append(mism, [2]int64{j.at, j.at + n})
				}
				done += n
				st.Chunks++
				st.Bytes += n
				if o.Progress != nil {
					o.Progress(RestoreProgress{Written: done, Total: total})
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
		return st, &MismatchError{Target: o.Target, Ranges: mism}
	}
	return st, nil
}

// readCell reads a cell's bytes as capture hashed them: whole for whole regions, else the used
// blocks with zeros between them.
func readCell(f *os.File, g *Region, used *usedblocks.Map, cell, at int64, b []byte) error {
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
