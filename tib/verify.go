package tib

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/cauldron-dr/cauldron/tib/backend"
	"github.com/cauldron-dr/cauldron/tib/crypto"
	"github.com/cauldron-dr/cauldron/tib/pack"
)

// VerifyOptions choose what verify checks.
type VerifyOptions struct {
	Machine    string // empty: all
	Generation string // ID prefix or latest; needs Machine
	ReadData   bool   // read and check every byte of the packs the chosen generations use
	Progress   func(done, total int)
}

// VerifyReport lists what verify found. Problems are damage; Notes are harmless facts.
type VerifyReport struct {
	Generations int
	Packs       int
	Blobs       int
	BytesRead   int64
	Problems    []string
	Notes       []string
}

func (v *VerifyReport) problem(format string, a ...any) {
	v.Problems = append(v.Problems, fmt.Sprintf(format, a...))
}

func (v *VerifyReport) damagedManifest(me *ManifestError) {
	v.problem("generation %s (machine unknown): %v; %s", me.ID, me, me.Remedy())
}

// use is one place a blob is needed.
type use struct {
	gen   *Generation
	disk  string
	start int64
	end   int64
	what  string
}

func (u use) String() string {
	return fmt.Sprintf("machine %s, generation %s, %s bytes %d–%d (%s)", u.gen.Machine, u.gen.ID.Short(), u.disk, u.start, u.end-1, u.what)
}

// Verify checks the repository. It returns an error only when it cannot run; damage is reported
// in the report's Problems.
func (r *Repository) Verify(ctx context.Context, o VerifyOptions) (*VerifyReport, error) {
	lock, err := r.Lock(ctx, false, "verify")
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	rep := &VerifyReport{}

	// 1. Index files, one by one, so one damaged file does not hide the rest; then the headers of
	// the packs no intact index lists. For some machines only, the packs they use: memory in
	// proportion to their generations, not to the repository.
	var listing *packListing
	if o.Machine == "" {
		// The manifests first, so that the generations' own metadata packs, which no index
		// lists, are known as such (metapack.go); what cannot be read is reported in step 2.
		_, _, _ = r.ListGenerations(ctx, "")
		if listing, err = r.listPacks(ctx, nil); err != nil {
			return nil, err
		}
	}

	// 2. Generations and their chunk lists; remember where every blob is used.
	uses := map[crypto.ID][]use{}
	gens, err := r.verifyGenerations(ctx, o, rep)
	if err != nil {
		return nil, err
	}
	if listing == nil {
		if err := r.LoadIndexFor(ctx, gens...); err != nil {
			return nil, err
		}
	}
	rep.Generations = len(gens)
	rollbacks, err := r.Rollbacks(ctx, o.Machine)
	if err != nil {
		rep.problem("replication sessions: %v", err)
	}
	for _, rb := range rollbacks {
		rep.problem("%s", rb)
	}
	for _, gen := range gens {
		for _, d := range gen.Disks {
			for i := range d.Regions {
				g := &d.Regions[i]
				whole := use{gen, d.Name, g.Start, g.Start + g.Size, fmt.Sprintf("region %d", i)}
				uses[g.Chunks] = append(uses[g.Chunks], use{gen, d.Name, g.Start, g.Start + g.Size, fmt.Sprintf("chunk list of region %d", i)})
				uses[g.UsedMap] = append(uses[g.UsedMap], use{gen, d.Name, g.Start, g.Start + g.Size, fmt.Sprintf("used map of region %d", i)})
				cells, _, err := r.LoadRegion(ctx, gen, g)
				if err != nil {
					rep.problem("%s: %v (%s)", whole, err, repairGenerationsRemedy)
					continue
				}
				for _, c := range cells {
					s, e := cellRange(g, c.Index)
					u := use{gen, d.Name, s, e, fmt.Sprintf("region %d cell %d", i, c.Index)}
					if !r.idx.Has(c.ID) {
						rep.problem("%s: chunk %s is missing", u, c.ID.Short())
					}
					uses[c.ID] = append(uses[c.ID], u)
				}
			}
		}
	}

	r.verifyMetaPacks(ctx, gens, o.ReadData, uses, rep)

	if listing == nil {
		if listing, err = r.listPacks(ctx, func(blobs []pack.Blob) bool { return packUsed(blobs, uses) }); err != nil {
			return nil, err
		}
	}
	for _, d := range listing.damaged {
		rep.problem("%v: run `cauldron repair index` (readers skip it and read the packs' headers meanwhile)", d)
	}
	packBlobs := listing.blobs

	// 3. Packs: present, headers matching the index; with ReadData every byte.
	stored := listing.sizes
	for _, name := range listing.foreign {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%s is not named like a repository file; ignored", name))
	}
	r.verifyUnlisted(listing, uses, rep)
	var packs []crypto.ID
	for id := range packBlobs {
		if o.Machine != "" && !packUsed(packBlobs[id], uses) {
			continue // not needed by the generations being verified
		}
		packs = append(packs, id)
	}
	sort.Slice(packs, func(i, j int) bool { return packs[i].String() < packs[j].String() })
	for n, id := range packs {
		if o.Progress != nil {
			o.Progress(n, len(packs))
		}
		rep.Packs++
		rep.Blobs += len(packBlobs[id])
		if listing.fromHeaders[id] && !o.ReadData {
			continue // its header was just read: it is the listing
		}
		size, ok := stored[id]
		if !ok {
			rep.problem("pack %s listed in the index is missing%s", id.Short(), hits(packBlobs[id], uses))
			continue
		}
		if o.ReadData {
			r.verifyPackData(ctx, id, size, packBlobs[id], uses, rep)
			continue
		}
		blobs, err := r.PackHeader(ctx, id, size)
		if err != nil {
			rep.problem("pack %s: %v%s", id.Short(), err, hits(packBlobs[id], uses))
			continue
		}
		if !sameBlobs(blobs, packBlobs[id]) {
			rep.problem("pack %s: header does not match the index%s", id.Short(), hits(packBlobs[id], uses))
		}
	}
	if o.Progress != nil {
		o.Progress(len(packs), len(packs))
	}
	return rep, nil
}

