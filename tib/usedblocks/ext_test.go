package usedblocks

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cauldron-dr/cauldron/internal/testenv"
)

// extCase is one way of making an ext filesystem with the real mke2fs.
type extCase struct {
	name  string
	mkfs  string   // mkfs.ext2, mkfs.ext3 or mkfs.ext4
	args  []string // extra mke2fs options
	size  int64
	big   int  // MiB of the big file
	mount bool // populate through a loop mount (kernel allocator) instead of mke2fs -d
	// wantUninit requires dumpe2fs to report BLOCK_UNINIT groups, so that the case really tests
	// the computed bitmaps.
	wantUninit bool
}

var extCases = []extCase{
	{name: "ext4-4k", mkfs: "mkfs.ext4", args: []string{"-b", "4096"}, size: 64 << 20, big: 8},
	{name: "ext4-1k", mkfs: "mkfs.ext4", args: []string{"-b", "1024"}, size: 48 << 20, big: 5, wantUninit: true},
	{name: "ext4-no-flex_bg", mkfs: "mkfs.ext4", args: []string{"-b", "4096", "-g", "8192", "-O", "^flex_bg"}, size: 200 << 20, big: 6, wantUninit: true},
	{name: "ext4-64bit", mkfs: "mkfs.ext4", args: []string{"-b", "4096", "-O", "64bit"}, size: 160 << 20, big: 4},
	{name: "ext4-^64bit", mkfs: "mkfs.ext4", args: []string{"-b", "4096", "-O", "^64bit"}, size: 160 << 20, big: 4},
	{name: "ext2", mkfs: "mkfs.ext2", size: 40 << 20, big: 3},
	{name: "ext3", mkfs: "mkfs.ext3", size: 40 << 20, big: 3},
	{name: "ext4-300M-lazy", mkfs: "mkfs.ext4", args: []string{"-b", "4096", "-g", "8192", "-E", "lazy_itable_init=1"}, size: 300 << 20, big: 10, wantUninit: true},
	{name: "ext4-sparse_super2", mkfs: "mkfs.ext4", args: []string{"-b", "1024", "-O", "sparse_super2"}, size: 64 << 20, big: 3},
	{name: "ext4-meta_bg", mkfs: "mkfs.ext4", args: []string{"-b", "1024", "-O", "meta_bg,^resize_inode"}, size: 64 << 20, big: 3, wantUninit: true},
	// 64 groups of 16 descriptors per block: four meta groups, whose BLOCK_UNINIT last groups
	// hold descriptor copies no bitmap on disk records.
	{name: "ext4-meta_bg-many", mkfs: "mkfs.ext4", args: []string{"-b", "1024", "-g", "1024", "-O", "meta_bg,^resize_inode,64bit"}, size: 64 << 20, big: 4, wantUninit: true},
	{name: "ext4-gdt_csum", mkfs: "mkfs.ext4", args: []string{"-b", "1024", "-O", "^metadata_csum,uninit_bg"}, size: 48 << 20, big: 3, wantUninit: true},
	{name: "ext4-bigalloc", mkfs: "mkfs.ext4", args: []string{"-b", "4096", "-O", "bigalloc", "-C", "16384"}, size: 96 << 20, big: 4},
	{name: "ext4-mounted", mkfs: "mkfs.ext4", args: []string{"-b", "4096"}, size: 96 << 20, big: 6, mount: true},
	{name: "ext4-1k-mounted", mkfs: "mkfs.ext4", args: []string{"-b", "1024", "-O", "meta_bg,^resize_inode"}, size: 40 << 20, big: 3, mount: true},
}

func TestExtRealImages(t *testing.T) {
	needTools(t, "mkfs.ext4", "mkfs.ext3", "mkfs.ext2", "dumpe2fs", "e2fsck", "debugfs")
	for _, c := range extCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			testExtCase(t, c)
		})
	}
}

func testExtCase(t *testing.T, c extCase) {
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	sums := makeTree(t, tree, uint64(len(c.name)), c.big)
	img := newImage(t, dir, "fs.img", c.size)
	args := append([]string{"-q", "-F"}, c.args...)
	if c.mount {
		run(t, c.mkfs, append(args, img)...)
		populateByMount(t, img, tree)
	} else {
		run(t, c.mkfs, append(args, "-d", tree, img)...)
	}
	// e2fsck -fn first: the summary counts dumpe2fs prints must be right to compare against.
	run(t, "e2fsck", "-fn", img)
	hdr := run(t, "dumpe2fs", "-h", img)
	full := run(t, "dumpe2fs", img)
	if c.wantUninit && !strings.Contains(full, "BLOCK_UNINIT") {
		t.Fatalf("mke2fs made no BLOCK_UNINIT group; the case does not test what it should")
	}

	m := mapImage(t, img, Ext)
	blocks, free, bs := field(t, hdr, "Block count"), field(t, hdr, "Free blocks"), field(t, hdr, "Block size")
	unitBlocks := m.BlockSize / bs // >1 only with bigalloc
	fsUnits := blocks / unitBlocks
	if got, want := countIn(m, 0, fsUnits)*unitBlocks, blocks-free; got != want {
		t.Errorf("used blocks %d, dumpe2fs says %d (block count %d - free %d)", got, want, blocks, free)
	}
	if countIn(m, fsUnits, m.Blocks) != m.Blocks-fsUnits {
		t.Errorf("blocks past the filesystem's end are not all marked used")
	}

	restored := usedOnlyCopy(t, img, m)
	if out, err := exec.Command("e2fsck", "-fn", restored).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck on the used-blocks-only copy: %v\n%s", err, out)
	}
	dump := filepath.Join(dir, "dump")
	if err := os.Mkdir(dump, 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "debugfs", "-R", "rdump / "+dump, restored)
	checkTree(t, dump, sums)
}

