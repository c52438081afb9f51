package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cauldron-dr/cauldron/tib"
	"github.com/cauldron-dr/cauldron/tib/backend/local"
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

// TestKeyCommands: key list|add|remove|passwd as a user runs them (issue 16, item 8: there was
// no way to change the password or add a second key).
func TestKeyCommands(t *testing.T) {
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	as := func(pw string) []string { return []string{"CAULDRON_PASSWORD=" + pw, "CAULDRON_REPOSITORY=" + repo} }
	ok(t, as("first"), "init")
	newPW := filepath.Join(dir, "new")
	if err := os.WriteFile(newPW, []byte("second\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := ok(t, as("first"), "key", "add", "--new-password-file", newPW)
	if !strings.HasPrefix(out, "added key ") {
		t.Fatalf("key add: %q", out)
	}
	// Both passwords work; each session marks its own key.
	type key struct {
		Current  bool   `json:"current"`
		ID       string `json:"id"`
		LongID   string `json:"longId"`
		HostName string `json:"hostName"`
		Created  string `json:"created"`
		Unusable string `json:"unusable"`
	}
	list := func(pw string) (cur key, all []key) {
		t.Helper()
		if err := json.Unmarshal([]byte(ok(t, as(pw), "key", "list", "--json")), &all); err != nil {
			t.Fatal(err)
		}
		for _, k := range all {
			if k.Current {
				cur = k
			}
		}
		return cur, all
	}
	first, all := list("first")
	second, _ := list("second")
	if len(all) != 2 || first.LongID == "" || second.LongID == "" || first.LongID == second.LongID ||
		first.ID != first.LongID[:8] || first.HostName == "" || first.Created == "" {
		t.Fatalf("key list: %+v; current with first %+v, with second %+v", all, first, second)
	}
	if text := ok(t, as("first"), "key", "list"); !strings.Contains(text, "*"+first.ID) || !strings.Contains(text, " "+second.ID) {
		t.Fatalf("key list:\n%s", text)
	}

	// The key in use cannot be removed.
	_, errs, code := cauldron(t, as("first"), "key", "remove", first.ID)
	oneLineError(t, "key remove (in use)", errs, code, "refusing to remove key file keys/"+first.LongID, "it opened this session")

	// A junk key file is listed, not fatal, and removable.
	if err := os.WriteFile(filepath.Join(repo, "keys", "junk"), []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, all = list("first")
	if len(all) != 3 || !strings.Contains(fmt.Sprint(all), "not a key file") {
		t.Fatalf("key list with junk: %+v", all)
	}
	if text := ok(t, as("first"), "key", "list"); !strings.Contains(text, "junk") || !strings.Contains(text, "unusable: not a key file") {
		t.Fatalf("key list with junk:\n%s", text)
	}
	ok(t, as("first"), "key", "remove", "junk")

	// passwd with the second password: it stops working, the new one works, the first is kept.
	out, errs, code = cauldronStdin(t, as("second"), "third\n", "key", "passwd", "--new-password-file", "-")
	if code != 0 || !strings.Contains(out, "removed key "+second.ID) {
		t.Fatalf("key passwd: exit %d\n%s%s", code, out, errs)
	}
	_, errs, code = cauldron(t, as("second"), "key", "list")
	oneLineError(t, "the old password after passwd", errs, code, "wrong password")
	third, all := list("third")
	if len(all) != 2 || third.LongID == second.LongID {
		t.Fatalf("after passwd: %+v", all)
	}
	list("first")

	// Removed by another key's session, the third key stops working.
	ok(t, as("first"), "key", "remove", third.ID)
	_, errs, code = cauldron(t, as("third"), "key", "list")
	oneLineError(t, "a removed key's password", errs, code, "wrong password")

	// Bad input: no new password without a terminal, both from standard input, an unknown ID.
	_, errs, code = cauldron(t, as("first"), "key", "add")
	oneLineError(t, "key add without a new password", errs, code, "no new password: give --new-password-file FILE")
	_, errs, code = cauldronStdin(t, as("first"), "x\n", "key", "add", "--password-file", "-", "--new-password-file", "-")
	oneLineError(t, "key add, both from standard input", errs, code, "both read standard input")
	_, errs, code = cauldron(t, as("first"), "key", "remove", "ffffffff")
	oneLineError(t, "key remove of an unknown ID", errs, code, "no key file keys/ffffffff")
	if _, all = list("first"); len(all) != 1 {
		t.Fatalf("keys left: %+v", all)
	}
}

// TestKeyCommandsRefused: an unencrypted repository has no keys, an append-only server takes no
// new ones, and a lock held by another process blocks key changes; each says so.
func TestKeyCommandsRefused(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	env := []string{"CAULDRON_PASSWORD=", "CAULDRON_REPOSITORY=" + plain}
	ok(t, env, "init", "--no-password")
	pwFile := filepath.Join(dir, "pw")
	os.WriteFile(pwFile, []byte("pw"), 0o600)
	for _, args := range [][]string{{"list"}, {"add", "--new-password-file", pwFile}, {"remove", "x"}, {"passwd", "--new-password-file", pwFile}} {
		_, errs, code := cauldron(t, env, append([]string{"key"}, args...)...)
		oneLineError(t, "key "+args[0]+" (unencrypted)", errs, code, plain+": the repository is unencrypted: it has no keys")
	}
	if ents, _ := os.ReadDir(filepath.Join(plain, "keys")); len(ents) != 0 {
		t.Fatalf("key files in an unencrypted repository: %v", ents)
	}

	repo := filepath.Join(dir, "repo")
	env = []string{"CAULDRON_PASSWORD=pw", "CAULDRON_REPOSITORY="}
	ok(t, env, "init", "--repo", repo)
	url, _, stop := startServe(t, "--repo", repo, "--no-auth", "--listen", "127.0.0.1:0", "--append-only")
	defer stop()
	_, errs, code := cauldron(t, env, "key", "add", "--repo", url, "--new-password-file", pwFile)
	oneLineError(t, "key add on an append-only server", errs, code, "adding a key file", "403 Forbidden", "the server is append-only")
	if ents, _ := os.ReadDir(filepath.Join(repo, "keys")); len(ents) != 1 {
		t.Fatalf("key files after an append-only server's refusal: %v", ents)
	}
	if ents, _ := os.ReadDir(filepath.Join(repo, "locks")); len(ents) != 0 {
		t.Fatalf("locks left after the refusal: %v", ents)
	}

	// A capture's lock (held by a live process: this test's) blocks key changes.
	r, err := tib.Open(context.Background(), local.New(repo), func() ([]byte, error) { return []byte("pw"), nil })
	if err != nil {
		t.Fatal(err)
	}
	lock, err := r.Lock(context.Background(), false, "capture")
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Unlock()
	_, errs, code = cauldron(t, env, "key", "add", "--repo", repo, "--new-password-file", pwFile)
	oneLineError(t, "key add while locked", errs, code, "repository is locked", "shared lock")
}

// TestKeyPasswdNamesOtherKeysOfTheOldPassword: key passwd replaces the key file that opened the
// session; another key file sealed under the same (old) password kept opening the repository,
// while passwd said "the password is changed". It now says which key files the old password
// still opens, and exits non-zero.
func TestKeyPasswdNamesOtherKeysOfTheOldPassword(t *testing.T) {
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	env := []string{"CAULDRON_PASSWORD=old"}
	ok(t, env, "init", "--repo", repo)
	same := filepath.Join(dir, "same")
	if err := os.WriteFile(same, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok(t, env, "key", "add", "--repo", repo, "--new-password-file", same)
	newPw := filepath.Join(dir, "new")
	if err := os.WriteFile(newPw, []byte("new\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errs, code := cauldron(t, env, "key", "passwd", "--repo", repo, "--new-password-file", newPw)
	if _, _, still := cauldron(t, env, "key", "list", "--repo", repo); still != 0 {
		t.Fatal("the old password no longer opens the repository: the test proves nothing")
	}
	oneLineError(t, "passwd with another key of the old password", errs, code, "the old password still opens", "cauldron key remove")
	if _, _, c := cauldron(t, []string{"CAULDRON_PASSWORD=new"}, "key", "list", "--repo", repo); c != 0 {
		t.Fatal("the new password does not open the repository")
	}
}
