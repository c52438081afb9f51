package regf

import (
	"errors"
	"fmt"
	"os"
	"time"
	"unicode/utf16"

	"github.com/cauldron-dr/cauldron/internal/atomicfile"
)

// Windows' limits on subkey leaves (CmpMaxIndexPerHblock): a leaf that would reach 1013 entries
// is split in two, under an ri index.
const maxLeafEntries = 1012

// fullBigDataSegments makes every big-data segment a full 16344-byte cell, as offreg.dll does;
// only a test turns it off, to show what hivex makes of tightly sized segments.
var fullBigDataSegments = true

// now is the clock for key timestamps; tests may pin it.
var now = time.Now

// ErrDirty is returned when editing a hive whose logs have not been replayed.
var ErrDirty = errors.New("regf: the hive is dirty (its sequence numbers differ): its transaction logs hold changes the file lacks; replay them first")

func (h *Hive) editable() error {
	if h.Dirty() {
		return ErrDirty
	}
	if h.truncated {
		return errors.New("regf: the hive file is truncated; refusing to edit it")
	}
	if !h.editChecked {
		// The editor trusts what it reads (offsets, sizes, the sk ring) once the checker has
		// passed; a hive that breaks the rules is refused rather than made worse.
		if p := h.Check(); len(p) > 0 {
			return fmt.Errorf("regf: the hive breaks Windows' rules, refusing to edit it: %v (and %d more)", p[0], len(p)-1)
		}
		h.editChecked = true
	}
	return nil
}

// touch updates the header fields that edits change, so that Check sees a consistent hive even
// before Save.
func (h *Hive) touch() {
	put32(h.buf[40:], h.binsEnd)
	put32(h.buf[508:], baseChecksum(h.buf))
}

func (h *Hive) stamp(off uint32) { put64(h.payload(off)[nkTime:], toFiletime(now())) }

// leafKind is the leaf type Windows writes for the hive's version.
func (h *Hive) leafKind() string {
	switch m := h.minor(); {
	case m >= 5:
		return "lh"
	case m >= 3:
		return "lf"
	}
	return "li"
}

func (h *Hive) nameOf(nk uint32) []uint16 {
	p := h.payload(nk)
	n := int(le16(p[nkNameLen:]))
	return decodeName(p[nkName:nkName+n], le16(p[nkFlags:])&keyCompName != 0)
}

type ent struct{ off, hash uint32 }

func (h *Hive) readLeaf(off uint32) (string, []ent) {
	p := h.payload(off)
	kind, n := string(p[0:2]), int(le16(p[2:]))
	out := make([]ent, n)
	for i := range out {
		if kind == "li" || kind == "ri" {
			out[i] = ent{le32(p[4+4*i:]), 0}
		} else {
			out[i] = ent{le32(p[4+8*i:]), le32(p[8+8*i:])}
		}
	}
	return kind, out
}

// writeLeaf stores entries as a new leaf of the hive's leaf type. Hashes are recomputed when the
// entries come from a leaf of another type.
func (h *Hive) writeLeaf(ents []ent, from string) uint32 {
	kind := h.leafKind()
	w := 8
	if kind == "li" {
		w = 4
	}
	b := make([]byte, 4+w*len(ents))
	copy(b, kind)
	put16(b[2:], uint16(len(ents)))
	for i, e := range ents {
		if kind == "li" {
			put32(b[4+4*i:], e.off)
			continue
		}
		hash := e.hash
		if from != kind {
			if kind == "lh" {
				hash = lhHash(h.nameOf(e.off))
			} else {
				hash = lfHint(h.nameOf(e.off))
			}
		}
		put32(b[4+8*i:], e.off)
		put32(b[8+8*i:], hash)
	}
	return h.newCell(b)
}

func (h *Hive) writeRI(leaves []uint32) uint32 {
	b := make([]byte, 4+4*len(leaves))
	copy(b, "ri")
	put16(b[2:], uint16(len(leaves)))
	for i, l := range leaves {
		put32(b[4+4*i:], l)
	}
	return h.newCell(b)
}

// cmpKey compares an nk's name with an upper-cased name.
func (h *Hive) cmpKey(nk uint32, up []uint16) int {
	return compareUnits(upcaseUnits(h.nameOf(nk)), up)
}

