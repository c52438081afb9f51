package partition

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
)

// Planning maps a captured layout onto a target disk that may differ in size and sector size.
// Everything here is pure: it works on the model, never on a disk, so the recovery engine can show
// the plan as a dry run and refuse it before anything is written.

// Align is the boundary every planned partition (and every EBR of a planned MBR) starts on. 1 MiB
// is what fdisk, sgdisk and Windows use: a multiple of every logical and physical sector size,
// RAID stripe and SSD erase block in practice.
const Align = 1 << 20

// ResizeMode says what to do with partitions when the target's size differs from the source's.
type ResizeMode string

const (
	// ResizeProportional scales every partition whose filesystem can be resized by the same
	// factor (never below what its data needs); the others keep their size.
	ResizeProportional ResizeMode = "proportional"
	// ResizeGrowLast keeps every partition's size except the last one (by position), which takes
	// what is left: it grows on a bigger target and shrinks, if its data fits, on a smaller one.
	ResizeGrowLast ResizeMode = "grow-last"
	// ResizeKeep keeps every size; a target too small for them is refused.
	ResizeKeep ResizeMode = "keep"
)

// IdentityMode says whether the target gets the source's identities or new ones.
type IdentityMode string

const (
	// IdentityKeep writes the source's disk signature, disk GUID and partition GUIDs: recovery in
	// place, where boot entries, fstab and Windows' MountedDevices name them.
	IdentityKeep IdentityMode = "keep"
	// IdentityRenew writes new ones: a copy that must run beside the original.
	IdentityRenew IdentityMode = "renew"
)

// PlanOptions are the choices a plan is made with.
type PlanOptions struct {
	Resize   ResizeMode   // default proportional
	Identity IdentityMode // default keep
	// Used is the number of bytes each data partition's volume needs (by partition number), e.g.
	// from the generation's used-block maps. A partition missing here falls back to its
	// filesystem's own counter (Filesystem.UsedBytes); with neither it is never shrunk.
	Used map[int]int64
	// Rand is the source of renewed identities; nil means crypto/rand. Tests pass a fixed one.
	Rand io.Reader
}

// TargetDisk identifies the disk a plan was made for, so that Apply can refuse any other disk.
type TargetDisk struct {
	Path               string `json:"path,omitempty"` // as given when planning; informative only
	Size               int64  `json:"size"`
	LogicalSectorSize  int    `json:"logicalSectorSize"`
	PhysicalSectorSize int    `json:"physicalSectorSize"`
	Model              string `json:"model,omitempty"`
	Serial             string `json:"serial,omitempty"`
	WWN                string `json:"wwn,omitempty"`
	// Old are the target's partitions before the plan is applied (where a table was readable):
	// their first and last bytes are wiped so that no stale signature survives.
	Old []Extent `json:"old,omitempty"`
}

// Move is one partition old → new.
type Move struct {
	Number     int    `json:"number"`
	Kind       Kind   `json:"kind"`
	OldStart   int64  `json:"oldStart"`
	OldSize    int64  `json:"oldSize"`
	NewStart   int64  `json:"newStart"`
	NewSize    int64  `json:"newSize"`
	Filesystem string `json:"filesystem,omitempty"`
	Used       int64  `json:"used,omitempty"` // bytes the volume needs; 0 when unknown
}

// Identity is one identity old → new (equal when kept). Windows inoculation needs both to rewrite
// MountedDevices and the BCD; Linux fixes need them for fstab and boot entries.
type Identity struct {
	What      string `json:"what"`                // "disk signature", "disk GUID", "partition GUID"
	Partition int    `json:"partition,omitempty"` // for partition identities
	Old       string `json:"old"`
	New       string `json:"new"`
}

// FSResize is a filesystem that must be grown or shrunk after its data is restored.
type FSResize struct {
	Partition int    `json:"partition"`
	Type      string `json:"type"`
	Action    string `json:"action"` // "grow" or "shrink"
	OldSize   int64  `json:"oldSize"`
	NewSize   int64  `json:"newSize"`
}

// Check is one thing the plan verified; a plan with a failed check must not be applied.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

