package main

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// randomFile writes n random bytes (a disk image without a partition table: captured whole).
func randomFile(t *testing.T, path string, n int, seed uint64) []byte {
	t.Helper()
	b := make([]byte, n)
	rng := rand.New(rand.NewPCG(seed, 5))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

// oneLineError fails unless a command failed with one line on stderr that holds every want.
func oneLineError(t *testing.T, what string, errs string, code int, want ...string) {
	t.Helper()
	if code == 0 || strings.Count(strings.TrimSpace(errs), "\n") > 0 {
		t.Errorf("%s: exit %d, stderr %q; want one line of error", what, code, errs)
		return
	}
	for _, w := range want {
		if !strings.Contains(errs, w) {
			t.Errorf("%s: stderr %q lacks %q", what, errs, w)
		}
	}
}

// TestRepoRelativePath: --repo takes a relative directory as every other path is taken, from
// the working directory, in every command; a missing one is named as given and as the absolute
// path it means.
func TestRepoRelativePath(t *testing.T) {
	dir := t.TempDir()
	env := []string{"CAULDRON_PASSWORD=", "CAULDRON_REPOSITORY="}
	randomFile(t, filepath.Join(dir, "disk.img"), 1<<20, 1)
	run := func(args ...string) string {
		t.Helper()
		out, errs, code := cauldronIn(t, dir, env, args...)
		if code != 0 {
			t.Fatalf("cauldron %s (in %s): exit %d\n%s%s", strings.Join(args, " "), dir, code, out, errs)
		}
		return out
	}
	abs := filepath.Join(dir, "archive")
	if out := run("init", "--repo", "archive", "--no-password"); !strings.Contains(out, "at "+abs+"\n") {
		t.Errorf("init names where it made the repository: %q", out)
	}
	run("capture", "--repo", "archive", "--machine", "web01", "disk.img")
	for _, repo := range []string{"archive", "./archive", "archive/", "sub/../archive"} {
		if out := run("generations", "--repo", repo); !strings.Contains(out, "web01") {
			t.Errorf("generations --repo %s: %q", repo, out)
		}
	}
	run("verify", "--repo", "archive")
	run("replication", "status", "--repo", "archive")
	// $CAULDRON_REPOSITORY is read the same way.
	if out, errs, code := cauldronIn(t, dir, []string{"CAULDRON_PASSWORD=", "CAULDRON_REPOSITORY=archive"}, "generations"); code != 0 || !strings.Contains(out, "web01") {
		t.Errorf("CAULDRON_REPOSITORY=archive: exit %d\n%s%s", code, out, errs)
	}

	missing := filepath.Join(dir, "missing")
	for _, args := range [][]string{
		{"generations", "--repo", "missing"},
		{"capture", "--repo", "missing", "--machine", "web01", "disk.img"},
		{"serve", "--repo", "missing", "--listen", "127.0.0.1:0"},
	} {
		_, errs, code := cauldronIn(t, dir, env, args...)
		oneLineError(t, strings.Join(args, " "), errs, code, "missing ("+missing+"): no repository", "cauldron init --repo "+missing)
	}
	if _, err := os.Stat(missing); err == nil {
		t.Error("a command other than init made the missing repository")
	}
}

// TestPasswordFileEverywhere: an empty password file is refused by every way in (the command
// line, the wizard, a kickstart, an SMB share), with the same message naming the file.
func TestPasswordFileEverywhere(t *testing.T) {
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	empty := filepath.Join(dir, "empty.key")
	os.WriteFile(empty, []byte("\n"), 0o600)
	right := filepath.Join(dir, "right.key")
	os.WriteFile(right, []byte("right\n"), 0o600)
	env := []string{"CAULDRON_PASSWORD="}
	want := "--password-file " + empty + " is empty (an empty password opens nothing)"

	_, errs, code := cauldron(t, env, "init", "--repo", repo, "--password-file", empty)
	oneLineError(t, "init", errs, code, want)
	ok(t, env, "init", "--repo", repo, "--password-file", right)
	ok(t, env, "generations", "--repo", repo, "--password-file", right)
	_, errs, code = cauldron(t, env, "generations", "--repo", repo, "--password-file", empty)
	oneLineError(t, "generations", errs, code, want)
	_, errs, code = cauldron(t, env, "wizard", "--repo", repo, "--password-file", empty)
	oneLineError(t, "wizard", errs, code, want)
	_, errs, code = cauldron(t, env, "share", "mount", "smb://127.0.0.1/share", filepath.Join(dir, "mnt"), "--user", "tech", "--password-file", empty)
	oneLineError(t, "share mount", errs, code, want)

	ks := filepath.Join(dir, "web01.ks")
	os.WriteFile(ks, []byte("repository "+repo+" --password-file "+empty+"\nmachine web01\n"), 0o644)
	_, errs, code = cauldron(t, env, "recover", "--kickstart", ks, "--dry-run")
	oneLineError(t, "recover", errs, code, ks+":1:1: ", want)
}

// TestGenerationTimes: one rule for times everywhere. A time without a zone is UTC, whatever
// the zone of the machine (TZ=Pacific/Kiritimati is UTC+14); restore-disk, verify and the
// kickstart take the same forms; and every command prints times with their zone.
func TestGenerationTimes(t *testing.T) {
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	src := filepath.Join(dir, "disk.img")
	tz := []string{"CAULDRON_PASSWORD=", "TZ=Pacific/Kiritimati"}
	kiritimati, err := time.LoadLocation("Pacific/Kiritimati")
	if err != nil {
		t.Fatal(err)
	}
	ok(t, tz, "init", "--repo", repo, "--no-password")
	first := randomFile(t, src, 1<<20, 1)
	ok(t, tz, "capture", "--repo", repo, "--machine", "web01", src)
	time.Sleep(1100 * time.Millisecond)
	second := randomFile(t, src, 1<<20, 2)
	ok(t, tz, "capture", "--repo", repo, "--machine", "web01", src)

	var gens []struct {
		ID   string
		Time time.Time
	}
	out := ok(t, tz, "generations", "--repo", repo, "--json")
	if err := json.Unmarshal([]byte(out), &gens); err != nil || len(gens) != 2 {
		t.Fatalf("generations --json: %v\n%s", err, out)
	}
	if n := len(regexp.MustCompile(`"time": "[0-9T:.-]+Z"`).FindAllString(out, -1)); n != 2 {
		t.Errorf("generations --json: %d times in UTC with their Z, want 2:\n%s", n, out)
	}
	// The table: local time (here UTC+14) with its offset.
	table := ok(t, tz, "generations", "--repo", repo)
	for _, g := range gens {
		if shown := g.Time.In(kiritimati).Format(time.RFC3339); !strings.Contains(table, shown) {
			t.Errorf("generations does not show %s as %s:\n%s", g.ID[:12], shown, table)
		}
	}
	// The session records when the capture committed, a moment after its generation's time
	// (seconds later on a loaded machine).
	status := ok(t, tz, "replication", "status", "--repo", repo)
	m := regexp.MustCompile(`last capture (\S+)`).FindStringSubmatch(status)
	if m == nil {
		t.Fatalf("replication status shows no last capture: %q", status)
	}
	last, err := time.Parse(time.RFC3339, m[1])
	if _, offset := last.Zone(); err != nil || offset != 14*3600 || last.Before(gens[1].Time.Truncate(time.Second)) || last.After(time.Now()) {
		t.Errorf("replication status's last capture %q (%v): want the second capture's commit, with the zone's +14:00", m[1], err)
	}

	restored := func(ref string) []byte {
		t.Helper()
		to := filepath.Join(dir, "restored.img")
		os.Remove(to)
		ok(t, tz, "restore-disk", "--repo", repo, "--machine", "web01", "--generation", ref, "--disk", "disk0", "--to", to)
		b, err := os.ReadFile(to)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// Half a second before the second generation, written in UTC without a zone (as the
	// kickstart takes it): the first. Read as local time it would be 14 hours earlier, before
	// any generation.
	between := gens[1].Time.Add(-500 * time.Millisecond).UTC()
	for _, ref := range []string{between.Format("2006-01-02 15:04:05.999"), between.Format("2006-01-02T15:04:05.999")} {
		if !bytes.Equal(restored(ref), first) {
			t.Errorf("--generation %q did not restore the first generation", ref)
		}
	}
	// The second generation's time as the table shows it (with its offset), and a date.
	for _, ref := range []string{gens[1].Time.In(kiritimati).Format(time.RFC3339Nano), gens[1].Time.UTC().Format("2006-01-02")} {
		if !bytes.Equal(restored(ref), second) {
			t.Errorf("--generation %q did not restore the second generation", ref)
		}
	}
	// Before every generation: the machine and the first generation's time (with its zone).
	_, errs, code := cauldron(t, tz, "restore-disk", "--repo", repo, "--machine", "web01", "--generation", "2000-01-01", "--to", filepath.Join(dir, "x.img"))
	oneLineError(t, "restore-disk before the first", errs, code, `machine "web01" has no generation taken at or before 2000-01-02T13:59:59+14:00`,
		"the first is from "+gens[0].Time.In(kiritimati).Format(time.RFC3339))

	if out := ok(t, tz, "verify", "--repo", repo, "--machine", "web01", "--generation", between.Format("2006-01-02 15:04:05.999")); !strings.Contains(out, "checked structure: 1 generations") {
		t.Errorf("verify --generation TIME: %q", out)
	}
	_, errs, code = cauldron(t, tz, "forget", "--repo", repo, "--machine", "web01", "--generation", gens[0].Time.Format(time.RFC3339Nano))
	oneLineError(t, "forget --generation TIME", errs, code, "forget takes neither latest nor a time")
	if out := ok(t, tz, "forget", "--repo", repo, "--machine", "web01", "--generation", gens[0].ID[:12]); !strings.Contains(out, "("+gens[0].Time.In(kiritimati).Format(time.RFC3339)+")") {
		t.Errorf("forget does not show the time with its zone: %q", out)
	}
}
