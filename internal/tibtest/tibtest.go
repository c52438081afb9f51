// Package tibtest holds the fixtures the archive's tests and the restore writer's tests share: a
// sample disk image (GPT with ext4, FAT32 and a raw partition) made with the real tools, a new
// repository, and the independent judges of a restored copy (sgdisk, e2fsck, fsck.vfat, debugfs,
// mtools). Only tests import it.
package tibtest

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

// Run runs a tool and fails the test when it fails.
func Run(t *testing.T, name string, args ...string) string {
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

// Sample describes the fixture disk: GPT; p1 ext4 at 1 MiB (40 MiB); p2 FAT32 (40 MiB);
// p3 a raw partition of unknown content (8 MiB, half zero).
type Sample struct {
	Path                   string
	ExtOff, FatOff, RawOff int64
	ExtSize, FatSize       int64
	RawSize                int64
}

func MakeSample(t *testing.T, dir string, seed uint64) *Sample {
	t.Helper()
	testenv.NeedTools(t, "sgdisk", "mkfs.ext4", "mkfs.vfat", "mcopy", "e2fsck", "fsck.vfat")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &Sample{Path: filepath.Join(dir, "source.img"), ExtOff: 1 * MiB, ExtSize: 40 * MiB, FatOff: 41 * MiB, FatSize: 40 * MiB, RawOff: 81 * MiB, RawSize: 8 * MiB}
	Run(t, "truncate", "-s", "96M", s.Path)
	Run(t, "sgdisk", "-n1:1M:+40M", "-t1:8300", "-c1:root", "-n2:0:+40M", "-t2:0700", "-c2:data", "-n3:0:+8M", "-t3:8301", "-c3:raw", s.Path)
	files := filepath.Join(dir, "files")
	rng := rand.New(rand.NewPCG(seed, 1))
	for i := 0; i < 30; i++ {
		WriteFile(t, filepath.Join(files, fmt.Sprintf("d%d", i%4), fmt.Sprintf("f%d", i)), Content(rng, 5000+rng.IntN(300000), i%2 == 0))
	}
	Run(t, "mkfs.ext4", "-q", "-F", "-L", "root", "-E", fmt.Sprintf("offset=%d", s.ExtOff), "-d", files, s.Path, "40M")
	Run(t, "mkfs.vfat", "-F", "32", "-n", "DATA", "--offset", fmt.Sprint(s.FatOff/512), s.Path, fmt.Sprint(s.FatSize/1024))
	for i := 0; i < 12; i++ {
		f := filepath.Join(dir, fmt.Sprintf("fat%d.dat", i))
		WriteFile(t, f, Content(rng, 3000+rng.IntN(200000), i%3 == 0))
		Run(t, "mcopy", "-i", s.FatImg(), f, "::/")
	}
	// The raw partition: random data in its first half, zeros after.
	raw := Content(rng, int(s.RawSize/2), false)
	WriteAt(t, s.Path, raw, s.RawOff)
	return s
}

func (s *Sample) FatImg() string { return fmt.Sprintf("%s@@%d", s.Path, s.FatOff) }

func Content(rng *rand.Rand, n int, text bool) []byte {
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

func WriteFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func WriteAt(t *testing.T, path string, b []byte, off int64) {
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

func ReadRange(t *testing.T, path string, off, n int64) []byte {
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

func Sum(b []byte) string { return fmt.Sprintf("%x", sha256.Sum256(b)) }

// checkRestored judges a restored sample with independent tools and byte comparisons.
func CheckRestored(t *testing.T, s *Sample, out string, dir string) {
	t.Helper()
	if o := Run(t, "sgdisk", "-v", out); !strings.Contains(o, "No problems found") {
		t.Fatalf("sgdisk -v on the restored disk:\n%s", o)
	}
	ext := filepath.Join(dir, "ext.out")
	WriteFile(t, ext, ReadRange(t, out, s.ExtOff, s.ExtSize))
	Run(t, "e2fsck", "-fn", ext)
	fat := filepath.Join(dir, "fat.out")
	WriteFile(t, fat, ReadRange(t, out, s.FatOff, s.FatSize))
	Run(t, "fsck.vfat", "-n", fat)
	// Files: same listing and content on both sides.
	srcExt := filepath.Join(dir, "ext.src")
	WriteFile(t, srcExt, ReadRange(t, s.Path, s.ExtOff, s.ExtSize))
	if a, b := ExtFiles(t, srcExt, dir, "a"), ExtFiles(t, ext, dir, "b"); a != b {
		t.Fatalf("ext4 files differ after restore")
	}
	if a, b := Run(t, "mdir", "-i", s.FatImg(), "-b", "::/"), Run(t, "mdir", "-i", fat, "-b", "::/"); a != b {
		t.Fatalf("FAT listings differ:\n%s\n%s", a, b)
	}
	// The raw partition and the GPT areas are stored whole: byte-identical.
	if !bytes.Equal(ReadRange(t, s.Path, s.RawOff, s.RawSize), ReadRange(t, out, s.RawOff, s.RawSize)) {
		t.Fatal("raw partition differs")
	}
	if !bytes.Equal(ReadRange(t, s.Path, 0, MiB), ReadRange(t, out, 0, MiB)) {
		t.Fatal("first MiB (MBR, GPT) differs")
	}
	fi, _ := os.Stat(s.Path)
	if !bytes.Equal(ReadRange(t, s.Path, fi.Size()-MiB, MiB), ReadRange(t, out, fi.Size()-MiB, MiB)) {
		t.Fatal("last MiB (backup GPT) differs")
	}
}

// ExtFiles dumps an ext image's files and hashes them all.
func ExtFiles(t *testing.T, img, dir, name string) string {
	t.Helper()
	d := filepath.Join(dir, "dump-"+name)
	os.RemoveAll(d)
	os.MkdirAll(d, 0o755)
	Run(t, "debugfs", "-R", "rdump / "+d, img)
	var lines []string
	filepath.Walk(d, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			rel, _ := filepath.Rel(d, p)
			lines = append(lines, rel+" "+Sum(b))
		}
		return nil
	})
	if len(lines) < 10 {
		t.Fatalf("only %d files dumped from %s", len(lines), img)
	}
	return strings.Join(lines, "\n")
}

func NewRepo(t *testing.T, dir string, password string) *tib.Repository {
	t.Helper()
	r, err := tib.Init(context.Background(), local.New(filepath.Join(dir, "repo")), tib.InitOptions{Password: []byte(password), ChunkSize: 128 << 10, PackSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func Reopen(t *testing.T, r *tib.Repository, password string) *tib.Repository {
	t.Helper()
	r2, err := tib.Open(context.Background(), local.New(r.Location()), func() ([]byte, error) { return []byte(password), nil })
	if err != nil {
		t.Fatal(err)
	}
	return r2
}

func NewRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 2)) }