// LayoutPlan is a source layout mapped onto one target disk.
type LayoutPlan struct {
	Resize      ResizeMode   `json:"resize"`
	IdentityOpt IdentityMode `json:"identity"`
	Target      TargetDisk   `json:"target"`
	SourceSize  int64        `json:"sourceSize"`
	SourceLSS   int          `json:"sourceLogicalSectorSize"`
	Moves       []Move       `json:"moves"`
	Identities  []Identity   `json:"identities"`
	Filesystems []FSResize   `json:"filesystems,omitempty"`
	Checks      []Check      `json:"checks"`
	Warnings    []string     `json:"warnings,omitempty"`
	// Layout is what will be written: the source layout with new positions, sizes, sector size
	// and identities (filesystems as the source had them).
	Layout *Disk `json:"layout"`
}

// Failed returns the checks that failed.
func (p *LayoutPlan) Failed() []Check {
	var f []Check
	for _, c := range p.Checks {
		if !c.OK {
			f = append(f, c)
		}
	}
	return f
}

// PlanError is returned by Plan when the plan could be computed but a check failed; the plan
// itself is returned too so that it can be shown.
type PlanError struct{ Failed []Check }

func (e *PlanError) Error() string {
	var s []string
	for _, c := range e.Failed {
		s = append(s, c.Name+": "+c.Detail)
	}
	return "the plan cannot be applied: " + strings.Join(s, "; ")
}

// resizable says which filesystems Cauldron can grow or shrink after restoring them (with
// resize2fs, ntfsresize, mkswap, and FAT16/FAT32 in Go; xfs_growfs and btrfs only grow). It must
// agree with ResizeFilesystem and ResizeFAT; the limits that depend on a volume's own geometry
// (FAT cluster counts, sector sizes) are checked against its boot sector before a restore writes
// anything (restore/write.CheckPlan).
func resizable(fsType string) (grow, shrink bool) {
	switch fsType {
	case "ext2", "ext3", "ext4", "ntfs", "swap", "vfat":
		return true, true
	case "xfs", "btrfs":
		return true, false
	}
	return false, false
}

// shrinkNeed is the size a volume holding used bytes must keep when shrunk: the used bytes plus
// headroom for what a filesystem shrink needs beyond its data (moved metadata, a journal, free
// blocks the tools insist on), rounded up to the alignment.
func shrinkNeed(used int64) int64 {
	return alignUp(used+used/20+8<<20, Align)
}

func alignUp(n, a int64) int64   { return (n + a - 1) / a * a }
func alignDown(n, a int64) int64 { return n / a * a }

// Plan maps the source layout src onto target (of which Size, LogicalSectorSize and, where known,
// PhysicalSectorSize, Model, Serial, WWN and Partitions are used). It returns the plan and, if a
// check failed, a *PlanError with the plan still returned for display. Other errors mean no plan
// could be made at all.
func Plan(src, target *Disk, opts PlanOptions) (*LayoutPlan, error) {
	if src == nil || target == nil {
		return nil, errors.New("plan: no source or no target layout")
	}
	if opts.Resize == "" {
		opts.Resize = ResizeProportional
	}
	if opts.Identity == "" {
		opts.Identity = IdentityKeep
	}
	switch opts.Resize {
	case ResizeProportional, ResizeGrowLast, ResizeKeep:
	default:
		return nil, fmt.Errorf("plan: unknown resize mode %q (proportional, grow-last or keep)", opts.Resize)
	}
	switch opts.Identity {
	case IdentityKeep, IdentityRenew:
	default:
		return nil, fmt.Errorf("plan: unknown identity mode %q (keep or renew)", opts.Identity)
	}
	lss := int64(target.LogicalSectorSize)
	if lss < 512 || lss > 4096 || lss&(lss-1) != 0 {
		return nil, fmt.Errorf("plan: target logical sector size %d is not a power of two from 512 to 4096", lss)
	}
	if src.Table != TableMBR && src.Table != TableGPT {
		return nil, fmt.Errorf("plan: the source disk has no partition table (%s); it is restored whole, not planned", src.Table)
	}
	if err := validateSource(src); err != nil {
		return nil, err
	}
	if target.Size < 0 {
		return nil, fmt.Errorf("plan: negative target size %d", target.Size)
	}
	if opts.Rand == nil {
		opts.Rand = rand.Reader
	}
	pl := &planner{src: src, tgt: target, opts: opts, lss: lss}
	return pl.plan()
}

type planner struct {
	src, tgt *Disk
	opts     PlanOptions
	lss      int64
	p        *LayoutPlan
	// usable byte range for partitions on the target
	first, end int64
}

func (pl *planner) check(name string, ok bool, format string, args ...any) {
	c := Check{Name: name, OK: ok}
	if format != "" {
		c.Detail = fmt.Sprintf(format, args...)
	}
	pl.p.Checks = append(pl.p.Checks, c)
}

