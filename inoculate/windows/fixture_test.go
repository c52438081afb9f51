package windows

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/cauldron-dr/cauldron/internal/hivefixture"

	"github.com/cauldron-dr/cauldron/inoculate/inf"
	"github.com/cauldron-dr/cauldron/inoculate/regf"
	"github.com/cauldron-dr/cauldron/internal/corpus"
	"github.com/cauldron-dr/cauldron/internal/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	corpus.Cleanup()
	os.Exit(code)
}

// needTool checks for the tools the tests build fixtures with and judge by (Debian packages
// ntfs-3g, libhivex-bin, libwin-hivex-perl, chntpw, xz-utils): missing ones fail in CI and corpus
// runs, and skip on a developer's machine (internal/testenv).
func needTool(t testing.TB, names ...string) {
	t.Helper()
	testenv.NeedTools(t, names...)
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// volume is a Windows-like system volume: an NTFS image made by mkntfs, mounted through ntfs-3g
// (case-sensitive, as in the boot image).
type volume struct {
	img, mnt string
	mounted  bool
}

func newVolume(t *testing.T, sizeMiB int64) *volume {
	t.Helper()
	needTool(t, "mkntfs", "ntfs-3g", "umount")
	testenv.NeedRoot(t) // FUSE mounts
	dir := t.TempDir()
	v := &volume{img: filepath.Join(dir, "system.img"), mnt: filepath.Join(dir, "mnt")}
	if err := os.WriteFile(v.img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(v.img, sizeMiB<<20); err != nil {
		t.Fatal(err)
	}
	run(t, "mkntfs", "-F", "-Q", "-q", "-L", "Windows", v.img)
	if err := os.Mkdir(v.mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	v.mount(t)
	t.Cleanup(func() { v.unmount(t) })
	return v
}

func (v *volume) mount(t *testing.T) {
	t.Helper()
	run(t, "ntfs-3g", v.img, v.mnt)
	v.mounted = true
}

// unmount flushes ntfs-3g so the image can be read with ntfscat/ntfsinfo.
func (v *volume) unmount(t *testing.T) {
	t.Helper()
	if !v.mounted {
		return
	}
	if out, err := exec.Command("umount", v.mnt).CombinedOutput(); err != nil {
		t.Errorf("umount %s: %v\n%s", v.mnt, err, out)
		return
	}
	v.mounted = false
}

// put writes a file into the volume (creating folders), named as Windows names it.
func (v *volume) put(t testing.TB, rel string, data []byte) {
	t.Helper()
	p := filepath.Join(v.mnt, filepath.FromSlash(strings.ReplaceAll(rel, `\`, "/")))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (v *volume) path(rel string) string {
	return filepath.Join(v.mnt, filepath.FromSlash(strings.ReplaceAll(rel, `\`, "/")))
}

func readCorpus(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(corpus.File(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// markClean makes a dirty hive's header clean: the secondary sequence number set to the primary
// and the checksum recomputed. The corpus Windows 10 1709 SYSTEM hive is dirty and its logs were
// not published; its primary file is consistent (regf's checker passes it), so marking it clean
// turns it into what a cleanly shut down Windows leaves — the state inoculation meets after a
// proper shutdown. Its own dirtiness is used, as it is, by the refusal test.
func markClean(b []byte) []byte {
	b = append([]byte(nil), b...)
	copy(b[8:12], b[4:8])
	var sum uint32
	for i := 0; i < 508; i += 4 {
		sum ^= binary.LittleEndian.Uint32(b[i:])
	}
	switch sum {
	case 0xFFFFFFFF:
		sum = 0xFFFFFFFE
	case 0:
		sum = 1
	}
	binary.LittleEndian.PutUint32(b[508:], sum)
	return b
}

// driversHive builds a DRIVERS hive (Windows 10 keeps its DriverDatabase there) holding the
// stornvme and pvscsi parts of the 1709 SYSTEM hive's DriverDatabase, exported and imported by
// regf.
func driversHive(t testing.TB, system []byte) []byte {
	t.Helper()
	src, err := regf.Parse(append([]byte(nil), system...))
	if err != nil {
		t.Fatal(err)
	}
	var ops []regf.RegOp
	for _, k := range []string{`DriverDatabase\DeviceIds\PCI\CC_010802`, `DriverDatabase\DriverInfFiles\stornvme.inf`,
		`DriverDatabase\DriverPackages\stornvme.inf_amd64_798a5c267d576f00`} {
		var text bytes.Buffer
		if err := src.Export(&text, k); err != nil {
			t.Fatal(err)
		}
		o, err := regf.ParseReg(&text, "")
		if err != nil {
			t.Fatal(err)
		}
		ops = append(ops, o...)
	}
	h, err := regf.Parse(append([]byte(nil), readCorpus(t, "hives/hivex-minimal")...))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Import(ops); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "DRIVERS")
	if err := h.Save(p); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	return b
}

// dummySys are stand-ins for the inbox drivers' files, which Inoculate insists exist.
func (v *volume) dummyDrivers(t testing.TB, names ...string) {
	for _, n := range names {
		v.put(t, `Windows\System32\drivers\`+n+".sys", []byte("MZ stand-in for "+n))
	}
}

// win7 populates a Windows 7 x86 volume: the corpus SYSTEM hive (with its
// CriticalDeviceDatabase, two control sets), a SOFTWARE hive from virt-v2v's Windows 7 text, the
// BIOS BCD store. The Windows folder is spelled in the case Windows 7 uses on disk for some
// folders ("system32", "DRIVERS") to exercise case-insensitive lookups.
func win7(t *testing.T, v *volume) {
	v.put(t, `Windows\System32\config\SYSTEM`, readCorpus(t, "hives/regipy-SYSTEM.xz"))
	v.put(t, `Windows\System32\config\SOFTWARE`, hivefixture.Software(t, "reg/v2v-win7-32-software.reg"))
	v.put(t, `Boot\BCD`, readCorpus(t, "bcd/windeploy-BCD-bios"))
	v.dummyDrivers(t, "msahci", "pciide", "atapi", "intelide", "storvsc", "vmbus", "iaStorV")
}

// win10 populates a Windows 10 x64 volume: the 1709 SYSTEM hive marked clean (DriverDatabase,
// stornvme's StartOverride trap), a DRIVERS hive, SOFTWARE from virt-v2v's Windows 10 text, and
// an ESP folder with the corpus UEFI BCD store.
func win10(t *testing.T, v *volume) string {
	sys := markClean(readCorpus(t, "hives/regipy-SYSTEM_WIN_10_1709.xz"))
	v.put(t, `Windows\System32\config\SYSTEM`, sys)
	v.put(t, `Windows\System32\config\DRIVERS`, driversHive(t, sys))
	v.put(t, `Windows\System32\config\SOFTWARE`, hivefixture.Software(t, "reg/v2v-win10-software.reg"))
	v.put(t, `Windows\INF\oem11.inf`, []byte("; a published INF already there\r\n"))
	v.dummyDrivers(t, "stornvme", "storahci", "pvscsi", "storvsc", "vmbus", "pciide", "intelide", "atapi")
	esp := t.TempDir()
	p := filepath.Join(esp, "EFI", "Microsoft", "Boot", "BCD")
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, readCorpus(t, "bcd/regipy-BCD-uefi.xz"), 0o644); err != nil {
		t.Fatal(err)
	}
	return esp
}

// driverTree builds a virtio-win-like tree (<driver>/<os>/<arch>/) from the corpus viostor and
// vioscsi templates, stamped for each architecture by package inf, with stand-in .sys and .cat
// files.
func driverTree(t testing.TB, layout map[string][]string) string {
	t.Helper()
	dir := t.TempDir()
	for drv, folders := range layout {
		tmpl := readCorpus(t, "inf/virtio-"+drv+".inx")
		for _, f := range folders {
			osName, arch, _ := strings.Cut(f, "/")
			parsed, err := inf.Parse(drv+".inx", tmpl, inf.Options{Arch: arch})
			if err != nil {
				t.Fatal(err)
			}
			d := filepath.Join(dir, drv, osName, arch)
			os.MkdirAll(d, 0o755)
			for name, data := range map[string][]byte{
				drv + ".inf": parsed.Contents(),
				drv + ".sys": []byte("MZ " + drv + " for " + f),
				drv + ".cat": []byte("catalog of " + drv + " for " + f),
			} {
				if err := os.WriteFile(filepath.Join(d, name), data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return dir
}

// treeHash hashes every name, mode and content below dir.
func treeHash(t testing.TB, dirs ...string) string {
	t.Helper()
	h := sha256.New()
	for _, dir := range dirs {
		var paths []string
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				t.Fatal(err)
			}
			paths = append(paths, p)
			return nil
		})
		sort.Strings(paths)
		for _, p := range paths {
			fi, err := os.Lstat(p)
			if err != nil {
				t.Fatal(err)
			}
			h.Write([]byte(p + "\x00" + fi.Mode().String() + "\x00"))
			if fi.Mode().IsRegular() {
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				h.Write(b)
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// hivexget reads a value with hivex (an independent reader); ok=false when it is missing.
func hivexget(t testing.TB, hive, key, value string) (string, bool) {
	t.Helper()
	out, err := exec.Command("hivexget", hive, key, value).Output()
	if err != nil {
		return "", false
	}
	return strings.TrimRight(string(out), "\n"), true
}

func wantValue(t testing.TB, hive, key, value, want string) {
	t.Helper()
	got, ok := hivexget(t, hive, key, value)
	if !ok {
		t.Errorf("hivexget %s %s %s: missing", filepath.Base(hive), key, value)
		return
	}
	if got != want {
		t.Errorf("hivexget %s %s %s = %q, want %q", filepath.Base(hive), key, value, got, want)
	}
}

// checkHive runs regf's checker on a written hive.
func checkHive(t testing.TB, path string) {
	t.Helper()
	h, err := regf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if probs := h.Check(); len(probs) > 0 || h.Dirty() {
		t.Errorf("%s: dirty=%v, %d problem(s): %v", path, h.Dirty(), len(probs), probs)
	}
}

// regedHas says whether reged -x (chntpw's exporter, a third reader) lists a key.
func regedHas(t testing.TB, hive, prefix, key string) bool {
	t.Helper()
	out := filepath.Join(t.TempDir(), "export.reg")
	cmd := exec.Command("reged", "-x", hive, prefix, key, out)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Logf("reged -x %s: %v\n%s", key, err, b)
		return false
	}
	data, err := os.ReadFile(out)
	return err == nil && len(data) > 0
}
