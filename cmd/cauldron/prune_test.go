package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPruneYoungAndTemp: prune keeps unneeded packs young enough to be a running capture's and
// says so; --keep-young 0 removes them; a killed writer's file in tmp/ goes once an hour old.
func TestPruneYoungAndTemp(t *testing.T) {
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	env := []string{"CAULDRON_PASSWORD=pw", "CAULDRON_REPOSITORY=" + repo}
	disk := makeDisk(t, dir, 8, 1)
	ok(t, env, "init")
	out := ok(t, env, "capture", "--machine", "web01", "--json", disk)
	var id struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(out), &id); err != nil {
		t.Fatal(err)
	}
	ok(t, env, "forget", "--machine", "web01", "--generation", id.ID[:12])
	leftover := filepath.Join(repo, "tmp", "data-ab-1")
	if err := os.WriteFile(leftover, []byte("half a pack"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * time.Hour)
	os.Chtimes(leftover, old, old)
	before := dataBytes(t, repo)

	out = ok(t, env, "prune")
	if !strings.Contains(out, "0 packs removed") || !strings.Contains(out, "unneeded pack(s) younger than 24h0m0s") ||
		!strings.Contains(out, "removed 1 file(s) that interrupted writers left in tmp/") {
		t.Fatalf("prune:\n%s", out)
	}
	if dataBytes(t, repo) != before {
		t.Fatal("prune removed young packs")
	}
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Fatalf("the leftover temporary file: %v", err)
	}
	out = ok(t, env, "prune", "--keep-young", "0")
	if strings.Contains(out, "younger than") || dataBytes(t, repo) != 0 {
		t.Fatalf("prune --keep-young 0 (data %d bytes):\n%s", dataBytes(t, repo), out)
	}
	_, errs, code := cauldron(t, env, "prune", "--keep-young", "-1h")
	oneLineError(t, "prune --keep-young -1h", errs, code, "--keep-young -1h0m0s: not a duration of 0 or more")
}

// TestPruneYoungOverServe: through cauldron serve, pack ages come from the server (its listing's
// modification times, its Last-Modified for prune's lock): young packs are kept, old ones go.
func TestPruneYoungOverServe(t *testing.T) {
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	env := []string{"CAULDRON_PASSWORD=pw"}
	disk := makeDisk(t, dir, 8, 2)
	ok(t, env, "init", "--repo", repo)
	url, _, stop := startServe(t, "--repo", repo, "--no-auth", "--listen", "127.0.0.1:0")
	defer stop()
	env = append(env, "CAULDRON_REPOSITORY="+url)
	var id struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(ok(t, env, "capture", "--machine", "web01", "--json", disk)), &id); err != nil {
		t.Fatal(err)
	}
	ok(t, env, "forget", "--machine", "web01", "--generation", id.ID[:12])
	before := dataBytes(t, repo)
	if out := ok(t, env, "prune"); !strings.Contains(out, "0 packs removed") || !strings.Contains(out, "younger than 24h0m0s") {
		t.Fatalf("prune through serve:\n%s", out)
	}
	if dataBytes(t, repo) != before {
		t.Fatal("prune through serve removed young packs")
	}
	// A day and more later, by the server's files.
	old := time.Now().Add(-25 * time.Hour)
	filepath.Walk(filepath.Join(repo, "data"), func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			os.Chtimes(p, old, old)
		}
		return nil
	})
	if out := ok(t, env, "prune"); strings.Contains(out, "younger than") || dataBytes(t, repo) != 0 {
		t.Fatalf("prune of old packs through serve (data %d bytes):\n%s", dataBytes(t, repo), out)
	}
}