func (pl *planner) warn(format string, args ...any) {
	pl.p.Warnings = append(pl.p.Warnings, fmt.Sprintf(format, args...))
}

// swapNeed is what a swap area needs when shrunk: its header page. The rest is paging data of a
// machine that is not running (a hibernation image in it would be lost, as on any recovery).
const swapNeed = 64 << 10

// used returns the bytes partition n needs, or -1 when unknown.
func (pl *planner) used(p Partition) int64 {
	if p.Filesystem != nil && p.Filesystem.Type == "swap" {
		return swapNeed
	}
	if u, ok := pl.opts.Used[p.Number]; ok {
		return u
	}
	if p.Filesystem != nil && p.Filesystem.UsedBytes > 0 {
		return p.Filesystem.UsedBytes
	}
	return -1
}

// gptEntries is the number of GPT entries the target gets: the source's (at least 128, what
// every tool writes and some firmware expects), and enough for the highest partition number.
func (pl *planner) gptEntries() uint32 {
	// Capped at what Read accepts, so a manifest cannot ask for an array no reader would take.
	n := min(max(pl.src.EntryCount, 128), gptMaxArrayBytes/128)
	for _, p := range pl.src.Partitions {
		n = max(n, uint32(p.Number))
	}
	return n
}

func (pl *planner) plan() (*LayoutPlan, error) {
	src, tgt, lss := pl.src, pl.tgt, pl.lss
	pl.p = &LayoutPlan{
		Resize:      pl.opts.Resize,
		IdentityOpt: pl.opts.Identity,
		Target: TargetDisk{Size: tgt.Size, LogicalSectorSize: tgt.LogicalSectorSize, PhysicalSectorSize: tgt.PhysicalSectorSize,
			Model: tgt.Model, Serial: tgt.Serial, WWN: tgt.WWN},
		SourceSize: src.Size,
		SourceLSS:  src.LogicalSectorSize,
		Moves:      []Move{},
		Identities: []Identity{},
		Checks:     []Check{},
	}
	for _, p := range tgt.Partitions {
		pl.p.Target.Old = append(pl.p.Target.Old, Extent{p.Start, p.Size})
	}
	// What reading the source found odd (a hybrid MBR, a damaged GPT copy) matters to whoever
	// recreates it: the target gets a clean table, not the oddity.
	for _, w := range src.Warnings {
		pl.warn("source: %s", w)
	}
	sectors := tgt.Size / lss
	out := &Disk{
		Table:              src.Table,
		Size:               tgt.Size,
		LogicalSectorSize:  int(lss),
		PhysicalSectorSize: max(tgt.PhysicalSectorSize, int(lss)),
		BootCode:           src.BootCode,
		Bootloader:         src.Bootloader,
		Model:              tgt.Model,
		Serial:             tgt.Serial,
		WWN:                tgt.WWN,
		Partitions:         []Partition{},
	}
	pl.p.Layout = out

	// The bytes partitions may use.
	switch src.Table {
	case TableGPT:
		entries := pl.gptEntries()
		arraySectors := (int64(entries)*128 + lss - 1) / lss
		firstUsable := 2 + arraySectors
		lastUsable := sectors - 2 - arraySectors
		if lastUsable < firstUsable {
			pl.check("target size", false, "the target (%d bytes) is too small for a GPT", tgt.Size)
			return pl.p, &PlanError{pl.p.Failed()}
		}
		out.EntryCount, out.EntrySize = entries, 128
		out.FirstUsableLBA, out.LastUsableLBA = uint64(firstUsable), uint64(lastUsable)
		pl.first = firstUsable * lss
		pl.end = (lastUsable + 1) * lss
		if src.EntrySize > 128 {
			pl.warn("the source's GPT entries are %d bytes; the target gets 128-byte entries (the bytes past 128 are reserved by UEFI and not kept)", src.EntrySize)
		}
	case TableMBR:
		pl.first = lss // sector 0 holds the MBR
		pl.end = sectors * lss
		if limit := int64(1<<32) * lss; pl.end > limit {
			pl.end = limit
			pl.warn("an MBR addresses at most %d bytes with %d-byte sectors; the target's space beyond stays unused (use a GPT for the whole disk)", limit, lss)
		}
	}
	pl.end = alignDown(pl.end, lss)

	if src.LogicalSectorSize != int(lss) {
		pl.warn("the table is converted from %d- to %d-byte sectors", src.LogicalSectorSize, lss)
		for _, p := range src.Partitions {
			if p.Filesystem != nil && (p.Filesystem.Type == "vfat" || p.Filesystem.Type == "ntfs") {
				pl.warn("partition %d: %s records its sector size in its boot sector; after restoring it onto %d-byte sectors it must be checked or reformatted to be usable by Windows and UEFI firmware",
					p.Number, p.Filesystem.Type, lss)
			}
		}
	}

	pl.identities(out)
	if err := pl.layout(out); err != nil {
		return nil, err
	}
	pl.finalChecks(out)
	if f := pl.p.Failed(); len(f) > 0 {
		return pl.p, &PlanError{f}
	}
	return pl.p, nil
}

