package tib

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/cauldron-dr/cauldron/partition"
	"github.com/cauldron-dr/cauldron/tib/backend"
	"github.com/cauldron-dr/cauldron/tib/crypto"
	"github.com/cauldron-dr/cauldron/tib/usedblocks"
)

// Generation is one capture of a machine's disks: the manifest stored (zstd, sealed) in
// generations/ID, where ID is the hash of the stored bytes. Saving it is a capture's commit.
type Generation struct {
	ID       crypto.ID  `json:"-"`
	Version  int        `json:"version"`
	Machine  string     `json:"machine"`
	Time     time.Time  `json:"time"`
	Parent   *crypto.ID `json:"parent,omitempty"`
	Hostname string     `json:"hostname,omitempty"`
	Disks    []Disk     `json:"disks"`
	Stats    GenStats   `json:"stats"`
	// MetaPacks are the packs holding this generation's own copy of every metadata blob its
	// regions name (metapack.go). Absent in manifests written before they existed.
	MetaPacks []crypto.ID `json:"metaPacks,omitempty"`
}

// GenStats are a generation's sizes.
type GenStats struct {
	LogicalBytes int64   `json:"logicalBytes"` // sum of the disks' sizes
	UsedBytes    int64   `json:"usedBytes"`    // bytes in used blocks (fs-mapped) or non-zero blocks (whole regions)
	Chunks       int64   `json:"chunks"`       // cells stored (before deduplication)
	NewChunks    int64   `json:"newChunks"`    // blobs this capture added to the repository
	NewBytes     int64   `json:"newBytes"`     // stored bytes this capture added (compressed, sealed)
	Seconds      float64 `json:"seconds"`      // capture duration
}

// Disk is one captured disk.
type Disk struct {
	Name    string         `json:"name"` // disk0, disk1, … in the order captured
	Source  string         `json:"source"`
	Layout  partition.Disk `json:"layout"`
	Regions []Region       `json:"regions"`
}

// RegionKind says what a region of a disk is.
type RegionKind string

const (
	RegionPartition RegionKind = "partition"
	RegionGap       RegionKind = "gap" // partition tables, EBRs, boot loaders, free space
)

// Region is a byte range of a disk stored as one unit: a data partition or a gap between them.
// Its data is cut into cells of CellSize bytes from the region's start; cell i holds the region's
// bytes [i*CellSize, min((i+1)*CellSize, Size)), with unused blocks replaced by zeros.
type Region struct {
	Kind       RegionKind `json:"kind"`
	Partition  int        `json:"partition,omitempty"` // partition number, for partitions
	Start      int64      `json:"start"`               // bytes from the disk's start
	Size       int64      `json:"size"`
	Filesystem string     `json:"filesystem,omitempty"`
	// Whole: no allocation map was used; every block of the region is restored, and blocks
	// not stored (cells absent from the chunk list) are zero.
	Whole      bool      `json:"whole"`
	Note       string    `json:"note,omitempty"` // why a filesystem region was stored whole
	BlockSize  int64     `json:"blockSize"`
	CellSize   int64     `json:"cellSize"`
	UsedBlocks int64     `json:"usedBlocks"`
	UsedMap    crypto.ID `json:"usedMap"` // meta blob: the used-block bitmap
	Chunks     crypto.ID `json:"chunks"`  // meta blob: the chunk list
	Cells      int64     `json:"cells"`   // entries in the chunk list
}

// UsedBytes is the region's used bytes, capped at its size.
func (g *Region) UsedBytes() int64 { return min(g.UsedBlocks*g.BlockSize, g.Size) }

// UsedByPartition returns the bytes each captured partition's volume needs (from its used-block
// map), by partition number: what partition.PlanOptions.Used takes to decide how far a volume
// may shrink.
func (d *Disk) UsedByPartition() map[int]int64 {
	used := map[int]int64{}
	for i := range d.Regions {
		if g := &d.Regions[i]; g.Kind == RegionPartition {
			used[g.Partition] = g.UsedBytes()
		}
	}
	return used
}

// Cell is one chunk-list entry.
type Cell struct {
	Index int64
	ID    crypto.ID
}

