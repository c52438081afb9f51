package tui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/cauldron-dr/cauldron/restore"
)

// Screen 8, result: success, or the error with what to do next; the report (already saved in
// the archive by the engine) can be saved to a folder too (a USB stick); then reboot, power off,
// a shell or leaving the wizard, as the place it runs in offers.
//
// When the engine refused to start because a target holds another recovery that did not finish
// (a *restore.JournalConflictError), the screen names where that recovery's journal is and
// offers to discard it and start this recovery over, behind the same typed word as the summary:
// that recovery can then no longer resume.

type resultScreen struct {
	sel       int
	text      []string
	scroll    int
	saving    bool
	savePath  field
	countdown int
	auto      string // the on-success action the countdown leads to

	conflict   *restore.JournalConflictError // the journals in the way, when that is why it failed
	discarding bool                          // the discard confirmation is open
	discardIn  field
}

type savedMsg struct {
	path string
	err  error
}

// discardedMsg is the end of discarding the journals in the way.
type discardedMsg struct {
	gone []restore.JournalInfo
	err  error
}

var actionLabels = map[string]string{
	"reboot":   "Reboot",
	"poweroff": "Power off",
	"shell":    "Open a shell",
	"quit":     "Leave the wizard",
}

func (s *resultScreen) focused() *field {
	switch {
	case s.saving:
		return &s.savePath
	case s.discarding:
		return &s.discardIn
	}
	return nil
}

func (m *Model) enterResult() tea.Cmd {
	m.res = resultScreen{}
	var b strings.Builder
	rep, err := m.result.Report, m.result.RunErr
	errors.As(err, &m.res.conflict)
	switch {
	case err == nil:
		b.WriteString("The recovery succeeded.\n")
	case m.res.conflict != nil:
		b.WriteString("The recovery did NOT start: a target holds another recovery that did not finish. Nothing was written.\n")
		for _, j := range m.res.conflict.Journals {
			fmt.Fprintf(&b, "  Target:   %s\n  Journal:  %s\n", strings.Join(j.Targets, ", "), j.Where)
			if j.Damaged != "" {
				fmt.Fprintf(&b, "  It cannot be read (%s): how far that recovery got is unknown.\n", j.Damaged)
				continue
			}
			fmt.Fprintf(&b, "  Recovery: %s\n  Progress: %s\n", j.Recovery(), j.Progress())
			if n := j.FrozenNote(); n != "" {
				b.WriteString("  Note: " + n + "\n")
			}
		}
		b.WriteString("Run that recovery again to finish it, or choose \"Discard\" below to start this one over.\n")
	case errors.Is(err, context.Canceled):
		b.WriteString("The recovery was CANCELLED. The target disks are half-written and will not boot as they are.\n" +
			"Run the same recovery again (same archive, generation and targets) to resume it from its journal.\n")
	default:
		b.WriteString("The recovery FAILED: " + err.Error() + "\n" +
			"Nothing outside the target disks was touched. Fix the cause shown in the log, then run the same\n" +
			"recovery again: it resumes where it stopped.\n")
	}
	if rep != nil {
		b.WriteString("\n")
		rep.WriteText(&b)
		b.WriteString("\nLog:\n")
		for _, e := range rep.Log {
			b.WriteString("  " + e.String() + "\n")
		}
	}
	m.res.text = strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if err == nil {
		want := successChoices[m.opt.onSuccess]
		for _, a := range m.env.Actions {
			if a == want {
				m.res.auto, m.res.countdown = a, 10
				return m.tick(time.Second)
			}
		}
	}
	return nil
}

func (m *Model) resultRows() []string {
	rows := []string{"save"}
	if m.res.conflict != nil {
		rows = append([]string{"discard"}, rows...)
	}
	return append(rows, m.env.Actions...)
}

func (m *Model) updateResult(msg tea.Msg) tea.Cmd {
	s := &m.res
	switch msg := msg.(type) {
	case tickMsg:
		if s.countdown == 0 {
			return nil
		}
		s.countdown--
		if s.countdown == 0 {
			return m.quit(s.auto)
		}
		return m.tick(time.Second)
	case savedMsg:
		if msg.err != nil {
			m.message = "!Saving the report failed: " + msg.err.Error()
		} else {
			s.saving = false
			m.message = "Report saved to " + msg.path
		}
		return nil
	case discardedMsg:
		return m.discarded(msg)
	case tea.KeyPressMsg:
		if s.countdown > 0 {
			s.countdown = 0
			m.message = "Staying on this screen."
			return nil
		}
		if s.discarding {
			return m.discardDialog(msg)
		}
		if s.saving {
			switch {
			case m.isKey(msg, keys.Back):
				s.saving = false
			case m.isKey(msg, keys.Enter):
				return m.saveReport(strings.TrimSpace(s.savePath.value))
			default:
				s.savePath.handle(msg.String(), msg.Text)
			}
			return nil
		}
		rows := m.resultRows()
		switch {
		case m.isKey(msg, keys.Up):
			s.sel = max(s.sel-1, 0)
		case m.isKey(msg, keys.Down), m.isKey(msg, keys.Tab):
			s.sel = min(s.sel+1, len(rows)-1)
		case msg.String() == "pgup":
			s.scroll = max(s.scroll-m.resultRowsShown(), 0)
		case msg.String() == "pgdown":
			s.scroll = min(s.scroll+m.resultRowsShown(), max(len(m.resultLines())-1, 0))
		case m.isKey(msg, keys.Enter):
			if rows[s.sel] == "discard" {
				s.discarding, s.discardIn = true, field{limit: 32}
				m.message = ""
				return nil
			}
			if rows[s.sel] == "save" {
				dir := m.env.ExportDir
				if dir == "" {
					dir, _ = os.Getwd()
				}
				s.saving, s.savePath = true, field{value: dir, limit: 512}
				return nil
			}
			return m.quit(rows[s.sel])
		}
	}
	return nil
}

