package restore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/cauldron-dr/cauldron/partition"
	"github.com/cauldron-dr/cauldron/restore/target"
	"github.com/cauldron-dr/cauldron/restore/write"
	"github.com/cauldron-dr/cauldron/tib"
)

// RunOptions are how Run reports and what it calls out to.
type RunOptions struct {
	// Events receives every event, in order, from one goroutine at a time.
	Events func(Event)
	// Journal is where progress is recorded; nil means JournalFor(plan).
	Journal Journal
	// Inoculate replaces the inoculation the plan says (Inoculate, or InoculateOnTarget when
	// Plan.Inoculate.OnTarget): tests use it; nil is the plan's.
	Inoculate func(ctx context.Context, p *Plan, emit func(Event)) (*InoculationResult, error)
	// failAfter stops the run with an error after the named step: tests of resuming use it.
	failAfter string
}

// Report is what a recovery did. It is saved into the repository and printed at the end.
type Report struct {
	ID             string        `json:"id,omitempty"` // the report's ID in the repository
	Name           string        `json:"name"`
	Repository     string        `json:"repository"`
	Machine        string        `json:"machine"`
	Generation     string        `json:"generation"`
	GenerationTime time.Time     `json:"generationTime"`
	Started        time.Time     `json:"started"`
	Finished       time.Time     `json:"finished"`
	Seconds        float64       `json:"seconds"`
	Runs           int           `json:"runs"`                 // > 1: resumed after an interruption
	LayoutOnly     bool          `json:"layoutOnly,omitempty"` // partition tables only
	OK             bool          `json:"ok"`
	Error          string        `json:"error,omitempty"`
	Stages         []StageResult `json:"stages"`
	Disks          []DiskReport  `json:"disks"`
	Inoculation    []string      `json:"inoculation,omitempty"`
	Warnings       []string      `json:"warnings,omitempty"`
	Log            []Event       `json:"log"`
}

// StageResult is one stage's outcome.
type StageResult struct {
	Name    string  `json:"name"`
	Status  string  `json:"status"` // done, skipped, resumed (done in an earlier run), failed
	Seconds float64 `json:"seconds"`
	Message string  `json:"message,omitempty"`
}

// DiskReport is one disk's outcome.
type DiskReport struct {
	Source   string                `json:"source"`
	Target   string                `json:"target"`
	Bytes    int64                 `json:"bytes"`
	Seconds  float64               `json:"seconds"`
	Rate     float64               `json:"rate"` // bytes per second
	Resized  []partition.FSResize  `json:"resized,omitempty"`
	Verified int64                 `json:"verified"` // bytes compared with the generation
	Checked  []string              `json:"checked,omitempty"`
	Skipped  []string              `json:"skipped,omitempty"`
	Layout   *partition.LayoutPlan `json:"-"`
	// Damaged are the byte ranges a partial restore left as zeros, and why.
	Damaged []string `json:"damaged,omitempty"`
	// Table is what writing a planned table did (wiped ranges, how the kernel learnt it).
	Table *partition.ApplyResult `json:"table,omitempty"`
}

type run struct {
	p       *Plan
	o       RunOptions
	j       Journal
	state   *journalState
	rep     *Report
	mu      sync.Mutex // events and the report
	started time.Time
	// verifiedEarly are the disks compared with the generation during their restore (before
	// their filesystems grew).
	verifiedEarly map[string]bool
	// damaged are, per disk, the ranges a partial restore left as zeros.
	damaged map[string][]*tib.DamageError
}

