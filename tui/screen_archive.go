package tui

import (
	"errors"
	"fmt"
	"os"
	"strings"

	tea "charm.land/bubbletea/v2"
	"github.com/cauldron-dr/cauldron/restore/archive"
	"github.com/cauldron-dr/cauldron/tib"
)

// Screen 2, archive: where the repository is. Directories found on attached media are listed,
// a directory can be typed, and a network location: http(s):// (cauldron serve), s3://, nfs://
// or smb://, whose details (S3 keys and endpoint, SMB logon, the certificate check) a small form
// asks for. An encrypted repository asks for its password here.

type archiveScreen struct {
	loading bool
	found   []Archive
	err     error
	sel     int
	path    field
	url     field
	pw      field
	pwFor   string // the repository that asked for a password
	busy    string
	tried   bool // Env.Password was tried (once)

	// The details form of a network location, open while form is non-nil.
	form    []formField
	formSel int
	spec    archive.Spec // the location being opened (kept for the password prompt)
}

// formField is one line of the details form: a text field, or a yes/no toggle.
type formField struct {
	label  string
	f      field
	toggle bool
	on     bool
	hint   string
}

type archiveRow struct {
	kind  int // 0 a directory found, 1 the directory field, 2 the network field
	a     Archive
	given bool // Env.Repo, reached as Env.RepoSpec says
}

type archivesMsg struct {
	found []Archive
	err   error
}

type openedMsg struct {
	spec archive.Spec
	dir  string
	repo *tib.Repository
	gens []*tib.Generation
	err  error
	pw   bool // a password was given
}

// archFocused is the field with the keyboard: the password when one is asked, the form's
// current text field, else the directory or network field when its row is highlighted.
func (m *Model) archFocused() *field {
	s := &m.arch
	if s.pwFor != "" {
		return &s.pw
	}
	if s.form != nil {
		if ff := &s.form[s.formSel]; !ff.toggle {
			return &ff.f
		}
		return nil
	}
	rows := m.archiveRows()
	if s.busy == "" && s.sel < len(rows) {
		switch rows[s.sel].kind {
		case 1:
			return &s.path
		case 2:
			return &s.url
		}
	}
	return nil
}

