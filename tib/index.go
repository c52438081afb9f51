package tib

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"sync"

	"github.com/cauldron-dr/cauldron/tib/backend"
	"github.com/cauldron-dr/cauldron/tib/crypto"
	"github.com/cauldron-dr/cauldron/tib/pack"
	"github.com/klauspost/compress/zstd"
)

// indexMagic starts every index file's plaintext (after zstd decompression).
var indexMagic = []byte("CIDX\x01")

// Location is where a blob is stored.
type Location struct {
	Pack crypto.ID
	pack.Blob
}

type entry struct {
	pack        int32
	typ         pack.BlobType
	compression pack.Compression
	offset      uint32
	length      uint32
	rawLength   uint32
}

// Index maps chunk IDs to their place in packs. It tolerates the same blob listed twice (two
// captures that stored the same chunk at once, or a pack indexed twice): any copy will do.
//
// Its memory does not grow with the repository unless asked to (LoadIndex): what the index
// files list is kept exactly only for metadata blobs and the blobs a reader wants
// (LoadIndexFor), or — for a capture — remembered in a compact fingerprint table
// (loadFingerprints), whose "maybe stored" answers the capture confirms before it commits.
type Index struct {
	mu      sync.RWMutex
	packs   []crypto.ID         // packs holding exactly known blobs
	packNum map[crypto.ID]int32 // their numbers in packs
	blobs   map[crypto.ID]entry // exactly known blobs
	listed  map[crypto.ID]struct{}
	// all: every listed blob is kept exactly (LoadIndex). Else metadata blobs, want and what
	// this process stored are; with fp set, every other listed data blob is a fingerprint.
	all  bool
	want map[crypto.ID]struct{}
	fp   *fingerprints
	// files are the index files read: true loaded, false damaged (skipped).
	files map[crypto.ID]bool
	// headerPacks are the packs no intact index lists, found through their headers (with their
	// sizes) and not yet written to an index file: read again when the index files are.
	// badHeaders are such packs whose headers do not open.
	headerPacks map[crypto.ID]int64
	badHeaders  map[crypto.ID]error
}

func newIndex() *Index {
	return &Index{packNum: map[crypto.ID]int32{}, blobs: map[crypto.ID]entry{}, listed: map[crypto.ID]struct{}{},
		want: map[crypto.ID]struct{}{}, files: map[crypto.ID]bool{}, badHeaders: map[crypto.ID]error{},
		headerPacks: map[crypto.ID]int64{}}
}

// Has reports whether a blob is known exactly.
func (x *Index) Has(id crypto.ID) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	_, ok := x.blobs[id]
	return ok
}

// mayHave reports whether a data blob is known exactly or, through its fingerprint, perhaps
// stored.
func (x *Index) mayHave(id crypto.ID) (exact, maybe bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if _, ok := x.blobs[id]; ok {
		return true, true
	}
	return false, x.fp != nil && x.fp.has(id)
}

// Lookup finds a blob.
func (x *Index) Lookup(id crypto.ID) (Location, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	e, ok := x.blobs[id]
	if !ok {
		return Location{}, false
	}
	return Location{Pack: x.packs[e.pack], Blob: pack.Blob{Type: e.typ, Compression: e.compression, ID: id,
		Offset: e.offset, Length: e.length, RawLength: e.rawLength}}, true
}

// HasPack reports whether an intact index lists the pack (or this process stored it).
func (x *Index) HasPack(id crypto.ID) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	_, ok := x.listed[id]
	return ok
}

// Len is the number of blobs known exactly.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.blobs)
}

// AddPack records every blob of a pack exactly (a pack this process stored or checked).
func (x *Index) AddPack(id crypto.ID, blobs []pack.Blob) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.listed[id] = struct{}{}
	for _, b := range blobs {
		x.addExactLocked(id, b)
	}
}