// validateSource refuses a source layout Read would not have returned: the layout comes from a
// generation's manifest, which a damaged or hostile repository could make say anything.
func validateSource(d *Disk) error {
	if d.Size <= 0 || d.Size > 1<<60 {
		return fmt.Errorf("plan: source disk size %d", d.Size)
	}
	seen := map[int]bool{}
	var exts, data []Partition
	for _, p := range d.Partitions {
		if p.Start < 0 || p.Size <= 0 || p.Start > d.Size || p.Size > d.Size-p.Start {
			return fmt.Errorf("plan: source partition %d [%d, +%d) lies outside the disk (%d bytes)", p.Number, p.Start, p.Size, d.Size)
		}
		if seen[p.Number] || p.Number < 1 || p.Number > gptMaxArrayBytes/128 {
			return fmt.Errorf("plan: source partition number %d is repeated or out of range", p.Number)
		}
		seen[p.Number] = true
		switch {
		case d.Table == TableGPT && p.Kind != KindPrimary,
			p.Kind == KindLogical && p.Number < firstLogicalNum,
			(p.Kind == KindPrimary || p.Kind == KindExtended) && d.Table == TableMBR && p.Number > 4,
			p.Kind != KindPrimary && p.Kind != KindLogical && p.Kind != KindExtended:
			return fmt.Errorf("plan: source partition %d: kind %q with number %d is impossible in a table of type %s", p.Number, p.Kind, p.Number, d.Table)
		}
		if p.Kind == KindExtended {
			exts = append(exts, p)
		} else {
			data = append(data, p)
		}
	}
	sort.Slice(data, func(i, j int) bool { return data[i].Start < data[j].Start })
	for i := 1; i < len(data); i++ {
		if data[i].Start < data[i-1].End() {
			return fmt.Errorf("plan: source partitions %d and %d overlap", data[i-1].Number, data[i].Number)
		}
	}
	for _, p := range data {
		if p.Kind == KindLogical && (len(exts) != 1 || p.Start < exts[0].Start || p.End() > exts[0].End()) {
			return fmt.Errorf("plan: source logical partition %d lies outside an extended partition", p.Number)
		}
	}
	return nil
}

// identities fills the target's disk signature, disk GUID and (in layout) partition GUIDs.
func (pl *planner) identities(out *Disk) {
	src := pl.src
	renew := pl.opts.Identity == IdentityRenew
	out.Signature = src.Signature
	if renew && (src.Table == TableMBR || src.Signature != 0) {
		// A GPT disk's protective MBR usually has no signature; one that has gets a new one too,
		// since Windows reads it.
		out.Signature = pl.newSignature(src.Signature)
	}
	if src.Table == TableMBR || src.Signature != 0 {
		pl.p.Identities = append(pl.p.Identities, Identity{What: "disk signature",
			Old: fmt.Sprintf("%08x", src.Signature), New: fmt.Sprintf("%08x", out.Signature)})
	}
	if src.Table == TableGPT {
		out.DiskGUID = src.DiskGUID
		if renew || out.DiskGUID == "" {
			out.DiskGUID = pl.newGUID(src.DiskGUID)
		}
		pl.p.Identities = append(pl.p.Identities, Identity{What: "disk GUID", Old: src.DiskGUID, New: out.DiskGUID})
	}
}

func (pl *planner) random(b []byte) {
	if _, err := io.ReadFull(pl.opts.Rand, b); err != nil {
		// crypto/rand does not fail on Linux; a test's reader that runs dry is a test bug.
		panic(fmt.Sprintf("plan: random source: %v", err))
	}
}

// newSignature returns a random non-zero MBR disk signature different from old (Windows treats 0
// as "none" and would write its own).
func (pl *planner) newSignature(old uint32) uint32 {
	b := make([]byte, 4)
	for {
		pl.random(b)
		if s := binary.LittleEndian.Uint32(b); s != 0 && s != old {
			return s
		}
	}
}

