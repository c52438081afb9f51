package restore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cauldron-dr/cauldron/internal/atomicfile"
	"github.com/cauldron-dr/cauldron/partition"

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
//
// A journal is found by the recovery that wrote it (by its fingerprint, or its first image's
// path). Another recovery onto the same targets — another machine, generation or option, or
// the same disk named by another path — would not find it, and would overwrite targets that hold
// a half-finished recovery without a word. So a run also claims each of its targets: a small
// record in the repository, keyed by the target's identity (a disk's WWN or model and serial,
// whatever path names it; otherwise this host and the canonical path), naming the recovery and
// where its journal is. A claim whose journal is gone (the recovery finished, or its journal was
// discarded) is stale and is taken over. A journal of another recovery on a plan's way stops Run
// with a *JournalConflictError; DiscardJournal removes it so that the plan can start over.

// Journal stores a recovery's journal.
type Journal interface {
	Load(ctx context.Context) ([]byte, error) // nil, nil when there is none
	Save(ctx context.Context, data []byte) error
	Remove(ctx context.Context) error
	String() string
}

// JournalFor returns where plan's journal lives. Its Remove also drops the plan's claims on its
// targets.
func JournalFor(p *Plan) Journal {
	if p.LayoutOnly {
		return noJournal{}
	}
	return &planJournal{Journal: journalStore(p), repo: p.repo, fingerprint: p.Fingerprint, claims: targetClaims(p)}
}

// journalStore is where the journal's content lives (see the package comment above): beside the
// first target when every target keeps one beside it (Target.JournalBeside: image files), else
// in the repository.
func journalStore(p *Plan) Journal {
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

// String names the journal as a technician can find it: which repository, which recovery.
func (j *repoJournal) String() string {
	return fmt.Sprintf("in the repository %s (recovery %.12s)", j.r.Location(), j.key)
}
func (j *repoJournal) Load(ctx context.Context) ([]byte, error) {
	return j.r.LoadJournal(ctx, j.key)
}
func (j *repoJournal) Save(ctx context.Context, data []byte) error {
	return j.r.SaveJournal(ctx, j.key, data)
}
func (j *repoJournal) Remove(ctx context.Context) error { return j.r.RemoveJournal(ctx, j.key) }

// planJournal is a plan's journal with its claims on the plan's targets.
type planJournal struct {
	Journal
	repo        *tib.Repository
	fingerprint string
	claims      []targetClaim
}

// targetClaim is where one target's claim is kept.
type targetClaim struct {
	key    string // the repository's journal key
	target string // the target as the plan names it
}

// claim is a target's claim record: the recovery writing the target and where its journal is.
type claim struct {
	Fingerprint string `json:"fingerprint"`
	Target      string `json:"target"`
	// File is the journal's file when it is beside an image; "" means the repository's journal
	// keyed by Fingerprint.
	File string `json:"file,omitempty"`
}

func (c *claim) store(r *tib.Repository) Journal {
	if c.File != "" {
		return FileJournal(c.File)
	}
	return &repoJournal{r: r, key: c.Fingerprint}
}

func targetClaims(p *Plan) []targetClaim {
	host, _ := os.Hostname()
	var out []targetClaim
	for _, d := range p.Disks {
		out = append(out, targetClaim{key: "target " + targetIdentity(d.Target, host), target: d.Target})
	}
	return out
}

// targetIdentity names a target the same way in every run: a disk by its WWN or its model and
// serial (another recovery, another boot, may reach it by another path), anything else — an
// image file, a disk the kernel gives no serial — by this host and its canonical path.
func targetIdentity(target, host string) string {
	path := resolvedPath(target)
	if fi, err := os.Stat(path); err == nil && fi.Mode()&os.ModeDevice != 0 {
		if l, err := partition.ReadTarget(path); err == nil {
			switch {
			case l.WWN != "":
				return "wwn " + l.WWN
			case l.Serial != "":
				return "serial " + l.Model + " " + l.Serial
			}
		}
	}
	return "path " + host + ":" + path
}

// resolvedPath is a target's absolute path without symlinks; for an image that does not exist
// yet, its folder's, so that the first run and a resumed one (the image then exists) agree.
func resolvedPath(p string) string {
	abs, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		return real
	}
	if dir, err := filepath.EvalSymlinks(filepath.Dir(abs)); err == nil {
		return filepath.Join(dir, filepath.Base(abs))
	}
	return abs
}