func (m *Model) archiveRows() []archiveRow {
	var rows []archiveRow
	seen := map[string]bool{}
	if m.env.Repo != "" {
		if l, err := archive.ParseLocation(m.env.Repo); err == nil && l.Kind == archive.Path {
			seen[l.Path] = true
			rows = append(rows, archiveRow{given: true, a: Archive{Path: l.Path, Note: "given on the command line", Repository: IsRepository(l.Path)}})
		} else {
			// A network location is only known to hold a repository once it is opened (and one
			// that does not parse says why then).
			rows = append(rows, archiveRow{given: true, a: Archive{Path: m.env.Repo, Note: "given on the command line", Repository: true}})
		}
	}
	for _, a := range m.arch.found {
		if !seen[a.Path] {
			seen[a.Path] = true
			rows = append(rows, archiveRow{a: a})
		}
	}
	rows = append(rows, archiveRow{kind: 1}, archiveRow{kind: 2})
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

func (m *Model) openRepo(sp archive.Spec, pw []byte) tea.Cmd {
	what := "opening " + sp.Location.String() + " ..."
	switch sp.Location.Kind {
	case archive.NFS, archive.SMB:
		what = "mounting " + sp.Location.String() + " ..."
	case archive.HTTP, archive.S3:
		what = "connecting to " + sp.Location.String() + " ..."
	}
	m.arch.busy = what
	open, ctx := m.env.Open, m.ctx
	return safe(func() tea.Msg {
		r, dir, err := open(ctx, sp, pw)
		if err != nil {
			return openedMsg{spec: sp, err: err, pw: len(pw) > 0}
		}
		gens, err := r.Generations(ctx, "")
		return openedMsg{spec: sp, dir: dir, repo: r, gens: gens, err: err, pw: len(pw) > 0}
	})
}

// openDetails starts a network location: straight away when nothing more is needed, else
// through the details form.
func (m *Model) openDetails(loc archive.Location) tea.Cmd {
	s := &m.arch
	s.spec = archive.Spec{Location: loc}
	var form []formField
	switch loc.Kind {
	case archive.HTTP:
		if loc.HTTPS() {
			form = append(form, formField{label: "Skip the certificate check", toggle: true,
				hint: "only for a lab server with a self-signed certificate"})
		}
	case archive.S3:
		form = append(form,
			formField{label: "Endpoint", hint: "an S3-compatible server's URL; empty: Amazon S3", f: field{limit: 256}},
			formField{label: "Access key ID", hint: "filled in from $AWS_ACCESS_KEY_ID when it is set", f: field{value: os.Getenv("AWS_ACCESS_KEY_ID"), limit: 256}},
			formField{label: "Secret access key", f: field{value: os.Getenv("AWS_SECRET_ACCESS_KEY"), mask: true, limit: 256}},
			formField{label: "Skip the certificate check", toggle: true, hint: "https endpoints only: a lab server's self-signed certificate"})
	case archive.SMB:
		form = append(form,
			formField{label: "User", hint: "empty: a guest; DOMAIN\\user also works", f: field{limit: 256}},
			formField{label: "Password", f: field{mask: true, limit: 256}},
			formField{label: "Domain", hint: "optional", f: field{limit: 256}})
	}
	if form == nil {
		return m.openFirst(s.spec)
	}
	s.form, s.formSel = form, 0
	return nil
}

// submitForm turns the details form into the location's Spec and opens it.
func (m *Model) submitForm() tea.Cmd {
	s := &m.arch
	sp := archive.Spec{Location: s.spec.Location}
	get := func(label string) *formField {
		for i := range s.form {
			if s.form[i].label == label {
				return &s.form[i]
			}
		}
		return &formField{}
	}
	sp.InsecureTLS = get("Skip the certificate check").on
	switch sp.Location.Kind {
	case archive.S3:
		sp.Endpoint = strings.TrimSpace(get("Endpoint").f.value)
		if sp.Endpoint != "" && !strings.HasPrefix(sp.Endpoint, "http://") && !strings.HasPrefix(sp.Endpoint, "https://") {
			m.message = "!The endpoint is a URL: http://HOST:PORT or https://HOST:PORT."
			return nil
		}
		if sp.InsecureTLS && strings.HasPrefix(sp.Endpoint, "http://") {
			m.message = "!An http:// endpoint has no certificate to skip checking."
			return nil
		}
		sp.AccessKeyID = strings.TrimSpace(get("Access key ID").f.value)
		sp.SecretAccessKey = get("Secret access key").f.value
		if sp.AccessKeyID == "" || sp.SecretAccessKey == "" {
			m.message = "!Type the access key ID and the secret access key."
			return nil
		}
	case archive.SMB:
		sp.User = strings.TrimSpace(get("User").f.value)
		sp.Password = get("Password").f.value
		sp.Domain = strings.TrimSpace(get("Domain").f.value)
		if d, u, ok := strings.Cut(sp.User, `\`); ok && sp.Domain == "" {
			sp.Domain, sp.User = d, u
		}
	}
	s.form = nil
	m.message = ""
	return m.openFirst(sp)
}

func (m *Model) updateForm(msg tea.KeyPressMsg) tea.Cmd {
	s := &m.arch
	ff := &s.form[s.formSel]
	switch {
	case m.isKey(msg, keys.Back):
		s.form, m.message = nil, ""
	case m.isKey(msg, keys.Up), m.isKey(msg, keys.ShiftTab):
		s.formSel = max(s.formSel-1, 0)
	case m.isKey(msg, keys.Down), m.isKey(msg, keys.Tab):
		s.formSel = min(s.formSel+1, len(s.form)-1)
	case m.isKey(msg, keys.Enter):
		if s.formSel < len(s.form)-1 {
			s.formSel++
			return nil
		}
		return m.submitForm()
	case ff.toggle && (m.isKey(msg, keys.Space) || msg.String() == "y" || msg.String() == "n"):
		switch msg.String() {
		case "y":
			ff.on = true
		case "n":
			ff.on = false
		default:
			ff.on = !ff.on
		}
	case !ff.toggle:
		ff.f.handle(msg.String(), msg.Text)
	}
	return nil
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
		where := msg.spec.Location.String()
		switch {
		case errors.Is(msg.err, tib.ErrNeedPassword):
			s.pwFor, s.spec, s.pw = where, msg.spec, field{mask: true, limit: 256}
			m.message = "The archive is encrypted: type its password."
		case errors.Is(msg.err, tib.ErrWrongPassword):
			s.pwFor, s.spec, s.pw = where, msg.spec, field{mask: true, limit: 256}
			m.message = "!Wrong password for " + where + ": type it again."
		case msg.err != nil:
			s.pwFor = ""
			m.message = "!" + msg.err.Error()
		case len(msg.gens) == 0:
			s.pwFor = ""
			m.message = "!" + where + " holds no generations: nothing to recover from."
		default:
			s.pwFor, s.pw = "", field{mask: true}
			m.repo, m.repoPath, m.repoDir, m.gens = msg.repo, where, msg.dir, msg.gens
			m.repoSpec = msg.spec
			// Typed secrets stay in memory only as long as the wizard needs them.
			m.repoSpec.SecretAccessKey, m.repoSpec.Password = "", ""
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
				return m.openRepo(s.spec, pw)
			case m.isKey(msg, keys.Back):
				s.pwFor, m.message = "", ""
			default:
				s.pw.handle(msg.String(), msg.Text)
			}
			return nil
		}
		if s.form != nil {
			return m.updateForm(msg)
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
				var sp archive.Spec
				if r.given {
					sp = m.env.RepoSpec
				}
				l, err := archive.ParseLocation(r.a.Path)
				if err != nil {
					m.message = "!" + err.Error()
					return nil
				}
				sp.Location = l
				return m.openFirst(sp)
			case 1:
				p := strings.TrimSpace(s.path.value)
				if p == "" {
					m.message = "!Type the repository's directory, such as /mnt/backup/repo."
					return nil
				}
				l, err := archive.ParseLocation(p, archive.Path)
				if err != nil {
					m.message = "!" + err.Error()
					return nil
				}
				return m.openFirst(archive.Spec{Location: l})
			case 2:
				u := strings.TrimSpace(s.url.value)
				if u == "" || !strings.Contains(u, "://") {
					m.message = "!Type a network location: http(s)://SERVER:PORT/PATH, s3://BUCKET/PREFIX, nfs://SERVER/EXPORT/PATH or smb://SERVER/SHARE/PATH."
					return nil
				}
				l, err := archive.ParseLocation(u, archive.HTTP, archive.S3, archive.NFS, archive.SMB)
				if err != nil {
					m.message = "!" + err.Error()
					return nil
				}
				return m.openDetails(l)
			}
		case msg.String() == "r" && m.archFocused() == nil:
			s.found, s.err = nil, nil
			return m.enterArchive()
		default:
			if f := m.archFocused(); f != nil {
				f.handle(msg.String(), msg.Text)
			}
		}
	}
	return nil
}

// openFirst opens a repository without a password (or with the one given to the program, once).
func (m *Model) openFirst(sp archive.Spec) tea.Cmd {
	s := &m.arch
	if !s.tried && len(m.env.Password) > 0 {
		s.tried = true
		return m.openRepo(sp, m.env.Password)
	}
	return m.openRepo(sp, nil)
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
			line = "Directory: " + s.path.view(t, s.sel == i && s.pwFor == "" && s.form == nil && s.busy == "", 50)
		case 2:
			line = "Network:   " + s.url.view(t, s.sel == i && s.pwFor == "" && s.form == nil && s.busy == "", 50)
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
	if s.form != nil {
		b.WriteString("\n" + s.spec.Location.String() + "\n")
		for i, ff := range s.form {
			var line string
			if ff.toggle {
				line = fmt.Sprintf("%-27s %s", ff.label+":", t.check(ff.on))
			} else {
				line = fmt.Sprintf("%-27s %s", ff.label+":", ff.f.view(t, i == s.formSel, 40))
			}
			b.WriteString(t.row(i == s.formSel, line) + "\n")
		}
		if h := s.form[s.formSel].hint; h != "" {
			b.WriteString("\n" + t.Dim(h) + "\n")
		}
		if s.form[s.formSel].toggle {
			return b.String(), "space toggle  enter next/open  esc cancel"
		}
		return b.String(), "up/down field  enter next/open  esc cancel"
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