// newGUID returns a random (version 4) GUID in the canonical upper-case form, different from old.
func (pl *planner) newGUID(old string) string {
	b := make([]byte, 16)
	for {
		pl.random(b)
		// Byte 7 and 8 in on-disk (mixed-endian) order: the version nibble is the high nibble of
		// the third field, stored little-endian; the variant is the top bits of byte 8.
		b[7] = b[7]&0x0f | 0x40
		b[8] = b[8]&0x3f | 0x80
		if g := formatGUID(b); g != old {
			return g
		}
	}
}

// item is a data partition being placed.
type item struct {
	src          Partition
	grow, shrink bool  // what its filesystem allows
	used         int64 // -1 unknown
	min, size    int64 // bytes: the least it may get, and what it gets
	logical      bool
	emptyExt     bool // an extended partition without logicals, kept as a placeholder
	start        int64
}

// layout computes the new starts and sizes.
func (pl *planner) layout(out *Disk) error {
	src, lss := pl.src, pl.lss
	var items []*item
	var ext *Partition
	for _, p := range src.Partitions {
		switch p.Kind {
		case KindExtended:
			if ext != nil {
				return fmt.Errorf("plan: the source has two extended partitions (%d and %d); no tool writes that", ext.Number, p.Number)
			}
			q := p
			ext = &q
			continue
		}
		it := &item{src: p, used: pl.used(p), logical: p.Kind == KindLogical}
		if p.Filesystem != nil {
			it.grow, it.shrink = resizable(p.Filesystem.Type)
			if p.Filesystem.Type == "vfat" && pl.opts.Resize == ResizeProportional {
				// FAT volumes are EFI system and boot partitions, whose size follows their OS's
				// conventions rather than the disk's: proportional scaling leaves them alone
				// (grow-last still resizes one that is last, e.g. a data stick's only volume).
				it.grow, it.shrink = false, false
			}
		}
		items = append(items, it)
	}
	sort.SliceStable(items, func(i, j int) bool { return items[i].src.Start < items[j].src.Start })
	if ext != nil {
		// Logical partitions must stay together inside one container: refuse a primary between
		// two logicals (Read refuses overlaps; this is a primary placed inside the chain's span).
		inLogicals := false
		for i, it := range items {
			if it.logical {
				if inLogicals && i > 0 && !items[i-1].logical {
					return fmt.Errorf("plan: partition %d lies between the logical partitions of extended partition %d", items[i-1].src.Number, ext.Number)
				}
				inLogicals = true
			}
		}
	}

	hasLogicals := false
	for _, it := range items {
		hasLogicals = hasLogicals || it.logical
	}
	if ext != nil && !hasLogicals {
		// An empty container (fdisk leaves one when the logicals were deleted) keeps a place of
		// its own, so that partitions after it do not overlap it.
		items = append(items, &item{src: *ext, emptyExt: true})
		sort.SliceStable(items, func(i, j int) bool { return items[i].src.Start < items[j].src.Start })
	}

	// Sizes first, in whole sectors of the target; then every size is checked against the
	// space, then placed.
	for _, it := range items {
		it.size = alignUp(it.src.Size, lss)
		if it.emptyExt {
			it.size = alignUp(min(it.src.Size, Align), lss)
		}
		it.min = it.size
		if it.shrink && it.used >= 0 {
			it.min = min(it.size, shrinkNeed(it.used))
		}
	}
	switch pl.opts.Resize {
	case ResizeKeep:
		// nothing to change: finalChecks refuses a layout that does not fit
	case ResizeGrowLast:
		pl.growLast(items)
	case ResizeProportional:
		pl.proportional(items)
	}
	pl.place(items, ext, out)
	return nil
}

// growLast gives the last partition (by position) the space after its start; it keeps at least
// its old size where that fits, so a target of the source's size gets the source's layout.
func (pl *planner) growLast(items []*item) {
	var last *item
	for _, it := range items {
		if !it.emptyExt {
			last = it
		}
	}
	if last == nil {
		return
	}
	pl.positions(items)
	avail := pl.end - last.start
	switch {
	case avail >= last.size && !last.grow:
		if avail-last.size >= Align {
			pl.warn("partition %d (the last) holds %s, which Cauldron cannot grow: it keeps its size and the space after it stays free", last.src.Number, fsName(last.src))
		}
	case avail >= last.size:
		last.size = max(last.size, alignDown(avail, Align))
	case last.shrink && alignDown(avail, Align) >= last.min:
		last.size = alignDown(avail, Align)
	case last.shrink:
		// Its data does not fit: plan what is left, so that finalChecks names the shortfall.
		last.size = max(alignDown(avail, Align), Align)
	}
}