// Remove removes the journal, then the claims that are still this recovery's.
func (j *planJournal) Remove(ctx context.Context) error {
	if err := j.Journal.Remove(ctx); err != nil {
		return err
	}
	var errs []error
	for _, c := range j.claims {
		// Another recovery may have taken the target over since (it discarded this one's
		// journal): its claim stays.
		if cl, err := loadClaim(ctx, j.repo, c.key); err != nil || cl == nil || cl.Fingerprint != j.fingerprint {
			continue
		}
		errs = append(errs, j.repo.RemoveJournal(ctx, c.key))
	}
	return errors.Join(errs...)
}

// errDamagedClaim is wrapped when a claim's record cannot be decoded.
var errDamagedClaim = errors.New("damaged claim")

func loadClaim(ctx context.Context, r *tib.Repository, key string) (*claim, error) {
	b, err := r.LoadJournal(ctx, key)
	if err != nil || b == nil {
		return nil, err
	}
	var c claim
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%w: %v", errDamagedClaim, err)
	}
	return &c, nil
}

// claimTargets records this recovery on each of its targets.
func (j *planJournal) claimTargets(ctx context.Context) error {
	c := claim{Fingerprint: j.fingerprint}
	if f, ok := j.Journal.(FileJournal); ok {
		c.File = string(f)
	}
	for _, t := range j.claims {
		c.Target = t.target
		b, err := json.Marshal(c)
		if err != nil {
			return err
		}
		if err := j.repo.SaveJournal(ctx, t.key, b); err != nil {
			return fmt.Errorf("claiming target %s for this recovery: %w", t.target, err)
		}
	}
	return nil
}

// journalState is the journal's content.
type journalState struct {
	Fingerprint string    `json:"fingerprint"`
	Started     time.Time `json:"started"`
	Updated     time.Time `json:"updated"`
	Host        string    `json:"host,omitempty"` // where the recovery ran first
	Runs        int       `json:"runs"`
	Done        []string  `json:"done"` // steps: a stage name, or "restore:disk0", "verify:disk0"
	Plan        *Plan     `json:"plan"`
}

func (s *journalState) done(step string) bool { return slices.Contains(s.Done, step) }

// JournalInfo describes a recovery's journal found on a plan's way.
type JournalInfo struct {
	// Where is where the journal is: the file beside an image, or "in the repository LOCATION
	// (recovery FINGERPRINT)".
	Where string
	// Targets are the plan's targets that this journal's recovery was writing.
	Targets []string
	// Own is true for the journal of this very recovery (running it resumes), false for another's.
	Own bool
	// What the journal says: the recovery's name (kickstart file, "wizard"), machine,
	// generation, the host it started on, when, how many runs, and the steps done.
	Name, Machine, Generation, Host string
	Started, Updated                time.Time
	Runs                            int
	Done                            []string
	// Frozen is true when that recovery froze its machine's replication and has not released it.
	Frozen bool
	// Damaged says why the journal could not be read ("" when it could).
	Damaged string
}

func infoOf(s *journalState, j Journal) JournalInfo {
	i := JournalInfo{Where: j.String(), Host: s.Host, Started: s.Started, Updated: s.Updated, Runs: s.Runs, Done: s.Done}
	if s.Plan != nil {
		i.Name, i.Machine, i.Generation = s.Plan.Name, s.Plan.Machine, s.Plan.Generation
		i.Frozen = s.Plan.Freeze && !s.done(StageRelease)
	}
	return i
}