// search returns the position of up in a sorted leaf and whether it is there.
func (h *Hive) search(ents []ent, up []uint16) (int, bool) {
	lo, hi := 0, len(ents)
	for lo < hi {
		m := (lo + hi) / 2
		switch c := h.cmpKey(ents[m].off, up); {
		case c == 0:
			return m, true
		case c < 0:
			lo = m + 1
		default:
			hi = m
		}
	}
	return lo, false
}

func (h *Hive) hashFor(name []uint16) uint32 {
	switch h.leafKind() {
	case "lh":
		return lhHash(name)
	case "lf":
		return lfHint(name)
	}
	return 0
}

// insertSubkey adds child (named name) to parent's subkey list, keeping it sorted and splitting
// leaves at Windows' limit.
func (h *Hive) insertSubkey(parent, child uint32, name []uint16) {
	up := upcaseUnits(name)
	e := ent{child, h.hashFor(name)}
	pp := h.payload(parent)
	count, list := le32(pp[nkSubCount:]), le32(pp[nkSubList:])
	var newList uint32
	if count == 0 {
		// No subkeys: the list pointer means nothing (Windows leaves -1; a damaged hive may hold
		// anything there), so nothing is freed.
		newList = h.writeLeaf([]ent{e}, h.leafKind())
	} else if kind, top := h.readLeaf(list); kind != "ri" {
		ents := insertAt(top, e, h, up)
		if len(ents) > maxLeafEntries {
			half := len(ents) / 2
			l1 := h.writeLeaf(ents[:half], kind)
			l2 := h.writeLeaf(ents[half:], kind)
			newList = h.writeRI([]uint32{l1, l2})
		} else {
			newList = h.writeLeaf(ents, kind)
		}
		h.freeCell(list)
	} else {
		leaves := make([]uint32, len(top))
		for i, t := range top {
			leaves[i] = t.off
		}
		// The entry goes into the first leaf whose last name sorts after it, else the last.
		li := len(leaves) - 1
		for i, l := range leaves {
			_, le := h.readLeaf(l)
			if len(le) > 0 && h.cmpKey(le[len(le)-1].off, up) > 0 {
				li = i
				break
			}
		}
		lk, le := h.readLeaf(leaves[li])
		ents := insertAt(le, e, h, up)
		var repl []uint32
		if len(ents) > maxLeafEntries {
			half := len(ents) / 2
			repl = []uint32{h.writeLeaf(ents[:half], lk), h.writeLeaf(ents[half:], lk)}
		} else {
			repl = []uint32{h.writeLeaf(ents, lk)}
		}
		h.freeCell(leaves[li])
		nl := append(append(append([]uint32{}, leaves[:li]...), repl...), leaves[li+1:]...)
		newList = h.writeRI(nl)
		h.freeCell(list)
	}
	pp = h.payload(parent)
	put32(pp[nkSubCount:], count+1)
	put32(pp[nkSubList:], newList)
	if m := uint32(2 * len(name)); m > le32(pp[nkMaxName:])&0xFFFF {
		// The upper half of this field holds flags in recent Windows versions: keep them.
		put32(pp[nkMaxName:], le32(pp[nkMaxName:])&0xFFFF0000|m)
	}
	h.stamp(parent)
}

func insertAt(ents []ent, e ent, h *Hive, up []uint16) []ent {
	i, _ := h.search(ents, up)
	out := make([]ent, 0, len(ents)+1)
	out = append(out, ents[:i]...)
	out = append(out, e)
	return append(out, ents[i:]...)
}

// removeSubkey takes child out of parent's subkey list.
func (h *Hive) removeSubkey(parent, child uint32) {
	pp := h.payload(parent)
	count, list := le32(pp[nkSubCount:]), le32(pp[nkSubList:])
	kind, top := h.readLeaf(list)
	drop := func(ents []ent) []ent {
		out := ents[:0:0]
		for _, e := range ents {
			if e.off != child {
				out = append(out, e)
			}
		}
		return out
	}
	newList := uint32(noCell)
	if kind != "ri" {
		if ents := drop(top); len(ents) > 0 {
			newList = h.writeLeaf(ents, kind)
		}
	} else {
		var leaves []uint32
		for _, t := range top {
			lk, le := h.readLeaf(t.off)
			ne := drop(le)
			switch {
			case len(ne) == len(le):
				leaves = append(leaves, t.off)
			case len(ne) > 0:
				leaves = append(leaves, h.writeLeaf(ne, lk))
				h.freeCell(t.off)
			default:
				h.freeCell(t.off)
			}
		}
		if len(leaves) > 0 {
			newList = h.writeRI(leaves)
		}
	}
	h.freeCell(list)
	pp = h.payload(parent)
	put32(pp[nkSubCount:], count-1)
	put32(pp[nkSubList:], newList)
	h.stamp(parent)
}

