package tib

import (
	"context"
	"errors"
	"fmt"

	"github.com/cauldron-dr/cauldron/tib/backend"
	"github.com/cauldron-dr/cauldron/tib/crypto"
	"github.com/cauldron-dr/cauldron/tib/pack"
)

// PruneStats say what prune reclaimed.
type PruneStats struct {
	PacksRemoved   int
	PacksRewritten int
	BlobsRemoved   int
	BytesFreed     int64 // the packs removed, less the packs written for their live blobs
}

// Prune removes every blob no generation needs. Packs whose blobs are all unneeded are deleted;
// packs mixing needed and unneeded blobs are rewritten with only the needed ones (each checked
// while copied). Order, so that a crash at any point leaves a valid repository: new packs, then
// an index of everything kept, then the old index files, then the old packs.
func (r *Repository) Prune(ctx context.Context) (PruneStats, error) {
	var st PruneStats
	lock, err := r.Lock(ctx, true, "prune")
	if err != nil {
		return st, err
	}
	defer lock.Unlock()
	// Damaged index files are skipped (and removed below, with the others): the packs they
	// listed are read from their headers.
	listing, err := r.listPacks(ctx, nil)
	if err != nil {
		return st, err
	}
	for _, d := range listing.damaged {
		r.warnDamagedIndex(d)
	}
	oldIndex, packBlobs := listing.indexFiles, listing.blobs
	gens, err := r.Generations(ctx, "")
	if err != nil {
		return st, fmt.Errorf("%w (prune reads every generation; run `cauldron verify`)", err)
	}
	needed := map[crypto.ID]bool{}
	for _, gen := range gens {
		for _, d := range gen.Disks {
			for i := range d.Regions {
				g := &d.Regions[i]
				needed[g.Chunks], needed[g.UsedMap] = true, true
				cells, _, err := r.LoadRegion(ctx, g)
				if err != nil {
					return st, fmt.Errorf("generation %s of %s, %s: %w", gen.ID.Short(), gen.Machine, d.Name, err)
				}
				for _, c := range cells {
					if !r.idx.Has(c.ID) {
						return st, fmt.Errorf("generation %s of %s needs chunk %s, which is missing: refusing to prune a damaged repository", gen.ID.Short(), gen.Machine, c.ID.Short())
					}
					needed[c.ID] = true
				}
			}
		}
	}

	// Classify packs. A blob is kept in the pack the index resolves it to; other copies go.
	var keep []PackBlobs
	var drop []crypto.ID
	var rewrite []PackBlobs
	for id, blobs := range packBlobs {
		var live []pack.Blob
		for _, b := range blobs {
			if loc, _ := r.idx.Lookup(b.ID); needed[b.ID] && loc.Pack == id {
				live = append(live, b)
			}
		}
		switch {
		case len(live) == len(blobs):
			keep = append(keep, PackBlobs{id, blobs})
		case len(live) == 0:
			drop = append(drop, id)
			st.BlobsRemoved += len(blobs)
		default:
			rewrite = append(rewrite, PackBlobs{id, live})
			st.BlobsRemoved += len(blobs) - len(live)
		}
	}
	// Packs neither an intact index nor their own header describes: nothing can refer to them
	// (every chunk the generations need was found above).
	var orphans []crypto.ID
	for id := range listing.badHeaders {
		orphans = append(orphans, id)
	}
	sizes := listing.sizes
	if len(drop) == 0 && len(rewrite) == 0 && len(orphans) == 0 && len(listing.damaged) == 0 && len(listing.fromHeaders) == 0 {
		return st, nil
	}

	// New packs for the live blobs of mixed packs.
	packer := r.NewPacker(ctx)
	for _, p := range rewrite {
		data, err := r.be.Load(ctx, backend.Handle{Type: backend.Pack, Name: p.Pack.String()}, 0, 0)
		if err != nil {
			packer.Flush()
			return st, err
		}
		for _, b := range p.Blobs {
			sealed := data[b.Offset : b.Offset+b.Length]
			if _, err := r.openBlob(Location{Pack: p.Pack, Blob: b}, sealed, nil); err != nil {
				packer.Flush()
				return st, fmt.Errorf("refusing to copy a damaged blob: %w", err)
			}
			if err := packer.Add(b.Type, b.Compression, b.ID, int(b.RawLength), sealed); err != nil {
				packer.Flush()
				return st, err
			}
		}
		st.PacksRewritten++
	}
	ps, err := packer.Flush()
	if err != nil {
		return st, err
	}
	// What the rewritten packs' live blobs take again is not freed.
	st.BytesFreed = -ps.PackBytes
	// One index for every kept pack (the new packs are indexed by the packer already).
	newIndex := map[crypto.ID]bool{}
	for i := 0; i < len(keep); i += indexBatch {
		id, err := r.WriteIndex(ctx, keep[i:min(i+indexBatch, len(keep))])
		if err != nil && !errors.Is(err, backend.ErrExist) {
			return st, err
		}
		newIndex[id] = true
	}
	for _, id := range oldIndex {
		if newIndex[id] {
			continue
		}
		if err := r.be.Remove(ctx, backend.Handle{Type: backend.Index, Name: id.String()}); err != nil && !errors.Is(err, backend.ErrNotExist) {
			return st, err
		}
	}
	gone := append(append([]crypto.ID{}, drop...), orphans...)
	for _, p := range rewrite {
		gone = append(gone, p.Pack)
	}
	for _, id := range gone {
		if err := r.be.Remove(ctx, backend.Handle{Type: backend.Pack, Name: id.String()}); err != nil && !errors.Is(err, backend.ErrNotExist) {
			return st, err
		}
		st.PacksRemoved++
		st.BytesFreed += sizes[id]
	}
	return st, nil
}
