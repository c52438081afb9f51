package tui

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	tea "charm.land/bubbletea/v2"
	"github.com/cauldron-dr/cauldron/tib"
)

// Screen 2, archive: where the repository is. Directories found on attached media are listed,
// a path can be typed (a local disk, a USB stick, an NFS or SMB share mounted from the shell),
// and the network kinds the kickstart knows are shown as what they are in this build: not
// available. An encrypted repository asks for its password here.

type archiveScreen struct {
	loading bool
	found   []Archive
	err     error
	sel     int
	path    field
	pw      field
	pwFor   string // the repository that asked for a password
	busy    string
	tried   bool // Env.Password was tried (once)
}

// unavailable are the archive kinds this build cannot open, shown so that nobody looks for them.
var unavailable = []struct{ name, why string }{
	{"HTTP(S) server", "not available in this build: the archive has one backend so far, a directory"},
	{"S3 bucket", "not available in this build: the archive has one backend so far, a directory"},
	{"NFS or SMB share", "not mounted by this build: mount the share from the shell, then type its path"},
}

type archiveRow struct {
	kind int // 0 a directory, 1 the path field, 2 unavailable
	a    Archive
	i    int // unavailable index
}

type archivesMsg struct {
	found []Archive
	err   error
}

type openedMsg struct {
	path string
	repo *tib.Repository
	gens []*tib.Generation
	err  error
	pw   bool // a password was given
}

// archFocused is the field with the keyboard: the password when one is asked, else the path
// when its row is highlighted.
func (m *Model) archFocused() *field {
	s := &m.arch
	if s.pwFor != "" {
		return &s.pw
	}
	rows := m.archiveRows()
	if s.busy == "" && s.sel < len(rows) && rows[s.sel].kind == 1 {
		return &s.path
	}
	return nil
}

func (m *Model) archiveRows() []archiveRow {
	var rows []archiveRow
	seen := map[string]bool{}
	if m.env.Repo != "" {
		p := filepath.Clean(m.env.Repo)
		seen[p] = true
		rows = append(rows, archiveRow{a: Archive{Path: p, Note: "given on the command line", Repository: IsRepository(p)}})
	}
	for _, a := range m.arch.found {
		if !seen[a.Path] {
			seen[a.Path] = true
			rows = append(rows, archiveRow{a: a})
		}
	}
	rows = append(rows, archiveRow{kind: 1})
	for i := range unavailable {
		rows = append(rows, archiveRow{kind: 2, i: i})
	}
	return rows
}

func (m *Model) enterArchive() tea.Cmd {
	s := &m.arch
	if s.found == nil && s.err == nil {
		s.loading = true
		find, ctx := m.env.Archives, m.ctx
		return safe(func() tea.Msg {
			f, err := find(ctx)
			return archivesMsg{f, err}
		})
	}
	return nil
}

func (m *Model) openRepo(path string, pw []byte) tea.Cmd {
	m.arch.busy = "opening " + path + " ..."
	open, ctx := m.env.Open, m.ctx
	return safe(func() tea.Msg {
		r, err := open(ctx, path, pw)
		if err != nil {
			return openedMsg{path: path, err: err, pw: len(pw) > 0}
		}
		gens, err := r.Generations(ctx, "")
		return openedMsg{path: path, repo: r, gens: gens, err: err, pw: len(pw) > 0}
	})
}

