package regf

import (
	"fmt"
)

// Problem is one broken invariant found by Check.
type Problem struct {
	Offset int64  // file offset of the offending structure
	Rule   string // what is wrong
}

func (p Problem) String() string { return fmt.Sprintf("%#x: %s", p.Offset, p.Rule) }

type checker struct {
	h        *Hive
	probs    []Problem
	cells    map[uint32]uint32 // allocated cell offset -> size
	skRefs   map[uint32]uint32 // sk offset -> number of keys using it
	visited  map[uint32]bool
	maxProbs int
}

func (c *checker) add(cell uint32, format string, args ...any) {
	if len(c.probs) < c.maxProbs {
		c.probs = append(c.probs, Problem{int64(cell) + baseBlockSize, fmt.Sprintf(format, args...)})
	}
}

func (c *checker) addErr(err error) {
	if fe, ok := err.(*FormatError); ok {
		if len(c.probs) < c.maxProbs {
			c.probs = append(c.probs, Problem{fe.Offset, fe.Rule})
		}
		return
	}
	c.add(0, "%v", err)
}

// cell checks that off is the start of an allocated cell and returns its payload.
func (c *checker) cell(off uint32, what string) ([]byte, bool) {
	if _, ok := c.cells[off]; !ok {
		if off == noCell {
			c.add(off, "%s: offset is -1 (none)", what)
		} else {
			c.add(off, "%s: %#x is not the start of an allocated cell", what, off)
		}
		return nil, false
	}
	p, err := c.h.cell(off)
	if err != nil {
		c.addErr(err)
		return nil, false
	}
	return p, true
}

// Check verifies the invariants Windows relies on (those ReactOS' cmcheck enforces and those
// its binary searches and hash compares assume) and returns what is broken; nil means the hive is
// a valid, clean hive.
func (h *Hive) Check() []Problem {
	c := &checker{h: h, cells: map[uint32]uint32{}, skRefs: map[uint32]uint32{}, visited: map[uint32]bool{}, maxProbs: 1000}
	b := h.buf
	if got, want := le32(b[508:]), baseChecksum(b); got != want {
		c.probs = append(c.probs, Problem{508, fmt.Sprintf("base block checksum %#x is not the XOR of the first 127 dwords (%#x)", got, want)})
	}
	if p, s := h.Sequence(); p != s {
		c.probs = append(c.probs, Problem{4, fmt.Sprintf("sequence numbers differ (%d, %d): the hive is dirty and its logs must be replayed", p, s)})
	}
	if h.truncated {
		c.probs = append(c.probs, Problem{int64(len(b)), fmt.Sprintf("file is truncated: the base block declares %#x bytes of hive bins, the file holds %#x", le32(b[40:]), len(b)-baseBlockSize)})
	} else if le32(b[40:]) != h.binsEnd {
		c.probs = append(c.probs, Problem{40, "hive bins data size does not match the hive bins"})
	}
	// Cells must tile each bin exactly.
	for _, bin := range h.bins {
		for off := bin.off + 32; off < bin.off+bin.size; {
			raw := int32(le32(b[baseBlockSize+off:]))
			size := uint32(raw)
			if raw < 0 {
				size = uint32(-int64(raw))
			}
			if size == 0 || size%8 != 0 {
				c.add(off, "cell size %d is not a non-zero multiple of 8", raw)
				break
			}
			if off+size > bin.off+bin.size || off+size < off {
				c.add(off, "cell of %d bytes crosses the end of its hive bin at %#x", size, bin.off+bin.size)
				break
			}
			if raw < 0 {
				c.cells[off] = size
			}
			off += size
		}
	}
	root := h.rootOffset()
	if rc, ok := c.cell(root, "root key"); ok {
		if len(rc) < nkName || string(rc[0:2]) != "nk" {
			c.add(root, "root cell is not an nk cell")
		} else {
			// The root's hive-entry flag (0x4) is not required: Microsoft's own offreg.dll
			// writes roots without it (corpus nt-hive-testhive).
			c.walk(root)
			c.checkSecurity(le32(rc[nkSecurity:]))
		}
	}
	h.orderChecked = len(c.probs) == 0
	return c.probs
}

