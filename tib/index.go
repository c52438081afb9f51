package tib

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
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
type Index struct {
	mu      sync.RWMutex
	packs   []crypto.ID
	packNum map[crypto.ID]int32
	blobs   map[crypto.ID]entry
	files   map[crypto.ID]bool // index files read: true loaded, false damaged (skipped)
	// unlisted are packs no intact index lists, found through their headers and not yet written
	// to an index file; badHeaders the packs no intact index lists whose headers do not open.
	unlisted   []PackBlobs
	badHeaders map[crypto.ID]error
}

func newIndex() *Index {
	return &Index{packNum: map[crypto.ID]int32{}, blobs: map[crypto.ID]entry{}, files: map[crypto.ID]bool{},
		badHeaders: map[crypto.ID]error{}}
}

// Has reports whether a blob is indexed.
func (x *Index) Has(id crypto.ID) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	_, ok := x.blobs[id]
	return ok
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

// HasPack reports whether any index lists the pack.
func (x *Index) HasPack(id crypto.ID) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	_, ok := x.packNum[id]
	return ok
}

// Packs returns every indexed pack.
func (x *Index) Packs() []crypto.ID {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return append([]crypto.ID(nil), x.packs...)
}

// Len is the number of distinct blobs.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.blobs)
}

// AddPack records a pack's blobs.
func (x *Index) AddPack(id crypto.ID, blobs []pack.Blob) {
	x.mu.Lock()
	defer x.mu.Unlock()
	n, ok := x.packNum[id]
	if !ok {
		n = int32(len(x.packs))
		x.packs = append(x.packs, id)
		x.packNum[id] = n
	}
	for _, b := range blobs {
		if _, dup := x.blobs[b.ID]; dup {
			continue
		}
		x.blobs[b.ID] = entry{pack: n, typ: b.Type, compression: b.Compression, offset: b.Offset, length: b.Length, rawLength: b.RawLength}
	}
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
// lists. A damaged index file is named once through the log (SetLog) and skipped, never fatal:
// the packs it listed are found through their headers.
func (r *Repository) LoadIndex(ctx context.Context) error {
	if err := r.loadIndexFiles(ctx, r.warnDamagedIndex); err != nil {
		return err
	}
	_, err := r.indexUnlistedPacks(ctx)
	return err
}

// loadIndexFiles reads every index file not loaded (or found damaged) yet into the in-memory
// index; damaged ones go to onDamage.
func (r *Repository) loadIndexFiles(ctx context.Context, onDamage func(*IndexDamageError)) error {
	ids, err := r.IndexFiles(ctx)
	if err != nil {
		return err
	}
	for _, id := range ids {
		r.idx.mu.RLock()
		_, done := r.idx.files[id]
		r.idx.mu.RUnlock()
		if done {
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
			onDamage(damage)
			continue
		case err != nil:
			return fmt.Errorf("index %s: %w", id.Short(), err)
		}
		for _, p := range packs {
			r.idx.AddPack(p.Pack, p.Blobs)
		}
		r.idx.mu.Lock()
		r.idx.files[id] = true
		r.idx.mu.Unlock()
	}
	return nil
}

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
		if err != nil || r.idx.HasPack(id) {
			return nil
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
		r.idx.AddPack(id, blobs)
		found = append(found, PackBlobs{Pack: id, Blobs: blobs})
	}
	r.idx.mu.Lock()
	r.idx.unlisted = append(r.idx.unlisted, found...)
	r.idx.mu.Unlock()
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
// headers. A pack whose header does not open is left alone (verify reports it).
func (r *Repository) IndexOrphanPacks(ctx context.Context) (int, error) {
	if _, err := r.indexUnlistedPacks(ctx); err != nil {
		return 0, err
	}
	r.idx.mu.Lock()
	found := r.idx.unlisted
	r.idx.unlisted = nil
	r.idx.mu.Unlock()
	if len(found) > 0 {
		if _, err := r.WriteIndex(ctx, found); err != nil {
			return 0, err
		}
	}
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
