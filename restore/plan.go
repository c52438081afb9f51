package restore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/cauldron-dr/cauldron/partition"
	"github.com/cauldron-dr/cauldron/restore/target"
	"github.com/cauldron-dr/cauldron/restore/write"
	"github.com/cauldron-dr/cauldron/tib"
)

// Request is what to recover, before it is checked against the repository and the disks.
type Request struct {
	// Name identifies the request in messages and the report (the kickstart file, "wizard").
	Name string
	Repo *tib.Repository
	// RepoPath is the repository's local directory, if it has one: its disk is protected.
	RepoPath string

	Machine string
	// Generation is "latest" (or empty), a unique prefix of a generation ID, or a time: the
	// newest generation taken at or before it (tib.ParseGenerationRef; no zone means UTC).
	Generation string

	// Disks say where source disks go. A source disk of the generation that no entry names is
	// mapped automatically (WWN, serial, then size) onto Candidates, with AutoResize and
	// AutoIdentity.
	Disks []DiskRequest
	// Only restores just the disks Disks names (restore-disk: one disk); the generation's other
	// disks are left out instead of mapped automatically.
	Only         bool
	AutoResize   partition.ResizeMode
	AutoIdentity partition.IdentityMode
	// Candidates are the disks automatic mapping may choose; nil means this machine's disks
	// (SystemDisks) except Exclude and boot media.
	Candidates []string
	// Exclude are disks never to touch (ignoredisk): never mapped onto, and refused if named.
	Exclude []string
	// Protect are more paths whose disks must never be written (beside the repository and the
	// boot media, which are always protected).
	Protect []string

	// Freeze freezes the machine's replication session for the recovery and Release says what
	// happens to it at the end. Without Freeze the session is left alone.
	Freeze  bool
	Release tib.ReleaseMode

	Inoculate Inoculation
	// LayoutOnly writes only the partition tables the disks' plans give (DiskRequest.Plan:
	// layout apply): no volume data, no verification against a generation, no inoculation, no
	// journal (writing a table again is the whole step). Repo may be nil then (a layout taken
	// from a disk or a saved plan); Protect names the source disk.
	LayoutOnly bool
	// Partial goes on past damage in the repository: what is intact is restored and verified,
	// every damaged range is left as zeros and named in the report (write.Options.Partial).
	// Byte-for-byte restores only.
	Partial bool
	// ReportTo are more folders the report (JSON and text) is written into, beside the
	// repository and the restored systems (a kickstart's report --to). A folder that does not
	// exist is created.
	ReportTo []string
	// NoVerify leaves out reading the targets back (each chunk is still checked against its
	// hash as it is written): for benchmarks and for technicians who verify otherwise.
	NoVerify bool
	// Scratch is where volumes that must shrink are rebuilt (write.Options.Scratch).
	Scratch string
	// Notes are warnings the request's maker has for the plan (shown in the dry run).
	Notes []string
}

// DiskRequest is one source disk and its target.
type DiskRequest struct {
	Source   string                 `json:"source"`           // disk0, disk1, …
	Target   string                 `json:"target,omitempty"` // a device or image path; "" = automatic
	Resize   partition.ResizeMode   `json:"resize,omitempty"`
	Identity partition.IdentityMode `json:"identity,omitempty"`
	// Plan is the layout plan to apply as it is (LayoutOnly: made and shown by the front end).
	Plan *partition.LayoutPlan `json:"-"`
}

// Inoculation says how the restored system is made to boot on the target.
type Inoculation struct {
	Skip bool `json:"skip,omitempty"`
	// Why says why inoculation is skipped (shown in the plan and the report).
	Why string `json:"why,omitempty"`
	// OnTarget: the recovery runs on the machine being recovered (the boot environment), so
	// device targets keep host-only settings for this very hardware (InoculateOnTarget).
	OnTarget        bool     `json:"onTarget,omitempty"`
	Hardware        string   `json:"hardware,omitempty"` // detect, kvm-virtio-blk, …, nvme
	Drivers         []string `json:"drivers,omitempty"`
	EnableInbox     []string `json:"enableInbox,omitempty"`
	DisableServices []string `json:"disableServices,omitempty"`
}

