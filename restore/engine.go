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
	"github.com/cauldron-dr/cauldron/tib"
)

// RunOptions are how Run reports and what it calls out to.
type RunOptions struct {
	// Events receives every event, in order, from one goroutine at a time.
	Events func(Event)
	// Journal is where progress is recorded; nil means JournalFor(plan).
	Journal Journal
	// Inoculate makes the restored system boot on the target; nil skips the stage with a
	// message (the report says so).
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
	Runs           int           `json:"runs"` // > 1: resumed after an interruption
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
}

// Run carries out a plan. It returns the report (also when it fails) and the first error.
func Run(ctx context.Context, p *Plan, o RunOptions) (*Report, error) {
	if p.repo == nil || p.gen == nil {
		return nil, errors.New("restore: the plan was not made by Prepare")
	}
	x := &run{p: p, o: o, j: o.Journal, started: time.Now(), verifiedEarly: map[string]bool{}}
	if x.j == nil {
		x.j = JournalFor(p)
	}
	x.rep = &Report{Name: p.Name, Repository: p.Repository, Machine: p.Machine, Generation: p.Generation,
		GenerationTime: p.GenerationTime, Started: x.started.UTC(), Warnings: p.Warnings}
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
			state.Started.Local().Format(time.RFC3339), state.Runs, state.Done)})
	}
	if err := state.save(ctx, x.j); err != nil {
		return x.finish(ctx, err)
	}
	steps := []struct {
		name string
		fn   func(context.Context) (string, error)
	}{
		{StageFreeze, x.freeze},
		{StageCheck, x.check},
		{StageRestore, x.restore},
		{StageVerify, x.verify},
		{StageInoculate, x.inoculate},
		{StageFinalize, x.finalize},
		{StageRelease, x.release},
	}
	for _, s := range steps {
		if err := x.stage(ctx, s.name, s.fn); err != nil {
			return x.finish(ctx, err)
		}
	}
	return x.finish(ctx, nil)
}

// stage runs one stage unless the journal has it done, and records it.
func (x *run) stage(ctx context.Context, name string, fn func(context.Context) (string, error)) error {
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
	msg, err := fn(ctx)
	sr := StageResult{Name: name, Seconds: time.Since(start).Seconds(), Message: msg, Status: "done"}
	if err != nil {
		sr.Status, sr.Message = "failed", err.Error()
		x.rep.Stages = append(x.rep.Stages, sr)
		x.emit(Event{Stage: name, Kind: EventError, Message: err.Error()})
		return fmt.Errorf("%s: %w", name, err)
	}
	if msg == skipped {
		sr.Status, sr.Message = "skipped", ""
	}
	x.rep.Stages = append(x.rep.Stages, sr)
	x.emit(Event{Stage: name, Kind: EventDone, Message: msg})
	return x.markDone(ctx, name)
}

// skipped is a stage function's message for "nothing to do".
const skipped = "\x00skipped"

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
	if e.Message == skipped {
		e.Kind, e.Message = EventSkip, ""
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

func (x *run) freeze(ctx context.Context) (string, error) {
	if !x.p.Freeze {
		return skipped, nil
	}
	s, err := x.p.repo.Freeze(ctx, x.p.Machine, x.holder())
	if err != nil {
		return "", err
	}
	return s.String(), nil
}

// check repeats the plan's target checks: between planning and the confirmation a disk may
// have been mounted, swapped or unplugged.
func (x *run) check(ctx context.Context) (string, error) {
	for _, d := range x.p.Disks {
		if _, err := os.Stat(d.Target); errors.Is(err, os.ErrNotExist) && d.Image {
			continue
		}
		if err := partition.CheckTarget(d.Target, x.p.Protect); err != nil {
			return "", err
		}
		if d.Layout != nil && !x.state.done("restore:"+d.Source) {
			if _, err := x.p.repo.CheckRestorePlan(ctx, x.p.gen, d.Source, d.Layout, x.p.Scratch); err != nil {
				return "", fmt.Errorf("%s: %w", d.Source, err)
			}
		}
	}
	return fmt.Sprintf("%d disk(s) ready", len(x.p.Disks)), nil
}

// restore restores every disk, in parallel: different disks do not compete for a target, and
// the repository's reads overlap.
func (x *run) restore(ctx context.Context) (string, error) {
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
		return "", err
	}
	for _, d := range x.rep.Disks {
		total += d.Bytes
	}
	msg := fmt.Sprintf("%s restored", HumanBytes(total))
	if earlier > 0 {
		msg += fmt.Sprintf("; %d disk(s) restored in an earlier run", earlier)
	}
	return msg, nil
}

