package tib_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cauldron-dr/cauldron/tib"
)

// A machine whose newest generation disappears (deleted, or the repository put back from an
// older copy) used to pass verify with no damage found, though its replication session records
// the last capture. Forget is not a rollback: it moves the record.
func TestRollbackIsSeen(t *testing.T) {
	dir := t.TempDir()
	s := makeSample(t, dir, 4)
	r := newRepo(t, dir, "pw")
	g1 := capture(t, r, "m1", s.Path)
	g2 := capture(t, r, "m1", s.Path)
	capture(t, r, "m2", s.Path)
	verifyClean(t, r, false)

	// forget the newest: no rollback, the record moves to g1.
	if err := r.Forget(ctx, g2); err != nil {
		t.Fatal(err)
	}
	verifyClean(t, r, false)
	if rb, err := r.Rollbacks(ctx, ""); err != nil || len(rb) != 0 {
		t.Fatalf("rollbacks after forget: %v, %v", rb, err)
	}
	if sess, err := r.Session(ctx, "m1"); err != nil || sess.LastGeneration == nil || *sess.LastGeneration != g1.ID {
		t.Fatalf("the session after forget: %+v, %v", sess, err)
	}
	g3 := capture(t, r, "m1", s.Path)

	// The newest manifest deleted behind cauldron's back.
	if err := os.Remove(filepath.Join(r.Location(), "generations", g3.ID.String())); err != nil {
		t.Fatal(err)
	}
	rep, err := r.Verify(ctx, tib.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0], "machine m1: its newest generation "+g3.ID.String()[:12]) ||
		!strings.Contains(rep.Problems[0], "rolled back") {
		t.Fatalf("verify after the newest generation was deleted: %q", rep.Problems)
	}
	// Scoped to the other machine: nothing.
	if rep, err := r.Verify(ctx, tib.VerifyOptions{Machine: "m2"}); err != nil || len(rep.Problems) != 0 {
		t.Fatalf("verify of m2: %v, %v", rep, err)
	}
	if rb, err := r.Rollbacks(ctx, "m1"); err != nil || len(rb) != 1 {
		t.Fatalf("rollbacks of m1: %v, %v", rb, err)
	}
}