// addListed records a pack as an index file or its header lists it: each blob exactly when the
// index keeps it, else as a fingerprint (capture) or not at all (a restore that does not need it).
func (x *Index) addListed(id crypto.ID, blobs []pack.Blob) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.listed[id] = struct{}{}
	for _, b := range blobs {
		if x.keepsLocked(b) {
			x.addExactLocked(id, b)
		} else if x.fp != nil {
			x.fp.add(b.ID)
		}
	}
}

func (x *Index) keepsLocked(b pack.Blob) bool {
	if x.all || b.Type == pack.MetaBlob {
		return true
	}
	_, ok := x.want[b.ID]
	return ok
}

func (x *Index) addExactLocked(id crypto.ID, b pack.Blob) {
	if _, dup := x.blobs[b.ID]; dup {
		return
	}
	n, ok := x.packNum[id]
	if !ok {
		n = int32(len(x.packs))
		x.packs = append(x.packs, id)
		x.packNum[id] = n
	}
	x.blobs[b.ID] = entry{pack: n, typ: b.Type, compression: b.Compression, offset: b.Offset, length: b.Length, rawLength: b.RawLength}
}

// PackBlobs is one pack's part of an index file.
type PackBlobs struct {
	Pack  crypto.ID
	Blobs []pack.Blob
}

// EncodeIndex makes an index file's plaintext: magic, then per pack its ID, the blob count
// (uvarint) and the blobs as pack header entries (offsets implied by order within the pack, so
// the entries must be the pack's complete, ordered header).
func EncodeIndex(packs []PackBlobs) []byte {
	out := append([]byte(nil), indexMagic...)
	for _, p := range packs {
		out = append(out, p.Pack[:]...)
		out = binary.AppendUvarint(out, uint64(len(p.Blobs)))
		for _, b := range p.Blobs {
			out = append(out, byte(b.Type), byte(b.Compression))
			out = binary.LittleEndian.AppendUint32(out, b.Length)
			out = binary.LittleEndian.AppendUint32(out, b.RawLength)
			out = append(out, b.ID[:]...)
		}
	}
	return out
}

// DecodeIndex reads an index file's plaintext.
func DecodeIndex(plain []byte) ([]PackBlobs, error) {
	if len(plain) < len(indexMagic) || string(plain[:len(indexMagic)]) != string(indexMagic) {
		return nil, errors.New("not an index (bad magic)")
	}
	p := plain[len(indexMagic):]
	var out []PackBlobs
	for len(p) > 0 {
		if len(p) < 32 {
			return nil, fmt.Errorf("truncated pack ID at byte %d", len(plain)-len(p))
		}
		var pb PackBlobs
		copy(pb.Pack[:], p)
		p = p[32:]
		n, k := binary.Uvarint(p)
		if k <= 0 || n > uint64(len(p)-k)/pack.EntrySize {
			return nil, fmt.Errorf("bad blob count at byte %d", len(plain)-len(p))
		}
		p = p[k:]
		size := int64(n) * pack.EntrySize
		var dataSize int64
		for i := int64(0); i < int64(n); i++ {
			dataSize += int64(binary.LittleEndian.Uint32(p[i*pack.EntrySize+2:]))
		}
		blobs, err := pack.DecodeEntries(p[:size], dataSize)
		if err != nil {
			return nil, fmt.Errorf("pack %s: %w", pb.Pack.Short(), err)
		}
		pb.Blobs = blobs
		p = p[size:]
		out = append(out, pb)
	}
	return out, nil
}

var (
	zstdDecoderOnce sync.Once
	zstdDecoder     *zstd.Decoder
)

// decoder is shared: DecodeAll is safe for concurrent use.
func decoder() *zstd.Decoder {
	zstdDecoderOnce.Do(func() {
		d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(1<<30))
		if err != nil {
			panic(err)
		}
		zstdDecoder = d
	})
	return zstdDecoder
}

var (
	metaEncoderOnce sync.Once
	metaEncoder     *zstd.Encoder
)

func metaCompress(b []byte) []byte {
	metaEncoderOnce.Do(func() {
		e, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
		if err != nil {
			panic(err)
		}
		metaEncoder = e
	})
	return metaEncoder.EncodeAll(b, nil)
}

