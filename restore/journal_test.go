package restore

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cauldron-dr/cauldron/internal/testenv"
	"github.com/cauldron-dr/cauldron/tib"
)

// interrupted runs a recovery of machine onto targets (disk0, disk1, … in order) that stops
// after its restore stage, as a power loss would leave it, and returns its plan.
func interrupted(t *testing.T, r *tib.Repository, repoPath, machine string, targets ...string) *Plan {
	t.Helper()
	req := Request{Name: machine + ".ks", Repo: r, RepoPath: repoPath, Machine: machine, Candidates: []string{}, Freeze: true, Inoculate: Inoculation{Skip: true}}
	for i, tg := range targets {
		req.Disks = append(req.Disks, DiskRequest{Source: "disk" + string(rune('0'+i)), Target: tg})
	}
	p, err := Prepare(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Run(ctx, p, RunOptions{failAfter: StageRestore}); err == nil || !strings.Contains(err.Error(), "stopped after restore") {
		t.Fatalf("the interrupted recovery of %s: %v", machine, err)
	}
	return p
}

// scribble writes a mark into the data of a restored image, where any restore of it writes, and
// returns the image's bytes: a recovery that must write nothing is then seen to write nothing.
func scribble(t *testing.T, img string) []byte {
	t.Helper()
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("half-written by a recovery that stopped"), 1<<20+4096)
	f.Close()
	b, _ := os.ReadFile(img)
	return b
}

func unchanged(t *testing.T, img string, before []byte) {
	t.Helper()
	if after, _ := os.ReadFile(img); !bytes.Equal(before, after) {
		t.Fatalf("%s was written", img)
	}
}

func planOnto(t *testing.T, r *tib.Repository, repoPath, machine, target string) *Plan {
	t.Helper()
	p, err := Prepare(ctx, Request{Name: machine + "-again", Repo: r, RepoPath: repoPath, Machine: machine, Candidates: []string{},
		Disks: []DiskRequest{{Source: "disk0", Target: target}}, Inoculate: Inoculation{Skip: true}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// conflictOf checks that err is a journal conflict with one journal, and returns it.
func conflictOf(t *testing.T, err error) JournalInfo {
	t.Helper()
	var jc *JournalConflictError
	if !errors.As(err, &jc) || len(jc.Journals) != 1 {
		t.Fatalf("want a journal conflict with one journal, got %v", err)
	}
	return jc.Journals[0]
}

// A recovery of another machine onto the image an unfinished recovery was writing is refused,
// naming the journal, that recovery and how far it got; nothing is written. Discarding the other
// journal lets it start over, and the other recovery's claims go with its journal.
func TestJournalOfAnotherRecoveryOnTheSameImage(t *testing.T) {
	dir, r, repoPath, src, _ := captured(t)
	db01, err := r.Capture(ctx, tib.CaptureOptions{Machine: "db01", Sources: []string{src}})
	if err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, "target.img")
	first := interrupted(t, r, repoPath, "db01", target)
	left := scribble(t, target)

	p := planOnto(t, r, repoPath, "web01", target)
	rep, err := Run(ctx, p, RunOptions{})
	ji := conflictOf(t, err)
	journal := target + ".cauldron-journal"
	if ji.Where != journal || ji.Own || ji.Machine != "db01" || ji.Generation != db01.ID.String() || ji.Name != "db01.ks" ||
		!slices.Equal(ji.Targets, []string{target}) || !slices.Contains(ji.Done, "restore:disk0") || !ji.Frozen || ji.Started.IsZero() {
		t.Fatalf("conflict: %+v", ji)
	}
	for _, want := range []string{"target " + target + ": the journal " + journal + " belongs to another recovery (of db01, generation " + db01.ID.String()[:12],
		`"db01.ks"`, "done: freeze, check, restore; stopped before verify", "it froze the replication of db01",
		"Run that recovery again to finish it, or discard its journal to start this recovery over"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the message lacks %q:\n%v", want, err)
		}
	}
	if rep == nil || rep.OK || len(rep.Stages) != 0 {
		t.Errorf("the refused run's report: %+v", rep)
	}
	unchanged(t, target, left)

	// The dry run's view: the same journal, as pending.
	pending, err := PendingJournals(ctx, p)
	if err != nil || len(pending) != 1 || pending[0].Where != ji.Where || pending[0].Own {
		t.Fatalf("pending journals: %+v %v", pending, err)
	}
	// Only the other recovery's journal is discarded: the target is not touched.
	gone, err := DiscardJournal(ctx, p, DiscardOthers)
	if err != nil || len(gone) != 1 || gone[0].Machine != "db01" {
		t.Fatalf("discard: %+v %v", gone, err)
	}
	if _, err := os.Stat(journal); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the discarded journal is still there: %v", err)
	}
	unchanged(t, target, left)
	rep, err = Run(ctx, p, RunOptions{})
	if err != nil || rep.Runs != 1 || rep.Stages[1].Status != "done" {
		t.Fatalf("the recovery after the discard: %v %+v", err, rep)
	}
	equalFiles(t, src, target)
	// The first recovery, run again, finds no journal (it starts over) and no claim of the
	// second (it finished).
	if pending, err := PendingJournals(ctx, first); err != nil || len(pending) != 0 {
		t.Fatalf("after both: %+v %v", pending, err)
	}
}

