package tib

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/cauldron-dr/cauldron/tib/backend"
	"github.com/cauldron-dr/cauldron/tib/crypto"
	"github.com/cauldron-dr/cauldron/tib/usedblocks"
	"github.com/klauspost/compress/zstd"
)

// RepairGenerationsOptions choose what RepairGenerations does.
type RepairGenerationsOptions struct {
	DryRun bool // only say what would be done
}

// RepairedGeneration is a generation written anew by RepairGenerations.
type RepairedGeneration struct {
	Old, New crypto.ID // New is zero in a dry run
	Machine  string
	Rebuilt  []string // what was rebuilt or written again
}

// RepairGenerationsReport says what RepairGenerations found and did.
type RepairGenerationsReport struct {
	Removed   []*ManifestError // manifests that cannot be read: removed (in a dry run, to be)
	Rewritten []RepairedGeneration
	Lost      []string // what no copy holds and nothing can rebuild, with the bytes it hits
}

// RepairGenerations deals with the generations that cannot be read, in restic's spirit: a manifest
// that cannot be read is removed (its generation is lost: nothing says what it held); a readable
// generation whose metadata is lost in every copy, or whose own metadata packs are damaged or
// missing, is written anew with what can be rebuilt — a used map is recomputed from the
// filesystem's own allocation structures in the region's chunks (or, failing that, the region is
// marked whole: its chunks hold zeros where blocks were unused) — and its own copies written
// again. A chunk list lost in every copy cannot be rebuilt: it is named. New manifests are saved
// before the old ones are removed, so a crash leaves at worst both, and the next run removes the
// old one. It takes the exclusive lock.
func (r *Repository) RepairGenerations(ctx context.Context, o RepairGenerationsOptions) (*RepairGenerationsReport, error) {
	lock, err := r.Lock(ctx, true, "repair generations")
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	// The manifests before the index: the generations' own metadata packs are then known as
	// such, not read through their headers as packs no index lists.
	gens, damaged, err := r.ListGenerations(ctx, "")
	if err != nil {
		return nil, err
	}
	if err := r.LoadIndex(ctx); err != nil {
		return nil, fmt.Errorf("%w (repair the index first: see `cauldron verify`)", err)
	}
	rep := &RepairGenerationsReport{Removed: damaged}
	for _, gen := range gens {
		if err := r.repairGeneration(ctx, gen, gens, o.DryRun, rep); err != nil {
			return rep, fmt.Errorf("generation %s of %s: %w", gen.ID.Short(), gen.Machine, err)
		}
	}
	if o.DryRun {
		return rep, nil
	}
	for _, d := range damaged {
		if err := r.forgetDamaged(ctx, d.ID); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// repairGeneration writes gen anew when its metadata needs it. gens are every readable
// generation: one of them may be gen already written anew by a repair interrupted before it
// removed gen.
func (r *Repository) repairGeneration(ctx context.Context, gen *Generation, gens []*Generation, dryRun bool, rep *RepairGenerationsReport) error {
	fixed := *gen
	fixed.Disks = append([]Disk(nil), gen.Disks...)
	meta := r.newMetaPackWriter(NewEncoder(r.key, zstd.SpeedDefault))
	meta.hold = true
	var rebuilt []string
	for i := range fixed.Disks {
		d := &fixed.Disks[i]
		d.Regions = append([]Region(nil), d.Regions...)
		for j := range d.Regions {
			g := &d.Regions[j]
			where := fmt.Sprintf("machine %s, generation %s, %s region %d (bytes %d–%d)", gen.Machine, gen.ID.Short(), d.Name, j, g.Start, g.Start+g.Size-1)
			what, err := r.repairRegion(ctx, gen, d, g, meta)
			if err != nil {
				rep.Lost = append(rep.Lost, fmt.Sprintf("%s: %v", where, err))
			}
			for _, w := range what {
				rebuilt = append(rebuilt, fmt.Sprintf("%s: %s", where, w))
			}
		}
	}
	if len(rebuilt) == 0 {
		return nil
	}
	done := RepairedGeneration{Old: gen.ID, Machine: gen.Machine, Rebuilt: rebuilt}
	replacement, err := r.earlierRepair(ctx, gen, &fixed, gens)
	if err != nil {
		return err
	}
	if replacement != nil {
		done.Rebuilt = append(done.Rebuilt, fmt.Sprintf("already written anew as %s by an earlier repair: only the old manifest is removed", replacement.ID.Short()))
		fixed = *replacement
	}
	if dryRun {
		rep.Rewritten = append(rep.Rewritten, done)
		return nil
	}
	if replacement == nil {
		if fixed.MetaPacks, err = meta.finish(ctx); err != nil {
			return err
		}
		if err := r.SaveGeneration(ctx, &fixed); err != nil {
			return err
		}
	}
	done.New = fixed.ID
	rep.Rewritten = append(rep.Rewritten, done)
	// The session moves first: a crash before the removal leaves both manifests (the next
	// repair removes the old), never a session naming a manifest that is gone (a rollback).
	if err := r.noteReplaced(ctx, gen, &fixed); err != nil {
		return fmt.Errorf("written anew as %s, but the replication session was not moved to it (the old manifest is kept): %w", fixed.ID.Short(), err)
	}
	if err := r.be.Remove(ctx, backend.Handle{Type: backend.Generation, Name: gen.ID.String()}); err != nil {
		return fmt.Errorf("written anew as %s, but the old manifest was not removed: %w", fixed.ID.Short(), err)
	}
	return nil
}

// earlierRepair finds, among gens, fixed already saved by a repair interrupted before it removed
// gen: the same generation (machine, time, parent, disks as repaired), other manifest, with its
// own metadata copies intact. nil when there is none.
func (r *Repository) earlierRepair(ctx context.Context, gen, fixed *Generation, gens []*Generation) (*Generation, error) {
	want, err := json.Marshal(sameGeneration(fixed))
	if err != nil {
		return nil, err
	}
	for _, o := range gens {
		if o.ID == gen.ID || o.Machine != gen.Machine || !o.Time.Equal(gen.Time) || len(o.MetaPacks) == 0 {
			continue
		}
		have, err := json.Marshal(sameGeneration(o))
		if err != nil {
			return nil, err
		}
		if bytes.Equal(have, want) && r.ownCopiesIntact(ctx, o) {
			return o, nil
		}
	}
	return nil, nil
}

// sameGeneration is what two manifests of one generation share: all but their ID, format version
// and metadata packs.
func sameGeneration(g *Generation) Generation {
	s := *g
	s.ID, s.Version, s.MetaPacks = crypto.ID{}, 0, nil
	return s
}

// ownCopiesIntact reports whether every chunk list and used map of gen has an intact copy in
// its own metadata packs.
func (r *Repository) ownCopiesIntact(ctx context.Context, gen *Generation) bool {
	for _, d := range gen.Disks {
		for _, g := range d.Regions {
			if !r.hasOwnCopy(ctx, gen, g.Chunks) || !r.hasOwnCopy(ctx, gen, g.UsedMap) {
				return false
			}
		}
	}
	return true
}

// repairRegion gets a region's chunk list and used map from any copy (rebuilding the used map if
// need be, which may change g), adds them to meta, and says what needed doing: nothing when both
// are intact in gen's own metadata packs (or gen predates them and their indexed copies are
// intact).
func (r *Repository) repairRegion(ctx context.Context, gen *Generation, d *Disk, g *Region, meta *metaPackWriter) ([]string, error) {
	var what []string
	chunks, err := r.LoadMeta(ctx, gen, g.Chunks)
	if err != nil {
		return nil, fmt.Errorf("its chunk list is lost in every copy and cannot be rebuilt: %w", err)
	}
	if !r.hasOwnCopy(ctx, gen, g.Chunks) {
		what = append(what, "chunk list written again")
	}
	if err := meta.add(ctx, g.Chunks, chunks); err != nil {
		return nil, err
	}
	used, err := r.LoadMeta(ctx, gen, g.UsedMap)
	if err != nil {
		cells, cerr := DecodeChunkList(chunks, g.NumCells())
		if cerr != nil {
			return what, cerr
		}
		m, how, rerr := r.rebuildUsedMap(ctx, gen, d, g, cells)
		if rerr != nil {
			return what, fmt.Errorf("its used map is lost in every copy and cannot be rebuilt: %w", rerr)
		}
		used = EncodeUsedMap(m)
		g.UsedMap, g.UsedBlocks = r.key.ChunkID(used), m.Count()
		what = append(what, how)
	} else if !r.hasOwnCopy(ctx, gen, g.UsedMap) {
		what = append(what, "used map written again")
	}
	return what, meta.add(ctx, g.UsedMap, used)
}

// hasOwnCopy reports whether blob id is intact where gen keeps its own copies; a generation
// written before those existed counts its indexed copy instead.
func (r *Repository) hasOwnCopy(ctx context.Context, gen *Generation, id crypto.ID) bool {
	if len(gen.MetaPacks) == 0 {
		_, err := r.LoadBlob(ctx, id, nil)
		return err == nil
	}
	for _, p := range gen.MetaPacks {
		if _, err := r.loadFromPack(ctx, p, id); err == nil {
			return true
		}
	}
	return false
}

// rebuildUsedMap recomputes a region's used map from its chunks: a filesystem region's from the
// filesystem's allocation structures, accepted only when it is the very map captured (its ID);
// else (and for whole regions) the map of non-zero blocks, with a filesystem region marked whole
// (its chunks hold zeros where blocks were unused, so restoring them whole writes the same data).
func (r *Repository) rebuildUsedMap(ctx context.Context, gen *Generation, d *Disk, g *Region, cells []Cell) (*usedblocks.Map, string, error) {
	if !g.Whole {
		byCell := make(map[int64]crypto.ID, len(cells))
		for _, c := range cells {
			byCell[c.Index] = c.ID
		}
		dr := &DiskReader{ctx: ctx, r: r, gen: gen, disk: d, regions: []RegionData{{Region: g, Cells: cells}}, cells: []map[int64]crypto.ID{byCell}}
		m, err := usedblocks.ForFilesystem(g.Filesystem, io.NewSectionReader(dr, g.Start, g.Size), g.Size)
		if err == nil && m != nil && m.BlockSize == g.BlockSize && r.key.ChunkID(EncodeUsedMap(m)) == g.UsedMap {
			return m, "used map rebuilt exactly from the " + g.Filesystem + " allocation structures", nil
		}
		var de *DamageError
		if errors.As(err, &de) {
			return nil, "", err
		}
	}
	m := usedblocks.New(g.BlockSize, g.Blocks())
	perCell := g.CellSize / g.BlockSize
	for _, c := range cells {
		data, err := r.LoadBlob(ctx, c.ID, nil)
		if err != nil {
			return nil, "", err
		}
		markNonZero(m, c.Index*perCell, data, g.BlockSize)
	}
	if g.Whole {
		return m, "used map rebuilt from the region's non-zero blocks", nil
	}
	g.Whole = true
	g.Note = "restored whole: its used map was lost and rebuilt by repair from the non-zero blocks"
	return m, "used map not recoverable from the filesystem: region marked whole (restored with every block of its stored cells)", nil
}
