package tui

import (
	"fmt"
	"sort"
	"strings"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/cauldron-dr/cauldron/tib"
)

// Screen 3, machine and generation: the machines in the repository with their latest
// generation, then the chosen machine's timeline (newest first, paged) with the details of the
// highlighted generation. Any generation of an incremental chain can be chosen (rear #2032).

type machineScreen struct{ sel int }

type genScreen struct{ sel int }

type machineRow struct {
	name   string
	count  int
	latest *tib.Generation
}

func (m *Model) machines() []machineRow {
	by := map[string]*machineRow{}
	for _, g := range m.gens {
		r := by[g.Machine]
		if r == nil {
			r = &machineRow{name: g.Machine}
			by[g.Machine] = r
		}
		r.count++
		if r.latest == nil || g.Time.After(r.latest.Time) {
			r.latest = g
		}
	}
	var out []machineRow
	for _, r := range by {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

func (m *Model) enterMachine() tea.Cmd {
	rows := m.machines()
	m.mach.sel = min(m.mach.sel, max(len(rows)-1, 0))
	return nil
}

func (m *Model) updateMachine(msg tea.Msg) tea.Cmd {
	k, ok := msg.(tea.KeyPressMsg)
	if !ok {
		return nil
	}
	rows := m.machines()
	s := &m.mach
	switch {
	case m.isKey(k, keys.Up):
		s.sel = max(s.sel-1, 0)
	case m.isKey(k, keys.Down):
		s.sel = min(s.sel+1, len(rows)-1)
	case m.isKey(k, keys.Enter):
		if len(rows) > 0 {
			if m.machine != rows[s.sel].name {
				m.gsel.sel = 0
			}
			m.machine = rows[s.sel].name
			return m.goTo(scrGeneration)
		}
	case m.isKey(k, keys.Back):
		return m.back()
	}
	return nil
}

func (m *Model) viewMachine() (string, string) {
	t := m.theme
	var b strings.Builder
	fmt.Fprintf(&b, "Machines in %s:\n\n", m.repoPath)
	fmt.Fprintf(&b, "  %-24s %11s  %-*s %10s\n", "machine", "generations", stampWidth, "latest", "size")
	rows := m.machines()
	n := m.bodyHeight() - 3
	start := listWindow(m.mach.sel, len(rows), n)
	for i := start; i < len(rows) && i < start+n; i++ {
		r := rows[i]
		fmt.Fprintf(&b, "%s\n", t.row(i == m.mach.sel, fmt.Sprintf("%-24s %11d  %-*s %10s", r.name, r.count, stampWidth, stamp(r.latest.Time), human(r.latest.Stats.UsedBytes))))
	}
	return b.String(), "up/down choose  enter timeline  esc back"
}

// timeline is the machine's generations, newest first.
func (m *Model) timeline() []*tib.Generation {
	var out []*tib.Generation
	for _, g := range m.gens {
		if g.Machine == m.machine {
			out = append(out, g)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.After(out[j].Time) })
	return out
}

func (m *Model) enterGeneration() tea.Cmd {
	m.gsel.sel = min(m.gsel.sel, max(len(m.timeline())-1, 0))
	return nil
}

// genPage is how many generations one page of the timeline shows.
func (m *Model) genPage() int { return max(m.bodyHeight()-12, 3) }

func (m *Model) updateGeneration(msg tea.Msg) tea.Cmd {
	k, ok := msg.(tea.KeyPressMsg)
	if !ok {
		return nil
	}
	tl := m.timeline()
	s := &m.gsel
	page := m.genPage()
	switch {
	case m.isKey(k, keys.Up):
		s.sel = max(s.sel-1, 0)
	case m.isKey(k, keys.Down):
		s.sel = min(s.sel+1, len(tl)-1)
	case m.isKey(k, keys.PgDown), m.isKey(k, keys.Right):
		s.sel = min((s.sel/page+1)*page, len(tl)-1)
	case m.isKey(k, keys.PgUp), m.isKey(k, keys.Left):
		s.sel = max((s.sel/page-1)*page, 0)
	case k.String() == "home" || k.String() == "g":
		s.sel = 0
	case k.String() == "end" || k.String() == "G":
		s.sel = len(tl) - 1
	case m.isKey(k, keys.Enter):
		if len(tl) > 0 {
			if m.gen != tl[s.sel] {
				m.disk = diskScreen{} // another generation: the mapping starts over
			}
			m.gen = tl[s.sel]
			return m.goTo(scrDisks)
		}
	case m.isKey(k, keys.Back):
		return m.back()
	}
	return nil
}

func (m *Model) viewGeneration() (string, string) {
	t := m.theme
	tl := m.timeline()
	var b strings.Builder
	page := m.genPage()
	pages := (len(tl) + page - 1) / page
	cur := m.gsel.sel / page
	fmt.Fprintf(&b, "Generations of %s, newest first (page %d of %d):\n", m.machine, cur+1, max(pages, 1))
	fmt.Fprintf(&b, "  %-*s %-12s %-11s %10s %10s\n", stampWidth, "taken", "id", "kind", "size", "new")
	for i := cur * page; i < len(tl) && i < (cur+1)*page; i++ {
		g := tl[i]
		kind := "full"
		if g.Parent != nil {
			kind = "incremental"
		}
		fmt.Fprintf(&b, "%s\n", t.row(i == m.gsel.sel, fmt.Sprintf("%-*s %-12.12s %-11s %10s %10s", stampWidth, stamp(g.Time), g.ID.String(), kind, human(g.Stats.UsedBytes), human(g.Stats.NewBytes))))
	}
	if len(tl) > 0 {
		b.WriteString("\n" + genDetails(tl[m.gsel.sel]))
	}
	return b.String(), "up/down choose  pgup/pgdn page  enter use this one  esc back"
}

// genDetails describes one generation: its disks and volumes and what system they look like.
func genDetails(g *tib.Generation) string {
	var b strings.Builder
	host := g.Hostname
	if host == "" {
		host = "-"
	}
	fmt.Fprintf(&b, "Generation %.12s taken %s on host %s; %s used of %s\n", g.ID.String(), stamp(g.Time), host, human(g.Stats.UsedBytes), human(g.Stats.LogicalBytes))
	for _, d := range g.Disks {
		l := d.Layout
		id := ""
		if l.Model != "" || l.Serial != "" {
			id = fmt.Sprintf(", %s serial %s", orDash(l.Model), orDash(l.Serial))
		}
		fmt.Fprintf(&b, "  %s: %s %s%s, %d partition(s)\n", d.Name, human(l.Size), l.Table, id, len(l.Partitions))
		for _, p := range l.Partitions {
			fs, label := "-", ""
			if p.Filesystem != nil {
				fs = p.Filesystem.Type
				if p.Filesystem.Label != "" {
					label = " \"" + p.Filesystem.Label + "\""
				}
			}
			fmt.Fprintf(&b, "    %d  %-6s %9s%s\n", p.Number, fs, human(p.Size), label)
		}
	}
	fmt.Fprintf(&b, "  system: %s\n", guessSystem(g))
	return b.String()
}

// guessSystem names the kind of system the volumes suggest. It is a hint from filesystem types
// only; inoculation detects the system itself on the restored volumes.
func guessSystem(g *tib.Generation) string {
	var ntfs, linux, efi bool
	for _, d := range g.Disks {
		for _, p := range d.Layout.Partitions {
			if p.Filesystem == nil {
				continue
			}
			switch p.Filesystem.Type {
			case "ntfs":
				ntfs = true
			case "ext2", "ext3", "ext4", "xfs", "btrfs", "swap", "lvm2":
				linux = true
			case "vfat":
				efi = efi || strings.Contains(strings.ToLower(p.TypeName), "efi")
			}
		}
	}
	var s string
	switch {
	case ntfs && linux:
		s = "Windows and Linux volumes"
	case ntfs:
		s = "Windows (NTFS volumes)"
	case linux:
		s = "Linux (Linux filesystems)"
	default:
		return "not recognised from the volumes (detected after the restore)"
	}
	if efi {
		s += ", UEFI boot partition"
	}
	return s + "; confirmed after the restore"
}

// stamp shows a time as every command does (tib.FormatTime): the technician's clock, to the
// second, with its offset from UTC, so that it can be typed back as a kickstart's --generation.
func stamp(t time.Time) string { return tib.FormatTime(t) }

// stampWidth is how wide stamp's text is with an offset (+01:00); in UTC (Z) it is narrower.
const stampWidth = len("2006-01-02T15:04:05+00:00")