// EncodeChunkList: per cell in increasing index order, uvarint(index − previous index − 1, with
// previous = −1 at the start) then the 32-byte chunk ID.
func EncodeChunkList(cells []Cell) []byte {
	out := make([]byte, 0, len(cells)*34)
	prev := int64(-1)
	for _, c := range cells {
		out = binary.AppendUvarint(out, uint64(c.Index-prev-1))
		out = append(out, c.ID[:]...)
		prev = c.Index
	}
	return out
}

// DecodeChunkList reads a chunk list; maxCells bounds the indexes (the region's cell count).
func DecodeChunkList(b []byte, maxCells int64) ([]Cell, error) {
	var cells []Cell
	prev := int64(-1)
	for len(b) > 0 {
		d, n := binary.Uvarint(b)
		if n <= 0 || d >= uint64(maxCells) {
			return nil, fmt.Errorf("chunk list entry %d: bad cell index", len(cells))
		}
		idx := prev + 1 + int64(d)
		if idx >= maxCells {
			return nil, fmt.Errorf("chunk list entry %d: cell %d beyond the region's %d cells", len(cells), idx, maxCells)
		}
		b = b[n:]
		if len(b) < 32 {
			return nil, fmt.Errorf("chunk list entry %d: truncated ID", len(cells))
		}
		var c Cell
		c.Index = idx
		copy(c.ID[:], b)
		b = b[32:]
		cells = append(cells, c)
		prev = idx
	}
	return cells, nil
}

// EncodeUsedMap: the map's 64-bit words, little-endian (block i is bit i%64 of word i/64).
func EncodeUsedMap(m *usedblocks.Map) []byte {
	w := m.Words()
	out := make([]byte, 0, len(w)*8)
	for _, x := range w {
		out = binary.LittleEndian.AppendUint64(out, x)
	}
	return out
}

// DecodeUsedMap reads a used map of n blocks.
func DecodeUsedMap(b []byte, blockSize, n int64) (*usedblocks.Map, error) {
	if int64(len(b)) != (n+63)/64*8 {
		return nil, fmt.Errorf("used map has %d bytes, want %d for %d blocks", len(b), (n+63)/64*8, n)
	}
	w := make([]uint64, len(b)/8)
	for i := range w {
		w[i] = binary.LittleEndian.Uint64(b[i*8:])
	}
	return usedblocks.FromWords(blockSize, n, w), nil
}

// Blocks is the number of blocks in the region.
func (g *Region) Blocks() int64 { return (g.Size + g.BlockSize - 1) / g.BlockSize }

// NumCells is the number of cells in the region.
func (g *Region) NumCells() int64 { return (g.Size + g.CellSize - 1) / g.CellSize }

// Validate checks a decoded manifest's shape, so that damage or a hostile repository cannot make
// restore write outside the disk.
func (gen *Generation) Validate() error {
	if gen.Version != FormatVersion {
		return fmt.Errorf("manifest version %d, want %d", gen.Version, FormatVersion)
	}
	if gen.Machine == "" {
		return errors.New("manifest has no machine name")
	}
	for i, d := range gen.Disks {
		if d.Name != fmt.Sprintf("disk%d", i) {
			return fmt.Errorf("disk %d is named %q", i, d.Name)
		}
		var end int64
		for j, g := range d.Regions {
			switch {
			case g.Size <= 0 || g.Start < end || g.Start+g.Size > d.Layout.Size:
				return fmt.Errorf("%s region %d [%d, %d) is outside the disk or overlaps the previous region", d.Name, j, g.Start, g.Start+g.Size)
			case g.BlockSize <= 0 || g.BlockSize > 1<<24 || g.CellSize <= 0 || g.CellSize%g.BlockSize != 0 || g.CellSize > 64<<20:
				return fmt.Errorf("%s region %d: invalid block size %d or cell size %d", d.Name, j, g.BlockSize, g.CellSize)
			}
			end = g.Start + g.Size
		}
	}
	return nil
}

// SaveGeneration stores a manifest; this is a capture's commit.
func (r *Repository) SaveGeneration(ctx context.Context, gen *Generation) error {
	gen.Version = FormatVersion
	b, err := json.Marshal(gen)
	if err != nil {
		return err
	}
	id, err := r.saveSealedCompressed(ctx, backend.Generation, b)
	if err != nil {
		return err
	}
	gen.ID = id
	return nil
}

