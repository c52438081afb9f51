package regf

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf16"
)

// nk field offsets inside the cell payload.
const (
	nkFlags       = 2
	nkTime        = 4
	nkParent      = 16
	nkSubCount    = 20
	nkVolCount    = 24
	nkSubList     = 28
	nkValCount    = 36
	nkValList     = 40
	nkSecurity    = 44
	nkClass       = 48
	nkMaxName     = 52
	nkMaxClass    = 56
	nkMaxValName  = 60
	nkMaxValData  = 64
	nkNameLen     = 72
	nkClassLen    = 74
	nkName        = 76
	vkNameLen     = 2
	vkDataSize    = 4
	vkDataOff     = 8
	vkType        = 12
	vkFlags       = 16
	vkName        = 20
	vkCompName    = 0x0001
	dataInlineBit = 0x80000000
)

// Key is a key (nk cell) of a hive.
type Key struct {
	h   *Hive
	off uint32
}

// Value is a value (vk cell) of a hive.
type Value struct {
	h   *Hive
	off uint32
}

func (h *Hive) nk(off uint32) ([]byte, error) {
	c, err := h.cell(off)
	if err != nil {
		return nil, err
	}
	if len(c) < nkName || string(c[0:2]) != "nk" {
		return nil, cellErr(off, "key cell does not start with \"nk\" or is shorter than an nk header")
	}
	if n := int(le16(c[nkNameLen:])); nkName+n > len(c) {
		return nil, cellErr(off, "key name of %d bytes runs past its %d-byte cell", n, len(c))
	}
	return c, nil
}

func (h *Hive) vk(off uint32) ([]byte, error) {
	c, err := h.cell(off)
	if err != nil {
		return nil, err
	}
	if len(c) < vkName || string(c[0:2]) != "vk" {
		return nil, cellErr(off, "value cell does not start with \"vk\" or is shorter than a vk header")
	}
	if n := int(le16(c[vkNameLen:])); vkName+n > len(c) {
		return nil, cellErr(off, "value name of %d bytes runs past its %d-byte cell", n, len(c))
	}
	return c, nil
}

// Root returns the hive's root key.
func (h *Hive) Root() Key { return Key{h, h.rootOffset()} }

// Offset returns the key's cell offset.
func (k Key) Offset() uint32 { return k.off }

func (k Key) raw() []byte {
	c, err := k.h.nk(k.off)
	if err != nil {
		// Keys are only made from offsets that were checked when read; an edit that broke one
		// would be a bug in this package.
		panic(err)
	}
	return c
}

// Name returns the key's name.
func (k Key) Name() string { return unitsString(k.nameUnits()) }

func (k Key) nameUnits() []uint16 {
	c := k.raw()
	n := int(le16(c[nkNameLen:]))
	return decodeName(c[nkName:nkName+n], le16(c[nkFlags:])&keyCompName != 0)
}

// Timestamp returns the key's last-written time.
func (k Key) Timestamp() time.Time { return filetime(le64(k.raw()[nkTime:])) }

// Flags returns the nk flags.
func (k Key) Flags() uint16 { return le16(k.raw()[nkFlags:]) }

// Parent returns the key's parent (the root's parent field points outside the tree).
func (k Key) Parent() (Key, error) {
	p := le32(k.raw()[nkParent:])
	if _, err := k.h.nk(p); err != nil {
		return Key{}, err
	}
	return Key{k.h, p}, nil
}

// Class returns the key's class name ("" when it has none).
func (k Key) Class() (string, error) {
	c := k.raw()
	off, n := le32(c[nkClass:]), int(le16(c[nkClassLen:]))
	if off == noCell || n == 0 {
		return "", nil
	}
	cc, err := k.h.cell(off)
	if err != nil {
		return "", err
	}
	if n > len(cc) {
		return "", cellErr(off, "class name of %d bytes is longer than its %d-byte cell", n, len(cc))
	}
	return unitsString(decodeName(cc[:n], false)), nil
}

// SecurityDescriptor returns the self-relative security descriptor of the key's sk cell.
func (k Key) SecurityDescriptor() ([]byte, error) {
	off := le32(k.raw()[nkSecurity:])
	c, err := k.h.sk(off)
	if err != nil {
		return nil, err
	}
	return c[20 : 20+le32(c[16:])], nil
}