// verifyUnlisted reports the packs no intact index lists: holding data the generations need,
// they mean a damaged or missing index; holding nothing needed, they are an interrupted
// capture's; with a header that does not open, a damaged pack.
// onlyCopyUsed reports whether a pack no intact index lists holds a blob the generations use
// that the index resolves to it: one that no index file lists in any pack (the index files are
// read before the headers). A copy that the index holds elsewhere too (the metadata pack of a
// generation forgotten or rewritten by repair, say) makes the pack redundant, not needed.
func (r *Repository) onlyCopyUsed(id crypto.ID, blobs []pack.Blob, uses map[crypto.ID][]use) bool {
	for _, b := range blobs {
		if len(uses[b.ID]) == 0 {
			continue
		}
		if loc, ok := r.idx.Lookup(b.ID); ok && loc.Pack == id {
			return true
		}
	}
	return false
}

func (r *Repository) verifyUnlisted(l *packListing, uses map[crypto.ID][]use, rep *VerifyReport) {
	var needed []string
	idle := 0
	for id := range l.fromHeaders {
		if blobs, kept := l.blobs[id]; kept && r.onlyCopyUsed(id, blobs, uses) {
			needed = append(needed, "data/"+id.String())
		} else {
			idle++
		}
	}
	sort.Strings(needed)
	if len(needed) > 0 {
		rep.problem("%d pack(s) hold data the generations need but no intact index file lists them (%s): the index is damaged or missing; run `cauldron repair index` (readers find them through their headers meanwhile)",
			len(needed), strings.Join(needed[:min(3, len(needed))], ", "))
	}
	if idle > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%d intact pack(s) are not in any index and hold nothing the generations checked need: left by an interrupted capture, listed only by a lost index file, or metadata packs of generations forgotten since; the next capture indexes and reuses them, prune removes those no generation needs", idle))
	}
	var bad []string
	for id, err := range l.badHeaders {
		bad = append(bad, fmt.Sprintf("pack %s is in no intact index and its header does not open: %v", id.Short(), err))
	}
	sort.Strings(bad)
	for _, b := range bad {
		rep.problem("%s", b)
	}
}

