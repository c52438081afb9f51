package qemu

import (
	"bufio"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cauldron-dr/cauldron/internal/testenv"
)

// Strict reports whether tests must fail instead of skip when QEMU or firmware is missing: in CI
// (CI=true) and wherever the project's corpus is set up (CAULDRON_CORPUS), a missing
// prerequisite is a broken machine, not a reason to test less.
func Strict() bool { return testenv.Strict() }

// Require checks that the emulator, the firmware and (for pxe) QEMU's iPXE ROM are installed. If
// not, the test fails when Strict, and is skipped (saying what is missing) otherwise.
func Require(t testing.TB, fw Firmware, pxe bool) {
	t.Helper()
	var errs []error
	if _, err := FindQEMU(""); err != nil {
		errs = append(errs, err)
	}
	if _, err := FindFirmware(fw); err != nil {
		errs = append(errs, err)
	}
	if pxe {
		if _, err := FindPXEROM("virtio-net-pci"); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		if Strict() {
			t.Fatalf("QEMU boot test cannot run (CI or CAULDRON_CORPUS set, so this fails): %v", err)
		}
		t.Skipf("skipping QEMU boot test: %v", err)
	}
}

// StartT starts a VM for a test and fails the test if it cannot. QEMU is killed and the VM's
// files removed when the test ends (or its context is cancelled); if the test failed, the console
// log is kept and its path and last lines are logged. With CAULDRON_QEMU_VERBOSE=1 the console is
// also echoed line by line to t.Log as it arrives.
func StartT(t testing.TB, c Config) *VM {
	t.Helper()
	if c.Name == "" {
		c.Name = sanitizeName(t.Name())
	}
	v, err := Start(t.Context(), c)
	if err != nil {
		t.Fatalf("starting QEMU: %v", err)
	}
	if os.Getenv("CAULDRON_QEMU_VERBOSE") == "1" {
		echoLines(t, v)
	}
	t.Cleanup(func() {
		failed := t.Failed()
		if failed {
			t.Logf("VM %s: QEMU command:\n%s", v.Name(), v.CmdlineQuoted())
			if reqs := v.HTTPRequests(); len(reqs) > 0 {
				t.Logf("VM %s: HTTP requests: %s", v.Name(), strings.Join(reqs, "; "))
			}
			t.Logf("VM %s: console log kept at %s; last lines:\n%s", v.Name(), v.LogPath(), v.Tail(40))
		}
		if err := v.Close(failed); err != nil {
			t.Errorf("VM %s: cleanup: %v", v.Name(), err)
		}
	})
	return v
}

// echoLines logs the console log file's lines as they are written: it follows the file rather
// than the console so that matching is not disturbed.
func echoLines(t testing.TB, v *VM) {
	f, err := os.Open(v.LogPath())
	if err != nil {
		t.Logf("VM %s: cannot echo the console: %v", v.Name(), err)
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer f.Close()
		r := bufio.NewReader(f)
		var partial strings.Builder
		finishing := false
		for {
			line, err := r.ReadString('\n')
			partial.WriteString(line)
			if err == nil {
				t.Logf("%s| %s", v.Name(), strings.TrimRight(partial.String(), "\r\n"))
				partial.Reset()
				continue
			}
			if err != io.EOF || finishing {
				return
			}
			select {
			case <-v.Console().Done():
				finishing = true // one more pass reads what was written last
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	// Registered before StartT's cleanup, so it runs after it (cleanups run last-in first-out):
	// the console is closed by then, and the echo ends.
	t.Cleanup(func() { <-done })
}

// sanitizeName turns a test name into a VM name: letters, digits, '.', '_' and '-', at most 64.
func sanitizeName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			b[i] = '_'
		}
	}
	if len(b) > 64 {
		b = b[len(b)-64:]
	}
	if len(b) == 0 {
		return "vm"
	}
	return string(b)
}
