package local_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cauldron-dr/cauldron/tib/backend"
	"github.com/cauldron-dr/cauldron/tib/backend/backendtest"
	"github.com/cauldron-dr/cauldron/tib/backend/local"
)

func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		return local.New(filepath.Join(t.TempDir(), "repo"))
	})
}

// TestCleanTemp: a file a killed writer left in tmp/ (old by the file's own clock) is removed;
// a fresh one, which a running writer may still own, is kept; nothing else is touched.
func TestCleanTemp(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "repo")
	l := local.New(dir)
	if err := l.Create(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := l.CleanTemp(ctx); err != nil || n != 0 {
		t.Fatalf("CleanTemp of an empty tmp/: %d, %v", n, err)
	}
	tmp := filepath.Join(dir, "tmp")
	left := filepath.Join(tmp, "data-ab01-123")
	fresh := filepath.Join(tmp, "data-cd02-456")
	for _, p := range []string{left, fresh} {
		if err := os.WriteFile(p, []byte("part of a pack"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-backend.TempAge - time.Minute)
	if err := os.Chtimes(left, old, old); err != nil {
		t.Fatal(err)
	}
	// Just younger than the age: kept.
	young := time.Now().Add(-backend.TempAge + time.Minute)
	if err := os.Chtimes(fresh, young, young); err != nil {
		t.Fatal(err)
	}
	n, err := l.CleanTemp(ctx)
	if err != nil || n != 1 {
		t.Fatalf("CleanTemp = %d, %v; want 1 removed", n, err)
	}
	if _, err := os.Stat(left); !os.IsNotExist(err) {
		t.Fatalf("the leftover file is still there: %v", err)
	}
	ents, _ := os.ReadDir(tmp)
	if len(ents) != 1 || ents[0].Name() != filepath.Base(fresh) {
		t.Fatalf("tmp/ holds %v; want only the fresh file", ents)
	}
}

// TestCleanTempRemovesOldClockProbes: the file CleanTemp writes to read the storage's clock is
// itself left behind when CleanTemp is killed before removing it; once old it goes like any
// other leftover (it was skipped by name, and so kept for ever).
func TestCleanTempRemovesOldClockProbes(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "repo")
	l := local.New(dir)
	if err := l.Create(ctx); err != nil {
		t.Fatal(err)
	}
	probe := filepath.Join(dir, "tmp", ".clock-123456")
	if err := os.WriteFile(probe, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-backend.TempAge - time.Minute)
	if err := os.Chtimes(probe, old, old); err != nil {
		t.Fatal(err)
	}
	if n, err := l.CleanTemp(ctx); err != nil || n != 1 {
		t.Fatalf("CleanTemp = %d, %v; want the old probe removed", n, err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(ents) != 0 {
		t.Fatalf("tmp/ still holds %v", ents)
	}
}
