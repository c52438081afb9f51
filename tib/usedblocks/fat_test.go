package usedblocks

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

type fatCase struct {
	name    string
	args    []string // mkfs.vfat options
	size    int64
	big     int  // MiB of the big file
	aligned bool // whether the data region should start on a cluster boundary
}

var fatCases = []fatCase{
	// mkfs.fat does not align FAT12's data region to its clusters.
	{name: "FAT12", args: []string{"-F", "12"}, size: 4 << 20, big: 1},
	{name: "FAT12-odd-size", args: []string{"-F", "12", "-s", "4"}, size: 3<<20 + 5*512, big: 1},
	{name: "FAT16", args: []string{"-F", "16"}, size: 48 << 20, big: 6, aligned: true},
	{name: "FAT16-unaligned", args: []string{"-F", "16", "-s", "8", "-a", "-R", "3"}, size: 48 << 20, big: 6},
	{name: "FAT32", args: []string{"-F", "32", "-s", "1"}, size: 48 << 20, big: 6, aligned: true},
	{name: "FAT32-4k-sectors", args: []string{"-F", "32", "-S", "4096", "-s", "1"}, size: 300 << 20, big: 6, aligned: true},
	{name: "FAT32-unaligned", args: []string{"-F", "32", "-s", "8", "-a", "-R", "33"}, size: 300 << 20, big: 6},
}

func TestFATRealImages(t *testing.T) {
	needTools(t, "mkfs.vfat", "fsck.vfat", "mcopy", "mmd", "mdel")
	for _, c := range fatCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			testFATCase(t, c)
		})
	}
}

func testFATCase(t *testing.T, c fatCase) {
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	sums := makeTree(t, tree, uint64(len(c.name)), c.big)
	img := newImage(t, dir, "fs.img", c.size)
	run(t, "mkfs.vfat", append(c.args, img)...)
	// Write a file, fill the volume, then delete the filler: the files copied after land among
	// freed clusters, so the FAT has holes and chains that jump.
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, bytes.Repeat([]byte{0xAB}, 300000), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "mcopy", "-i", img, filler, "::/filler1")
	run(t, "mmd", "-i", img, "::/emptydir")
	run(t, "mcopy", "-i", img, filler, "::/filler2")
	run(t, "mdel", "-i", img, "::/filler1")
	entries, err := filepath.Glob(filepath.Join(tree, "*"))
	if err != nil {
		t.Fatal(err)
	}
	run(t, "mcopy", append([]string{"-s", "-i", img}, append(entries, "::/")...)...)
	run(t, "mdel", "-i", img, "::/filler2")

	fsck := run(t, "fsck.vfat", "-n", "-v", img)
	m := mapImage(t, img, FAT)

	boot := make([]byte, 512)
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.ReadAt(boot, 0); err != nil {
		t.Fatal(err)
	}
	fs, err := parseFATBoot(boot, c.size)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(c.name, fs.name) {
		t.Fatalf("detected %s", fs.name)
	}
	if aligned := fs.dataOffset%fs.clusterSize == 0; aligned != c.aligned {
		t.Fatalf("data region at byte %d with %d-byte clusters: aligned %v, the case wants %v", fs.dataOffset, fs.clusterSize, aligned, c.aligned)
	}
	// Exact and as coarse as exactness allows: clusters when aligned, else the alignment.
	if fs.dataOffset%m.BlockSize != 0 || fs.clusterSize%m.BlockSize != 0 || fs.dataOffset%(2*m.BlockSize) == 0 && m.BlockSize < fs.clusterSize {
		t.Fatalf("block size %d with %d-byte clusters and data at byte %d", m.BlockSize, fs.clusterSize, fs.dataOffset)
	}

	// fsck.fat counts the clusters in use itself, from the directory tree: "N files, used/total clusters".
	mm := regexp.MustCompile(`(\d+) files, (\d+)/(\d+) clusters`).FindStringSubmatch(fsck)
	if mm == nil {
		t.Fatalf("no cluster summary in fsck output:\n%s", fsck)
	}
	used, _ := strconv.ParseInt(mm[2], 10, 64)
	total, _ := strconv.ParseInt(mm[3], 10, 64)
	if total != fs.clusters {
		t.Errorf("%d clusters, fsck.vfat says %d", fs.clusters, total)
	}
	per := fs.clusterSize / m.BlockSize
	first := fs.dataOffset / m.BlockSize
	if got := countIn(m, first, first+fs.clusters*per) / per; got != used {
		t.Errorf("%d used clusters, fsck.vfat says %d", got, used)
	}
	if got := countIn(m, 0, first); got != first {
		t.Errorf("%d of the %d blocks before the data region are used, want all", got, first)
	}

	restored := usedOnlyCopy(t, img, m)
	if out, err := exec.Command("fsck.vfat", "-n", restored).CombinedOutput(); err != nil {
		t.Fatalf("fsck.vfat on the used-blocks-only copy: %v\n%s", err, out)
	}
	out := filepath.Join(dir, "out")
	run(t, "mcopy", "-s", "-n", "-i", restored, "::/", out)
	checkTree(t, out, sums)
	if st, err := os.Stat(filepath.Join(out, "emptydir")); err != nil || !st.IsDir() {
		t.Errorf("emptydir lost: %v", err)
	}
}

