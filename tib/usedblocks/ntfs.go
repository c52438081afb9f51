package usedblocks

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"

	ntfs "www.velocidex.com/golang/go-ntfs/parser"
)

const (
	ntfsMFTBitmap = 6 // $Bitmap's fixed MFT record number
	ntfsMFTVolume = 3 // $Volume's
	ntfsMFTLog    = 2 // $LogFile's

	ntfsAttrVolumeInformation = 0x70
	ntfsVolumeDirty           = 0x0001 // $VOLUME_INFORMATION flags: chkdsk must run before the volume is trusted

	// go-ntfs accepts clusters up to 64 KiB only (its boot sector check lists sizes up to 0x10000);
	// Windows 10 can format up to 2 MiB clusters, encoded as a negative power of two.
	ntfsMaxCluster = 64 << 10

	ntfsBootSize    = 8 << 10
	ntfsBitmapChunk = 1 << 20 // $Bitmap is read in pieces: 64 MiB for a 2 TiB volume of 4 KiB clusters
)

// NTFS reads an NTFS volume's $Bitmap through go-ntfs. The map's block size is the cluster size.
// Clusters $Bitmap marks used are used, and so is everything past the last cluster it describes
// up to size: NTFS keeps its backup boot sector in the last sector of the partition, outside
// every cluster.
//
// A volume that is hibernated (Windows hibernation or Fast Startup), marked dirty, or whose
// $LogFile holds operations not yet replayed is refused with an error wrapping ErrUnsupported:
// Windows would resume or replay from state the on-disk $Bitmap does not show.
func NTFS(r io.ReaderAt, size int64) (m *Map, err error) {
	// go-ntfs indexes buffers and sizes allocations with on-disk values. Fuzzing v0.2.1 (3.7 million
	// inputs) found no panic, but a damaged volume must give an error, never crash the capture, so
	// every call into it runs under this recover (TestNTFSRecoversPanics).
	defer func() {
		if p := recover(); p != nil {
			m, err = nil, fmt.Errorf("ntfs: go-ntfs failed on malformed metadata: %v", p)
		}
	}()
	r = io.NewSectionReader(r, 0, size)
	boot := make([]byte, 512)
	if err := readAt(r, boot, 0); err != nil {
		return nil, fmt.Errorf("ntfs: boot sector at byte 0: %w", err)
	}
	clusterSize, clusters, err := parseNTFSBoot(boot, size)
	if err != nil {
		return nil, err
	}

	// go-ntfs ignores most read errors, and its paged reader pads reads past the end of its
	// source with zeros, which in $Bitmap would read as "free". The guard below records any
	// request that leaves the clusters the boot sector describes, so that metadata pointing
	// outside the volume is reported instead of read as zeros.
	paged, err := ntfs.NewPagedReader(r, 4096, 1024)
	if err != nil {
		return nil, fmt.Errorf("ntfs: %w", err)
	}
	g := &guardReader{r: paged, limit: clusters * clusterSize}
	ctx, err := ntfs.GetNTFSContext(g, 0)
	if err != nil {
		return nil, fmt.Errorf("ntfs: boot sector at byte 0: go-ntfs: %w", err)
	}
	defer ctx.Close()
	// $MFT's own record describes where every other record is; check it like the others.
	if _, err := ntfsSystemRecord(ctx, 0, "$MFT"); err != nil {
		return nil, err
	}
	if err := ntfsCheckClean(ctx); err != nil {
		return nil, err
	}

	extents, err := ntfsBitmapExtents(ctx, clusterSize, clusters)
	if err != nil {
		return nil, err
	}
	if at := g.overrun.Load(); at != 0 {
		return nil, fmt.Errorf("ntfs: metadata points at byte %d, past the volume's %d clusters", at-1, clusters)
	}
	m = newVolumeMap(clusterSize, size, clusters*clusterSize)
	// $Boot (the boot sector and the boot loader after it, 8 KiB) is always in use; $Bitmap says
	// so too, but a damaged $Bitmap must not cost the volume its boot sector.
	m.setBytes(0, ntfsBootSize)

	// $Bitmap's clusters are read here, not through go-ntfs's stream reader: that reader pads
	// whatever it cannot read with zeros, which in an allocation bitmap means "free".
	need := (clusters + 7) / 8 // bytes of $Bitmap that describe clusters
	buf := make([]byte, min(need, ntfsBitmapChunk))
	var done int64 // bytes of $Bitmap consumed
	for _, e := range extents {
		for off := int64(0); off < e.length && done < need; {
			p := buf[:min(int64(len(buf)), e.length-off, need-done)]
			if err := readAt(r, p, e.data+off); err != nil {
				return nil, fmt.Errorf("ntfs: $Bitmap bytes %d-%d: %w", done, done+int64(len(p)), err)
			}
			m.orBitmap(done*8, p, clusters-done*8)
			off += int64(len(p))
			done += int64(len(p))
		}
	}
	return m, nil
}

