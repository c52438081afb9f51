package tui

import (
	"context"
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"github.com/cauldron-dr/cauldron/restore"
	"github.com/cauldron-dr/cauldron/restore/archive"
	"github.com/cauldron-dr/cauldron/tib"
)

// screenID names the screens in the order the technician meets them.
type screenID int

const (
	scrNetwork screenID = iota
	scrArchive
	scrMachine
	scrGeneration
	scrDisks
	scrOptions
	scrSummary
	scrProgress
	scrResult
)

// step numbers and titles as the header shows them ("step 3 of 8"); machine and generation are
// one step in two screens.
var screenInfo = map[screenID]struct {
	step  int
	title string
}{
	scrNetwork:    {1, "Network"},
	scrArchive:    {2, "Archive"},
	scrMachine:    {3, "Machine"},
	scrGeneration: {3, "Generation"},
	scrDisks:      {4, "Disk mapping"},
	scrOptions:    {5, "Options"},
	scrSummary:    {6, "Summary and confirmation"},
	scrProgress:   {7, "Recovery in progress"},
	scrResult:     {8, "Result"},
}

const steps = 8

// The keys every screen understands. Vi keys are aliases of the arrows except while a text field
// has the focus (then they are letters).
var keys = struct {
	Up, Down, Left, Right, PgUp, PgDown, Enter, Back, Tab, ShiftTab, Help, Space, Quit key.Binding
}{
	Up:       key.NewBinding(key.WithKeys("up", "k"), key.WithHelp("up/k", "move up")),
	Down:     key.NewBinding(key.WithKeys("down", "j"), key.WithHelp("down/j", "move down")),
	Left:     key.NewBinding(key.WithKeys("left", "h"), key.WithHelp("left/h", "previous choice")),
	Right:    key.NewBinding(key.WithKeys("right", "l"), key.WithHelp("right/l", "next choice")),
	PgUp:     key.NewBinding(key.WithKeys("pgup", "b"), key.WithHelp("pgup/b", "previous page")),
	PgDown:   key.NewBinding(key.WithKeys("pgdown", "f"), key.WithHelp("pgdn/f", "next page")),
	Enter:    key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "choose / continue")),
	Back:     key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "back")),
	Tab:      key.NewBinding(key.WithKeys("tab"), key.WithHelp("tab", "next field")),
	ShiftTab: key.NewBinding(key.WithKeys("shift+tab"), key.WithHelp("shift+tab", "previous field")),
	Help:     key.NewBinding(key.WithKeys("?", "f1"), key.WithHelp("?", "help")),
	Space:    key.NewBinding(key.WithKeys("space", " "), key.WithHelp("space", "toggle")),
	Quit:     key.NewBinding(key.WithKeys("ctrl+c"), key.WithHelp("ctrl+c", "leave the wizard")),
}

// Model is the wizard: the shared state of the recovery being put together and one state per
// screen. It is a tea.Model; tests drive it with key messages and run its commands themselves.
type Model struct {
	env   Env
	ctx   context.Context
	theme theme
	now   func() time.Time
	// tick schedules the next clock tick; tests replace it (nil: no ticking) and send ticks.
	tick func(d time.Duration) tea.Cmd
	// send delivers a message from another goroutine (tea.Program.Send): the engine's events.
	send func(tea.Msg)

	width, height int
	screen        screenID
	history       []screenID
	help          bool
	confirmQuit   bool
	message       string // one status line under the screen (errors, hints)

	// What has been chosen so far.
	repo     *tib.Repository
	repoPath string       // where the repository is, as shown (a directory or a URL)
	repoDir  string       // its directory on this machine ("" over HTTP or S3): its disk is protected
	repoSpec archive.Spec // how it was reached, for the exported kickstart
	gens     []*tib.Generation
	machine  string
	gen      *tib.Generation
	plan     *restore.Plan

	net  netScreen
	arch archiveScreen
	mach machineScreen
	gsel genScreen
	disk diskScreen
	opt  optionsScreen
	sum  summaryScreen
	prog progressScreen
	res  resultScreen

	result Result
	done   bool
	panic  *PanicError
}

// New returns the wizard on its first screen. ascii chooses the plain look.
func New(ctx context.Context, env Env, ascii bool) *Model {
	if env.Network == nil {
		env.Network = HostNetwork{}
	}
	if env.Archives == nil {
		roots := env.MediaRoots
		if roots == nil {
			roots = DefaultMediaRoots
		}
		env.Archives = func(ctx context.Context) ([]Archive, error) { return FindArchives(ctx, roots) }
	}
	if env.Run == nil {
		env.Run = restore.Run
	}
	if env.Open == nil {
		env.Open = openArchive
	}
	if len(env.Actions) == 0 {
		env.Actions = []string{"quit"}
	}
	m := &Model{env: env, ctx: ctx, theme: newTheme(ascii), now: time.Now, width: 80, height: 24,
		tick: func(d time.Duration) tea.Cmd { return tea.Tick(d, func(t time.Time) tea.Msg { return tickMsg(t) }) }}
	m.send = func(tea.Msg) {}
	m.opt = newOptions()
	return m
}