// Plan is a validated recovery: everything Run will do, decided before anything is written.
type Plan struct {
	Name           string          `json:"name"`
	Repository     string          `json:"repository"`
	Machine        string          `json:"machine"`
	Generation     string          `json:"generation"`
	GenerationTime time.Time       `json:"generationTime"`
	Disks          []DiskPlan      `json:"disks"`
	Freeze         bool            `json:"freeze"`
	Release        tib.ReleaseMode `json:"release,omitempty"`
	Inoculate      Inoculation     `json:"inoculate"`
	NoVerify       bool            `json:"noVerify,omitempty"`
	ReportTo       []string        `json:"reportTo,omitempty"`
	Partial        bool            `json:"partial,omitempty"`
	LayoutOnly     bool            `json:"layoutOnly,omitempty"`
	Scratch        string          `json:"scratch,omitempty"`
	Protect        []string        `json:"protect"`
	Warnings       []string        `json:"warnings,omitempty"`
	// Fingerprint identifies the request this plan was made from, so that a journal is only
	// resumed by the same recovery.
	Fingerprint string `json:"fingerprint"`

	repo *tib.Repository
	gen  *tib.Generation
	// gate is the safety gate every target passes (Protect); made once, by Prepare.
	gate *target.Gate
	// prepared: Prepare made this plan (Run refuses any other).
	prepared bool
	// judged are the targets the gate has judged while planning, by path: each is judged once.
	judgedTargets map[string]target.Target
	// systems are the operating systems inoculation found, where the report is copied to.
	systems []restoredSystem
}

// DiskPlan is one source disk's way onto its target.
type DiskPlan struct {
	Source string `json:"source"`
	Target string `json:"target"`
	// Kind is the target's kind (block device, image file, …): see package restore/target.
	Kind target.Kind `json:"kind"`
	// Layout is the layout plan when the target differs from the source (size, sector size,
	// identities); nil means the disk is restored byte for byte at the source's offsets.
	Layout *partition.LayoutPlan `json:"layout,omitempty"`
	// Bytes is how much data the restore writes (the generation's used bytes of this disk).
	Bytes int64 `json:"bytes"`

	t target.Target
}

// target is the disk's target, as Prepare found it (or, for a plan read back from a journal, as
// its path names it now).
func (d *DiskPlan) target() (target.Target, error) {
	if d.t == nil {
		t, err := target.New(d.Target)
		if err != nil {
			return nil, err
		}
		d.t = t
	}
	return d.t, nil
}

// onThisMachine reports that the target is one of this machine's own disks, which the restored
// system will boot from here; an image file (or a VM's disk) runs on other hardware.
func (d *DiskPlan) onThisMachine() bool { return d.Kind == target.KindBlockDevice }

// ConfirmWord is the typed confirmation every front end asks for before it overwrites what
// Plan.Overwrites names: a word typed in full, since a yes/no is answered by reflex.
const ConfirmWord = "ERASE"

// Overwrites lists the targets whose present contents the recovery destroys: block devices and
// image files that exist and are not empty. Writing them needs the technician's consent (the
// typed confirmation, --yes or the kickstart's confirm line); a new image file needs none.
func (p *Plan) Overwrites() []string {
	var out []string
	for _, d := range p.Disks {
		if d.Kind != target.KindImageFile {
			out = append(out, d.Target)
			continue
		}
		if fi, err := os.Stat(d.Target); err == nil && fi.Size() > 0 {
			out = append(out, d.Target)
		}
	}
	return out
}