// Progress says how far the recovery got: the steps done and the stage it stopped before.
func (i JournalInfo) Progress() string {
	if len(i.Done) == 0 {
		return "nothing done yet"
	}
	// A disk's step ("restore:disk0") is named only while its stage is not done as a whole.
	var done []string
	partly := map[string]bool{}
	for _, s := range i.Done {
		if stage, disk, ok := strings.Cut(s, ":"); ok {
			if slices.Contains(i.Done, stage) {
				continue
			}
			partly[stage] = true
			s = stage + " of " + disk
		}
		done = append(done, s)
	}
	out := "done: " + strings.Join(done, ", ")
	for _, st := range Stages {
		switch {
		case st == StageReport || slices.Contains(i.Done, st):
		case partly[st]:
			return out + "; stopped during " + st
		default:
			return out + "; stopped before " + st
		}
	}
	return out
}

// Recovery names the journal's recovery: machine, generation, name, host, when it started and
// last wrote its journal.
func (i JournalInfo) Recovery() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s, generation %.12s", orDefault(i.Machine, "an unknown machine"), orDefault(i.Generation, "unknown"))
	if i.Name != "" {
		fmt.Fprintf(&b, ", %q", i.Name)
	}
	if i.Host != "" {
		fmt.Fprintf(&b, " on host %s", i.Host)
	}
	if !i.Started.IsZero() {
		fmt.Fprintf(&b, ", started %s", i.Started.Local().Format(time.RFC3339))
	}
	if !i.Updated.IsZero() {
		fmt.Fprintf(&b, ", last step %s", i.Updated.Local().Format(time.RFC3339))
	}
	if i.Runs > 1 {
		fmt.Fprintf(&b, ", %d runs", i.Runs)
	}
	return b.String()
}

// FrozenNote says what to do about the replication freeze the recovery holds ("" if none).
func (i JournalInfo) FrozenNote() string {
	if !i.Frozen || i.Own {
		return ""
	}
	return fmt.Sprintf("it froze the replication of %s (release it with `cauldron replication release %s` when that recovery is abandoned)", i.Machine, i.Machine)
}

// String describes the journal in one paragraph.
func (i JournalInfo) String() string {
	var b strings.Builder
	if len(i.Targets) > 0 {
		fmt.Fprintf(&b, "target %s: ", strings.Join(i.Targets, ", "))
	}
	switch {
	case i.Damaged != "":
		fmt.Fprintf(&b, "the journal %s cannot be read (%s): a recovery that did not finish wrote it, and how far it got is unknown", i.Where, i.Damaged)
		return b.String()
	case i.Own:
		fmt.Fprintf(&b, "the journal %s is this recovery's own, from a run that did not finish (%s)", i.Where, i.Recovery())
	default:
		fmt.Fprintf(&b, "the journal %s belongs to another recovery (of %s) that did not finish", i.Where, i.Recovery())
	}
	fmt.Fprintf(&b, "; %s", i.Progress())
	if n := i.FrozenNote(); n != "" {
		b.WriteString("; " + n)
	}
	return b.String()
}

// JournalConflictError is Run's error when another recovery's journal is on the plan's way: a
// target holds a recovery that did not finish, in a state nobody knows but that journal. Finish
// that recovery, or discard its journal (DiscardJournal) to start this one over.
type JournalConflictError struct {
	Journals []JournalInfo
}

func (e *JournalConflictError) Error() string {
	const next = "Run that recovery again to finish it, or discard its journal to start this recovery over (the targets keep what it wrote until this one overwrites them)."
	if len(e.Journals) == 1 {
		return e.Journals[0].String() + ". " + next
	}
	var s []string
	for _, i := range e.Journals {
		s = append(s, i.String())
	}
	return "other recoveries that did not finish are on this recovery's way:\n  - " + strings.Join(s, "\n  - ") + "\n" + next
}

