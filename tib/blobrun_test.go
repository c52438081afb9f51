package tib_test

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/cauldron-dr/cauldron/tib"
	"github.com/cauldron-dr/cauldron/tib/backend"
	"github.com/cauldron-dr/cauldron/tib/backend/local"
	"github.com/cauldron-dr/cauldron/tib/crypto"
)

// chunksInPackOrder lists the chunks of g's first disk in pack order, as a restore reads them.
func chunksInPackOrder(t *testing.T, r *tib.Repository, g *tib.Generation) []crypto.ID {
	t.Helper()
	regions, err := r.DiskRegions(ctx, g, &g.Disks[0])
	if err != nil {
		t.Fatal(err)
	}
	var ids []crypto.ID
	for _, rd := range regions {
		for _, c := range rd.Cells {
			ids = append(ids, c.ID)
		}
	}
	r.SortByPack(ids)
	return ids
}

// TestBlobRuns: runs keep to one pack, to pack order, to MaxRunBytes and to gaps of at most
// MaxRunGap, cover every chunk asked for once, and LoadRun hands back each chunk checked.
func TestBlobRuns(t *testing.T) {
	dir := t.TempDir()
	// 24 MiB of random bytes in packs of 16 MiB: runs must be cut at MaxRunBytes.
	src := filepath.Join(dir, "disk.img")
	data := make([]byte, 24<<20)
	rand.NewChaCha8([32]byte{7}).Read(data)
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := tib.Init(ctx, local.New(filepath.Join(dir, "repo")), tib.InitOptions{ChunkSize: 128 << 10, PackSize: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	g := capture(t, r, "m", src)
	ids := chunksInPackOrder(t, r, g)
	if len(ids) < 100 {
		t.Fatalf("only %d chunks", len(ids))
	}

	// A chunk the index does not know is set apart, not an error of the whole restore (a
	// partial one goes on without it).
	stranger := crypto.Hash([]byte("not stored"))
	runs, missing := r.BlobRuns(append(append([]crypto.ID{}, ids...), stranger))
	if len(missing) != 1 || missing[0] != stranger {
		t.Fatalf("missing: %v", missing)
	}
	var seen []crypto.ID
	for i, run := range runs {
		if run.End-run.Start > tib.MaxRunBytes && len(run.Blobs) > 1 {
			t.Errorf("run %d spans %d bytes", i, run.End-run.Start)
		}
		end := run.Start
		for _, b := range run.Blobs {
			if b.Pack != run.Pack {
				t.Errorf("run %d mixes packs", i)
			}
			if gap := int64(b.Offset) - end; gap < 0 || gap > tib.MaxRunGap {
				t.Errorf("run %d: a gap of %d bytes before chunk at %d", i, gap, b.Offset)
			}
			end = int64(b.Offset) + int64(b.Length)
			seen = append(seen, b.ID)
		}
		if end != run.End {
			t.Errorf("run %d ends at %d, its last chunk at %d", i, run.End, end)
		}
	}
	if len(seen) != len(ids) {
		t.Fatalf("runs hold %d chunks of %d", len(seen), len(ids))
	}
	for i := range ids {
		if seen[i] != ids[i] {
			t.Fatalf("chunk %d out of order in the runs", i)
		}
	}
	if len(runs) < 24/4 || len(runs) > len(ids)/8 {
		t.Errorf("%d chunks of 24 MiB in %d runs", len(ids), len(runs))
	}

	got := 0
	for _, run := range runs {
		err := r.LoadRun(ctx, run, func(id crypto.ID, plain []byte, err error) error {
			if err != nil {
				t.Errorf("chunk %s: %v", id.Short(), err)
			} else if r.Key().ChunkID(plain) != id {
				t.Errorf("chunk %s came back with other bytes", id.Short())
			}
			got++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if got != len(ids) {
		t.Fatalf("LoadRun handed back %d chunks of %d", got, len(ids))
	}

	// Every other chunk: the gaps are whole chunks, larger than MaxRunGap, so no run joins two.
	var sparse []crypto.ID
	for i := 0; i < len(ids); i += 2 {
		sparse = append(sparse, ids[i])
	}
	runs, _ = r.BlobRuns(sparse)
	if len(runs) != len(sparse) {
		t.Fatalf("%d chunks 128 KiB apart made %d runs", len(sparse), len(runs))
	}
}

// shortRuns is a storage that answers a long range read one byte short and without an error,
// as no backend of ours should, but a new one or a broken server might.
type shortRuns struct{ backend.Backend }

func (s shortRuns) Load(ctx context.Context, h backend.Handle, length int, offset int64) ([]byte, error) {
	b, err := s.Backend.Load(ctx, h, length, offset)
	if err == nil && h.Type == backend.Pack && length > 512<<10 {
		b = append([]byte(nil), b[:len(b)-1]...)
	}
	return b, err
}

// TestLoadRunShortAnswer: a run answered short without an error is read blob by blob, like one
// answered with an error. LoadRun sliced past the answer: intact chunks failed their check as
// damaged (a panic, had the buffer had no room past its end).
func TestLoadRunShortAnswer(t *testing.T) {
	dir := t.TempDir()
	s := makeSample(t, dir, 19)
	r := newRepo(t, dir, "")
	g := capture(t, r, "m", s.Path)
	short, err := tib.Open(ctx, shortRuns{local.New(r.Location())}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := short.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	runs, _ := short.BlobRuns(chunksInPackOrder(t, short, g))
	long := 0
	for _, run := range runs {
		if run.End-run.Start > 512<<10 {
			long++
		}
		err := short.LoadRun(ctx, run, func(id crypto.ID, plain []byte, err error) error {
			if err != nil {
				t.Errorf("chunk %s: %v", id.Short(), err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if long == 0 {
		t.Fatal("no run long enough to be answered short: the test proves nothing")
	}
}
