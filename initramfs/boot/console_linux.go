package boot

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// The technician may be at the serial console or at the screen and keyboard, whichever the
// kernel command line made /dev/console: the menu reads from every active console. Reads happen
// only while the menu waits (poll, then read), never in a background goroutine, so that a shell
// started from the menu gets every keystroke.

var (
	consoleOnce sync.Once
	consoleIn   []*os.File
	consoleBuf  map[int][]byte
)

func openConsoles() {
	consoleBuf = map[int][]byte{}
	consoleIn = []*os.File{os.Stdin}
	var in unix.Stat_t
	if unix.Fstat(int(os.Stdin.Fd()), &in) != nil {
		return
	}
	active, _ := os.ReadFile("/sys/class/tty/console/active")
	for _, name := range strings.Fields(string(active)) {
		var st unix.Stat_t
		path := "/dev/" + name
		if unix.Stat(path, &st) != nil || st.Rdev == in.Rdev {
			continue
		}
		if name == "tty0" {
			// tty0 is "the foreground virtual terminal": the same keyboard as tty1.
			if unix.Stat("/dev/tty1", &st) == nil && st.Rdev == in.Rdev {
				continue
			}
		}
		f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOCTTY, 0)
		if err == nil {
			consoleIn = append(consoleIn, f)
		}
	}
}

// readConsoleLine returns the first whole line typed on any console.
func readConsoleLine() (string, error) {
	consoleOnce.Do(openConsoles)
	for {
		var fds []unix.PollFd
		for _, f := range consoleIn {
			fds = append(fds, unix.PollFd{Fd: int32(f.Fd()), Events: unix.POLLIN})
		}
		if len(fds) == 0 {
			return "", errors.New("no console to read from")
		}
		if _, err := unix.Poll(fds, -1); err != nil {
			if err == unix.EINTR {
				continue
			}
			return "", err
		}
		alive := consoleIn[:0]
		var line string
		found := false
		for i, p := range fds {
			f := consoleIn[i]
			if p.Revents&unix.POLLIN != 0 && !found {
				buf := make([]byte, 1024)
				n, err := unix.Read(int(p.Fd), buf)
				if n > 0 {
					consoleBuf[i] = append(consoleBuf[i], buf[:n]...)
					if j := bytes.IndexByte(consoleBuf[i], '\n'); j >= 0 {
						line = strings.TrimRight(string(consoleBuf[i][:j]), "\r")
						consoleBuf[i] = consoleBuf[i][j+1:]
						found = true
					}
				}
				if n == 0 || (err != nil && err != unix.EAGAIN && err != unix.EINTR) {
					continue // end of input on this console: stop polling it
				}
			} else if p.Revents&(unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0 && p.Revents&unix.POLLIN == 0 {
				continue
			}
			alive = append(alive, f)
		}
		if len(alive) != len(consoleIn) {
			// Buffers are keyed by position; reset them when the set changes.
			consoleBuf = map[int][]byte{}
		}
		consoleIn = alive
		if found {
			return line, nil
		}
	}
}
