package windows

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/cauldron-dr/cauldron/inoculate/bcd"
)

// FuzzMountedDevice: any MountedDevices value (read from a restored hive, so outside input) is
// either left alone or mapped to a value of the same length and form; never a panic.
func FuzzMountedDevice(f *testing.F) {
	f.Add(binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint32(nil, 0x5cbea03e), 1<<20))
	f.Add(append([]byte("DMIO:ID:"), make([]byte, 16)...))
	f.Add([]byte("DMIO:ID:"))
	f.Add([]byte{})
	m := bcd.Mapping{Disks: []bcd.DiskMap{{HasSignature: true, OldSignature: 0x5cbea03e, NewSignature: 1, Starts: map[uint64]uint64{1 << 20: 2 << 20},
		Partitions: map[[16]byte][16]byte{{}: {1}}}}}
	f.Fuzz(func(t *testing.T, d []byte) {
		nd, _, _ := mapMountedDevice(d, m)
		if nd == nil {
			return
		}
		if len(nd) != len(d) {
			t.Fatalf("length %d → %d", len(d), len(nd))
		}
		if len(d) == 24 && !bytes.HasPrefix(nd, dmioPrefix) {
			t.Fatal("GPT value lost its prefix")
		}
	})
}

// FuzzSysfsHex: sysfs attribute text (read from the machine) parses or errs, never panics, and
// what parses fits its width.
func FuzzSysfsHex(f *testing.F) {
	for _, s := range []string{"0x1af4\n", "0x010601", "0x", "junk", "0xffffffffffffffffff", ""} {
		f.Add(s)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, s string) {
		if err := os.WriteFile(filepath.Join(dir, "attr"), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, bits := range []int{8, 16, 24} {
			v, err := sysfsHex(dir, "attr", bits)
			if err == nil && v >= 1<<bits {
				t.Fatalf("%q: %d does not fit %d bits", s, v, bits)
			}
		}
	})
}

// FuzzImagePathRel: any ImagePath (from the hive) maps to a relative path, never a panic.
func FuzzImagePathRel(f *testing.F) {
	for _, s := range []string{`\SystemRoot\system32\drivers\x.sys`, `\??\C:\x`, `C:\`, `\??\`, ``, `%SystemRoot%\`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if p := imagePathRel(s, "svc"); len(p) > 0 && p[0] == '\\' && len(s) > 0 && s[0] != '\\' {
			t.Fatalf("%q → absolute %q", s, p)
		}
	})
}
