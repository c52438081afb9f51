// Package corpus gives tests the shared real-world sample files (Windows hives, BCD stores, INF
// files) that live beside the project in ../shared/corpus and are never copied into it.
//
// $CAULDRON_CORPUS names the folder; CI sets it, and then a missing file fails the test. Without
// it the folder beside the checkout is used and a missing file skips the test (a developer
// without the corpus can still run everything else).
package corpus

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// Dir returns the corpus folder and whether it was named by $CAULDRON_CORPUS (strict mode).
func Dir() (string, bool) {
	if d := os.Getenv("CAULDRON_CORPUS"); d != "" {
		return d, true
	}
	_, file, _, _ := runtime.Caller(0) // …/internal/corpus/corpus.go in the checkout
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "shared", "corpus"), false
}

// Path returns the path of the corpus file rel (e.g. "hives/hivex-minimal"), failing the test
// when it is missing in strict mode and skipping it otherwise.
func Path(t testing.TB, rel string) string {
	t.Helper()
	dir, strict := Dir()
	p := filepath.Join(dir, rel)
	if _, err := os.Stat(p); err != nil {
		if strict {
			t.Fatalf("corpus file %s is missing (CAULDRON_CORPUS=%s): %v", rel, dir, err)
		}
		t.Skipf("corpus file %s is missing: %v", rel, err)
	}
	return p
}

var (
	xzMu    sync.Mutex
	xzCache = map[string]string{}
	xzDir   string
)

// File is Path, with .xz files decompressed (once per test process, into a temporary folder that
// Cleanup removes). The result must not be modified: use Copy for that.
func File(t testing.TB, rel string) string {
	t.Helper()
	p := Path(t, rel)
	if !strings.HasSuffix(rel, ".xz") {
		return p
	}
	xzMu.Lock()
	defer xzMu.Unlock()
	if out, ok := xzCache[rel]; ok {
		return out
	}
	if _, err := exec.LookPath("xz"); err != nil {
		t.Fatalf("xz is missing: install it with make deps (package xz-utils)")
	}
	if xzDir == "" {
		d, err := os.MkdirTemp("", "cauldron-corpus")
		if err != nil {
			t.Fatal(err)
		}
		xzDir = d
	}
	out := filepath.Join(xzDir, strings.ReplaceAll(strings.TrimSuffix(rel, ".xz"), "/", "_"))
	data, err := exec.Command("xz", "-dc", p).Output()
	if err != nil {
		t.Fatalf("xz -dc %s: %v", p, err)
	}
	if err := os.WriteFile(out, data, 0o644); err != nil {
		t.Fatal(err)
	}
	xzCache[rel] = out
	return out
}

// Copy is File copied into the test's temporary folder, free to edit.
func Copy(t testing.TB, rel string) string {
	t.Helper()
	b, err := os.ReadFile(File(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), strings.TrimSuffix(filepath.Base(rel), ".xz"))
	if err := os.WriteFile(out, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// Cleanup removes the decompressed files; call it from TestMain after m.Run.
func Cleanup() {
	xzMu.Lock()
	defer xzMu.Unlock()
	if xzDir != "" {
		os.RemoveAll(xzDir)
		xzDir, xzCache = "", map[string]string{}
	}
}
