package tui

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	tea "charm.land/bubbletea/v2"
	"github.com/cauldron-dr/cauldron/partition"
	"github.com/cauldron-dr/cauldron/restore"
	"github.com/cauldron-dr/cauldron/restore/target"
)

// Screen 4, disk mapping: each source disk of the generation and the target it goes to, as the
// engine proposes it (WWN, serial, then size), with model, serial, size and the difference. The
// boot medium, the archive's disk and disks in use are listed but cannot be chosen (the anchors'
// users lost their rescue media and backup disks this way). Per disk: resize policy and whether
// the identities are kept or renewed.

type diskScreen struct {
	loaded   bool
	loading  bool
	err      error
	targets  []targetInfo
	rows     []diskChoice
	sel      int
	proposal string // what the engine's mapping said when it could not map everything
}

type targetInfo struct {
	path string
	disk *partition.Disk // nil when it could not be read
	why  string          // why it cannot be a target; "" when it can
}

type diskChoice struct {
	source   string
	size     int64
	used     int64
	target   string
	resize   partition.ResizeMode
	identity partition.IdentityMode
}

type targetsMsg struct {
	targets []targetInfo
	err     error
}

var resizeModes = []partition.ResizeMode{partition.ResizeProportional, partition.ResizeGrowLast, partition.ResizeKeep}
var identityModes = []partition.IdentityMode{partition.IdentityKeep, partition.IdentityRenew}

func (m *Model) enterDisks() tea.Cmd {
	s := &m.disk
	if s.loaded || s.loading {
		return nil
	}
	s.loading = true
	return m.readTargets()
}

// readTargets reads every candidate disk and decides which may be written: the same checks the
// engine makes before it writes (boot media, the repository's disk, mounted or in-use disks).
func (m *Model) readTargets() tea.Cmd {
	cands, repoDir := m.env.Targets, m.repoDir
	return safe(func() tea.Msg {
		if cands == nil {
			var err error
			if cands, err = restore.SystemDisks(); err != nil {
				return targetsMsg{err: err}
			}
		}
		// The engine's own gate (one list of what must never be written, one set of rules).
		gate, err := restore.SafetyGate(repoDir)
		if err != nil {
			return targetsMsg{err: err}
		}
		var out []targetInfo
		for _, c := range cands {
			ti := targetInfo{path: c}
			d, err := partition.ReadTarget(c)
			if err != nil {
				ti.why = "cannot be read: " + err.Error()
				out = append(out, ti)
				continue
			}
			ti.disk = d
			t, err := target.New(c)
			if err == nil {
				err = t.Check(gate)
			}
			var ue *partition.UnsafeError
			var rf *target.Refusal
			switch {
			case errors.As(err, &ue):
				ti.why = ue.Reason
			case errors.As(err, &rf):
				ti.why = rf.Reason
			case err != nil:
				ti.why = err.Error()
			}
			out = append(out, ti)
		}
		return targetsMsg{targets: out}
	})
}

func (m *Model) updateDisks(msg tea.Msg) tea.Cmd {
	s := &m.disk
	switch msg := msg.(type) {
	case targetsMsg:
		if m.gen == nil {
			return nil
		}
		s.loading, s.loaded, s.err, s.targets = false, msg.err == nil, msg.err, msg.targets
		if msg.err == nil {
			m.propose()
		}
		return nil
	case tea.KeyPressMsg:
		if s.loading {
			return nil
		}
		switch {
		case m.isKey(msg, keys.Back):
			return m.back()
		case msg.String() == "s":
			s.loaded, s.loading = false, true
			return m.readTargets()
		}
		if len(s.rows) == 0 {
			return nil
		}
		row := &s.rows[s.sel]
		switch {
		case m.isKey(msg, keys.Up):
			s.sel = max(s.sel-1, 0)
		case m.isKey(msg, keys.Down):
			s.sel = min(s.sel+1, len(s.rows)-1)
		case m.isKey(msg, keys.Right), m.isKey(msg, keys.Space):
			row.target = m.cycleTarget(row.target, +1)
		case m.isKey(msg, keys.Left):
			row.target = m.cycleTarget(row.target, -1)
		case msg.String() == "r":
			row.resize = resizeModes[(indexOf(resizeModes, row.resize)+1)%len(resizeModes)]
		case msg.String() == "i":
			row.identity = identityModes[(indexOf(identityModes, row.identity)+1)%len(identityModes)]
		case m.isKey(msg, keys.Enter):
			if err := m.checkMapping(); err != nil {
				m.message = "!" + err.Error()
				return nil
			}
			return m.goTo(scrOptions)
		}
	}
	return nil
}

