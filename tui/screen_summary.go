package tui

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cauldron-dr/cauldron/restore/target"

	tea "charm.land/bubbletea/v2"
	"github.com/cauldron-dr/cauldron/partition"
	"github.com/cauldron-dr/cauldron/restore"
)

// Screen 6, summary and typed confirmation: the exact plan the engine made (validated, nothing
// written), every disk that will be overwritten with its model, serial and size, and a field
// where the technician types the word shown. There is no default and no single-key confirm: a
// yes/no is answered by reflex. "Export kickstart" writes the kickstart that reproduces this
// recovery, so that the next machine runs unattended.

// ConfirmWord is what the technician types to start the recovery: the same word as everywhere.
const ConfirmWord = restore.ConfirmWord

type summaryScreen struct {
	planning bool
	seq      int // of the plan being made: a plan for earlier choices is dropped
	err      error
	plan     *restore.Plan
	text     []string
	scroll   int
	confirm  field
	focus    int // 0 the confirmation field, 1 the export button

	export        bool // the export dialog is open
	exportPath    field
	exportConsent bool
	exportFocus   int // 0 path, 1 consent
}

type planMsg struct {
	seq  int
	plan *restore.Plan
	err  error
}

type exportedMsg struct {
	path, text string
	err        error
}

func (s *summaryScreen) focused() *field {
	switch {
	case s.export && s.exportFocus == 0:
		return &s.exportPath
	case !s.export && s.focus == 0 && s.plan != nil:
		return &s.confirm
	}
	return nil
}

func (m *Model) enterSummary() tea.Cmd {
	seq := m.sum.seq + 1
	m.sum = summaryScreen{planning: true, seq: seq, confirm: field{limit: 32}}
	m.plan = nil
	req, ctx := m.Request(), m.ctx
	return safe(func() tea.Msg {
		p, err := restore.Prepare(ctx, req)
		return planMsg{seq, p, err}
	})
}

func (m *Model) updateSummary(msg tea.Msg) tea.Cmd {
	s := &m.sum
	switch msg := msg.(type) {
	case planMsg:
		if msg.seq != s.seq || m.screen != scrSummary {
			return nil // made for choices that have changed since
		}
		s.planning, s.plan, s.err = false, msg.plan, msg.err
		if msg.plan != nil {
			var b strings.Builder
			msg.plan.WriteText(&b)
			s.text = strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
		}
		return nil
	case exportedMsg:
		if msg.err != nil {
			m.message = "!Export failed: " + msg.err.Error()
		} else {
			s.export, s.focus = false, 0
			m.result.Kickstart = msg.text
			m.message = "Kickstart written to " + msg.path
		}
		return nil
	case tea.KeyPressMsg:
		if s.planning || s.plan == nil {
			if m.isKey(msg, keys.Back) {
				return m.back()
			}
			return nil
		}
		if s.export {
			return m.exportDialog(msg)
		}
		switch {
		case m.isKey(msg, keys.Back):
			return m.back()
		case m.isKey(msg, keys.Tab), m.isKey(msg, keys.ShiftTab):
			s.focus = 1 - s.focus
		case msg.String() == "up" || (s.focus == 1 && m.isKey(msg, keys.Up)):
			s.scroll = max(s.scroll-1, 0)
		case msg.String() == "down" || (s.focus == 1 && m.isKey(msg, keys.Down)):
			s.scroll = min(s.scroll+1, max(len(m.planLines())-1, 0))
		case msg.String() == "pgup":
			s.scroll = max(s.scroll-m.planRows(), 0)
		case msg.String() == "pgdown":
			s.scroll = min(s.scroll+m.planRows(), max(len(m.planLines())-1, 0))
		case m.isKey(msg, keys.Enter) && s.focus == 1:
			s.export, s.exportFocus, s.exportConsent = true, 0, false
			dir := m.env.ExportDir
			if dir == "" {
				dir, _ = os.Getwd()
			}
			s.exportPath = field{value: filepath.Join(dir, s.plan.Machine+".ks"), limit: 512}
		case m.isKey(msg, keys.Enter):
			if s.confirm.value != ConfirmWord {
				m.message = "!Type " + ConfirmWord + " (capital letters) to start; nothing has been written."
				s.confirm.value = ""
				return nil
			}
			m.plan = s.plan
			return m.goTo(scrProgress)
		case s.focus == 0:
			s.confirm.handle(msg.String(), msg.Text)
		}
	}
	return nil
}

