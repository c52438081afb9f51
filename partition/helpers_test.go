package partition

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The tests compare what Read and DetectFilesystem find against independent tools (sgdisk,
// sfdisk, blkid, the mkfs tools' own dump commands) run on images those tools made. A missing
// tool is a failure, not a skip: a skipped comparison proves nothing.

// toolPackages maps each tool to the Debian package that provides it.
var toolPackages = map[string]string{
	"sgdisk":     "gdisk",
	"sfdisk":     "fdisk",
	"blkid":      "util-linux",
	"losetup":    "mount",
	"mkfs.vfat":  "dosfstools",
	"fsck.fat":   "dosfstools",
	"mkfs.ext2":  "e2fsprogs",
	"mkfs.ext3":  "e2fsprogs",
	"mkfs.ext4":  "e2fsprogs",
	"mke2fs":     "e2fsprogs",
	"dumpe2fs":   "e2fsprogs",
	"mkntfs":     "ntfs-3g",
	"mkfs.xfs":   "xfsprogs",
	"xfs_db":     "xfsprogs",
	"mkfs.btrfs": "btrfs-progs",
	"btrfs":      "btrfs-progs",
	"mkfs.exfat": "exfatprogs",
	"mkswap":     "util-linux",
	"cryptsetup": "cryptsetup-bin",
	"pvcreate":   "lvm2",
	"xorriso":    "xorriso",
	"dd":         "coreutils",
	"mcopy":      "mtools",
	"mlabel":     "mtools",
	"mmd":        "mtools",
	"mdel":       "mtools",
	"fsck.vfat":  "dosfstools",
	"xfs_repair": "xfsprogs",
	"e2fsck":     "e2fsprogs",
}

// needTool fails the test when tool is not installed, naming the package to install.
func needTool(t testing.TB, tool string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		t.Fatalf("%s not found: install %s (make deps)", tool, toolPackages[tool])
	}
}

// needFile fails the test when a file a package provides (boot code) is missing.
func needFile(t testing.TB, path, pkg string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v: install %s (make deps)", err, pkg)
	}
	return b
}

// strictEnv reports whether tests must not skip for lack of privileges (CI and corpus runs).
func strictEnv() bool { return os.Getenv("CI") != "" || os.Getenv("CAULDRON_CORPUS") != "" }

// run runs a command, failing the test with its output when it fails.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	return runIn(t, "", name, args...)
}

func runIn(t testing.TB, stdin, name string, args ...string) string {
	t.Helper()
	needTool(t, name)
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout: %s\nstderr: %s", name, strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

// newImage makes a sparse file of size bytes in a temporary directory.
func newImage(t testing.TB, name string, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// ddInto copies file src into img at byte offset off without truncating img (and keeping it sparse).
func ddInto(t testing.TB, img string, off int64, src string) {
	t.Helper()
	run(t, "dd", "if="+src, "of="+img, "bs=64K", fmt.Sprintf("seek=%d", off), "oflag=seek_bytes", "conv=notrunc,sparse", "status=none")
}

// writeAt overwrites bytes of a file.
func writeAt(t testing.TB, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func readFileAt(t testing.TB, path string, off int64, n int) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

// sfdiskTable is `sfdisk --json` output.
type sfdiskTable struct {
	PartitionTable struct {
		Label      string `json:"label"`
		ID         string `json:"id"`
		FirstLBA   uint64 `json:"firstlba"`
		LastLBA    uint64 `json:"lastlba"`
		SectorSize int    `json:"sectorsize"`
		Partitions []struct {
			Node     string `json:"node"`
			Start    int64  `json:"start"`
			Size     int64  `json:"size"`
			Type     string `json:"type"`
			UUID     string `json:"uuid"`
			Name     string `json:"name"`
			Bootable bool   `json:"bootable"`
		} `json:"partitions"`
	} `json:"partitiontable"`
}

func sfdiskDump(t testing.TB, dev string) sfdiskTable {
	t.Helper()
	var st sfdiskTable
	out := run(t, "sfdisk", "--json", dev)
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("sfdisk --json %s: %v\n%s", dev, err, out)
	}
	if st.PartitionTable.SectorSize == 0 {
		st.PartitionTable.SectorSize = 512
	}
	return st
}

// nodeNumber is the partition number at the end of an sfdisk node name (disk.img3, /dev/loop0p3).
func nodeNumber(t testing.TB, node string) int {
	t.Helper()
	i := len(node)
	for i > 0 && node[i-1] >= '0' && node[i-1] <= '9' {
		i--
	}
	n, err := strconv.Atoi(node[i:])
	if err != nil {
		t.Fatalf("no partition number in node %q", node)
	}
	return n
}

// blkidProbe runs `blkid -p` (low-level probing, no cache) on a byte range of an image and returns
// TYPE, LABEL, UUID and PTTYPE. The udev output format is used because its *_ENC values escape
// bytes as \xNN, which decodes exactly (the export format shows non-ASCII bytes as M-C sequences).
func blkidProbe(t testing.TB, img string, off, size int64) map[string]string {
	t.Helper()
	needTool(t, "blkid")
	cmd := exec.Command("blkid", "-p", "-o", "udev", "-O", strconv.FormatInt(off, 10), "-S", strconv.FormatInt(size, 10), img)
	out, err := cmd.Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 2 {
		return map[string]string{} // nothing found
	}
	if err != nil {
		t.Fatalf("blkid -p %s at %d: %v\n%s", img, off, err, out)
	}
	names := map[string]string{"ID_FS_TYPE": "TYPE", "ID_FS_LABEL_ENC": "LABEL", "ID_FS_UUID_ENC": "UUID", "ID_PART_TABLE_TYPE": "PTTYPE"}
	kv := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && names[k] != "" {
			kv[names[k]] = decodeBlkidEnc(t, v)
		}
	}
	// blkid's names for the two containers; the model's are the short ones.
	switch kv["TYPE"] {
	case "LVM2_member":
		kv["TYPE"] = "lvm2"
	case "crypto_LUKS":
		kv["TYPE"] = "luks"
	}
	return kv
}

// decodeBlkidEnc undoes blkid's \xNN escapes.
func decodeBlkidEnc(t testing.TB, v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' && i+3 < len(v) && v[i+1] == 'x' {
			n, err := strconv.ParseUint(v[i+2:i+4], 16, 8)
			if err != nil {
				t.Fatalf("bad blkid escape in %q", v)
			}
			b.WriteByte(byte(n))
			i += 3
			continue
		}
		b.WriteByte(v[i])
	}
	return b.String()
}

