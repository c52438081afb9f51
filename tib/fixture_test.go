package tib_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cauldron-dr/cauldron/internal/testenv"

	"github.com/cauldron-dr/cauldron/tib"
	"github.com/cauldron-dr/cauldron/tib/backend/local"
)

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

const MiB = 1 << 20

// sample describes the fixture disk: GPT; p1 ext4 at 1 MiB (40 MiB); p2 FAT32 (40 MiB);
// p3 a raw partition of unknown content (8 MiB, half zero).
type sample struct {
	path                   string
	extOff, fatOff, rawOff int64
	extSize, fatSize       int64
	rawSize                int64
}

func makeSample(t *testing.T, dir string, seed uint64) *sample {
	t.Helper()
	testenv.NeedTools(t, "sgdisk", "mkfs.ext4", "mkfs.vfat", "mcopy", "e2fsck", "fsck.vfat")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &sample{path: filepath.Join(dir, "source.img"), extOff: 1 * MiB, extSize: 40 * MiB, fatOff: 41 * MiB, fatSize: 40 * MiB, rawOff: 81 * MiB, rawSize: 8 * MiB}
	run(t, "truncate", "-s", "96M", s.path)
	run(t, "sgdisk", "-n1:1M:+40M", "-t1:8300", "-c1:root", "-n2:0:+40M", "-t2:0700", "-c2:data", "-n3:0:+8M", "-t3:8301", "-c3:raw", s.path)
	files := filepath.Join(dir, "files")
	rng := rand.New(rand.NewPCG(seed, 1))
	for i := 0; i < 30; i++ {
		writeFile(t, filepath.Join(files, fmt.Sprintf("d%d", i%4), fmt.Sprintf("f%d", i)), content(rng, 5000+rng.IntN(300000), i%2 == 0))
	}
	run(t, "mkfs.ext4", "-q", "-F", "-L", "root", "-E", fmt.Sprintf("offset=%d", s.extOff), "-d", files, s.path, "40M")
	run(t, "mkfs.vfat", "-F", "32", "-n", "DATA", "--offset", fmt.Sprint(s.fatOff/512), s.path, fmt.Sprint(s.fatSize/1024))
	for i := 0; i < 12; i++ {
		f := filepath.Join(dir, fmt.Sprintf("fat%d.dat", i))
		writeFile(t, f, content(rng, 3000+rng.IntN(200000), i%3 == 0))
		run(t, "mcopy", "-i", s.fatImg(), f, "::/")
	}
	// The raw partition: random data in its first half, zeros after.
	raw := content(rng, int(s.rawSize/2), false)
	writeAt(t, s.path, raw, s.rawOff)
	return s
}

func (s *sample) fatImg() string { return fmt.Sprintf("%s@@%d", s.path, s.fatOff) }

func content(rng *rand.Rand, n int, text bool) []byte {
	b := make([]byte, n)
	for i := range b {
		if text {
			b[i] = "abcdefghij klmnop\n"[rng.IntN(18)]
		} else {
			b[i] = byte(rng.Uint32())
		}
	}
	return b
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func writeAt(t *testing.T, path string, b []byte, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func readRange(t *testing.T, path string, off, n int64) []byte {
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

func sum(b []byte) string { return fmt.Sprintf("%x", sha256.Sum256(b)) }

// checkRestored judges a restored sample with independent tools and byte comparisons.
func checkRestored(t *testing.T, s *sample, out string, dir string) {
	t.Helper()
	if o := run(t, "sgdisk", "-v", out); !strings.Contains(o, "No problems found") {
		t.Fatalf("sgdisk -v on the restored disk:\n%s", o)
	}
	ext := filepath.Join(dir, "ext.out")
	writeFile(t, ext, readRange(t, out, s.extOff, s.extSize))
	run(t, "e2fsck", "-fn", ext)
	fat := filepath.Join(dir, "fat.out")
	writeFile(t, fat, readRange(t, out, s.fatOff, s.fatSize))
	run(t, "fsck.vfat", "-n", fat)
	// Files: same listing and content on both sides.
	srcExt := filepath.Join(dir, "ext.src")
	writeFile(t, srcExt, readRange(t, s.path, s.extOff, s.extSize))
	if a, b := extFiles(t, srcExt, dir, "a"), extFiles(t, ext, dir, "b"); a != b {
		t.Fatalf("ext4 files differ after restore")
	}
	if a, b := run(t, "mdir", "-i", s.fatImg(), "-b", "::/"), run(t, "mdir", "-i", fat, "-b", "::/"); a != b {
		t.Fatalf("FAT listings differ:\n%s\n%s", a, b)
	}
	// The raw partition and the GPT areas are stored whole: byte-identical.
	if !bytes.Equal(readRange(t, s.path, s.rawOff, s.rawSize), readRange(t, out, s.rawOff, s.rawSize)) {
		t.Fatal("raw partition differs")
	}
	if !bytes.Equal(readRange(t, s.path, 0, MiB), readRange(t, out, 0, MiB)) {
		t.Fatal("first MiB (MBR, GPT) differs")
	}
	fi, _ := os.Stat(s.path)
	if !bytes.Equal(readRange(t, s.path, fi.Size()-MiB, MiB), readRange(t, out, fi.Size()-MiB, MiB)) {
		t.Fatal("last MiB (backup GPT) differs")
	}
}

// extFiles dumps an ext image's files and hashes them all.
func extFiles(t *testing.T, img, dir, name string) string {
	t.Helper()
	d := filepath.Join(dir, "dump-"+name)
	os.RemoveAll(d)
	os.MkdirAll(d, 0o755)
	run(t, "debugfs", "-R", "rdump / "+d, img)
	var lines []string
	filepath.Walk(d, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			rel, _ := filepath.Rel(d, p)
			lines = append(lines, rel+" "+sum(b))
		}
		return nil
	})
	if len(lines) < 10 {
		t.Fatalf("only %d files dumped from %s", len(lines), img)
	}
	return strings.Join(lines, "\n")
}

func newRepo(t *testing.T, dir string, password string) *tib.Repository {
	t.Helper()
	r, err := tib.Init(context.Background(), local.New(filepath.Join(dir, "repo")), tib.InitOptions{Password: []byte(password), ChunkSize: 128 << 10, PackSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func reopen(t *testing.T, r *tib.Repository, password string) *tib.Repository {
	t.Helper()
	r2, err := tib.Open(context.Background(), local.New(r.Location()), func() ([]byte, error) { return []byte(password), nil })
	if err != nil {
		t.Fatal(err)
	}
	return r2
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 2)) }
