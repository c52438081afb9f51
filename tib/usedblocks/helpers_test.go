package usedblocks

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/cauldron-dr/cauldron/internal/testenv"
)

// toolPackages names the Debian package providing each external tool the tests drive.
var toolPackages = map[string]string{
	"mkfs.ext4": "e2fsprogs", "mkfs.ext3": "e2fsprogs", "mkfs.ext2": "e2fsprogs",
	"dumpe2fs": "e2fsprogs", "e2fsck": "e2fsprogs", "debugfs": "e2fsprogs",
	"mkfs.vfat": "dosfstools", "fsck.vfat": "dosfstools",
	"mcopy": "mtools", "mmd": "mtools", "mdel": "mtools",
	"mkntfs": "ntfs-3g", "ntfscp": "ntfs-3g", "ntfsinfo": "ntfs-3g", "ntfsfix": "ntfs-3g",
	"ntfscat": "ntfs-3g", "ntfs-3g": "ntfs-3g",
}

// needTools skips the test when a tool is missing, except where the tools are promised (CI, or a
// corpus run): there a missing tool is a broken environment and must fail loudly.
func needTools(t testing.TB, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			testenv.SkipOrFail(t, "%s not found: install %s (make deps)", name, toolPackages[name])
		}
	}
}

// run runs a command and returns its combined output, failing the test if it does not succeed.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newImage creates a zero-filled sparse file of size bytes.
func newImage(t testing.TB, dir, name string, size int64) string {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return p
}

// mapImage opens an image and runs fn (Ext, FAT or NTFS) on it, checking the invariants every map
// must hold whatever the filesystem.
func mapImage(t testing.TB, path string, fn func(io.ReaderAt, int64) (*Map, error)) *Map {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	m, err := fn(f, st.Size())
	if err != nil {
		t.Fatalf("%s: %v", filepath.Base(path), err)
	}
	checkCovers(t, m, st.Size())
	return m
}

// checkCovers checks that m covers exactly size bytes and that a trailing partial block is used.
func checkCovers(t testing.TB, m *Map, size int64) {
	t.Helper()
	if m == nil {
		t.Fatal("nil map without an error")
	}
	if m.BlockSize <= 0 || m.BlockSize&(m.BlockSize-1) != 0 {
		t.Fatalf("block size %d is not a positive power of two", m.BlockSize)
	}
	if want := (size + m.BlockSize - 1) / m.BlockSize; m.Blocks != want {
		t.Fatalf("map has %d blocks of %d bytes for %d bytes, want %d", m.Blocks, m.BlockSize, size, want)
	}
	if size%m.BlockSize != 0 && !m.IsSet(m.Blocks-1) {
		t.Fatalf("trailing partial block %d is not marked used", m.Blocks-1)
	}
	if c := m.Count(); c < 0 || c > m.Blocks {
		t.Fatalf("count %d outside [0, %d]", c, m.Blocks)
	}
}

// usedOnlyCopy writes a copy of src in which every block m calls unused is random garbage, as a
// restore that wrote only the used blocks onto a disk full of old data would leave it. Any block
// wrongly called unused then shows up as corruption in the filesystem's own checker or in the
// files read back.
func usedOnlyCopy(t testing.TB, src string, m *Map) string {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		t.Fatal(err)
	}
	dst := src + ".restored"
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()

	rng := rand.NewChaCha8([32]byte{1, 2, 3})
	garbage := make([]byte, 1<<20)
	for off := int64(0); off < st.Size(); off += int64(len(garbage)) {
		n := min(int64(len(garbage)), st.Size()-off)
		rng.Read(garbage[:n])
		if _, err := out.WriteAt(garbage[:n], off); err != nil {
			t.Fatal(err)
		}
	}
	copied := int64(0)
	m.Runs(0, m.Blocks, func(r Run) {
		off := r.Start * m.BlockSize
		n := min(r.Len*m.BlockSize, st.Size()-off)
		if _, err := io.Copy(io.NewOffsetWriter(out, off), io.NewSectionReader(in, off, n)); err != nil {
			t.Fatal(err)
		}
		copied += n
	})
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: copied %d of %d bytes (%d of %d blocks of %d)", filepath.Base(src), copied, st.Size(), m.Count(), m.Blocks, m.BlockSize)
	return dst
}

// makeTree fills dir with files that exercise allocation: empty, tiny (inline or resident), a few
// blocks, several megabytes, in nested directories, and returns their sha256 by slash path.
func makeTree(t testing.TB, dir string, seed uint64, bigMiB int) map[string]string {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 7))
	sums := map[string]string{}
	write := func(rel string, n int) {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256(data)
		sums[rel] = hex.EncodeToString(h[:])
	}
	write("empty", 0)
	write("tiny.txt", 37)
	write("docs/a.txt", 3000)
	write("docs/b.bin", 70000)
	for i := range 12 {
		write(fmt.Sprintf("many/f%02d", i), 500+rng.IntN(20000))
	}
	write("deep/er/still/file", 123456)
	write("big.bin", bigMiB<<20)
	return sums
}

// checkTree compares the files under dir with the sums makeTree returned.
func checkTree(t testing.TB, dir string, want map[string]string) {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		h := sha256.Sum256(data)
		got[filepath.ToSlash(rel)] = hex.EncodeToString(h[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, sum := range want {
		if got[name] != sum {
			t.Errorf("%s: sha256 %q, want %q", name, got[name], sum)
		}
	}
}

// field finds "label: number" (or "label number") in a tool's output.
func field(t testing.TB, out, label string) int64 {
	t.Helper()
	re := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(label) + `:?\s+(\d+)`)
	mm := re.FindStringSubmatch(out)
	if mm == nil {
		t.Fatalf("no %q in:\n%s", label, out)
	}
	n, err := strconv.ParseInt(mm[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// countIn counts used blocks in [from, to).
func countIn(m *Map, from, to int64) int64 {
	var n int64
	m.Runs(from, to, func(r Run) { n += r.Len })
	return n
}

// corrupt returns a copy of img with data written at off.
func corrupt(img []byte, off int, data []byte) []byte {
	c := bytes.Clone(img)
	copy(c[off:], data)
	return c
}