// checkAgainstBlkid compares a detected filesystem with blkid's view of the same bytes.
func checkAgainstBlkid(t testing.TB, what string, fs *Filesystem, img string, off, size int64) {
	t.Helper()
	kv := blkidProbe(t, img, off, size)
	want := kv["TYPE"]
	if want == "" {
		want = "unknown"
	}
	if fs == nil {
		t.Errorf("%s: no filesystem detected, blkid says %q", what, want)
		return
	}
	if fs.Type != want {
		t.Errorf("%s: type %q, blkid says %q (%v)", what, fs.Type, want, kv)
	}
	if fs.Label != kv["LABEL"] {
		t.Errorf("%s: label %q, blkid says %q", what, fs.Label, kv["LABEL"])
	}
	if fs.UUID != kv["UUID"] {
		t.Errorf("%s: UUID %q, blkid says %q", what, fs.UUID, kv["UUID"])
	}
}

// losetup attaches img to a free loop device with the given sector size and detaches it when the
// test ends. Loop devices need root: without it the test is skipped, except in CI where that is a
// broken environment.
func losetup(t testing.TB, img string, sectorSize int) string {
	t.Helper()
	needTool(t, "losetup")
	if os.Geteuid() != 0 {
		if strictEnv() {
			t.Fatal("loop devices need root; run the tests as root in CI")
		}
		t.Skip("loop devices need root")
	}
	dev := strings.TrimSpace(run(t, "losetup", "--sector-size", strconv.Itoa(sectorSize), "--find", "--show", img))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "--detach", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup --detach %s: %v: %s", dev, err, out)
		}
	})
	return dev
}

// dataGaps is the complement of the given data extents in [0, size), computed independently of
// Disk.Gaps from a tool's view of the table.
func dataGaps(size int64, data []Extent) []Extent {
	covered := make([]Extent, len(data))
	copy(covered, data)
	for i := 1; i < len(covered); i++ { // insertion sort: a handful of extents
		for j := i; j > 0 && covered[j].Start < covered[j-1].Start; j-- {
			covered[j], covered[j-1] = covered[j-1], covered[j]
		}
	}
	var gaps []Extent
	pos := int64(0)
	for _, e := range covered {
		if e.Start > pos {
			gaps = append(gaps, Extent{pos, e.Start - pos})
		}
		pos = max(pos, e.End())
	}
	if pos < size {
		gaps = append(gaps, Extent{pos, size - pos})
	}
	return gaps
}

func partitionByNumber(d *Disk, n int) *Partition {
	for i := range d.Partitions {
		if d.Partitions[i].Number == n {
			return &d.Partitions[i]
		}
	}
	return nil
}
