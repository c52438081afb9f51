package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// With every index file deleted, restore-disk still works and warns nothing false; verify names
// `cauldron repair index` (exit 3); repair index says what it wrote; verify is clean afterwards.
func TestRepairIndexCommand(t *testing.T) {
	dir := t.TempDir()
	img := makeDisk(t, dir, 12, 7)
	repo := filepath.Join(dir, "repo")
	env := []string{"CAULDRON_PASSWORD=pw"}
	ok(t, env, "init", "--repo", repo)
	ok(t, env, "capture", "--repo", repo, "--machine", "web01", img)
	idx, _ := filepath.Glob(filepath.Join(repo, "index", "*"))
	if len(idx) == 0 {
		t.Fatal("no index file after a capture")
	}
	for _, f := range idx {
		os.Remove(f)
	}
	// A junk file with a valid-looking name beside them.
	junk := filepath.Join(repo, "index", strings.Repeat("0f", 32))
	os.WriteFile(junk, []byte("junk"), 0o644)

	ok(t, env, "restore-disk", "--repo", repo, "--machine", "web01", "--disk", "disk0", "--to", filepath.Join(dir, "back.img"))
	out, errs, code := cauldron(t, env, "verify", "--repo", repo)
	if code != 3 || !strings.Contains(out, "cauldron repair index") || strings.Contains(out, "prune removes") {
		t.Fatalf("verify with the index deleted: exit %d\n%s%s", code, out, errs)
	}
	out = ok(t, env, "repair", "index", "--repo", repo)
	if !strings.Contains(out, "damaged: index file index/"+strings.Repeat("0f", 32)) || !strings.Contains(out, "removed 1 old index file(s) (1 damaged)") {
		t.Fatalf("repair index output:\n%s", out)
	}
	if _, err := os.Stat(junk); !os.IsNotExist(err) {
		t.Fatalf("the junk index file is still there: %v", err)
	}
	if out := ok(t, env, "verify", "--repo", repo, "--read-data"); !strings.Contains(out, "no damage found") {
		t.Fatalf("verify after repair:\n%s", out)
	}
}
