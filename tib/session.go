package tib

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/cauldron-dr/cauldron/tib/backend"
	"github.com/cauldron-dr/cauldron/tib/crypto"
)

// Replication sessions: per machine, whether captures are feeding the repository and whether a
// recovery has frozen them. A recovery freezes the machine's session first, so that no new
// generation (from the old machine, still running or coming back) lands while it restores, and
// at the end either removes the session (production failover: the recovered machine is now the
// original) or resumes it (copy-and-recover: the copy got new identities and the original keeps
// being captured).
//
// A session is sessions/NAME, NAME = the chunk-ID hash of "session:" + machine (keyed, so file
// names do not reveal machine names), sealed JSON, replaced in place (the backend allows that for
// sessions). Two writers racing on one session is last-writer-wins: freezing is a technician's
// deliberate act, not a lock.

// SessionState is what a session allows.
type SessionState string

const (
	// SessionActive: captures run and add generations.
	SessionActive SessionState = "active"
	// SessionFrozen: a recovery holds the machine; captures refuse.
	SessionFrozen SessionState = "frozen"
)

// ReleaseMode says how a recovery ends a frozen session.
type ReleaseMode string

const (
	// ReleaseRemove deletes the session: production failover.
	ReleaseRemove ReleaseMode = "remove"
	// ReleaseResume makes it active again: copy-and-recover.
	ReleaseResume ReleaseMode = "resume"
)

// Session is one machine's replication session.
type Session struct {
	Machine string       `json:"machine"`
	State   SessionState `json:"state"`
	// Updated is when the session last changed; LastCapture when a capture last committed a
	// generation through it (zero if none has since the session was created).
	Updated     time.Time `json:"updated"`
	LastCapture time.Time `json:"lastCapture,omitzero"`
	// LastGeneration is the machine's newest generation as captures and forget left it, and
	// LastGenerationTime its time: verify and generations report a rollback when it is gone
	// (deleted by someone other than forget, or the repository restored from an older copy).
	LastGeneration     *crypto.ID `json:"lastGeneration,omitempty"`
	LastGenerationTime time.Time  `json:"lastGenerationTime,omitzero"`
	// FrozenBy and FrozenAt say who froze it ("recovery of web01 on host dr-01, PID 412").
	FrozenBy string    `json:"frozenBy,omitempty"`
	FrozenAt time.Time `json:"frozenAt,omitzero"`
}

// ErrFrozen is returned (wrapped) by Capture for a machine whose session is frozen.
var ErrFrozen = errors.New("machine is frozen for recovery")

func (s Session) String() string {
	if s.State == SessionFrozen {
		return fmt.Sprintf("%s: frozen by %s since %s", s.Machine, s.FrozenBy, FormatTime(s.FrozenAt))
	}
	last := "no capture yet"
	if !s.LastCapture.IsZero() {
		last = "last capture " + FormatTime(s.LastCapture)
	}
	return fmt.Sprintf("%s: active, %s", s.Machine, last)
}

func (r *Repository) sessionHandle(machine string) backend.Handle {
	return backend.Handle{Type: backend.Session, Name: r.key.ChunkID([]byte("session:" + machine)).String()}
}

// Session returns the machine's session, or nil when it has none.
func (r *Repository) Session(ctx context.Context, machine string) (*Session, error) {
	b, err := r.loadSealed(ctx, r.sessionHandle(machine))
	if errors.Is(err, backend.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the replication session of %s: %w", machine, err)
	}
	var s Session
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("replication session of %s: %w", machine, err)
	}
	if s.Machine != machine {
		return nil, fmt.Errorf("replication session %s names machine %q, not %q", r.sessionHandle(machine), s.Machine, machine)
	}
	return &s, nil
}

// Sessions lists every session, sorted by machine. Unreadable ones are errors: a session that
// cannot be read might be a freeze that must not be ignored.
func (r *Repository) Sessions(ctx context.Context) ([]Session, error) {
	var names []string
	if err := r.be.List(ctx, backend.Session, func(fi backend.FileInfo) error {
		names = append(names, fi.Name)
		return nil
	}); err != nil {
		return nil, err
	}
	var out []Session
	for _, n := range names {
		b, err := r.loadSealed(ctx, backend.Handle{Type: backend.Session, Name: n})
		if err != nil {
			return nil, fmt.Errorf("sessions/%s: %w", n, err)
		}
		var s Session
		if err := json.Unmarshal(b, &s); err != nil {
			return nil, fmt.Errorf("sessions/%s: %w", n, err)
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Machine < out[j].Machine })
	return out, nil
}