func fsName(p Partition) string {
	if p.Filesystem == nil || p.Filesystem.Type == "unknown" {
		return "no filesystem Cauldron knows"
	}
	return p.Filesystem.Type
}

// minGap is the space that must precede a partition's aligned start: an EBR sector for a logical
// partition (placed at the aligned boundary one Align before it, as fdisk does).
func minGap(it *item) int64 {
	if it.logical {
		return Align
	}
	return 0
}

// firstStart is where the first partition goes: where it was (aligned), since the space before it
// holds boot code (GRUB's core.img, a BIOS boot loader), and never before the usable area.
func (pl *planner) firstStart(it *item) int64 {
	s := alignUp(max(it.src.Start, pl.first), Align)
	if it.logical {
		s = alignUp(max(it.src.Start-Align, pl.first), Align) + Align
	}
	return s
}

// proportional scales the resizable partitions to fill the target: every one gets f × its old
// size (aligned down), but at least its minimum when shrinking and its old size when growing, with
// the largest f whose layout fits (a partition held at its minimum leaves more for the others).
// Partitions that cannot change keep their size.
func (pl *planner) proportional(items []*item) {
	old := make([]int64, len(items))
	for i, it := range items {
		old[i] = it.size
	}
	grow := pl.positions(items) <= pl.end
	var scal []int
	for i, it := range items {
		if (grow && it.grow) || (!grow && it.shrink) {
			scal = append(scal, i)
		}
	}
	if len(scal) == 0 {
		if free := pl.end - pl.positions(items); grow && free >= Align {
			pl.warn("no partition holds a filesystem Cauldron can grow: %d bytes of the target stay free", free)
		}
		return
	}
	// f is a fixed-point factor: 1<<20 is 1.
	const one = 1 << 20
	setSizes := func(f int64) {
		for _, i := range scal {
			s := alignDown(mulDiv(old[i], f, one), Align)
			if grow {
				s = max(s, old[i])
			} else {
				s = max(min(s, old[i]), items[i].min)
			}
			items[i].size = s
		}
	}
	fits := func(f int64) bool {
		setSizes(f)
		return pl.positions(items) <= pl.end
	}
	var lo, hi int64
	if grow {
		// f = 1 fits; the upper bound is the target's size over the smallest scaled partition.
		lo, hi = one, one
		for _, i := range scal {
			hi = max(hi, mulDiv(one, pl.end, max(old[i], 1))+1)
		}
	} else {
		lo, hi = 0, one
		if !fits(0) {
			// Even at their minimums the volumes do not fit. Plan the plain proportional
			// shares, so that finalChecks can say which volume needs how many more bytes.
			var fixed, scaled int64
			for i, it := range items {
				if slices.Contains(scal, i) {
					scaled += old[i]
				} else {
					fixed += it.size
				}
			}
			f := mulDiv(one, max(pl.end-pl.first-fixed, 0), max(scaled, 1))
			for _, i := range scal {
				items[i].size = max(alignDown(mulDiv(old[i], f, one), Align), Align)
			}
			return
		}
	}
	for lo < hi {
		mid := lo + (hi-lo+1)/2
		if fits(mid) {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	setSizes(lo)
}

// positions computes every item's start from the sizes as they are and returns the end of the
// last one: the old order, the first partition where it was (aligned), the others packed after
// each other on aligned starts (in keep mode not before their old aligned start).
func (pl *planner) positions(items []*item) int64 {
	pos := pl.first
	for i, it := range items {
		var start int64
		if i == 0 {
			start = pl.firstStart(it)
		} else {
			start = alignUp(pos+minGap(it), Align)
		}
		if pl.opts.Resize == ResizeKeep {
			// Keep the old positions where they are free, so that an in-place recovery gets the
			// very same table.
			start = max(start, alignUp(it.src.Start, Align))
		}
		it.start = start
		pos = start + it.size
	}
	return pos
}

// mulDiv returns a*b/c without overflowing for disk-sized a and factors up to 2^40.
func mulDiv(a, b, c int64) int64 {
	if c == 0 {
		return 0
	}
	hi, lo := mul64(uint64(a), uint64(b))
	if hi == 0 {
		return int64(lo / uint64(c))
	}
	// Rare (petabyte disks × large factors): fall back to floating point, which is exact enough
	// for a factor that is then aligned down.
	return int64(float64(a) * float64(b) / float64(c))
}

func mul64(a, b uint64) (hi, lo uint64) {
	const mask32 = 1<<32 - 1
	a0, a1 := a&mask32, a>>32
	b0, b1 := b&mask32, b>>32
	w0 := a0 * b0
	t := a1*b0 + w0>>32
	w1 := t & mask32
	w2 := t >> 32
	w1 += a0 * b1
	hi = a1*b1 + w2 + w1>>32
	lo = a * b
	return
}

// place puts the partitions in their old order at aligned starts, builds the extended container
// around the logical partitions, and fills out's partitions and the moves.
func (pl *planner) place(items []*item, ext *Partition, out *Disk) {
	pl.positions(items)
	var extStart, extEnd int64 = -1, -1
	for _, it := range items {
		if it.logical {
			if extStart < 0 {
				extStart = it.start - Align
			}
			extEnd = it.start + it.size
		}
	}
	for _, it := range items {
		if it.emptyExt {
			extStart, extEnd = it.start, it.start+it.size
		}
	}
	all := make([]Partition, 0, len(items)+1)
	for _, it := range items {
		if it.emptyExt {
			continue
		}
		p := it.src
		p.Start, p.Size = it.start, it.size
		pl.identity(&p)
		all = append(all, p)
		m := Move{Number: p.Number, Kind: p.Kind, OldStart: it.src.Start, OldSize: it.src.Size, NewStart: p.Start, NewSize: p.Size, Used: max(it.used, 0)}
		if p.Filesystem != nil {
			m.Filesystem = p.Filesystem.Type
		}
		pl.p.Moves = append(pl.p.Moves, m)
		if p.Start != it.src.Start && (m.Filesystem == "ntfs" || m.Filesystem == "vfat") {
			// The boot sector of NTFS and FAT records the partition's start ("hidden sectors");
			// Windows' and DOS's BIOS boot code reads it to find the volume.
			pl.warn("partition %d (%s) moves from byte %d to %d: restore rewrites its boot sector's hidden-sectors field to %d (BIOS boot code reads it)",
				p.Number, m.Filesystem, it.src.Start, p.Start, p.Start/pl.lss)
		}
		if p.Filesystem != nil && p.Size != it.src.Size {
			g, s := resizable(p.Filesystem.Type)
			action := "grow"
			if p.Size < it.src.Size {
				action = "shrink"
			}
			if (action == "grow" && g) || (action == "shrink" && s) {
				pl.p.Filesystems = append(pl.p.Filesystems, FSResize{Partition: p.Number, Type: p.Filesystem.Type, Action: action, OldSize: it.src.Size, NewSize: p.Size})
			}
		}
	}
	if ext != nil {
		p := *ext
		p.Start, p.Size = extStart, extEnd-extStart
		all = append(all, p)
		pl.p.Moves = append(pl.p.Moves, Move{Number: p.Number, Kind: p.Kind, OldStart: ext.Start, OldSize: ext.Size, NewStart: p.Start, NewSize: p.Size})
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].Number < all[j].Number })
	sort.SliceStable(pl.p.Moves, func(i, j int) bool { return pl.p.Moves[i].Number < pl.p.Moves[j].Number })
	out.Partitions = all
}

