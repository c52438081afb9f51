package partition

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"unicode/utf8"
)

// fsCase makes one filesystem image with a real mkfs tool and says how its tools count used bytes.
type fsCase struct {
	name string
	size int64
	mkfs func(t testing.TB, img string)
	// used returns the used bytes as the filesystem's own tools report them; nil: 0 expected.
	used func(t testing.TB, img string) int64
}

func mkfs(args ...string) func(t testing.TB, img string) {
	return func(t testing.TB, img string) { run(t, args[0], append(args[1:], img)...) }
}

func fsCases() []fsCase {
	extUsed := func(t testing.TB, img string) int64 {
		out := run(t, "dumpe2fs", "-h", img)
		return (field(t, out, `Block count:\s+(\d+)`) - field(t, out, `Free blocks:\s+(\d+)`)) * field(t, out, `Block size:\s+(\d+)`)
	}
	return []fsCase{
		{"ext2", 8 << 20, mkfs("mkfs.ext2", "-F", "-q", "-L", "e2", "-U", "00000000-0000-4000-8000-000000000002"), extUsed},
		{"ext3", 16 << 20, mkfs("mkfs.ext3", "-F", "-q", "-L", "e3"), extUsed},
		{"ext4", 32 << 20, mkfs("mkfs.ext4", "-F", "-q", "-L", "e4 label", "-b", "4096"), extUsed},
		{"ext4 without 64bit", 16 << 20, mkfs("mkfs.ext4", "-F", "-q", "-O", "^64bit", "-L", "lo"), extUsed},
		{"ext4 64bit with 1k blocks", 32 << 20, mkfs("mkfs.ext4", "-F", "-q", "-O", "64bit", "-b", "1024"), extUsed},
		{"ext journal device", 8 << 20, mkfs("mke2fs", "-F", "-q", "-O", "journal_dev", "-L", "jrnl"), nil},
		{"xfs", 300 << 20, mkfs("mkfs.xfs", "-q", "-f", "-L", "xfslabel"), func(t testing.TB, img string) int64 {
			out := run(t, "xfs_db", "-r", "-c", "sb 0", "-c", "print dblocks fdblocks blocksize", img)
			return (field(t, out, `dblocks = (\d+)`) - field(t, out, `fdblocks = (\d+)`)) * field(t, out, `blocksize = (\d+)`)
		}},
		{"btrfs", 128 << 20, mkfs("mkfs.btrfs", "-q", "-f", "-L", "btrfs label"), func(t testing.TB, img string) int64 {
			return field(t, run(t, "btrfs", "inspect-internal", "dump-super", img), `(?m)^bytes_used\s+(\d+)`)
		}},
		{"ntfs", 16 << 20, mkfs("mkntfs", "-F", "-f", "-q", "-L", "Système 😀"), nil},
		{"ntfs 4k sectors", 16 << 20, mkfs("mkntfs", "-F", "-f", "-q", "-s", "4096", "-c", "8192", "-L", "big"), nil},
		{"exfat", 16 << 20, mkfs("mkfs.exfat", "-L", "EXLABEL"), nil},
		{"fat12", 2 << 20, mkfs("mkfs.vfat", "-F", "12", "-n", "SMALL"), nil},
		{"fat16", 24 << 20, mkfs("mkfs.vfat", "-F", "16", "-n", "MIDDLE", "-i", "DEADBEEF"), nil},
		{"fat16 without label", 24 << 20, mkfs("mkfs.vfat", "-F", "16"), nil},
		{"fat32", 40 << 20, mkfs("mkfs.vfat", "-F", "32", "-n", "LARGE"), fsckFATUsed},
		{"fat32 4k sectors", 256 << 20, mkfs("mkfs.vfat", "-F", "32", "-S", "4096", "-n", "LARGE4K"), fsckFATUsed},
		{"swap", 8 << 20, mkfs("mkswap", "-L", "swaplabel", "-U", "12345678-1234-4234-8234-123456789abc"), nil},
		{"luks1", 4 << 20, luksFormat("luks1"), nil},
		{"luks2", 20 << 20, luksFormat("luks2", "--label", "cryptroot"), nil},
	}
}

func luksFormat(typ string, args ...string) func(t testing.TB, img string) {
	return func(t testing.TB, img string) {
		key := newImage(t, "key", 0)
		if err := os.WriteFile(key, []byte("not a secret"), 0o600); err != nil {
			t.Fatal(err)
		}
		// The fastest key derivation cryptsetup allows: the test reads headers, not keys.
		a := append([]string{"luksFormat", "-q", "--type", typ, "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000",
			"--key-file", key}, args...)
		run(t, "cryptsetup", append(a, img)...)
	}
}

