package write

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/cauldron-dr/cauldron/partition"
	"github.com/cauldron-dr/cauldron/restore/target"
	"github.com/cauldron-dr/cauldron/tib"
	"github.com/cauldron-dr/cauldron/tib/usedblocks"
	"golang.org/x/sys/unix"
)

// Plan-aware restore: a captured disk written onto a target with another layout
// (partition.Plan: other starts, sizes, sector size, identities).
//
// Order, chosen so that everything that can fail does so before the target is touched:
//  1. Check the plan against the generation (same source layout, every data partition moved)
//     and every volume against what its resize needs (FAT cluster counts, sector sizes, tools,
//     scratch space), from the repository alone.
//  2. Rebuild in the scratch directory the volumes that cannot be restored straight into their
//     partition: ext and NTFS volumes that shrink (the filesystem is bigger than its new
//     partition, so the tools must shrink it elsewhere first) and FAT volumes that change size
//     or sector size. Each is restored into a sparse file of its old size and, for ext and NTFS,
//     shrunk there with e2fsck + resize2fs or ntfsresize (dry run first). The repository is only
//     read.
//  3. Write the plan's table (partition.Apply: wipe, table, boot code, kernel told).
//  4. Restore the other partitions at their new starts (byte offsets: a sector size change needs
//     nothing more), and of the space before the first partition only the boot area (see
//     bootArea). Gaps between and after partitions are dropped: they held tables, EBRs and
//     free space, which Apply has written anew.
//  5. Copy the rebuilt volumes into their partitions (only their data extents; FAT through
//     partition.ResizeFAT), fix FAT and NTFS boot sectors (hidden sectors, sector size), and
//     grow what the plan grows, in place (resize2fs, ntfsresize, mkswap, xfs_growfs, btrfs).
//
// Scratch space: the used bytes of every rebuilt volume, plus for a shrink the used bytes that
// resize may move again (at most the bytes beyond the new end), plus 16 MiB each. On a host it
// is a directory on a disk that is not the target (default os.TempDir()); in the boot image it
// is RAM (tmpfs) unless a disk is given. The check is made before step 2.

// volJob is what happens to one captured data partition.
type volJob struct {
	move    partition.Move
	rd      *regionData
	part    partition.Partition // as the plan lays it out (new start and size, source's filesystem)
	fs      string
	scratch bool // rebuilt in a scratch file
	fatOld  *partition.FATGeometry
	fatNew  *partition.FATGeometry
	file    *os.File // the scratch file
}

// plannedRestore is a checked plan-aware restore.
type plannedRestore struct {
	plan     *partition.LayoutPlan
	jobs     []*volJob
	gaps     []*regionData // regions outside data partitions
	bootLo   int64         // the boot area copied from the source's first gap
	bootHi   int64
	lss      int64
	need     int64 // scratch bytes
	warnings []string
}

// CheckPlan checks, without writing anything, that restoring disk of gen onto the target
// of plan can succeed: the plan is this disk's, every resize is one Cauldron can make on these
// very volumes (read from the repository), the tools are installed, and the scratch directory
// has room. `cauldron restore-disk` calls it before asking for anything to be written;
// Disk repeats it.
func CheckPlan(ctx context.Context, r *tib.Repository, gen *tib.Generation, diskName string, plan *partition.LayoutPlan, scratch string) ([]string, error) {
	disk, err := gen.Disk(diskName)
	if err != nil {
		return nil, err
	}
	if err := r.LoadIndexFor(ctx, gen); err != nil {
		return nil, err
	}
	regions, err := loadRegions(ctx, r, gen, disk)
	if err != nil {
		return nil, err
	}
	pr, err := preparePlanned(ctx, r, disk, regions, plan, scratch)
	if err != nil {
		return nil, err
	}
	return pr.warnings, nil
}