// SetSend sets how messages from the engine's goroutine reach the model (tea.Program.Send).
func (m *Model) SetSend(send func(tea.Msg)) { m.send = send }

// Result is how the wizard ended (valid once it has quit).
func (m *Model) Result() Result { return m.result }

// Done reports whether the wizard has ended.
func (m *Model) Done() bool { return m.done }

// Screen is the current screen's title (tests and logs).
func (m *Model) Screen() string { return screenInfo[m.screen].title }

// Messages the model's commands deliver.
type (
	tickMsg time.Time
	// panicMsg carries a panic caught in a command's goroutine.
	panicMsg struct {
		value any
		stack string
	}
)

// Init starts the first screen.
func (m *Model) Init() tea.Cmd {
	return m.enter(scrNetwork)
}

// Update is the state machine: one message in, the new state and the commands to run.
func (m *Model) Update(msg tea.Msg) (_ tea.Model, cmd tea.Cmd) {
	defer func() {
		if r := recover(); r != nil {
			cmd = m.crashed(r, string(debug.Stack()))
		}
	}()
	return m, m.update(msg)
}

func (m *Model) update(msg tea.Msg) tea.Cmd {
	if m.panic != nil {
		return tea.Quit // View panicked: end here, Run reports it
	}
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		if msg.Width > 0 && msg.Height > 0 {
			m.width, m.height = msg.Width, msg.Height
		}
		return nil
	case panicMsg:
		return m.crashed(msg.value, msg.stack)
	case tea.KeyPressMsg:
		return m.key(msg)
	case tea.PasteMsg:
		if f := m.focusedField(); f != nil {
			f.handle("", strings.ReplaceAll(msg.Content, "\n", ""))
		}
		return nil
	}
	return m.screenUpdate(msg)
}

// key handles what every screen shares (help, quit) and passes the rest on.
func (m *Model) key(k tea.KeyPressMsg) tea.Cmd {
	if m.help {
		m.help = false // any key closes the help
		return nil
	}
	if m.confirmQuit {
		m.confirmQuit = false
		if k.String() == "y" || k.String() == "Y" {
			return m.quit("quit")
		}
		m.message = ""
		return nil
	}
	if key.Matches(k, keys.Quit) && m.screen != scrProgress {
		if m.screen == scrResult {
			return m.quit("quit")
		}
		m.confirmQuit = true
		m.message = "Leave the wizard? Nothing has been written. y = leave, any other key = stay"
		return nil
	}
	// ? is a character inside a text field (passwords may have one); F1 is help everywhere.
	if key.Matches(k, keys.Help) && (m.focusedField() == nil || k.String() == "f1") {
		m.help = true
		return nil
	}
	return m.screenUpdate(k)
}

// isKey tells a navigation key from a character typed into a focused text field: while a field
// has the keyboard, j, k, h, l and space are letters.
func (m *Model) isKey(k tea.KeyPressMsg, b key.Binding) bool {
	if m.focusedField() != nil && k.Text != "" {
		return false
	}
	return key.Matches(k, b)
}

func (m *Model) screenUpdate(msg tea.Msg) tea.Cmd {
	// A command's result belongs to the screen that started it, wherever the technician is now.
	switch msg.(type) {
	case nicsMsg, netDoneMsg:
		return m.updateNetwork(msg)
	case archivesMsg, openedMsg:
		return m.updateArchive(msg)
	case targetsMsg:
		return m.updateDisks(msg)
	case planMsg, exportedMsg:
		return m.updateSummary(msg)
	case EventMsg, runDoneMsg:
		return m.updateProgress(msg)
	case savedMsg, discardedMsg:
		return m.updateResult(msg)
	}
	switch m.screen {
	case scrNetwork:
		return m.updateNetwork(msg)
	case scrArchive:
		return m.updateArchive(msg)
	case scrMachine:
		return m.updateMachine(msg)
	case scrGeneration:
		return m.updateGeneration(msg)
	case scrDisks:
		return m.updateDisks(msg)
	case scrOptions:
		return m.updateOptions(msg)
	case scrSummary:
		return m.updateSummary(msg)
	case scrProgress:
		return m.updateProgress(msg)
	case scrResult:
		return m.updateResult(msg)
	}
	return nil
}

// focusedField is the text field that has the keyboard, if any.
func (m *Model) focusedField() *field {
	switch m.screen {
	case scrNetwork:
		return m.net.focused()
	case scrArchive:
		return m.archFocused()
	case scrSummary:
		return m.sum.focused()
	case scrResult:
		return m.res.focused()
	}
	return nil
}

// goTo moves forward to a screen (remembered for Back). In the plain look (serial consoles) each
// new screen is drawn whole: a redraw of only the changed characters leaves a terminal that
// lost a byte, or a console log read by a script, with half-overwritten words.
func (m *Model) goTo(s screenID) tea.Cmd {
	m.history = append(m.history, m.screen)
	m.message = ""
	cmd := m.enter(s)
	if m.theme.ascii {
		return tea.Batch(tea.ClearScreen, cmd)
	}
	return cmd
}