// pending is a journal found on a plan's way, with what removing it takes.
type pending struct {
	info   JournalInfo
	store  Journal  // nil when only a claim was found (it could not be read)
	claims []string // the claim keys that name its recovery
}

// scan finds the journals on p's way: the plan's own (nil when there is none) and the others.
func (j *planJournal) scan(ctx context.Context, p *Plan) (*journalState, []*pending, error) {
	var own *journalState
	var others []*pending
	byFingerprint := map[string]*pending{}
	firstTarget := func() []string {
		if len(p.Disks) == 0 {
			return nil
		}
		return []string{p.Disks[0].Target}
	}
	b, err := j.Journal.Load(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("journal %s: %w", j, err)
	}
	if b != nil {
		var s journalState
		switch err := json.Unmarshal(b, &s); {
		case err != nil:
			others = append(others, &pending{store: j.Journal, info: JournalInfo{Where: j.Journal.String(), Targets: firstTarget(), Damaged: err.Error()}})
		case s.Fingerprint == p.Fingerprint:
			own = &s
		default:
			pd := &pending{store: j.Journal, info: infoOf(&s, j.Journal)}
			pd.info.Targets = firstTarget()
			byFingerprint[s.Fingerprint] = pd
			others = append(others, pd)
		}
	}
	for _, c := range j.claims {
		cl, err := loadClaim(ctx, j.repo, c.key)
		switch {
		case errors.Is(err, errDamagedClaim):
			others = append(others, &pending{claims: []string{c.key}, info: JournalInfo{Where: "in the repository " + j.repo.Location() + " (a claim on the target)",
				Targets: []string{c.target}, Damaged: err.Error()}})
			continue
		case err != nil:
			return nil, nil, fmt.Errorf("target %s: reading its claim in the repository: %w", c.target, err)
		case cl == nil, cl.Fingerprint == p.Fingerprint:
			continue
		}
		if pd := byFingerprint[cl.Fingerprint]; pd != nil {
			pd.claims = append(pd.claims, c.key)
			if !slices.Contains(pd.info.Targets, c.target) {
				pd.info.Targets = append(pd.info.Targets, c.target)
			}
			continue
		}
		store := cl.store(j.repo)
		sb, err := store.Load(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("target %s: reading the journal %s of the recovery that claims it: %w", c.target, store, err)
		}
		if sb == nil {
			continue // stale: that recovery finished, or its journal was discarded
		}
		pd := &pending{store: store, claims: []string{c.key}}
		var s journalState
		if err := json.Unmarshal(sb, &s); err != nil {
			pd.info = JournalInfo{Where: store.String(), Damaged: err.Error()}
		} else {
			pd.info = infoOf(&s, store)
		}
		pd.info.Targets = []string{c.target}
		byFingerprint[cl.Fingerprint] = pd
		others = append(others, pd)
	}
	return own, others, nil
}

// asPlanJournal gives a journal passed in RunOptions the plan's checks; it claims no targets.
func asPlanJournal(j Journal, p *Plan) *planJournal {
	if pj, ok := j.(*planJournal); ok {
		return pj
	}
	return &planJournal{Journal: j, repo: p.repo, fingerprint: p.Fingerprint}
}