// Run carries out a plan. It returns the report (also when it fails) and the first error.
func Run(ctx context.Context, p *Plan, o RunOptions) (*Report, error) {
	if !p.prepared {
		return nil, errors.New("restore: the plan was not made by Prepare")
	}
	x := &run{p: p, o: o, j: o.Journal, started: time.Now(), verifiedEarly: map[string]bool{}, damaged: map[string][]*tib.DamageError{}}
	if x.j == nil {
		x.j = JournalFor(p)
	}
	x.rep = &Report{Name: p.Name, Repository: p.Repository, Machine: p.Machine, Generation: p.Generation,
		GenerationTime: p.GenerationTime, Started: x.started.UTC(), Warnings: p.Warnings, LayoutOnly: p.LayoutOnly}
	for _, d := range p.Disks {
		x.rep.Disks = append(x.rep.Disks, DiskReport{Source: d.Source, Target: d.Target, Layout: d.Layout})
	}
	state, resumed, err := openJournal(ctx, x.j, p)
	if err != nil {
		return x.finish(ctx, err)
	}
	x.state = state
	x.rep.Runs = state.Runs
	if resumed {
		// The first run's layouts: their renewed identities are already on the targets.
		for i := range p.Disks {
			for _, jd := range state.Plan.Disks {
				if jd.Source == p.Disks[i].Source && jd.Layout != nil {
					p.Disks[i].Layout = jd.Layout
					x.rep.Disks[i].Layout = jd.Layout
				}
			}
		}
		x.emit(Event{Stage: StageCheck, Kind: EventInfo, Message: fmt.Sprintf("resuming the recovery started %s (run %d); done before: %v",
			tib.FormatTime(state.Started), state.Runs, state.Done)})
	}
	if err := state.save(ctx, x.j); err != nil {
		return x.finish(ctx, err)
	}
	for _, st := range steps {
		if err := x.stage(ctx, st.name, func(ctx context.Context) (stageOutcome, error) { return st.run(x, ctx) }); err != nil {
			return x.finish(ctx, err)
		}
	}
	return x.finish(ctx, nil)
}

// step is one stage of a recovery and the method that carries it out.
type step struct {
	name string
	run  func(x *run, ctx context.Context) (stageOutcome, error)
}

// steps are the stages Run goes through, in order; the report stage follows them (finish).
// Stages is derived from this list.
var steps = []step{
	{StageFreeze, (*run).freeze},
	{StageCheck, (*run).check},
	{StageRestore, (*run).restore},
	{StageVerify, (*run).verify},
	{StageInoculate, (*run).inoculate},
	{StageFinalize, (*run).finalize},
	{StageRelease, (*run).release},
}

// stageOutcome is what a stage did: a message for the log, or why it had nothing to do.
type stageOutcome struct {
	Message string
	Skipped string // why the stage did nothing; "" when it ran
}

func did(format string, args ...any) stageOutcome {
	return stageOutcome{Message: fmt.Sprintf(format, args...)}
}
func skip(why string) stageOutcome { return stageOutcome{Skipped: why} }

// stage runs one stage unless the journal has it done, and records it.
func (x *run) stage(ctx context.Context, name string, fn func(context.Context) (stageOutcome, error)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if x.state.done(name) {
		x.emit(Event{Stage: name, Kind: EventSkip, Message: "done in an earlier run"})
		x.rep.Stages = append(x.rep.Stages, StageResult{Name: name, Status: "resumed"})
		return nil
	}
	start := time.Now()
	x.emit(Event{Stage: name, Kind: EventStart})
	out, err := fn(ctx)
	sr := StageResult{Name: name, Seconds: time.Since(start).Seconds(), Message: out.Message, Status: "done"}
	if err != nil {
		sr.Status, sr.Message = "failed", err.Error()
		x.rep.Stages = append(x.rep.Stages, sr)
		x.emit(Event{Stage: name, Kind: EventError, Message: err.Error()})
		return fmt.Errorf("%s: %w", name, err)
	}
	kind := EventDone
	if out.Skipped != "" {
		sr.Status, sr.Message, kind = "skipped", out.Skipped, EventSkip
	}
	x.rep.Stages = append(x.rep.Stages, sr)
	x.emit(Event{Stage: name, Kind: kind, Message: sr.Message})
	return x.markDone(ctx, name)
}

func (x *run) markDone(ctx context.Context, step string) error {
	x.mu.Lock()
	x.state.Done = append(x.state.Done, step)
	x.mu.Unlock()
	if err := x.state.save(ctx, x.j); err != nil {
		return err
	}
	if x.o.failAfter == step {
		return fmt.Errorf("stopped after %s (test)", step)
	}
	return nil
}

