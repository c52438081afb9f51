package tib_test

import (
	"io"
	"os"
	"testing"

	"github.com/cauldron-dr/cauldron/internal/tibtest"
	"github.com/cauldron-dr/cauldron/tib"
)

// The shared fixtures (internal/tibtest), under the short names these tests use.
const MiB = tibtest.MiB

var (
	run           = tibtest.Run
	makeSample    = tibtest.MakeSample
	writeFile     = tibtest.WriteFile
	writeAt       = tibtest.WriteAt
	readRange     = tibtest.ReadRange
	checkRestored = tibtest.CheckRestored
	newRepo       = tibtest.NewRepo
	reopen        = tibtest.Reopen
	newRand       = tibtest.NewRand
	content       = tibtest.Content
)

// readDisk copies one disk of a generation, as the archive reads it back (tib.DiskReader), into a
// new image file of the test's: the archive's own proof that it returns what it captured.
func readDisk(t *testing.T, r *tib.Repository, g *tib.Generation, disk, to string) {
	t.Helper()
	d, err := r.NewDiskReader(ctx, g, disk)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.Copy(f, io.NewSectionReader(d, 0, d.Size())); err != nil {
		t.Fatalf("reading %s of generation %s back: %v", disk, g.ID.Short(), err)
	}
}

// pruneEverything lets prune remove packs however young, for tests that check what it removes
// (tib.PruneYoung keeps a day's packs, a running capture's among them).
func pruneEverything(t testing.TB) {
	young := tib.PruneYoung
	tib.PruneYoung = 0
	t.Cleanup(func() { tib.PruneYoung = young })
}
