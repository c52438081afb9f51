package write_test

import (
	"context"
	"testing"

	"github.com/cauldron-dr/cauldron/internal/tibtest"
	"github.com/cauldron-dr/cauldron/partition"
	"github.com/cauldron-dr/cauldron/restore/target"
	"github.com/cauldron-dr/cauldron/restore/write"
	"github.com/cauldron-dr/cauldron/tib"
)

var ctx = context.Background()

// The shared fixtures (internal/tibtest), under the short names these tests use.
const MiB = tibtest.MiB

var (
	run           = tibtest.Run
	makeSample    = tibtest.MakeSample
	writeFile     = tibtest.WriteFile
	readRange     = tibtest.ReadRange
	sum           = tibtest.Sum
	checkRestored = tibtest.CheckRestored
	newRepo       = tibtest.NewRepo
	newRand       = tibtest.NewRand
	content       = tibtest.Content
	writeAt       = tibtest.WriteAt
)

func capture(t *testing.T, r *tib.Repository, machine string, src ...string) *tib.Generation {
	t.Helper()
	g, err := r.Capture(ctx, tib.CaptureOptions{Machine: machine, Sources: src})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// restoreOpts are a restore's choices beside its target.
type restoreOpts struct {
	plan    *partition.LayoutPlan
	scratch string
	log     func(string)
	disk    string
}

// restoreTo restores a disk of g (disk0 unless o says) onto the path to, as the engine does:
// the target the path names, through the gate (nothing protected but what the test adds).
func restoreTo(r *tib.Repository, g *tib.Generation, to string, o restoreOpts) (write.Stats, error) {
	t, err := target.New(to)
	if err != nil {
		return write.Stats{}, err
	}
	if o.disk == "" {
		o.disk = "disk0"
	}
	return write.Disk(ctx, r, write.Options{Generation: g, Disk: o.disk, Target: t, Gate: &target.Gate{},
		Plan: o.plan, Scratch: o.scratch, Log: o.log})
}

// restore is restoreTo that fails the test on an error.
func restore(t *testing.T, r *tib.Repository, g *tib.Generation, to string) write.Stats {
	t.Helper()
	st, err := restoreTo(r, g, to, restoreOpts{})
	if err != nil {
		t.Fatal(err)
	}
	return st
}