// fsckFATUsed is the FAT32 volume's size less its free clusters, as fsck.fat counts them.
func fsckFATUsed(t testing.TB, img string) int64 {
	out := run(t, "fsck.fat", "-n", "-v", img)
	m := regexp.MustCompile(`(\d+)/(\d+) clusters`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no cluster counts in fsck.fat output:\n%s", out)
	}
	used, _ := strconv.ParseInt(m[1], 10, 64)
	all, _ := strconv.ParseInt(m[2], 10, 64)
	total := field(t, out, `(\d+) sectors total`) * field(t, out, `(\d+) bytes per logical sector`)
	return total - (all-used)*field(t, out, `(\d+) bytes per cluster`)
}

// field extracts the integer captured by re from a tool's output.
func field(t testing.TB, out, re string) int64 {
	t.Helper()
	m := regexp.MustCompile(re).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("%q not found in:\n%s", re, out)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestDetectFilesystemAgainstBlkid makes each filesystem with its own mkfs, places it at an
// offset inside a larger disk image, and compares what DetectFilesystem finds there with blkid -p
// on the same byte range, and the used bytes with the filesystem's own tools.
func TestDetectFilesystemAgainstBlkid(t *testing.T) {
	for _, c := range fsCases() {
		t.Run(c.name, func(t *testing.T) {
			vol := newImage(t, "vol", c.size)
			c.mkfs(t, vol)
			const off = 3 << 20
			disk := newImage(t, "disk", off+c.size+1<<20)
			ddInto(t, disk, off, vol)
			f, err := os.Open(disk)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			fs := DetectFilesystem(f, off, c.size)
			checkAgainstBlkid(t, c.name, fs, disk, off, c.size)
			var want int64
			if c.used != nil {
				want = c.used(t, vol)
				if want <= 0 {
					t.Fatalf("tool reports %d used bytes", want)
				}
			}
			if fs.UsedBytes != want {
				t.Errorf("used bytes %d, the filesystem's tools say %d", fs.UsedBytes, want)
			}
			// The volume's own file gives the same answer as the window of the disk.
			g, err := os.Open(vol)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			if alone := DetectFilesystem(g, 0, c.size); *alone != *fs {
				t.Errorf("alone %+v, in the disk %+v", alone, fs)
			}
			// Cut short, the volume is either not recognised or recognised as what it is:
			// never misread as something else.
			for _, n := range []int64{600, 1500, 4096, 70000} {
				cut := DetectFilesystem(f, off, n)
				checkFilesystem(t, cut)
				if cut.Type != "unknown" && cut.Type != fs.Type {
					t.Errorf("%d-byte window recognised as %+v", n, cut)
				}
			}
		})
	}
}

// TestDetectFATLabelPrecedence checks that the root directory's volume label wins over the boot
// sector's, as for blkid and Windows (which changes only the directory entry).
func TestDetectFATLabelPrecedence(t *testing.T) {
	for _, c := range []struct {
		fat      string
		size     int64
		labelOff int64
	}{{"16", 24 << 20, 43}, {"32", 40 << 20, 71}} {
		t.Run("FAT"+c.fat, func(t *testing.T) {
			img := newImage(t, "fat", c.size)
			run(t, "mkfs.vfat", "-F", c.fat, "-n", "DIRLABEL", img)
			writeAt(t, img, c.labelOff, []byte("BOOTLABEL  "))
			f, err := os.Open(img)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			fs := DetectFilesystem(f, 0, c.size)
			if fs.Label != "DIRLABEL" {
				t.Errorf("label %q, want the directory's", fs.Label)
			}
			checkAgainstBlkid(t, "fat", fs, img, 0, c.size)
		})
	}
}

// TestDetectFAT32LabelInLaterCluster puts the volume label entry in the root directory's second
// cluster (mlabel appends it after 20 files in 512-byte clusters), so the FAT chain is followed.
func TestDetectFAT32LabelInLaterCluster(t *testing.T) {
	img := newImage(t, "fat", 40<<20)
	run(t, "mkfs.vfat", "-F", "32", "-s", "1", img)
	src := newImage(t, "f", 10)
	for i := range 20 {
		run(t, "mcopy", "-i", img, src, fmt.Sprintf("::F%02d.TXT", i))
	}
	run(t, "mlabel", "-i", img, "::LATER")
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fs := DetectFilesystem(f, 0, 40<<20)
	checkAgainstBlkid(t, "fat32", fs, img, 0, 40<<20)
	if fs.Label != "LATER" {
		t.Errorf("label %q", fs.Label)
	}
}

// TestDetectLVM2 needs a block device: pvcreate refuses regular files.
func TestDetectLVM2(t *testing.T) {
	needTool(t, "pvcreate")
	img := newImage(t, "pv", 16<<20)
	dev := losetup(t, img, 512)
	cmd := exec.Command("pvcreate", "-q", "-ff", "-y", "--norestorefile", "--uuid", "AbCdEf-0123-4567-89ab-cdEF-gHiJ-klMnOp", dev)
	// pvcreate complains about inherited descriptors (go test's pipes); the complaint is harmless.
	cmd.Env = append(os.Environ(), "LVM_SUPPRESS_FD_WARNINGS=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pvcreate: %v\n%s", err, out)
	}
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fs := DetectFilesystem(f, 0, 16<<20)
	checkAgainstBlkid(t, "pv", fs, img, 0, 16<<20)
	if fs.UUID != "AbCdEf-0123-4567-89ab-cdEF-gHiJ-klMnOp" {
		t.Errorf("UUID %q", fs.UUID)
	}
	// A label header with a wrong CRC is not believed.
	b := readFileAt(t, img, 512, 512)
	b[100] ^= 0xFF
	writeAt(t, img, 512, b)
	if fs := DetectFilesystem(f, 0, 16<<20); fs.Type != "unknown" {
		t.Errorf("corrupt LVM label recognised: %+v", fs)
	}
}