// checkPlanFor checks that plan was made from layout: same table, size and sector size, and a
// move for every data partition from exactly where it is.
func checkPlanFor(layout *partition.Disk, plan *partition.LayoutPlan) error {
	if plan.Layout == nil {
		return errors.New("restore: the plan has no layout")
	}
	if f := plan.Failed(); len(f) > 0 {
		return fmt.Errorf("restore: %w", &partition.PlanError{Failed: f})
	}
	if plan.SourceSize != layout.Size || plan.SourceLSS != layout.LogicalSectorSize || plan.Layout.Table != layout.Table {
		return fmt.Errorf("restore: the plan is for a %s source of %d bytes with %d-byte sectors; this disk is %s, %d bytes, %d-byte sectors",
			plan.Layout.Table, plan.SourceSize, plan.SourceLSS, layout.Table, layout.Size, layout.LogicalSectorSize)
	}
	moves := map[int]partition.Move{}
	for _, m := range plan.Moves {
		moves[m.Number] = m
	}
	for _, p := range layout.Partitions {
		if !p.HoldsData() {
			continue
		}
		m, ok := moves[p.Number]
		switch {
		case !ok:
			return fmt.Errorf("restore: the plan has no place for partition %d", p.Number)
		case m.OldStart != p.Start || m.OldSize != p.Size:
			return fmt.Errorf("restore: the plan moves partition %d from [%d,+%d), but it is at [%d,+%d)", p.Number, m.OldStart, m.OldSize, p.Start, p.Size)
		case m.NewSize <= 0 || m.NewStart <= 0:
			return fmt.Errorf("restore: the plan gives partition %d no place", p.Number)
		}
	}
	return nil
}

// bootArea is the part of the space before the first partition that holds boot loader code and
// not a partition table: on MBR disks the sectors after sector 0 (GRUB's core.img, other
// loaders' stage 1.5), on GPT disks what follows the primary entry array. It is computed for the
// source and for the planned target, and only where both agree is it copied: the target's table
// (written by Apply) is never overwritten. Bytes 0–439 of sector 0, the MBR boot code, are
// written by Apply from the layout.
func bootArea(d *partition.Disk) (lo, hi int64) {
	lss := int64(d.LogicalSectorSize)
	lo = lss
	if d.Table == partition.TableGPT {
		entries := (int64(d.EntryCount)*int64(d.EntrySize) + lss - 1) / lss
		lo = (2 + entries) * lss
	}
	hi = d.Size
	for _, p := range d.Partitions {
		hi = min(hi, p.Start)
	}
	return lo, max(hi, lo)
}

