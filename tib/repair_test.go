package tib_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cauldron-dr/cauldron/tib"
	"github.com/cauldron-dr/cauldron/tib/backend"
	"github.com/cauldron-dr/cauldron/tib/backend/local"
)

// removeMetaPacks deletes a generation's own metadata packs.
func removeMetaPacks(t *testing.T, r *tib.Repository, g *tib.Generation) {
	t.Helper()
	if len(g.MetaPacks) == 0 {
		t.Fatal("the generation has no metadata pack")
	}
	for _, p := range g.MetaPacks {
		if err := os.Remove(filepath.Join(r.Location(), "data", p.String()[:2], p.String())); err != nil {
			t.Fatal(err)
		}
	}
}

// repair generations removes what cannot be read, rebuilds used maps lost in every copy from the
// chunks (the filesystem's allocation structures, or the non-zero blocks of a whole region),
// writes a generation's own metadata copies again, and names the chunk lists nothing can rebuild.
func TestRepairGenerations(t *testing.T) {
	dir := t.TempDir()
	s := makeSample(t, dir, 15)
	r := newRepo(t, dir, "pw")
	g := capture(t, r, "web", s.Path)
	other := capture(t, r, "db", s.Path)
	junk := &tib.Generation{}
	if err := r.SaveGeneration(ctx, junk); err != nil {
		t.Fatal(err)
	}
	// Every copy of web's ext4 and raw-partition used maps lost: the shared one damaged, web's
	// own packs gone (db's own copies would serve, but db is forgotten first).
	if _, _, err := r.ForgetID(ctx, "", other.ID.String()); err != nil {
		t.Fatal(err)
	}
	var ext, raw *tib.Region
	for i, rg := range g.Disks[0].Regions {
		switch {
		case rg.Filesystem == "ext4":
			ext = &g.Disks[0].Regions[i]
		case rg.Kind == tib.RegionPartition && rg.Whole:
			raw = &g.Disks[0].Regions[i]
		}
	}
	corruptBlob(t, r, ext.UsedMap)
	corruptBlob(t, r, raw.UsedMap)
	removeMetaPacks(t, r, g)
	r = reopen(t, r, "pw")
	if _, err := r.NewDiskReader(ctx, g, "disk0"); err == nil {
		t.Fatal("the damage did not take the used maps")
	}
	rep, err := r.Verify(ctx, tib.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p := strings.Join(rep.Problems, "\n"); !strings.Contains(p, "used map") || !strings.Contains(p, "cauldron repair generations") {
		t.Fatalf("verify does not name lost metadata and its repair:\n%s", p)
	}

	dry, err := r.RepairGenerations(ctx, tib.RepairGenerationsOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(dry.Removed) != 1 || dry.Removed[0].ID != junk.ID || len(dry.Rewritten) != 1 || dry.Rewritten[0].New != (tib.Generation{}).ID {
		t.Fatalf("dry run: %+v", dry)
	}
	if _, err := os.Stat(manifestPath(r, junk.ID)); err != nil {
		t.Fatal("the dry run removed a manifest")
	}

	done, err := r.RepairGenerations(ctx, tib.RepairGenerationsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(done.Lost) > 0 || len(done.Rewritten) != 1 || len(done.Removed) != 1 {
		t.Fatalf("repair: %+v", done)
	}
	if said := strings.Join(done.Rewritten[0].Rebuilt, "\n"); !strings.Contains(said, "rebuilt exactly from the ext4") || !strings.Contains(said, "non-zero blocks") {
		t.Errorf("repair does not say how it rebuilt the used maps:\n%s", said)
	}
	for _, id := range []string{g.ID.String(), junk.ID.String()} {
		if _, err := os.Stat(filepath.Join(r.Location(), "generations", id)); !os.IsNotExist(err) {
			t.Errorf("manifest %s still there: %v", id[:8], err)
		}
	}
	r = reopen(t, r, "pw")
	fixed, err := r.FindGeneration(ctx, "web", "latest")
	if err != nil || fixed.ID != done.Rewritten[0].New || !fixed.Time.Equal(g.Time) {
		t.Fatalf("web's generation after repair: %v, %v", fixed, err)
	}
	out := filepath.Join(dir, "out.img")
	readDisk(t, r, fixed, "disk0", out)
	checkRestored(t, s, out, dir)
	rep, err = r.Verify(ctx, tib.VerifyOptions{})
	if err != nil || len(rep.Problems) > 0 {
		t.Fatalf("verify after repair: %v\n%s", err, strings.Join(rep.Problems, "\n"))
	}

	// A chunk list lost in every copy is named, with the bytes it hits; nothing is rewritten.
	corruptBlob(t, r, ext.Chunks)
	removeMetaPacks(t, r, fixed)
	r = reopen(t, r, "pw")
	rep, err = r.Verify(ctx, tib.VerifyOptions{})
	if p := strings.Join(rep.Problems, "\n"); err != nil || !strings.Contains(p, "metadata pack") || !strings.Contains(p, "chunk list") || !strings.Contains(p, "cauldron repair generations") {
		t.Fatalf("verify of a lost chunk list and missing metadata packs: %v\n%s", err, p)
	}
	lost, err := r.RepairGenerations(ctx, tib.RepairGenerationsOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if l := strings.Join(lost.Lost, "\n"); !strings.Contains(l, "chunk list is lost") || !strings.Contains(l, "machine web") {
		t.Fatalf("lost chunk list not named: %+v", lost)
	}
}

// failSessionSaves is a storage on which replication sessions cannot be written (a full disk,
// a server refusing): what a repair killed between its steps leaves behind.
type failSessionSaves struct{ backend.Backend }

func (f failSessionSaves) Save(ctx context.Context, h backend.Handle, data []byte) error {
	if h.Type == backend.Session {
		return errors.New("injected: sessions cannot be written")
	}
	return f.Backend.Save(ctx, h, data)
}

// webWithoutMetaPacks is a repository with one generation of machine web whose own metadata
// packs are gone: one that repair generations writes anew.
func webWithoutMetaPacks(t *testing.T, seed uint64) (*tib.Repository, *tib.Generation) {
	dir := t.TempDir()
	s := makeSample(t, dir, seed)
	r := newRepo(t, dir, "pw")
	g := capture(t, r, "web", s.Path)
	removeMetaPacks(t, r, g)
	return r, g
}

// A repair that cannot move a machine's replication session to the generation written anew must
// not have removed the generation the session records: verify would call that a rollback.
func TestRepairGenerationsMovesSessionBeforeRemoving(t *testing.T) {
	r, _ := webWithoutMetaPacks(t, 16)
	broken, err := tib.Open(ctx, failSessionSaves{local.New(r.Location())}, func() ([]byte, error) { return []byte("pw"), nil })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := broken.RepairGenerations(ctx, tib.RepairGenerationsOptions{}); err == nil {
		t.Fatal("repair succeeded though the session could not be written")
	}
	r = reopen(t, r, "pw")
	rb, err := r.Rollbacks(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(rb) > 0 {
		t.Fatalf("a failed repair left the session recording a removed generation:\n%s", strings.Join(rb, "\n"))
	}
}

// A repair interrupted after saving a generation anew (both manifests stored) and run again
// removes the old manifest: it does not write the same generation a second time.
func TestRepairGenerationsRunAgainAfterInterruption(t *testing.T) {
	r, g := webWithoutMetaPacks(t, 17)
	old, err := os.ReadFile(manifestPath(r, g.ID))
	if err != nil {
		t.Fatal(err)
	}
	first, err := r.RepairGenerations(ctx, tib.RepairGenerationsOptions{})
	if err != nil || len(first.Rewritten) != 1 {
		t.Fatalf("repair: %+v, %v", first, err)
	}
	// As if killed before the old manifest was removed.
	if err := os.WriteFile(manifestPath(r, g.ID), old, 0o600); err != nil {
		t.Fatal(err)
	}
	r = reopen(t, r, "pw")
	again, err := r.RepairGenerations(ctx, tib.RepairGenerationsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gens, err := r.Generations(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if len(gens) != 1 || gens[0].ID != first.Rewritten[0].New {
		ids := make([]string, len(gens))
		for i, x := range gens {
			ids[i] = x.ID.Short()
		}
		t.Fatalf("after the second repair web has generations %v (want only %s); second repair: %+v", ids, first.Rewritten[0].New.Short(), again)
	}
	if _, err := os.Stat(manifestPath(r, g.ID)); !os.IsNotExist(err) {
		t.Fatalf("the old manifest is still there: %v", err)
	}
}
