package tui

import (
	"os"

	"golang.org/x/sys/unix"
)

// windowSize asks the terminal for its size (TIOCGWINSZ).
func windowSize(f *os.File) (int, int, error) {
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return 0, 0, err
	}
	return int(ws.Col), int(ws.Row), nil
}

// setWindowSize tells the terminal its size (TIOCSWINSZ): a serial line reports 0x0, and
// everything that asks later (Bubble Tea on resize, a shell started afterwards) gets 80x24.
func setWindowSize(f *os.File, w, h int) error {
	return unix.IoctlSetWinsize(int(f.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Col: uint16(w), Row: uint16(h)})
}
