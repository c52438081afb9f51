package write_test

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"sync/atomic"
	"testing"

	"github.com/cauldron-dr/cauldron/internal/tibtest"
	"github.com/cauldron-dr/cauldron/restore/target"
	"github.com/cauldron-dr/cauldron/restore/write"
	"github.com/cauldron-dr/cauldron/tib"
	"github.com/cauldron-dr/cauldron/tib/backend"
	"github.com/cauldron-dr/cauldron/tib/backend/local"
	"github.com/cauldron-dr/cauldron/tib/crypto"
	"github.com/cauldron-dr/cauldron/tib/pack"
)

// countingBackend counts the reads of packs: over a network each is a request.
type countingBackend struct {
	backend.Backend
	packReads atomic.Int64
}

func (c *countingBackend) Load(ctx context.Context, h backend.Handle, length int, offset int64) ([]byte, error) {
	if h.Type == backend.Pack {
		c.packReads.Add(1)
	}
	return c.Backend.Load(ctx, h, length, offset)
}

func packFiles(t *testing.T, repo string) []string {
	t.Helper()
	var packs []string
	filepath.Walk(filepath.Join(repo, "data"), func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			packs = append(packs, p)
		}
		return nil
	})
	return packs
}

// TestRestoreReadsRuns: a restore used to read every chunk with a request of its own, which over
// HTTP and S3 cost more than the bytes (a restore through versitygw ran at a quarter of the local
// rate). Chunks that lie together in a pack are now read with one request, and the disk still
// comes back exactly.
func TestRestoreReadsRuns(t *testing.T) {
	dir := t.TempDir()
	s := makeSample(t, dir, 31)
	r := newRepo(t, dir, "pw")
	g := capture(t, r, "m", s.Path)
	cb := &countingBackend{Backend: local.New(r.Location())}
	r2, err := tib.Open(ctx, cb, func() ([]byte, error) { return []byte("pw"), nil })
	if err != nil {
		t.Fatal(err)
	}
	before := cb.packReads.Load()
	out := filepath.Join(dir, "out.img")
	st := restore(t, r2, g, out)
	tibtest.CheckRestored(t, s, out, dir)
	reads := cb.packReads.Load() - before
	packs := int64(len(packFiles(t, r.Location())))
	t.Logf("%d chunks from %d packs in %d reads", st.Chunks, packs, reads)
	// The test repository's packs are 1 MiB, far below a run's limit: about a read a pack for
	// the chunks, and a few for the generation's metadata (a read each, as before).
	if reads*3 > st.Chunks {
		t.Fatalf("%d chunks took %d pack reads (%d packs): not read in runs", st.Chunks, reads, packs)
	}
}

// TestPartialRestoreTruncatedPack: a pack cut short fails the read of a whole run; the chunks
// before the cut must still be restored (read one by one), and only the ones past it named as
// damaged.
func TestPartialRestoreTruncatedPack(t *testing.T) {
	dir := t.TempDir()
	s := makeSample(t, dir, 32)
	r := newRepo(t, dir, "")
	g := capture(t, r, "m", s.Path)
	// The pack of data chunks with the most chunks.
	var path string
	var blobs []pack.Blob
	for _, p := range packFiles(t, r.Location()) {
		id, err := crypto.ParseID(filepath.Base(p))
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(p)
		bs, err := r.PackHeader(ctx, id, fi.Size())
		if err != nil {
			t.Fatal(err)
		}
		data := true
		for _, b := range bs {
			data = data && b.Type == pack.DataBlob
		}
		if data && len(bs) > len(blobs) {
			path, blobs = p, bs
		}
	}
	if len(blobs) < 4 {
		t.Fatalf("want a pack of at least 4 data chunks, the largest has %d", len(blobs))
	}
	// Cut it inside its third chunk: the first two stay whole.
	sort.Slice(blobs, func(i, j int) bool { return blobs[i].Offset < blobs[j].Offset })
	if err := os.Truncate(path, int64(blobs[2].Offset)+int64(blobs[2].Length)/2); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(s.Path)
	out := filepath.Join(dir, "out.img")
	writeFile(t, out, make([]byte, fi.Size()))
	tg := mustTarget(t, out)
	if err := tg.Check(&target.Gate{}); err != nil {
		t.Fatal(err)
	}
	st, err := write.Disk(ctx, tibtest.Reopen(t, r, ""), write.Options{Generation: g, Disk: "disk0", Target: tg, Gate: &target.Gate{}, Partial: true})
	if err != nil {
		t.Fatalf("partial restore: %v", err)
	}
	lost := len(blobs) - 2
	if len(st.Damaged) == 0 || len(st.Damaged) > lost {
		t.Fatalf("%d damaged ranges named; the cut took %d of the pack's %d chunks", len(st.Damaged), lost, len(blobs))
	}
	t.Logf("%d damaged ranges for %d chunks lost of %d", len(st.Damaged), lost, len(blobs))
}
