package tib_test

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/cauldron-dr/cauldron/tib"
	"github.com/cauldron-dr/cauldron/tib/backend/local"
)

// indexDamages are the ways the index can be lost while every pack stays intact.
var indexDamages = []struct {
	name   string
	damage func(t *testing.T, index string)
}{
	{"damaged index file", func(t *testing.T, index string) {
		for _, f := range files(t, index) {
			fi, _ := os.Stat(f)
			flip(t, f, fi.Size()/2)
		}
	}},
	{"deleted index", func(t *testing.T, index string) {
		for _, f := range files(t, index) {
			if err := os.Remove(f); err != nil {
				t.Fatal(err)
			}
		}
	}},
	{"foreign junk in index", func(t *testing.T, index string) {
		// A valid-looking name with junk content (what a hostile client can post to an
		// append-only server), and a file that is not named like an index file at all.
		writeFile(t, filepath.Join(index, strings.Repeat("ab", 32)), []byte("not an index file"))
		writeFile(t, filepath.Join(index, "notes.txt"), []byte("left by someone"))
	}},
}

// damagedRepo captures two machines, reads their disks back as they are intact, then damages
// the index. It returns the repository folder and each machine's disk image as read before.
func damagedRepo(t *testing.T, sources map[string]string, damage func(*testing.T, string)) (string, map[string][]byte) {
	t.Helper()
	dir := t.TempDir()
	r := newRepo(t, dir, "pw")
	want := map[string][]byte{}
	for m, src := range sources {
		g := capture(t, r, m, src)
		img := filepath.Join(dir, m+".img")
		readDisk(t, r, g, "disk0", img)
		b, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		want[m] = b
		os.Remove(img)
	}
	damage(t, filepath.Join(dir, "repo", "index"))
	return dir, want
}

// restoresAll reads every machine's latest disk back and compares it with what it was.
func restoresAll(t *testing.T, r *tib.Repository, dir string, want map[string][]byte) {
	t.Helper()
	for m, w := range want {
		g, err := r.FindGeneration(ctx, m, "")
		if err != nil {
			t.Fatalf("machine %s: %v", m, err)
		}
		img := filepath.Join(dir, m+"-back.img")
		readDisk(t, r, g, "disk0", img)
		got, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		os.Remove(img)
		if !bytes.Equal(got, w) {
			t.Fatalf("machine %s reads back different bytes", m)
		}
	}
}

func openAt(t *testing.T, dir string) *tib.Repository {
	t.Helper()
	r, err := tib.Open(ctx, local.New(filepath.Join(dir, "repo")), func() ([]byte, error) { return []byte("pw"), nil })
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// damagedFiles names the index files a damage made unusable (as index/NAME).
func damagedFiles(t *testing.T, dir, damage string) []string {
	t.Helper()
	switch damage {
	case "damaged index file":
		var out []string
		for _, f := range files(t, filepath.Join(dir, "repo", "index")) {
			out = append(out, "index/"+filepath.Base(f))
		}
		return out
	case "foreign junk in index":
		return []string{"index/" + strings.Repeat("ab", 32)}
	}
	return nil
}

type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) add(s string) { l.mu.Lock(); l.lines = append(l.lines, s); l.mu.Unlock() }
func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// eachIndexDamage runs check on a fresh two-machine repository (samples made once, from seed and
// seed+1) for each way of damaging the index.
func eachIndexDamage(t *testing.T, seed uint64, check func(t *testing.T, sources map[string]string, dir string, want map[string][]byte, damage string)) {
	base := t.TempDir()
	sources := map[string]string{"web": makeSample(t, filepath.Join(base, "web"), seed).Path, "db": makeSample(t, filepath.Join(base, "db"), seed+1).Path}
	for _, tc := range indexDamages {
		t.Run(tc.name, func(t *testing.T) {
			dir, want := damagedRepo(t, sources, tc.damage)
			check(t, sources, dir, want, tc.name)
		})
	}
}