// propose fills the rows with the engine's mapping onto the disks that may be written.
func (m *Model) propose() {
	s := &m.disk
	var sources []partition.SourceDisk
	for i := range m.gen.Disks {
		sources = append(sources, partition.SourceDisk{Name: m.gen.Disks[i].Name, Layout: &m.gen.Disks[i].Layout})
	}
	var targets []partition.TargetCandidate
	for _, t := range s.targets {
		if t.why == "" {
			targets = append(targets, partition.TargetCandidate{Path: t.path, Layout: t.disk})
		}
	}
	mapping, err := partition.MapDisks(sources, targets, nil)
	s.proposal = ""
	if err != nil {
		s.proposal = "The engine proposes no complete mapping: " + err.Error() + "\nChoose the targets with left/right."
		mapping = map[string]string{}
	}
	old := map[string]diskChoice{}
	for _, r := range s.rows {
		old[r.source] = r
	}
	s.rows = nil
	for i := range m.gen.Disks {
		d := &m.gen.Disks[i]
		c := diskChoice{source: d.Name, size: d.Layout.Size, target: mapping[d.Name], resize: partition.ResizeProportional, identity: partition.IdentityKeep}
		for j := range d.Regions {
			c.used += d.Regions[j].UsedBytes()
		}
		if o, ok := old[d.Name]; ok {
			c.resize, c.identity = o.resize, o.identity
		}
		s.rows = append(s.rows, c)
	}
	s.sel = min(s.sel, max(len(s.rows)-1, 0))
}

// cycleTarget moves to the next (dir +1) or previous writable target, through "none".
func (m *Model) cycleTarget(cur string, dir int) string {
	opts := []string{""}
	for _, t := range m.disk.targets {
		if t.why == "" {
			opts = append(opts, t.path)
		}
	}
	i := 0
	for j, o := range opts {
		if o == cur {
			i = j
		}
	}
	return opts[(i+dir+len(opts))%len(opts)]
}

func (m *Model) checkMapping() error {
	taken := map[string]string{}
	for _, r := range m.disk.rows {
		if r.target == "" {
			return fmt.Errorf("%s has no target: choose one with left/right", r.source)
		}
		if o, ok := taken[r.target]; ok {
			return fmt.Errorf("%s is chosen for both %s and %s", r.target, o, r.source)
		}
		taken[r.target] = r.source
	}
	return nil
}

func (m *Model) targetInfo(path string) *targetInfo {
	for i := range m.disk.targets {
		if m.disk.targets[i].path == path {
			return &m.disk.targets[i]
		}
	}
	return nil
}

func (m *Model) viewDisks() (string, string) {
	s, t := &m.disk, m.theme
	var b strings.Builder
	switch {
	case s.loading:
		return "Reading this machine's disks...\n", "esc back"
	case s.err != nil:
		return t.Bad("Listing this machine's disks failed: "+s.err.Error()) + "\n", "s rescan  esc back"
	}
	fmt.Fprintf(&b, "Where each disk of generation %.12s goes:\n\n", m.gen.ID.String())
	fmt.Fprintf(&b, "  %-6s %9s    %-28s %9s %s\n", "source", "size", "target", "size", "difference")
	for i, r := range s.rows {
		target, size, diff := "(none: left/right chooses)", "", ""
		if r.target != "" {
			target = shortPath(r.target, 28)
			if ti := m.targetInfo(r.target); ti != nil && ti.disk != nil {
				size = human(ti.disk.Size)
				diff = difference(ti.disk.Size, r.size, r.used)
			}
		}
		fmt.Fprintf(&b, "%s\n", t.row(i == s.sel, fmt.Sprintf("%-6s %9s -> %-28s %9s %s", r.source, human(r.size), target, size, diff)))
		fmt.Fprintf(&b, "         %s of data; resize %s; identity %s\n", human(r.used), r.resize, r.identity)
	}
	if s.proposal != "" {
		b.WriteString("\n" + t.Warn(s.proposal) + "\n")
	}
	b.WriteString("\nDisks of this machine:\n")
	for _, ti := range s.targets {
		mark := "  "
		if ti.why != "" {
			mark = t.notAllowed
		}
		var size, kind, ident string
		if ti.disk != nil {
			size, kind = human(ti.disk.Size), "disk"
			if fi, err := os.Stat(ti.path); err == nil && fi.Mode().IsRegular() {
				kind = "image file"
			}
			ident = fmt.Sprintf("model %s, serial %s", orDash(ti.disk.Model), orDash(ti.disk.Serial))
		}
		var used []string
		for _, r := range s.rows {
			if r.target == ti.path {
				used = append(used, "<- "+r.source)
			}
		}
		fmt.Fprintf(&b, "%s%-28s %9s %-10s %s\n", mark, shortPath(ti.path, 28), size, kind, strings.Join(used, " "))
		if ident != "" {
			fmt.Fprintf(&b, "    %s\n", ident)
		}
		if ti.why != "" {
			fmt.Fprintf(&b, "    %s\n", t.Dim("not selectable: "+ti.why))
		}
	}
	if len(s.targets) == 0 {
		b.WriteString("  none found\n")
	}
	return b.String(), "left/right target  r resize  i identity  s rescan  enter next  esc back"
}

// difference says how the target compares with the source disk, and whether the data still
// fits when it is smaller (restoring to a smaller disk is possible when the data fits).
func difference(target, source, used int64) string {
	switch {
	case target == source:
		return "same size"
	case target > source:
		return "+" + human(target-source)
	case target >= used:
		return human(target-source) + " fits"
	}
	return human(target-source) + " TOO SMALL"
}

func shortPath(p string, n int) string {
	if len(p) <= n {
		return p
	}
	base := filepath.Base(p)
	if len(base)+4 >= n {
		return "..." + p[len(p)-(n-3):]
	}
	return p[:n-len(base)-4] + ".../" + base
}

func indexOf[T comparable](s []T, v T) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return 0
}
