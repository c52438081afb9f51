package main

import (
	"bytes"
	"errors"
	"os"
	"testing"

	"github.com/cauldron-dr/cauldron/internal/recoverytest"
)

// TestWizardTmuxDiscardJournal: the target holds db01's unfinished recovery; the wizard's
// recovery of web01 is refused before writing, the result screen names the journal and offers
// to discard it; after the typed word the recovery runs to the end.
func TestWizardTmuxDiscardJournal(t *testing.T) {
	dir, repo, disk, target := wizardFixture(t)
	ok(t, []string{"CAULDRON_PASSWORD=wizard-pw", "CAULDRON_REPOSITORY=" + repo}, "capture", "--machine", "db01", disk)
	journal := recoverytest.Unfinished(t, repo, "wizard-pw", "db01", target)

	p := startTmux(t, dir, "journal", wizardCommand("TERM=vt100", repo, target, dir))
	p.waitFor("step 1 of 8: Network")
	p.keys("Enter")
	p.waitFor("step 2 of 8: Archive")
	p.keys("Enter")
	p.waitFor("Password for " + repo)
	p.typeText("wizard-pw")
	p.keys("Enter")
	p.waitFor("step 3 of 8: Machine", "db01", "web01")
	p.keys("Down", "Enter")
	for _, next := range []string{"step 3 of 8: Generation", "step 4 of 8: Disk mapping"} {
		p.waitFor(next)
		p.keys("Enter")
	}
	p.waitFor("step 5 of 8: Options", "[x] inoculate the restored system")
	p.keys("Space")
	p.waitFor("[ ] inoculate the restored system")
	p.keys("Enter")
	p.waitFor("step 6 of 8: Summary", "machine web01, generation", "Type ERASE")
	p.typeText("ERASE")
	p.keys("Enter")
	p.waitFor("step 8 of 8: Result", "The recovery did NOT start", "Journal:  "+journal, "Recovery: db01, generation",
		"> Discard that recovery's journal and start this recovery over")
	if _, err := os.Stat(journal); err != nil {
		t.Fatalf("the journal went before the technician chose: %v", err)
	}
	p.keys("Enter")
	p.waitFor("Type ERASE and press Enter to discard its journal and start:")
	p.typeText("ERASE")
	p.keys("Enter")
	p.waitFor("step 8 of 8: Result", "The recovery succeeded.")
	if _, err := os.Stat(journal); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the discarded journal: %v", err)
	}
	p.keys("Down", "Enter") // Leave the wizard
	p.waitFor("WIZARD-EXIT=0")
	a, _ := os.ReadFile(disk)
	b, _ := os.ReadFile(target)
	if !bytes.Equal(a, b) {
		t.Fatal("the restored image differs from web01's disk")
	}
}
