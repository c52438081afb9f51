package tib_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cauldron-dr/cauldron/tib"
)

func TestReplicationSessions(t *testing.T) {
	dir := t.TempDir()
	r := newRepo(t, dir, "pw")
	src := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(src, []byte(strings.Repeat("cauldron session test ", 50000)), 0o644); err != nil {
		t.Fatal(err)
	}
	if s, err := r.Session(ctx, "web01"); err != nil || s != nil {
		t.Fatalf("new repository has a session: %v %v", s, err)
	}
	// A capture creates the machine's session, active.
	capture(t, r, "web01", src)
	s, err := r.Session(ctx, "web01")
	if err != nil || s == nil || s.State != tib.SessionActive || s.LastCapture.IsZero() {
		t.Fatalf("after capture: %+v %v", s, err)
	}

	// Frozen: captures refuse, naming the holder; a second holder is refused; the same holder
	// freezing again is fine.
	holder := tib.SessionHolder("recovery of web01")
	if _, err := r.Freeze(ctx, "web01", holder); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Freeze(ctx, "web01", holder); err != nil {
		t.Fatalf("re-freeze by the same holder: %v", err)
	}
	if _, err := r.Freeze(ctx, "web01", "another recovery"); !errors.Is(err, tib.ErrFrozen) {
		t.Fatalf("second holder: %v", err)
	}
	gens, _ := r.Generations(ctx, "web01")
	_, err = reopen(t, r, "pw").Capture(ctx, tib.CaptureOptions{Machine: "web01", Sources: []string{src}})
	if !errors.Is(err, tib.ErrFrozen) || !strings.Contains(err.Error(), "recovery of web01") || !strings.Contains(err.Error(), "replication release web01") {
		t.Fatalf("capture of a frozen machine: %v", err)
	}
	if after, _ := r.Generations(ctx, "web01"); len(after) != len(gens) {
		t.Fatalf("a generation landed while frozen: %d → %d", len(gens), len(after))
	}
	// Other machines are not affected.
	capture(t, r, "db01", src)

	// Resume: captures run again.
	if err := r.Release(ctx, "web01", tib.ReleaseResume); err != nil {
		t.Fatal(err)
	}
	capture(t, r, "web01", src)
	list, err := r.Sessions(ctx)
	if err != nil || len(list) != 2 || list[0].Machine != "db01" || list[1].Machine != "web01" || list[1].State != tib.SessionActive {
		t.Fatalf("sessions: %+v %v", list, err)
	}

	// Remove: the session is gone (and removing again is not an error).
	if _, err := r.Freeze(ctx, "web01", holder); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := r.Release(ctx, "web01", tib.ReleaseRemove); err != nil {
			t.Fatal(err)
		}
	}
	if s, err := r.Session(ctx, "web01"); err != nil || s != nil {
		t.Fatalf("after remove: %+v %v", s, err)
	}
	if err := r.Release(ctx, "web01", "pause"); err == nil || !strings.Contains(err.Error(), `unknown mode "pause"`) {
		t.Fatalf("bad mode: %v", err)
	}
	// Session file names do not reveal machine names.
	ents, _ := os.ReadDir(filepath.Join(r.Location(), "sessions"))
	for _, e := range ents {
		if strings.Contains(e.Name(), "db01") {
			t.Fatalf("session file named after the machine: %s", e.Name())
		}
	}
}