// encodeName returns the stored form of a name: Latin-1 bytes (compressed) when every UTF-16 unit
// fits in a byte, as Windows does, else UTF-16LE.
func encodeName(u []uint16) ([]byte, bool) {
	comp := true
	for _, c := range u {
		if c > 0xFF {
			comp = false
		}
	}
	if comp {
		b := make([]byte, len(u))
		for i, c := range u {
			b[i] = byte(c)
		}
		return b, true
	}
	return utf16Bytes(u), false
}

func checkName(name string, what string) ([]uint16, error) {
	u := utf16.Encode([]rune(name))
	if len(u) > 255 && what == "key" {
		return nil, fmt.Errorf("regf: key name %q is longer than 255 characters", name)
	}
	if len(u) > 16383 {
		return nil, fmt.Errorf("regf: value name %q is longer than 16383 characters", name)
	}
	for _, c := range u {
		if c == '\\' && what == "key" {
			return nil, fmt.Errorf("regf: key name %q contains a backslash", name)
		}
	}
	if what == "key" && len(u) == 0 {
		return nil, errors.New("regf: empty key name")
	}
	return u, nil
}

// CreateKey returns the key at path, creating it and any missing parents.
func (h *Hive) CreateKey(path string) (Key, error) {
	if err := h.editable(); err != nil {
		return Key{}, err
	}
	k := h.Root()
	for _, part := range splitPath(path) {
		s, ok, err := k.Subkey(part)
		if err != nil {
			return Key{}, err
		}
		if !ok {
			u, err := checkName(part, "key")
			if err != nil {
				return Key{}, err
			}
			s = Key{h, h.newKey(k.off, u)}
		}
		k = s
	}
	h.touch()
	return k, nil
}

func (h *Hive) newKey(parent uint32, name []uint16) uint32 {
	nb, comp := encodeName(name)
	b := make([]byte, nkName+len(nb))
	copy(b, "nk")
	var flags uint16
	if comp {
		flags |= keyCompName
	}
	put16(b[nkFlags:], flags)
	put64(b[nkTime:], toFiletime(now()))
	put32(b[nkParent:], parent)
	for _, f := range []int{nkSubList, nkSubList + 4, nkValList, nkClass} {
		put32(b[f:], noCell)
	}
	// A new key shares its parent's security descriptor, as Windows does when no other is given.
	sk := le32(h.payload(parent)[nkSecurity:])
	put32(b[nkSecurity:], sk)
	put16(b[nkNameLen:], uint16(len(nb)))
	copy(b[nkName:], nb)
	off := h.newCell(b)
	skp := h.payload(sk)
	put32(skp[12:], le32(skp[12:])+1)
	h.insertSubkey(parent, off, name)
	return off
}

// DeleteKey deletes the key at path and everything below it. The root cannot be deleted.
func (h *Hive) DeleteKey(path string) error {
	if err := h.editable(); err != nil {
		return err
	}
	k, err := h.Lookup(path)
	if err != nil {
		return err
	}
	if k.off == h.rootOffset() {
		return errors.New("regf: refusing to delete the root key")
	}
	if err := h.validateTree(k); err != nil {
		return err
	}
	parent := le32(h.payload(k.off)[nkParent:])
	h.removeSubkey(parent, k.off)
	h.freeTree(k.off)
	h.touch()
	return nil
}

// validateTree reads everything below k first, so that a damaged subtree is refused before any
// cell is freed.
func (h *Hive) validateTree(k Key) error {
	vals, err := k.Values()
	if err != nil {
		return err
	}
	for _, v := range vals {
		if _, err := v.Data(); err != nil {
			return err
		}
	}
	if _, err := h.sk(le32(k.raw()[nkSecurity:])); err != nil {
		return err
	}
	subs, err := k.Subkeys()
	if err != nil {
		return err
	}
	for _, s := range subs {
		if err := h.validateTree(s); err != nil {
			return err
		}
	}
	return nil
}

