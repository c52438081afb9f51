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
)

// Screen 8, result: success, or the error with what to do next; the report (already saved in
// the archive by the engine) can be saved to a folder too (a USB stick); then reboot, power off,
// a shell or leaving the wizard, as the place it runs in offers.

type resultScreen struct {
	sel       int
	text      []string
	scroll    int
	saving    bool
	savePath  field
	countdown int
	auto      string // the on-success action the countdown leads to
}

type savedMsg struct {
	path string
	err  error
}

var actionLabels = map[string]string{
	"reboot":   "Reboot",
	"poweroff": "Power off",
	"shell":    "Open a shell",
	"quit":     "Leave the wizard",
}

func (s *resultScreen) focused() *field {
	if s.saving {
		return &s.savePath
	}
	return nil
}

func (m *Model) enterResult() tea.Cmd {
	m.res = resultScreen{}
	var b strings.Builder
	rep, err := m.result.Report, m.result.RunErr
	switch {
	case err == nil:
		b.WriteString("The recovery succeeded.\n")
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
	return append([]string{"save"}, m.env.Actions...)
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
	case tea.KeyPressMsg:
		if s.countdown > 0 {
			s.countdown = 0
			m.message = "Staying on this screen."
			return nil
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
		if r == "save" {
			label = "Save the report and log to a folder (a USB stick)"
		}
		b.WriteString(t.row(i == s.sel, label) + "\n")
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
