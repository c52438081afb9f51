package windows

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"unicode/utf16"

	"github.com/cauldron-dr/cauldron/inoculate/inf"
	"github.com/cauldron-dr/cauldron/inoculate/regf"
)

// RegChange is one registry change: a value set or deleted, a key created or deleted.
type RegChange struct {
	Hive   string `json:"hive"`   // SYSTEM, SOFTWARE, DRIVERS
	Key    string `json:"key"`    // below the hive root
	Value  string `json:"value"`  // value name ("" for the default value or a key change)
	Action string `json:"action"` // set, delete-value, create-key, delete-key
	Type   string `json:"type,omitempty"`
	Before string `json:"before"` // "(absent)" when there was none
	After  string `json:"after"`  // "(absent)" after a delete
	Why    string `json:"why"`
}

// hiveFile is a hive of the system being edited in memory.
type hiveFile struct {
	name     string // SYSTEM, SOFTWARE, DRIVERS
	rel      string // path inside the volume, for reports
	path     string // host path
	orig     []byte // the file as found, for the backup
	logs     map[string][]byte
	h        *regf.Hive
	replayed int
	changes  []RegChange
}

// openHive reads a hive for editing: a dirty hive has its transaction logs (found beside it,
// case-insensitively) replayed in memory, a dirty hive without usable logs is refused, and the
// result must pass regf's checker. Nothing is written.
func openHive(root, rel, name string) (*hiveFile, error) {
	path, ok, err := resolve(root, rel)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%s hive %s not found under %s", name, rel, root)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	hf := &hiveFile{name: name, rel: rel, path: path, orig: b, logs: map[string][]byte{}}
	h, err := regf.Parse(append([]byte(nil), b...))
	if err != nil {
		return nil, fmt.Errorf("%s hive %s: %w", name, path, err)
	}
	if h.Truncated() {
		return nil, fmt.Errorf("%s hive %s is truncated: the file ends before the hive bins its header declares; refusing to edit it", name, path)
	}
	if h.Dirty() {
		var logs [][]byte
		for _, ext := range []string{".LOG1", ".LOG2", ".LOG"} {
			lp, ok, err := resolve(filepath.Dir(path), filepath.Base(path)+ext)
			if err != nil || !ok {
				continue
			}
			lb, err := os.ReadFile(lp)
			if err != nil {
				return nil, err
			}
			if len(lb) == 0 {
				continue
			}
			hf.logs[lp] = lb
			logs = append(logs, lb)
		}
		if len(logs) == 0 {
			return nil, fmt.Errorf("%s hive %s is dirty (its sequence numbers differ: Windows stopped between writing its logs and the hive) and no %s.LOG1, .LOG2 or .LOG with data lies beside it: the changes only the logs held are lost, and editing it would make that silent; refusing to touch it", name, path, filepath.Base(path))
		}
		n, err := h.ReplayLogs(logs...)
		if err != nil {
			return nil, fmt.Errorf("%s hive %s is dirty and its transaction logs cannot be replayed: %w; refusing to touch it", name, path, err)
		}
		hf.replayed = n
	}
	if probs := h.Check(); len(probs) > 0 {
		return nil, fmt.Errorf("%s hive %s breaks the rules Windows relies on (%d problem(s), first: %v); refusing to edit it", name, path, len(probs), probs[0])
	}
	hf.h = h
	return hf, nil
}

func (hf *hiveFile) record(c RegChange) {
	c.Hive = hf.name
	hf.changes = append(hf.changes, c)
}

// get returns a value's type and data, ok=false when the key or the value is missing.
func (hf *hiveFile) get(key, name string) (uint32, []byte, bool) {
	k, err := hf.h.Lookup(key)
	if err != nil {
		return 0, nil, false
	}
	v, ok, err := k.Value(name)
	if err != nil || !ok {
		return 0, nil, false
	}
	d, err := v.Data()
	if err != nil {
		return 0, nil, false
	}
	return v.Type(), d, true
}

func (hf *hiveFile) hasKey(key string) bool {
	_, err := hf.h.Lookup(key)
	return err == nil
}

// set sets a value unless it already holds exactly that, recording the change.
func (hf *hiveFile) set(key, name string, typ uint32, data []byte, why string) error {
	ot, od, had := hf.get(key, name)
	if had && ot == typ && bytes.Equal(od, data) {
		return nil
	}
	if !hf.hasKey(key) {
		hf.record(RegChange{Key: key, Action: "create-key", Before: "(absent)", After: "(key)", Why: why})
	}
	if err := hf.h.SetValue(key, name, typ, data); err != nil {
		return fmt.Errorf("%s: setting %s\\%s: %w", hf.name, key, name, err)
	}
	before := "(absent)"
	if had {
		before = formatValue(ot, od)
	}
	hf.record(RegChange{Key: key, Value: name, Action: "set", Type: inf.TypeName(typ), Before: before, After: formatValue(typ, data), Why: why})
	return nil
}