func (m *Model) updateArchive(msg tea.Msg) tea.Cmd {
	s := &m.arch
	switch msg := msg.(type) {
	case archivesMsg:
		s.loading, s.found, s.err = false, msg.found, msg.err
		if s.found == nil {
			s.found = []Archive{}
		}
		return nil
	case openedMsg:
		s.busy = ""
		switch {
		case errors.Is(msg.err, tib.ErrNeedPassword):
			s.pwFor, s.pw = msg.path, field{mask: true, limit: 256}
			m.message = "The archive is encrypted: type its password."
		case errors.Is(msg.err, tib.ErrWrongPassword):
			s.pwFor, s.pw = msg.path, field{mask: true, limit: 256}
			m.message = "!Wrong password for " + msg.path + ": type it again."
		case msg.err != nil:
			s.pwFor = ""
			m.message = "!" + msg.err.Error()
		case len(msg.gens) == 0:
			s.pwFor = ""
			m.message = "!" + msg.path + " holds no generations: nothing to recover from."
		default:
			s.pwFor, s.pw = "", field{mask: true}
			m.repo, m.repoPath, m.gens = msg.repo, msg.path, msg.gens
			m.machine, m.gen = "", nil
			return m.goTo(scrMachine)
		}
		return nil
	case tea.KeyPressMsg:
		if s.busy != "" {
			return nil
		}
		if s.pwFor != "" {
			switch {
			case m.isKey(msg, keys.Enter):
				if s.pw.value == "" {
					m.message = "!Type the password (an empty one opens nothing)."
					return nil
				}
				pw := []byte(s.pw.value)
				s.pw.value = ""
				return m.openRepo(s.pwFor, pw)
			case m.isKey(msg, keys.Back):
				s.pwFor, m.message = "", ""
			default:
				s.pw.handle(msg.String(), msg.Text)
			}
			return nil
		}
		rows := m.archiveRows()
		switch {
		case m.isKey(msg, keys.Up):
			s.sel = max(s.sel-1, 0)
		case m.isKey(msg, keys.Down), m.isKey(msg, keys.Tab):
			s.sel = min(s.sel+1, len(rows)-1)
		case m.isKey(msg, keys.ShiftTab):
			s.sel = max(s.sel-1, 0)
		case m.isKey(msg, keys.Back):
			return m.back()
		case m.isKey(msg, keys.Enter):
			r := rows[s.sel]
			switch r.kind {
			case 0:
				return m.openFirst(r.a.Path)
			case 1:
				p := strings.TrimSpace(s.path.value)
				if p == "" {
					m.message = "!Type the repository's directory, such as /mnt/backup/repo."
					return nil
				}
				if !filepath.IsAbs(p) {
					m.message = "!Give an absolute path (starting with /)."
					return nil
				}
				return m.openFirst(filepath.Clean(p))
			default:
				u := unavailable[r.i]
				m.message = "!" + u.name + ": " + u.why + "."
			}
		case msg.String() == "r" && rows[s.sel].kind != 1:
			s.found, s.err = nil, nil
			return m.enterArchive()
		default:
			if rows[s.sel].kind == 1 {
				s.path.handle(msg.String(), msg.Text)
			}
		}
	}
	return nil
}

// openFirst opens a repository without a password (or with the one given to the program, once).
func (m *Model) openFirst(path string) tea.Cmd {
	s := &m.arch
	if !s.tried && len(m.env.Password) > 0 {
		s.tried = true
		return m.openRepo(path, m.env.Password)
	}
	return m.openRepo(path, nil)
}

func (m *Model) viewArchive() (string, string) {
	s, t := &m.arch, m.theme
	var b strings.Builder
	b.WriteString("Where is the backup archive (the repository)?\n\n")
	rows := m.archiveRows()
	for i, r := range rows {
		var line string
		switch r.kind {
		case 0:
			what := "repository"
			if !r.a.Repository {
				what = "no repository found here"
			}
			if r.a.Note != "" {
				what += ", " + r.a.Note
			}
			line = r.a.Path + "  (" + what + ")"
		case 1:
			line = "Directory: " + s.path.view(t, s.sel == i && s.pwFor == "" && s.busy == "", 50)
		case 2:
			line = t.Dim(fmt.Sprintf("%-17s %s", unavailable[r.i].name, "(not available in this build)"))
		}
		b.WriteString(t.row(i == s.sel, line) + "\n")
	}
	switch {
	case s.loading:
		b.WriteString("\nLooking for archives on attached disks and USB sticks...\n")
	case s.err != nil:
		b.WriteString("\n" + t.Warn("Looking for archives failed: "+s.err.Error()) + "\n")
	case len(s.found) == 0 && m.env.Repo == "":
		b.WriteString("\nNo archive was found on mounted media; type its directory.\n")
	}
	if s.pwFor != "" {
		b.WriteString("\nPassword for " + s.pwFor + ": " + s.pw.view(t, true, 40) + "\n")
		return b.String(), "enter open  esc cancel"
	}
	if s.busy != "" {
		b.WriteString("\n" + s.busy + "\n")
	}
	return b.String(), "up/down choose  enter open  r rescan  esc back"
}