// ErrDamagedManifest is what every *ManifestError is.
var ErrDamagedManifest = errors.New("manifest cannot be read")

// ManifestError is a generation whose manifest was read but cannot be used: damaged, sealed
// with another repository's key, not a manifest, or of a shape that fails Validate. It is one
// damaged generation, not a broken repository: listings name it beside the readable ones, and
// forget removes it by its ID.
type ManifestError struct {
	ID  crypto.ID
	Err error
}

func (e *ManifestError) Error() string {
	return fmt.Sprintf("generation %s: %v: %v", e.ID.Short(), ErrDamagedManifest, e.Err)
}

func (e *ManifestError) Unwrap() []error { return []error{ErrDamagedManifest, e.Err} }

// Remedy says how to be rid of the damaged generation.
func (e *ManifestError) Remedy() string {
	return fmt.Sprintf("remove it with `cauldron forget --generation %s` or `cauldron repair generations`", e.ID)
}

// LoadGeneration reads and checks one manifest. A manifest that was read but cannot be used is a
// *ManifestError; an error reading it (missing, I/O) is returned as such.
func (r *Repository) LoadGeneration(ctx context.Context, id crypto.ID) (*Generation, error) {
	h := backend.Handle{Type: backend.Generation, Name: id.String()}
	stored, err := backend.ReadAll(ctx, r.be, h)
	if err != nil {
		return nil, fmt.Errorf("generation %s: %w", id.Short(), err)
	}
	plain, err := r.openSealedCompressed(h, id, stored)
	if err != nil {
		return nil, &ManifestError{id, err}
	}
	var gen Generation
	if err := json.Unmarshal(plain, &gen); err != nil {
		return nil, &ManifestError{id, err}
	}
	if err := gen.Validate(); err != nil {
		return nil, &ManifestError{id, err}
	}
	gen.ID = id
	r.meta.know(gen.MetaPacks)
	return &gen, nil
}

// Generations loads every readable manifest (of one machine when machine is not empty), oldest
// first. Damaged manifests are left out: ListGenerations names them.
func (r *Repository) Generations(ctx context.Context, machine string) ([]*Generation, error) {
	gens, _, err := r.ListGenerations(ctx, machine)
	return gens, err
}

// ListGenerations loads every manifest: the readable ones (of machine, when not empty), oldest
// first, and the damaged ones (whose machine cannot be known, so they are listed whatever machine
// is). An error reading a manifest (other than its being forgotten since the listing) stops it.
func (r *Repository) ListGenerations(ctx context.Context, machine string) ([]*Generation, []*ManifestError, error) {
	ids, err := r.listIDs(ctx, backend.Generation)
	if err != nil {
		return nil, nil, err
	}
	var out []*Generation
	var damaged []*ManifestError
	var metaPacks []crypto.ID
	for _, id := range ids {
		g, err := r.LoadGeneration(ctx, id)
		var me *ManifestError
		switch {
		case errors.Is(err, backend.ErrNotExist):
			continue // forgotten since we listed
		case errors.As(err, &me):
			damaged = append(damaged, me)
			continue
		case err != nil:
			return nil, nil, err
		}
		metaPacks = append(metaPacks, g.MetaPacks...)
		if machine == "" || g.Machine == machine {
			out = append(out, g)
		}
	}
	r.meta.replace(metaPacks)
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Time.Equal(out[j].Time) {
			return out[i].Time.Before(out[j].Time)
		}
		return out[i].ID.String() < out[j].ID.String()
	})
	sort.Slice(damaged, func(i, j int) bool { return damaged[i].ID.String() < damaged[j].ID.String() })
	return out, damaged, nil
}

// ErrUnknownMachine and ErrUnknownGeneration are returned by FindGeneration.
var (
	ErrUnknownMachine    = errors.New("unknown machine")
	ErrUnknownGeneration = errors.New("unknown generation")
)

// GenerationKind says how a GenerationRef chooses a generation.
type GenerationKind string