func (h *Hive) sk(off uint32) ([]byte, error) {
	c, err := h.cell(off)
	if err != nil {
		return nil, err
	}
	if len(c) < 20 || string(c[0:2]) != "sk" {
		return nil, cellErr(off, "security cell does not start with \"sk\"")
	}
	if n := le32(c[16:]); uint64(n)+20 > uint64(len(c)) {
		return nil, cellErr(off, "security descriptor of %d bytes runs past its %d-byte cell", n, len(c))
	}
	return c, nil
}

// Subkeys returns the key's subkeys in the order of its subkey list (Windows keeps it sorted).
func (k Key) Subkeys() ([]Key, error) {
	c := k.raw()
	n, list := le32(c[nkSubCount:]), le32(c[nkSubList:])
	if n == 0 {
		return nil, nil
	}
	offs, err := k.h.subkeyOffsets(list, true)
	if err != nil {
		return nil, err
	}
	if uint32(len(offs)) != n {
		return nil, cellErr(k.off, "key says it has %d subkeys, its list holds %d", n, len(offs))
	}
	keys := make([]Key, len(offs))
	for i, o := range offs {
		if _, err := k.h.nk(o.off); err != nil {
			return nil, err
		}
		keys[i] = Key{k.h, o.off}
	}
	return keys, nil
}

type listEntry struct {
	off, hash uint32
	leaf      uint32 // the leaf cell holding the entry
	kind      string // leaf type
}

// subkeyOffsets flattens a subkey list (li/lf/lh, or ri of those).
func (h *Hive) subkeyOffsets(list uint32, allowRI bool) ([]listEntry, error) {
	c, err := h.cell(list)
	if err != nil {
		return nil, err
	}
	if len(c) < 4 {
		return nil, cellErr(list, "subkey list cell is shorter than its header")
	}
	sig := string(c[0:2])
	n := int(le16(c[2:]))
	var out []listEntry
	switch sig {
	case "li", "ri":
		if 4+4*n > len(c) {
			return nil, cellErr(list, "%s list of %d entries runs past its %d-byte cell", sig, n, len(c))
		}
		for i := 0; i < n; i++ {
			o := le32(c[4+4*i:])
			if sig == "li" {
				out = append(out, listEntry{off: o, leaf: list, kind: sig})
				continue
			}
			if !allowRI {
				return nil, cellErr(list, "an ri list points to another ri list")
			}
			sub, err := h.subkeyOffsets(o, false)
			if err != nil {
				return nil, err
			}
			out = append(out, sub...)
		}
	case "lf", "lh":
		if 4+8*n > len(c) {
			return nil, cellErr(list, "%s list of %d entries runs past its %d-byte cell", sig, n, len(c))
		}
		for i := 0; i < n; i++ {
			out = append(out, listEntry{off: le32(c[4+8*i:]), hash: le32(c[8+8*i:]), leaf: list, kind: sig})
		}
	default:
		return nil, cellErr(list, "subkey list signature %q is none of li, lf, lh, ri", sig)
	}
	return out, nil
}

// Subkey returns the subkey with the given name, compared as Windows does (upper-cased UTF-16
// units), or ok=false.
func (k Key) Subkey(name string) (Key, bool, error) {
	c := k.raw()
	if le32(c[nkSubCount:]) == 0 {
		return Key{}, false, nil
	}
	offs, err := k.h.subkeyOffsets(le32(c[nkSubList:]), true)
	if err != nil {
		return Key{}, false, err
	}
	for _, o := range offs {
		if _, err := k.h.nk(o.off); err != nil {
			return Key{}, false, err
		}
	}
	want := upcaseUnits(utf16.Encode([]rune(name)))
	// Windows binary-searches the sorted list; so do we. When the hive has not been checked, a
	// miss falls back to a linear scan, so that hives whose lists are out of order (Check
	// reports those) still read.
	lo, hi := 0, len(offs)
	for lo < hi {
		m := (lo + hi) / 2
		switch c := k.h.cmpKey(offs[m].off, want); {
		case c == 0:
			return Key{k.h, offs[m].off}, true, nil
		case c < 0:
			lo = m + 1
		default:
			hi = m
		}
	}
	if k.h.orderChecked {
		return Key{}, false, nil
	}
	for _, o := range offs {
		if k.h.cmpKey(o.off, want) == 0 {
			return Key{k.h, o.off}, true, nil
		}
	}
	return Key{}, false, nil
}

