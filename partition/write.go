package partition

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sort"
	"syscall"
	"time"
)

// ApplyOptions are the choices of one Apply.
type ApplyOptions struct {
	// Protect lists paths whose disks must never be written: the repository, the boot medium,
	// the running program. See CheckTarget.
	Protect []string
	// NodeTimeout bounds the wait for the kernel's partition nodes (default 10 s).
	NodeTimeout time.Duration
}

// ApplyResult says what Apply did.
type ApplyResult struct {
	Wiped  []Extent `json:"wiped"`            // byte ranges zeroed before the table was written
	Reread string   `json:"reread,omitempty"` // how the kernel learnt the table: "BLKRRPART" or "BLKPG"
	Nodes  []string `json:"nodes,omitempty"`  // partition device nodes present afterwards
}

// wipeSpan is how much is zeroed at each end of every old and new partition and of the disk:
// every signature blkid knows lies within the first or last MiB of its volume (MD 0.90/1.0 and
// the NTFS backup boot sector at the end; LUKS2's second header at 16 KiB; ISO at 32 KiB), except
// the btrfs superblock mirrors, wiped separately.
const wipeSpan = Align

// btrfsMirrors are the offsets of btrfs's superblock copies after the primary at 64 KiB.
var btrfsMirrors = []int64{64 << 20, 256 << 30}