func (x *run) emit(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if e.Kind != EventProgress {
		x.rep.Log = append(x.rep.Log, e)
	}
	if x.o.Events != nil {
		x.o.Events(e)
	}
}

func (x *run) holder() string {
	host, _ := os.Hostname()
	// Stable across runs of the same recovery, so that a resumed run finds its own freeze.
	return fmt.Sprintf("recovery %.12s (%s) on host %s", x.p.Fingerprint, x.p.Name, host)
}

func (x *run) freeze(ctx context.Context) (stageOutcome, error) {
	if !x.p.Freeze {
		return skip("the recovery leaves replication as it is (no freeze-replication)"), nil
	}
	s, err := x.p.repo.Freeze(ctx, x.p.Machine, x.holder())
	if err != nil {
		return stageOutcome{}, err
	}
	return did("%s", s), nil
}

// check repeats the plan's target checks: between planning and the confirmation a disk may
// have been mounted, swapped, unplugged or replaced.
func (x *run) check(ctx context.Context) (stageOutcome, error) {
	for i := range x.p.Disks {
		d := &x.p.Disks[i]
		// The target as its path names it now, not as the plan found it.
		t, err := target.New(d.Target)
		if err != nil {
			return stageOutcome{}, fmt.Errorf("%s: %w", d.Source, err)
		}
		if t.Kind() != d.Kind {
			return stageOutcome{}, fmt.Errorf("%s: the target %s was a %s when the plan was made and is a %s now", d.Source, d.Target, d.Kind, t.Kind())
		}
		if was, err := d.target(); err == nil && was.Exists() != t.Exists() && !x.state.done("restore:"+d.Source) {
			return stageOutcome{}, fmt.Errorf("%s: the target %s %s since the plan was made; plan again", d.Source, d.Target, map[bool]string{true: "has appeared", false: "has disappeared"}[t.Exists()])
		}
		if err := t.Check(x.p.gate); err != nil {
			return stageOutcome{}, err
		}
		d.t = t
		if d.Layout != nil && !x.p.LayoutOnly && !x.state.done("restore:"+d.Source) {
			if _, err := write.CheckPlan(ctx, x.p.repo, x.p.gen, d.Source, d.Layout, x.p.Scratch); err != nil {
				return stageOutcome{}, fmt.Errorf("%s: %w", d.Source, err)
			}
		}
	}
	return did("%d disk(s) ready", len(x.p.Disks)), nil
}