// walk checks the tree below root iteratively (hives can be deep; recursion is fine in Go but an
// explicit stack keeps cycles and depth under control).
func (c *checker) walk(root uint32) {
	type item struct{ off, parent uint32 }
	stack := []item{{root, noCell}}
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if c.visited[it.off] {
			c.add(it.off, "key is reachable twice (a loop or a key listed under two parents)")
			continue
		}
		c.visited[it.off] = true
		kids := c.key(it.off, it.parent)
		for i := len(kids) - 1; i >= 0; i-- {
			stack = append(stack, item{kids[i], it.off})
		}
	}
}

// key checks one nk cell and returns its subkeys' offsets.
func (c *checker) key(off, parent uint32) []uint32 {
	p, ok := c.cell(off, "key")
	if !ok {
		return nil
	}
	if len(p) < nkName || string(p[0:2]) != "nk" {
		c.add(off, "key cell does not start with \"nk\"")
		return nil
	}
	flags := le16(p[nkFlags:])
	nameLen := int(le16(p[nkNameLen:]))
	if nkName+nameLen > len(p) {
		c.add(off, "key name of %d bytes runs past its cell", nameLen)
		return nil
	}
	name := decodeName(p[nkName:nkName+nameLen], flags&keyCompName != 0)
	if parent != noCell {
		if got := le32(p[nkParent:]); got != parent {
			c.add(off+4+nkParent, "parent link %#x is not the key that lists it (%#x)", got, parent)
		}
		if len(name) == 0 {
			c.add(off, "key name is empty")
		}
	}
	if flags&keyCompName == 0 && nameLen%2 != 0 {
		c.add(off, "UTF-16 key name has an odd length %d", nameLen)
	}
	if len(name) > 255 {
		c.add(off, "key name of %d characters is longer than 255", len(name))
	}
	// Security.
	sk := le32(p[nkSecurity:])
	if _, ok := c.cell(sk, "key's security cell"); ok {
		c.skRefs[sk]++
	}
	// Class.
	if cl, n := le32(p[nkClass:]), le16(p[nkClassLen:]); cl != noCell {
		if cc, ok := c.cell(cl, "class name"); ok && int(n) > len(cc) {
			c.add(cl, "class name of %d bytes is longer than its cell", n)
		}
	}
	var maxName, maxClass, maxVName, maxVData uint32
	// Subkeys.
	var kids []uint32
	count := le32(p[nkSubCount:])
	if count > 0 {
		entries := c.list(le32(p[nkSubList:]))
		if uint32(len(entries)) != count {
			c.add(off+4+nkSubCount, "key says it has %d subkeys, its list holds %d", count, len(entries))
		}
		var prev []uint16
		for i, e := range entries {
			kp, ok := c.cell(e.off, "subkey")
			if !ok {
				continue
			}
			if len(kp) < nkName || string(kp[0:2]) != "nk" {
				c.add(e.off, "subkey cell does not start with \"nk\"")
				continue
			}
			kn := int(le16(kp[nkNameLen:]))
			if nkName+kn > len(kp) {
				c.add(e.off, "key name runs past its cell")
				continue
			}
			kname := decodeName(kp[nkName:nkName+kn], le16(kp[nkFlags:])&keyCompName != 0)
			up := upcaseUnits(kname)
			if i > 0 {
				switch cmp := compareUnits(prev, up); {
				case cmp == 0:
					c.add(e.off, "subkey %q appears twice in its parent's list", unitsString(kname))
				case cmp > 0:
					c.add(e.leaf, "subkey list is not sorted by upper-cased UTF-16 name: %q comes after %q", unitsString(kname), unitsString(prev))
				}
			}
			prev = up
			switch e.kind {
			case "lh":
				if want := lhHash(kname); e.hash != want {
					c.add(e.leaf, "lh hash %#x of %q is not %#x", e.hash, unitsString(kname), want)
				}
			case "lf":
				if want := lfHint(kname); e.hash != want && e.hash != 0 {
					c.add(e.leaf, "lf hint %#x of %q is not %#x", e.hash, unitsString(kname), want)
				}
			}
			maxName = max(maxName, uint32(2*len(kname)))
			maxClass = max(maxClass, uint32(le16(kp[nkClassLen:])))
			kids = append(kids, e.off)
		}
	}
	// Values.
	vcount := le32(p[nkValCount:])
	if vcount > 0 {
		vl := le32(p[nkValList:])
		if lc, ok := c.cell(vl, "value list"); ok {
			if uint64(vcount)*4 > uint64(len(lc)) {
				c.add(vl, "value list of %d entries runs past its %d-byte cell", vcount, len(lc))
			} else {
				seen := map[string]bool{}
				for i := uint32(0); i < vcount; i++ {
					vo := le32(lc[4*i:])
					vn, vd := c.value(vo)
					if vn == nil {
						continue
					}
					k := string(utf16Bytes(upcaseUnits(vn)))
					if seen[k] {
						c.add(vo, "value %q appears twice in its key", unitsString(vn))
					}
					seen[k] = true
					maxVName = max(maxVName, uint32(2*len(vn)))
					maxVData = max(maxVData, vd)
				}
			}
		}
	}
	// The max-length fields may be larger than needed (Windows does not shrink them on
	// deletion) but never smaller: Windows sizes its query buffers from them.
	if got := le32(p[nkMaxName:]) & 0xFFFF; got < maxName {
		c.add(off+4+nkMaxName, "largest subkey name length %d is less than %d", got, maxName)
	}
	if got := le32(p[nkMaxClass:]); got < maxClass {
		c.add(off+4+nkMaxClass, "largest subkey class length %d is less than %d", got, maxClass)
	}
	if got := le32(p[nkMaxValName:]); got < maxVName {
		c.add(off+4+nkMaxValName, "largest value name length %d is less than %d", got, maxVName)
	}
	if got := le32(p[nkMaxValData:]); got < maxVData {
		c.add(off+4+nkMaxValData, "largest value data size %d is less than %d", got, maxVData)
	}
	return kids
}

