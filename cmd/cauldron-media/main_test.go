package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// bin is cauldron-media built from this package, alone in a folder of its own.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cauldron-media-bin")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "cauldron-media")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building cauldron-media: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// run starts the binary at path and returns stdout, stderr and the exit status.
func run(t *testing.T, path string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(path, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return out.String(), errb.String(), ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return out.String(), errb.String(), 0
}

// TestArguments: cauldron-media wants --out, or --prefetch alone; mistakes are named before
// anything is downloaded or written.
func TestArguments(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "--out is required"},
		{[]string{"--prefetch", "--out", dir}, "not both"},
		{[]string{"--prefetch", "--offline", "--cache", dir}, "exclude each other"},
		{[]string{"build-media", "--out", dir}, "unknown command"},
	} {
		_, stderr, code := run(t, bin, c.args...)
		if code == 0 || !strings.Contains(stderr, c.want) {
			t.Errorf("cauldron-media %s: exit %d, stderr %q; want a failure saying %q", strings.Join(c.args, " "), code, stderr, c.want)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("a refused cauldron-media wrote into %s: %v", dir, ents)
	}
}

// TestCauldronBinary: without --cauldron the image gets the cauldron next to cauldron-media, and
// with none there nothing is built; cauldron-media itself is refused as the image's program.
// Each refusal comes before the output folder is made.
func TestCauldronBinary(t *testing.T) {
	dir := t.TempDir()
	out, cache := filepath.Join(dir, "media"), filepath.Join(dir, "cache")
	sibling := filepath.Join(filepath.Dir(bin), "cauldron")
	check := func(want string, args ...string) {
		t.Helper()
		args = append([]string{"--out", out, "--cache", cache, "--offline"}, args...)
		_, stderr, code := run(t, bin, args...)
		if code == 0 || !strings.Contains(stderr, want) {
			t.Errorf("cauldron-media %s: exit %d, stderr %q; want a failure saying %q", strings.Join(args, " "), code, stderr, want)
		}
		if _, err := os.Stat(out); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("a refused cauldron-media made %s (%v)", out, err)
		}
	}

	check("none next to cauldron-media (" + sibling)

	// A dynamically linked file as the sibling: refused for being dynamic, which shows the
	// sibling is the one taken.
	ls, err := os.ReadFile("/bin/ls")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sibling, ls, 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(sibling)
	check(sibling + " is dynamically linked")

	// --cauldron wins over the sibling.
	check("/nonexistent/cauldron", "--cauldron", "/nonexistent/cauldron")

	// cauldron-media, under another name too, is not a program to start at boot.
	renamed := filepath.Join(dir, "cauldron")
	if err := os.WriteFile(renamed, mustRead(t, bin), 0o755); err != nil {
		t.Fatal(err)
	}
	check(renamed+" is cauldron-media", "--cauldron", renamed)
}

// TestBuildWithSibling builds the media as a technician does after make build: cauldron-media
// with a static cauldron (the real one) next to it, offline from the cache make prefetch filled.
func TestBuildWithSibling(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the boot media: not in -short")
	}
	dir := t.TempDir()
	media, cauldron := filepath.Join(dir, "cauldron-media"), filepath.Join(dir, "cauldron")
	if err := os.WriteFile(media, mustRead(t, bin), 0o755); err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", cauldron, "../cauldron")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building a static cauldron: %v\n%s", err, b)
	}
	fi, err := os.Stat(cauldron)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	stdout, stderr, code := run(t, media, "--out", out, "--offline")
	if code != 0 {
		t.Fatalf("cauldron-media --out %s --offline: exit %d\n%s%s", out, code, stdout, stderr)
	}
	if want := fmt.Sprintf("cauldron   %s  %d bytes", cauldron, fi.Size()); !strings.Contains(stdout, want) {
		t.Errorf("the summary does not name the sibling cauldron (%q):\n%s", want, stdout)
	}
	for _, f := range []string{"cauldron.iso", "vmlinuz", "initrd.img", "pxe/boot.ipxe"} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