func (x *run) restoreDisk(ctx context.Context, i int) error {
	d := x.p.Disks[i]
	start := time.Now()
	var last time.Time
	x.emit(Event{Stage: StageRestore, Kind: EventStart, Disk: d.Source, Message: "→ " + d.Target})
	var beforeGrow func() error
	if d.Layout != nil {
		// Compare with the generation before the filesystems are grown: afterwards their
		// metadata differs from the captured bytes and only a checker can judge them.
		beforeGrow = func() error {
			x.emit(Event{Stage: StageRestore, Kind: EventInfo, Disk: d.Source, Message: "comparing the restored volumes with the generation before growing them"})
			st, err := x.p.repo.VerifyTarget(ctx, tib.VerifyTargetOptions{Generation: x.p.gen, Disk: d.Source, Target: d.Target, Plan: d.Layout, BeforeGrow: true})
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
	st, err := x.p.repo.RestoreDisk(ctx, tib.RestoreOptions{
		Generation: x.p.gen, Disk: d.Source, Target: d.Target, Plan: d.Layout, Scratch: x.p.Scratch, Protect: x.p.Protect,
		BeforeGrow: beforeGrow,
		Progress: func(p tib.RestoreProgress) {
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
func (x *run) verify(ctx context.Context) (string, error) {
	var verified int64
	for i, d := range x.p.Disks {
		dr := &x.rep.Disks[i]
		if x.verifiedEarly[d.Source] {
			verified += dr.Verified
			x.emit(Event{Stage: StageVerify, Kind: EventInfo, Disk: d.Source, Message: fmt.Sprintf("%s compared with the generation during the restore, before the filesystems grew", HumanBytes(dr.Verified))})
			if err := x.checkResized(d, dr); err != nil {
				return "", err
			}
			continue
		}
		start := time.Now()
		var last time.Time
		st, err := x.p.repo.VerifyTarget(ctx, tib.VerifyTargetOptions{Generation: x.p.gen, Disk: d.Source, Target: d.Target, Plan: d.Layout,
			Progress: func(p tib.RestoreProgress) {
				if time.Since(last) < time.Second && p.Written < p.Total {
					return
				}
				last = time.Now()
				x.emit(progressEvent(StageVerify, d.Source, p.Written, p.Total, start))
			}})
		if err != nil {
			return "", fmt.Errorf("%s: %w", d.Source, err)
		}
		dr.Verified, dr.Skipped = st.Bytes, st.Skipped
		verified += st.Bytes
		if err := x.checkResized(d, dr); err != nil {
			return "", err
		}
	}
	return fmt.Sprintf("%s compared with the generation's chunk hashes", HumanBytes(verified)), nil
}

// checkResized runs the filesystem checkers on the volumes of a planned disk that a byte
// comparison cannot judge: resized ones, and moved FAT and NTFS (their boot sectors changed).
func (x *run) checkResized(d DiskPlan, dr *DiskReport) error {
	if d.Layout == nil {
		return nil
	}
	for _, m := range d.Layout.Moves {
		needs := false
		for _, f := range d.Layout.Filesystems {
			needs = needs || f.Partition == m.Number
		}
		moved := m.NewStart != m.OldStart && (m.Filesystem == "vfat" || m.Filesystem == "ntfs")
		if !needs && !moved || m.Filesystem == "" {
			continue
		}
		if err := checkVolume(d, m.Number, m.NewStart, m.NewSize, m.Filesystem); err != nil {
			return fmt.Errorf("%s partition %d (%s): %w", d.Source, m.Number, m.Filesystem, err)
		}
		dr.Checked = append(dr.Checked, fmt.Sprintf("partition %d (%s): filesystem check clean", m.Number, m.Filesystem))
		x.emit(Event{Stage: StageVerify, Kind: EventInfo, Disk: d.Source, Message: dr.Checked[len(dr.Checked)-1]})
	}
	return nil
}

func (x *run) inoculate(ctx context.Context) (string, error) {
	if x.p.Inoculate.Skip {
		return skipped, nil
	}
	if x.o.Inoculate == nil {
		x.rep.Warnings = append(x.rep.Warnings, "inoculation was not run: this program has no inoculator for the restored system")
		return "no inoculator: the restored system is as captured", nil
	}
	res, err := x.o.Inoculate(ctx, x.p, x.emit)
	if res != nil {
		x.rep.Inoculation = append(x.rep.Inoculation, res.Changes...)
		x.rep.Warnings = append(x.rep.Warnings, res.Warnings...)
	}
	if err != nil {
		return "", err
	}
	return res.Summary(), nil
}

// finalize flushes every target to stable storage: the report must not claim a recovery that
// a power cut could still undo.
func (x *run) finalize(ctx context.Context) (string, error) {
	for _, d := range x.p.Disks {
		f, err := os.OpenFile(d.Target, os.O_RDWR, 0)
		if err != nil {
			return "", err
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return "", fmt.Errorf("flushing %s: %w", d.Target, err)
		}
	}
	return "targets flushed", nil
}

func (x *run) release(ctx context.Context) (string, error) {
	if !x.p.Freeze {
		return skipped, nil
	}
	if err := x.p.repo.Release(ctx, x.p.Machine, x.p.Release); err != nil {
		return "", err
	}
	return fmt.Sprintf("replication session %s", map[tib.ReleaseMode]string{tib.ReleaseRemove: "removed", tib.ReleaseResume: "resumed"}[x.p.Release]), nil
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
	b, err := json.MarshalIndent(rep, "", "  ")
	if err == nil {
		id, serr := x.p.repo.SaveReport(context.WithoutCancel(ctx), b)
		if err = serr; err == nil {
			rep.ID = id.String()
		}
	}
	if err != nil {
		x.emit(Event{Stage: StageReport, Kind: EventError, Message: err.Error()})
		rep.Warnings = append(rep.Warnings, "the report could not be saved: "+err.Error())
	} else {
		x.emit(Event{Stage: StageReport, Kind: EventDone, Message: "saved as report " + rep.ID[:12]})
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