func (h *Hive) freeTree(off uint32) {
	p := h.payload(off)
	if le32(p[nkSubCount:]) > 0 {
		list := le32(p[nkSubList:])
		kind, top := h.readLeaf(list)
		var kids []ent
		if kind == "ri" {
			for _, t := range top {
				_, le := h.readLeaf(t.off)
				kids = append(kids, le...)
				h.freeCell(t.off)
			}
		} else {
			kids = top
		}
		h.freeCell(list)
		for _, c := range kids {
			h.freeTree(c.off)
		}
	}
	p = h.payload(off)
	if n := le32(p[nkValCount:]); n > 0 {
		vl := le32(p[nkValList:])
		for i := uint32(0); i < n; i++ {
			h.freeValue(le32(h.payload(vl)[4*i:]))
		}
		h.freeCell(vl)
	}
	p = h.payload(off)
	h.freeCell(le32(p[nkClass:]))
	h.releaseSK(le32(p[nkSecurity:]))
	h.freeCell(off)
}

// releaseSK drops one reference; an sk nobody uses leaves the ring and is freed.
func (h *Hive) releaseSK(sk uint32) {
	p := h.payload(sk)
	refs := le32(p[12:]) - 1
	put32(p[12:], refs)
	if refs > 0 {
		return
	}
	flink, blink := le32(p[4:]), le32(p[8:])
	put32(h.payload(blink)[4:], flink)
	put32(h.payload(flink)[8:], blink)
	h.freeCell(sk)
}

func (h *Hive) freeData(vk uint32) {
	p := h.payload(vk)
	size, off := le32(p[vkDataSize:]), le32(p[vkDataOff:])
	if size&dataInlineBit != 0 || size == 0 {
		return
	}
	dp := h.payload(off)
	if h.minor() >= 4 && size > bigDataSegment && string(dp[0:2]) == "db" {
		n, sl := int(le16(dp[2:])), le32(dp[4:])
		for i := 0; i < n; i++ {
			h.freeCell(le32(h.payload(sl)[4*i:]))
		}
		h.freeCell(sl)
	}
	h.freeCell(off)
}

func (h *Hive) freeValue(vk uint32) {
	h.freeData(vk)
	h.freeCell(vk)
}

// storeData writes value data as Windows does: up to 4 bytes inside the vk, big data (db) over
// 16344 bytes in 1.4+ hives, else one cell. It returns the vk's size and offset fields.
func (h *Hive) storeData(data []byte) (uint32, uint32) {
	if len(data) <= 4 {
		var b [4]byte
		copy(b[:], data)
		return uint32(len(data)) | dataInlineBit, le32(b[:])
	}
	if h.minor() >= 4 && len(data) > bigDataSegment {
		var segs []uint32
		for i := 0; i < len(data); i += bigDataSegment {
			seg := data[i:min(i+bigDataSegment, len(data))]
			if fullBigDataSegments {
				// offreg.dll gives every segment, the last one too, a full 16344-byte cell, and
				// hivex relies on it: it reads (cell payload - 4) bytes from each segment, so a
				// tightly sized last segment loses bytes there (TestHivexTightBigDataSegment).
				seg = append(append([]byte{}, seg...), make([]byte, bigDataSegment-len(seg))...)
			}
			segs = append(segs, h.newCell(seg))
		}
		lb := make([]byte, 4*len(segs))
		for i, s := range segs {
			put32(lb[4*i:], s)
		}
		sl := h.newCell(lb)
		db := make([]byte, 8)
		copy(db, "db")
		put16(db[2:], uint16(len(segs)))
		put32(db[4:], sl)
		return uint32(len(data)), h.newCell(db)
	}
	return uint32(len(data)), h.newCell(data)
}

