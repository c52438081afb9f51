package qemu

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// feedConsole returns a console reading from a pipe, and the pipe's writing end.
func feedConsole(t *testing.T) (*Console, *io.PipeWriter, *strings.Builder) {
	t.Helper()
	r, w := io.Pipe()
	raw := &strings.Builder{}
	// raw is written before the text reaches the matcher, so reading it after a match is safe.
	c := NewConsole(r, raw, nil)
	t.Cleanup(func() { w.Close() })
	return c, w, raw
}

func write(t *testing.T, w io.Writer, s string) {
	t.Helper()
	if _, err := io.WriteString(w, s); err != nil {
		t.Fatal(err)
	}
}

func TestExpectSubmatchesInOrder(t *testing.T) {
	c, w, _ := feedConsole(t)
	go func() {
		io.WriteString(w, "[    1.0] booting\r\ncauldron: disk vda 1.0G QEMU serial=SER-A bus=virtio\r\n")
		io.WriteString(w, "cauldron: disk sda 2.0G ATA serial=SER-B bus=sata\r\ncauldron: ready uptime=3.42s\r\n")
	}()
	var serials []string
	for range 2 {
		m, err := c.Expect(`cauldron: disk (\S+) .* serial=(\S+)`, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		serials = append(serials, m[1]+"="+m[2])
	}
	if got := strings.Join(serials, ","); got != "vda=SER-A,sda=SER-B" {
		t.Fatalf("disks %q", got)
	}
	m, err := c.Expect(`^cauldron: ready uptime=([0-9.]+)s$`, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if m[1] != "3.42" {
		t.Fatalf("uptime %q", m[1])
	}
	// The next Expect starts after the ready line: the disk lines are behind it.
	if _, err := c.Expect(`cauldron: disk`, 200*time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("matched text twice or wrong error: %v", err)
	}
}

func TestExpectWaitsForTheWholeLine(t *testing.T) {
	c, w, _ := feedConsole(t)
	write(t, w, "cauldron: disk nvme0n1 8G QEMU serial=AB")
	done := make(chan []string)
	go func() {
		m, err := c.Expect(`serial=(\S+)`, 5*time.Second)
		if err != nil {
			t.Error(err)
			m = []string{"", "(error)"}
		}
		done <- m
	}()
	select {
	case m := <-done:
		t.Fatalf("matched a half line: %q", m)
	case <-time.After(300 * time.Millisecond):
	}
	write(t, w, "CD bus=nvme\n")
	if m := <-done; m[1] != "ABCD" {
		t.Fatalf("serial %q, want ABCD", m[1])
	}
}

func TestExpectPartialMatchesAPrompt(t *testing.T) {
	c, w, _ := feedConsole(t)
	write(t, w, "Welcome\n~/ # ")
	if _, err := c.ExpectPartial(`~/ # $`, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestExpectTimeoutCarriesTheTail(t *testing.T) {
	c, w, _ := feedConsole(t)
	write(t, w, "line one\nline two\n")
	start := time.Now()
	_, err := c.Expect(`never`, 300*time.Millisecond)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 5*time.Second {
		t.Fatalf("timed out after %v", d)
	}
	if !strings.Contains(err.Error(), "line two") || !strings.Contains(err.Error(), "/never/") {
		t.Fatalf("error lacks the pattern or the console tail: %v", err)
	}
}

func TestExpectEndsWhenTheConsoleCloses(t *testing.T) {
	r, w := io.Pipe()
	c := NewConsole(r, nil, func() error { return errors.New("QEMU exited: exit status 1; stderr: could not open disk") })
	write(t, w, "SeaBIOS\nNo bootable device.")
	w.Close()
	start := time.Now()
	_, err := c.Expect(`cauldron: ready`, time.Minute)
	if !errors.Is(err, ErrExited) {
		t.Fatalf("err %v, want ErrExited", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatal("Expect waited for its timeout after the console closed")
	}
	for _, want := range []string{"exit status 1", "could not open disk", "No bootable device."} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	select {
	case <-c.Done():
	default:
		t.Fatal("Done not closed")
	}
	// The partial last line is searched once the console has closed.
	r2, w2 := io.Pipe()
	c2 := NewConsole(r2, nil, nil)
	write(t, w2, "Press any key")
	w2.Close()
	if _, err := c2.Expect(`any key`, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestFailOnStopsTheWait(t *testing.T) {
	c, w, _ := feedConsole(t)
	if err := c.FailOn(`Kernel panic - not syncing`); err != nil {
		t.Fatal(err)
	}
	go io.WriteString(w, "[ 2.1] Kernel panic - not syncing: VFS: Unable to mount root fs\n")
	start := time.Now()
	_, err := c.Expect(`cauldron: ready`, time.Minute)
	if err == nil || !strings.Contains(err.Error(), "Unable to mount root fs") {
		t.Fatalf("err %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatal("waited for the timeout")
	}
}

func TestConsoleCleansEscapesKeepsRawLog(t *testing.T) {
	c, w, raw := feedConsole(t)
	// OVMF and GRUB draw with CSI sequences, set titles with OSC, and end lines with CR LF.
	in := "\x1b[2J\x1b[01;01H\x1b[=3h\x1b]0;title\x07BdsDxe: loading Boot0001\r\n\x1b(B\x1b[0mdone\x00\r\n"
	write(t, w, in)
	if _, err := c.Expect(`^done$`, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := c.Output(); got != "BdsDxe: loading Boot0001\ndone\n" {
		t.Fatalf("cleaned %q", got)
	}
	if raw.String() != in {
		t.Fatalf("raw log %q", raw.String())
	}
}

func TestEscapeSplitAcrossReads(t *testing.T) {
	c, w, _ := feedConsole(t)
	for _, part := range []string{"a\x1b", "[1", ";3", "1mb\n"} {
		write(t, w, part)
	}
	if _, err := c.Expect(`^ab$`, 5*time.Second); err != nil {
		t.Fatalf("%v (output %q)", err, c.Output())
	}
}

func TestBadPatternAndDefaultTimeout(t *testing.T) {
	c, _, _ := feedConsole(t)
	if _, err := c.Expect(`(`, time.Second); err == nil || !strings.Contains(err.Error(), "bad pattern") {
		t.Fatalf("err %v", err)
	}
	if DefaultExpectTimeout <= 0 || DefaultExpectTimeout > 10*time.Minute {
		t.Fatalf("DefaultExpectTimeout %v is not a sane bound", DefaultExpectTimeout)
	}
}

func TestTailAndSince(t *testing.T) {
	c, w, _ := feedConsole(t)
	var b strings.Builder
	for i := range 50 {
		b.WriteString("line " + strings.Repeat("x", i%3) + "\n")
	}
	b.WriteString("marker\nafter\n")
	write(t, w, b.String())
	if _, err := c.Expect(`marker`, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := c.Since(); got != "\nafter\n" {
		t.Fatalf("Since %q", got)
	}
	tail := c.Tail(3)
	if strings.Count(tail, "\n") != 2 || !strings.HasSuffix(tail, "    after") {
		t.Fatalf("Tail %q", tail)
	}
}