// populateByMount copies tree into the image through a loop mount, so that the kernel's allocator
// (not mke2fs's) places the files, then deletes some so that the bitmaps have holes. It skips when
// mounting is not possible (not root, no loop devices).
func populateByMount(t *testing.T, img, tree string) {
	t.Helper()
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		testenv.SkipOrFail(t, "cannot loop-mount here: %v %s", err, out)
	}
	mounted := true
	defer func() {
		if mounted {
			exec.Command("umount", mnt).Run()
		}
	}()
	// Files written and then deleted leave freed blocks among used ones.
	scratch := filepath.Join(mnt, "scratch")
	if err := os.WriteFile(scratch, bytes.Repeat([]byte("x"), 3<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "cp", "-a", tree+"/.", mnt)
	if err := os.Remove(scratch); err != nil {
		t.Fatal(err)
	}
	run(t, "umount", mnt)
	mounted = false
}

// TestExtRefusesUnsafe checks the volumes whose bitmaps must not be trusted: mounted (journal
// needs recovery), not cleanly unmounted, with errors, and with unknown layout features.
func TestExtRefusesUnsafe(t *testing.T) {
	needTools(t, "mkfs.ext4")
	dir := t.TempDir()
	img := newImage(t, dir, "fs.img", 16<<20)
	run(t, "mkfs.ext4", "-q", "-F", img)
	clean, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Ext(bytes.NewReader(clean), int64(len(clean))); err != nil {
		t.Fatalf("clean image: %v", err)
	}
	le16 := func(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }
	le32 := func(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
	incompat := binary.LittleEndian.Uint32(clean[1024+0x60:])
	for _, tc := range []struct {
		name string
		off  int
		data []byte
		want string
	}{
		{"needs_recovery", 1024 + 0x60, le32(incompat | extIncompatRecover), "journal needs recovery"},
		{"journal device", 1024 + 0x60, le32(incompat | extIncompatJournalDev), "external journal"},
		{"unknown incompat", 1024 + 0x60, le32(incompat | 0x100000), "unknown incompatible features 0x100000"},
		{"compression", 1024 + 0x60, le32(incompat | extIncompatCompression), "unknown incompatible features 0x1"},
		{"not clean", 1024 + 0x3A, le16(0), "not cleanly unmounted"},
		{"errors", 1024 + 0x3A, le16(extStateValid | extStateErrors), "errors recorded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := corrupt(clean, tc.off, tc.data)
			_, err := Ext(bytes.NewReader(img), int64(len(img)))
			if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an ErrUnsupported mentioning %q", err, tc.want)
			}
		})
	}
}

// TestExtMountedImage copies the image of a mounted filesystem, as capturing a live volume would:
// its journal needs recovery, so it must be refused rather than trusted.
func TestExtMountedImage(t *testing.T) {
	needTools(t, "mkfs.ext4")
	dir := t.TempDir()
	img := newImage(t, dir, "fs.img", 16<<20)
	run(t, "mkfs.ext4", "-q", "-F", img)
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		testenv.SkipOrFail(t, "cannot loop-mount here: %v %s", err, out)
	}
	defer exec.Command("umount", mnt).Run()
	if err := os.WriteFile(filepath.Join(mnt, "f"), []byte("live"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "sync")
	snap, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Ext(bytes.NewReader(snap), int64(len(snap)))
	if !errors.Is(err, ErrUnsupported) {
		t.Fatalf("mounted image: got %v, want ErrUnsupported", err)
	}
	t.Log(err)
}

