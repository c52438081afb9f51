package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A manifest that cannot be read, through the commands: generations lists the rest and names
// it, verify names the remedy, prune refuses, repair generations --dry-run names it, forget
// removes it by ID without --machine, and the repository is clean again.
func TestDamagedManifestCommands(t *testing.T) {
	dir := t.TempDir()
	img := makeDisk(t, dir, 24, 3)
	repo := filepath.Join(dir, "repo")
	env := []string{"CAULDRON_PASSWORD="}
	ok(t, env, "init", "--repo", repo, "--no-password")
	ok(t, env, "capture", "--repo", repo, "--machine", "web01", img)
	ok(t, env, "capture", "--repo", repo, "--machine", "db01", img)
	var gens []struct{ ID, Machine string }
	if err := json.Unmarshal([]byte(ok(t, env, "generations", "--repo", repo, "--json", "--machine", "web01")), &gens); err != nil || len(gens) != 1 {
		t.Fatalf("generations --json: %v", err)
	}
	bad := gens[0].ID
	p := filepath.Join(repo, "generations", bad)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 1
	os.WriteFile(p, b, 0o644)

	out, errs, code := cauldron(t, env, "generations", "--repo", repo)
	if code != 0 || !strings.Contains(out, "db01") || !strings.Contains(out, "DAMAGED") || !strings.Contains(errs, "cauldron forget --generation "+bad) {
		t.Fatalf("generations with a damaged manifest: exit %d\n%s\n%s", code, out, errs)
	}
	ok(t, env, "restore-disk", "--repo", repo, "--machine", "db01", "--disk", "disk0", "--to", filepath.Join(dir, "db.img"))
	// web01's newest (and only) generation is the damaged one: restoring it by ID says so, a
	// capture of web01 works and says that it chose among the readable generations.
	if _, errs, code := cauldron(t, env, "restore-disk", "--repo", repo, "--machine", "web01", "--generation", bad[:12], "--disk", "disk0", "--to", filepath.Join(dir, "web.img")); code == 0 || !strings.Contains(errs, "manifest cannot be read") || !strings.Contains(errs, "forget --generation "+bad) {
		t.Fatalf("restore of the damaged generation: exit %d\n%s", code, errs)
	}
	if _, errs, code := cauldron(t, env, "capture", "--repo", repo, "--machine", "web01", img); code != 0 || !strings.Contains(errs, bad[:8]) {
		t.Fatalf("capture of web01 with its newest manifest damaged: exit %d\n%s", code, errs)
	}
	if out, _, code := cauldron(t, env, "verify", "--repo", repo); code != 3 || !strings.Contains(out, "cauldron forget --generation "+bad) {
		t.Fatalf("verify: exit %d\n%s", code, out)
	}
	if out, _, code := cauldron(t, env, "verify", "--repo", repo, "--machine", "web01", "--generation", bad[:12]); code != 3 || !strings.Contains(out, "cauldron forget --generation "+bad) {
		t.Fatalf("verify of the damaged generation: exit %d\n%s", code, out)
	}
	if _, errs, code := cauldron(t, env, "prune", "--repo", repo); code == 0 || !strings.Contains(errs, bad[:8]) || !strings.Contains(errs, "repair generations") {
		t.Fatalf("prune: exit %d\n%s", code, errs)
	}
	if out := ok(t, env, "repair", "generations", "--repo", repo, "--dry-run"); !strings.Contains(out, "would remove generation "+bad) {
		t.Fatalf("repair generations --dry-run:\n%s", out)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatal("the dry run removed the manifest")
	}
	if out := ok(t, env, "forget", "--repo", repo, "--generation", bad[:12]); !strings.Contains(out, "forgot damaged generation "+bad) {
		t.Fatalf("forget:\n%s", out)
	}
	ok(t, env, "prune", "--repo", repo)
	if out := ok(t, env, "verify", "--repo", repo, "--read-data"); !strings.Contains(out, "no damage found") {
		t.Fatalf("verify after forget:\n%s", out)
	}
	if out := ok(t, env, "repair", "generations", "--repo", repo); !strings.Contains(out, "nothing to repair") {
		t.Fatalf("repair generations on a sound repository:\n%s", out)
	}
}
