package regf

import (
	"errors"
	"fmt"
	"math/bits"
	"os"
	"sort"
)

// Transaction logs. Windows writes changes to HIVE.LOG1/.LOG2 before the primary file; a hive whose
// sequence numbers differ was interrupted in between and its logs hold the newest data. Replay
// follows the recovery rules of msuhanov's specification ("Format of transaction log files",
// "Dirty state of a hive", "Multiple transaction log files"): new-format logs (Windows 8.1+:
// file type 6, HvLE entries checked with Marvin32 hashes) are applied entry by entry in sequence
// order across both files; old-format logs (file type 1, a DIRT bitmap of 512-byte pages) are
// applied when their base block's timestamp matches the primary's.

const logSector = 512

// marvinSeed is the seed Windows uses for log entry hashes.
const marvinSeed = 0x82EF4D887A4E55C5

// marvin32 is Microsoft's Marvin32 hash (as published with .NET's string hashing): 32-bit
// little-endian blocks mixed into a pair of registers, with 0x80 padding after the tail.
func marvin32(data []byte, seed uint64) uint64 {
	lo, hi := uint32(seed), uint32(seed>>32)
	mix := func() {
		hi ^= lo
		lo = bits.RotateLeft32(lo, 20) + hi
		hi = bits.RotateLeft32(hi, 9) ^ lo
		lo = bits.RotateLeft32(lo, 27) + hi
		hi = bits.RotateLeft32(hi, 19)
	}
	for len(data) >= 4 {
		lo += le32(data)
		mix()
		data = data[4:]
	}
	final := uint32(0x80)
	for i := len(data) - 1; i >= 0; i-- {
		final = final<<8 | uint32(data[i])
	}
	lo += final
	mix()
	mix()
	return uint64(hi)<<32 | uint64(lo)
}

// logBase checks the first sector of a log: a base block copy with a valid checksum, the expected
// file type and equal sequence numbers (what makes a log valid).
func logBase(b []byte, wantType uint32) error {
	if len(b) < logSector {
		return errors.New("shorter than its 512-byte base block")
	}
	if string(b[0:4]) != "regf" {
		return errors.New(`base block signature is not "regf"`)
	}
	if le32(b[508:]) != baseChecksum(b) {
		return errors.New("base block checksum is wrong")
	}
	if t := le32(b[28:]); t != wantType {
		return fmt.Errorf("file type %d, not %d", t, wantType)
	}
	if le32(b[4:]) != le32(b[8:]) {
		return errors.New("its own sequence numbers differ (the log itself was cut short)")
	}
	return nil
}

type logEntry struct {
	seq, binsSize, flags uint32
	pages                [][2]uint32 // offset, size
	data                 []byte      // the pages, in order
}

// logEntries reads the valid HvLE entries of a new-format log, stopping at the first bad one.
func logEntries(b []byte) []logEntry {
	var out []logEntry
	for off := logSector; off+40 <= len(b); {
		e := b[off:]
		if string(e[0:4]) != "HvLE" {
			break
		}
		size := int(le32(e[4:]))
		if size < 40 || size%logSector != 0 || off+size > len(b) {
			break
		}
		e = e[:size]
		binsSize, n := le32(e[16:]), int(le32(e[20:]))
		if binsSize%hbinAlign != 0 || marvin32(e[40:], marvinSeed) != le64(e[24:]) || marvin32(e[:32], marvinSeed) != le64(e[32:]) {
			break
		}
		if 40+8*n > size {
			break
		}
		le := logEntry{seq: le32(e[12:]), binsSize: binsSize, flags: le32(e[8:])}
		total := 0
		for i := 0; i < n; i++ {
			p := [2]uint32{le32(e[40+8*i:]), le32(e[44+8*i:])}
			le.pages = append(le.pages, p)
			total += int(p[1])
		}
		if 40+8*n+total > size {
			break
		}
		le.data = e[40+8*n : 40+8*n+total]
		out = append(out, le)
		off += size
	}
	return out
}