// saveSealedCompressed writes metadata files (index, generation): zstd then sealed; named by
// the hash of the stored bytes.
func (r *Repository) saveSealedCompressed(ctx context.Context, t backend.FileType, plain []byte) (crypto.ID, error) {
	sealed := r.key.Seal(nil, metaCompress(plain))
	id := crypto.Hash(sealed)
	return id, r.be.Save(ctx, backend.Handle{Type: t, Name: id.String()}, sealed)
}

// loadSealedCompressed reads such a file and checks its name.
func (r *Repository) loadSealedCompressed(ctx context.Context, t backend.FileType, id crypto.ID) ([]byte, error) {
	h := backend.Handle{Type: t, Name: id.String()}
	b, err := backend.ReadAll(ctx, r.be, h)
	if err != nil {
		return nil, err
	}
	return r.openSealedCompressed(h, id, b)
}

// openSealedCompressed checks a stored metadata file's bytes against its name and returns its
// plaintext. Every error it returns means the file itself is damaged (or foreign).
func (r *Repository) openSealedCompressed(h backend.Handle, id crypto.ID, b []byte) ([]byte, error) {
	if crypto.Hash(b) != id {
		return nil, fmt.Errorf("%s: content does not match its name (damaged)", h)
	}
	z, err := r.key.Open(nil, b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", h, err)
	}
	plain, err := decoder().DecodeAll(z, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: decompressing: %w", h, err)
	}
	return plain, nil
}

// WriteIndex stores an index file for packs.
func (r *Repository) WriteIndex(ctx context.Context, packs []PackBlobs) (crypto.ID, error) {
	id, err := r.saveSealedCompressed(ctx, backend.Index, EncodeIndex(packs))
	if err == nil {
		r.idx.mu.Lock()
		r.idx.files[id] = true
		r.idx.mu.Unlock()
	}
	return id, err
}

// IndexFiles lists the stored index files.
func (r *Repository) IndexFiles(ctx context.Context) ([]crypto.ID, error) {
	return r.listIDs(ctx, backend.Index)
}

func (r *Repository) listIDs(ctx context.Context, t backend.FileType) ([]crypto.ID, error) {
	var ids []crypto.ID
	err := r.be.List(ctx, t, func(fi backend.FileInfo) error {
		id, err := crypto.ParseID(fi.Name)
		if err != nil {
			return nil // not ours (e.g. an editor's backup file): ignored, verify reports it
		}
		ids = append(ids, id)
		return nil
	})
	return ids, err
}

// IndexDamageError is an index file that is stored but cannot be used: it does not hash to its
// name, does not open with the repository's key, does not decompress or does not decode.
// Readers skip such a file and find its packs through their headers.
type IndexDamageError struct {
	ID  crypto.ID
	Err error
}

func (e *IndexDamageError) Error() string {
	return fmt.Sprintf("index file index/%s is damaged: %v", e.ID, e.Err)
}

func (e *IndexDamageError) Unwrap() error { return e.Err }

// readIndexFile loads and decodes one index file. A file that is there but unusable is an
// *IndexDamageError; other errors (I/O, gone) are returned as they are.
func (r *Repository) readIndexFile(ctx context.Context, id crypto.ID) ([]PackBlobs, error) {
	h := backend.Handle{Type: backend.Index, Name: id.String()}
	b, err := backend.ReadAll(ctx, r.be, h)
	if err != nil {
		return nil, err
	}
	plain, err := r.openSealedCompressed(h, id, b)
	var packs []PackBlobs
	if err == nil {
		packs, err = DecodeIndex(plain)
	}
	if err != nil {
		return nil, &IndexDamageError{ID: id, Err: err}
	}
	return packs, nil
}

// LoadIndex reads every index file not loaded yet, then the headers of the packs no intact index
// lists, and keeps every blob exactly: memory in proportion to the repository (prune, verify of
// everything). Readers of one generation use LoadIndexFor. A damaged index file is named once
// through the log (SetLog) and skipped, never fatal: the packs it listed are found through their
// headers.
func (r *Repository) LoadIndex(ctx context.Context) error {
	r.idx.mu.Lock()
	reread := !r.idx.all // files read before kept only part of their blobs
	r.idx.all = true
	r.idx.mu.Unlock()
	return r.loadListed(ctx, reread)
}