func (hf *hiveFile) setDword(key, name string, v uint32, why string) error {
	return hf.set(key, name, regf.RegDword, binary.LittleEndian.AppendUint32(nil, v), why)
}

func (hf *hiveFile) setString(key, name string, typ uint32, s string, why string) error {
	return hf.set(key, name, typ, utf16z(s), why)
}

func (hf *hiveFile) setMulti(key, name string, ss []string, why string) error {
	return hf.set(key, name, regf.RegMultiSz, multiSz(ss), why)
}

// createKey creates a key (and its parents) when it is missing.
func (hf *hiveFile) createKey(key, why string) error {
	if hf.hasKey(key) {
		return nil
	}
	if _, err := hf.h.CreateKey(key); err != nil {
		return fmt.Errorf("%s: creating %s: %w", hf.name, key, err)
	}
	hf.record(RegChange{Key: key, Action: "create-key", Before: "(absent)", After: "(key)", Why: why})
	return nil
}

// deleteKey deletes a key and everything below it, recording its values as they were.
func (hf *hiveFile) deleteKey(key, why string) error {
	k, err := hf.h.Lookup(key)
	if err != nil {
		return nil
	}
	before := "(key)"
	if vals, err := k.Values(); err == nil && len(vals) > 0 {
		var parts []string
		for _, v := range vals {
			d, _ := v.Data()
			parts = append(parts, fmt.Sprintf("%s=%s", valueName(v.Name()), formatValue(v.Type(), d)))
		}
		before = "(key) " + strings.Join(parts, "; ")
	}
	if err := hf.h.DeleteKey(key); err != nil {
		return fmt.Errorf("%s: deleting %s: %w", hf.name, key, err)
	}
	hf.record(RegChange{Key: key, Action: "delete-key", Before: before, After: "(absent)", Why: why})
	return nil
}

func valueName(n string) string {
	if n == "" {
		return "@"
	}
	return n
}

// controlSets lists the hive's ControlSetNNN keys: all of them are edited, since Windows may boot
// any (Select\Current, LastKnownGood, Default, Failed name them by number).
var controlSetName = regexp.MustCompile(`(?i)^ControlSet\d{3}$`)

func controlSets(h *regf.Hive) ([]string, error) {
	subs, err := h.Root().Subkeys()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, k := range subs {
		if controlSetName.MatchString(k.Name()) {
			out = append(out, k.Name())
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		return nil, errors.New("the SYSTEM hive has no ControlSetNNN key")
	}
	return out, nil
}

func utf16z(s string) []byte {
	u := utf16.Encode([]rune(s))
	b := make([]byte, 2*len(u)+2)
	for i, c := range u {
		binary.LittleEndian.PutUint16(b[2*i:], c)
	}
	return b
}

func multiSz(ss []string) []byte {
	var b []byte
	for _, s := range ss {
		b = append(b, utf16z(s)...)
	}
	return append(b, 0, 0)
}

// utf16Strings decodes REG_SZ/REG_EXPAND_SZ/REG_MULTI_SZ data into its strings.
func utf16Strings(d []byte) []string {
	u := make([]uint16, len(d)/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(d[2*i:])
	}
	var out []string
	start := 0
	for i, c := range u {
		if c == 0 {
			if i > start {
				out = append(out, string(utf16.Decode(u[start:i])))
			}
			start = i + 1
		}
	}
	if start < len(u) {
		out = append(out, string(utf16.Decode(u[start:])))
	}
	return out
}

func regString(d []byte) string {
	s := utf16Strings(d)
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// formatValue renders a value for the report.
func formatValue(typ uint32, d []byte) string {
	switch typ {
	case regf.RegDword:
		if len(d) == 4 {
			v := binary.LittleEndian.Uint32(d)
			return fmt.Sprintf("0x%08x (%d)", v, v)
		}
	case regf.RegQword:
		if len(d) == 8 {
			return fmt.Sprintf("0x%016x", binary.LittleEndian.Uint64(d))
		}
	case regf.RegSz, regf.RegExpandSz:
		return fmt.Sprintf("%q", regString(d))
	case regf.RegMultiSz:
		q := []string{}
		for _, s := range utf16Strings(d) {
			q = append(q, fmt.Sprintf("%q", s))
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	if len(d) > 64 {
		return hex.EncodeToString(d[:64]) + fmt.Sprintf("… (%d bytes)", len(d))
	}
	return hex.EncodeToString(d)
}