// TestExtCorrupt damages structures of a real image one at a time: each must give an error that
// names the filesystem and the structure, never a panic or a map.
func TestExtCorrupt(t *testing.T) {
	needTools(t, "mkfs.ext4")
	dir := t.TempDir()
	img := newImage(t, dir, "fs.img", 32<<20)
	// No checksums, so that the damaged descriptors reach the location checks.
	run(t, "mkfs.ext4", "-q", "-F", "-b", "4096", "-O", "^64bit,^metadata_csum,^uninit_bg", img)
	clean, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	le32 := func(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
	gdt := 4096 // 4 KiB blocks: the descriptor table is block 1
	for _, tc := range []struct {
		name string
		img  []byte
		want string
	}{
		{"bad magic", corrupt(clean, 1024+0x38, []byte{0, 0}), "ext: superblock at byte 1024: magic 0x0000"},
		{"block size", corrupt(clean, 1024+0x18, le32(9)), "block size 1024<<9"},
		{"too many blocks", corrupt(clean, 1024+0x4, le32(1<<30)), "do not fit the volume"},
		{"blocks per group", corrupt(clean, 1024+0x20, le32(0)), "blocks per group"},
		{"inodes per group", corrupt(clean, 1024+0x28, le32(0)), "inodes per group"},
		{"inode size", corrupt(clean, 1024+0x58, []byte{100, 0}), "inode size 100"},
		{"first data block", corrupt(clean, 1024+0x14, le32(1)), "first data block 1"},
		{"block bitmap beyond", corrupt(clean, gdt, le32(999999)), "ext4: group descriptor 0 at byte 4096: block bitmap at block 999999 is beyond the volume's 8192 blocks"},
		{"inode table beyond", corrupt(clean, gdt+8, le32(8190)), "inode table"},
		{"bitmap on superblock", corrupt(clean, gdt+4, le32(0)), "overlaps the superblock"},
		{"truncated", clean[:20000], "do not fit the volume"},
		{"tiny", clean[:1500], "ext: superblock at byte 1024"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Ext(bytes.NewReader(tc.img), int64(len(tc.img)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got (%v, %v), want an error containing %q", m, err, tc.want)
			}
		})
	}
}

// TestExtChecksums damages checksummed structures of real images: a descriptor claiming
// BLOCK_UNINIT that its checksum does not cover must not make us skip the group's blocks.
func TestExtChecksums(t *testing.T) {
	needTools(t, "mkfs.ext4")
	for _, tc := range []struct {
		name     string
		features string
	}{
		{"metadata_csum", "metadata_csum,64bit"},
		{"gdt_csum", "^metadata_csum,uninit_bg,^64bit"},
		{"gdt_csum-64bit", "^metadata_csum,uninit_bg,64bit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := newImage(t, t.TempDir(), "fs.img", 16<<20)
			run(t, "mkfs.ext4", "-q", "-F", "-b", "4096", "-O", tc.features, img)
			clean, err := os.ReadFile(img)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Ext(bytes.NewReader(clean), int64(len(clean))); err != nil {
				t.Fatalf("clean image: %v", err)
			}
			flags := binary.LittleEndian.Uint16(clean[4096+0x12:])
			bad := corrupt(clean, 4096+0x12, binary.LittleEndian.AppendUint16(nil, flags|extBGBlockUninit))
			_, err = Ext(bytes.NewReader(bad), int64(len(bad)))
			if err == nil || !strings.Contains(err.Error(), "ext4: group descriptor 0 at byte 4096: checksum") {
				t.Fatalf("BLOCK_UNINIT forged on group 0: got %v", err)
			}
			if tc.name == "metadata_csum" {
				bad := corrupt(clean, 1024+0x2C, []byte{1, 2, 3, 4}) // s_mtime: harmless but checksummed
				_, err := Ext(bytes.NewReader(bad), int64(len(bad)))
				if err == nil || !strings.Contains(err.Error(), "superblock at byte 1024: checksum") {
					t.Fatalf("superblock damaged: got %v", err)
				}
			}
		})
	}
}

func TestForFilesystem(t *testing.T) {
	m, err := ForFilesystem("xfs", bytes.NewReader(make([]byte, 4096)), 4096)
	if m != nil || err != nil {
		t.Fatalf("xfs: got (%v, %v), want (nil, nil)", m, err)
	}
	for _, typ := range []string{"ext2", "ext3", "ext4", "vfat", "ntfs"} {
		// A zero volume is none of them: each must be routed to a reader that says so.
		m, err := ForFilesystem(typ, bytes.NewReader(make([]byte, 8192)), 8192)
		if m != nil || err == nil {
			t.Errorf("%s on zeros: got (%v, %v), want an error", typ, m, err)
		}
	}
	needTools(t, "mkfs.ext4")
	img := newImage(t, t.TempDir(), "fs.img", 8<<20)
	run(t, "mkfs.ext4", "-q", "-F", img)
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err = ForFilesystem("ext4", f, 8<<20)
	if err != nil || m == nil || m.Count() == 0 {
		t.Fatalf("ext4: got (%v, %v)", m, err)
	}
}

// BenchmarkExt maps a fresh 1 GiB ext4 (sparse on disk): the cost is reading 8 group descriptors'
// worth of bitmaps and walking the map.
func BenchmarkExt(b *testing.B) {
	needTools(b, "mkfs.ext4")
	img := newImage(b, b.TempDir(), "fs.img", 1<<30)
	run(b, "mkfs.ext4", "-q", "-F", "-b", "4096", img)
	f, err := os.Open(img)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	b.SetBytes(1 << 30)
	for b.Loop() {
		m, err := Ext(f, 1<<30)
		if err != nil || m.Count() == 0 {
			b.Fatal(m, err)
		}
	}
}
