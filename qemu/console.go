package qemu

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"time"
)

// DefaultExpectTimeout bounds an Expect called with a timeout of 0 or less: no wait is unbounded.
const DefaultExpectTimeout = 2 * time.Minute

// maxConsoleText bounds the console text kept in memory for matching; older text is dropped
// (the log file keeps everything).
const maxConsoleText = 16 << 20

// ErrTimeout is wrapped by the error of an Expect that timed out.
var ErrTimeout = errors.New("qemu: timed out")

// ErrExited is wrapped by the error of an Expect that gave up because the console closed (QEMU
// exited) before the pattern appeared.
var ErrExited = errors.New("qemu: console closed")

// Console reads a serial console and matches it expect-style. Matching runs on a cleaned copy of
// the text, without carriage returns, terminal escape sequences (OVMF and GRUB draw with them)
// or other control characters but tab and newline; the log gets the raw bytes.
//
// Each Expect starts where the previous match ended, so a sequence of Expects walks the output
// in order and never matches the same text twice.
type Console struct {
	mu      sync.Mutex
	text    []byte        // cleaned text, from absolute offset base
	base    int           // bytes dropped from the front of text
	pos     int           // absolute offset where the next Expect starts
	changed chan struct{} // closed and replaced whenever text grows or the console closes
	closed  bool
	done    chan struct{} // closed with the console
	reason  error         // why the console closed
	esc     escState
	fatal   []*regexp.Regexp
}

type escState int

const (
	escNone escState = iota
	escStart
	escCSI
	escOSC
	escOSCEnd
)

// NewConsole starts reading r in a goroutine, copying the raw bytes to raw (if not nil). When r
// ends, onEOF (if not nil) is called and its error becomes the reason the console closed (QEMU's
// exit status, say); otherwise the reason is io.EOF.
func NewConsole(r io.Reader, raw io.Writer, onEOF func() error) *Console {
	c := &Console{changed: make(chan struct{}), done: make(chan struct{})}
	go c.read(r, raw, onEOF)
	return c
}

func (c *Console) read(r io.Reader, raw io.Writer, onEOF func() error) {
	buf := make([]byte, 32<<10)
	var err error
	for {
		var n int
		n, err = r.Read(buf)
		if n > 0 {
			if raw != nil {
				// A failing log must not stop the matching; the log's owner sees its error.
				_, _ = raw.Write(buf[:n])
			}
			c.feed(buf[:n])
		}
		if err != nil {
			break
		}
	}
	reason := io.EOF
	if err != io.EOF {
		reason = err
	}
	if onEOF != nil {
		if e := onEOF(); e != nil {
			reason = e
		}
	}
	c.mu.Lock()
	c.closed, c.reason = true, reason
	c.notifyLocked()
	c.mu.Unlock()
	close(c.done)
}

// feed appends the cleaned form of p.
func (c *Console) feed(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, b := range p {
		switch c.esc {
		case escStart:
			switch b {
			case '[':
				c.esc = escCSI
			case ']':
				c.esc = escOSC
			case '(', ')', '#', '%':
				c.esc = escCSI // a charset designation: one more byte, taken as a final byte
			default:
				c.esc = escNone // a two-byte sequence such as ESC c
			}
			continue
		case escCSI:
			if b >= 0x40 && b <= 0x7e {
				c.esc = escNone
			}
			continue
		case escOSC:
			switch b {
			case 0x07:
				c.esc = escNone
			case 0x1b:
				c.esc = escOSCEnd
			}
			continue
		case escOSCEnd:
			c.esc = escNone
			continue
		}
		switch {
		case b == 0x1b:
			c.esc = escStart
		case b == '\n' || b == '\t' || b >= 0x20 && b != 0x7f:
			c.text = append(c.text, b)
		}
	}
	if len(c.text) > maxConsoleText {
		drop := len(c.text) - maxConsoleText/2
		c.text = append(c.text[:0], c.text[drop:]...)
		c.base += drop
	}
	c.notifyLocked()
}