func TestDamagedIndexNeverBlocks(t *testing.T) {
	eachIndexDamage(t, 21, func(t *testing.T, sources map[string]string, dir string, want map[string][]byte, damage string) {
		r := openAt(t, dir)
		var log logLines
		r.SetLog(log.add)

		// Restore works for every machine, twice in one process; a damaged file is named once.
		restoresAll(t, r, dir, want)
		restoresAll(t, r, dir, want)
		for _, f := range damagedFiles(t, dir, damage) {
			if n := strings.Count(log.String(), f+" is damaged"); n != 1 {
				t.Errorf("damaged index file %s is named %d times, want once:\n%s", f, n, log.String())
			}
		}

		// verify says what is wrong and which repair fixes it, and does not promise that
		// prune removes packs the generations need.
		rep, err := reopen(t, r, "pw").Verify(ctx, tib.VerifyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		problems := strings.Join(rep.Problems, "\n")
		if !strings.Contains(problems, "cauldron repair index") {
			t.Errorf("verify does not name `cauldron repair index`:\nproblems:\n%s\nnotes:\n%s", problems, strings.Join(rep.Notes, "\n"))
		}
		if notes := strings.Join(rep.Notes, "\n"); strings.Contains(notes, "prune") {
			t.Errorf("verify's notes speak of prune removing packs though every pack is needed:\n%s", notes)
		}
		if damage == "foreign junk in index" && !strings.Contains(problems, "index/"+strings.Repeat("ab", 32)) {
			t.Errorf("verify does not name the junk index file:\n%s", problems)
		}

		// Capture of both machines works and stores no chunk again.
		r = reopen(t, r, "pw")
		for m, src := range sources {
			g, err := r.Capture(ctx, tib.CaptureOptions{Machine: m, Sources: []string{src}})
			if err != nil {
				t.Fatalf("capture of %s: %v", m, err)
			}
			if g.Stats.NewChunks > int64(len(g.Disks[0].Regions))*2 {
				t.Errorf("capture of %s stored %d chunks again: the packs' chunks were not found", m, g.Stats.NewChunks)
			}
		}
		restoresAll(t, reopen(t, r, "pw"), dir, want)
	})
}

func TestPruneWithDamagedIndex(t *testing.T) {
	eachIndexDamage(t, 23, func(t *testing.T, sources map[string]string, dir string, want map[string][]byte, damage string) {
		r := openAt(t, dir)
		if _, err := r.Prune(ctx); err != nil {
			t.Fatalf("prune: %v", err)
		}
		r = reopen(t, r, "pw")
		restoresAll(t, r, dir, want)
		verifyClean(t, reopen(t, r, "pw"), true)
	})
}

func TestRepairIndex(t *testing.T) {
	eachIndexDamage(t, 25, func(t *testing.T, sources map[string]string, dir string, want map[string][]byte, damage string) {
		damaged := damagedFiles(t, dir, damage)
		r := openAt(t, dir)
		rep, err := r.RepairIndex(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Packs == 0 || len(rep.Written) == 0 || len(rep.DamagedPacks) != 0 {
			t.Fatalf("repair index: %+v", rep)
		}
		if len(rep.Damaged) != len(damaged) {
			t.Errorf("repair index names %d damaged index files, want %d", len(rep.Damaged), len(damaged))
		}
		for _, f := range damaged {
			if _, err := os.Stat(filepath.Join(dir, "repo", f)); !os.IsNotExist(err) {
				t.Errorf("damaged %s is still there after repair (%v)", f, err)
			}
		}
		r = reopen(t, r, "pw")
		verifyClean(t, r, true)
		rep2, err := r.Verify(ctx, tib.VerifyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range rep2.Notes {
			if strings.Contains(n, "not in any index") {
				t.Errorf("after repair: %s", n)
			}
		}
		restoresAll(t, reopen(t, r, "pw"), dir, want)
		// A second repair finds nothing damaged and lists the same packs.
		packs := rep.Packs
		rep, err = reopen(t, r, "pw").RepairIndex(ctx)
		if err != nil || rep.Packs != packs || len(rep.Damaged) != 0 || len(rep.DamagedPacks) != 0 {
			t.Fatalf("second repair: %+v, %v", rep, err)
		}
	})
}

// A pack whose header is damaged is named by repair index and left in place.
func TestRepairIndexNamesDamagedPack(t *testing.T) {
	dir := t.TempDir()
	s := makeSample(t, dir, 27)
	r := newRepo(t, dir, "pw")
	capture(t, r, "web", s.Path)
	// The largest pack: a data pack the index lists (the small ones may be the generation's
	// own metadata packs, which no index lists and repair index leaves alone).
	packs := files(t, filepath.Join(dir, "repo", "data"))
	sort.Slice(packs, func(i, j int) bool { return fileSize(t, packs[i]) > fileSize(t, packs[j]) })
	fi, _ := os.Stat(packs[0])
	flip(t, packs[0], fi.Size()-20)
	rep, err := reopen(t, r, "pw").RepairIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.DamagedPacks) != 1 || len(rep.FromOldIndex) != 1 {
		t.Fatalf("repair index with one damaged pack header: %+v", rep)
	}
	if _, err := os.Stat(packs[0]); err != nil {
		t.Fatalf("the damaged pack was removed: %v", err)
	}
	// Its blobs are still listed: verify names the header, not missing chunks.
	v, err := reopen(t, r, "pw").Verify(ctx, tib.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p := strings.Join(v.Problems, "\n"); !strings.Contains(p, "pack ") || strings.Contains(p, "is missing") {
		t.Fatalf("verify after repair with a damaged pack header:\n%s", p)
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
