package tui

import (
	"context"
	"fmt"
	"strings"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/cauldron-dr/cauldron/restore"
)

// Screen 7, progress: the engine's events as they come — each stage's state, each disk's bytes,
// rate and ETA, the elapsed time and the tail of the log. Cancelling asks first; the engine's
// journal lets the same recovery resume later.

type progressScreen struct {
	started       time.Time
	cancel        context.CancelFunc
	stages        map[string]*stageState
	disks         []string
	disk          map[string]*diskState
	log           []string
	confirmCancel bool
	cancelling    bool
	finished      bool
}

type stageState struct {
	status string // running, done, skipped, failed
	msg    string
}

type diskState struct {
	stage        string
	bytes, total int64
	rate         float64
	eta          time.Duration
	note         string
}

// EventMsg carries one engine event into the program (the Events callback sends it).
type EventMsg restore.Event

type runDoneMsg struct {
	rep *restore.Report
	err error
}

const logKeep = 200

func (m *Model) enterProgress() tea.Cmd {
	ctx, cancel := context.WithCancel(m.ctx)
	m.prog = progressScreen{started: m.now(), cancel: cancel, stages: map[string]*stageState{}, disk: map[string]*diskState{}}
	for _, d := range m.plan.Disks {
		m.prog.disks = append(m.prog.disks, d.Source)
		m.prog.disk[d.Source] = &diskState{note: "waiting"}
	}
	run, plan, send, inoc := m.env.Run, m.plan, m.send, m.env.Inoculate
	start := safe(func() tea.Msg {
		rep, err := run(ctx, plan, restore.RunOptions{Events: func(e restore.Event) { send(EventMsg(e)) }, Inoculate: inoc})
		return runDoneMsg{rep, err}
	})
	return tea.Batch(start, m.tick(time.Second))
}

func (m *Model) updateProgress(msg tea.Msg) tea.Cmd {
	s := &m.prog
	switch msg := msg.(type) {
	case tickMsg:
		if s.finished {
			return nil
		}
		return m.tick(time.Second)
	case EventMsg:
		s.apply(restore.Event(msg))
		return nil
	case runDoneMsg:
		s.finished = true
		if s.cancel != nil {
			s.cancel()
		}
		m.result.Report, m.result.RunErr = msg.rep, msg.err
		m.history = nil // the recovery ran: there is no going back to its summary
		return m.enter(scrResult)
	case tea.KeyPressMsg:
		if s.confirmCancel {
			s.confirmCancel = false
			if msg.String() == "y" || msg.String() == "Y" {
				s.cancelling = true
				m.message = "Cancelling: the engine stops at its next step..."
				s.cancel()
			} else {
				m.message = ""
			}
			return nil
		}
		if s.cancelling {
			return nil
		}
		switch msg.String() {
		case "esc", "c", "ctrl+c":
			s.confirmCancel = true
			m.message = "!Cancel the recovery? The disks are left half-written; running it again resumes it. y = cancel, any other key = go on"
		}
	}
	return nil
}

func (s *progressScreen) apply(e restore.Event) {
	if e.Kind != restore.EventProgress {
		s.log = append(s.log, e.String())
		if len(s.log) > logKeep {
			s.log = s.log[len(s.log)-logKeep:]
		}
	}
	if e.Disk != "" {
		d := s.disk[e.Disk]
		if d == nil {
			d = &diskState{}
			s.disk[e.Disk] = d
			s.disks = append(s.disks, e.Disk)
		}
		switch e.Kind {
		case restore.EventStart:
			d.stage, d.bytes, d.total, d.rate, d.eta, d.note = e.Stage, 0, 0, 0, 0, strings.TrimSpace(e.Message)
		case restore.EventProgress:
			d.stage, d.bytes, d.total, d.rate, d.eta = e.Stage, e.Bytes, e.Total, e.Rate, e.ETA
		case restore.EventDone:
			d.note = e.Stage + " done: " + e.Message
			if d.total > 0 {
				d.bytes = d.total
			}
		case restore.EventSkip:
			d.note = e.Stage + ": " + e.Message
		case restore.EventError:
			d.note = e.Stage + " FAILED: " + e.Message
		}
		if e.Kind == restore.EventProgress && e.Stage != "" && s.stages[e.Stage] == nil {
			s.stages[e.Stage] = &stageState{status: "running"}
		}
		return
	}
	st := s.stages[e.Stage]
	if st == nil {
		st = &stageState{}
		s.stages[e.Stage] = st
	}
	switch e.Kind {
	case restore.EventStart:
		st.status = "running"
	case restore.EventDone:
		st.status, st.msg = "done", e.Message
	case restore.EventSkip:
		st.status, st.msg = "skipped", e.Message
	case restore.EventError:
		st.status, st.msg = "FAILED", e.Message
	case restore.EventInfo:
		st.msg = e.Message
	}
}

func (m *Model) viewProgress() (string, string) {
	s, t := &m.prog, m.theme
	var b strings.Builder
	el := m.now().Sub(s.started).Round(time.Second)
	fmt.Fprintf(&b, "Recovering %s from generation %.12s onto %d disk(s).  Elapsed %s\n\n", m.plan.Machine, m.plan.Generation, len(m.plan.Disks), clockDuration(el))
	for _, name := range restore.Stages {
		st := s.stages[name]
		status, msg := "-", ""
		if st != nil {
			status, msg = st.status, firstLine(st.msg)
		}
		switch status {
		case "done":
			status = t.Good(status)
		case "FAILED":
			status = t.Bad(status)
		case "running":
			status = t.Key(status)
		}
		fmt.Fprintf(&b, "  %-10s %-8s %s\n", name, status, msg)
	}
	b.WriteString("\n")
	barW := max(min(m.width-40, 40), 10)
	for _, name := range s.disks {
		d := s.disk[name]
		if d.total > 0 {
			pct := 100 * float64(d.bytes) / float64(d.total)
			fmt.Fprintf(&b, "  %-6s %-7s %s %5.1f%%\n", name, d.stage, t.bar(d.bytes, d.total, barW), pct)
			line := fmt.Sprintf("         %s of %s", human(d.bytes), human(d.total))
			if d.rate > 0 {
				line += fmt.Sprintf(", %s/s", human(int64(d.rate)))
			}
			if d.eta > 0 && d.bytes < d.total {
				line += ", ETA " + clockDuration(d.eta.Round(time.Second))
			}
			if d.note != "" && d.bytes >= d.total {
				line += "; " + firstLine(d.note)
			}
			b.WriteString(line + "\n")
		} else {
			fmt.Fprintf(&b, "  %-6s %s\n", name, firstLine(d.note))
		}
	}
	b.WriteString("\nLog:\n")
	used := strings.Count(wrapLines(b.String(), m.width), "\n")
	n := max(m.bodyHeight()-used, 1)
	tail := s.log[max(len(s.log)-n, 0):]
	for _, l := range tail {
		b.WriteString("  " + l + "\n")
	}
	if s.cancelling {
		return b.String(), "cancelling..."
	}
	return b.String(), "esc/c cancel the recovery"
}

// clockDuration shows a duration as H:MM:SS.
func clockDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	s := int(d.Seconds())
	return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