// LoadIndexFor makes the in-memory index know every blob the generations need, and little else:
// their metadata blobs, then the chunks their chunk lists name. The index files are read twice (as a
// stream, one file at a time), and memory is in proportion to the generation, not the repository.
// A chunk list that cannot be read is left for the reader to name.
func (r *Repository) LoadIndexFor(ctx context.Context, gens ...*Generation) error {
	if err := r.loadListed(ctx, false); err != nil {
		return err
	}
	r.idx.mu.RLock()
	all := r.idx.all
	r.idx.mu.RUnlock()
	if all {
		return nil
	}
	var wanted []crypto.ID
	for _, gen := range gens {
		wanted = append(wanted, r.unknownChunks(ctx, gen)...)
	}
	if len(wanted) == 0 {
		return nil
	}
	r.idx.mu.Lock()
	for _, id := range wanted {
		r.idx.want[id] = struct{}{}
	}
	r.idx.mu.Unlock()
	return r.loadListed(ctx, true)
}

// unknownChunks lists the chunks gen's chunk lists name that the in-memory index does not know.
// A chunk list that cannot be read is skipped: the reader names it when it loads the region.
func (r *Repository) unknownChunks(ctx context.Context, gen *Generation) []crypto.ID {
	var ids []crypto.ID
	for _, d := range gen.Disks {
		for i := range d.Regions {
			g := &d.Regions[i]
			b, err := r.LoadMeta(ctx, gen, g.Chunks)
			if err != nil {
				continue
			}
			cells, err := DecodeChunkList(b, g.NumCells())
			if err != nil {
				continue
			}
			for _, c := range cells {
				if !r.idx.Has(c.ID) {
					ids = append(ids, c.ID)
				}
			}
		}
	}
	return ids
}

// loadFingerprints prepares a capture's index: metadata blobs exactly, every other listed blob
// as a fingerprint.
func (r *Repository) loadFingerprints(ctx context.Context) error {
	// Index files hold about 33 bytes a blob (42-byte entries, zstd-compressed): room for a blob
	// every 30 bytes is a little more than needed.
	var indexBytes int64
	if err := r.be.List(ctx, backend.Index, func(fi backend.FileInfo) error {
		indexBytes += fi.Size
		return nil
	}); err != nil {
		return fmt.Errorf("listing index files: %w", err)
	}
	r.idx.mu.Lock()
	reread := r.idx.fp == nil && len(r.idx.files) > 0
	if r.idx.fp == nil && !r.idx.all {
		r.idx.fp = &fingerprints{}
		r.idx.fp.expect(indexBytes / 30)
	}
	r.idx.mu.Unlock()
	return r.loadListed(ctx, reread)
}

// loadListed adds what the index files list to the in-memory index (every file when reread, else
// the ones not read yet), then what the headers of the packs no intact index lists say.
func (r *Repository) loadListed(ctx context.Context, reread bool) error {
	if err := r.eachIndexedPack(ctx, reread, func(p PackBlobs) error {
		r.idx.addListed(p.Pack, p.Blobs)
		return nil
	}); err != nil {
		return err
	}
	_, err := r.indexUnlistedPacks(ctx)
	r.idx.mu.Lock()
	if r.idx.fp != nil {
		r.idx.fp.seal()
	}
	r.idx.mu.Unlock()
	return err
}