// PlanError lists everything that makes a request impossible, each naming what and where. The
// errors behind them stay reachable (errors.As finds a *target.Refusal or a *tib.DamageError).
type PlanError struct {
	Problems []string
	// Disks names, for each problem, the source disk it concerns ("" for the whole plan), so
	// that a front end can point at where that disk was asked for (a kickstart's disk line).
	Disks  []string
	causes []error
}

// Unwrap returns the errors behind the problems.
func (e *PlanError) Unwrap() []error { return e.causes }

// problems collects a plan's problems and the errors behind them.
type problems struct {
	list   []string
	disks  []string
	causes []error
}

// add records a problem of the whole plan.
func (ps *problems) add(format string, args ...any) { ps.of("", format, args...) }

// of records a problem of one source disk.
func (ps *problems) of(disk, format string, args ...any) {
	ps.list = append(ps.list, fmt.Sprintf(format, args...))
	ps.disks = append(ps.disks, disk)
	for _, a := range args {
		if err, ok := a.(error); ok {
			ps.causes = append(ps.causes, err)
		}
	}
}

func (ps *problems) err() error {
	if len(ps.list) == 0 {
		return nil
	}
	return &PlanError{Problems: ps.list, Disks: ps.disks, causes: ps.causes}
}

func (e *PlanError) Error() string {
	if len(e.Problems) == 1 {
		return "recovery plan: " + e.Problems[0]
	}
	return "recovery plan:\n  - " + strings.Join(e.Problems, "\n  - ")
}

