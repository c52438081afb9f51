package tib

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/cauldron-dr/cauldron/tib/backend"
	"github.com/cauldron-dr/cauldron/tib/crypto"
	"github.com/cauldron-dr/cauldron/tib/pack"
)

// packListing is what a repository's index files and pack headers say about its packs, for the
// commands that look at every pack (verify, prune, repair index).
type packListing struct {
	indexFiles []crypto.ID               // every index file stored
	damaged    []*IndexDamageError       // those that could not be used
	listed     map[crypto.ID]struct{}    // every pack an intact index lists
	blobs      map[crypto.ID][]pack.Blob // the packs kept (see listPacks) an intact index lists, or whose header opens
	// fromHeaders are the stored packs no intact index lists, read from their headers;
	// badHeaders those of them whose headers do not open.
	fromHeaders map[crypto.ID]bool
	badHeaders  map[crypto.ID]error
	sizes       map[crypto.ID]int64 // every stored pack
	foreign     []string            // files in data/ or index/ whose names are not IDs
}

// listPacks reads every index file (damaged ones are listed, never fatal), lists the stored
// packs and reads the header of every pack no intact index lists. With keep nil it lists every
// pack and fills the in-memory index with every blob; else it lists only the packs keep accepts
// and leaves the in-memory index alone (memory in proportion to what is kept).
func (r *Repository) listPacks(ctx context.Context, keep func([]pack.Blob) bool) (*packListing, error) {
	l := &packListing{blobs: map[crypto.ID][]pack.Blob{}, listed: map[crypto.ID]struct{}{}, fromHeaders: map[crypto.ID]bool{},
		badHeaders: map[crypto.ID]error{}, sizes: map[crypto.ID]int64{}}
	if err := r.be.List(ctx, backend.Index, func(fi backend.FileInfo) error {
		if id, err := crypto.ParseID(fi.Name); err == nil {
			l.indexFiles = append(l.indexFiles, id)
		} else {
			l.foreign = append(l.foreign, "index/"+fi.Name)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("listing index files: %w", err)
	}
	for _, id := range l.indexFiles {
		packs, err := r.readIndexFile(ctx, id)
		var damage *IndexDamageError
		switch {
		case errors.Is(err, backend.ErrNotExist):
			continue
		case errors.As(err, &damage):
			l.damaged = append(l.damaged, damage)
			continue
		case err != nil:
			return nil, fmt.Errorf("index %s: %w", id.Short(), err)
		}
		for _, p := range packs {
			l.listed[p.Pack] = struct{}{}
			l.add(r, keep, p)
		}
		collectAfterIndexFile(packs)
	}
	if err := r.be.List(ctx, backend.Pack, func(fi backend.FileInfo) error {
		if id, err := crypto.ParseID(fi.Name); err == nil {
			l.sizes[id] = fi.Size
		} else {
			l.foreign = append(l.foreign, "data/"+fi.Name)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("listing packs: %w", err)
	}
	for id, size := range l.sizes {
		// The generations' own metadata packs are not indexed (metapack.go); the manifests read
		// before name them.
		if _, ok := l.listed[id]; ok || r.meta.isMetaPack(id) {
			continue
		}
		blobs, err := r.PackHeader(ctx, id, size)
		switch {
		case errors.Is(err, backend.ErrNotExist):
			delete(l.sizes, id)
		case err != nil:
			l.badHeaders[id] = err
		default:
			l.fromHeaders[id] = true
			l.add(r, keep, PackBlobs{Pack: id, Blobs: blobs})
		}
	}
	sort.Strings(l.foreign)
	return l, nil
}

func (l *packListing) add(r *Repository, keep func([]pack.Blob) bool, p PackBlobs) {
	if keep == nil {
		l.blobs[p.Pack] = p.Blobs
		r.idx.AddPack(p.Pack, p.Blobs)
	} else if keep(p.Blobs) {
		l.blobs[p.Pack] = p.Blobs
	}
}

// RepairIndexReport says what RepairIndex did.
type RepairIndexReport struct {
	Packs        int                 // packs the new index lists
	Blobs        int                 // blobs it lists
	Written      []crypto.ID         // index files written
	Removed      []crypto.ID         // index files removed (damaged or superseded)
	Damaged      []*IndexDamageError // of those, the damaged ones
	DamagedPacks map[crypto.ID]error // packs whose header does not open
	// FromOldIndex are damaged packs that an intact old index file listed: the new index keeps
	// that listing, so that their intact blobs stay readable.
	FromOldIndex []crypto.ID
}

// indexBatch is how many packs repair and prune put in one index file: at most a few tens of
// MiB of plaintext at the default pack and cell sizes, read whole by every reader.
const indexBatch = 4096

// RepairIndex rebuilds the index from the pack headers, under the exclusive lock: it reads the
// header of every stored pack, writes index files covering every pack whose header opens, then
// removes every other index file (damaged or superseded). A pack whose header does not open is
// named in the report and left for verify; if an intact old index file listed it, the new index
// keeps that listing.
func (r *Repository) RepairIndex(ctx context.Context) (*RepairIndexReport, error) {
	lock, err := r.Lock(ctx, true, "repair index")
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	// The manifests first: the generations' own metadata packs stay out of the index
	// (metapack.go). A manifest that cannot be read is `repair generations`' business.
	if _, _, err := r.ListGenerations(ctx, ""); err != nil {
		return nil, err
	}
	l, err := r.listPacks(ctx, nil)
	if err != nil {
		return nil, err
	}
	rep := &RepairIndexReport{Damaged: l.damaged, DamagedPacks: map[crypto.ID]error{}}
	var ids []crypto.ID
	for id := range l.sizes {
		// A generation's own metadata packs stay out of the index (metapack.go); a damaged one
		// is verify's to name and repair generations' to write again.
		if !r.meta.isMetaPack(id) {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return string(ids[i][:]) < string(ids[j][:]) })
	var packs []PackBlobs
	for _, id := range ids {
		blobs, err := l.blobs[id], l.badHeaders[id]
		if !l.fromHeaders[id] && err == nil {
			blobs, err = r.PackHeader(ctx, id, l.sizes[id])
		}
		switch {
		case errors.Is(err, backend.ErrNotExist):
			continue // removed since listed: nothing to index
		case err != nil:
			rep.DamagedPacks[id] = err
			if old, listed := l.blobs[id]; listed && !l.fromHeaders[id] {
				packs = append(packs, PackBlobs{Pack: id, Blobs: old})
				rep.FromOldIndex = append(rep.FromOldIndex, id)
			}
			continue
		}
		packs = append(packs, PackBlobs{Pack: id, Blobs: blobs})
	}
	written := map[crypto.ID]bool{}
	for i := 0; i < len(packs); i += indexBatch {
		batch := packs[i:min(i+indexBatch, len(packs))]
		id, err := r.WriteIndex(ctx, batch)
		if err != nil && !errors.Is(err, backend.ErrExist) {
			return rep, fmt.Errorf("writing the new index: %w (the old index files are all still there)", err)
		}
		written[id] = true
		rep.Written = append(rep.Written, id)
		for _, p := range batch {
			rep.Packs++
			rep.Blobs += len(p.Blobs)
		}
	}
	for _, id := range l.indexFiles {
		if written[id] {
			continue
		}
		if err := r.be.Remove(ctx, backend.Handle{Type: backend.Index, Name: id.String()}); err != nil && !errors.Is(err, backend.ErrNotExist) {
			return rep, fmt.Errorf("removing old index file %s: %w (the new index is complete; run repair index again)", id.Short(), err)
		}
		rep.Removed = append(rep.Removed, id)
	}
	return rep, nil
}