func (m *Model) exportDialog(k tea.KeyPressMsg) tea.Cmd {
	s := &m.sum
	switch {
	case m.isKey(k, keys.Back):
		s.export = false
		m.message = ""
	case m.isKey(k, keys.Tab), m.isKey(k, keys.ShiftTab), k.String() == "up", k.String() == "down":
		s.exportFocus = 1 - s.exportFocus
	case s.exportFocus == 1 && m.isKey(k, keys.Space):
		s.exportConsent = !s.exportConsent
	case m.isKey(k, keys.Enter):
		path := strings.TrimSpace(s.exportPath.value)
		if !filepath.IsAbs(path) {
			m.message = "!Give an absolute path for the kickstart."
			return nil
		}
		text, err := m.kickstartText(s.exportConsent)
		if err != nil {
			m.message = "!" + err.Error()
			return nil
		}
		return safe(func() tea.Msg {
			if _, err := os.Stat(filepath.Dir(path)); err != nil {
				return exportedMsg{err: err}
			}
			err := os.WriteFile(path, []byte(text), 0o644)
			return exportedMsg{path: path, text: text, err: err}
		})
	case s.exportFocus == 0:
		s.exportPath.handle(k.String(), k.Text)
	}
	return nil
}

// planRows is how many lines of the plan fit above the disk list and the confirmation.
func (m *Model) planRows() int {
	return max(m.bodyHeight()-strings.Count(wrapLines(m.summaryBottom(), m.width), "\n")-1, 3)
}

// planLines is the plan wrapped to the screen's width.
func (m *Model) planLines() []string {
	return strings.Split(wrapLines(strings.Join(m.sum.text, "\n"), m.width), "\n")
}

// summaryBottom is what must always be seen: the disks to be overwritten and the confirmation
// (or the export dialog).
func (m *Model) summaryBottom() string {
	s, t := &m.sum, m.theme
	var b strings.Builder
	b.WriteString(t.Bad("Everything on these disks will be overwritten:") + "\n")
	for _, d := range s.plan.Disks {
		desc := "a new image file"
		if ti := m.targetInfo(d.Target); ti != nil && ti.disk != nil {
			kind := "disk"
			if d.Kind != target.KindBlockDevice {
				kind = string(d.Kind)
			}
			now := "no partition table"
			if ti.disk.Table != partition.TableNone {
				now = fmt.Sprintf("%s table with %d partition(s)", ti.disk.Table, len(ti.disk.Partitions))
			}
			desc = fmt.Sprintf("%s %s, model %s, serial %s; now: %s", kind, human(ti.disk.Size), orDash(ti.disk.Model), orDash(ti.disk.Serial), now)
		}
		fmt.Fprintf(&b, "  %s (for %s)\n      %s\n", d.Target, d.Source, desc)
	}
	b.WriteString("\n")
	if s.export {
		fmt.Fprintf(&b, "Export kickstart to: %s\n", s.exportPath.view(t, s.exportFocus == 0, 50))
		fmt.Fprintf(&b, "%s add `confirm --destroy-data-on-targets` (runs without asking)\n", t.row(s.exportFocus == 1, t.check(s.exportConsent)))
		return b.String()
	}
	button := "[ Export kickstart ]"
	if s.focus == 1 {
		button = t.Selected(button)
	}
	fmt.Fprintf(&b, "Type %s and press Enter to start: %s   %s\n", ConfirmWord, s.confirm.view(t, s.focus == 0, 12), button)
	return b.String()
}

func (m *Model) viewSummary() (string, string) {
	s, t := &m.sum, m.theme
	switch {
	case s.planning:
		return "Checking the plan against the repository and the disks (nothing is written)...\n", "esc back"
	case s.err != nil:
		var pe *restore.PlanError
		msg := s.err.Error()
		if errors.As(s.err, &pe) {
			msg = "The recovery is not possible as chosen:\n  - " + strings.Join(pe.Problems, "\n  - ")
		}
		return t.Bad(msg) + "\n\nGo back and change the mapping or the options.\n", "esc back"
	}
	var b strings.Builder
	rows := m.planRows()
	text := m.planLines()
	s.scroll = min(s.scroll, max(len(text)-1, 0))
	end := min(len(text), s.scroll+rows)
	for _, l := range text[s.scroll:end] {
		b.WriteString(l + "\n")
	}
	if end < len(text) {
		b.WriteString(t.Dim(fmt.Sprintf("  ... %d more line(s): up/down scroll", len(text)-end)) + "\n")
	} else {
		b.WriteString("\n")
	}
	b.WriteString(m.summaryBottom())
	if s.export {
		return b.String(), "enter write  tab next  space toggle  esc close"
	}
	return b.String(), "enter start  tab export  up/down scroll  esc back"
}