// Prepare checks a request against the repository and the disks and returns the plan. It writes
// nothing (a missing image target is not created here).
func Prepare(ctx context.Context, req Request) (*Plan, error) {
	if req.LayoutOnly {
		return prepareLayout(ctx, req)
	}
	if req.Repo == nil {
		return nil, errors.New("recovery plan: no repository")
	}
	gen, err := req.Repo.FindGeneration(ctx, req.Machine, req.Generation)
	if err != nil {
		return nil, err
	}
	if err := req.Repo.LoadIndexFor(ctx, gen); err != nil {
		return nil, err
	}
	p := &Plan{Name: req.Name, Repository: req.Repo.Location(), Machine: gen.Machine, Generation: gen.ID.String(),
		GenerationTime: gen.Time, Freeze: req.Freeze, Release: req.Release, Inoculate: req.Inoculate, NoVerify: req.NoVerify, ReportTo: req.ReportTo, Partial: req.Partial,
		Scratch: req.Scratch, Warnings: append([]string(nil), req.Notes...), repo: req.Repo, gen: gen}
	if p.Freeze && p.Release == "" {
		p.Release = tib.ReleaseRemove
	}
	var probs problems
	fail := probs.add
	failOf := probs.of

	system := req.Candidates == nil
	cands := req.Candidates
	if system {
		if cands, err = SystemDisks(); err != nil {
			return nil, fmt.Errorf("listing this machine's disks: %w", err)
		}
	}
	boot := BootMedia(cands)
	p.Protect = protectedPaths(req, boot)
	p.gate = &target.Gate{Protect: p.Protect}
	excluded := map[string]bool{}
	for _, e := range append(append([]string{}, req.Exclude...), boot...) {
		excluded[canonical(e)] = true
	}

	// Explicit targets first, then automatic mapping of the rest.
	explicit := map[string]string{}
	byName := map[string]DiskRequest{}
	for _, d := range req.Disks {
		if _, err := gen.Disk(d.Source); err != nil {
			failOf(d.Source, "%v", err)
			continue
		}
		if _, dup := byName[d.Source]; dup {
			failOf(d.Source, "disk %s is given twice", d.Source)
			continue
		}
		byName[d.Source] = d
		if d.Target != "" {
			if excluded[canonical(d.Target)] {
				failOf(d.Source, "disk %s: target %s is excluded (ignoredisk, or it holds the boot medium)", d.Source, d.Target)
				continue
			}
			explicit[d.Source] = d.Target
		}
	}
	var sources []partition.SourceDisk
	chosen := func(d *tib.Disk) bool { _, named := byName[d.Name]; return !req.Only || named }
	for i := range gen.Disks {
		if chosen(&gen.Disks[i]) {
			sources = append(sources, partition.SourceDisk{Name: gen.Disks[i].Name, Layout: &gen.Disks[i].Layout})
		}
	}
	var targets []partition.TargetCandidate
	seen := map[string]bool{}
	for _, c := range cands {
		if excluded[canonical(c)] || seen[canonical(c)] {
			continue
		}
		// An unreadable candidate is left out of automatic mapping; named as a target, it goes
		// through the gate below, which says what is wrong with it.
		if l, err := partition.ReadTarget(c); err == nil {
			seen[canonical(c)] = true
			targets = append(targets, partition.TargetCandidate{Path: c, Layout: l})
		}
	}
	named := map[string]string{} // canonical target → the source disk sent there
	for _, src := range sortedKeys(explicit) {
		t := explicit[src]
		if other, dup := named[canonical(t)]; dup {
			failOf(src, "disks %s and %s both go to one target (%s and %s are two names of it)", other, src, explicit[other], t)
			continue
		}
		named[canonical(t)] = src
		if !seen[canonical(t)] {
			// An explicit target need not be a candidate (an image file, a disk given by path).
			// The gate judges it before anything reads it.
			tt, err := target.New(t)
			if err == nil {
				err = tt.Check(p.gate)
			}
			var l *partition.Disk
			if err == nil {
				l, err = tt.Layout()
			}
			if err != nil {
				failOf(src, "disk %s: %v", src, err)
				continue
			}
			p.judge(t, tt)
			seen[canonical(t)] = true
			targets = append(targets, partition.TargetCandidate{Path: t, Layout: l})
		}
	}
	if err := probs.err(); err != nil {
		return nil, err
	}
	mapping, err := partition.MapDisks(sources, targets, explicit)
	if err != nil {
		fail("%v", err)
		return nil, probs.err()
	}

	for i := range gen.Disks {
		d := &gen.Disks[i]
		if !chosen(d) {
			continue
		}
		dr := byName[d.Name]
		if dr.Resize == "" {
			dr.Resize = req.AutoResize
		}
		if dr.Identity == "" {
			dr.Identity = req.AutoIdentity
		}
		dp, err := planDisk(ctx, req, p, d, mapping[d.Name], dr)
		if err != nil {
			failOf(d.Name, "disk %s → %s: %v", d.Name, mapping[d.Name], err)
			continue
		}
		p.Disks = append(p.Disks, *dp)
	}
	if err := probs.err(); err != nil {
		return nil, err
	}
	if err := oneDiskEach(p.Disks); err != nil {
		return nil, err
	}
	sort.Slice(p.Disks, func(i, j int) bool { return p.Disks[i].Source < p.Disks[j].Source })
	p.Fingerprint = fingerprint(p)
	p.prepared = true
	return p, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// oneDiskEach refuses two source disks going to one target under two names (a device node and
// an alias of it, two hard links of an image).
func oneDiskEach(disks []DiskPlan) error {
	seen := map[string]string{}
	var probs problems
	for i := range disks {
		t, err := disks[i].target()
		if err != nil {
			continue
		}
		if other, dup := seen[t.ID()]; dup {
			probs.of(disks[i].Source, "disks %s and %s both go to one target (%s and %s are two names of it)", other, disks[i].Source, targetOf(disks, other), disks[i].Target)
			continue
		}
		seen[t.ID()] = disks[i].Source
	}
	return probs.err()
}

func targetOf(disks []DiskPlan, source string) string {
	for _, d := range disks {
		if d.Source == source {
			return d.Target
		}
	}
	return ""
}

// prepareLayout is Prepare for a plan that writes only partition tables: every disk names its
// target and the layout plan to write there, and every target passes the gate and must exist.
func prepareLayout(ctx context.Context, req Request) (*Plan, error) {
	p := &Plan{Name: req.Name, Machine: req.Machine, LayoutOnly: true, repo: req.Repo, Warnings: append([]string(nil), req.Notes...),
		Inoculate: Inoculation{Skip: true, Why: "only partition tables are written"}}
	if req.Repo != nil {
		p.Repository = req.Repo.Location()
	}
	disks, err := SystemDisks()
	if err != nil {
		return nil, fmt.Errorf("listing this machine's disks: %w", err)
	}
	p.Protect = protectedPaths(req, BootMedia(disks))
	p.gate = &target.Gate{Protect: p.Protect}
	var probs problems
	for _, dr := range req.Disks {
		if dr.Plan == nil || dr.Plan.Layout == nil || dr.Target == "" {
			probs.of(dr.Source, "disk %s: a table-only plan needs a target and the layout plan to write there", dr.Source)
			continue
		}
		dp := DiskPlan{Source: orDefault(dr.Source, "disk0"), Target: dr.Target, Layout: dr.Plan}
		t, err := target.New(dr.Target)
		if err == nil {
			err = t.Check(p.gate)
		}
		if err == nil && !t.Exists() {
			err = fmt.Errorf("%s does not exist: a partition table is written onto an existing disk or image", dr.Target)
		}
		if err != nil {
			probs.of(dp.Source, "disk %s: %v", dp.Source, err)
			continue
		}
		dp.t, dp.Kind = t, t.Kind()
		p.Disks = append(p.Disks, dp)
	}
	if err := probs.err(); err != nil {
		return nil, err
	}
	if err := oneDiskEach(p.Disks); err != nil {
		return nil, err
	}
	p.Fingerprint = fingerprint(p)
	p.prepared = true
	return p, nil
}

// planDisk decides how one disk is restored and checks it can be.
func planDisk(ctx context.Context, req Request, p *Plan, d *tib.Disk, path string, dr DiskRequest) (*DiskPlan, error) {
	dp := &DiskPlan{Source: d.Name, Target: path}
	for i := range d.Regions {
		dp.Bytes += d.Regions[i].UsedBytes()
	}
	t, err := p.judgedTarget(path)
	if err != nil {
		return nil, err
	}
	dp.t, dp.Kind = t, t.Kind()
	if !t.Exists() {
		// A new image file: it gets the source's layout and size exactly.
		return dp, nil
	}
	cur, err := t.Layout()
	if err != nil {
		return nil, err
	}
	image := t.Kind() == target.KindImageFile
	src := d.Layout
	same := cur.Size == src.Size && cur.LogicalSectorSize == src.LogicalSectorSize &&
		dr.Identity != partition.IdentityRenew && (dr.Resize == "" || dr.Resize == partition.ResizeKeep || image)
	if same || (image && cur.Size < src.Size && dr.Resize == "" && dr.Identity != partition.IdentityRenew) {
		// Byte for byte at the source's offsets (an image file smaller than the source is
		// extended by the restore).
		if !image && cur.Size < src.Size {
			return nil, fmt.Errorf("target is %d bytes, the source %d", cur.Size, src.Size)
		}
		return dp, nil
	}
	if src.Table == partition.TableNone && cur.Size >= src.Size && dr.Identity != partition.IdentityRenew {
		// A disk without a partition table (one filesystem on the whole disk) has nothing to
		// lay out: it is restored byte for byte, and a bigger target keeps its extra space free.
		p.Warnings = append(p.Warnings, fmt.Sprintf("%s: no partition table: restored whole at the start of the %s target", d.Name, HumanBytes(cur.Size)))
		return dp, nil
	}
	lp, err := partition.Plan(&src, cur, partition.PlanOptions{Resize: dr.Resize, Identity: dr.Identity, Used: d.UsedByPartition()})
	if err != nil {
		return nil, err
	}
	if failed := lp.Failed(); len(failed) > 0 {
		var s []string
		for _, c := range failed {
			s = append(s, c.Name+": "+c.Detail)
		}
		return nil, errors.New(strings.Join(s, "; "))
	}
	lp.Target.Path = path
	if req.Partial {
		return nil, fmt.Errorf("it must be laid out anew (another size, sector size or identities), and a restore that goes on past damage (--partial) writes byte for byte only: give an image file or a disk of the source's size")
	}
	warnings, err := write.CheckPlan(ctx, p.repo, p.gen, d.Name, lp, req.Scratch)
	if err != nil {
		return nil, err
	}
	for _, w := range append(lp.Warnings, warnings...) {
		p.Warnings = append(p.Warnings, d.Name+": "+w)
	}
	dp.Layout = lp
	return dp, nil
}

// judge records a target the gate has judged.
func (p *Plan) judge(path string, t target.Target) {
	if p.judgedTargets == nil {
		p.judgedTargets = map[string]target.Target{}
	}
	p.judgedTargets[path] = t
}

// judgedTarget returns the target path names, judged by the gate (once per plan).
func (p *Plan) judgedTarget(path string) (target.Target, error) {
	if t, ok := p.judgedTargets[path]; ok {
		return t, nil
	}
	t, err := target.New(path)
	if err != nil {
		return nil, err
	}
	if err := t.Check(p.gate); err != nil {
		return nil, err
	}
	p.judge(path, t)
	return t, nil
}

// protectedPaths is the one list of what a recovery must never write: the paths the request
// names, the boot media, the repository's directory and the running program. Every target passes
// the gate made from it (package restore/target says what each kind of target checks).
func protectedPaths(req Request, boot []string) []string {
	out := append(append([]string{}, req.Protect...), boot...)
	if req.RepoPath != "" {
		out = append(out, req.RepoPath)
	}
	if exe, err := os.Executable(); err == nil {
		out = append(out, exe)
	}
	return out
}

// SafetyGate is the gate for a write outside a recovery plan (layout apply): the same list
// Prepare makes — this machine's boot media, the repository's directory (if any), the running
// program — plus extra paths.
func SafetyGate(repoDir string, extra ...string) (*target.Gate, error) {
	disks, err := SystemDisks()
	if err != nil {
		return nil, fmt.Errorf("listing this machine's disks: %w", err)
	}
	return &target.Gate{Protect: protectedPaths(Request{RepoPath: repoDir, Protect: extra}, BootMedia(disks))}, nil
}

// fingerprint hashes what identifies a recovery: source, targets and choices, not the plan's
// details (renewed identities are random, and a resumed run must find the same journal).
func fingerprint(p *Plan) string {
	type disk struct{ Source, Target string }
	v := struct {
		Machine, Generation string
		Disks               []disk
		Inoculate           Inoculation
		Freeze              bool
		Release             tib.ReleaseMode
	}{Machine: p.Machine, Generation: p.Generation, Inoculate: p.Inoculate, Freeze: p.Freeze, Release: p.Release}
	for _, d := range p.Disks {
		v.Disks = append(v.Disks, disk{d.Source, canonical(d.Target)})
	}
	b, _ := json.Marshal(v)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:16])
}