func (c *Console) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// FailOn makes every later Expect fail at once when pattern appears in the output it searches
// (a kernel panic, say), instead of waiting for its timeout.
func (c *Console) FailOn(pattern string) error {
	re, err := regexp.Compile("(?m)" + pattern)
	if err != nil {
		return fmt.Errorf("qemu: bad pattern %q: %v", pattern, err)
	}
	c.mu.Lock()
	c.fatal = append(c.fatal, re)
	c.mu.Unlock()
	return nil
}

// Expect waits until pattern (a Go regular expression, with ^ and $ matching at line breaks)
// matches the complete lines written since the last match, and returns the match and its
// submatches. Only complete lines are searched, so that `serial=(\S+)` cannot match half a
// serial number that is still arriving; use ExpectPartial for a prompt that ends no line.
// timeout <= 0 means DefaultExpectTimeout.
func (c *Console) Expect(pattern string, timeout time.Duration) ([]string, error) {
	return c.expect(pattern, timeout, false)
}

// ExpectPartial is Expect, but also searches the line still being written.
func (c *Console) ExpectPartial(pattern string, timeout time.Duration) ([]string, error) {
	return c.expect(pattern, timeout, true)
}

func (c *Console) expect(pattern string, timeout time.Duration, partial bool) ([]string, error) {
	re, err := regexp.Compile("(?m)" + pattern)
	if err != nil {
		return nil, fmt.Errorf("qemu: bad pattern %q: %v", pattern, err)
	}
	if timeout <= 0 {
		timeout = DefaultExpectTimeout
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		c.mu.Lock()
		start := max(c.pos-c.base, 0)
		end := len(c.text)
		if !partial && !c.closed {
			// Up to and including the last newline.
			end = start + strings.LastIndexByte(string(c.text[start:]), '\n') + 1
		}
		region := c.text[start:end]
		if loc := re.FindSubmatchIndex(region); loc != nil {
			m := make([]string, len(loc)/2)
			for i := range m {
				if loc[2*i] >= 0 {
					m[i] = string(region[loc[2*i]:loc[2*i+1]])
				}
			}
			c.pos = c.base + start + loc[1]
			c.mu.Unlock()
			return m, nil
		}
		for _, f := range c.fatal {
			if loc := f.FindIndex(region); loc != nil {
				line := lineAround(region, loc[0])
				c.mu.Unlock()
				return nil, fmt.Errorf("qemu: %q appeared while waiting for /%s/; last console lines:\n%s", line, pattern, c.Tail(30))
			}
		}
		if c.closed {
			reason := c.reason
			c.mu.Unlock()
			return nil, fmt.Errorf("%w (%v) before /%s/ appeared; last console lines:\n%s", ErrExited, reason, pattern, c.Tail(30))
		}
		changed := c.changed
		c.mu.Unlock()
		select {
		case <-changed:
		case <-timer.C:
			return nil, fmt.Errorf("%w after %v waiting for /%s/; last console lines:\n%s", ErrTimeout, timeout, pattern, c.Tail(30))
		}
	}
}

func lineAround(b []byte, i int) string {
	s, e := i, i
	for s > 0 && b[s-1] != '\n' {
		s--
	}
	for e < len(b) && b[e] != '\n' {
		e++
	}
	return string(b[s:e])
}

// Output returns the cleaned console text read so far (at most the last 8 to 16 MiB).
func (c *Console) Output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.text)
}

// Since returns the cleaned text after the last match.
func (c *Console) Since() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.text[max(c.pos-c.base, 0):])
}

// Tail returns the last n lines of the cleaned text, each indented for error messages.
func (c *Console) Tail(n int) string {
	c.mu.Lock()
	text := string(c.text)
	c.mu.Unlock()
	text = strings.TrimRight(text, "\n")
	if text == "" {
		return "    (nothing on the console)"
	}
	lines := strings.Split(text, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    " + strings.Join(lines, "\n    ")
}

// Done is closed when the console has closed (QEMU exited and its output was read).
func (c *Console) Done() <-chan struct{} { return c.done }

// Closed reports whether the console has closed, and why.
func (c *Console) Closed() (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed, c.reason
}
