package regf

import (
	"bytes"
	"os"
	"testing"

	"github.com/cauldron-dr/cauldron/internal/corpus"
)

// Windows' own recovery of the yarp dirty hives is shipped beside them: after replaying the logs,
// our export (keys, values, data) must equal the export of Windows' result, and so must
// hivexregedit's reading of the file we save.
func TestReplayMatchesWindows(t *testing.T) {
	for _, c := range []struct{ dir, hive, recovered string }{
		{"hives/yarp/NewDirtyHive1", "NewDirtyHive", "RecoveredHive_Windows10"},
		{"hives/yarp/OldDirtyHive", "OldDirtyHive", "RecoveredHive_Windows7"},
	} {
		t.Run(c.hive, func(t *testing.T) {
			src := corpus.File(t, c.dir+"/"+c.hive)
			dir := t.TempDir()
			path := dir + "/" + c.hive
			for _, ext := range []string{"", ".LOG1", ".LOG2"} {
				b, err := os.ReadFile(src + ext)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path+ext, b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := Open(corpus.File(t, c.dir+"/"+c.recovered))
			if err != nil {
				t.Fatal(err)
			}
			h, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			before := ourExport(t, h, `\`)
			n, err := h.ReplayFiles(path)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 || h.Dirty() {
				t.Fatalf("applied %d, dirty %v", n, h.Dirty())
			}
			if p := h.Check(); len(p) != 0 {
				t.Fatalf("replayed hive fails the checker: %v", p)
			}
			got, exp := ourExport(t, h, `\`), ourExport(t, want, `\`)
			if bytes.Equal(before, exp) {
				t.Fatal("the dirty hive already reads like the recovered one: the test proves nothing")
			}
			if !bytes.Equal(got, exp) {
				t.Fatalf("replayed hive differs from Windows' recovery: %s", firstDiff(exp, got))
			}
			if err := h.Save(""); err != nil {
				t.Fatal(err)
			}
			for _, ext := range []string{".LOG1", ".LOG2"} {
				if st, err := os.Stat(path + ext); err != nil || st.Size() != 0 {
					t.Fatalf("%s not emptied: %v", ext, err)
				}
			}
			if !bytes.Equal(hivexExport(t, path, `\`), exp) {
				t.Fatal("hivexregedit reads the saved hive differently from Windows' recovery")
			}
		})
	}
}

func TestMarvin32(t *testing.T) {
	// Every HvLE entry of the Windows-written logs carries two Marvin32 hashes: all of them must
	// verify, and a flipped bit must not.
	b, err := os.ReadFile(corpus.File(t, "hives/yarp/NewDirtyHive1/NewDirtyHive.LOG1"))
	if err != nil {
		t.Fatal(err)
	}
	n := len(logEntries(b))
	if n == 0 {
		t.Fatal("no valid log entries: Marvin32 does not match Windows'")
	}
	bad := append([]byte(nil), b...)
	bad[logSector+100] ^= 1
	if m := len(logEntries(bad)); m != 0 {
		t.Fatalf("a corrupted first entry still verifies (%d entries)", m)
	}
}

// The Windows 10 SYSTEM hive with its logs: replay, then the checker must pass.
func TestReplaySystemB(t *testing.T) {
	path := copyHive(t, corpus.File(t, "hives/regipy-SYSTEM_B.xz"))
	for _, ext := range []string{".LOG1", ".LOG2"} {
		b, err := os.ReadFile(corpus.File(t, "hives/regipy-SYSTEM_B"+ext+".xz"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path+ext, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := h.ReplayFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	if p := h.Check(); len(p) != 0 || n == 0 {
		t.Fatalf("applied %d entries; checker: %v", n, p)
	}
	k, err := h.Lookup(`DriverDatabase\DeviceIds\PCI`)
	if err != nil {
		t.Fatal(err)
	}
	subs, err := k.Subkeys()
	t.Logf("replayed %d entries; DeviceIds\\PCI has %d subkeys (%v)", n, len(subs), err)
}

// A dirty hive whose base block checksum is also wrong: Windows takes the base block from the
// log with the latest entries and applies that log; the result must still be Windows' recovery.
func TestReplayRecoversBaseBlock(t *testing.T) {
	for _, c := range []struct{ dir, hive, recovered string }{
		{"hives/yarp/NewDirtyHive1", "NewDirtyHive", "RecoveredHive_Windows10"},
		{"hives/yarp/OldDirtyHive", "OldDirtyHive", "RecoveredHive_Windows7"},
	} {
		t.Run(c.hive, func(t *testing.T) { replayWithBadBase(t, c.dir, c.hive, c.recovered) })
	}
}

// replayWithBadBase damages the primary's base block (a byte under the checksum) and expects the
// replay to take the base block from the logs, as Windows does, and end where Windows ended.
func replayWithBadBase(t *testing.T, dir, hive, recovered string) {
	path := t.TempDir() + "/" + hive
	for _, ext := range []string{"", ".LOG1", ".LOG2"} {
		b, err := os.ReadFile(corpus.File(t, dir+"/"+hive+ext))
		if err != nil {
			t.Fatal(err)
		}
		if ext == "" {
			b[0x100] ^= 0x55 // reserved area, covered by the checksum
		}
		if err := os.WriteFile(path+ext, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if !h.Dirty() {
		t.Fatal("a wrong checksum does not make the hive dirty")
	}
	if p := h.Check(); len(p) == 0 || p[0].Offset != 508 {
		t.Fatalf("checker: %v", p)
	}
	if err := h.SetValue(`x`, "v", RegDword, dword(1)); err != ErrDirty {
		t.Fatalf("edit of a hive with a bad base block: %v", err)
	}
	if _, err := h.ReplayFiles(path); err != nil {
		t.Fatal(err)
	}
	want, err := Open(corpus.File(t, dir+"/"+recovered))
	if err != nil {
		t.Fatal(err)
	}
	if p := h.Check(); len(p) != 0 {
		t.Fatal(p)
	}
	if got, exp := ourExport(t, h, `\`), ourExport(t, want, `\`); !bytes.Equal(got, exp) {
		t.Fatalf("differs from Windows' recovery: %s", firstDiff(exp, got))
	}
}
