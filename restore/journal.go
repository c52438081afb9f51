package restore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/cauldron-dr/cauldron/internal/atomicfile"

	"github.com/cauldron-dr/cauldron/tib"
)

// The journal records which steps of a recovery are done, so that a run interrupted by a power
// loss or a kill resumes where it stopped. Steps are idempotent (restoring a disk again writes the
// same bytes; the journal only saves time), and the journal keeps the first run's plan, so that
// a resumed run writes the same renewed identities instead of new random ones.
//
// Where it lives: beside the image when every target is an image file (path + ".cauldron-
// journal"); otherwise in the repository (journals/, sealed), which both runs reach — a target
// device being overwritten has no place for it that the restored system will not own.

// Journal stores a recovery's journal.
type Journal interface {
	Load(ctx context.Context) ([]byte, error) // nil, nil when there is none
	Save(ctx context.Context, data []byte) error
	Remove(ctx context.Context) error
	String() string
}

// JournalFor returns where plan's journal lives: beside the first target when every target keeps
// one beside it (Target.JournalBeside: image files), else in the repository.
func JournalFor(p *Plan) Journal {
	beside := ""
	for i := range p.Disks {
		t, err := p.Disks[i].target()
		if err != nil || t.JournalBeside() == "" {
			return &repoJournal{r: p.repo, key: p.Fingerprint}
		}
		if beside == "" {
			beside = t.JournalBeside()
		}
	}
	if beside == "" {
		return &repoJournal{r: p.repo, key: p.Fingerprint}
	}
	return FileJournal(beside)
}

// FileJournal is a journal in a file, written atomically (temporary file, fsync, rename).
type FileJournal string

func (f FileJournal) String() string { return string(f) }

func (f FileJournal) Load(context.Context) ([]byte, error) {
	b, err := os.ReadFile(string(f))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

func (f FileJournal) Save(_ context.Context, data []byte) error {
	return atomicfile.Write(string(f), data, nil)
}

func (f FileJournal) Remove(context.Context) error {
	if err := os.Remove(string(f)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

type repoJournal struct {
	r   *tib.Repository
	key string
}

func (j *repoJournal) String() string { return "the repository's journal " + j.key }
func (j *repoJournal) Load(ctx context.Context) ([]byte, error) {
	return j.r.LoadJournal(ctx, j.key)
}
func (j *repoJournal) Save(ctx context.Context, data []byte) error {
	return j.r.SaveJournal(ctx, j.key, data)
}
func (j *repoJournal) Remove(ctx context.Context) error { return j.r.RemoveJournal(ctx, j.key) }

// journalState is the journal's content.
type journalState struct {
	Fingerprint string    `json:"fingerprint"`
	Started     time.Time `json:"started"`
	Updated     time.Time `json:"updated"`
	Runs        int       `json:"runs"`
	Done        []string  `json:"done"` // steps: a stage name, or "restore:disk0", "verify:disk0"
	Plan        *Plan     `json:"plan"`
}

func (s *journalState) done(step string) bool { return slices.Contains(s.Done, step) }

// openJournal loads the journal, or starts one. A journal of another recovery (another
// fingerprint) is an error: the targets are in an unknown state that a technician must see.
func openJournal(ctx context.Context, j Journal, p *Plan) (*journalState, bool, error) {
	b, err := j.Load(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("journal %s: %w", j, err)
	}
	if b == nil {
		return &journalState{Fingerprint: p.Fingerprint, Started: time.Now().UTC(), Runs: 1, Plan: p}, false, nil
	}
	var s journalState
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, false, fmt.Errorf("journal %s is damaged (%v): remove it to start the recovery over", j, err)
	}
	if s.Fingerprint != p.Fingerprint {
		return nil, false, fmt.Errorf("journal %s belongs to another recovery (of %s, generation %.12s): finish that one, or remove the journal to start over", j, s.Plan.Machine, s.Plan.Generation)
	}
	s.Runs++
	return &s, true, nil
}

func (s *journalState) save(ctx context.Context, j Journal) error {
	s.Updated = time.Now().UTC()
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if err := j.Save(ctx, b); err != nil {
		return fmt.Errorf("journal %s: %w", j, err)
	}
	return nil
}