// preparePlanned decides every region's fate and checks everything it can without writing.
func preparePlanned(ctx context.Context, r *tib.Repository, disk *tib.Disk, regions []regionData, plan *partition.LayoutPlan, scratch string) (*plannedRestore, error) {
	if err := checkPlanFor(&disk.Layout, plan); err != nil {
		return nil, err
	}
	pr := &plannedRestore{plan: plan, lss: int64(plan.Layout.LogicalSectorSize)}
	sl, sh := bootArea(&disk.Layout)
	tl, th := bootArea(plan.Layout)
	pr.bootLo, pr.bootHi = max(sl, tl), min(sh, th)
	if pr.bootHi < sh && disk.Layout.Table == partition.TableMBR && len(disk.Layout.BootCode) > 0 {
		pr.warnings = append(pr.warnings, fmt.Sprintf("the boot area before the first partition shrinks from %d to %d bytes: a boot loader embedded there (GRUB's core.img) may be cut; reinstall it if the disk does not boot",
			sh-sl, max(pr.bootHi-pr.bootLo, 0)))
	}
	if pr.lss != int64(disk.Layout.LogicalSectorSize) && len(disk.Layout.BootCode) > 0 {
		pr.warnings = append(pr.warnings, fmt.Sprintf("the sector size changes from %d to %d bytes: BIOS boot code (%s) addresses its next stage in sectors and will not find it; boot by UEFI or reinstall the boot loader",
			disk.Layout.LogicalSectorSize, pr.lss, orUnknown(disk.Layout.Bootloader)))
	}
	moves := map[int]partition.Move{}
	for _, m := range plan.Moves {
		moves[m.Number] = m
	}
	for i := range regions {
		rd := &regions[i]
		if rd.g.Kind != tib.RegionPartition {
			pr.gaps = append(pr.gaps, rd)
			continue
		}
		m := moves[rd.g.Partition]
		var part partition.Partition
		for _, p := range plan.Layout.Partitions {
			if p.Number == m.Number {
				part = p
			}
		}
		j := &volJob{move: m, rd: rd, part: part, fs: rd.g.Filesystem}
		if err := checkVolume(ctx, r, pr, j); err != nil {
			return nil, fmt.Errorf("restore: partition %d (%s): %w", m.Number, orUnknown(j.fs), err)
		}
		pr.jobs = append(pr.jobs, j)
	}
	if pr.need > 0 {
		if scratch == "" {
			scratch = os.TempDir()
		}
		var sfs unix.Statfs_t
		if err := unix.Statfs(scratch, &sfs); err != nil {
			return nil, fmt.Errorf("restore: scratch directory %s: %w", scratch, err)
		}
		if free := int64(sfs.Bavail) * sfs.Bsize; free < pr.need {
			return nil, fmt.Errorf("restore: the scratch directory %s has %d bytes free; rebuilding the volumes that shrink or change geometry needs %d (%d missing); give a directory on another disk",
				scratch, free, pr.need, pr.need-free)
		}
	}
	return pr, nil
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// checkVolume decides how a partition's volume is restored and checks that it can be.
func checkVolume(ctx context.Context, r *tib.Repository, pr *plannedRestore, j *volJob) error {
	m := j.move
	shrink, grow := m.NewSize < m.OldSize, m.NewSize > m.OldSize
	resized := false
	for _, f := range pr.plan.Filesystems {
		resized = resized || f.Partition == m.Number
	}
	head, err := regionHead(ctx, r, j.rd, 8192)
	if err != nil {
		return err
	}
	lss := pr.lss
	switch j.fs {
	case "ext2", "ext3", "ext4":
		bs := int64(1024) << (leUint32(head[1024+24:]) & 31)
		if bs < lss {
			return fmt.Errorf("its %d-byte blocks are smaller than the target's %d-byte sectors; Linux cannot mount it there", bs, lss)
		}
		j.scratch = shrink
	case "ntfs":
		g, err := partition.ParseNTFSBoot(head)
		if err != nil {
			return err
		}
		if g.ClusterBytes() < lss {
			return fmt.Errorf("its %d-byte clusters are smaller than the target's %d-byte sectors", g.ClusterBytes(), lss)
		}
		j.scratch = shrink
	case "vfat":
		g, err := partition.ParseFATBoot(head)
		if err != nil {
			return err
		}
		if m.NewSize != m.OldSize || g.BytesPerSector != lss {
			usedClusters := int64(-1)
			if !j.rd.g.Whole {
				usedClusters = usedBetween(j.rd.used, g.DataStart(), g.Size()) / g.ClusterBytes()
			}
			n, err := partition.PlanFATResize(g, m.NewSize, int(lss), usedClusters)
			if err != nil {
				return err
			}
			j.fatOld, j.fatNew, j.scratch = g, n, true
		}
	case "swap":
	default:
		if shrink {
			return fmt.Errorf("the plan shrinks it from %d to %d bytes, and Cauldron cannot shrink %s", m.OldSize, m.NewSize, orUnknown(j.fs))
		}
	}
	if resized || (j.fs == "swap" && m.NewSize != m.OldSize) {
		if miss := partition.ResizeToolsMissing(j.fs); len(miss) > 0 {
			return fmt.Errorf("resizing it needs %s, which is not installed", strings.Join(miss, ", "))
		}
	}
	if grow && !resized && j.fs != "swap" {
		pr.warnings = append(pr.warnings, fmt.Sprintf("partition %d grows from %d to %d bytes but its filesystem (%s) is not grown: the space stays unused inside the partition",
			m.Number, m.OldSize, m.NewSize, orUnknown(j.fs)))
	}
	if j.scratch {
		used := j.rd.g.UsedBytes()
		pr.need += used + 16<<20
		if shrink && j.fs != "vfat" {
			pr.need += min(used, m.OldSize-m.NewSize)
		}
	}
	return nil
}

// regionHead returns the first n bytes of a region as restored (zeros where nothing is stored).
func regionHead(ctx context.Context, r *tib.Repository, rd *regionData, n int64) ([]byte, error) {
	out := make([]byte, n)
	for _, c := range rd.cells {
		s, e := rd.g.CellRange(c.Index)
		s, e = s-rd.g.Start, e-rd.g.Start
		if s >= n {
			break
		}
		b, err := r.LoadBlob(ctx, c.ID, nil)
		if err != nil {
			return nil, fmt.Errorf("reading its first bytes from the repository: %w", err)
		}
		if int64(len(b)) != e-s {
			return nil, fmt.Errorf("chunk %s has %d bytes, want %d", c.ID.Short(), len(b), e-s)
		}
		copy(out[s:], b)
	}
	return out, nil
}

// usedBetween is the used bytes of a map in [from, to) (bytes from the region's start), counting
// only blocks wholly inside: the map keeps the partition's slack after a volume as used.
func usedBetween(m *usedblocks.Map, from, to int64) int64 {
	var n int64
	m.Runs((from+m.BlockSize-1)/m.BlockSize, min(m.Blocks, to/m.BlockSize), func(run usedblocks.Run) { n += run.Len * m.BlockSize })
	return n
}

func leUint32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// restorePlanned is Disk with a plan: see the top of this file.
func restorePlanned(ctx context.Context, r *tib.Repository, o Options, gen *tib.Generation, disk *tib.Disk, regions []regionData, start time.Time) (Stats, error) {
	logf := func(format string, args ...any) {
		if o.Log != nil {
			o.Log(fmt.Sprintf(format, args...))
		}
	}
	name := o.Target.Name()
	pr, err := preparePlanned(ctx, r, disk, regions, o.Plan, o.Scratch)
	if err != nil {
		return Stats{}, err
	}
	st := Stats{Warnings: pr.warnings}
	if !o.Target.Exists() {
		return st, fmt.Errorf("restore: the target %s must exist (it was planned)", name)
	}
	scratch := o.Scratch
	if scratch == "" {
		scratch = os.TempDir()
	}
	// A scratch directory on the target disk would be destroyed under the restore: the gate
	// protects it from here on.
	gate := o.Gate
	if pr.need > 0 {
		gate = &target.Gate{Protect: append(append([]string(nil), o.Gate.Protect...), scratch)}
		if err := o.Target.Check(gate); err != nil {
			return st, fmt.Errorf("restore: the scratch directory %s must not lie on the target: %w", scratch, err)
		}
	}

	rebuilt, err := rebuildInScratch(ctx, r, o, gen, disk, regions, pr, scratch, &st, logf)
	for _, j := range rebuilt {
		defer os.Remove(j.file.Name())
		defer j.file.Close()
	}
	if err != nil {
		return st, err
	}

	logf("writing the %s table to %s", o.Plan.Layout.Table, name)
	if _, err := o.Target.WriteTable(o.Plan, gate); err != nil {
		return st, err
	}
	if err := writeDirect(ctx, r, o, gen, disk, regions, pr, rebuilt, &st, logf); err != nil {
		return st, err
	}
	if o.BeforeGrow != nil {
		// The restored bytes are still the captured ones: the last moment to compare them.
		if err := o.BeforeGrow(); err != nil {
			return st, err
		}
	}
	if err := growInPlace(o, pr, logf); err != nil {
		return st, err
	}
	st.Resized = append(st.Resized, o.Plan.Filesystems...)
	if o.Progress != nil {
		o.Progress(Progress{Written: st.Bytes, Total: st.Bytes})
	}
	st.Seconds = time.Since(start).Seconds()
	return st, nil
}

// rebuildInScratch restores the volumes that cannot go straight into their partition into
// scratch files and shrinks them there (step 2). The target is not touched.
func rebuildInScratch(ctx context.Context, r *tib.Repository, o Options, gen *tib.Generation, disk *tib.Disk, regions []regionData, pr *plannedRestore, scratch string, st *Stats, logf func(string, ...any)) ([]*volJob, error) {
	var rebuilt []*volJob
	for _, j := range pr.jobs {
		if !j.scratch {
			continue
		}
		f, err := os.CreateTemp(scratch, fmt.Sprintf("cauldron-%s-part%d-*.img", disk.Name, j.move.Number))
		if err != nil {
			return rebuilt, fmt.Errorf("restore: scratch file: %w", err)
		}
		j.file = f
		rebuilt = append(rebuilt, j)
		if err := f.Truncate(j.move.OldSize); err != nil {
			return rebuilt, fmt.Errorf("restore: scratch file %s: %w", f.Name(), err)
		}
		j.rd.w, j.rd.delta, j.rd.lo, j.rd.hi, j.rd.zero = f, -j.rd.g.Start, j.rd.g.Start, j.rd.g.Start+j.rd.g.Size, nil
	}
	if len(rebuilt) == 0 {
		return nil, nil
	}
	logf("restoring %d volume(s) into %s to rebuild them before they go to %s", len(rebuilt), scratch, o.Target.Name())
	s1, err := writeRegions(ctx, r, o, gen, disk, regions)
	if err != nil {
		return rebuilt, err
	}
	st.Bytes, st.Chunks = s1.Bytes, s1.Chunks
	for _, j := range rebuilt {
		j.rd.w = nil
		if err := j.file.Sync(); err != nil {
			return rebuilt, err
		}
		switch j.fs {
		case "vfat":
			if err := partition.CheckFATResize(j.file, j.fatOld, j.fatNew); err != nil {
				return rebuilt, fmt.Errorf("restore: partition %d: %w", j.move.Number, err)
			}
		default:
			logf("shrinking partition %d (%s) from %d to %d bytes in %s", j.move.Number, j.fs, j.move.OldSize, j.move.NewSize, j.file.Name())
			label, uuid := fsIdentity(j.part)
			if err := partition.ResizeFilesystem(j.file.Name(), j.fs, j.move.NewSize, label, uuid); err != nil {
				return rebuilt, fmt.Errorf("restore: partition %d, before anything was written to %s: %w", j.move.Number, o.Target.Name(), err)
			}
		}
	}
	return rebuilt, nil
}

// writeDirect restores the partitions at their new places and the boot area (step 4), copies the
// rebuilt volumes into their partitions (step 5), and fixes boot sectors and GRUB's blocklists.
func writeDirect(ctx context.Context, r *tib.Repository, o Options, gen *tib.Generation, disk *tib.Disk, regions []regionData, pr *plannedRestore, rebuilt []*volJob, st *Stats, logf func(string, ...any)) error {
	name := o.Target.Name()
	t, err := o.Target.Open(o.Plan.Target.Size)
	if err != nil {
		return err
	}
	defer t.Close()
	for _, j := range pr.jobs {
		if j.scratch {
			continue
		}
		rd := j.rd
		rd.w, rd.delta, rd.lo, rd.hi, rd.zero = t, j.move.NewStart-j.move.OldStart, rd.g.Start, rd.g.Start+min(j.move.OldSize, j.move.NewSize), zeroer(t)
	}
	for _, rd := range pr.gaps {
		if lo, hi := max(rd.g.Start, pr.bootLo), min(rd.g.Start+rd.g.Size, pr.bootHi); lo < hi {
			rd.w, rd.delta, rd.lo, rd.hi, rd.zero = t, 0, lo, hi, zeroer(t)
		}
	}
	logf("restoring the partitions at their new places")
	s2, err := writeRegions(ctx, r, o, gen, disk, regions)
	if err != nil {
		return err
	}
	st.Bytes += s2.Bytes
	st.Chunks += s2.Chunks
	st.Zeroed += s2.Zeroed

	for _, j := range rebuilt {
		part := target.Section(t, j.move.NewStart, j.move.NewSize)
		if j.fs == "vfat" {
			logf("writing partition %d (FAT%d) resized from %d to %d bytes, %d-byte sectors", j.move.Number, j.fatNew.Bits, j.move.OldSize, j.move.NewSize, j.fatNew.BytesPerSector)
			if err := partition.ResizeFAT(j.file, part, j.fatOld, j.fatNew, uint32(j.move.NewStart/pr.lss)); err != nil {
				return fmt.Errorf("restore: partition %d: %w", j.move.Number, err)
			}
			continue
		}
		n, err := copyData(j.file, t, j.move.NewStart, j.move.NewSize)
		if err != nil {
			return fmt.Errorf("restore: copying the shrunk partition %d into %s: %w", j.move.Number, name, err)
		}
		st.Bytes += n
	}
	if err := fixBoots(t, pr); err != nil {
		return err
	}
	if moved, err := partition.FixGRUBCore(t, pr.lss, int64(disk.Layout.LogicalSectorSize), o.Plan.Moves); err != nil {
		return fmt.Errorf("restore: %w", err)
	} else if moved {
		logf("GRUB's core.img moved with its partition: boot.img and core.img's blocklists now point at its new place")
	}
	if err := t.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", name, err)
	}
	return nil
}

