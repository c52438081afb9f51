// Package plainfile reads files named on the command line or in a kickstart that must be
// ordinary files. A named pipe given by mistake would block open(2) until a writer comes —
// forever, deaf to Ctrl-C, since the Go runtime cannot interrupt that open — so it is refused
// from its stat, before anything is opened.
package plainfile

import (
	"fmt"
	"io"
	"os"
)

// Check refuses anything at path but a regular file, naming what it is.
func Check(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Mode().IsRegular() {
		return nil
	}
	return fmt.Errorf("%s is %s, not a regular file", path, Describe(fi.Mode()))
}

// Read reads a regular file of at most max bytes (max <= 0: no limit).
func Read(path string, max int64) ([]byte, error) {
	if err := Check(path); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if max <= 0 {
		return io.ReadAll(f)
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err == nil && int64(len(b)) > max {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, max)
	}
	return b, err
}

// Describe says what kind of file a mode is, for messages: "a named pipe (FIFO)", "a socket", …
func Describe(m os.FileMode) string {
	switch {
	case m&os.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeCharDevice != 0:
		return "a character device"
	case m&os.ModeDevice != 0:
		return "a block device"
	case m.IsDir():
		return "a directory"
	}
	return "not a regular file (" + m.Type().String() + ")"
}
