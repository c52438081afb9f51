package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cauldron-dr/cauldron/internal/recoverytest"
)

func TestRecoverKickstart(t *testing.T) {
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	env := []string{"CAULDRON_PASSWORD=pw", "CAULDRON_REPOSITORY=" + repo}
	disk := makeDisk(t, dir, 16, 3)
	ok(t, env, "init")
	ok(t, env, "capture", "--machine", "web01", disk)
	target := filepath.Join(dir, "recovered.img")
	ks := filepath.Join(dir, "web01.ks")
	write := func(extra string) {
		t.Helper()
		text := "# test\nrepository " + repo + "\nmachine web01 --generation latest\nfreeze-replication\n" +
			"disk disk0 --target " + target + "\ninoculate --skip\n" + extra
		if err := os.WriteFile(ks, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("")
	out := ok(t, env, "recover", "--kickstart", ks, "--dry-run")
	if !strings.Contains(out, "disk disk0 → "+target+" (image file): byte for byte") || !strings.Contains(out, "dry run: nothing written") {
		t.Fatalf("dry run:\n%s", out)
	}
	if _, err := os.Stat(target); err == nil {
		t.Fatal("the dry run wrote the target")
	}
	// No consent line, no --yes, no terminal: refused before writing.
	_, errs, code := cauldron(t, env, "recover", "--kickstart", ks)
	if code == 0 || !strings.Contains(errs, "confirm --destroy-data-on-targets") {
		t.Fatalf("without consent: exit %d\n%s", code, errs)
	}
	if _, err := os.Stat(target); err == nil {
		t.Fatal("a refused recovery wrote the target")
	}
	reports := filepath.Join(dir, "reports", "web01")
	write("confirm --destroy-data-on-targets\nreport --to " + reports + "\n")
	out = ok(t, env, "recover", "--kickstart", ks)
	// report --to: the report's JSON and text in that folder (it was parsed and ignored).
	copies, _ := filepath.Glob(filepath.Join(reports, "recovery-*"))
	if len(copies) != 2 || !strings.Contains(out, "copied to "+reports) {
		t.Fatalf("report --to %s: %v\n%s", reports, copies, out)
	}
	if b, err := os.ReadFile(strings.TrimSuffix(copies[0], ".json") + ".json"); err != nil || !bytes.Contains(b, []byte(`"ok": true`)) {
		t.Fatalf("the report's JSON in %s: %v %s", reports, err, b)
	}
	for _, want := range []string{"restore   done", "verify    done", "succeeded", "verified by hash", "replication session removed"} {
		if !strings.Contains(out, want) {
			t.Fatalf("recover output lacks %q:\n%s", want, out)
		}
	}
	a, _ := os.ReadFile(disk)
	b, _ := os.ReadFile(target)
	if !bytes.Equal(a, b) {
		t.Fatal("recovered image differs from the source")
	}
	// Bad input: an unknown machine stops before writing, naming the kickstart line.
	os.Remove(target)
	os.WriteFile(ks, []byte("repository "+repo+"\nmachine db09\nconfirm --destroy-data-on-targets\n"), 0o644)
	_, errs, code = cauldron(t, env, "recover", "--kickstart", ks)
	if code == 0 || !strings.Contains(errs, `unknown machine "db09"`) || !strings.Contains(errs, ks+":2:1:") {
		t.Fatalf("unknown machine: exit %d\n%s", code, errs)
	}
	// A disk the generation does not have, and a target the gate refuses, name their disk line.
	os.WriteFile(ks, []byte("repository "+repo+"\nmachine web01\ndisk disk0 --target "+target+"\ndisk disk7 --target "+filepath.Join(dir, "x.img")+"\n"), 0o644)
	if _, errs, code := cauldron(t, env, "recover", "--kickstart", ks, "--dry-run"); code == 0 || !strings.Contains(errs, ks+":4:1: ") || !strings.Contains(errs, "disk7") {
		t.Fatalf("a disk the generation lacks: exit %d\n%s", code, errs)
	}
	os.WriteFile(ks, []byte("repository "+repo+"\nmachine web01\n\ndisk disk0 --target "+filepath.Join(repo, "in-repo.img")+"\n"), 0o644)
	if _, errs, code := cauldron(t, env, "recover", "--kickstart", ks, "--dry-run"); code == 0 || !strings.Contains(errs, ks+":4:1: ") || !strings.Contains(errs, "never be written") {
		t.Fatalf("a target in the repository: exit %d\n%s", code, errs)
	}
	// A vm target is refused, naming its line; a network command is reported as not applied.
	os.WriteFile(ks, []byte("repository "+repo+"\nmachine web01\ntarget vm --output-dir "+dir+"\n"), 0o644)
	if _, errs, code := cauldron(t, env, "recover", "--kickstart", ks, "--dry-run"); code == 0 || !strings.Contains(errs, ks+":3:") || !strings.Contains(errs, "not supported yet") {
		t.Fatalf("target vm: exit %d\n%s", code, errs)
	}
	os.WriteFile(ks, []byte("repository "+repo+"\nmachine web01\ndisk disk0 --target "+target+"\nnetwork --hostname web01-dr\n"), 0o644)
	if out := ok(t, env, "recover", "--kickstart", ks, "--dry-run"); !strings.Contains(out, ks+":4:1: network settings are not applied") {
		t.Fatalf("network: %s", out)
	}
	// An unreachable repository names the repository line.
	os.WriteFile(ks, []byte("# archive on a disk that is not there\nrepository "+filepath.Join(dir, "gone")+"\nmachine web01\n"), 0o644)
	_, errs, code = cauldron(t, env, "recover", "--kickstart", ks, "--dry-run")
	if code == 0 || !strings.Contains(errs, ks+":2:") || !strings.Contains(errs, "gone") {
		t.Fatalf("unreachable repository: exit %d\n%s", code, errs)
	}
	// A wrong password names the repository line.
	os.WriteFile(ks, []byte("repository "+repo+"\nmachine web01\n"), 0o644)
	_, errs, code = cauldron(t, []string{"CAULDRON_PASSWORD=wrong"}, "recover", "--kickstart", ks, "--dry-run")
	if code == 0 || !strings.Contains(errs, ks+":1:") {
		t.Fatalf("wrong password: exit %d\n%s", code, errs)
	}
}

// A recovery of db01 onto an image that stopped during its restore (as a power loss leaves it)
// stands in web01's way: recover refuses before writing, naming the journal and --restart; the
// dry run shows it; --restart asks the same consent first, then discards it and starts over.
func TestRecoverRestart(t *testing.T) {
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	env := []string{"CAULDRON_PASSWORD=pw", "CAULDRON_REPOSITORY=" + repo}
	os.Mkdir(filepath.Join(dir, "web01"), 0o755)
	os.Mkdir(filepath.Join(dir, "db01"), 0o755)
	web01 := makeDisk(t, filepath.Join(dir, "web01"), 16, 3)
	db01 := makeDisk(t, filepath.Join(dir, "db01"), 16, 5)
	ok(t, env, "init")
	ok(t, env, "capture", "--machine", "web01", web01)
	ok(t, env, "capture", "--machine", "db01", db01)
	// The target: a blank image of the disks' size, as a technician prepares one.
	target := filepath.Join(dir, "recovered.img")
	fi, err := os.Stat(web01)
	if err != nil || os.WriteFile(target, nil, 0o644) != nil || os.Truncate(target, fi.Size()) != nil {
		t.Fatalf("making the target: %v", err)
	}
	journal := recoverytest.Unfinished(t, repo, "pw", "db01", target)
	left, err := os.ReadFile(target)
	if err != nil {
		t.Fatal(err)
	}

	ks := filepath.Join(dir, "web01.ks")
	write := func(extra string) {
		t.Helper()
		text := "repository " + repo + "\nmachine web01\ndisk disk0 --target " + target + "\ninoculate --skip\n" + extra
		if err := os.WriteFile(ks, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("confirm --destroy-data-on-targets\n")
	_, errs, code := cauldron(t, env, "recover", "--kickstart", ks)
	for _, want := range []string{"target " + target + ": the journal " + journal + " belongs to another recovery (of db01", `"db01.ks"`,
		"done: freeze, check; stopped before restore", "Nothing was written", "--restart"} {
		if code == 0 || !strings.Contains(errs, want) {
			t.Fatalf("with db01's journal on the target: exit %d, want %q in\n%s", code, want, errs)
		}
	}
	if b, _ := os.ReadFile(target); !bytes.Equal(b, left) {
		t.Fatal("the refused recovery wrote the target")
	}
	out := ok(t, env, "recover", "--kickstart", ks, "--dry-run")
	if !strings.Contains(out, "journal: target "+target+": the journal "+journal+" belongs to another recovery (of db01") ||
		!strings.Contains(out, "the recovery is refused until it is discarded (--restart)") {
		t.Fatalf("dry run:\n%s", out)
	}
	// --restart needs the recovery's own consent before it discards anything.
	write("")
	if _, errs, code := cauldron(t, env, "recover", "--kickstart", ks, "--restart"); code == 0 || !strings.Contains(errs, "confirm --destroy-data-on-targets") {
		t.Fatalf("--restart without consent: exit %d\n%s", code, errs)
	}
	if _, err := os.Stat(journal); err != nil {
		t.Fatalf("--restart without consent discarded the journal: %v", err)
	}
	out = ok(t, env, "recover", "--kickstart", ks, "--restart", "--yes")
	for _, want := range []string{"--restart discarded: target " + target + ": the journal " + journal + " belongs to another recovery (of db01",
		"succeeded", "warning: --restart discarded"} {
		if !strings.Contains(out, want) {
			t.Fatalf("--restart output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(journal); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("journal after the restarted recovery: %v", err)
	}
	a, _ := os.ReadFile(web01)
	b, _ := os.ReadFile(target)
	if !bytes.Equal(a, b) {
		t.Fatal("the restarted recovery's image differs from web01's disk")
	}
	// Nothing left on the way: a plain run again just recovers.
	if out := ok(t, env, "recover", "--kickstart", ks, "--yes"); !strings.Contains(out, "succeeded") || strings.Contains(out, "resum") {
		t.Fatalf("the next run:\n%s", out)
	}
}
