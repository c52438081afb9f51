package tib_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cauldron-dr/cauldron/tib"
	"github.com/cauldron-dr/cauldron/tib/backend"
)

// ageFiles sets the modification time of every file under dir to d ago.
func ageFiles(t *testing.T, dir string, d time.Duration) {
	t.Helper()
	when := time.Now().Add(-d)
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		return os.Chtimes(p, when, when)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestPruneKeepsYoungPacks (issue 16, item 6): prune used to remove the packs of a capture in
// progress whose lock it wrongly judged stale — packs no index lists yet, and indexed packs no
// generation refers to yet. Packs younger than tib.PruneYoung, by the storage's clock, are kept
// now; old ones go as before. Prune also clears what killed writers left in tmp/.
func TestPruneKeepsYoungPacks(t *testing.T) {
	dir := t.TempDir()
	s := makeSample(t, dir, 5)
	r := newRepo(t, dir, "")
	repo := r.Location()
	g := capture(t, r, "m", s.Path)
	if err := r.Forget(ctx, g); err != nil {
		t.Fatal(err)
	}
	// g's packs are indexed and now unneeded, as a running capture's are before its manifest.
	var captured []string
	filepath.WalkDir(filepath.Join(repo, "data"), func(p string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			captured = append(captured, p)
		}
		return err
	})
	if len(captured) == 0 {
		t.Fatal("the capture wrote no packs")
	}
	// A running capture's pack that no index lists yet, and a killed capture's from long ago.
	pack := func(name string) string {
		p := filepath.Join(repo, "data", name[:2], name)
		writeFile(t, p, []byte("a pack's bytes"))
		return p
	}
	running := pack(strings.Repeat("ab", 32))
	killed := pack(strings.Repeat("cd", 32))
	ageFiles(t, filepath.Join(repo, "data", "cd"), tib.PruneYoung+time.Hour)
	// What killed writers left in tmp/, and what a running one is writing.
	leftover := filepath.Join(repo, "tmp", "data-ef-1")
	writing := filepath.Join(repo, "tmp", "data-ef-2")
	writeFile(t, leftover, []byte("half a pack"))
	writeFile(t, writing, []byte("half a pack"))
	ageFiles(t, leftover, backend.TempAge+time.Minute)

	st, err := reopen(t, r, "").Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.PacksRemoved != 1 || st.YoungKept != len(captured)+1 || st.TempRemoved != 1 {
		t.Fatalf("prune: %+v; want the old orphan removed, %d young packs kept, 1 temporary file removed", st, len(captured)+1)
	}
	for _, p := range append(captured, running, writing) {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("prune removed %s, which is young: %v", p, err)
		}
	}
	for _, p := range []string{killed, leftover} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("%s is still there: %v", p, err)
		}
	}
	// The kept packs are still indexed: the repository verifies, but for the stand-in for the
	// running capture's pack, whose bytes are no pack (a real one is linked in whole).
	rep, err := reopen(t, r, "").Verify(ctx, tib.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range rep.Problems {
		if !strings.Contains(p, "pack abababab is in no intact index and its header does not open") {
			t.Errorf("verify: %s", p)
		}
	}

	// Once old, they go.
	ageFiles(t, filepath.Join(repo, "data"), tib.PruneYoung+time.Minute)
	st, err = reopen(t, r, "").Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.PacksRemoved != len(captured)+1 || st.YoungKept != 0 {
		t.Fatalf("prune of old packs: %+v; want %d removed", st, len(captured)+1)
	}
	if n := dirSize(t, filepath.Join(repo, "data")); n != 0 {
		t.Fatalf("data/ still holds %d bytes", n)
	}
}

// TestPruneNoHorizonTakesFutureDatedPacks: with no young-pack horizon (PruneYoung 0: no capture
// can be running), a pack dated in the storage's future — written while its clock was ahead, or
// touched — is unneeded like any other. It was "younger than 0s" for ever, prune kept it, and
// said so.
func TestPruneNoHorizonTakesFutureDatedPacks(t *testing.T) {
	pruneEverything(t)
	dir := t.TempDir()
	s := makeSample(t, dir, 6)
	r := newRepo(t, dir, "")
	g := capture(t, r, "m", s.Path)
	if err := r.Forget(ctx, g); err != nil {
		t.Fatal(err)
	}
	ageFiles(t, filepath.Join(r.Location(), "data"), -3*365*24*time.Hour)
	st, err := r.Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.YoungKept != 0 || st.PacksRemoved == 0 {
		t.Fatalf("prune with no horizon: %+v; want every pack removed", st)
	}
}