// ntfsExtent is a piece of $Bitmap's data: length bytes at volume offset data.
type ntfsExtent struct {
	data, length int64
}

// ntfsBitmapExtents finds where $Bitmap's data lies, checking every run against the volume. go-ntfs
// decodes the MFT record and run lists; the checks are ours, because go-ntfs follows a run list
// that makes no sense (negative lengths, runs outside the volume) without complaint and returns
// wrong bytes (TestNTFSGoNTFSReadsGarbage), and would decompress or zero-fill a $Bitmap flagged
// compressed or sparse, which NTFS never writes.
func ntfsBitmapExtents(ctx *ntfs.NTFSContext, cs, clusters int64) ([]ntfsExtent, error) {
	mft, err := ntfsSystemRecord(ctx, ntfsMFTBitmap, "$Bitmap")
	if err != nil {
		return nil, err
	}
	attrs := ntfs.GetAllVCNs(ctx, mft, ntfs.ATTR_TYPE_DATA, ntfs.WILDCARD_STREAM_ID, ntfs.WILDCARD_STREAM_NAME)
	if len(attrs) == 0 {
		return nil, fmt.Errorf("ntfs: MFT record %d ($Bitmap): no $DATA attribute", ntfsMFTBitmap)
	}
	need := (clusters + 7) / 8
	if attrs[0].IsResident() {
		return nil, fmt.Errorf("ntfs: MFT record %d ($Bitmap): resident $DATA, which NTFS never writes for $Bitmap", ntfsMFTBitmap)
	}
	var out []ntfsExtent
	var vcn int64 // next cluster of $Bitmap expected
	for _, a := range attrs {
		bad := func(format string, v ...any) error {
			return fmt.Errorf("ntfs: MFT record %d ($Bitmap): $DATA at VCN %d: %s", ntfsMFTBitmap, vcn, fmt.Sprintf(format, v...))
		}
		// Compressed (0x00FF), encrypted (0x4000) or sparse (0x8000): never so for $Bitmap.
		if flags := uint64(*a.Flags()); flags&0xC0FF != 0 {
			return nil, bad("flags %#x (compressed, encrypted or sparse)", flags)
		}
		if a.IsResident() || int64(a.Runlist_vcn_start()) != vcn {
			return nil, bad("extent starts at VCN %d", a.Runlist_vcn_start())
		}
		for _, run := range a.RunList() {
			// A zero offset delta is a sparse run, or a run overlapping the one before.
			if run.Length <= 0 || run.RelativeUrnOffset == 0 || run.Offset < 0 || run.Offset > clusters-run.Length {
				return nil, bad("run of %d clusters at LCN %d (delta %d) is not within the volume's %d clusters",
					run.Length, run.Offset, run.RelativeUrnOffset, clusters)
			}
			out = append(out, ntfsExtent{data: run.Offset * cs, length: run.Length * cs})
			vcn += run.Length
		}
		if int64(a.Runlist_vcn_end()) != vcn-1 {
			return nil, bad("runs end at VCN %d, the attribute says %d", vcn-1, a.Runlist_vcn_end())
		}
	}
	if vcn*cs < need {
		return nil, fmt.Errorf("ntfs: MFT record %d ($Bitmap): %d bytes of data, need %d for %d clusters", ntfsMFTBitmap, vcn*cs, need, clusters)
	}
	return out, nil
}

