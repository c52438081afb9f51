package regf

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/cauldron-dr/cauldron/internal/corpus"
)

func addSeeds(f *testing.F, files ...string) {
	for _, p := range files {
		b, err := os.ReadFile(corpus.File(f, p))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzParse: any bytes either fail to open or open, check, export and walk without panicking.
// Run it with -fuzzminimizetime=2s or so: minimizing a new 12 KB input otherwise takes the
// default 60 s, during which the engine reports 0 execs/sec.
func FuzzParse(f *testing.F) {
	addSeeds(f, "hives/hivex-minimal", "bcd/windeploy-BCD-efi", "hives/yarp/TruncatedHive")
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := Parse(append([]byte(nil), b...))
		if err != nil {
			return
		}
		h.Check()
		var out bytes.Buffer
		h.Export(&out, `\`)
		seen := map[uint32]bool{}
		var walk func(k Key, depth int)
		walk = func(k Key, depth int) {
			if depth > 64 || seen[k.Offset()] {
				return
			}
			seen[k.Offset()] = true
			k.Class()
			k.SecurityDescriptor()
			k.Path()
			vals, _ := k.Values()
			for _, v := range vals {
				v.Data()
			}
			subs, _ := k.Subkeys()
			for _, s := range subs {
				walk(s, depth+1)
			}
		}
		walk(h.Root(), 0)
	})
}

var fuzzNames = []string{"a", "A", "b", "a_b", "a[b", "aZ", "Ключ", "ключ", "日本語", "Ärger", "ärger", "x y", "long-name-" + string(bytes.Repeat([]byte("n"), 100))}

var fuzzSizes = []int{0, 1, 4, 5, 100, 16344, 16345, 20000}

// FuzzEdits: a random sequence of edits (create, set of every size class, delete value, delete
// key) on a fresh hive of version 1.3 or 1.5 always leaves a hive that passes the checker, before
// and after saving and reopening, and reads the same after reopening.
func FuzzEdits(f *testing.F) {
	f.Add([]byte{5, 0, 1, 2, 3, 1, 7, 2, 4, 3, 0, 1, 2, 3, 4, 5, 6, 7, 8})
	f.Add([]byte{3, 1, 12, 6, 1, 9, 7, 2, 8, 0, 3, 2, 1, 9, 6, 1, 5, 3, 4, 2})
	f.Fuzz(func(t *testing.T, prog []byte) {
		if len(prog) == 0 || len(prog) > 400 {
			return
		}
		minor := uint32(5)
		if prog[0]%2 == 1 {
			minor = 3
		}
		path := minimalHive(t, minor)
		h, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		key := func(b byte) string {
			n := fuzzNames[int(b)%len(fuzzNames)]
			if b%3 == 0 {
				return n
			}
			return n + `\` + fuzzNames[int(b/3)%len(fuzzNames)]
		}
		for i := 1; i+2 < len(prog); i += 3 {
			op, a, b := prog[i]%4, prog[i+1], prog[i+2]
			k := key(a)
			switch op {
			case 0:
				if _, err := h.CreateKey(k); err != nil {
					t.Fatal(err)
				}
			case 1:
				n := fuzzSizes[int(b)%len(fuzzSizes)]
				if err := h.SetValue(k, fuzzNames[int(b)%len(fuzzNames)], uint32(b%12), pattern(n, b)); err != nil {
					t.Fatal(err)
				}
			case 2:
				if _, err := h.Lookup(k); err == nil {
					if err := h.DeleteKey(k); err != nil {
						t.Fatal(err)
					}
				}
			case 3:
				if kk, err := h.Lookup(k); err == nil {
					name := fuzzNames[int(b)%len(fuzzNames)]
					if _, ok, _ := kk.Value(name); ok {
						if err := h.DeleteValue(k, name); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			if p := h.Check(); len(p) != 0 {
				t.Fatalf("after op %d (%d %q): %v", i/3, op, k, p)
			}
		}
		before := ourExport(t, h, `\`)
		out := filepath.Join(t.TempDir(), "saved")
		if err := h.Save(out); err != nil {
			t.Fatal(err)
		}
		h2, err := Open(out)
		if err != nil {
			t.Fatal(err)
		}
		if p := h2.Check(); len(p) != 0 {
			t.Fatalf("after reopening: %v", p)
		}
		if after := ourExport(t, h2, `\`); !bytes.Equal(before, after) {
			t.Fatal(fmt.Sprintf("reopened hive reads differently: %s", firstDiff(before, after)))
		}
	})
}