// discardDialog is the typed confirmation before the journals in the way are discarded.
func (m *Model) discardDialog(k tea.KeyPressMsg) tea.Cmd {
	s := &m.res
	switch {
	case m.isKey(k, keys.Back):
		s.discarding = false
		m.message = ""
	case m.isKey(k, keys.Enter):
		if s.discardIn.value != ConfirmWord {
			m.message = "!Type " + ConfirmWord + " (capital letters) to discard the journal; nothing has been discarded."
			s.discardIn.value = ""
			return nil
		}
		s.discarding = false
		m.message = "Discarding the journal..."
		ctx, plan := m.ctx, m.plan
		return safe(func() tea.Msg {
			gone, err := restore.DiscardJournal(ctx, plan, restore.DiscardAll)
			return discardedMsg{gone, err}
		})
	default:
		s.discardIn.handle(k.String(), k.Text)
	}
	return nil
}

// discarded starts the recovery over once the journals are gone; the report says what was
// discarded, for whoever looks for the abandoned recovery later.
func (m *Model) discarded(msg discardedMsg) tea.Cmd {
	if msg.err != nil {
		m.message = "!Discarding the journal failed: " + msg.err.Error()
		return nil
	}
	for _, j := range msg.gone {
		m.plan.Warnings = append(m.plan.Warnings, "discarded in the wizard to start over: "+j.String())
	}
	m.result.Report, m.result.RunErr = nil, nil
	cmd := m.goTo(scrProgress)
	m.message = fmt.Sprintf("Discarded %d journal(s); the recovery starts over.", len(msg.gone))
	return cmd
}

// saveReport writes the report as text and as JSON into a folder.
func (m *Model) saveReport(dir string) tea.Cmd {
	rep, runErr, stampNow := m.result.Report, m.result.RunErr, m.now()
	machine := "recovery"
	if m.plan != nil {
		machine = m.plan.Machine
	}
	return safe(func() tea.Msg {
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			if err == nil {
				err = errors.New("not a directory")
			}
			return savedMsg{err: fmt.Errorf("%s: %w", dir, err)}
		}
		base := filepath.Join(dir, fmt.Sprintf("cauldron-report-%s-%s", machine, stampNow.Format("20060102-150405")))
		var b strings.Builder
		if rep != nil {
			rep.WriteText(&b)
			b.WriteString("\nLog:\n")
			for _, e := range rep.Log {
				b.WriteString(e.String() + "\n")
			}
		} else if runErr != nil {
			b.WriteString("recovery failed before it started: " + runErr.Error() + "\n")
		}
		if err := os.WriteFile(base+".txt", []byte(b.String()), 0o644); err != nil {
			return savedMsg{err: err}
		}
		if rep != nil {
			j, err := json.MarshalIndent(rep, "", "  ")
			if err == nil {
				err = os.WriteFile(base+".json", j, 0o644)
			}
			if err != nil {
				return savedMsg{err: err}
			}
		}
		return savedMsg{path: base + ".txt"}
	})
}

// resultLines is the result text wrapped to the screen's width (scrolling counts screen lines).
func (m *Model) resultLines() []string {
	return strings.Split(wrapLines(strings.Join(m.res.text, "\n"), m.width), "\n")
}

func (m *Model) resultRowsShown() int {
	extra := 2 // the blank line and the "more" line
	if m.res.saving || m.res.countdown > 0 {
		extra += 2
	}
	if m.res.discarding {
		extra += 3
	}
	return max(m.bodyHeight()-len(m.resultRows())-extra, 2)
}

func (m *Model) viewResult() (string, string) {
	s, t := &m.res, m.theme
	var b strings.Builder
	n := m.resultRowsShown()
	text := m.resultLines()
	s.scroll = min(s.scroll, max(len(text)-1, 0))
	end := min(len(text), s.scroll+n)
	for i, l := range text[s.scroll:end] {
		if s.scroll+i == 0 {
			if m.result.RunErr == nil {
				l = t.Good(l)
			} else {
				l = t.Bad(l)
			}
		}
		b.WriteString(l + "\n")
	}
	if end < len(text) {
		b.WriteString(t.Dim(fmt.Sprintf("  ... %d more line(s): pgdn", len(text)-end)) + "\n")
	} else {
		b.WriteString("\n")
	}
	for i, r := range m.resultRows() {
		label := actionLabels[r]
		switch r {
		case "save":
			label = "Save the report and log to a folder (a USB stick)"
		case "discard":
			label = "Discard that recovery's journal and start this recovery over"
		}
		b.WriteString(t.row(i == s.sel, label) + "\n")
	}
	if s.discarding {
		fmt.Fprintf(&b, "\nThe other recovery can then no longer be resumed; this one overwrites its targets.\n"+
			"Type %s and press Enter to discard its journal and start: %s\n", ConfirmWord, s.discardIn.view(t, true, 12))
		return b.String(), "enter discard and start  esc cancel"
	}
	if s.saving {
		b.WriteString("\nFolder: " + s.savePath.view(t, true, 60) + "\n")
		return b.String(), "enter save  esc cancel"
	}
	if s.countdown > 0 {
		b.WriteString(fmt.Sprintf("\n%s in %d s (as chosen in the options); any key stays here.\n", actionLabels[s.auto], s.countdown))
	}
	return b.String(), "up/down choose  enter do it  pgup/pgdn scroll"
}
