package tui

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/cauldron-dr/cauldron/restore"
	"github.com/cauldron-dr/cauldron/tib"
	"github.com/cauldron-dr/cauldron/tib/backend/local"
)

// unfinishedRecovery leaves on target the journal of a recovery of machine that stopped as its
// restore began, as a power loss would, and returns the journal's path.
func unfinishedRecovery(t *testing.T, f *fixture, machine, target string) string {
	t.Helper()
	ctx := context.Background()
	r, err := tib.Open(ctx, local.New(f.repo), func() ([]byte, error) { return f.password, nil })
	if err != nil {
		t.Fatal(err)
	}
	p, err := restore.Prepare(ctx, restore.Request{Name: machine + ".ks", Repo: r, RepoPath: f.repo, Machine: machine, Candidates: []string{},
		Disks: []restore.DiskRequest{{Source: "disk0", Target: target}}, Inoculate: restore.Inoculation{Skip: true}})
	if err != nil {
		t.Fatal(err)
	}
	stop, cancel := context.WithCancel(ctx)
	defer cancel()
	_, err = restore.Run(stop, p, restore.RunOptions{Events: func(e restore.Event) {
		if e.Stage == restore.StageRestore && e.Kind == restore.EventStart {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("the interrupted recovery of %s: %v", machine, err)
	}
	journal := target + ".cauldron-journal"
	if _, err := os.Stat(journal); err != nil {
		t.Fatalf("the interrupted recovery left no journal: %v", err)
	}
	return journal
}

// The engine refuses to start because db01's unfinished recovery is on the target: the result
// screen says nothing was written, names the journal and offers to discard it behind the typed
// word; a wrong word or esc discards nothing; ERASE discards it and the recovery runs to the end.
func TestWizardDiscardsAnotherRecoverysJournal(t *testing.T) {
	f := newFixture(t)
	journal := unfinishedRecovery(t, f, "db01", f.same)
	before, _ := os.ReadFile(f.same)

	d := toSummary(t, f, f.env())
	d.typeText(ConfirmWord)
	d.keys("enter")
	d.expectScreen("Result")
	var jc *restore.JournalConflictError
	if !errors.As(d.m.Result().RunErr, &jc) {
		t.Fatalf("run error: %v", d.m.Result().RunErr)
	}
	d.expectView("The recovery did NOT start", "Nothing was written.", "  Target:   "+f.same+"\n  Journal:  "+journal+"\n  Recovery: db01, generation "+jc.Journals[0].Generation[:12]+`, "db01.ks" on host`,
		"  Progress: done: freeze, check; stopped before restore", "> Discard that recovery's journal and start this recovery over")
	if after, _ := os.ReadFile(f.same); !bytes.Equal(before, after) {
		t.Fatal("the refused recovery wrote the target")
	}

	// esc closes the confirmation; a lower-case word is refused: the journal stays.
	d.keys("enter")
	d.expectView("Type ERASE and press Enter to discard its journal and start:", "enter discard and start  esc cancel")
	d.keys("esc")
	d.expectView("> Discard that recovery's journal")
	d.keys("enter")
	d.typeText("erase")
	d.keys("enter")
	d.expectScreen("Result")
	if !strings.Contains(d.m.message, "Type ERASE (capital letters) to discard the journal; nothing has been discarded.") {
		t.Fatalf("message after a wrong word: %q", d.m.message)
	}
	if _, err := os.Stat(journal); err != nil {
		t.Fatalf("the journal went without the typed word: %v", err)
	}

	d.typeText(ConfirmWord)
	d.keys("enter")
	d.expectScreen("Result")
	res := d.m.Result()
	if res.RunErr != nil || res.Report == nil || !res.Report.OK || res.Report.Runs != 1 {
		t.Fatalf("the recovery after the discard: %v %+v", res.RunErr, res.Report)
	}
	d.expectView("The recovery succeeded.")
	if _, err := os.Stat(journal); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("journal after the recovery: %v", err)
	}
	if !strings.Contains(strings.Join(res.Report.Warnings, "\n"), "discarded in the wizard to start over: target "+f.same+": the journal "+journal) {
		t.Fatalf("the report does not say what was discarded: %q", res.Report.Warnings)
	}
	src, _ := os.ReadFile(f.src)
	got, _ := os.ReadFile(f.same)
	if !bytes.Equal(src, got) {
		t.Fatal("the restored image differs from the source")
	}
	// The offer is gone with the conflict.
	for _, r := range d.m.resultRows() {
		if r == "discard" {
			t.Fatal("the result of a successful recovery offers to discard a journal")
		}
	}
}
