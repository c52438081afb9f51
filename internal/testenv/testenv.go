// Package testenv answers tests' questions about the machine they run on: whether missing
// prerequisites must fail (CI and corpus runs, where `make deps` promised them) or may skip (a
// developer's machine), and whether the tools a test needs are installed.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// Strict reports whether a missing prerequisite is a broken environment (CI, or a run with
// CAULDRON_CORPUS set) rather than a reason to skip.
func Strict() bool {
	return os.Getenv("CI") != "" || os.Getenv("CAULDRON_CORPUS") != ""
}

// SkipOrFail fails the test when Strict and skips it otherwise.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if Strict() {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// NeedTools checks that every tool is on PATH (SkipOrFail otherwise).
func NeedTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			SkipOrFail(t, "%s is not installed (make deps installs it)", tool)
		}
	}
}

// NeedRoot checks that the test runs as root (loop devices, mounts).
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		SkipOrFail(t, "this test needs root (loop devices and mounts)")
	}
}