func (r *Repository) saveSession(ctx context.Context, s *Session) error {
	s.Updated = time.Now().UTC()
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if err := r.be.Save(ctx, r.sessionHandle(s.Machine), r.key.Seal(nil, b)); err != nil {
		return fmt.Errorf("writing the replication session of %s: %w", s.Machine, err)
	}
	return nil
}

// Freeze stops new generations for machine until Release. holder says who froze it (shown to a
// capture that is refused). Freezing a machine already frozen by the same holder is a no-op;
// by another holder, an error naming it: two recoveries of one machine at once are a mistake.
func (r *Repository) Freeze(ctx context.Context, machine, holder string) (*Session, error) {
	if err := ValidMachineName(machine); err != nil {
		return nil, err
	}
	s, err := r.Session(ctx, machine)
	if err != nil {
		return nil, err
	}
	if s == nil {
		s = &Session{Machine: machine}
	}
	if s.State == SessionFrozen {
		if s.FrozenBy == holder {
			return s, nil
		}
		return nil, fmt.Errorf("%w: %s (if that recovery is over: `cauldron replication release %s --resume|--remove`)", ErrFrozen, s, machine)
	}
	s.State, s.FrozenBy, s.FrozenAt = SessionFrozen, holder, time.Now().UTC()
	return s, r.saveSession(ctx, s)
}

// Release ends a freeze: ReleaseRemove deletes the session, ReleaseResume makes it active.
// Releasing a machine that has no session or is not frozen is not an error for ReleaseRemove
// (the end state is the one asked for) and resumes nothing for ReleaseResume.
func (r *Repository) Release(ctx context.Context, machine string, how ReleaseMode) error {
	s, err := r.Session(ctx, machine)
	if err != nil {
		return err
	}
	switch how {
	case ReleaseRemove:
		if s == nil {
			return nil
		}
		if err := r.be.Remove(ctx, r.sessionHandle(machine)); err != nil && !errors.Is(err, backend.ErrNotExist) {
			return fmt.Errorf("removing the replication session of %s: %w", machine, err)
		}
		return nil
	case ReleaseResume:
		if s == nil {
			s = &Session{Machine: machine}
		}
		s.State, s.FrozenBy, s.FrozenAt = SessionActive, "", time.Time{}
		return r.saveSession(ctx, s)
	}
	return fmt.Errorf("release: unknown mode %q (want remove or resume)", how)
}

// checkNotFrozen is what Capture asks before it starts and again before it commits.
func (r *Repository) checkNotFrozen(ctx context.Context, machine string) (*Session, error) {
	s, err := r.Session(ctx, machine)
	if err != nil {
		return nil, err
	}
	if s != nil && s.State == SessionFrozen {
		return nil, fmt.Errorf("%w: %s; no new generation is stored until it is released (`cauldron replication release %s --resume|--remove`)", ErrFrozen, s, machine)
	}
	return s, nil
}

// noteCapture records a committed capture in the machine's session (creating it: a machine that
// is captured has a replication session).
func (r *Repository) noteCapture(ctx context.Context, s *Session, gen *Generation) error {
	if s == nil {
		s = &Session{Machine: gen.Machine, State: SessionActive}
	}
	s.LastCapture = time.Now().UTC()
	id := gen.ID
	s.LastGeneration, s.LastGenerationTime = &id, gen.Time
	return r.saveSession(ctx, s)
}

// noteForget moves the session's record of the newest generation to the newest that remains
// when forget removed the recorded one: forgetting is not a rollback.
func (r *Repository) noteForget(ctx context.Context, gen *Generation) error {
	s, err := r.Session(ctx, gen.Machine)
	if err != nil || s == nil || s.LastGeneration == nil || *s.LastGeneration != gen.ID {
		return err
	}
	return r.moveLastGeneration(ctx, s, gen.ID)
}

// moveLastGeneration records the newest readable generation of s's machine, other than gone, as
// its newest.
func (r *Repository) moveLastGeneration(ctx context.Context, s *Session, gone crypto.ID) error {
	gens, err := r.Generations(ctx, s.Machine)
	if err != nil {
		return err
	}
	s.LastGeneration, s.LastGenerationTime = nil, time.Time{}
	for _, g := range gens {
		if g.ID != gone && (s.LastGeneration == nil || g.Time.After(s.LastGenerationTime)) {
			id := g.ID
			s.LastGeneration, s.LastGenerationTime = &id, g.Time
		}
	}
	return r.saveSession(ctx, s)
}