const (
	GenerationLatest GenerationKind = "latest" // the machine's newest generation
	GenerationID     GenerationKind = "id"     // a unique prefix of a generation ID
	GenerationTime   GenerationKind = "time"   // the newest generation taken at or before a time
)

// GenerationRef chooses one of a machine's generations. The kickstart's --generation, the
// command line's --generation and the wizard all mean the same by it: ParseGenerationRef reads
// it and FindGeneration resolves it.
type GenerationRef struct {
	Kind GenerationKind `json:"kind"`
	ID   string         `json:"id,omitempty"`  // lower-case hex, 4 to 64 digits
	Time time.Time      `json:"time,omitzero"` // UTC
}

var hexRef = regexp.MustCompile(`^[0-9a-f]{4,64}$`)

// generationTimeLayouts are the forms of a time without a zone, which is UTC: the boot
// environment has no local zone, and a kickstart must mean the same wherever it is read. A time
// may have fractional seconds wherever it has seconds.
var generationTimeLayouts = []string{"2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02 15:04:05", "2006-01-02 15:04"}

// ParseGenerationRef reads "latest", a generation ID prefix (at least 4 hex digits) or a time:
// RFC 3339 with its zone (2026-11-21T03:00:00+01:00, as FormatTime prints it), the same with a
// space for the T, a time without a zone (UTC; 2026-11-21T02:00, 2026-11-21 02:00:30), or a
// date alone (2026-11-21), meaning the end of that day in UTC.
func ParseGenerationRef(s string) (GenerationRef, error) {
	lower := strings.ToLower(s)
	if lower == "latest" {
		return GenerationRef{Kind: GenerationLatest}, nil
	}
	if hexRef.MatchString(lower) {
		return GenerationRef{Kind: GenerationID, ID: lower}, nil
	}
	withZone := strings.Replace(s, " ", "T", 1)
	if t, err := time.Parse(time.RFC3339Nano, withZone); err == nil {
		return GenerationRef{Kind: GenerationTime, Time: t.UTC()}, nil
	}
	for _, layout := range generationTimeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return GenerationRef{Kind: GenerationTime, Time: t}, nil
		}
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return GenerationRef{Kind: GenerationTime, Time: t.Add(24*time.Hour - time.Nanosecond)}, nil
	}
	if len(lower) > 0 && len(lower) < 4 && hexRef.MatchString(lower+strings.Repeat("0", 4-len(lower))) {
		return GenerationRef{}, fmt.Errorf("want at least 4 hex digits of a generation ID, got %q", s)
	}
	return GenerationRef{}, fmt.Errorf("want latest, a generation ID (at least 4 hex digits) or a time such as 2026-11-21T02:00:00Z, got %q", s)
}

// String writes g so that ParseGenerationRef reads it back.
func (g GenerationRef) String() string {
	switch g.Kind {
	case GenerationID:
		return g.ID
	case GenerationTime:
		return g.Time.UTC().Format(time.RFC3339Nano)
	}
	return "latest"
}

// FormatTime is how every command and screen shows a generation's (or a session's) time: the
// local time with its offset from UTC, in RFC 3339, so that it can be pasted back as a
// --generation (in the boot environment, which has no zone, that is UTC with a Z).
func FormatTime(t time.Time) string { return t.Local().Format(time.RFC3339) }

// FindGeneration resolves a generation reference as ParseGenerationRef reads it ("" is
// latest) within a machine.
func (r *Repository) FindGeneration(ctx context.Context, machine, ref string) (*Generation, error) {
	g := GenerationRef{Kind: GenerationLatest}
	if ref != "" {
		var err error
		if g, err = ParseGenerationRef(ref); err != nil {
			return nil, fmt.Errorf("generation: %w", err)
		}
	}
	return r.ResolveGeneration(ctx, machine, g)
}

