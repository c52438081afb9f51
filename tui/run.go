package tui

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/colorprofile"
	"golang.org/x/term"
)

// Console says where the wizard draws and reads; the zero value is the process's terminal.
type Console struct {
	// In and Out are the terminal; nil: standard input and output, or /dev/tty when they are
	// not a terminal (u-root's init hands uinit a pipe as standard output when console= is set).
	In, Out *os.File
	// ASCII forces the plain look ("" decides from TERM and the console, "1" plain, "0" not).
	ASCII string
	// LogDir is where a caught panic's details are written; "" = the temporary directory.
	LogDir string
}

// ConsoleInfo is what Run found out about the terminal (also for the boot log).
type ConsoleInfo struct {
	Device      string // the terminal's device, such as /dev/ttyS0
	Serial      bool
	ZeroWindow  bool // the terminal reported 0x0 and was set to 80x24
	Width       int
	Height      int
	Term        string
	ASCII       bool
	RenderToTTY bool // standard output was not a terminal: the wizard drew on /dev/tty
}

// Run sets up the console and runs the wizard until the technician leaves it or a recovery
// ends. It never panics: a panic inside the wizard is caught, written to a log file, and
// returned as a *PanicError after the terminal has been restored, so that the caller (the boot
// environment) can show it and offer a shell.
func Run(ctx context.Context, env Env, c Console) (res Result, err error) {
	var m *Model
	defer func() {
		if r := recover(); r != nil {
			pe := &PanicError{Value: r, Stack: string(debug.Stack())}
			pe.Log = writePanicLog(c.LogDir, pe)
			res, err = Result{Action: "shell"}, pe
		}
	}()
	in, out, info, cleanup, err := openConsole(c)
	if err != nil {
		return Result{}, err
	}
	defer cleanup()
	m = New(ctx, env, info.ASCII)
	m.width, m.height = info.Width, info.Height
	opts := []tea.ProgramOption{tea.WithContext(ctx), tea.WithInput(in), tea.WithOutput(out),
		tea.WithWindowSize(info.Width, info.Height)}
	if info.ASCII {
		// No colour and no styles: what a vt100 or a serial-over-LAN window shows cleanly.
		opts = append(opts, tea.WithColorProfile(colorprofile.ASCII))
	}
	p := tea.NewProgram(m, opts...)
	m.SetSend(p.Send)
	_, runErr := p.Run()
	if m.panic != nil {
		m.panic.Log = writePanicLog(c.LogDir, m.panic)
		return Result{Action: "shell"}, m.panic
	}
	if runErr != nil && !m.done {
		if errors.Is(runErr, tea.ErrProgramPanic) {
			pe := &PanicError{Value: runErr}
			return Result{Action: "shell"}, pe
		}
		if errors.Is(runErr, tea.ErrInterrupted) || errors.Is(runErr, tea.ErrProgramKilled) {
			// The program was stopped from outside (a signal, the context): stop a running
			// recovery too, and say so.
			if m.prog.cancel != nil {
				m.prog.cancel()
			}
			return m.result, fmt.Errorf("the wizard was stopped: %w", runErr)
		}
		return m.result, runErr
	}
	return m.result, nil
}

// openConsole finds the terminal, fixes a 0x0 window, and decides the look.
func openConsole(c Console) (in, out *os.File, info ConsoleInfo, cleanup func(), err error) {
	cleanup = func() {}
	in, out = c.In, c.Out
	if in == nil {
		in = os.Stdin
	}
	if out == nil {
		out = os.Stdout
	}
	if !term.IsTerminal(int(out.Fd())) || !term.IsTerminal(int(in.Fd())) {
		// Standard output is a pipe on the boot console: draw on the controlling terminal,
		// which is the console itself.
		tty, terr := os.OpenFile("/dev/tty", os.O_RDWR, 0)
		if terr != nil && term.IsTerminal(int(in.Fd())) {
			// No controlling terminal (a process started without one): the terminal that
			// standard input is, opened again for writing.
			tty, terr = os.OpenFile(ttyName(in), os.O_RDWR|syscall.O_NOCTTY, 0)
		}
		if terr != nil {
			return nil, nil, info, cleanup, fmt.Errorf("the wizard needs a terminal: standard input or output is not one, and /dev/tty cannot be opened: %w", terr)
		}
		if !term.IsTerminal(int(out.Fd())) {
			out, info.RenderToTTY = tty, true
		}
		if !term.IsTerminal(int(in.Fd())) {
			in = tty
		}
		cleanup = func() { tty.Close() }
	}
	info.Device = ttyName(out)
	info.Serial = isSerial(info.Device)
	w, h, werr := windowSize(out)
	if werr == nil && (w == 0 || h == 0) {
		// A serial line knows no window size; Bubble Tea draws nothing in a 0x0 window.
		info.ZeroWindow = true
		w, h = 80, 24
		_ = setWindowSize(out, w, h)
	}
	if werr != nil || w <= 0 || h <= 0 {
		w, h = 80, 24
	}
	info.Width, info.Height = w, h
	info.Term = os.Getenv("TERM")
	switch c.ASCII {
	case "1", "true", "yes":
		info.ASCII = true
	case "0", "false", "no":
		info.ASCII = false
	default:
		info.ASCII = PlainTerminal(info.Term, info.Serial, info.ZeroWindow)
	}
	return in, out, info, cleanup, nil
}

// PlainTerminal decides the plain ASCII look: dumb and old terminals, the Linux console type on
// a serial line (a BMC's serial-over-LAN window says TERM=linux but is no Linux console), and
// any terminal that does not know its own size (a serial line).
func PlainTerminal(termName string, serial, zeroWindow bool) bool {
	t := strings.ToLower(termName)
	switch {
	case t == "" || t == "dumb" || t == "unknown":
		return true
	case strings.HasPrefix(t, "vt1") || strings.HasPrefix(t, "vt2") || t == "ansi":
		return true
	case serial || zeroWindow:
		return true
	}
	return false
}

// isSerial reports whether a terminal device is a serial line (or the console routed to one).
func isSerial(dev string) bool {
	base := filepath.Base(dev)
	for _, p := range []string{"ttyS", "ttyAMA", "ttyUSB", "ttyACM", "hvc", "ttysclp", "ttyPS"} {
		if strings.HasPrefix(base, p) {
			return true
		}
	}
	if base == "console" {
		// /dev/console is whichever console the kernel names last on its command line.
		b, err := os.ReadFile("/sys/class/tty/console/active")
		if err != nil {
			return false
		}
		f := strings.Fields(string(b))
		return len(f) > 0 && isSerial("/dev/"+f[len(f)-1])
	}
	return false
}

func ttyName(f *os.File) string {
	if p, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", f.Fd())); err == nil {
		return p
	}
	return f.Name()
}

// writePanicLog writes a panic's value and stack to a file and returns its path ("" if none).
func writePanicLog(dir string, pe *PanicError) string {
	if dir == "" {
		dir = os.TempDir()
	}
	path := filepath.Join(dir, fmt.Sprintf("cauldron-wizard-panic-%s.log", time.Now().UTC().Format("20060102-150405")))
	text := fmt.Sprintf("cauldron wizard: panic: %v\n\n%s", pe.Value, pe.Stack)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		return ""
	}
	return path
}
