package usedblocks

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The fuzz targets feed damaged volumes to each reader. A volume is given as its leading bytes
// plus a size: past the bytes it reads as zeros, so that a seed can describe a volume of megabytes
// with only its metadata, and the fuzzer spends its mutations where the structures are. Any input
// must give an error or a map that covers the volume and keeps its first block (every one of
// these filesystems has its boot sector or superblock there); a panic fails the target.

// maxFuzzSize bounds the volume a fuzzed size may claim, keeping maps (a bit per 512 bytes at
// worst) and block-group walks small enough for thousands of runs a second.
const maxFuzzSize = 256 << 20

// zeroPadReader reads data and then zeros, up to size.
type zeroPadReader struct {
	data []byte
	size int64
}

func (z zeroPadReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= z.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), z.size-off))
	clear(p[:n])
	if off < int64(len(z.data)) {
		copy(p[:n], z.data[off:])
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func fuzzOne(t *testing.T, fn func(io.ReaderAt, int64) (*Map, error), data []byte, size int64) {
	size = min(max(size, int64(len(data))), maxFuzzSize)
	if int64(len(data)) > size {
		data = data[:size]
	}
	m, err := fn(zeroPadReader{data, size}, size)
	if err != nil {
		if m != nil {
			t.Fatalf("map and error %v together", err)
		}
		return
	}
	checkCovers(t, m, size)
	if !m.IsSet(0) {
		t.Fatal("first block (boot sector or superblock) not marked used")
	}
}

// addSeed makes a small filesystem with a real mkfs (and populate, if not nil) and adds it to the
// corpus with its trailing zeros cut; the size is the second value.
func addSeed(f *testing.F, size int64, populate func(img string), mkfs string, args ...string) {
	f.Helper()
	needTools(f, mkfs)
	img := newImage(f, f.TempDir(), "seed.img", size)
	run(f, mkfs, append(args, img)...)
	if populate != nil {
		populate(img)
	}
	data, err := os.ReadFile(img)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(bytes.TrimRight(data, "\x00"), size)
}

// seedFile writes a small file to copy into seed images.
func seedFile(f *testing.F) string {
	p := filepath.Join(f.TempDir(), "seed.txt")
	if err := os.WriteFile(p, []byte(strings.Repeat("seed data ", 700)), 0o644); err != nil {
		f.Fatal(err)
	}
	return p
}

func FuzzExt(f *testing.F) {
	dir := f.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte(strings.Repeat("x", 5000)), 0o644); err != nil {
		f.Fatal(err)
	}
	addSeed(f, 256<<10, nil, "mkfs.ext4", "-q", "-F", "-b", "1024", "-N", "32", "-O", "^has_journal", "-d", dir)
	// Checksums stop almost every mutation of the structures they cover, so most seeds have none
	// (or only gdt_csum, which leaves the superblock open), letting the fuzzer reach the
	// descriptor and bitmap code.
	addSeed(f, 2<<20, nil, "mkfs.ext4", "-q", "-F", "-b", "4096", "-N", "32", "-O", "^has_journal,^resize_inode,^metadata_csum,^uninit_bg", "-d", dir)
	addSeed(f, 4<<20, nil, "mkfs.ext4", "-q", "-F", "-b", "1024", "-g", "1024", "-N", "64", "-O", "^has_journal,meta_bg,^resize_inode,64bit,^metadata_csum,^uninit_bg")
	addSeed(f, 4<<20, nil, "mkfs.ext4", "-q", "-F", "-b", "1024", "-g", "1024", "-N", "64", "-O", "^has_journal,^metadata_csum,uninit_bg,sparse_super2")
	addSeed(f, 2<<20, nil, "mkfs.ext4", "-q", "-F", "-b", "4096", "-N", "32", "-O", "^has_journal,bigalloc,^metadata_csum,^uninit_bg", "-C", "16384")
	addSeed(f, 128<<10, nil, "mkfs.ext2", "-q", "-F", "-b", "1024", "-N", "16")
	f.Fuzz(func(t *testing.T, data []byte, size int64) { fuzzOne(t, Ext, data, size) })
}

func FuzzFAT(f *testing.F) {
	src := seedFile(f)
	mcopy := func(img string) {
		needTools(f, "mcopy")
		run(f, "mcopy", "-i", img, src, "::/a.txt")
	}
	addSeed(f, 64<<10, mcopy, "mkfs.vfat", "-F", "12")
	addSeed(f, 2200<<10, mcopy, "mkfs.vfat", "-F", "16", "-s", "1")
	// mtools refuses a FAT32 below 65525 clusters, so the small one stays empty.
	addSeed(f, 1<<20, nil, "mkfs.vfat", "-F", "32", "-s", "1")
	addSeed(f, 34<<20, mcopy, "mkfs.vfat", "-F", "32", "-s", "1")
	f.Fuzz(func(t *testing.T, data []byte, size int64) { fuzzOne(t, FAT, data, size) })
}

func FuzzNTFS(f *testing.F) {
	src := seedFile(f)
	ntfscp := func(img string) {
		needTools(f, "ntfscp")
		run(f, "ntfscp", "-q", img, src, "/a.txt")
	}
	addSeed(f, 2<<20, ntfscp, "mkntfs", "-F", "-Q", "-q", "-c", "512")
	addSeed(f, 3<<20, ntfscp, "mkntfs", "-F", "-Q", "-q", "-c", "4096")
	f.Fuzz(func(t *testing.T, data []byte, size int64) { fuzzOne(t, NTFS, data, size) })
}

// TestFuzzSeedsMap checks that the seeds are what they should be: valid volumes every reader maps,
// so that the fuzzers start from inputs that reach the deep code.
func TestFuzzSeedsMap(t *testing.T) {
	for _, tc := range []struct {
		fn   func(io.ReaderAt, int64) (*Map, error)
		mkfs string
		args []string
		size int64
	}{
		{Ext, "mkfs.ext4", []string{"-q", "-F", "-b", "1024", "-N", "32", "-O", "^has_journal"}, 256 << 10},
		{Ext, "mkfs.ext4", []string{"-q", "-F", "-b", "1024", "-g", "1024", "-N", "64", "-O", "^has_journal,meta_bg,^resize_inode,64bit"}, 4 << 20},
		{FAT, "mkfs.vfat", []string{"-F", "12"}, 64 << 10},
		{NTFS, "mkntfs", []string{"-F", "-Q", "-q", "-c", "512"}, 2 << 20},
	} {
		needTools(t, tc.mkfs)
		img := newImage(t, t.TempDir(), "seed.img", tc.size)
		run(t, tc.mkfs, append(tc.args, img)...)
		data, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		trimmed := bytes.TrimRight(data, "\x00")
		m, err := tc.fn(zeroPadReader{trimmed, tc.size}, tc.size)
		if err != nil {
			t.Fatalf("%s %v: %v", tc.mkfs, tc.args, err)
		}
		want, err := tc.fn(bytes.NewReader(data), tc.size)
		if err != nil {
			t.Fatal(err)
		}
		if !equalMaps(m, want) {
			t.Fatalf("%s: the zero-padded seed maps differently from the image", tc.mkfs)
		}
	}
}

func equalMaps(a, b *Map) bool {
	return a.BlockSize == b.BlockSize && a.Blocks == b.Blocks && bytes.Equal(wordBytes(a), wordBytes(b))
}

func wordBytes(m *Map) []byte {
	var out []byte
	for _, w := range m.Words() {
		for i := range 8 {
			out = append(out, byte(w>>(8*i)))
		}
	}
	return out
}