// Lookup finds a key by a backslash-separated path from the root ("" or "\" is the root).
func (h *Hive) Lookup(path string) (Key, error) {
	k := h.Root()
	for _, part := range splitPath(path) {
		s, ok, err := k.Subkey(part)
		if err != nil {
			return Key{}, err
		}
		if !ok {
			return Key{}, &NotFoundError{Path: path, Missing: part}
		}
		k = s
	}
	return k, nil
}

// ErrNotFound matches (errors.Is) every error saying that a key does not exist.
var ErrNotFound = errors.New("regf: not found")

// NotFoundError says which key of a path is missing.
type NotFoundError struct{ Path, Missing string }

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("regf: key %q not found (no subkey %q)", e.Path, e.Missing)
}

// Is makes errors.Is(err, ErrNotFound) true.
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

func splitPath(path string) []string {
	var parts []string
	for _, p := range strings.Split(path, `\`) {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return parts
}

// Path returns the key's full path from the root, starting with a backslash.
func (k Key) Path() string {
	var parts []string
	cur := k
	for cur.off != cur.h.rootOffset() {
		parts = append(parts, cur.Name())
		p, err := cur.Parent()
		if err != nil || len(parts) > 512 {
			break
		}
		cur = p
	}
	var b strings.Builder
	for i := len(parts) - 1; i >= 0; i-- {
		b.WriteString(`\`)
		b.WriteString(parts[i])
	}
	if b.Len() == 0 {
		return `\`
	}
	return b.String()
}

// Values returns the key's values in the order of its value list.
func (k Key) Values() ([]Value, error) {
	c := k.raw()
	n, list := le32(c[nkValCount:]), le32(c[nkValList:])
	if n == 0 {
		return nil, nil
	}
	lc, err := k.h.cell(list)
	if err != nil {
		return nil, err
	}
	if uint64(n)*4 > uint64(len(lc)) {
		return nil, cellErr(list, "value list of %d entries runs past its %d-byte cell", n, len(lc))
	}
	vals := make([]Value, n)
	for i := range vals {
		o := le32(lc[4*i:])
		if _, err := k.h.vk(o); err != nil {
			return nil, err
		}
		vals[i] = Value{k.h, o}
	}
	return vals, nil
}

// Value returns the value with the given name ("" is the default value), compared
// case-insensitively as Windows does.
func (k Key) Value(name string) (Value, bool, error) {
	vals, err := k.Values()
	if err != nil {
		return Value{}, false, err
	}
	want := upcaseUnits(utf16.Encode([]rune(name)))
	for _, v := range vals {
		if compareUnits(upcaseUnits(v.nameUnits()), want) == 0 {
			return v, true, nil
		}
	}
	return Value{}, false, nil
}

func (v Value) raw() []byte {
	c, err := v.h.vk(v.off)
	if err != nil {
		panic(err)
	}
	return c
}

// Name returns the value's name ("" for the default value).
func (v Value) Name() string { return unitsString(v.nameUnits()) }

func (v Value) nameUnits() []uint16 {
	c := v.raw()
	n := int(le16(c[vkNameLen:]))
	return decodeName(c[vkName:vkName+n], le16(c[vkFlags:])&vkCompName != 0)
}

// Type returns the value's type (RegSz, RegDword, …).
func (v Value) Type() uint32 { return le32(v.raw()[vkType:]) }

// Offset returns the value's cell offset.
func (v Value) Offset() uint32 { return v.off }

// Data returns the value's data, reassembling big data.
func (v Value) Data() ([]byte, error) {
	c := v.raw()
	size, off := le32(c[vkDataSize:]), le32(c[vkDataOff:])
	if size&dataInlineBit != 0 {
		n := size &^ dataInlineBit
		if n > 4 {
			return nil, cellErr(v.off, "inline data of %d bytes is more than the 4 the offset field holds", n)
		}
		return append([]byte(nil), c[vkDataOff:vkDataOff+n]...), nil
	}
	if size == 0 {
		return []byte{}, nil
	}
	dc, err := v.h.cell(off)
	if err != nil {
		return nil, err
	}
	if v.h.minor() >= 4 && size > bigDataSegment && len(dc) >= 8 && string(dc[0:2]) == "db" {
		return v.h.bigData(off, dc, size)
	}
	if uint64(size) > uint64(len(dc)) {
		return nil, cellErr(off, "value data of %d bytes is longer than its %d-byte cell", size, len(dc))
	}
	return append([]byte(nil), dc[:size]...), nil
}

func (h *Hive) bigData(off uint32, db []byte, size uint32) ([]byte, error) {
	n := int(le16(db[2:]))
	want := int((size + bigDataSegment - 1) / bigDataSegment)
	if n != want {
		return nil, cellErr(off, "big data of %d bytes has %d segments, not %d", size, n, want)
	}
	lc, err := h.cell(le32(db[4:]))
	if err != nil {
		return nil, err
	}
	if 4*n > len(lc) {
		return nil, cellErr(le32(db[4:]), "big data segment list of %d entries runs past its cell", n)
	}
	// The size comes from the file: never trust it for an allocation larger than the hive.
	out := make([]byte, 0, min(int(size), len(h.buf)))
	for i := 0; i < n; i++ {
		so := le32(lc[4*i:])
		sc, err := h.cell(so)
		if err != nil {
			return nil, err
		}
		take := min(int(size)-len(out), bigDataSegment)
		if take > len(sc) {
			return nil, cellErr(so, "big data segment of %d bytes is shorter than the %d it must hold", len(sc), take)
		}
		out = append(out, sc[:take]...)
	}
	return out, nil
}

// decodeName turns a stored name into UTF-16 units: compressed names are Latin-1 bytes.
func decodeName(b []byte, compressed bool) []uint16 {
	if compressed {
		u := make([]uint16, len(b))
		for i, c := range b {
			u[i] = uint16(c)
		}
		return u
	}
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = le16(b[2*i:])
	}
	return u
}

func unitsString(u []uint16) string { return string(utf16.Decode(u)) }

// upcase is Windows' RtlUpcaseUnicodeChar approximated with Unicode simple upper-casing, unit by
// unit: Windows upper-cases each UTF-16 unit on its own (surrogates stay as they are) and never
// maps one unit to several (ß stays ß). Windows' exact table (l_intl.nls) differs from Unicode for
// a few rare letters; names in real hives are ASCII, Latin-1 or common scripts, where both agree.
func upcase(u uint16) uint16 {
	switch {
	case u < 'a':
		return u
	case u <= 'z':
		return u - 32
	case u < 0x80 || (u >= 0xD800 && u < 0xE000):
		return u
	}
	r := unicode.ToUpper(rune(u))
	// Windows' table maps one unit to one unit and never folds a non-ASCII letter into ASCII
	// (ı and ſ stay as they are, where Unicode gives I and S).
	if r > 0xFFFF || r < 0x80 {
		return u
	}
	return uint16(r)
}

func upcaseUnits(u []uint16) []uint16 {
	out := make([]uint16, len(u))
	for i, c := range u {
		out[i] = upcase(c)
	}
	return out
}

// compareUnits orders two already upper-cased names as Windows' CmpCompareKeyName does: unit by
// unit, a prefix first.
func compareUnits(a, b []uint16) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	return len(a) - len(b)
}

// lhHash is the lh leaf hash: h = 37*h + upcase(unit) over the name's UTF-16 units.
func lhHash(name []uint16) uint32 {
	var h uint32
	for _, u := range name {
		h = 37*h + uint32(upcase(u))
	}
	return h
}

// lfHint is the lf leaf hint: the first four characters of the name as bytes, zero-padded.
// Names with a character above 0xFF in their first four store a zero hint (the spec's reading of
// Windows' behaviour), so a reader cannot rely on the hint there.
func lfHint(name []uint16) uint32 {
	var b [4]byte
	for i := 0; i < 4 && i < len(name); i++ {
		if name[i] > 0xFF {
			return 0
		}
		b[i] = byte(name[i])
	}
	return le32(b[:])
}

func filetime(ft uint64) time.Time {
	if ft == 0 {
		return time.Time{}
	}
	const epochDiff = 116444736000000000 // 1601-01-01 to 1970-01-01 in 100 ns
	return time.Unix(0, 0).Add(time.Duration(int64(ft)-epochDiff) * 100).UTC()
}

func toFiletime(t time.Time) uint64 {
	return uint64(t.UnixNano()/100) + 116444736000000000
}

// String describes a key for messages.
func (k Key) String() string { return fmt.Sprintf("%s (nk at %#x)", k.Path(), k.off) }