// openJournal loads the journal, or starts one, and claims the plan's targets. A journal of
// another recovery on the plan's way is a *JournalConflictError: the targets are in a state
// that a technician must see before anything is written.
func openJournal(ctx context.Context, j Journal, p *Plan) (*journalState, bool, error) {
	pj := asPlanJournal(j, p)
	own, others, err := pj.scan(ctx, p)
	if err != nil {
		return nil, false, err
	}
	if len(others) > 0 {
		e := &JournalConflictError{}
		for _, o := range others {
			e.Journals = append(e.Journals, o.info)
		}
		return nil, false, e
	}
	if err := pj.claimTargets(ctx); err != nil {
		return nil, false, err
	}
	if own == nil {
		host, _ := os.Hostname()
		return &journalState{Fingerprint: p.Fingerprint, Started: time.Now().UTC(), Host: host, Runs: 1, Plan: p}, false, nil
	}
	own.Runs++
	return own, true, nil
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

// PendingJournals lists the journals on p's way, without changing anything: this recovery's own
// (Own: running p resumes it) and other recoveries' that did not finish on p's targets (running
// p is refused with a *JournalConflictError until they are discarded).
func PendingJournals(ctx context.Context, p *Plan) ([]JournalInfo, error) {
	pj, own, others, err := scanPlan(ctx, p)
	if err != nil {
		return nil, err
	}
	var out []JournalInfo
	if own != nil {
		out = append(out, ownInfo(own, pj, p))
	}
	for _, o := range others {
		out = append(out, o.info)
	}
	return out, nil
}

// ownInfo describes the plan's own journal: it holds every target of the plan.
func ownInfo(own *journalState, pj *planJournal, p *Plan) JournalInfo {
	i := infoOf(own, pj.Journal)
	i.Own = true
	for _, d := range p.Disks {
		i.Targets = append(i.Targets, d.Target)
	}
	return i
}

func scanPlan(ctx context.Context, p *Plan) (*planJournal, *journalState, []*pending, error) {
	if p.repo == nil {
		return nil, nil, nil, errors.New("restore: the plan was not made by Prepare")
	}
	pj := JournalFor(p).(*planJournal)
	own, others, err := pj.scan(ctx, p)
	return pj, own, others, err
}

// Discard says which journals DiscardJournal removes.
type Discard int

const (
	// DiscardAll removes every journal on the plan's way, its own too: the run starts from its
	// first step (`cauldron recover --restart`, the wizard's "discard and start over").
	DiscardAll Discard = iota
	// DiscardOthers removes only other recoveries' journals: an interrupted run of this very
	// recovery still resumes.
	DiscardOthers
)

// DiscardJournal removes the journals on p's way (which: all, or only other recoveries'), and
// the claims that name them, so that Run starts p instead of refusing. The targets are not
// touched. It returns what it removed; front ends call it after the same consent as the
// recovery itself, since the removed journals' recoveries can no longer resume.
func DiscardJournal(ctx context.Context, p *Plan, which Discard) ([]JournalInfo, error) {
	pj, own, others, err := scanPlan(ctx, p)
	if err != nil {
		return nil, err
	}
	var removed []JournalInfo
	remove := func(pd *pending) error {
		if pd.store != nil {
			if err := pd.store.Remove(ctx); err != nil {
				return fmt.Errorf("discarding the journal %s: %w", pd.store, err)
			}
		}
		for _, k := range pd.claims {
			if err := pj.repo.RemoveJournal(ctx, k); err != nil {
				return fmt.Errorf("discarding a claim of the journal %s: %w", pd.info.Where, err)
			}
		}
		removed = append(removed, pd.info)
		return nil
	}
	for _, o := range others {
		if err := remove(o); err != nil {
			return removed, err
		}
	}
	if own != nil && which == DiscardAll {
		// Its claims stay: the run that follows writes the same ones.
		if err := remove(&pending{store: pj.Journal, info: ownInfo(own, pj, p)}); err != nil {
			return removed, err
		}
	}
	return removed, nil
}

// noJournal keeps nothing: a plan that only writes partition tables has one step, which is
// simply done again after an interruption.
type noJournal struct{}

func (noJournal) Load(context.Context) ([]byte, error) { return nil, nil }
func (noJournal) Save(context.Context, []byte) error   { return nil }
func (noJournal) Remove(context.Context) error         { return nil }
func (noJournal) String() string                       { return "no journal (partition tables only)" }