// back returns to the previous screen; on the first one it asks whether to leave.
func (m *Model) back() tea.Cmd {
	if len(m.history) == 0 {
		m.confirmQuit = true
		m.message = "Leave the wizard? Nothing has been written. y = leave, any other key = stay"
		return nil
	}
	s := m.history[len(m.history)-1]
	m.history = m.history[:len(m.history)-1]
	m.message = ""
	m.screen = s
	return nil
}

// enter shows a screen and starts what it needs.
func (m *Model) enter(s screenID) tea.Cmd {
	m.screen = s
	switch s {
	case scrNetwork:
		return m.enterNetwork()
	case scrArchive:
		return m.enterArchive()
	case scrMachine:
		return m.enterMachine()
	case scrGeneration:
		return m.enterGeneration()
	case scrDisks:
		return m.enterDisks()
	case scrOptions:
		return nil
	case scrSummary:
		return m.enterSummary()
	case scrProgress:
		return m.enterProgress()
	case scrResult:
		return m.enterResult()
	}
	return nil
}

func (m *Model) quit(action string) tea.Cmd {
	m.result.Action = action
	m.result.Plan = m.plan
	m.done = true
	return tea.Quit
}

// crashed records a panic (logged by Run), and ends the wizard.
func (m *Model) crashed(v any, stack string) tea.Cmd {
	if m.panic == nil {
		m.panic = &PanicError{Value: v, Stack: stack}
	}
	m.done = true
	if m.prog.cancel != nil {
		m.prog.cancel() // a recovery must not go on with nobody watching it
	}
	return tea.Quit
}

// safe wraps a command so that a panic in its goroutine becomes a message instead of killing the
// boot environment.
func safe(c func() tea.Msg) tea.Cmd {
	return func() (msg tea.Msg) {
		defer func() {
			if r := recover(); r != nil {
				msg = panicMsg{r, string(debug.Stack())}
			}
		}()
		return c()
	}
}

// View draws the frame: header, the screen, the status line and the keys.
func (m *Model) View() (v tea.View) {
	defer func() {
		if r := recover(); r != nil {
			// View has no way to quit; record the panic for Run and show it. The next message
			// (a key, a tick) ends the program through Update.
			if m.panic == nil {
				m.panic = &PanicError{Value: r, Stack: string(debug.Stack())}
			}
			m.done = true
			v = tea.NewView("cauldron: internal error in the wizard: " + fmt.Sprint(r) + "\npress any key")
		}
	}()
	v = tea.NewView(m.Render())
	v.AltScreen = true
	return v
}

// Render is the screen as text (the view's content; golden tests compare it).
func (m *Model) Render() string {
	t := m.theme
	w, h := m.width, m.height
	info := screenInfo[m.screen]
	header := fmt.Sprintf("Cauldron recovery  step %d of %d: %s", info.step, steps, info.title)
	rule := strings.Repeat(t.rule, max(w, 10))
	var body string
	var hints string
	if m.help {
		body = m.helpText()
		hints = "any key: close the help"
	} else {
		body, hints = m.screenView()
		hints += "  ? help"
	}
	// header, rule, body, rule, message, hints
	bodyH := max(h-5, 3)
	msg := m.message
	if strings.HasPrefix(msg, "!") {
		msg = t.Bad(msg[1:])
	}
	out := t.Title(header) + "\n" + t.Dim(rule) + "\n" +
		padLines(clip(wrapLines(body, w), w, bodyH), bodyH) + "\n" + t.Dim(rule) + "\n" + clip(msg, w, 1) + "\n" + clip(t.Dim(hints), w, 1)
	if t.ascii {
		out = toASCII(out)
	}
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	return strings.Join(lines, "\n")
}

func padLines(s string, n int) string {
	c := strings.Count(s, "\n") + 1
	if c < n {
		s += strings.Repeat("\n", n-c)
	}
	return s
}

// screenView returns the current screen's body and its key hints.
func (m *Model) screenView() (string, string) {
	switch m.screen {
	case scrNetwork:
		return m.viewNetwork()
	case scrArchive:
		return m.viewArchive()
	case scrMachine:
		return m.viewMachine()
	case scrGeneration:
		return m.viewGeneration()
	case scrDisks:
		return m.viewDisks()
	case scrOptions:
		return m.viewOptions()
	case scrSummary:
		return m.viewSummary()
	case scrProgress:
		return m.viewProgress()
	case scrResult:
		return m.viewResult()
	}
	return "", ""
}

// bodyHeight is how many lines a screen's body may use.
func (m *Model) bodyHeight() int { return max(m.height-5, 3) }

// listWindow returns the first row to show so that row sel is visible in n rows.
func listWindow(sel, rows, n int) int {
	if n <= 0 || rows <= n {
		return 0
	}
	start := sel - n/2
	return max(0, min(start, rows-n))
}
