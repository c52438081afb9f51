package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cauldronStdin is cauldron with standard input from a pipe holding stdin.
func cauldronStdin(t *testing.T, env []string, stdin string, args ...string) (string, string, int) {
	t.Helper()
	return runCauldron(t, "", env, strings.NewReader(stdin), args...)
}

// TestInitPassword: init creates an unencrypted repository only when --no-password says so, and
// reads a password from a pipe only when --password-file - says so (`echo pw | cauldron init`
// used to create an unencrypted repository silently).
func TestInitPassword(t *testing.T) {
	dir := t.TempDir()
	env := []string{"CAULDRON_PASSWORD=", "CAULDRON_REPOSITORY="}
	repo := filepath.Join(dir, "repo")

	_, errs, code := cauldronStdin(t, env, "pw\n", "init", "--repo", repo)
	oneLineError(t, "init with a piped password", errs, code, "no password for the new repository at "+repo,
		"--password-file FILE (- reads standard input)", "--no-password")
	if _, err := os.Stat(filepath.Join(repo, "config")); err == nil {
		t.Fatal("init without a password created a repository")
	}
	_, errs, code = cauldronStdin(t, env, "", "init", "--repo", repo, "--no-password", "--password-file", "-")
	oneLineError(t, "init with both", errs, code, "--no-password and --password-file contradict")
	_, errs, code = cauldronStdin(t, env, "\n", "init", "--repo", repo, "--password-file", "-")
	oneLineError(t, "init with an empty pipe", errs, code, "--password-file - (standard input) is empty")

	out, errs, code := cauldronStdin(t, env, "pw\n", "init", "--repo", repo, "--password-file", "-")
	if code != 0 || !strings.Contains(out, "created encrypted") {
		t.Fatalf("init --password-file -: exit %d\n%s%s", code, out, errs)
	}
	if out, errs, code = cauldronStdin(t, env, "pw\n", "generations", "--repo", repo, "--password-file", "-"); code != 0 || !strings.Contains(out, "no generations yet") {
		t.Fatalf("generations --password-file -: exit %d\n%s%s", code, out, errs)
	}
	// A piped password is not read unless asked for.
	_, errs, code = cauldronStdin(t, env, "pw\n", "generations", "--repo", repo)
	oneLineError(t, "generations with a piped password", errs, code, "a password is needed")

	plain := filepath.Join(dir, "plain")
	if out := ok(t, env, "init", "--repo", plain, "--no-password"); !strings.Contains(out, "created unencrypted") {
		t.Fatalf("init --no-password: %q", out)
	}
}

// TestKeyDerivationSignal: SIGTERM ends a cauldron that is deriving a key from a costly (but
// allowed) key file; it used to go on for as long as the derivation took.
func TestKeyDerivationSignal(t *testing.T) {
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	env := []string{"CAULDRON_PASSWORD=pw"}
	ok(t, env, "init", "--repo", repo)
	ents, err := os.ReadDir(filepath.Join(repo, "keys"))
	if err != nil || len(ents) != 1 {
		t.Fatalf("keys: %v %v", ents, err)
	}
	path := filepath.Join(repo, "keys", ents[0].Name())
	b, _ := os.ReadFile(path)
	var kf map[string]any
	if err := json.Unmarshal(b, &kf); err != nil {
		t.Fatal(err)
	}
	// At the bounds' edge: 64 passes over 256 MiB on one thread, tens of seconds.
	p := kf["params"].(map[string]any)
	p["time"], p["memory"], p["threads"] = float64(64), float64(256<<10), float64(1)
	b, _ = json.Marshal(kf)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "generations", "--repo", repo)
	cmd.Env = append(os.Environ(), env...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	cmd.Process.Signal(syscall.SIGTERM)
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		if err == nil {
			t.Fatalf("cauldron ended successfully after SIGTERM:\n%s", errb.String())
		}
	case <-time.After(3 * time.Second):
		cmd.Process.Kill()
		<-waited
		t.Fatal("cauldron still ran 3 s after SIGTERM while deriving a key")
	}
}

// TestUnlockJunkLock: a junk lock file (anyone's to write on an append-only server) used to
// block every command, and unlock without --all removed nothing. It is removed now, by name.
func TestUnlockJunkLock(t *testing.T) {
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	env := []string{"CAULDRON_PASSWORD=pw"}
	ok(t, env, "init", "--repo", repo)
	if err := os.WriteFile(filepath.Join(repo, "locks", "junk"), []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	ok(t, env, "prune", "--repo", repo)
	out := ok(t, env, "unlock", "--repo", repo)
	if !strings.Contains(out, "removed unreadable lock file locks/junk") || !strings.Contains(out, "it cannot be read") ||
		!strings.Contains(out, "removed 1 lock(s), kept 0") {
		t.Fatalf("unlock: %q", out)
	}
	if _, err := os.Stat(filepath.Join(repo, "locks", "junk")); !os.IsNotExist(err) {
		t.Fatalf("the junk lock is still there: %v", err)
	}
}

// TestRollbackReported: a machine's newest manifest deleted behind cauldron's back is damage to
// verify (exit 3) and a warning to generations.
func TestRollbackReported(t *testing.T) {
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	env := []string{"CAULDRON_PASSWORD=pw", "CAULDRON_REPOSITORY=" + repo}
	disk := makeDisk(t, dir, 8, 1)
	ok(t, env, "init")
	ok(t, env, "capture", "--machine", "web01", disk)
	ok(t, env, "capture", "--machine", "web01", disk)
	ents, _ := os.ReadDir(filepath.Join(repo, "generations"))
	if len(ents) != 2 {
		t.Fatalf("generations: %v", ents)
	}
	var list []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(ok(t, env, "generations", "--json")), &list); err != nil || len(list) != 2 {
		t.Fatalf("generations --json: %v %v", list, err)
	}
	newest := list[len(list)-1].ID
	if err := os.Remove(filepath.Join(repo, "generations", newest)); err != nil {
		t.Fatal(err)
	}
	stdout, errs, code := cauldron(t, env, "verify")
	if code != 3 || !strings.Contains(stdout, "DAMAGE: machine web01: its newest generation "+newest[:12]) {
		t.Fatalf("verify: exit %d\n%s%s", code, stdout, errs)
	}
	stdout, errs, code = cauldron(t, env, "generations")
	if code != 0 || !strings.Contains(errs, "warning: machine web01: its newest generation "+newest[:12]) {
		t.Fatalf("generations: exit %d\n%s%s", code, stdout, errs)
	}
}