// growInPlace grows the filesystems that grow in their partition (and remakes swap areas whose
// size changed), then writes the boot sectors' new start again: ntfsresize rewrites the ones it
// grows.
func growInPlace(o Options, pr *plannedRestore, logf func(string, ...any)) error {
	for _, j := range pr.jobs {
		m := j.move
		if j.scratch || m.NewSize == m.OldSize {
			continue
		}
		if m.NewSize < m.OldSize && j.fs != "swap" {
			continue
		}
		if !growsInPlace(j.fs) && j.fs != "swap" {
			continue
		}
		logf("resizing partition %d (%s) from %d to %d bytes", m.Number, j.fs, m.OldSize, m.NewSize)
		if err := o.Target.WithPartition(o.Plan, j.part.Number, func(dev string) error {
			label, uuid := fsIdentity(j.part)
			return partition.ResizeFilesystem(dev, j.fs, m.NewSize, label, uuid)
		}); err != nil {
			return fmt.Errorf("restore: partition %d: %w", m.Number, err)
		}
	}
	t, err := o.Target.Open(o.Plan.Target.Size)
	if err != nil {
		return err
	}
	defer t.Close()
	if err := fixBoots(t, pr); err != nil {
		return err
	}
	return t.Sync()
}

// growsInPlace reports whether a filesystem is grown in its partition after restore (FAT is
// grown while it is rebuilt).
func growsInPlace(fs string) bool {
	switch fs {
	case "ext2", "ext3", "ext4", "ntfs", "xfs", "btrfs":
		return true
	}
	return false
}

