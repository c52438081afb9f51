package partition

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The FAT resizer is judged by fsck.vfat (a clean check of the result, which compares the boot
// sector with its backup and the FATs with each other and walks every chain and directory) and by
// mtools (every file read back identical), on volumes mkfs.vfat and mcopy made.

// fatVolume makes a FAT volume of size bytes (bits 16 or 32, sector size ss, cluster size cl)
// filled with files, and returns its path and the files.
func fatVolume(t *testing.T, bits int, size int64, ss, cl int, files int, seed uint64) (string, map[string][]byte) {
	t.Helper()
	needTool(t, "mkfs.vfat")
	needTool(t, "mcopy")
	img := newImage(t, "fat.img", size)
	run(t, "mkfs.vfat", "-F", strconv.Itoa(bits), "-S", strconv.Itoa(ss), "-s", strconv.Itoa(cl/ss), "-n", "VOL", "-i", "0BADCAFE", img)
	rng := rand.New(rand.NewPCG(seed, 9))
	out := map[string][]byte{}
	dir := t.TempDir()
	run(t, "mmd", "-i", img, "::/sub")
	for i := 0; i < files; i++ {
		b := make([]byte, 1000+rng.IntN(400000))
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		name := fmt.Sprintf("f%02d.bin", i)
		if i%3 == 0 {
			name = "sub/" + name
		}
		p := filepath.Join(dir, strings.ReplaceAll(name, "/", "_"))
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		run(t, "mcopy", "-i", img, p, "::/"+name)
		out[name] = b
	}
	return img, out
}

// resizeFATFile resizes the volume in src into a new file of newSize with sector size ss and
// returns it, or the error.
func resizeFATFile(t *testing.T, src string, newSize int64, ss int, hidden uint32) (string, error) {
	t.Helper()
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	boot := make([]byte, 512)
	if _, err := f.ReadAt(boot, 0); err != nil {
		t.Fatal(err)
	}
	old, err := ParseFATBoot(boot)
	if err != nil {
		t.Fatal(err)
	}
	n, err := PlanFATResize(old, newSize, ss, -1)
	if err != nil {
		return "", err
	}
	if err := CheckFATResize(f, old, n); err != nil {
		return "", err
	}
	dst := newImage(t, "resized.img", newSize)
	out, err := os.OpenFile(dst, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if err := ResizeFAT(f, out, old, n, hidden); err != nil {
		return "", err
	}
	return dst, nil
}

// judgeFAT checks a FAT volume with fsck.vfat and mtools.
func judgeFAT(t *testing.T, img string, files map[string][]byte, size int64, ss int, hidden uint32) {
	t.Helper()
	needTool(t, "fsck.fat")
	run(t, "fsck.fat", "-n", img)
	b := readFileAt(t, img, 0, 512)
	if bps := binary.LittleEndian.Uint16(b[11:]); int(bps) != ss {
		t.Errorf("%d bytes per sector, want %d", bps, ss)
	}
	tot := int64(binary.LittleEndian.Uint16(b[19:]))
	if tot == 0 {
		tot = int64(binary.LittleEndian.Uint32(b[32:]))
	}
	if tot*int64(ss) != size {
		t.Errorf("%d sectors of %d bytes, want %d bytes", tot, ss, size)
	}
	if h := binary.LittleEndian.Uint32(b[28:]); h != hidden {
		t.Errorf("hidden sectors %d, want %d", h, hidden)
	}
	dir := t.TempDir()
	for name, want := range files {
		p := filepath.Join(dir, "out")
		os.Remove(p)
		run(t, "mcopy", "-n", "-i", img, "::/"+name, p)
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("file %s differs after the resize", name)
		}
	}
	if !strings.Contains(run(t, "mlabel", "-s", "-i", img, "::"), "VOL") {
		t.Error("the volume label was lost")
	}
}

func TestResizeFAT(t *testing.T) {
	t.Setenv("MTOOLS_SKIP_CHECK", "1")
	for _, c := range []struct {
		name          string
		bits          int
		size, newSize int64
		ss, cl, newSS int
		wantErr       string
	}{
		{name: "FAT32 grow", bits: 32, size: 300 * MiB, newSize: 520 * MiB, ss: 512, cl: 4096, newSS: 512},
		{name: "FAT32 shrink", bits: 32, size: 300 * MiB, newSize: 270 * MiB, ss: 512, cl: 4096, newSS: 512},
		{name: "FAT32 512 to 4096 sectors", bits: 32, size: 300 * MiB, newSize: 300 * MiB, ss: 512, cl: 4096, newSS: 4096},
		{name: "FAT32 4096 to 512 sectors, grown", bits: 32, size: 300 * MiB, newSize: 400 * MiB, ss: 4096, cl: 4096, newSS: 512},
		{name: "FAT16 grow", bits: 16, size: 40 * MiB, newSize: 100 * MiB, ss: 512, cl: 2048, newSS: 512},
		{name: "FAT16 shrink", bits: 16, size: 100 * MiB, newSize: 40 * MiB, ss: 512, cl: 2048, newSS: 512},
		{name: "FAT32 below its cluster minimum", bits: 32, size: 300 * MiB, newSize: 200 * MiB, ss: 512, cl: 4096, newSS: 512,
			wantErr: "FAT32 must have 65525 to"},
		{name: "FAT16 beyond its cluster maximum", bits: 16, size: 100 * MiB, newSize: 200 * MiB, ss: 512, cl: 2048, newSS: 512,
			wantErr: "changing the FAT type is a reformat"},
		{name: "clusters smaller than the new sectors", bits: 16, size: 40 * MiB, newSize: 40 * MiB, ss: 512, cl: 2048, newSS: 4096,
			wantErr: "smaller than the target's 4096-byte sectors"},
	} {
		t.Run(c.name, func(t *testing.T) {
			img, files := fatVolume(t, c.bits, c.size, c.ss, c.cl, 12, uint64(c.size))
			hidden := uint32(2048 * 512 / c.newSS)
			out, err := resizeFATFile(t, img, c.newSize, c.newSS, hidden)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			judgeFAT(t, out, files, c.newSize, c.newSS, hidden)
		})
	}
}

// TestResizeFATMovesClustersBeyondTheEnd: a volume whose files lie at its end (the early ones
// deleted, a directory made late) shrinks below them: the clusters beyond the new end get free
// numbers, and chains, directory entries and "." and ".." follow (fsck.vfat checks them all).
// A shrink below what the used clusters need is refused, naming the bytes missing.
func TestResizeFATMovesClustersBeyondTheEnd(t *testing.T) {
	t.Setenv("MTOOLS_SKIP_CHECK", "1")
	for _, bits := range []int{16, 32} {
		t.Run(fmt.Sprintf("FAT%d", bits), func(t *testing.T) {
			size, cl, newSize, fill := int64(64*MiB), 2048, int64(9*MiB), int64(60)
			if bits == 32 {
				size, cl, newSize, fill = 400*MiB, 4096, 280*MiB, 80
			}
			img, files := fatVolume(t, bits, size, 512, cl, 80, uint64(bits))
			// Fill most of the volume, then make a directory with files after it all.
			filler := filepath.Join(t.TempDir(), "filler")
			if err := os.WriteFile(filler, bytes.Repeat([]byte{0xA5}, int(size*fill/100)), 0o644); err != nil {
				t.Fatal(err)
			}
			run(t, "mcopy", "-i", img, filler, "::/filler")
			run(t, "mmd", "-i", img, "::/late")
			run(t, "mmd", "-i", img, "::/late/deeper")
			kept := map[string][]byte{}
			for name, b := range files {
				if strings.HasSuffix(name, "7.bin") {
					dst := "late/deeper/" + strings.ReplaceAll(name, "/", "_")
					p := filepath.Join(t.TempDir(), "x")
					os.WriteFile(p, b, 0o644)
					run(t, "mcopy", "-i", img, p, "::/"+dst)
					kept[dst] = b
				}
				if strings.HasSuffix(name, "9.bin") {
					kept[name] = b
				} else {
					run(t, "mdel", "-i", img, "::/"+name)
				}
			}
			run(t, "mdel", "-i", img, "::/filler")
			run(t, "fsck.fat", "-n", img)
			// Clusters must move for this test to mean anything.
			g0, err := ParseFATBoot(readFileAt(t, img, 0, 512))
			if err != nil {
				t.Fatal(err)
			}
			n0, err := PlanFATResize(g0, newSize, 512, -1)
			if err != nil {
				t.Fatal(err)
			}
			src, _ := os.Open(img)
			ft, err := readFAT(src, g0)
			src.Close()
			if err != nil {
				t.Fatal(err)
			}
			if _, remap, err := ft.layout(n0); err != nil || len(remap) < 10 {
				t.Fatalf("%d clusters to move (%v): the files do not lie beyond the new end", len(remap), err)
			}
			out, err := resizeFATFile(t, img, newSize, 512, 77)
			if err != nil {
				t.Fatal(err)
			}
			judgeFAT(t, out, kept, newSize, 512, 77)
			if len(kept) < 10 {
				t.Fatalf("only %d files kept: the test proves little", len(kept))
			}

			// Far too small: refused by the FAT's own count and by the plan's.
			b := readFileAt(t, img, 0, 512)
			g, err := ParseFATBoot(b)
			if err != nil {
				t.Fatal(err)
			}
			n, err := PlanFATResize(g, newSize, 512, -1)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := PlanFATResize(g, newSize, 512, n.Clusters()+10); err == nil || !strings.Contains(err.Error(), "bytes missing") {
				t.Errorf("PlanFATResize with more used clusters than fit: %v", err)
			}
		})
	}
}

func TestFixFATBoot(t *testing.T) {
	t.Setenv("MTOOLS_SKIP_CHECK", "1")
	img, _ := fatVolume(t, 32, 300*MiB, 512, 4096, 2, 4)
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := FixFATBoot(f, 123456); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// fsck.vfat compares the boot sector with its backup: both must carry the new start.
	run(t, "fsck.fat", "-n", img)
	for _, off := range []int64{0, 6 * 512} {
		if h := binary.LittleEndian.Uint32(readFileAt(t, img, off+28, 4)); h != 123456 {
			t.Errorf("boot sector at byte %d: hidden sectors %d", off, h)
		}
	}
}

// TestFixNTFSBoot moves an NTFS volume's boot sector to 4096-byte sectors and back, judged by
// ntfsfix (which checks the backup boot sector) and ntfscat (the volume reads).
func TestFixNTFSBoot(t *testing.T) {
	needTool(t, "mkntfs")
	for _, tool := range []string{"ntfsfix", "ntfscp", "ntfscat"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: install ntfs-3g", tool)
		}
	}
	img := newImage(t, "ntfs.img", 64*MiB)
	run(t, "mkntfs", "-q", "-F", "-Q", "-c", "4096", "-p", "63", "-H", "255", "-S", "63", img)
	data := bytes.Repeat([]byte("ntfs data "), 50000)
	src := filepath.Join(t.TempDir(), "d")
	os.WriteFile(src, data, 0o644)
	run(t, "ntfscp", "-f", img, src, "/d")
	orig := readFileAt(t, img, 0, 512)
	for _, step := range []struct {
		ss     int
		hidden uint64
	}{{4096, 256}, {512, 2048}} {
		f, err := os.OpenFile(img, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := FixNTFSBoot(f, 64*MiB, step.ss, step.hidden); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if out, err := exec.Command("ntfsfix", "-n", img).CombinedOutput(); err != nil {
			t.Fatalf("%d-byte sectors: ntfsfix -n: %v\n%s", step.ss, err, out)
		}
		got, err := exec.Command("ntfscat", img, "/d").Output()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%d-byte sectors: ntfscat: %v", step.ss, err)
		}
		b := readFileAt(t, img, 0, 512)
		if bps := binary.LittleEndian.Uint16(b[11:]); int(bps) != step.ss || uint64(binary.LittleEndian.Uint32(b[28:])) != step.hidden {
			t.Errorf("boot sector says %d-byte sectors, hidden %d; want %d, %d", bps, binary.LittleEndian.Uint32(b[28:]), step.ss, step.hidden)
		}
	}
	// Back at 512-byte sectors the boot sector is the original but for the hidden sectors and
	// the sector count, which lost the sub-cluster tail 4096-byte sectors cannot count: the
	// cluster count is the same.
	b := readFileAt(t, img, 0, 512)
	if a, z := binary.LittleEndian.Uint64(b[40:])/8, binary.LittleEndian.Uint64(orig[40:])/8; a != z {
		t.Errorf("%d clusters after 512 → 4096 → 512, %d before", a, z)
	}
	binary.LittleEndian.PutUint32(b[28:], 63)
	copy(b[40:48], orig[40:48])
	if !bytes.Equal(b, orig) {
		t.Error("512 → 4096 → 512 changed more than the hidden-sectors field and the sector count")
	}
}