// WriteText prints the plan as the dry run shows it.
func (p *Plan) WriteText(w io.Writer) {
	fmt.Fprintf(w, "Recovery plan %s\n", p.Name)
	if p.LayoutOnly {
		fmt.Fprintf(w, "  partition tables only: no volume data is written\n")
	} else {
		fmt.Fprintf(w, "  source:     %s, machine %s, generation %.12s (%s)\n", p.Repository, p.Machine, p.Generation, tib.FormatTime(p.GenerationTime))
	}
	for _, d := range p.Disks {
		kind := string(d.Kind)
		how := "byte for byte at the source's offsets"
		if d.Layout != nil {
			how = fmt.Sprintf("new layout (resize %s, identities %s)", d.Layout.Resize, d.Layout.IdentityOpt)
		}
		if p.LayoutOnly {
			fmt.Fprintf(w, "  disk %s → %s (%s): %s table, %d partition(s)\n", d.Source, d.Target, kind, d.Layout.Layout.Table, len(d.Layout.Layout.Partitions))
			continue
		}
		fmt.Fprintf(w, "  disk %s → %s (%s): %s, %s of data\n", d.Source, d.Target, kind, how, HumanBytes(d.Bytes))
		if d.Layout != nil {
			for _, m := range d.Layout.Moves {
				fmt.Fprintf(w, "      partition %d %-6s start %d → %d, size %d → %d\n", m.Number, m.Filesystem, m.OldStart, m.NewStart, m.OldSize, m.NewSize)
			}
			for _, f := range d.Layout.Filesystems {
				fmt.Fprintf(w, "      %s partition %d (%s): %d → %d bytes\n", f.Action, f.Partition, f.Type, f.OldSize, f.NewSize)
			}
			for _, id := range d.Layout.Identities {
				if id.Old != id.New {
					fmt.Fprintf(w, "      %s %s → %s\n", id.What, id.Old, id.New)
				}
			}
		}
	}
	switch {
	case !p.Freeze:
		fmt.Fprintf(w, "  replication: left as it is\n")
	default:
		fmt.Fprintf(w, "  replication: frozen during the recovery, then %s\n", p.Release)
	}
	if p.NoVerify {
		fmt.Fprintf(w, "  verification: left out (--no-verify): chunks are checked as they are written, the targets are not read back\n")
	}
	p.writeInoculation(w)
	fmt.Fprintf(w, "  never written: %s\n", strings.Join(p.Protect, ", "))
	for _, warn := range p.Warnings {
		fmt.Fprintf(w, "  warning: %s\n", warn)
	}
}

