package tib

import (
	"context"
	"errors"
	"fmt"
	"time"

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
	// YoungKept counts the packs prune would have removed or rewritten but kept because they
	// are younger than PruneYoung.
	YoungKept int
	// TempRemoved counts the files a killed writer left in the storage's tmp/ (TempCleaner).
	TempRemoved int
}

// PruneYoung is the age below which prune neither removes nor rewrites a pack, whatever the
// index and the generations say: a capture's packs are referenced by no generation until it
// writes its manifest, and by no index for up to indexEvery packs, so a young pack may belong
// to a capture in progress whose lock was wrongly judged stale (its host unreachable, its clock
// or PID namespace misleading). Ages are judged by the storage's clock, never this host's: a
// pack's ModTime against the ModTime of prune's own lock, just written. A capture that runs
// longer than this is protected by its lock alone.
var PruneYoung = 24 * time.Hour

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
	if c, ok := r.be.(backend.TempCleaner); ok {
		if st.TempRemoved, err = c.CleanTemp(ctx); err != nil {
			return st, err
		}
	}
	// Every manifest is read first, so that the generations' own metadata packs (metapack.go),
	// which no index lists, are known before the packs no index lists are read.
	gens, damaged, err := r.ListGenerations(ctx, "")
	if err != nil {
		return st, fmt.Errorf("%w (prune reads every generation; run `cauldron verify`)", err)
	}
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
	// What a manifest that cannot be read needs is unknown: pruning would guess, and a wrong
	// guess deletes data for good. Its owner decides first.
	if len(damaged) == 1 {
		return st, fmt.Errorf("refusing to prune: %w (what it needs is unknown); %s, then prune again", damaged[0], damaged[0].Remedy())
	}
	if len(damaged) > 1 {
		return st, fmt.Errorf("refusing to prune: %d generation manifests cannot be read (what they need is unknown), the first: %w; run `cauldron repair generations` (or forget each), then prune again", len(damaged), damaged[0])
	}
	needed := map[crypto.ID]bool{}
	// A generation's own metadata packs are its second copy of its chunk lists and used maps:
	// no index lists them, and they are kept whole while it lives.
	ownMeta := map[crypto.ID]bool{}
	for _, gen := range gens {
		for _, p := range gen.MetaPacks {
			ownMeta[p] = true
		}
	}
	for _, gen := range gens {
		for _, d := range gen.Disks {
			for i := range d.Regions {
				g := &d.Regions[i]
				needed[g.Chunks], needed[g.UsedMap] = true, true
				cells, _, err := r.LoadRegion(ctx, gen, g)
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

	stored, err := r.storedPacks(ctx, lock)
	if err != nil {
		return st, err
	}

	// Classify packs. A blob is kept in its home pack (sharedHome); other copies go. The
	// generations' own metadata packs are kept whole, and indexed only while they hold the
	// last indexed copy of a needed blob.
	home := sharedHome(r.idx, packBlobs, ownMeta)
	var keep []PackBlobs
	var drop []crypto.ID
	var rewrite []PackBlobs
	unindex := 0
	for id, blobs := range packBlobs {
		var live []pack.Blob
		for _, b := range blobs {
			if needed[b.ID] && home(b.ID) == id {
				live = append(live, b)
			}
		}
		switch {
		case ownMeta[id] && len(live) == 0:
			// Indexed by a capture that took it for a killed capture's pack (it started while
			// this pack's capture was between its metadata packs and its manifest): taken
			// out of the index again, as metapack.go has it.
			unindex++
		case len(live) == len(blobs) || ownMeta[id]:
			keep = append(keep, PackBlobs{id, blobs})
		case stored[id].young:
			keep = append(keep, PackBlobs{id, blobs})
			st.YoungKept++
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
		if stored[id].young {
			st.YoungKept++
		} else {
			orphans = append(orphans, id)
		}
	}
	if len(drop) == 0 && len(rewrite) == 0 && len(orphans) == 0 && unindex == 0 && len(listing.damaged) == 0 && len(listing.fromHeaders) == 0 {
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
		st.BytesFreed += stored[id].size
	}
	return st, nil
}

// sharedHome returns, for a blob, the pack prune keeps it in: the one the index resolves it to,
// unless that is a generation's own metadata pack (ownMeta) while an indexed pack of no
// generation's own holds the blob too. A generation's own copy is its second copy: resolved to,
// it made the shared copy look like a duplicate, and prune dropped it.
func sharedHome(idx *Index, packBlobs map[crypto.ID][]pack.Blob, ownMeta map[crypto.ID]bool) func(crypto.ID) crypto.ID {
	shared := map[crypto.ID]crypto.ID{}
	for p, blobs := range packBlobs {
		if ownMeta[p] {
			continue
		}
		for _, b := range blobs {
			if _, ok := shared[b.ID]; !ok {
				shared[b.ID] = p
			}
		}
	}
	return func(id crypto.ID) crypto.ID {
		loc, _ := idx.Lookup(id)
		if p, ok := shared[id]; ok && ownMeta[loc.Pack] {
			return p
		}
		return loc.Pack
	}
}

// storedPack is what prune needs of a pack file in the storage.
type storedPack struct {
	size    int64
	modTime time.Time // by the storage's clock
	young   bool      // younger than PruneYoung by the storage's clock
}

// storedPacks lists the pack files, judging their age against the modification time of the
// lock prune holds (rewritten at most LockRefresh ago, so "now" by the storage's clock, or a
// little before: a pack then looks a little younger, the safe side).
func (r *Repository) storedPacks(ctx context.Context, lock *Lock) (map[crypto.ID]storedPack, error) {
	packs := map[crypto.ID]storedPack{}
	var unknown int
	if err := r.be.List(ctx, backend.Pack, func(fi backend.FileInfo) error {
		if id, err := crypto.ParseID(fi.Name); err == nil {
			packs[id] = storedPack{size: fi.Size, modTime: fi.ModTime}
			if fi.ModTime.IsZero() {
				unknown++
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	lh := backend.Handle{Type: backend.Lock, Name: lock.info.name}
	fi, err := r.be.Stat(ctx, lh)
	if err != nil {
		return nil, fmt.Errorf("reading the time of prune's own lock %s: %w", lh, err)
	}
	now := fi.ModTime
	if now.IsZero() || unknown > 0 {
		return nil, fmt.Errorf("%s does not report when files were stored: prune cannot tell a running capture's packs from unneeded ones (run prune where the repository is stored, or update its server)", r.Location())
	}
	for id, p := range packs {
		// A pack dated in the storage's future (its clock was ahead, or the file was touched)
		// counts as young: its age is unknown. With no horizon nothing is young.
		p.young = PruneYoung > 0 && now.Sub(p.modTime) < PruneYoung
		packs[id] = p
	}
	return packs, nil
}