// parseNTFSBoot checks the boot sector and returns the cluster size and the number of clusters
// $Bitmap describes: the volume's sector count (which excludes the backup boot sector) divided by
// sectors per cluster. It is decoded here, not through go-ntfs, because go-ntfs's BlockCount
// divides the sector count by the cluster size in bytes (an upstream bug) and does not know the
// negative-exponent encoding of large clusters.
func parseNTFSBoot(b []byte, size int64) (clusterSize, clusters int64, err error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("ntfs: boot sector at byte 0: %s", fmt.Sprintf(format, a...))
	}
	if string(b[3:11]) != "NTFS    " {
		return 0, 0, bad("OEM id %q is not \"NTFS    \"", b[3:11])
	}
	sector := int64(binary.LittleEndian.Uint16(b[0x0B:]))
	switch sector {
	case 512, 1024, 2048, 4096:
	default:
		return 0, 0, bad("%d bytes per sector", sector)
	}
	spc := int64(b[0x0D])
	if spc > 0x80 { // 2^(256-n) sectors, for clusters above 64 KiB
		if 256-spc > 20 {
			return 0, 0, bad("sectors-per-cluster code %#x is absurd", spc)
		}
		spc = 1 << (256 - spc)
	}
	if spc == 0 || spc&(spc-1) != 0 {
		return 0, 0, bad("%d sectors per cluster is not a power of two", spc)
	}
	clusterSize = spc * sector
	if clusterSize > ntfsMaxCluster {
		return 0, 0, fmt.Errorf("ntfs: boot sector at byte 0: %d-byte clusters, larger than go-ntfs reads: %w", clusterSize, ErrUnsupported)
	}
	sectors := binary.LittleEndian.Uint64(b[0x28:])
	if sectors == 0 || sectors > uint64(size/sector) {
		return 0, 0, bad("%d sectors of %d bytes do not fit the volume's %d bytes", sectors, sector, size)
	}
	return clusterSize, int64(sectors) / spc, nil
}

// ntfsSystemRecord reads one of the metadata files with fixed MFT numbers and checks that it is
// what it should be: a FILE record with as many update-sequence fix-ups as its size needs (go-ntfs
// silently skips fix-ups when the count is 0 or 1, leaving wrong bytes at every sector's end) and
// the expected name. A damaged MFT is then reported instead of its garbage being believed.
func ntfsSystemRecord(ctx *ntfs.NTFSContext, record int64, name string) (*ntfs.MFT_ENTRY, error) {
	mft, err := ctx.GetMFT(record)
	if err != nil {
		return nil, fmt.Errorf("ntfs: MFT record %d (%s): %w", record, name, err)
	}
	head := make([]byte, 8)
	if n, _ := mft.Reader.ReadAt(head, mft.Offset); n != len(head) || string(head[:4]) != "FILE" {
		return nil, fmt.Errorf("ntfs: MFT record %d (%s): no FILE signature", record, name)
	}
	if want, got := ctx.GetRecordSize()/512+1, int64(binary.LittleEndian.Uint16(head[6:])); got != want {
		return nil, fmt.Errorf("ntfs: MFT record %d (%s): %d update-sequence entries, want %d", record, name, got, want)
	}
	found := false
	for _, fn := range mft.FileName(ctx) {
		found = found || fn.Name() == name
	}
	if !found {
		return nil, fmt.Errorf("ntfs: MFT record %d is not %s", record, name)
	}
	return mft, nil
}

// ntfsSystemStream opens an attribute of a metadata file with a fixed MFT number.
func ntfsSystemStream(ctx *ntfs.NTFSContext, record int64, name string, attrType uint64) (ntfs.RangeReaderAt, error) {
	mft, err := ntfsSystemRecord(ctx, record, name)
	if err != nil {
		return nil, err
	}
	s, err := ntfs.OpenStream(ctx, mft, attrType, ntfs.WILDCARD_STREAM_ID, ntfs.WILDCARD_STREAM_NAME)
	if err != nil {
		return nil, fmt.Errorf("ntfs: MFT record %d (%s): attribute %#x: %w", record, name, attrType, err)
	}
	return s, nil
}

// ntfsCheckClean refuses volumes whose on-disk allocation is not the allocation Windows will use:
// dirty (chkdsk pending), hibernated, or with a $LogFile not yet replayed. ntfs-3g refuses to
// mount the same volumes, for the same reason.
func ntfsCheckClean(ctx *ntfs.NTFSContext) error {
	vol, err := ntfsSystemStream(ctx, ntfsMFTVolume, "$Volume", ntfsAttrVolumeInformation)
	if err != nil {
		return err
	}
	info := make([]byte, 12)
	if n, _ := vol.ReadAt(info, 0); n != len(info) {
		return fmt.Errorf("ntfs: $Volume: $VOLUME_INFORMATION is %d bytes, want %d", n, len(info))
	}
	if flags := binary.LittleEndian.Uint16(info[10:]); flags&ntfsVolumeDirty != 0 {
		return fmt.Errorf("ntfs: $Volume: the volume is marked dirty (flags %#x); run chkdsk first: %w", flags, ErrUnsupported)
	}

	log, err := ntfsSystemStream(ctx, ntfsMFTLog, "$LogFile", ntfs.ATTR_TYPE_DATA)
	if err != nil {
		return err
	}
	if !ntfsLogClean(log) {
		return fmt.Errorf("ntfs: $LogFile: operations are waiting to be replayed (Windows did not shut down cleanly); boot Windows or run chkdsk first: %w", ErrUnsupported)
	}

	hiber, err := ntfsRootFile(ctx, "hiberfil.sys")
	if err != nil || hiber == nil {
		return err
	}
	magic := make([]byte, 4)
	if n, _ := hiber.ReadAt(magic, 0); n == len(magic) && strings.EqualFold(string(magic), "hibr") {
		return fmt.Errorf("ntfs: hiberfil.sys: Windows is hibernated (or shut down with Fast Startup); its cached state supersedes the disk: %w", ErrUnsupported)
	}
	return nil
}