// noteReplaced moves a session's record of its machine's newest generation from old to its
// replacement (repair generations writes a generation anew under a new ID).
func (r *Repository) noteReplaced(ctx context.Context, old, replacement *Generation) error {
	s, err := r.Session(ctx, old.Machine)
	if err != nil || s == nil || s.LastGeneration == nil || *s.LastGeneration != old.ID {
		return err
	}
	id := replacement.ID
	s.LastGeneration = &id
	return r.saveSession(ctx, s)
}

// Rollbacks names the machines (machine only, when given) whose newest generation, as their
// replication session records it, is no longer stored: deleted other than by forget, or the
// repository (or that manifest) replaced by an older copy. Generation manifests are sealed and
// content-named, so anyone without the key can only remove them or put old ones back; the
// session's record is what shows it.
func (r *Repository) Rollbacks(ctx context.Context, machine string) ([]string, error) {
	sessions, err := r.Sessions(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range sessions {
		if (machine != "" && s.Machine != machine) || s.LastGeneration == nil {
			continue
		}
		_, err := r.be.Stat(ctx, backend.Handle{Type: backend.Generation, Name: s.LastGeneration.String()})
		if errors.Is(err, backend.ErrNotExist) {
			out = append(out, fmt.Sprintf("machine %s: its newest generation %s (%s), recorded by its replication session, is missing: deleted other than by forget, or the repository rolled back to an older copy",
				s.Machine, s.LastGeneration.String()[:12], FormatTime(s.LastGenerationTime)))
		} else if err != nil {
			return nil, fmt.Errorf("generation %s of %s: %w", s.LastGeneration.Short(), s.Machine, err)
		}
	}
	return out, nil
}

// SessionHolder describes this process, for Freeze's holder ("recovery of web01 on host dr-01,
// PID 412").
func SessionHolder(purpose string) string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s on host %s, PID %d", purpose, host, os.Getpid())
}

// Recovery journals (journals/NAME, sealed, replaceable) let an interrupted recovery resume. The
// recovery engine owns their content; the repository only stores them, named by the keyed chunk
// ID of "journal:" + the engine's key for the recovery, like sessions.

func (r *Repository) journalHandle(key string) backend.Handle {
	return backend.Handle{Type: backend.Journal, Name: r.key.ChunkID([]byte("journal:" + key)).String()}
}

// SaveJournal stores (or replaces) the journal for key.
func (r *Repository) SaveJournal(ctx context.Context, key string, plain []byte) error {
	if err := r.be.Save(ctx, r.journalHandle(key), r.key.Seal(nil, plain)); err != nil {
		return fmt.Errorf("writing the recovery journal: %w", err)
	}
	return nil
}

// LoadJournal returns the journal for key, or nil when there is none.
func (r *Repository) LoadJournal(ctx context.Context, key string) ([]byte, error) {
	b, err := r.loadSealed(ctx, r.journalHandle(key))
	if errors.Is(err, backend.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the recovery journal: %w", err)
	}
	return b, nil
}

// RemoveJournal deletes the journal for key; a missing one is not an error.
func (r *Repository) RemoveJournal(ctx context.Context, key string) error {
	if err := r.be.Remove(ctx, r.journalHandle(key)); err != nil && !errors.Is(err, backend.ErrNotExist) {
		return fmt.Errorf("removing the recovery journal: %w", err)
	}
	return nil
}

// Recovery reports (reports/ID, zstd-compressed and sealed like manifests, content-named and
// immutable) keep what every recovery did, beside the generations it restored.

// SaveReport stores a recovery report and returns its ID.
func (r *Repository) SaveReport(ctx context.Context, plain []byte) (crypto.ID, error) {
	id, err := r.saveSealedCompressed(ctx, backend.Report, plain)
	if err != nil {
		return id, fmt.Errorf("saving the recovery report: %w", err)
	}
	return id, nil
}

// Reports lists the stored reports' IDs.
func (r *Repository) Reports(ctx context.Context) ([]crypto.ID, error) {
	return r.listIDs(ctx, backend.Report)
}

// LoadReport reads a stored report.
func (r *Repository) LoadReport(ctx context.Context, id crypto.ID) ([]byte, error) {
	return r.loadSealedCompressed(ctx, backend.Report, id)
}