func (r *Repository) verifyGenerations(ctx context.Context, o VerifyOptions, rep *VerifyReport) ([]*Generation, error) {
	if o.Generation != "" {
		g, err := r.FindGeneration(ctx, o.Machine, o.Generation)
		if me := (*ManifestError)(nil); errors.As(err, &me) {
			rep.damagedManifest(me)
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return []*Generation{g}, nil
	}
	ids, err := r.listIDs(ctx, backend.Generation)
	if err != nil {
		return nil, err
	}
	var gens []*Generation
	for _, id := range ids {
		g, err := r.LoadGeneration(ctx, id)
		var me *ManifestError
		if errors.As(err, &me) {
			rep.damagedManifest(me)
			continue
		}
		if err != nil {
			rep.problem("generation %s (machine unknown: its manifest cannot be read): %v", id, err)
			continue
		}
		if o.Machine == "" || g.Machine == o.Machine {
			gens = append(gens, g)
		}
	}
	if o.Machine != "" && len(gens) == 0 && len(rep.Problems) == 0 {
		return nil, fmt.Errorf("%w %q in %s", ErrUnknownMachine, o.Machine, r.Location())
	}
	return gens, nil
}

// repairGenerationsRemedy is what verify says of lost metadata.
const repairGenerationsRemedy = "`cauldron repair generations` rebuilds what can be rebuilt and names the rest"

// verifyMetaPacks checks every generation's own metadata packs (no index lists them): stored,
// their headers readable; with readData every blob. Without them its chunk lists and used maps
// are down to their shared copy.
func (r *Repository) verifyMetaPacks(ctx context.Context, gens []*Generation, readData bool, uses map[crypto.ID][]use, rep *VerifyReport) {
	for _, gen := range gens {
		for _, p := range gen.MetaPacks {
			where := fmt.Sprintf("machine %s, generation %s: its metadata pack %s", gen.Machine, gen.ID.Short(), p.Short())
			fi, err := r.be.Stat(ctx, backend.Handle{Type: backend.Pack, Name: p.String()})
			var blobs []pack.Blob
			if err == nil {
				blobs, err = r.PackHeader(ctx, p, fi.Size)
			}
			if err != nil {
				rep.problem("%s: %v: its chunk lists and used maps are down to their shared copy (%s)", where, err, "`cauldron repair generations` writes them again")
				continue
			}
			rep.Packs++
			rep.Blobs += len(blobs)
			if readData {
				r.verifyPackData(ctx, p, fi.Size, blobs, uses, rep)
			}
		}
	}
}

func (r *Repository) verifyPackData(ctx context.Context, id crypto.ID, size int64, indexed []pack.Blob, uses map[crypto.ID][]use, rep *VerifyReport) {
	data, err := r.be.Load(ctx, backend.Handle{Type: backend.Pack, Name: id.String()}, 0, 0)
	rep.BytesRead += int64(len(data))
	if err != nil {
		rep.problem("pack %s: %v%s", id.Short(), err, hits(indexed, uses))
		return
	}
	hashOK := crypto.Hash(data) == id
	// Check every blob even when the hash fails, to say exactly which data is hit.
	bad := 0
	for _, b := range indexed {
		end := int64(b.Offset) + int64(b.Length)
		if end > int64(len(data)) {
			rep.problem("pack %s: blob %s lies past the end of the pack%s", id.Short(), b.ID.Short(), hits([]pack.Blob{b}, uses))
			bad++
			continue
		}
		if _, err := r.openBlob(Location{Pack: id, Blob: b}, data[b.Offset:end], nil); err != nil {
			rep.problem("%v%s", err, hits([]pack.Blob{b}, uses))
			bad++
		}
	}
	if bad == 0 {
		n, err := pack.HeaderLength(data, int64(len(data)))
		if err == nil {
			var blobs []pack.Blob
			blobs, err = pack.ParseHeader(r.key, data[int64(len(data))-4-int64(n):len(data)-4], int64(len(data))-4-int64(n))
			if err == nil && !sameBlobs(blobs, indexed) {
				err = errors.New("header does not match the index")
			}
		}
		if err != nil {
			rep.problem("pack %s: %v (the data blobs themselves are intact)", id.Short(), err)
		} else if !hashOK {
			rep.problem("pack %s: content does not match its name (damaged outside any blob)", id.Short())
		}
	}
}

func packUsed(blobs []pack.Blob, uses map[crypto.ID][]use) bool {
	for _, b := range blobs {
		if len(uses[b.ID]) > 0 {
			return true
		}
	}
	return false
}

// hits describes the places damaged blobs are used, for a problem message.
func hits(blobs []pack.Blob, uses map[crypto.ID][]use) string {
	var places []string
	for _, b := range blobs {
		for _, u := range uses[b.ID] {
			places = append(places, u.String())
		}
	}
	if len(places) == 0 {
		return " (no generation checked uses it)"
	}
	const most = 5
	s := "; affects " + places[0]
	for i := 1; i < len(places) && i < most; i++ {
		s += "; " + places[i]
	}
	if len(places) > most {
		s += fmt.Sprintf("; and %d more", len(places)-most)
	}
	return s
}

func sameBlobs(a, b []pack.Blob) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