// Apply writes plan's partition table to target, which must be the disk the plan was made for:
// it checks the target is safe to write (CheckTarget), wipes old signatures, writes the table with
// the source's boot code and disk signature, reads it back to compare it with the plan, and, for
// a block device, makes the kernel create the partition nodes. No data is written.
func Apply(target string, plan *LayoutPlan, opts ApplyOptions) (*ApplyResult, error) {
	if plan == nil || plan.Layout == nil {
		return nil, errors.New("apply: no plan")
	}
	if f := plan.Failed(); len(f) > 0 {
		return nil, fmt.Errorf("apply: %w", &PlanError{f})
	}
	// A plan may come from a file (a dry run saved, shown and confirmed): its layout is checked
	// again as a source would be, before anything is opened for writing.
	if err := validateSource(plan.Layout); err != nil {
		return nil, fmt.Errorf("apply: the plan's layout: %w", err)
	}
	if err := CheckTarget(target, opts.Protect); err != nil {
		return nil, err
	}
	fi, err := os.Stat(target)
	if err != nil {
		return nil, err
	}
	block := !fi.Mode().IsRegular()
	flags := os.O_RDWR
	if block {
		// O_EXCL on a block device fails while anything holds it or a partition of it
		// (a mount, LVM, MD): a last guard between the checks above and the writes.
		flags |= syscall.O_EXCL
	}
	f, err := os.OpenFile(target, flags, 0)
	if err != nil {
		if errors.Is(err, syscall.EBUSY) {
			return nil, refuse(target, "it is in use (mounted, or held by LVM, MD or another program)")
		}
		return nil, fmt.Errorf("apply: %w", err)
	}
	defer f.Close()

	size, lss := fi.Size(), plan.Target.LogicalSectorSize
	var serial, wwn string
	if block {
		g, err := blockGeometry(f)
		if err != nil {
			return nil, fmt.Errorf("apply: %s: %w", target, err)
		}
		size, lss = g.size, g.logical
		if name := blockDeviceName(fi, target); name != "" {
			_, serial, wwn = sysfsIdentity(sysfsRoot, name)
		}
	}
	t := plan.Target
	switch {
	case size != t.Size || lss != t.LogicalSectorSize:
		return nil, refuse(target, "the plan is for a disk of %d bytes with %d-byte sectors; this one has %d bytes with %d-byte sectors",
			t.Size, t.LogicalSectorSize, size, lss)
	case t.Serial != "" && serial != t.Serial, t.WWN != "" && wwn != t.WWN:
		return nil, refuse(target, "the plan is for the disk with serial %q, WWN %q; this one has %q, %q", t.Serial, t.WWN, serial, wwn)
	case plan.Layout.Size != size || plan.Layout.LogicalSectorSize != lss:
		return nil, refuse(target, "the plan's layout is for %d bytes with %d-byte sectors", plan.Layout.Size, plan.Layout.LogicalSectorSize)
	}
	chunks, err := encodeTable(plan.Layout)
	if err != nil {
		return nil, err
	}

	// What to wipe: the disk's ends, and both ends of every partition the disk has now, had when
	// planned, and will have.
	// The current table is read with both sector sizes: a disk that moved between a 512e and a
	// 4Kn enclosure (USB bridges do this) has a table written for the other size, whose
	// partitions — and their signatures — are invisible with the disk's own.
	old := append([]Extent(nil), t.Old...)
	for _, s := range []int{512, 4096} {
		if cur, err := Read(f, size, s); err == nil {
			for _, p := range cur.Partitions {
				old = append(old, Extent{p.Start, p.Size})
			}
		}
	}
	for _, p := range plan.Layout.Partitions {
		old = append(old, Extent{p.Start, p.Size})
	}
	wipe := wipeExtents(size, old)
	res := &ApplyResult{Wiped: wipe}
	zero := make([]byte, wipeSpan)
	for _, e := range wipe {
		if _, err := f.WriteAt(zero[:e.Size], e.Start); err != nil {
			return res, fmt.Errorf("apply: wiping %d bytes at byte %d: %w", e.Size, e.Start, err)
		}
	}
	if err := f.Sync(); err != nil {
		return res, fmt.Errorf("apply: %w", err)
	}
	if err := writeChunks(f, chunks); err != nil {
		return res, err
	}
	if err := f.Sync(); err != nil {
		return res, fmt.Errorf("apply: %w", err)
	}
	if err := verifyWritten(f, plan.Layout); err != nil {
		return res, err
	}
	if block {
		timeout := opts.NodeTimeout
		if timeout <= 0 {
			timeout = 10 * time.Second
		}
		method, nodes, err := rereadPartitions(f, fi, target, plan.Layout, timeout)
		res.Reread, res.Nodes = method, nodes
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

// wipeExtents returns the merged, sorted ranges to zero: the first and last wipeSpan bytes of the
// disk and of every extent, and the btrfs mirrors inside each extent, each at most wipeSpan long
// and inside the disk.
func wipeExtents(size int64, parts []Extent) []Extent {
	var w []Extent
	add := func(start, n int64) {
		start = max(start, 0)
		end := min(start+n, size)
		if end > start {
			w = append(w, Extent{start, end - start})
		}
	}
	add(0, wipeSpan)
	add(size-wipeSpan, wipeSpan)
	for _, e := range parts {
		if e.Size <= 0 || e.Start >= size {
			continue
		}
		end := min(e.End(), size)
		add(e.Start, min(wipeSpan, end-e.Start))
		add(max(end-wipeSpan, e.Start), min(wipeSpan, end-e.Start))
		for _, m := range btrfsMirrors {
			if e.Start+m+4096 <= end {
				add(e.Start+m, 4096)
			}
		}
	}
	sort.Slice(w, func(i, j int) bool { return w[i].Start < w[j].Start })
	// Merge, then split into pieces of at most wipeSpan so that one zero buffer serves all.
	var merged []Extent
	for _, e := range w {
		if n := len(merged); n > 0 && e.Start <= merged[n-1].End() {
			merged[n-1].Size = max(merged[n-1].End(), e.End()) - merged[n-1].Start
			continue
		}
		merged = append(merged, e)
	}
	var out []Extent
	for _, e := range merged {
		for s := e.Start; s < e.End(); s += wipeSpan {
			out = append(out, Extent{s, min(wipeSpan, e.End()-s)})
		}
	}
	return out
}

// verifyWritten reads the table back with Read and compares it with the plan's layout.
func verifyWritten(f *os.File, want *Disk) error {
	got, err := Read(f, want.Size, want.LogicalSectorSize)
	if err != nil {
		return fmt.Errorf("apply: the table written does not read back: %w", err)
	}
	if d := layoutDiff(got, want); d != "" {
		return fmt.Errorf("apply: the table read back differs from the plan: %s", d)
	}
	return nil
}

// layoutDiff names the first difference between two layouts in what a table records (not the
// filesystems, which are not written).
func layoutDiff(got, want *Disk) string {
	switch {
	case got.Table != want.Table:
		return fmt.Sprintf("table %s, want %s", got.Table, want.Table)
	case got.Signature != want.Signature:
		return fmt.Sprintf("disk signature %08x, want %08x", got.Signature, want.Signature)
	case got.DiskGUID != want.DiskGUID:
		return fmt.Sprintf("disk GUID %s, want %s", got.DiskGUID, want.DiskGUID)
	case !bytes.Equal(trimZeros(got.BootCode), trimZeros(want.BootCode)):
		return "boot code differs"
	case len(got.Partitions) != len(want.Partitions):
		return fmt.Sprintf("%d partitions, want %d", len(got.Partitions), len(want.Partitions))
	}
	wantBy := map[int]Partition{}
	for _, p := range want.Partitions {
		wantBy[p.Number] = p
	}
	for _, g := range got.Partitions {
		w, ok := wantBy[g.Number]
		if !ok {
			return fmt.Sprintf("unexpected partition %d", g.Number)
		}
		same := g.Kind == w.Kind && g.Start == w.Start && g.Size == w.Size && g.Type == w.Type && g.Active == w.Active
		if want.Table == TableGPT {
			same = same && g.GUID == w.GUID && g.Name == gptNameAsWritten(w.Name) && g.Attributes == w.Attributes
		}
		if !same {
			return fmt.Sprintf("partition %d is %+v, want %+v", g.Number, g, w)
		}
	}
	return ""
}

// gptNameAsWritten is the name as encodeGPTName stores it (cut at 36 code units).
func gptNameAsWritten(name string) string { return decodeGPTName(encodeGPTName(name)) }

func trimZeros(b []byte) []byte { return bytes.TrimRight(b, "\x00") }

// ReadTarget reads what planning needs of a target disk: its size, sector sizes, identity and
// current partitions. Unlike ReadPath it does not fail on a table it cannot read — a target's old
// contents are about to be replaced, and a damaged or foreign table (say, a 512-byte GPT seen
// with 4096-byte sectors) must not stop a recovery; the layout then has Table none and a warning.
func ReadTarget(path string) (*Disk, error) {
	d, err := ReadPath(path)
	if err == nil {
		return d, nil
	}
	var perr *Error
	if !errors.As(err, &perr) {
		return nil, err
	}
	f, ferr := os.Open(path)
	if ferr != nil {
		return nil, fmt.Errorf("partition: %w", ferr)
	}
	defer f.Close()
	fi, ferr := f.Stat()
	if ferr != nil {
		return nil, fmt.Errorf("partition: %w", ferr)
	}
	out := &Disk{Table: TableNone, Size: fi.Size(), LogicalSectorSize: 512, PhysicalSectorSize: 512, Partitions: []Partition{},
		Warnings: []string{fmt.Sprintf("its current table is unreadable and will be replaced: %v", perr)}}
	if !fi.Mode().IsRegular() {
		g, gerr := blockGeometry(f)
		if gerr != nil {
			return nil, fmt.Errorf("partition: %s: %w", path, gerr)
		}
		out.Size, out.LogicalSectorSize, out.PhysicalSectorSize = g.size, g.logical, max(g.physical, g.logical)
		if name := blockDeviceName(fi, path); name != "" {
			out.Model, out.Serial, out.WWN = sysfsIdentity(sysfsRoot, name)
		}
	}
	return out, nil
}

// String says what Apply did in one line: what it wiped and how the kernel learnt the table.
func (r *ApplyResult) String() string {
	var wiped int64
	for _, e := range r.Wiped {
		wiped += e.Size
	}
	s := fmt.Sprintf("table written, %d bytes wiped in %d ranges", wiped, len(r.Wiped))
	if r.Reread != "" {
		s += fmt.Sprintf("; kernel told by %s: %d partition nodes", r.Reread, len(r.Nodes))
	}
	return s
}