// ReplayLogs applies the transaction logs of a dirty hive (the contents of HIVE.LOG1 and
// HIVE.LOG2; a missing one is nil) in memory, and returns how many log entries or pages it
// applied. The hive is clean afterwards; Save writes it. A hive that is not dirty is left alone.
func (h *Hive) ReplayLogs(logs ...[]byte) (int, error) {
	if !h.Dirty() {
		return 0, nil
	}
	var newLogs, oldLogs [][]byte
	var reasons []string
	for i, l := range logs {
		if len(l) == 0 {
			continue
		}
		if len(l) >= logSector && le32(l[28:]) == 6 {
			if err := logBase(l, 6); err != nil {
				reasons = append(reasons, fmt.Sprintf("log %d: %v", i+1, err))
				continue
			}
			newLogs = append(newLogs, l)
		} else {
			if err := logBase(l, 1); err != nil {
				reasons = append(reasons, fmt.Sprintf("log %d: %v", i+1, err))
				continue
			}
			oldLogs = append(oldLogs, l)
		}
	}
	var n int
	var err error
	switch {
	case len(newLogs) > 0:
		n, err = h.replayNew(newLogs)
	case len(oldLogs) > 0:
		n, err = h.replayOld(oldLogs)
	default:
		err = fmt.Errorf("no valid transaction log %v", reasons)
	}
	if err != nil {
		return 0, fmt.Errorf("regf: the hive is dirty and its logs cannot be replayed: %w", err)
	}
	return n, nil
}

func (h *Hive) replayNew(logs [][]byte) (int, error) {
	_, secondary := h.Sequence()
	type lf struct {
		base    uint32
		entries []logEntry
	}
	var files []lf
	if h.badBase {
		// The primary's base block cannot be trusted: it is taken from the log with the latest
		// entries, and only that log is applied.
		latest := logs[0]
		for _, l := range logs[1:] {
			if le32(l[4:]) > le32(latest[4:]) {
				latest = l
			}
		}
		copy(h.buf[:logSector], latest[:logSector])
		put32(h.buf[28:], 0)
		files = []lf{{le32(latest[4:]), logEntries(latest)}}
	} else {
		for _, l := range logs {
			base := le32(l[4:])
			if base < secondary {
				continue // older than the primary file: already applied
			}
			files = append(files, lf{base, logEntries(l)})
		}
	}
	// The file with the earlier entries goes first.
	sort.SliceStable(files, func(i, j int) bool { return files[i].base < files[j].base })
	if len(files) == 0 {
		return 0, errors.New("no log holds entries newer than the primary file")
	}
	expected := files[0].base
	applied := 0
	var last uint32
	for _, f := range files {
		for _, e := range f.entries {
			if e.seq < expected {
				continue
			}
			if e.seq != expected {
				break
			}
			if err := h.applyEntry(e); err != nil {
				return 0, err
			}
			h.minSeq = max(h.minSeq, e.seq)
			last = e.seq
			applied++
			expected++
		}
	}
	if applied == 0 {
		return 0, fmt.Errorf("no log entry has the expected sequence number %d", files[0].base)
	}
	for _, f := range files {
		for _, e := range f.entries {
			h.minSeq = max(h.minSeq, e.seq)
		}
	}
	put32(h.buf[4:], last)
	put32(h.buf[8:], last)
	return applied, h.reparse()
}

func (h *Hive) applyEntry(e logEntry) error {
	need := baseBlockSize + int(e.binsSize)
	if len(h.buf) < need {
		h.buf = append(h.buf, make([]byte, need-len(h.buf))...)
	}
	data := e.data
	for _, p := range e.pages {
		off, size := int(p[0]), int(p[1])
		if off+size > int(e.binsSize) {
			return fmt.Errorf("log entry %d: page at %#x of %d bytes lies past the hive bins (%#x)", e.seq, off, size, e.binsSize)
		}
		copy(h.buf[baseBlockSize+off:], data[:size])
		data = data[size:]
	}
	put32(h.buf[40:], e.binsSize)
	flags := le32(h.buf[144:])&^1 | e.flags&1
	put32(h.buf[144:], flags)
	return nil
}