// restore restores every disk, in parallel: different disks do not compete for a target, and
// the repository's reads overlap.
func (x *run) restore(ctx context.Context) (stageOutcome, error) {
	if x.p.LayoutOnly {
		return x.writeTables()
	}
	var wg sync.WaitGroup
	errs := make([]error, len(x.p.Disks))
	var total int64
	earlier := 0
	for i := range x.p.Disks {
		d := x.p.Disks[i]
		if x.state.done("restore:" + d.Source) {
			earlier++
			x.emit(Event{Stage: StageRestore, Kind: EventSkip, Disk: d.Source, Message: "restored in an earlier run"})
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = x.restoreDisk(ctx, i)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return stageOutcome{}, err
	}
	for _, d := range x.rep.Disks {
		total += d.Bytes
	}
	msg := fmt.Sprintf("%s restored", HumanBytes(total))
	if earlier > 0 {
		msg += fmt.Sprintf("; %d disk(s) restored in an earlier run", earlier)
	}
	return did("%s", msg), nil
}

// writeTables is the restore stage of a plan that writes only partition tables (layout apply).
func (x *run) writeTables() (stageOutcome, error) {
	for i := range x.p.Disks {
		d := &x.p.Disks[i]
		t, err := d.target()
		if err != nil {
			return stageOutcome{}, err
		}
		res, err := t.WriteTable(d.Layout, x.p.gate)
		if err != nil {
			return stageOutcome{}, fmt.Errorf("%s → %s: %w", d.Source, d.Target, err)
		}
		x.rep.Disks[i].Table = res
		x.emit(Event{Stage: StageRestore, Kind: EventInfo, Disk: d.Source, Message: fmt.Sprintf("%s table written to %s", d.Layout.Layout.Table, d.Target)})
	}
	return did("%d partition table(s) written", len(x.p.Disks)), nil
}

func (x *run) restoreDisk(ctx context.Context, i int) error {
	d := x.p.Disks[i]
	t, err := d.target()
	if err != nil {
		return err
	}
	start := time.Now()
	var last time.Time
	x.emit(Event{Stage: StageRestore, Kind: EventStart, Disk: d.Source, Message: "→ " + d.Target})
	var beforeGrow func() error
	if d.Layout != nil && !x.p.NoVerify {
		// Compare with the generation before the filesystems are grown: afterwards their
		// metadata differs from the captured bytes and only a checker can judge them.
		beforeGrow = func() error {
			x.emit(Event{Stage: StageRestore, Kind: EventInfo, Disk: d.Source, Message: "comparing the restored volumes with the generation before growing them"})
			st, err := write.Verify(ctx, x.p.repo, write.VerifyOptions{Generation: x.p.gen, Disk: d.Source, Target: t, Plan: d.Layout, Damaged: x.damaged[d.Source], BeforeGrow: true})
			if err != nil {
				return fmt.Errorf("verifying before the filesystems grow: %w", err)
			}
			x.mu.Lock()
			x.rep.Disks[i].Verified, x.rep.Disks[i].Skipped = st.Bytes, st.Skipped
			x.verifiedEarly[d.Source] = true
			x.mu.Unlock()
			return nil
		}
	}
	st, err := write.Disk(ctx, x.p.repo, write.Options{
		Generation: x.p.gen, Disk: d.Source, Target: t, Gate: x.p.gate, Plan: d.Layout, Scratch: x.p.Scratch, Partial: x.p.Partial,
		BeforeGrow: beforeGrow,
		Progress: func(p write.Progress) {
			if time.Since(last) < time.Second && p.Written < p.Total {
				return
			}
			last = time.Now()
			x.emit(progressEvent(StageRestore, d.Source, p.Written, p.Total, start))
		},
		Log: func(s string) { x.emit(Event{Stage: StageRestore, Kind: EventInfo, Disk: d.Source, Message: s}) },
	})
	if err != nil {
		return fmt.Errorf("%s → %s: %w", d.Source, d.Target, err)
	}
	x.mu.Lock()
	dr := &x.rep.Disks[i]
	dr.Bytes, dr.Seconds, dr.Resized = st.Bytes, time.Since(start).Seconds(), st.Resized
	if dr.Seconds > 0 {
		dr.Rate = float64(st.Bytes) / dr.Seconds
	}
	x.rep.Warnings = append(x.rep.Warnings, st.Warnings...)
	if len(st.Damaged) > 0 {
		x.damaged[d.Source] = st.Damaged
		for _, dm := range st.Damaged {
			dr.Damaged = append(dr.Damaged, fmt.Sprintf("bytes %d–%d: %v", dm.Start, dm.End-1, dm.Err))
		}
		x.rep.Warnings = append(x.rep.Warnings, fmt.Sprintf("%s: %d range(s) damaged in the repository were left as zeros on %s (listed under the disk); the rest is restored and verified", d.Source, len(st.Damaged), d.Target))
	}
	x.mu.Unlock()
	x.emit(Event{Stage: StageRestore, Kind: EventDone, Disk: d.Source, Bytes: st.Bytes,
		Message: fmt.Sprintf("%s in %.1f s", HumanBytes(st.Bytes), time.Since(start).Seconds())})
	return x.markDone(ctx, "restore:"+d.Source)
}

func progressEvent(stage, disk string, done, total int64, start time.Time) Event {
	e := Event{Stage: stage, Kind: EventProgress, Disk: disk, Bytes: done, Total: total}
	if sec := time.Since(start).Seconds(); sec > 0 && done > 0 {
		e.Rate = float64(done) / sec
		e.ETA = time.Duration(float64(total-done) / e.Rate * float64(time.Second))
	}
	return e
}

// verify compares every restored disk with the generation, and runs the filesystem checkers on
// the volumes that a byte comparison cannot judge.
func (x *run) verify(ctx context.Context) (stageOutcome, error) {
	if x.p.LayoutOnly {
		return skip("partition tables only: each was read back and compared with its plan as it was written"), nil
	}
	if x.p.NoVerify {
		return skip("--no-verify: every chunk was checked against its hash as it was written; the targets were not read back"), nil
	}
	var verified int64
	for i, d := range x.p.Disks {
		dr := &x.rep.Disks[i]
		if x.verifiedEarly[d.Source] {
			verified += dr.Verified
			x.emit(Event{Stage: StageVerify, Kind: EventInfo, Disk: d.Source, Message: fmt.Sprintf("%s compared with the generation during the restore, before the filesystems grew", HumanBytes(dr.Verified))})
			if err := x.checkResized(d, dr); err != nil {
				return stageOutcome{}, err
			}
			continue
		}
		t, err := x.p.Disks[i].target()
		if err != nil {
			return stageOutcome{}, err
		}
		start := time.Now()
		var last time.Time
		st, err := write.Verify(ctx, x.p.repo, write.VerifyOptions{Generation: x.p.gen, Disk: d.Source, Target: t, Plan: d.Layout, Damaged: x.damaged[d.Source],
			Progress: func(p write.Progress) {
				if time.Since(last) < time.Second && p.Written < p.Total {
					return
				}
				last = time.Now()
				x.emit(progressEvent(StageVerify, d.Source, p.Written, p.Total, start))
			}})
		if err != nil {
			return stageOutcome{}, fmt.Errorf("%s: %w", d.Source, err)
		}
		dr.Verified, dr.Skipped = st.Bytes, st.Skipped
		verified += st.Bytes
		if err := x.checkResized(d, dr); err != nil {
			return stageOutcome{}, err
		}
	}
	return did("%s compared with the generation's chunk hashes", HumanBytes(verified)), nil
}

// checkResized runs the filesystem checkers on the volumes of a planned disk that a byte
// comparison cannot judge (resized ones, FAT rebuilt for another sector size), and on FAT and
// NTFS volumes whose boot sectors moved or changed sector size, for a second opinion.
func (x *run) checkResized(d DiskPlan, dr *DiskReport) error {
	if d.Layout == nil {
		return nil
	}
	for _, m := range d.Layout.Moves {
		needs := false
		for _, f := range d.Layout.Filesystems {
			needs = needs || f.Partition == m.Number
		}
		bootFixed := (m.NewStart != m.OldStart || d.Layout.Layout.LogicalSectorSize != d.Layout.SourceLSS) && (m.Filesystem == "vfat" || m.Filesystem == "ntfs")
		if !needs && !bootFixed || m.Filesystem == "" {
			continue
		}
		if err := checkVolume(&d, m.Number, m.Filesystem); err != nil {
			return fmt.Errorf("%s partition %d (%s): %w", d.Source, m.Number, m.Filesystem, err)
		}
		dr.Checked = append(dr.Checked, fmt.Sprintf("partition %d (%s): filesystem check clean", m.Number, m.Filesystem))
		x.emit(Event{Stage: StageVerify, Kind: EventInfo, Disk: d.Source, Message: dr.Checked[len(dr.Checked)-1]})
	}
	return nil
}

func (x *run) inoculate(ctx context.Context) (stageOutcome, error) {
	if x.p.Inoculate.Skip {
		return skip(orDefault(x.p.Inoculate.Why, "the plan says not to inoculate")), nil
	}
	inoc := x.o.Inoculate
	switch {
	case inoc != nil:
	case x.p.Inoculate.OnTarget:
		inoc = InoculateOnTarget
	default:
		inoc = Inoculate
	}
	res, err := inoc(ctx, x.p, x.emit)
	if res != nil {
		x.rep.Inoculation = append(x.rep.Inoculation, res.Changes...)
		x.rep.Warnings = append(x.rep.Warnings, res.Warnings...)
	}
	if err != nil {
		return stageOutcome{}, err
	}
	return did("%s", res.Summary()), nil
}

// finalize makes every target durable and visible (package restore/target says how for each
// kind): the report must not claim a recovery that a power cut could still undo.
func (x *run) finalize(ctx context.Context) (stageOutcome, error) {
	for i := range x.p.Disks {
		t, err := x.p.Disks[i].target()
		if err != nil {
			return stageOutcome{}, err
		}
		if err := t.Finalize(); err != nil {
			return stageOutcome{}, err
		}
	}
	return did("targets flushed"), nil
}

func (x *run) release(ctx context.Context) (stageOutcome, error) {
	if !x.p.Freeze {
		return skip("replication was not frozen"), nil
	}
	if err := x.p.repo.Release(ctx, x.p.Machine, x.p.Release); err != nil {
		return stageOutcome{}, err
	}
	return did("replication session %s", map[tib.ReleaseMode]string{tib.ReleaseRemove: "removed", tib.ReleaseResume: "resumed"}[x.p.Release]), nil
}

// finish completes the report, saves it into the repository (failed runs too: the technician
// and the next run need to see what happened), and removes the journal after a success.
func (x *run) finish(ctx context.Context, runErr error) (*Report, error) {
	rep := x.rep
	rep.Finished = time.Now().UTC()
	rep.Seconds = time.Since(x.started).Seconds()
	rep.OK = runErr == nil
	if runErr != nil {
		rep.Error = runErr.Error()
	}
	x.emit(Event{Stage: StageReport, Kind: EventStart})
	b := x.saveReport(ctx)
	// Into the folders the request names (a kickstart's report --to), failed runs too.
	for _, dir := range x.p.ReportTo {
		if b == nil {
			break
		}
		where, err := reportInto(dir, rep, b)
		if err != nil {
			x.emit(Event{Stage: StageReport, Kind: EventError, Message: err.Error()})
			rep.Warnings = append(rep.Warnings, err.Error())
			continue
		}
		x.emit(Event{Stage: StageReport, Kind: EventInfo, Message: "copied to " + where})
	}
	// And onto the restored systems, so that the recovered machine itself says what was done.
	if len(x.p.systems) > 0 && b != nil {
		where, cerr := copyReport(x.p, rep, b)
		for _, w := range where {
			x.emit(Event{Stage: StageReport, Kind: EventInfo, Message: "copied to " + w})
		}
		if cerr != nil {
			x.emit(Event{Stage: StageReport, Kind: EventError, Message: cerr.Error()})
			rep.Warnings = append(rep.Warnings, cerr.Error())
		}
	}
	if runErr == nil && x.j != nil {
		if err := x.j.Remove(context.WithoutCancel(ctx)); err != nil {
			rep.Warnings = append(rep.Warnings, "the journal could not be removed: "+err.Error())
		}
	}
	return rep, runErr
}

// saveReport saves the report into the repository and returns it as JSON (nil if it could not
// be encoded). A plan without a repository (a table taken from a disk) has the report printed
// only.
func (x *run) saveReport(ctx context.Context) []byte {
	rep := x.rep
	b, err := json.MarshalIndent(rep, "", "  ")
	if err == nil && x.p.repo == nil {
		x.emit(Event{Stage: StageReport, Kind: EventSkip, Message: "no repository to save the report in: it is printed only"})
		return b
	}
	if err == nil {
		id, serr := x.p.repo.SaveReport(context.WithoutCancel(ctx), b)
		if err = serr; err == nil {
			rep.ID = id.String()
		}
	}
	if err != nil {
		x.emit(Event{Stage: StageReport, Kind: EventError, Message: err.Error()})
		rep.Warnings = append(rep.Warnings, "the report could not be saved: "+err.Error())
		return b
	}
	x.emit(Event{Stage: StageReport, Kind: EventDone, Message: "saved as report " + rep.ID[:12]})
	return b
}