// list flattens and checks a subkey list.
func (c *checker) list(off uint32) []listEntry {
	p, ok := c.cell(off, "subkey list")
	if !ok || len(p) < 4 {
		return nil
	}
	sig := string(p[0:2])
	minor := c.h.minor()
	switch sig {
	case "ri":
		n := int(le16(p[2:]))
		if 4+4*n > len(p) {
			c.add(off, "ri list of %d entries runs past its cell", n)
			return nil
		}
		var out []listEntry
		for i := 0; i < n; i++ {
			lo := le32(p[4+4*i:])
			lp, ok := c.cell(lo, "ri entry")
			if !ok {
				continue
			}
			if len(lp) >= 2 && string(lp[0:2]) == "ri" {
				c.add(lo, "ri list points to another ri list")
				continue
			}
			if len(lp) >= 4 && le16(lp[2:]) == 0 {
				c.add(lo, "ri list points to an empty leaf")
			}
			out = append(out, c.list(lo)...)
		}
		return out
	case "lh":
		if minor < 5 {
			c.add(off, "lh leaf in a version 1.%d hive (lh needs 1.5)", minor)
		}
	case "lf":
		if minor < 3 {
			c.add(off, "lf leaf in a version 1.%d hive (lf needs 1.3)", minor)
		}
	case "li":
	default:
		c.add(off, "subkey list signature %q is none of li, lf, lh, ri", sig)
		return nil
	}
	e, err := c.h.subkeyOffsets(off, false)
	if err != nil {
		c.addErr(err)
		return nil
	}
	return e
}