func (h *Hive) replayOld(logs [][]byte) (int, error) {
	if h.badBase {
		// The primary's base block cannot be trusted: an old-format log starts with a copy of
		// the base block it was written against (checked by logBase); the newest one stands in
		// for the primary's, and with it the timestamp that the log must match.
		latest := logs[0]
		for _, l := range logs[1:] {
			if le32(l[4:]) > le32(latest[4:]) {
				latest = l
			}
		}
		copy(h.buf[:logSector], latest[:logSector])
		put32(h.buf[28:], 0)
		logs = [][]byte{latest}
	}
	for _, l := range logs {
		// Only a log written for this very state of the primary file applies.
		if le64(l[12:]) != le64(h.buf[12:]) {
			continue
		}
		binsSize := le32(l[40:])
		if binsSize%hbinAlign != 0 {
			continue
		}
		if len(l) < 2*logSector || string(l[logSector:logSector+4]) != "DIRT" {
			return 0, errors.New(`old-format log has no "DIRT" dirty vector`)
		}
		nbits := int(binsSize / logSector)
		bitmapEnd := logSector + 4 + (nbits+7)/8
		if bitmapEnd > len(l) {
			return 0, errors.New("dirty vector runs past the end of the log")
		}
		bitmap := l[logSector+4 : bitmapEnd]
		pageOff := (bitmapEnd + logSector - 1) / logSector * logSector
		need := baseBlockSize + int(binsSize)
		if len(h.buf) < need {
			h.buf = append(h.buf, make([]byte, need-len(h.buf))...)
		}
		applied := 0
		for i := 0; i < nbits; i++ {
			if bitmap[i/8]&(1<<(i%8)) == 0 {
				continue
			}
			if pageOff+logSector > len(l) {
				return 0, fmt.Errorf("dirty page %d lies past the end of the log", applied)
			}
			copy(h.buf[baseBlockSize+logSector*i:], l[pageOff:pageOff+logSector])
			pageOff += logSector
			applied++
		}
		put32(h.buf[40:], binsSize)
		p, s := h.Sequence()
		seq := max(p, s, le32(l[4:]))
		h.minSeq = max(h.minSeq, seq)
		put32(h.buf[4:], seq)
		put32(h.buf[8:], seq)
		return applied, h.reparse()
	}
	return 0, errors.New("no old-format log matches the primary file's timestamp")
}

// reparse rebuilds the in-memory view after the bytes were replaced.
func (h *Hive) reparse() error {
	h.buf = h.buf[:baseBlockSize+int(le32(h.buf[40:]))]
	put32(h.buf[508:], baseChecksum(h.buf))
	n, err := Parse(h.buf)
	if err != nil {
		return fmt.Errorf("the replayed hive is damaged: %w", err)
	}
	n.path, n.minSeq = h.path, h.minSeq // editChecked stays false: the replayed hive is checked anew
	*h = *n
	return nil
}

// ReplayFiles replays the logs beside a hive file (HIVE.LOG1, HIVE.LOG2, else HIVE.LOG).
func (h *Hive) ReplayFiles(path string) (int, error) {
	var logs [][]byte
	for _, ext := range []string{".LOG1", ".LOG2", ".LOG"} {
		b, err := os.ReadFile(path + ext)
		if err != nil && !os.IsNotExist(err) {
			return 0, err
		}
		if ext == ".LOG" && len(logs) > 0 {
			break
		}
		if len(b) > 0 {
			logs = append(logs, b)
		}
	}
	if len(logs) == 0 {
		return 0, fmt.Errorf("regf: %s is dirty (its sequence numbers differ) and has no transaction logs (.LOG1/.LOG2): its last changes are lost; refusing to use it", path)
	}
	return h.ReplayLogs(logs...)
}
