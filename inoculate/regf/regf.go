// Package regf reads, checks, edits, exports, imports and recovers Windows registry hive files
// ("regf" format) offline, as Cauldron's inoculation needs for SYSTEM hives and BCD stores.
//
// Everything here is hand-written against public descriptions of the format (msuhanov's "Windows
// registry file format specification", libyal's libregf notes, the invariants ReactOS' cmlib
// checks), because no maintained Go library writes hives, and hivex, what Linux tools use, breaks
// rules Windows relies on (lh hashes and sort order of non-ASCII names, transaction logs it never
// replays) and reads some layouts wrongly. No code was taken from hivex, regipy, yarp, nt-hive or
// ReactOS; the independent readers (hivexsh, hivexget, hivexregedit, reged) are used only in
// tests, as judges.
//
// A Hive holds the whole file in memory. Reading is bounds-checked: a damaged hive yields errors
// that name the file offset and the rule broken, never a panic. Check enforces Windows'
// invariants: cell sizes and bounds, list types by version and order (upper-cased UTF-16 units),
// lh hashes and lf hints, parent links, the sk ring and reference counts, big-data shape,
// max-length fields, base-block checksum, dirtiness. The editor (CreateKey, DeleteKey, SetValue,
// DeleteValue, Import) refuses hives that fail Check, keeps every one of those rules (leaf type
// by version, ri splitting at 1013 entries, db big data over 16344 bytes, sk sharing, free-cell
// reuse, hbin growth), and Save writes through a temporary file, fsync and rename, with both
// sequence numbers equal and above any seen, emptying the LOG1/LOG2 files. ReplayLogs applies
// new-format (HvLE) and old-format (DIRT) transaction logs to a dirty hive. Export prints .reg
// text byte for byte as hivexregedit --export does; ParseReg reads .reg text.
//
// Offsets ("cell offsets") are relative to the first hbin, i.e. file offset minus 4096, as in the
// file itself.
package regf

import (
	"encoding/binary"
	"fmt"
	"os"
	"sort"
)

const (
	baseBlockSize = 4096
	hbinAlign     = 4096
	// bigDataSegment is the largest data chunk Windows puts in one db segment (CM_KEY_VALUE_BIG);
	// values longer than that are stored as big data when the hive's minor version is 4 or more.
	bigDataSegment = 16344
	noCell         = 0xFFFFFFFF
)

// Key flags in nk cells.
const (
	keyHiveExit  = 0x0002
	keyHiveEntry = 0x0004
	keyNoDelete  = 0x0008
	keyCompName  = 0x0020
)

// Value types, as in winnt.h.
const (
	RegNone             = 0
	RegSz               = 1
	RegExpandSz         = 2
	RegBinary           = 3
	RegDword            = 4
	RegDwordBigEndian   = 5
	RegLink             = 6
	RegMultiSz          = 7
	RegResourceList     = 8
	RegFullResourceDesc = 9
	RegResourceReqList  = 10
	RegQword            = 11
)

// FormatError reports a hive that breaks a rule of the format, at a file offset.
type FormatError struct {
	Offset int64  // offset in the file (not a cell offset), so it can be checked with a hex dump
	Rule   string // the rule broken
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("regf: at file offset %#x: %s", e.Offset, e.Rule)
}

func cellErr(cell uint32, format string, args ...any) error {
	return &FormatError{Offset: int64(cell) + baseBlockSize, Rule: fmt.Sprintf(format, args...)}
}

type hbin struct {
	off, size uint32 // cell-offset space
}

// Hive is an open hive file held in memory.
type Hive struct {
	buf  []byte // the whole file as read (base block + hive bins)
	bins []hbin // hive bins in order; they tile [0, binsEnd)
	// binsEnd is where the readable hive bins end (cell-offset space). It is less than the size in
	// the base block when the file is truncated.
	binsEnd   uint32
	truncated bool
	path      string
	// free holds the offsets of free cells, sorted, once an edit has needed them.
	free       []uint32
	freeLoaded bool
	// orderChecked is set when Check found every subkey list sorted; edits keep them sorted, so
	// lookups may then trust a binary search.
	orderChecked bool
	// badBase is set when the base block checksum is wrong.
	badBase bool
	// editChecked is set once the checker has passed before the first edit.
	editChecked bool
	// exportBudget bounds the keys one Export may print.
	exportBudget int
	// minSeq is the highest sequence number seen in replayed logs: a saved hive goes above it.
	minSeq uint32
}

// Open reads a hive file.
func Open(path string) (*Hive, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	h, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	h.path = path
	return h, nil
}