// writeInoculation says what inoculation will do: where it runs, for which hardware, with which
// drivers and services, on which disks.
func (p *Plan) writeInoculation(w io.Writer) {
	in := p.Inoculate
	if in.Skip {
		fmt.Fprintf(w, "  inoculation: skipped (%s)\n", orDefault(in.Why, "the plan says not to inoculate"))
		return
	}
	where := "off-target (the restored disks will run on other hardware)"
	if in.OnTarget {
		where = "on-target (this machine's hardware)"
	}
	fmt.Fprintf(w, "  inoculation: %s, hardware %s\n", where, orDefault(in.Hardware, "detect"))
	for i := range p.Disks {
		d := &p.Disks[i]
		var linux, windows []string
		if layout := d.layout(p); layout != nil {
			for _, v := range volumesOf(layout) {
				switch v.fs {
				case "ext2", "ext3", "ext4", "xfs", "btrfs":
					linux = append(linux, v.String())
				case "ntfs":
					windows = append(windows, v.String())
				}
			}
		}
		var looks []string
		if len(linux) > 0 {
			looks = append(looks, "Linux on "+strings.Join(linux, ", "))
		}
		if len(windows) > 0 {
			looks = append(looks, "Windows on "+strings.Join(windows, ", "))
		}
		if len(looks) == 0 {
			fmt.Fprintf(w, "      %s: no volume that can hold Linux (ext2/3/4, XFS, Btrfs) or Windows (NTFS): nothing to inoculate\n", d.Source)
			continue
		}
		fmt.Fprintf(w, "      %s: looks for %s\n", d.Source, strings.Join(looks, "; "))
	}
	if len(in.Drivers) > 0 {
		fmt.Fprintf(w, "      drivers from %s\n", strings.Join(in.Drivers, ", "))
	}
	if len(in.EnableInbox) > 0 {
		fmt.Fprintf(w, "      enable in-box drivers: %s\n", strings.Join(in.EnableInbox, ", "))
	}
	if len(in.DisableServices) > 0 {
		fmt.Fprintf(w, "      disable services: %s\n", strings.Join(in.DisableServices, ", "))
	}
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// canonical is target.Canonical: two names of the same disk compare equal.
func canonical(p string) string { return target.Canonical(p) }