// eachIndexedPack calls fn for each pack every intact index file lists (reread) or every one
// not read before lists; with reread also for each pack found through its header before. It
// holds one index file in memory at a time. A damaged file is named once (warnDamagedIndex) and
// skipped.
func (r *Repository) eachIndexedPack(ctx context.Context, reread bool, fn func(PackBlobs) error) error {
	ids, err := r.IndexFiles(ctx)
	if err != nil {
		return err
	}
	for _, id := range ids {
		r.idx.mu.RLock()
		intact, seen := r.idx.files[id]
		r.idx.mu.RUnlock()
		if seen && (!intact || !reread) {
			continue
		}
		packs, err := r.readIndexFile(ctx, id)
		var damage *IndexDamageError
		switch {
		case errors.Is(err, backend.ErrNotExist):
			continue // removed by a prune since we listed it
		case errors.As(err, &damage):
			r.idx.mu.Lock()
			r.idx.files[id] = false
			r.idx.mu.Unlock()
			r.warnDamagedIndex(damage)
			continue
		case err != nil:
			return fmt.Errorf("index %s: %w", id.Short(), err)
		}
		for _, p := range packs {
			if err := fn(p); err != nil {
				return err
			}
		}
		r.idx.mu.Lock()
		r.idx.files[id] = true
		r.idx.mu.Unlock()
		collectAfterIndexFile(packs)
	}
	if !reread {
		return nil
	}
	r.idx.mu.RLock()
	headerPacks := maps.Clone(r.idx.headerPacks)
	r.idx.mu.RUnlock()
	for id, size := range headerPacks {
		if r.meta.isMetaPack(id) {
			continue
		}
		blobs, err := r.PackHeader(ctx, id, size)
		if err != nil {
			continue // removed by a prune since, or damaged since: the chunks it held are missing
		}
		if err := fn(PackBlobs{Pack: id, Blobs: blobs}); err != nil {
			return err
		}
	}
	return nil
}

// collectAfterIndexFile runs the garbage collector once every gcEveryIndexBlobs blobs of index
// files read. Reading a file leaves tens of MiB of garbage (its sealed, opened and decompressed bytes and
// decoded entries) beside what the index keeps; the collector's own pacing lets that garbage grow
// as large as everything kept, which at tens of millions of blobs doubles the peak memory. What
// the index keeps holds no pointers (fingerprints, IDs), so a collection costs little.
func collectAfterIndexFile(packs []PackBlobs) {
	indexGarbageMu.Lock()
	defer indexGarbageMu.Unlock()
	for _, p := range packs {
		indexGarbage += len(p.Blobs)
	}
	if indexGarbage >= gcEveryIndexBlobs {
		indexGarbage = 0
		runtime.GC()
	}
}

const gcEveryIndexBlobs = 256 << 10 // about 25 MiB of garbage

var (
	indexGarbageMu sync.Mutex
	indexGarbage   int
)

func (r *Repository) warnDamagedIndex(e *IndexDamageError) {
	if r.log != nil {
		r.log(e.Error() + "; skipped: the packs it listed are read from their headers (`cauldron repair index` rebuilds the index)")
	}
}