// Parse reads a hive from its bytes (the slice is retained and modified by edits).
func Parse(b []byte) (*Hive, error) {
	h := &Hive{buf: b}
	if len(b) < baseBlockSize {
		return nil, &FormatError{0, fmt.Sprintf("file is %d bytes, shorter than the 4096-byte base block", len(b))}
	}
	if string(b[0:4]) != "regf" {
		return nil, &FormatError{0, "base block signature is not \"regf\""}
	}
	if got, want := le32(b[508:]), baseChecksum(b); got != want {
		// Windows treats a base block with a wrong checksum as dirty and takes it back from a
		// transaction log; the hive is read as far as its fields allow, and only ReplayLogs
		// can make it usable (Check reports it, edits refuse it).
		h.badBase = true
	}
	if t := le32(b[28:]); t != 0 {
		return nil, &FormatError{28, fmt.Sprintf("file type %d is a transaction log, not a primary hive (0)", t)}
	}
	if f := le32(b[32:]); f != 1 {
		return nil, &FormatError{32, fmt.Sprintf("file format %d is not 1 (direct memory load)", f)}
	}
	if maj, min := h.Version(); maj != 1 || min < 2 || min > 6 {
		return nil, &FormatError{20, fmt.Sprintf("version %d.%d is not 1.2 to 1.6", maj, min)}
	}
	size := le32(b[40:])
	if size%hbinAlign != 0 || size == 0 {
		return nil, &FormatError{40, fmt.Sprintf("hive bins data size %#x is not a non-zero multiple of 4096", size)}
	}
	avail := uint64(len(b) - baseBlockSize)
	end := uint64(size)
	if end > avail {
		// A truncated file is still read as far as it goes (Windows does the same when it
		// recovers a hive); Check reports it.
		h.truncated = true
		end = avail
	}
	for off := uint64(0); off < end; {
		if off+32 > end {
			h.truncated = true
			break
		}
		p := b[baseBlockSize+off:]
		if string(p[0:4]) != "hbin" {
			return nil, &FormatError{int64(off) + baseBlockSize, "hive bin signature is not \"hbin\""}
		}
		if o := le32(p[4:]); uint64(o) != off {
			return nil, &FormatError{int64(off) + baseBlockSize + 4, fmt.Sprintf("hive bin says it is at %#x, it is at %#x", o, off)}
		}
		sz := uint64(le32(p[8:]))
		if sz == 0 || sz%hbinAlign != 0 {
			return nil, &FormatError{int64(off) + baseBlockSize + 8, fmt.Sprintf("hive bin size %#x is not a non-zero multiple of 4096", sz)}
		}
		if off+sz > end {
			if end < uint64(size) {
				h.truncated = true
				break
			}
			return nil, &FormatError{int64(off) + baseBlockSize + 8, fmt.Sprintf("hive bin of %#x bytes runs past the hive bins data size %#x", sz, size)}
		}
		h.bins = append(h.bins, hbin{uint32(off), uint32(sz)})
		off += sz
	}
	if len(h.bins) > 0 {
		last := h.bins[len(h.bins)-1]
		h.binsEnd = last.off + last.size
	}
	root := h.rootOffset()
	if _, err := h.nk(root); err != nil {
		return nil, fmt.Errorf("root key: %w", err)
	}
	return h, nil
}

// Bytes returns the hive file as it is in memory (with any edits, but see Save for the header).
func (h *Hive) Bytes() []byte { return h.buf }

// Version returns the major and minor version from the base block.
func (h *Hive) Version() (major, minor uint32) { return le32(h.buf[20:]), le32(h.buf[24:]) }

// Sequence returns the primary and secondary sequence numbers.
func (h *Hive) Sequence() (primary, secondary uint32) { return le32(h.buf[4:]), le32(h.buf[8:]) }

// Dirty reports whether the sequence numbers differ or the base block checksum is wrong: Windows
// was interrupted between writing the logs and the primary file, and the logs hold data (and
// perhaps the base block) the primary file lacks.
func (h *Hive) Dirty() bool { p, s := h.Sequence(); return p != s || h.badBase }

// Truncated reports whether the file ends before the hive bins the base block declares.
func (h *Hive) Truncated() bool { return h.truncated }

func (h *Hive) rootOffset() uint32 { return le32(h.buf[36:]) }

func (h *Hive) minor() uint32 { return le32(h.buf[24:]) }

func baseChecksum(b []byte) uint32 {
	var x uint32
	for i := 0; i < 508; i += 4 {
		x ^= le32(b[i:])
	}
	// Windows never stores 0 or -1 (they mean "not computed"), so it bends them.
	switch x {
	case 0xFFFFFFFF:
		x = 0xFFFFFFFE
	case 0:
		x = 1
	}
	return x
}

func le16(b []byte) uint16 { return binary.LittleEndian.Uint16(b) }
func le32(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }
func le64(b []byte) uint64 { return binary.LittleEndian.Uint64(b) }

// binOf returns the hive bin holding cell offset off.
func (h *Hive) binOf(off uint32) (hbin, bool) {
	i := sort.Search(len(h.bins), func(i int) bool { return h.bins[i].off+h.bins[i].size > off })
	if i == len(h.bins) || h.bins[i].off > off {
		return hbin{}, false
	}
	return h.bins[i], true
}

// cell returns the payload of the allocated cell at off (without its 4-byte size header).
func (h *Hive) cell(off uint32) ([]byte, error) {
	if off == noCell {
		return nil, cellErr(off, "cell offset is -1 (none) where a cell is required")
	}
	if off%8 != 0 {
		return nil, cellErr(off, "cell offset %#x is not 8-byte aligned", off)
	}
	bin, ok := h.binOf(off)
	if !ok {
		return nil, cellErr(off, "cell offset %#x is outside the hive bins (which end at %#x)", off, h.binsEnd)
	}
	if off < bin.off+32 {
		return nil, cellErr(off, "cell offset %#x points into a hive bin header", off)
	}
	raw := int32(le32(h.buf[baseBlockSize+off:]))
	if raw >= 0 {
		return nil, cellErr(off, "cell at %#x is free (size %d), but is referenced", off, raw)
	}
	size := uint32(-int64(raw))
	if size < 8 || size%8 != 0 {
		return nil, cellErr(off, "cell size %d is not a multiple of 8 of at least 8", size)
	}
	if off+size > bin.off+bin.size {
		return nil, cellErr(off, "cell of %d bytes crosses the end of its hive bin at %#x", size, bin.off+bin.size)
	}
	return h.buf[baseBlockSize+off+4 : baseBlockSize+off+size], nil
}