func TestDetectISO9660(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/a.txt", []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	iso := newImage(t, "x.iso", 0)
	run(t, "xorriso", "-as", "mkisofs", "-quiet", "-V", "PLAIN_ISO", "-o", iso, dir)
	fi, err := os.Stat(iso)
	if err != nil {
		t.Fatal(err)
	}
	const off = 1 << 20
	disk := newImage(t, "disk", off+fi.Size())
	ddInto(t, disk, off, iso)
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fs := DetectFilesystem(f, off, fi.Size())
	checkAgainstBlkid(t, "iso", fs, disk, off, fi.Size())
	if want := isoBlocks(t, iso) * 2048; fs.UsedBytes != want {
		t.Errorf("used %d, xorriso says %d", fs.UsedBytes, want)
	}
}

func TestDetectFilesystemNothing(t *testing.T) {
	for name, b := range map[string][]byte{
		"zeros":  make([]byte, 1<<20),
		"ones":   bytes.Repeat([]byte{0xFF}, 1<<20),
		"empty":  nil,
		"ramp":   ramp(200 << 10),
		"tiny":   []byte("NTFS"),
		"offset": make([]byte, 10),
	} {
		fs := DetectFilesystem(bytes.NewReader(b), 0, int64(len(b)))
		if fs == nil || fs.Type != "unknown" || fs.Label != "" || fs.UUID != "" || fs.UsedBytes != 0 {
			t.Errorf("%s: %+v", name, fs)
		}
	}
	// Windows outside the reader, or negative, are simply not recognised.
	for _, w := range [][2]int64{{-1, 100}, {0, -5}, {1 << 40, 1 << 20}, {1<<63 - 10, 1 << 20}} {
		if fs := DetectFilesystem(bytes.NewReader(make([]byte, 4096)), w[0], w[1]); fs.Type != "unknown" {
			t.Errorf("window %v: %+v", w, fs)
		}
	}
}

func ramp(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}

// checkFilesystem asserts the invariants of any DetectFilesystem result (used by the fuzz target).
func checkFilesystem(t *testing.T, fs *Filesystem) {
	t.Helper()
	if fs == nil || fs.Type == "" {
		t.Fatalf("DetectFilesystem returned %+v", fs)
	}
	if !utf8.ValidString(fs.Label) || !utf8.ValidString(fs.UUID) {
		t.Errorf("invalid UTF-8 in %q / %q", fs.Label, fs.UUID)
	}
	if fs.UsedBytes < 0 {
		t.Errorf("negative used bytes %d", fs.UsedBytes)
	}
	if fs.Type == "unknown" && (fs.Label != "" || fs.UUID != "" || fs.UsedBytes != 0) {
		t.Errorf("unknown volume with details: %+v", fs)
	}
}

func TestUUIDFormats(t *testing.T) {
	b := []byte{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}
	if got := uuidString(b); got != "01234567-89ab-cdef-0123-456789abcdef" {
		t.Errorf("uuidString = %s", got)
	}
	if got := isoDate([]byte("2024010212304500\x00")); got != "2024-01-02-12-30-45-00" {
		t.Errorf("isoDate = %s", got)
	}
	if isoDate([]byte("0000000000000000\x00")) != "" || isoDate(make([]byte, 17)) != "" {
		t.Error("unset ISO date not recognised")
	}
}