// identity gives a partition its GUID (kept or renewed) and records it.
func (pl *planner) identity(p *Partition) {
	if pl.src.Table != TableGPT {
		return
	}
	old := p.GUID
	if pl.opts.Identity == IdentityRenew || old == "" {
		p.GUID = pl.newGUID(old)
	}
	pl.p.Identities = append(pl.p.Identities, Identity{What: "partition GUID", Partition: p.Number, Old: old, New: p.GUID})
}

// finalChecks verifies the layout: inside the usable area, no overlaps, aligned, every volume's
// data fits, MBR fields in range.
func (pl *planner) finalChecks(out *Disk) {
	lss := pl.lss
	// Space: every partition inside the usable area.
	var over []string
	var lastEnd int64
	for _, p := range out.Partitions {
		lastEnd = max(lastEnd, p.End())
	}
	if lastEnd > pl.end {
		over = append(over, fmt.Sprintf("the partitions need %d bytes up to byte %d; the target's usable space ends at byte %d (%d bytes short)",
			lastEnd-pl.first, lastEnd, pl.end, lastEnd-pl.end))
	}
	if len(over) > 0 {
		detail := over[0]
		if pl.opts.Resize == ResizeKeep {
			detail += "; --resize proportional or grow-last may shrink volumes whose data fits"
		}
		pl.check("fits the target", false, "%s", detail)
	} else {
		pl.check("fits the target", true, "%d partitions end by byte %d of %d usable", len(out.Partitions), lastEnd, pl.end)
	}

	// Data: every volume at least as large as what it needs.
	var short []string
	for _, m := range pl.p.Moves {
		if m.Kind == KindExtended || m.NewSize >= m.OldSize {
			continue
		}
		p := partitionNumbered(pl.src, m.Number)
		u := pl.used(*p)
		_, canShrink := resizable(fsType(p))
		switch {
		case !canShrink:
			short = append(short, fmt.Sprintf("partition %d (%s) cannot be shrunk and needs %d more bytes", m.Number, fsName(*p), m.OldSize-m.NewSize))
		case u < 0:
			short = append(short, fmt.Sprintf("partition %d (%s): its used bytes are unknown, so it cannot be shrunk; it needs %d more bytes", m.Number, fsName(*p), m.OldSize-m.NewSize))
		case shrinkNeed(u) > m.NewSize:
			short = append(short, fmt.Sprintf("partition %d (%s) holds %d used bytes and needs %d more bytes (%d with headroom, %d planned)",
				m.Number, fsName(*p), u, shrinkNeed(u)-m.NewSize, shrinkNeed(u), m.NewSize))
		}
	}
	if len(short) > 0 {
		pl.check("data fits", false, "%s", strings.Join(short, "; "))
	} else {
		pl.check("data fits", true, "")
	}

	// Geometry: aligned, in order, no overlaps (Read's rules, applied to the plan).
	var bad []string
	data := make([]Partition, 0, len(out.Partitions))
	for _, p := range out.Partitions {
		if p.Start%lss != 0 || p.Size%lss != 0 || p.Size <= 0 {
			bad = append(bad, fmt.Sprintf("partition %d is not whole %d-byte sectors", p.Number, lss))
		}
		if p.HoldsData() {
			if p.Start%Align != 0 {
				bad = append(bad, fmt.Sprintf("partition %d does not start on a %d-byte boundary", p.Number, Align))
			}
			data = append(data, p)
		}
		if p.Start < pl.first {
			bad = append(bad, fmt.Sprintf("partition %d starts before the usable area (byte %d)", p.Number, pl.first))
		}
		if out.Table == TableMBR && (p.Start/lss > 1<<32-1 || p.Size/lss > 1<<32-1 || p.End()/lss > 1<<32) {
			bad = append(bad, fmt.Sprintf("partition %d is beyond what an MBR can address with %d-byte sectors", p.Number, lss))
		}
	}
	sort.Slice(data, func(i, j int) bool { return data[i].Start < data[j].Start })
	for i := 1; i < len(data); i++ {
		if data[i].Start < data[i-1].End() {
			bad = append(bad, fmt.Sprintf("partitions %d and %d overlap", data[i-1].Number, data[i].Number))
		}
	}
	if len(bad) > 0 {
		pl.check("geometry", false, "%s", strings.Join(bad, "; "))
	} else {
		pl.check("geometry", true, "aligned to %d bytes, %d-byte sectors", Align, lss)
	}
	if out.Table == TableGPT && out.Size > 0 {
		pl.check("GPT entries", pl.gptEntries() >= uint32(maxNumber(out)), "%d entries", out.EntryCount)
	}
	// The writer's own checks (types, GUIDs, numbering, EBR placement), run now so that a plan
	// that could not be written fails here, before anything is wiped.
	if len(bad) == 0 && len(over) == 0 {
		if _, err := encodeTable(out); err != nil {
			pl.check("table can be written", false, "%v", err)
		} else {
			pl.check("table can be written", true, "")
		}
	}
}

func fsType(p *Partition) string {
	if p.Filesystem == nil {
		return ""
	}
	return p.Filesystem.Type
}

func maxNumber(d *Disk) int {
	n := 0
	for _, p := range d.Partitions {
		n = max(n, p.Number)
	}
	return n
}

func partitionNumbered(d *Disk, n int) *Partition {
	for i := range d.Partitions {
		if d.Partitions[i].Number == n {
			return &d.Partitions[i]
		}
	}
	return nil
}