// TestFATCorrupt damages a real FAT16 image's boot sector and truncates it: each must give an
// error naming the structure, never a panic or a map.
func TestFATCorrupt(t *testing.T) {
	needTools(t, "mkfs.vfat")
	img := newImage(t, t.TempDir(), "fs.img", 16<<20)
	run(t, "mkfs.vfat", "-F", "16", img)
	clean, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	le16 := func(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }
	for _, tc := range []struct {
		name string
		img  []byte
		want string
	}{
		{"sector size", corrupt(clean, 0x0B, le16(300)), "FAT: boot sector at byte 0: 300 bytes per sector"},
		{"cluster size", corrupt(clean, 0x0D, []byte{3}), "3 sectors per cluster"},
		{"no reserved", corrupt(clean, 0x0E, le16(0)), "no reserved sectors"},
		{"no FATs", corrupt(clean, 0x10, []byte{0}), "no FATs"},
		{"huge FAT", corrupt(clean, 0x16, le16(0xFFFF)), "past the volume"},
		{"truncated", clean[:1<<20], "do not fit the volume"},
		{"tiny", clean[:100], "FAT: boot sector at byte 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := FAT(bytes.NewReader(tc.img), int64(len(tc.img)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got (%v, %v), want an error containing %q", m, err, tc.want)
			}
		})
	}
}

// TestFATCopiesDisagree checks that a cluster marked used in only the second FAT still counts:
// the map must keep whatever either copy may be trusted for.
func TestFATCopiesDisagree(t *testing.T) {
	needTools(t, "mkfs.vfat")
	img := newImage(t, t.TempDir(), "fs.img", 16<<20)
	run(t, "mkfs.vfat", "-F", "16", img)
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	fs, err := parseFATBoot(data, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	const cluster = 1000
	// An end-of-chain marker for cluster 1000 in the second FAT only.
	binary.LittleEndian.PutUint16(data[fs.fatOffset+fs.fatSize+cluster*2:], 0xFFFF)
	m, err := FAT(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	b := (fs.dataOffset + (cluster-2)*fs.clusterSize) / m.BlockSize
	if !m.IsSet(b) {
		t.Fatalf("cluster %d (block %d), used in FAT 2 only, is not marked used", cluster, b)
	}
	if m.IsSet(b + fs.clusterSize/m.BlockSize) {
		t.Fatalf("cluster %d, free in both FATs, is marked used", cluster+1)
	}
}

// sparseVolume reads as zeros except for a few segments: a 100 GiB volume costs nothing.
type sparseVolume struct {
	size int64
	segs map[int64][]byte
}

func (v sparseVolume) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= v.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), v.size-off))
	clear(p[:n])
	for at, data := range v.segs {
		lo, hi := max(at, off), min(at+int64(len(data)), off+int64(n))
		if lo < hi {
			copy(p[lo-off:hi-off], data[lo-at:hi-at])
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// TestFATLargeUnaligned covers the path no small image reaches: a 100 GiB FAT32 whose data region
// is not cluster aligned (33 reserved sectors, as old Windows formatted), where sector-sized
// blocks would make a map larger than fatMaxBlocks. The block size must grow to 1 KiB, and every
// block holding any byte of a used cluster (each straddles 33 blocks) must be used, no more.
func TestFATLargeUnaligned(t *testing.T) {
	const (
		sector   = 512
		spc      = 64
		reserved = 33
		total    = 100 << 30 / sector
		fatSecs  = 25600
	)
	boot := make([]byte, 512)
	binary.LittleEndian.PutUint16(boot[0x0B:], sector)
	boot[0x0D] = spc
	binary.LittleEndian.PutUint16(boot[0x0E:], reserved)
	boot[0x10] = 2
	binary.LittleEndian.PutUint32(boot[0x20:], total)
	binary.LittleEndian.PutUint32(boot[0x24:], fatSecs)
	binary.LittleEndian.PutUint32(boot[0x2C:], 2)
	boot[510], boot[511] = 0x55, 0xAA

	dataOffset := int64(reserved+2*fatSecs) * sector
	cs := int64(spc * sector)
	clusters := (int64(total) - reserved - 2*fatSecs) / spc
	used := []int64{2, 3, 4, 5, 1000000, clusters + 1}
	fat := make([]byte, fatSecs*sector)
	for _, c := range used {
		binary.LittleEndian.PutUint32(fat[c*4:], 0x0FFFFFFF)
	}
	vol := sparseVolume{size: total * sector, segs: map[int64][]byte{0: boot, reserved * sector: fat}}

	m, err := FAT(vol, vol.size)
	if err != nil {
		t.Fatal(err)
	}
	checkCovers(t, m, vol.size)
	if m.BlockSize != 1024 {
		t.Fatalf("block size %d, want 1024", m.BlockSize)
	}
	// The reference: every block touching the reserved region, the FATs or a used cluster.
	want := New(m.BlockSize, m.Blocks)
	want.SetRange(0, (dataOffset+m.BlockSize-1)/m.BlockSize)
	for _, c := range used {
		start := dataOffset + (c-2)*cs
		want.SetRange(start/m.BlockSize, (start+cs+m.BlockSize-1)/m.BlockSize)
	}
	if !equalMaps(m, want) {
		t.Fatalf("map has %d used blocks, want %d", m.Count(), want.Count())
	}
	if n := want.Count(); n != (dataOffset+4*cs+m.BlockSize-1)/m.BlockSize+2*33 {
		t.Fatalf("reference has %d blocks; the isolated clusters should straddle 33 blocks each", n)
	}
}
