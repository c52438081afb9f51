// Package recoverytest makes, for the front ends' tests, the state a recovery leaves when it is
// cut off half-way.
package recoverytest

import (
	"context"
	"errors"
	"testing"

	"github.com/cauldron-dr/cauldron/restore"
	"github.com/cauldron-dr/cauldron/tib"
	"github.com/cauldron-dr/cauldron/tib/backend/local"
)

// Unfinished runs a recovery of machine from the repository directory repo onto the image file
// target and stops it as its restore stage begins, as a power loss would: its journal (freeze
// and check done) and its claim on the target stay behind. It returns the journal's path.
func Unfinished(t testing.TB, repo, password, machine, target string) string {
	t.Helper()
	ctx := context.Background()
	r, err := tib.Open(ctx, local.New(repo), func() ([]byte, error) { return []byte(password), nil })
	if err != nil {
		t.Fatal(err)
	}
	p, err := restore.Prepare(ctx, restore.Request{Name: machine + ".ks", Repo: r, RepoPath: repo, Machine: machine, Candidates: []string{},
		Disks: []restore.DiskRequest{{Source: "disk0", Target: target}}, Inoculate: restore.Inoculation{Skip: true}})
	if err != nil {
		t.Fatal(err)
	}
	stop, cancel := context.WithCancel(ctx)
	defer cancel()
	_, err = restore.Run(stop, p, restore.RunOptions{Events: func(e restore.Event) {
		if e.Stage == restore.StageRestore && e.Kind == restore.EventStart && e.Disk == "" {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("the interrupted recovery of %s: %v", machine, err)
	}
	return target + ".cauldron-journal"
}