// indexUnlistedPacks reads the header of every stored pack that no intact index lists (left by
// an interrupted capture, or listed only by a damaged or deleted index file) and adds its blobs
// to the in-memory index. It returns the packs it added; a pack whose header does not open is
// left out (verify names it) and not tried again.
func (r *Repository) indexUnlistedPacks(ctx context.Context) ([]PackBlobs, error) {
	var unlisted []backend.FileInfo
	if err := r.be.List(ctx, backend.Pack, func(fi backend.FileInfo) error {
		id, err := crypto.ParseID(fi.Name)
		if err != nil || r.idx.HasPack(id) || r.meta.isMetaPack(id) {
			return nil // a generation's own metadata pack is not indexed (metapack.go)
		}
		r.idx.mu.RLock()
		_, tried := r.idx.badHeaders[id]
		r.idx.mu.RUnlock()
		if !tried {
			unlisted = append(unlisted, fi)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("listing packs: %w", err)
	}
	var found []PackBlobs
	for _, fi := range unlisted {
		id, _ := crypto.ParseID(fi.Name)
		blobs, err := r.PackHeader(ctx, id, fi.Size)
		if errors.Is(err, backend.ErrNotExist) {
			continue // removed by a prune since we listed it
		}
		if err != nil {
			r.idx.mu.Lock()
			r.idx.badHeaders[id] = err
			r.idx.mu.Unlock()
			continue
		}
		r.idx.addListed(id, blobs)
		found = append(found, PackBlobs{Pack: id, Blobs: blobs})
		r.idx.mu.Lock()
		r.idx.headerPacks[id] = fi.Size
		r.idx.mu.Unlock()
	}
	return found, nil
}

// PackHeader reads and checks a stored pack's header.
func (r *Repository) PackHeader(ctx context.Context, id crypto.ID, size int64) ([]pack.Blob, error) {
	h := backend.Handle{Type: backend.Pack, Name: id.String()}
	tail, err := r.be.Load(ctx, h, 4, size-4)
	if err != nil {
		return nil, err
	}
	n, err := pack.HeaderLength(tail, size)
	if err != nil {
		return nil, err
	}
	sealed, err := r.be.Load(ctx, h, n, size-4-int64(n))
	if err != nil {
		return nil, err
	}
	return pack.ParseHeader(r.key, sealed, size-4-int64(n))
}

// IndexOrphanPacks writes an index file for the packs that no intact index lists — left by a
// capture killed before writing its index, or listed only by a damaged or deleted index file — so
// that their chunks are reused rather than stored again and the next reader need not read their
// headers. A pack whose header does not open is left alone (verify reports it), and so is a
// generation's own metadata pack (metapack.go) named by a manifest read before.
func (r *Repository) IndexOrphanPacks(ctx context.Context) (int, error) {
	if _, err := r.indexUnlistedPacks(ctx); err != nil {
		return 0, err
	}
	r.idx.mu.RLock()
	headerPacks := maps.Clone(r.idx.headerPacks)
	r.idx.mu.RUnlock()
	var found []PackBlobs
	for id, size := range headerPacks {
		if r.meta.isMetaPack(id) {
			continue
		}
		blobs, err := r.PackHeader(ctx, id, size)
		if err != nil {
			continue // gone or damaged since: nothing to index
		}
		found = append(found, PackBlobs{Pack: id, Blobs: blobs})
	}
	for i := 0; i < len(found); i += indexBatch {
		if _, err := r.WriteIndex(ctx, found[i:min(i+indexBatch, len(found))]); err != nil {
			return 0, err
		}
	}
	r.idx.mu.Lock()
	for _, p := range found {
		delete(r.idx.headerPacks, p.Pack)
	}
	r.idx.mu.Unlock()
	return len(found), nil
}

// LoadBlob reads, opens, decompresses and checks one blob.
func (r *Repository) LoadBlob(ctx context.Context, id crypto.ID, buf []byte) ([]byte, error) {
	loc, ok := r.idx.Lookup(id)
	if !ok {
		return nil, fmt.Errorf("chunk %s: not in the index (missing)", id.Short())
	}
	sealed, err := r.be.Load(ctx, backend.Handle{Type: backend.Pack, Name: loc.Pack.String()}, int(loc.Length), int64(loc.Offset))
	if err != nil {
		return nil, fmt.Errorf("chunk %s in pack %s: %w", id.Short(), loc.Pack.Short(), err)
	}
	return r.openBlob(loc, sealed, buf)
}

// openBlob turns a blob's stored bytes into its checked plaintext.
func (r *Repository) openBlob(loc Location, sealed, buf []byte) ([]byte, error) {
	plain, err := r.key.Open(buf[:0], sealed)
	if err != nil {
		return nil, fmt.Errorf("chunk %s in pack %s at %d: %w", loc.ID.Short(), loc.Pack.Short(), loc.Offset, err)
	}
	if loc.Compression == pack.Zstd {
		out, err := decoder().DecodeAll(plain, make([]byte, 0, loc.RawLength))
		if err != nil {
			return nil, fmt.Errorf("chunk %s in pack %s: decompressing: %w", loc.ID.Short(), loc.Pack.Short(), err)
		}
		plain = out
	}
	if len(plain) != int(loc.RawLength) || r.key.ChunkID(plain) != loc.ID {
		return nil, fmt.Errorf("chunk %s in pack %s: %w", loc.ID.Short(), loc.Pack.Short(), pack.ErrBlobID)
	}
	return plain, nil
}