// value checks a vk cell and returns its name and data size (nil name on failure).
func (c *checker) value(off uint32) ([]uint16, uint32) {
	p, ok := c.cell(off, "value")
	if !ok {
		return nil, 0
	}
	if len(p) < vkName || string(p[0:2]) != "vk" {
		c.add(off, "value cell does not start with \"vk\"")
		return nil, 0
	}
	nl := int(le16(p[vkNameLen:]))
	if vkName+nl > len(p) {
		c.add(off, "value name runs past its cell")
		return nil, 0
	}
	comp := le16(p[vkFlags:])&vkCompName != 0
	if !comp && nl%2 != 0 {
		c.add(off, "UTF-16 value name has an odd length %d", nl)
	}
	name := decodeName(p[vkName:vkName+nl], comp)
	size, doff := le32(p[vkDataSize:]), le32(p[vkDataOff:])
	if size&dataInlineBit != 0 {
		n := size &^ dataInlineBit
		if n > 4 {
			c.add(off, "inline data of %d bytes is more than 4", n)
		}
		return name, n
	}
	if size == 0 {
		return name, 0
	}
	dp, ok := c.cell(doff, "value data")
	if !ok {
		return name, size
	}
	if c.h.minor() >= 4 && size > bigDataSegment {
		if len(dp) < 8 || string(dp[0:2]) != "db" {
			// Windows reads data this long only through a db record in 1.4+ hives.
			c.add(doff, "value data of %d bytes (over %d) is not stored as big data (db)", size, bigDataSegment)
			return name, size
		}
		n := int(le16(dp[2:]))
		want := int((size + bigDataSegment - 1) / bigDataSegment)
		if n != want {
			c.add(doff, "big data of %d bytes has %d segments, not %d", size, n, want)
			return name, size
		}
		sl := le32(dp[4:])
		lp, ok := c.cell(sl, "big data segment list")
		if !ok {
			return name, size
		}
		if 4*n > len(lp) {
			c.add(sl, "big data segment list runs past its cell")
			return name, size
		}
		left := int(size)
		for i := 0; i < n; i++ {
			so := le32(lp[4*i:])
			sp, ok := c.cell(so, "big data segment")
			take := min(left, bigDataSegment)
			if ok && len(sp) < take {
				c.add(so, "big data segment of %d bytes is shorter than %d", len(sp), take)
			}
			left -= take
		}
		return name, size
	}
	if len(dp) >= 2 && string(dp[0:2]) == "db" && c.h.minor() < 4 && size > bigDataSegment {
		c.add(doff, "big data (db) in a version 1.%d hive (db needs 1.4)", c.h.minor())
	}
	if uint64(size) > uint64(len(dp)) {
		c.add(doff, "value data of %d bytes is longer than its %d-byte cell", size, len(dp))
	}
	return name, size
}

// checkSecurity walks the sk ring from the root's sk: every sk used by a key must be on it, each
// link must be mirrored, and each reference count must equal the number of keys using the sk.
func (c *checker) checkSecurity(first uint32) {
	if _, ok := c.skRefs[first]; !ok {
		return
	}
	ring := map[uint32]bool{}
	cur := first
	for {
		p, ok := c.cell(cur, "sk ring entry")
		if !ok {
			return
		}
		if len(p) < 20 || string(p[0:2]) != "sk" {
			c.add(cur, "sk ring entry does not start with \"sk\"")
			return
		}
		if n := le32(p[16:]); uint64(n)+20 > uint64(len(p)) {
			c.add(cur, "security descriptor of %d bytes runs past its cell", n)
		}
		ring[cur] = true
		next := le32(p[4:])
		np, ok := c.cell(next, "sk forward link")
		if !ok {
			return
		}
		if len(np) < 20 || le32(np[8:]) != cur {
			c.add(next, "sk back link does not point to the sk whose forward link leads here (%#x)", cur)
			return
		}
		if refs, used := c.skRefs[cur]; !used {
			c.add(cur, "sk on the ring is used by no key (reference count %d)", le32(p[12:]))
		} else if got := le32(p[12:]); got != refs {
			c.add(cur+4+12, "sk reference count %d is not the %d keys that use it", got, refs)
		}
		cur = next
		if cur == first {
			break
		}
		if ring[cur] || len(ring) > len(c.cells) {
			c.add(cur, "sk ring does not lead back to the root's sk")
			return
		}
	}
	for sk := range c.skRefs {
		if !ring[sk] {
			c.add(sk, "sk used by a key is not on the sk ring")
		}
	}
}

func utf16Bytes(u []uint16) []byte {
	b := make([]byte, 2*len(u))
	for i, x := range u {
		b[2*i], b[2*i+1] = byte(x), byte(x>>8)
	}
	return b
}