// fixBoots makes FAT and NTFS boot sectors name their partition's new start and the target's
// sector size (rebuilt FAT volumes have them already).
func fixBoots(f target.Writer, pr *plannedRestore) error {
	for _, j := range pr.jobs {
		part := target.Section(f, j.move.NewStart, j.move.NewSize)
		startSector := uint64(j.move.NewStart / pr.lss)
		var err error
		switch {
		case j.fs == "ntfs":
			err = partition.FixNTFSBoot(part, j.move.NewSize, int(pr.lss), startSector)
		case j.fs == "vfat" && !j.scratch:
			err = partition.FixFATBoot(part, startSector)
		}
		if err != nil {
			return fmt.Errorf("restore: partition %d boot sector: %w", j.move.Number, err)
		}
	}
	return nil
}

func fsIdentity(p partition.Partition) (label, uuid string) {
	if p.Filesystem != nil {
		return p.Filesystem.Label, p.Filesystem.UUID
	}
	return "", ""
}

// copyData copies the data extents of the first n bytes of the sparse file src to dst at off:
// holes are blocks nobody wrote (unused in the volume, as restore never writes those), so they
// are skipped, as a restore skips unused blocks.
func copyData(src *os.File, dst io.WriterAt, off, n int64) (int64, error) {
	fd := int(src.Fd())
	buf := make([]byte, 4<<20)
	var copied int64
	pos := int64(0)
	for pos < n {
		d, err := unix.Seek(fd, pos, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) || d >= n {
			break
		}
		if err != nil {
			return copied, err
		}
		h, err := unix.Seek(fd, d, unix.SEEK_HOLE)
		if err != nil {
			return copied, err
		}
		h = min(h, n)
		for p := d; p < h; {
			k := min(int64(len(buf)), h-p)
			if _, err := src.ReadAt(buf[:k], p); err != nil && !errors.Is(err, io.EOF) {
				return copied, err
			}
			if _, err := dst.WriteAt(buf[:k], off+p); err != nil {
				return copied, err
			}
			p += k
			copied += k
		}
		pos = h
	}
	return copied, nil
}
