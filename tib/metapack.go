package tib

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/cauldron-dr/cauldron/tib/backend"
	"github.com/cauldron-dr/cauldron/tib/crypto"
	"github.com/cauldron-dr/cauldron/tib/pack"
)

// Chunk lists and used maps are metadata blobs, deduplicated like data: every generation with an
// equal one — of the same machine or of others — shares one stored copy, so one damaged pack
// could take every such generation with it. So each capture also writes its own copy of every
// metadata blob its generation names into metadata packs of its own, not deduplicated against
// anything and not indexed, and names them in the manifest (Generation.MetaPacks). Readers use
// the indexed (shared) copy and, when it is damaged or missing, the generation's own packs, then
// those of the other generations read so far. Prune keeps a metadata pack as long as a generation
// naming it.

// metaCopies remembers the metadata packs named by the manifests read, and their headers once
// read.
type metaCopies struct {
	mu      sync.Mutex
	packs   []crypto.ID // in the order first seen
	known   map[crypto.ID]bool
	headers map[crypto.ID][]pack.Blob
}

func (m *metaCopies) know(packs []crypto.ID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.known == nil {
		m.known = map[crypto.ID]bool{}
	}
	for _, p := range packs {
		if !m.known[p] {
			m.known[p] = true
			m.packs = append(m.packs, p)
		}
	}
}

// replace makes the known metadata packs exactly those of the manifests just read (all of them):
// a forgotten generation's packs are metadata packs no more, and prune may remove them.
func (m *metaCopies) replace(packs []crypto.ID) {
	m.mu.Lock()
	m.known, m.packs = nil, nil
	m.mu.Unlock()
	m.know(packs)
}

// candidates are the metadata packs to look in: gen's own first, then every other one known.
func (m *metaCopies) candidates(gen *Generation) []crypto.ID {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := append([]crypto.ID(nil), gen.MetaPacks...)
	own := map[crypto.ID]bool{}
	for _, p := range gen.MetaPacks {
		own[p] = true
	}
	for _, p := range m.packs {
		if !own[p] {
			out = append(out, p)
		}
	}
	return out
}

// LoadMeta reads a metadata blob of gen: its indexed copy, else a copy in gen's own metadata
// packs or another generation's. The error is the indexed copy's, saying that no other copy
// was found.
func (r *Repository) LoadMeta(ctx context.Context, gen *Generation, id crypto.ID) ([]byte, error) {
	plain, err := r.LoadBlob(ctx, id, nil)
	if err == nil || ctx.Err() != nil {
		return plain, err
	}
	for _, p := range r.meta.candidates(gen) {
		if plain, perr := r.loadFromPack(ctx, p, id); perr == nil {
			return plain, nil
		} else if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	return nil, fmt.Errorf("%w; no intact copy in the generation's metadata packs either", err)
}

// errNotInPack means a pack's header does not list the blob looked for.
var errNotInPack = errors.New("not in this pack")

// loadFromPack reads blob id from pack p, found through p's own header (not the index).
func (r *Repository) loadFromPack(ctx context.Context, p crypto.ID, id crypto.ID) ([]byte, error) {
	blobs, err := r.metaPackHeader(ctx, p)
	if err != nil {
		return nil, err
	}
	for _, b := range blobs {
		if b.ID != id {
			continue
		}
		sealed, err := r.be.Load(ctx, backend.Handle{Type: backend.Pack, Name: p.String()}, int(b.Length), int64(b.Offset))
		if err != nil {
			return nil, err
		}
		return r.openBlob(Location{Pack: p, Blob: b}, sealed, nil)
	}
	return nil, errNotInPack
}

// metaPackHeader reads (once) a metadata pack's header.
func (r *Repository) metaPackHeader(ctx context.Context, p crypto.ID) ([]pack.Blob, error) {
	r.meta.mu.Lock()
	blobs, ok := r.meta.headers[p]
	r.meta.mu.Unlock()
	if ok {
		return blobs, nil
	}
	fi, err := r.be.Stat(ctx, backend.Handle{Type: backend.Pack, Name: p.String()})
	if err != nil {
		return nil, err
	}
	if blobs, err = r.PackHeader(ctx, p, fi.Size); err != nil {
		return nil, err
	}
	r.meta.mu.Lock()
	if r.meta.headers == nil {
		r.meta.headers = map[crypto.ID][]pack.Blob{}
	}
	r.meta.headers[p] = blobs
	r.meta.mu.Unlock()
	return blobs, nil
}

// metaPackWriter writes one capture's own copies of its metadata blobs into packs of their own,
// each closed at the repository's pack size, and indexes them together at the end.
type metaPackWriter struct {
	r       *Repository
	enc     *Encoder
	cur     *pack.Writer
	added   map[crypto.ID]bool // a generation names many equal blobs (empty chunk lists): one copy
	written []PackBlobs
	// hold keeps every pack in memory until finish: repair decides only at the end whether it
	// writes them at all.
	hold bool
}

func (r *Repository) newMetaPackWriter(enc *Encoder) *metaPackWriter {
	return &metaPackWriter{r: r, enc: enc, added: map[crypto.ID]bool{}}
}

// add stores a copy of metadata blob id (plain is its plaintext).
func (w *metaPackWriter) add(ctx context.Context, id crypto.ID, plain []byte) error {
	if w.added[id] {
		return nil
	}
	w.added[id] = true
	if w.cur == nil {
		w.cur = pack.NewWriter(w.r.key, 1<<20)
	}
	sealed, c := w.enc.Seal(plain)
	w.cur.Add(pack.MetaBlob, c, id, len(plain), sealed)
	if w.cur.Size() >= w.r.cfg.PackSize && !w.hold {
		return w.save(ctx)
	}
	return nil
}

func (w *metaPackWriter) save(ctx context.Context) error {
	if w.cur == nil || w.cur.Count() == 0 {
		return nil
	}
	data, id, blobs := w.cur.Finish()
	w.cur = nil
	if err := w.r.be.Save(ctx, backend.Handle{Type: backend.Pack, Name: id.String()}, data); err != nil && !errors.Is(err, backend.ErrExist) {
		return fmt.Errorf("saving metadata pack %s: %w", id.Short(), err)
	}
	w.written = append(w.written, PackBlobs{Pack: id, Blobs: blobs})
	return nil
}

// finish saves the last pack and returns the packs' names. They are not indexed: the index then
// always finds a metadata blob's shared copy, and the generation's own copy is found through its
// manifest when that fails.
func (w *metaPackWriter) finish(ctx context.Context) ([]crypto.ID, error) {
	if err := w.save(ctx); err != nil {
		return nil, err
	}
	ids := make([]crypto.ID, len(w.written))
	for i, p := range w.written {
		ids[i] = p.Pack
	}
	w.r.meta.know(ids)
	return ids, nil
}

// isMetaPack reports whether a manifest read so far names pack p as its own metadata pack.
func (m *metaCopies) isMetaPack(p crypto.ID) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.known[p]
}