// SetValue sets (creating or replacing) a value of the key at path, creating the key if missing.
func (h *Hive) SetValue(path, name string, typ uint32, data []byte) error {
	if err := h.editable(); err != nil {
		return err
	}
	if len(data) > 0x7FFFFFFF-1 {
		return errors.New("regf: value data too large")
	}
	u, err := checkName(name, "value")
	if err != nil {
		return err
	}
	k, err := h.CreateKey(path)
	if err != nil {
		return err
	}
	v, ok, err := k.Value(name)
	if err != nil {
		return err
	}
	if ok {
		if _, err := v.Data(); err != nil {
			return err
		}
		h.freeData(v.off)
	}
	size, doff := h.storeData(data)
	var vk uint32
	if ok {
		vk = v.off
	} else {
		nb, comp := encodeName(u)
		b := make([]byte, vkName+len(nb))
		copy(b, "vk")
		put16(b[vkNameLen:], uint16(len(nb)))
		if comp {
			put16(b[vkFlags:], vkCompName)
		}
		copy(b[vkName:], nb)
		vk = h.newCell(b)
		// Value lists are not sorted: Windows appends.
		kp := h.payload(k.off)
		n, old := le32(kp[nkValCount:]), le32(kp[nkValList:])
		lb := make([]byte, 4*(n+1))
		if n > 0 {
			copy(lb, h.payload(old)[:4*n])
		}
		put32(lb[4*n:], vk)
		nl := h.newCell(lb)
		if n > 0 {
			h.freeCell(old) // with no values the pointer means nothing; see insertSubkey
		}
		kp = h.payload(k.off)
		put32(kp[nkValCount:], n+1)
		put32(kp[nkValList:], nl)
	}
	vp := h.payload(vk)
	put32(vp[vkDataSize:], size)
	put32(vp[vkDataOff:], doff)
	put32(vp[vkType:], typ)
	kp := h.payload(k.off)
	if m := uint32(2 * len(u)); m > le32(kp[nkMaxValName:]) {
		put32(kp[nkMaxValName:], m)
	}
	if m := uint32(len(data)); m > le32(kp[nkMaxValData:]) {
		put32(kp[nkMaxValData:], m)
	}
	h.stamp(k.off)
	h.touch()
	return nil
}

// DeleteValue deletes a value of the key at path.
func (h *Hive) DeleteValue(path, name string) error {
	if err := h.editable(); err != nil {
		return err
	}
	k, err := h.Lookup(path)
	if err != nil {
		return err
	}
	v, ok, err := k.Value(name)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("regf: key %s has no value %q", path, name)
	}
	if _, err := v.Data(); err != nil {
		return err
	}
	kp := h.payload(k.off)
	n, list := le32(kp[nkValCount:]), le32(kp[nkValList:])
	var keep []byte
	lp := h.payload(list)
	for i := uint32(0); i < n; i++ {
		if o := le32(lp[4*i:]); o != v.off {
			keep = append(keep, lp[4*i:4*i+4]...)
		}
	}
	h.freeValue(v.off)
	nl := uint32(noCell)
	if len(keep) > 0 {
		nl = h.newCell(keep)
	}
	h.freeCell(list)
	kp = h.payload(k.off)
	put32(kp[nkValCount:], n-1)
	put32(kp[nkValList:], nl)
	h.stamp(k.off)
	h.touch()
	return nil
}

// Save writes the hive to path (its own path when empty) atomically: a temporary file in the same
// directory, fsync, rename over the old file, fsync of the directory. Both sequence numbers are
// set equal and above any seen, so Windows treats the file as clean, and the LOG1/LOG2 files
// beside it, whose entries are older than the new sequence number, are emptied.
func (h *Hive) Save(path string) error {
	if path == "" {
		path = h.path
	}
	if path == "" {
		return errors.New("regf: Save: no path")
	}
	if h.truncated {
		return errors.New("regf: refusing to save a truncated hive")
	}
	p, s := h.Sequence()
	seq := max(p, s, h.minSeq) + 1
	put32(h.buf[4:], seq)
	put32(h.buf[8:], seq)
	put64(h.buf[12:], toFiletime(now()))
	h.buf = h.buf[:baseBlockSize+h.binsEnd]
	h.touch()
	if err := atomicfile.Write(path, h.buf, nil); err != nil {
		return err
	}
	for _, ext := range []string{".LOG1", ".LOG2", ".LOG"} {
		if _, err := os.Stat(path + ext); err == nil {
			if err := os.Truncate(path+ext, 0); err != nil {
				return fmt.Errorf("regf: emptying %s: %w", path+ext, err)
			}
		}
	}
	h.path = path
	return nil
}