// ResolveGeneration finds the generation ref chooses among machine's: the newest, the one
// whose ID starts with ref.ID, or the newest taken at or before ref.Time.
func (r *Repository) ResolveGeneration(ctx context.Context, machine string, ref GenerationRef) (*Generation, error) {
	gens, damaged, err := r.ListGenerations(ctx, machine)
	if err != nil {
		return nil, err
	}
	if ref.Kind == GenerationID {
		if d := damagedWithPrefix(damaged, ref.ID); d != nil && !anyWithPrefix(gens, ref.ID) {
			return nil, fmt.Errorf("%w; %s", d, d.Remedy())
		}
	} else if len(damaged) > 0 {
		r.warnChoosingAmongReadable(ctx, machine, damaged)
	}
	if len(gens) == 0 {
		all, err := r.Generations(ctx, "")
		if err != nil {
			return nil, err
		}
		unreadable := ""
		if len(damaged) > 0 {
			unreadable = fmt.Sprintf("; %d generation manifest(s) cannot be read, and may be its: see `cauldron generations`", len(damaged))
		}
		return nil, fmt.Errorf("%w %q in %s (machines: %s)%s", ErrUnknownMachine, machine, r.Location(), machineList(all), unreadable)
	}
	switch ref.Kind {
	case GenerationLatest, "":
		return gens[len(gens)-1], nil
	case GenerationTime:
		// gens are sorted oldest first: the last one not after the time is the newest at or before it.
		var best *Generation
		for _, g := range gens {
			if !g.Time.After(ref.Time) {
				best = g
			}
		}
		if best == nil {
			return nil, fmt.Errorf("%w: machine %q has no generation taken at or before %s (the first is from %s)",
				ErrUnknownGeneration, machine, FormatTime(ref.Time), FormatTime(gens[0].Time))
		}
		return best, nil
	case GenerationID:
	default:
		return nil, fmt.Errorf("generation reference of unknown kind %q", ref.Kind)
	}
	var found []*Generation
	for _, g := range gens {
		if strings.HasPrefix(g.ID.String(), ref.ID) {
			found = append(found, g)
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("%w %q for machine %q (see `cauldron generations --machine %s`)", ErrUnknownGeneration, ref.ID, machine, machine)
	case 1:
		return found[0], nil
	}
	return nil, fmt.Errorf("generation %q is ambiguous for machine %q: %d generations match", ref.ID, machine, len(found))
}

func damagedWithPrefix(damaged []*ManifestError, prefix string) *ManifestError {
	for _, d := range damaged {
		if strings.HasPrefix(d.ID.String(), prefix) {
			return d
		}
	}
	return nil
}

func anyWithPrefix(gens []*Generation, prefix string) bool {
	for _, g := range gens {
		if strings.HasPrefix(g.ID.String(), prefix) {
			return true
		}
	}
	return false
}

// warnChoosingAmongReadable says that latest or a time is resolved among the readable
// generations while some manifests cannot be read: they may be machine's (a damaged manifest's
// machine cannot be known, unless its replication session recorded it as the newest).
func (r *Repository) warnChoosingAmongReadable(ctx context.Context, machine string, damaged []*ManifestError) {
	if r.log == nil {
		return
	}
	var newest *crypto.ID
	if s, err := r.Session(ctx, machine); err == nil && s != nil {
		newest = s.LastGeneration
	}
	for _, d := range damaged {
		if newest != nil && *newest == d.ID {
			r.log(fmt.Sprintf("machine %s: its newest generation %s (as its replication session records) cannot be read (%v); choosing among its readable generations; %s",
				machine, d.ID.Short(), d.Err, d.Remedy()))
			return
		}
	}
	ids := make([]string, len(damaged))
	for i, d := range damaged {
		ids[i] = d.ID.Short()
	}
	r.log(fmt.Sprintf("%d generation manifest(s) cannot be read (%s; their machine is unknown); choosing among %s's readable generations (see `cauldron verify`)",
		len(damaged), strings.Join(ids, ", "), machine))
}

func machineList(gens []*Generation) string {
	seen := map[string]bool{}
	var names []string
	for _, g := range gens {
		if !seen[g.Machine] {
			seen[g.Machine] = true
			names = append(names, g.Machine)
		}
	}
	if len(names) == 0 {
		return "none yet"
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// Disk returns the named disk of a generation.
func (gen *Generation) Disk(name string) (*Disk, error) {
	var names []string
	for i := range gen.Disks {
		if gen.Disks[i].Name == name {
			return &gen.Disks[i], nil
		}
		names = append(names, gen.Disks[i].Name)
	}
	return nil, fmt.Errorf("generation %s of %s has no disk %q (it has %s)", gen.ID.Short(), gen.Machine, name, strings.Join(names, ", "))
}

// LoadRegion reads a region's chunk list and used map (LoadMeta: from any intact copy).
func (r *Repository) LoadRegion(ctx context.Context, gen *Generation, g *Region) ([]Cell, *usedblocks.Map, error) {
	b, err := r.LoadMeta(ctx, gen, g.Chunks)
	if err != nil {
		return nil, nil, fmt.Errorf("chunk list: %w", err)
	}
	cells, err := DecodeChunkList(b, g.NumCells())
	if err != nil {
		return nil, nil, err
	}
	mb, err := r.LoadMeta(ctx, gen, g.UsedMap)
	if err != nil {
		return nil, nil, fmt.Errorf("used map: %w", err)
	}
	m, err := DecodeUsedMap(mb, g.BlockSize, g.Blocks())
	if err != nil {
		return nil, nil, err
	}
	return cells, m, nil
}

// Forget removes one generation. The data only it needed stays until prune.
func (r *Repository) Forget(ctx context.Context, gen *Generation) error {
	if err := r.be.Remove(ctx, backend.Handle{Type: backend.Generation, Name: gen.ID.String()}); err != nil {
		return err
	}
	if err := r.noteForget(ctx, gen); err != nil {
		return fmt.Errorf("generation %s forgotten, but its machine's replication session was not updated (verify will call it a rollback): %w", gen.ID.Short(), err)
	}
	return nil
}

// ForgetID removes the generation whose ID starts with prefix (at least 4 hex digits), found
// among the stored manifests' names: a manifest that cannot be read is forgotten as well, without
// decoding it. machine, when not empty, must be a readable generation's machine (a damaged
// manifest's machine cannot be known). It returns the generation forgotten, or, for a damaged
// one, nil and the *ManifestError that says why it could not be read.
func (r *Repository) ForgetID(ctx context.Context, machine, prefix string) (*Generation, *ManifestError, error) {
	if !hexRef.MatchString(prefix) {
		return nil, nil, fmt.Errorf("forget needs a generation ID (at least 4 lower-case hex digits), got %q", prefix)
	}
	ids, err := r.listIDs(ctx, backend.Generation)
	if err != nil {
		return nil, nil, err
	}
	var found []crypto.ID
	for _, id := range ids {
		if strings.HasPrefix(id.String(), prefix) {
			found = append(found, id)
		}
	}
	switch {
	case len(found) == 0:
		return nil, nil, fmt.Errorf("%w %q in %s (see `cauldron generations`)", ErrUnknownGeneration, prefix, r.Location())
	case len(found) > 1:
		return nil, nil, fmt.Errorf("generation %q is ambiguous: %d generations match", prefix, len(found))
	}
	gen, err := r.LoadGeneration(ctx, found[0])
	var me *ManifestError
	if errors.As(err, &me) {
		return nil, me, r.forgetDamaged(ctx, me.ID)
	}
	if err != nil {
		return nil, nil, err
	}
	if machine != "" && gen.Machine != machine {
		return nil, nil, fmt.Errorf("generation %s is machine %s's, not %s's", gen.ID.Short(), gen.Machine, machine)
	}
	return gen, nil, r.Forget(ctx, gen)
}

// forgetDamaged removes a manifest that cannot be read. A replication session that recorded it as
// its machine's newest moves on to the newest that remains, as forget does for a readable one.
func (r *Repository) forgetDamaged(ctx context.Context, id crypto.ID) error {
	if err := r.be.Remove(ctx, backend.Handle{Type: backend.Generation, Name: id.String()}); err != nil {
		return err
	}
	sessions, err := r.Sessions(ctx)
	if err != nil {
		return fmt.Errorf("generation %s forgotten, but the replication sessions could not be read: %w", id.Short(), err)
	}
	for i := range sessions {
		if s := &sessions[i]; s.LastGeneration != nil && *s.LastGeneration == id {
			if err := r.moveLastGeneration(ctx, s, id); err != nil {
				return fmt.Errorf("generation %s forgotten, but machine %s's replication session was not updated (verify will call it a rollback): %w", id.Short(), s.Machine, err)
			}
		}
	}
	return nil
}
