package regf

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cauldron-dr/cauldron/internal/corpus"
)

// cleanWin10 returns a clean copy of the 15 MB Windows 10 1709 SYSTEM hive (its logs are not in
// the corpus, so the copy is marked clean; see TestEditWindows10_1709System).
func cleanWin10(tb testing.TB) []byte {
	b, err := os.ReadFile(corpus.File(tb, "hives/regipy-SYSTEM_WIN_10_1709.xz"))
	if err != nil {
		tb.Fatal(err)
	}
	copy(b[8:12], b[4:8])
	binary.LittleEndian.PutUint32(b[508:], baseChecksum(b))
	return b
}

// inoculate applies a typical inoculation: a storage driver service in every control set, four
// device ids, and StartOverride removed from the inbox storage drivers in every control set.
func inoculate(h *Hive) error {
	subs, err := h.Root().Subkeys()
	if err != nil {
		return err
	}
	for _, s := range subs {
		if !strings.HasPrefix(strings.ToUpper(s.Name()), "CONTROLSET") {
			continue
		}
		svc := s.Name() + `\Services\viostor`
		for _, v := range []struct {
			n string
			t uint32
			d []byte
		}{{"Type", RegDword, dword(1)}, {"Start", RegDword, dword(0)}, {"ErrorControl", RegDword, dword(1)},
			{"Group", RegSz, utf16z("SCSI miniport")}, {"ImagePath", RegExpandSz, utf16z(`system32\drivers\viostor.sys`)}} {
			if err := h.SetValue(svc, v.n, v.t, v.d); err != nil {
				return err
			}
		}
		for _, drv := range []string{"storahci", "stornvme", "msahci", "pciide", "iaStorV"} {
			p := s.Name() + `\Services\` + drv + `\StartOverride`
			if _, err := h.Lookup(p); err == nil {
				if err := h.DeleteKey(p); err != nil {
					return err
				}
			}
		}
	}
	for _, id := range []string{"VEN_1AF4&DEV_1001", "VEN_1AF4&DEV_1042", "VEN_1AF4&DEV_1004", "VEN_1AF4&DEV_1048"} {
		if err := h.SetValue(`DriverDatabase\DeviceIds\PCI\`+id, "viostor.inf", RegBinary, []byte{1, 0xff, 0, 0}); err != nil {
			return err
		}
	}
	return nil
}

// BenchmarkInoculate: open the 15 MB Windows 10 SYSTEM hive, inoculate it, write it.
func BenchmarkInoculate(b *testing.B) {
	data := cleanWin10(b)
	dir := b.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h, err := Open(src)
		if err != nil {
			b.Fatal(err)
		}
		if err := inoculate(h); err != nil {
			b.Fatal(err)
		}
		if err := h.Save(filepath.Join(dir, fmt.Sprintf("out%d", i%2))); err != nil {
			b.Fatal(err)
		}
	}
}

func TestInoculateResult(t *testing.T) {
	path := filepath.Join(t.TempDir(), "SYSTEM")
	if err := os.WriteFile(path, cleanWin10(t), 0o644); err != nil {
		t.Fatal(err)
	}
	h, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Lookup(`ControlSet001\Services\stornvme\StartOverride`); err != nil {
		t.Fatalf("the sample should have stornvme\\StartOverride: %v", err)
	}
	if err := inoculate(h); err != nil {
		t.Fatal(err)
	}
	h = saveReopen(t, h, path)
	if _, err := h.Lookup(`ControlSet001\Services\stornvme\StartOverride`); err == nil {
		t.Fatal("StartOverride still there")
	}
	if got := hivexget(t, path, `DriverDatabase\DeviceIds\PCI\VEN_1AF4&DEV_1001`, "viostor.inf"); got == "" {
		t.Fatal("hivexget: no device id value")
	}
}
