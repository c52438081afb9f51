package regf

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cauldron-dr/cauldron/internal/testenv"

	"github.com/cauldron-dr/cauldron/internal/corpus"
)

// minimalHive returns a copy of the minimal hive with its minor version set (it holds only an
// empty root, which is valid in every version).
func minimalHive(t testing.TB, minor uint32) string {
	t.Helper()
	b, err := os.ReadFile(corpus.File(t, "hives/hivex-minimal"))
	if err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint32(b[24:], minor)
	binary.LittleEndian.PutUint32(b[508:], baseChecksum(b))
	p := filepath.Join(t.TempDir(), fmt.Sprintf("hive-1.%d", minor))
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func listSig(h *Hive, k Key) string {
	return string(h.payload(le32(k.raw()[nkSubList:]))[0:2])
}

// Leaf type follows the version (li below 1.3, lf for 1.3-1.4, lh from 1.5); a list reaching
// 1013 entries goes under an ri whose leaves stay below that; big data only from 1.4.
func TestWriterRulesByVersion(t *testing.T) {
	for _, c := range []struct {
		minor    uint32
		leaf     string
		bigAsDB  bool
		keyCount int
	}{{2, "li", false, 1013}, {3, "lf", false, 1013}, {4, "lf", true, 2100}, {5, "lh", true, 1013}} {
		t.Run(fmt.Sprintf("1.%d", c.minor), func(t *testing.T) {
			path := minimalHive(t, c.minor)
			h, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 5; i++ {
				if _, err := h.CreateKey(fmt.Sprintf(`small\k%d`, i)); err != nil {
					t.Fatal(err)
				}
			}
			for i := 0; i < c.keyCount; i++ {
				if _, err := h.CreateKey(fmt.Sprintf(`many\Key%05d`, (i*7919)%c.keyCount)); err != nil {
					t.Fatal(err)
				}
			}
			if err := h.SetValue(`many\Key00042`, "v", RegDword, dword(42)); err != nil {
				t.Fatal(err)
			}
			if err := h.SetValue(`small`, "big", RegBinary, pattern(20000, 9)); err != nil {
				t.Fatal(err)
			}
			h = saveReopen(t, h, path)
			small, _ := h.Lookup("small")
			if got := listSig(h, small); got != c.leaf {
				t.Fatalf("leaf type %s, want %s", got, c.leaf)
			}
			many, _ := h.Lookup("many")
			if got := listSig(h, many); got != "ri" {
				t.Fatalf("%d subkeys listed by %s, want ri", c.keyCount, got)
			}
			_, leaves := h.readLeaf(le32(many.raw()[nkSubList:]))
			for _, l := range leaves {
				kind, ents := h.readLeaf(l.off)
				if kind != c.leaf || len(ents) > maxLeafEntries {
					t.Fatalf("ri leaf %s with %d entries", kind, len(ents))
				}
			}
			v, _, _ := small.Value("big")
			isDB := string(h.payload(le32(v.raw()[vkDataOff:]))[0:2]) == "db"
			if isDB != c.bigAsDB {
				t.Fatalf("20000-byte value stored as db: %v, want %v", isDB, c.bigAsDB)
			}
			// hivexsh lists every key of the ri.
			testenv.NeedTools(t, "hivexsh")
			cmd := exec.Command("hivexsh", path)
			cmd.Stdin = strings.NewReader("cd many\nls\n")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("hivexsh: %v\n%s", err, out)
			}
			if n := strings.Count(string(out), "Key"); n != c.keyCount {
				t.Fatalf("hivexsh lists %d keys, want %d", n, c.keyCount)
			}
			if got := hivexget(t, path, `many\key00042`, "v"); got != "42" {
				t.Fatalf("hivexget through the ri: %q", got)
			}
		})
	}
}