// The gap the claims close: a recovery whose journal lives elsewhere (here beside its first
// image) holds a second target too; another recovery writing only that second target used to
// find no journal at its own place and overwrite it.
func TestJournalClaimsEveryTarget(t *testing.T) {
	dir, r, repoPath, src, _ := captured(t)
	second := filepath.Join(dir, "second.img")
	if b, err := os.ReadFile(src); err != nil || os.WriteFile(second, b, 0o644) != nil {
		t.Fatal("copying the source")
	}
	if _, err := r.Capture(ctx, tib.CaptureOptions{Machine: "db01", Sources: []string{src, second}}); err != nil {
		t.Fatal(err)
	}
	a, b := filepath.Join(dir, "a.img"), filepath.Join(dir, "b.img")
	interrupted(t, r, repoPath, "db01", a, b)
	left := scribble(t, b)

	p := planOnto(t, r, repoPath, "web01", b)
	_, err := Run(ctx, p, RunOptions{})
	ji := conflictOf(t, err)
	if ji.Where != a+".cauldron-journal" || !slices.Equal(ji.Targets, []string{b}) || ji.Machine != "db01" {
		t.Fatalf("conflict: %+v", ji)
	}
	if !strings.Contains(err.Error(), "target "+b+": the journal "+a+".cauldron-journal belongs to another recovery (of db01") {
		t.Fatalf("message: %v", err)
	}
	unchanged(t, b, left)
	// A claim whose journal is gone is stale: the journal removed by hand (as the old message
	// told technicians to), the target is free.
	os.Remove(a + ".cauldron-journal")
	if rep, err := Run(ctx, p, RunOptions{}); err != nil || !rep.OK {
		t.Fatalf("after the other journal was removed: %v", err)
	}
	equalFiles(t, src, b)
}

// A damaged journal at the recovery's own place stops it (what was done is unknown) and is
// discarded like any other; DiscardAll also drops the recovery's own journal, so that it starts
// from the first step instead of resuming.
func TestJournalDamagedAndRestart(t *testing.T) {
	dir, r, repoPath, src, _ := captured(t)
	target := filepath.Join(dir, "target.img")
	journal := FileJournal(target + ".cauldron-journal")
	journal.Save(ctx, []byte("{not json"))
	p := planOnto(t, r, repoPath, "web01", target)
	_, err := Run(ctx, p, RunOptions{})
	ji := conflictOf(t, err)
	if ji.Damaged == "" || ji.Where != string(journal) || !strings.Contains(err.Error(), "cannot be read") {
		t.Fatalf("damaged journal: %+v\n%v", ji, err)
	}
	if gone, err := DiscardJournal(ctx, p, DiscardOthers); err != nil || len(gone) != 1 || gone[0].Damaged == "" {
		t.Fatalf("discard: %+v %v", gone, err)
	}

	// The recovery's own journal: resumed by default, started over after DiscardAll.
	own := interrupted(t, r, repoPath, "web01", target)
	again, _ := Prepare(ctx, Request{Name: own.Name, Repo: r, RepoPath: repoPath, Machine: "web01", Candidates: []string{},
		Disks: []DiskRequest{{Source: "disk0", Target: target}}, Freeze: true, Inoculate: Inoculation{Skip: true}})
	pending, err := PendingJournals(ctx, again)
	if err != nil || len(pending) != 1 || !pending[0].Own || !strings.Contains(pending[0].String(), "is this recovery's own") {
		t.Fatalf("own journal: %+v %v", pending, err)
	}
	if gone, err := DiscardJournal(ctx, again, DiscardOthers); err != nil || len(gone) != 0 {
		t.Fatalf("DiscardOthers removed the recovery's own journal: %+v %v", gone, err)
	}
	if gone, err := DiscardJournal(ctx, again, DiscardAll); err != nil || len(gone) != 1 || !gone[0].Own {
		t.Fatalf("DiscardAll: %+v %v", gone, err)
	}
	rep, err := Run(ctx, again, RunOptions{})
	if err != nil || rep.Runs != 1 || rep.Stages[0].Status != "done" {
		t.Fatalf("the restarted recovery: %v %+v", err, rep)
	}
	equalFiles(t, src, target)
}

// Device targets keep their journal in the repository, keyed by the recovery's fingerprint: a
// different recovery onto the same device never found it. Now the device's claim names it.
func TestJournalOnDeviceTarget(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedTools(t, "losetup")
	dir, r, repoPath, src, _ := captured(t)
	if _, err := r.Capture(ctx, tib.CaptureOptions{Machine: "db01", Sources: []string{src}}); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "device.img")
	os.WriteFile(img, nil, 0o644)
	os.Truncate(img, 64<<20)
	dev := testenv.AttachLoop(t, img)

	interrupted(t, r, repoPath, "db01", dev)
	left := scribble(t, img)
	p := planOnto(t, r, repoPath, "web01", dev)
	_, err := Run(ctx, p, RunOptions{})
	ji := conflictOf(t, err)
	if !strings.HasPrefix(ji.Where, "in the repository "+r.Location()+" (recovery ") || ji.Machine != "db01" || !slices.Equal(ji.Targets, []string{dev}) {
		t.Fatalf("conflict: %+v", ji)
	}
	unchanged(t, img, left)
	if gone, err := DiscardJournal(ctx, p, DiscardOthers); err != nil || len(gone) != 1 {
		t.Fatalf("discard: %+v %v", gone, err)
	}
	if rep, err := Run(ctx, p, RunOptions{}); err != nil || !rep.OK {
		t.Fatalf("after the discard: %v", err)
	}
	// Finished: neither journal nor claim is left for the next recovery of the device.
	if pending, err := PendingJournals(ctx, planOnto(t, r, repoPath, "db01", dev)); err != nil || len(pending) != 0 {
		t.Fatalf("after success: %+v %v", pending, err)
	}
}
