package tib_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cauldron-dr/cauldron/tib"
	"github.com/cauldron-dr/cauldron/tib/crypto"
)

// manifestPath is where a generation's manifest lies in a local repository.
func manifestPath(r *tib.Repository, id crypto.ID) string {
	return filepath.Join(r.Location(), "generations", id.String())
}

// A manifest that cannot be read — damaged, sealed by another repository's key, or a manifest
// of the wrong shape — is one damaged generation: the others are listed, restored and captured;
// verify and prune name it and the remedy; forget removes it by its ID.
func TestDamagedManifestIsOneGeneration(t *testing.T) {
	dir := t.TempDir()
	s := makeSample(t, dir, 11)
	for _, tc := range []struct {
		name string
		// damage makes one manifest unreadable and returns its ID; newest is web's newest.
		damage func(t *testing.T, r *tib.Repository, newest *tib.Generation) crypto.ID
		// newestLost: the damage hit web's newest generation, so the parent of web's next
		// capture is the one before.
		newestLost bool
	}{
		{"flipped byte", func(t *testing.T, r *tib.Repository, newest *tib.Generation) crypto.ID {
			p := manifestPath(r, newest.ID)
			fi, _ := os.Stat(p)
			flip(t, p, fi.Size()/2)
			return newest.ID
		}, true},
		{"other repository's", func(t *testing.T, r *tib.Repository, _ *tib.Generation) crypto.ID {
			other := newRepo(t, t.TempDir(), "pw")
			g := capture(t, other, "intruder", s.Path)
			b, err := os.ReadFile(manifestPath(other, g.ID))
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, manifestPath(r, g.ID), b)
			return g.ID
		}, false},
		{"wrong shape", func(t *testing.T, r *tib.Repository, _ *tib.Generation) crypto.ID {
			g := &tib.Generation{Disks: []tib.Disk{{Name: "disk7"}}}
			if err := r.SaveGeneration(ctx, g); err != nil {
				t.Fatal(err)
			}
			return g.ID
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := t.TempDir()
			r := newRepo(t, d, "pw")
			web1 := capture(t, r, "web", s.Path)
			db1 := capture(t, r, "db", s.Path)
			web2 := capture(t, r, "web", s.Path)
			bad := tc.damage(t, r, web2)
			r = reopen(t, r, "pw")
			var said []string
			r.SetLog(func(s string) { said = append(said, s) })

			gens, damaged, err := r.ListGenerations(ctx, "")
			if err != nil {
				t.Fatalf("listing with one bad manifest: %v", err)
			}
			if len(damaged) != 1 || damaged[0].ID != bad || !errors.Is(damaged[0], tib.ErrDamagedManifest) {
				t.Fatalf("damaged manifests listed: %v, want %s", damaged, bad.Short())
			}
			if want := 3 - btoi(tc.newestLost); len(gens) != want {
				t.Fatalf("%d readable generations listed, want %d", len(gens), want)
			}
			readDisk(t, r, db1, "disk0", filepath.Join(d, "db.img"))
			latest, err := r.FindGeneration(ctx, "web", "latest")
			if err != nil {
				t.Fatalf("web's latest: %v", err)
			}
			wantParent := web2.ID
			if tc.newestLost {
				wantParent = web1.ID
			}
			if latest.ID != wantParent {
				t.Fatalf("web's latest is %s, want %s", latest.ID.Short(), wantParent.Short())
			}
			web3 := capture(t, r, "web", s.Path)
			if web3.Parent == nil || *web3.Parent != wantParent {
				t.Fatalf("capture's parent %v, want %s", web3.Parent, wantParent.Short())
			}
			if !strings.Contains(strings.Join(said, "\n"), bad.Short()) {
				t.Errorf("choosing among the readable generations was not said: %q", said)
			}

			rep, err := r.Verify(ctx, tib.VerifyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if p := strings.Join(rep.Problems, "\n"); !strings.Contains(p, bad.String()) || !strings.Contains(p, "cauldron forget --generation "+bad.String()) {
				t.Errorf("verify does not name the manifest and its remedy:\n%s", p)
			}
			if _, err := r.Prune(ctx); err == nil || !strings.Contains(err.Error(), bad.Short()) || !strings.Contains(err.Error(), "cauldron forget") {
				t.Fatalf("prune with an unreadable manifest: %v", err)
			}
			if _, err := os.Stat(manifestPath(r, web1.ID)); err != nil {
				t.Fatal("prune's refusal lost a manifest")
			}

			gen, me, err := r.ForgetID(ctx, "", bad.String()[:10])
			if err != nil || gen != nil || me == nil || me.ID != bad {
				t.Fatalf("forget of the damaged generation: %v, %v, %v", gen, me, err)
			}
			if _, err := os.Stat(manifestPath(r, bad)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the damaged manifest is still there: %v", err)
			}
			if _, err := r.Prune(ctx); err != nil {
				t.Fatalf("prune after forget: %v", err)
			}
			r = reopen(t, r, "pw")
			verifyClean(t, r, true)
			readDisk(t, r, web1, "disk0", filepath.Join(d, "web1.img"))
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// forget names a readable generation by ID too, and refuses one of another machine.
func TestForgetIDChecksTheMachine(t *testing.T) {
	dir := t.TempDir()
	s := makeSample(t, dir, 12)
	r := newRepo(t, dir, "pw")
	g := capture(t, r, "web", s.Path)
	if _, _, err := r.ForgetID(ctx, "db", g.ID.String()[:8]); err == nil || !strings.Contains(err.Error(), "web") {
		t.Fatalf("forget of web's generation as db's: %v", err)
	}
	got, me, err := r.ForgetID(ctx, "web", g.ID.String()[:8])
	if err != nil || me != nil || got == nil || got.ID != g.ID {
		t.Fatalf("forget: %v, %v, %v", got, me, err)
	}
	if _, _, err := r.ForgetID(ctx, "", g.ID.String()[:8]); !errors.Is(err, tib.ErrUnknownGeneration) {
		t.Fatalf("forgetting it again: %v", err)
	}
}