// New keys share their parent's sk and raise its count; deleting them lowers it again. Freed
// cells are reused: setting, deleting and setting again a big value does not grow the file.
func TestSecurityRefsAndFreeCellReuse(t *testing.T) {
	path := minimalHive(t, 5)
	h, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	root := h.Root()
	sk := le32(root.raw()[nkSecurity:])
	refs := func() uint32 { return le32(h.payload(sk)[12:]) }
	r0 := refs()
	if _, err := h.CreateKey(`a\b\c`); err != nil {
		t.Fatal(err)
	}
	if refs() != r0+3 {
		t.Fatalf("sk refs %d after 3 new keys, want %d", refs(), r0+3)
	}
	k, _ := h.Lookup(`a\b\c`)
	if le32(k.raw()[nkSecurity:]) != sk {
		t.Fatal("new key does not share its parent's sk")
	}
	if err := h.SetValue(`a`, "v", RegBinary, pattern(50000, 1)); err != nil {
		t.Fatal(err)
	}
	size := h.binsEnd
	for i := 0; i < 5; i++ {
		if err := h.DeleteValue(`a`, "v"); err != nil {
			t.Fatal(err)
		}
		if err := h.SetValue(`a`, "v", RegBinary, pattern(50000, byte(i))); err != nil {
			t.Fatal(err)
		}
	}
	if h.binsEnd != size {
		t.Fatalf("hive bins grew from %#x to %#x although freed cells fit", size, h.binsEnd)
	}
	if err := h.DeleteKey(`a`); err != nil {
		t.Fatal(err)
	}
	if refs() != r0 {
		t.Fatalf("sk refs %d after deleting, want %d", refs(), r0)
	}
	if p := h.Check(); len(p) != 0 {
		t.Fatal(p)
	}
	if err := h.DeleteKey(`\`); err == nil {
		t.Fatal("deleting the root was allowed")
	}
}

// Save goes through a temporary file and rename: the directory holds only the hive afterwards,
// the sequence numbers are equal and above the old ones, and a failed save leaves the old file.
func TestSaveAtomicAndSequence(t *testing.T) {
	path := minimalHive(t, 5)
	h, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	p0, s0 := h.Sequence()
	if err := h.SetValue(`x`, "v", RegDword, dword(1)); err != nil {
		t.Fatal(err)
	}
	if err := h.Save(""); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		t.Fatalf("directory holds %d entries after save, want only the hive", len(ents))
	}
	h2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	p1, s1 := h2.Sequence()
	if p1 != s1 || p1 <= max(p0, s0) {
		t.Fatalf("sequence numbers %d/%d after save (were %d/%d)", p1, s1, p0, s0)
	}
	old, _ := os.ReadFile(path)
	if err := h2.SetValue(`x`, "w", RegDword, dword(2)); err != nil {
		t.Fatal(err)
	}
	if err := h2.Save(filepath.Join(t.TempDir(), "no", "such", "dir", "hive")); err == nil {
		t.Fatal("save into a missing directory succeeded")
	}
	if now, _ := os.ReadFile(path); string(now) != string(old) {
		t.Fatal("a failed save changed the old file")
	}
}

// The checker catches what the independent readers never check: a wrong lh hash, a wrong sk
// reference count, a wrong base-block checksum, an unsorted list, a too small max-length field.
func TestCheckerCatchesBrokenRules(t *testing.T) {
	build := func() *Hive {
		h, err := Open(minimalHive(t, 5))
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{`a\one`, `a\two`, `a\three`} {
			if err := h.SetValue(k, "name", RegSz, utf16z(k)); err != nil {
				t.Fatal(err)
			}
		}
		if p := h.Check(); len(p) != 0 {
			t.Fatal(p)
		}
		return h
	}
	cases := []struct {
		rule   string
		break_ func(h *Hive)
	}{
		{"lh hash", func(h *Hive) {
			a, _ := h.Lookup("a")
			l := h.payload(le32(a.raw()[nkSubList:]))
			put32(l[8:], le32(l[8:])+1)
		}},
		{"not sorted", func(h *Hive) {
			a, _ := h.Lookup("a")
			l := h.payload(le32(a.raw()[nkSubList:]))
			e0 := append([]byte(nil), l[4:12]...)
			copy(l[4:12], l[12:20])
			copy(l[12:20], e0)
		}},
		{"reference count", func(h *Hive) {
			sk := le32(h.Root().raw()[nkSecurity:])
			put32(h.payload(sk)[12:], 99)
		}},
		{"largest subkey name", func(h *Hive) {
			a, _ := h.Lookup("a")
			put32(a.raw()[nkMaxName:], 2)
		}},
		{"parent link", func(h *Hive) {
			k, _ := h.Lookup(`a\one`)
			put32(k.raw()[nkParent:], h.rootOffset())
		}},
	}
	for _, c := range cases {
		h := build()
		c.break_(h)
		h.touch() // keep the base block consistent so the named rule is the one reported
		found := false
		for _, p := range h.Check() {
			if strings.Contains(p.Rule, c.rule) && p.Offset >= baseBlockSize {
				found = true
			}
		}
		if !found {
			t.Errorf("breaking %q: checker says %v", c.rule, h.Check())
		}
	}
	h := build()
	h.buf[100] ^= 1
	if p := h.Check(); len(p) == 0 || p[0].Offset != 508 {
		t.Errorf("wrong checksum: %v", p)
	}
}