// ntfsLogClean reads $LogFile's two restart pages (at 0 and one system page further) and judges
// by the more recent, as the Linux NTFS driver does. A restart area with a client in use but
// without the volume-is-clean flag (0x0002) means records are waiting to be replayed. A log with
// no restart page was never written (mkntfs and ntfs-3g leave it filled with 0xFF): nothing to
// replay. The fields read lie in each page's first sector, away from the update-sequence fix-ups,
// so no fix-up is needed.
func ntfsLogClean(log io.ReaderAt) bool {
	type restart struct {
		valid    bool
		lsn      uint64
		clean    bool
		pageSize int64 // the system page size the page declares; the second copy follows at it
	}
	read := func(off int64) restart {
		page := make([]byte, 512)
		if n, _ := log.ReadAt(page, off); n != len(page) {
			return restart{}
		}
		if magic := string(page[:4]); magic != "RSTR" && magic != "CHKD" {
			return restart{}
		}
		r := restart{valid: true, pageSize: int64(binary.LittleEndian.Uint32(page[0x10:]))}
		ra := int(binary.LittleEndian.Uint16(page[0x18:]))
		if ra < 0x1E || ra+0x10 > len(page) {
			return r // a restart area we cannot read: assume the worst (not clean)
		}
		const noClient = 0xFFFF
		inUse := binary.LittleEndian.Uint16(page[ra+0x0C:])
		flags := binary.LittleEndian.Uint16(page[ra+0x0E:])
		r.lsn = binary.LittleEndian.Uint64(page[ra:])
		r.clean = inUse == noClient || flags&0x0002 != 0
		return r
	}
	first := read(0)
	next := int64(4096)
	if ps := first.pageSize; ps >= 512 && ps <= 65536 && ps&(ps-1) == 0 {
		next = ps
	}
	second := read(next)
	switch {
	case first.valid && second.valid && second.lsn > first.lsn:
		return second.clean
	case first.valid:
		return first.clean
	case second.valid:
		return second.clean
	}
	return true
}

// guardReader passes reads through and remembers (as offset+1) the first request reaching past
// limit, returning only the bytes before it.
type guardReader struct {
	r       io.ReaderAt
	limit   int64
	overrun atomic.Int64
}

func (g *guardReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > g.limit {
		g.overrun.CompareAndSwap(0, max(off, 0)+1)
		if off < 0 || off >= g.limit {
			return 0, io.EOF
		}
		n, err := g.r.ReadAt(p[:g.limit-off], off)
		if err == nil {
			err = io.EOF
		}
		return n, err
	}
	return g.r.ReadAt(p, off)
}

// ntfsRootFile opens the unnamed $DATA stream of a file in the root directory, or returns nil
// when there is no such file. go-ntfs's own path lookup (GetDataForPath) reports a missing file
// with an ad-hoc error that cannot be told from a failure, so the root index is walked here.
func ntfsRootFile(ctx *ntfs.NTFSContext, name string) (ntfs.RangeReaderAt, error) {
	root, err := ctx.GetMFT(5)
	if err != nil {
		return nil, fmt.Errorf("ntfs: MFT record 5 (root directory): %w", err)
	}
	for _, entry := range root.Dir(ctx) {
		if !strings.EqualFold(entry.File().Name(), name) {
			continue
		}
		rec := int64(entry.MftReference())
		mft, err := ctx.GetMFT(rec)
		if err != nil {
			return nil, fmt.Errorf("ntfs: %s: MFT record %d: %w", name, rec, err)
		}
		s, err := ntfs.OpenStream(ctx, mft, ntfs.ATTR_TYPE_DATA, ntfs.WILDCARD_STREAM_ID, ntfs.WILDCARD_STREAM_NAME)
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil // no data: nothing hibernated in it
		}
		if err != nil {
			return nil, fmt.Errorf("ntfs: %s: MFT record %d: %w", name, rec, err)
		}
		return s, nil
	}
	return nil, nil
}
