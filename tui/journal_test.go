package tui

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/cauldron-dr/cauldron/internal/recoverytest"
	"github.com/cauldron-dr/cauldron/restore"
)

// The engine refuses to start because db01's unfinished recovery is on the target: the result
// screen says nothing was written, names the journal and offers to discard it behind the typed
// word; a wrong word or esc discards nothing; ERASE discards it and the recovery runs to the end.
func TestWizardDiscardsAnotherRecoverysJournal(t *testing.T) {
	f := newFixture(t)
	journal := recoverytest.Unfinished(t, f.repo, string(f.password), "db01", f.same)
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
