package tib_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cauldron-dr/cauldron/tib"
	"github.com/cauldron-dr/cauldron/tib/backend/local"
)

// keyFiles lists the names in the repository's keys/ folder.
func keyFiles(t *testing.T, repo string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(repo, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func openWith(ctx context.Context, repo, pw string) (*tib.Repository, error) {
	return tib.Open(ctx, local.New(repo), func() ([]byte, error) { return []byte(pw), nil })
}

// Key files are anyone's to add on a server a client does not fully trust (issue 16, item 2):
// none of them may keep the right password from opening the repository, cost unbounded time, or
// turn an unencrypted repository into one that asks for a password.
func TestHostileKeyFiles(t *testing.T) {
	dir := t.TempDir()
	r := newRepo(t, dir, "right")
	repo := r.Location()
	real := keyFiles(t, repo)
	if len(real) != 1 {
		t.Fatalf("key files: %v", real)
	}
	b, err := os.ReadFile(filepath.Join(repo, "keys", real[0]))
	if err != nil {
		t.Fatal(err)
	}
	var kf map[string]any
	if err := json.Unmarshal(b, &kf); err != nil {
		t.Fatal(err)
	}
	// Junk sorted before the real file (names are tried in order; "-" sorts before digits) and
	// after it.
	writeFile(t, filepath.Join(repo, "keys", "0"), []byte("junk"))
	writeFile(t, filepath.Join(repo, "keys", "zz"), []byte("{not json"))
	// The real key file's parameters with time 2^32-1: it used to spin forever.
	kf["params"].(map[string]any)["time"] = float64(1<<32 - 1)
	slow, _ := json.Marshal(kf)
	writeFile(t, filepath.Join(repo, "keys", "-slow"), slow)

	start := time.Now()
	r2, err := openWith(ctx, repo, "right")
	if err != nil {
		t.Fatalf("the right password no longer opens the repository: %v", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("opening took %v", d)
	}
	w := strings.Join(r2.Warnings(), "\n")
	for _, want := range []string{"keys/0:", "keys/-slow: Argon2id time 4294967295 is outside 1…64"} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings do not name %q:\n%s", want, w)
		}
	}
	// A wrong password names the bad files too, and fails quickly.
	_, err = openWith(ctx, repo, "wrong")
	if !errors.Is(err, tib.ErrWrongPassword) || !strings.Contains(err.Error(), "keys/-slow: Argon2id time 4294967295") ||
		!strings.Contains(err.Error(), "keys/zz: not a key file") {
		t.Fatalf("wrong password: %v", err)
	}
	// With only the hostile file left, it is refused before anything is derived, naming it.
	if err := os.Remove(filepath.Join(repo, "keys", real[0])); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	_, err = openWith(ctx, repo, "right")
	if err == nil || !strings.Contains(err.Error(), "keys/-slow: Argon2id time 4294967295 is outside 1…64") {
		t.Fatalf("only a hostile key file: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("refusing the hostile key file took %v", d)
	}
}

// A cancelled context (SIGINT, SIGTERM) ends Open while it derives a key.
func TestOpenCancelledWhileDeriving(t *testing.T) {
	dir := t.TempDir()
	r := newRepo(t, dir, "right")
	repo := r.Location()
	name := keyFiles(t, repo)[0]
	b, _ := os.ReadFile(filepath.Join(repo, "keys", name))
	var kf map[string]any
	json.Unmarshal(b, &kf)
	// Within bounds, but seconds of work.
	p := kf["params"].(map[string]any)
	p["time"], p["memory"], p["threads"] = float64(32), float64(128<<10), float64(1)
	slow, _ := json.Marshal(kf)
	writeFile(t, filepath.Join(repo, "keys", name), slow)
	c, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := openWith(c, repo, "right")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Open = %v, want the context's error", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Open returned %v after it started", d)
	}
}

// An unencrypted repository stays one when someone adds a key file: its config says so.
func TestKeyFileInUnencryptedRepository(t *testing.T) {
	dir := t.TempDir()
	plain := newRepo(t, filepath.Join(dir, "p"), "")
	enc := newRepo(t, filepath.Join(dir, "e"), "pw")
	k := keyFiles(t, enc.Location())[0]
	b, _ := os.ReadFile(filepath.Join(enc.Location(), "keys", k))
	writeFile(t, filepath.Join(plain.Location(), "keys", k), b)
	r, err := tib.Open(ctx, local.New(plain.Location()), nil)
	if err != nil {
		t.Fatalf("an unencrypted repository with a key file added: %v", err)
	}
	if r.Config().Encrypted || len(r.Warnings()) != 1 || !strings.Contains(r.Warnings()[0], "unencrypted (its config says so): key file(s) keys/"+k+" ignored") {
		t.Fatalf("encrypted %v, warnings %q", r.Config().Encrypted, r.Warnings())
	}
	// The encrypted one still needs its password.
	if _, err := tib.Open(ctx, local.New(enc.Location()), nil); !errors.Is(err, tib.ErrNeedPassword) {
		t.Fatalf("encrypted repository without a password: %v", err)
	}
}

// Key management (issue 16, item 8): a second key, a changed password, and the key that opened
// the session kept.
func TestKeyAddRemovePasswd(t *testing.T) {
	dir := t.TempDir()
	r := newRepo(t, dir, "first")
	repo := r.Location()
	first := r.KeyName()
	if first == "" || len(keyFiles(t, repo)) != 1 || keyFiles(t, repo)[0] != first {
		t.Fatalf("Init's key %q, files %v", first, keyFiles(t, repo))
	}
	second, err := r.AddKey(ctx, []byte("second"))
	if err != nil {
		t.Fatal(err)
	}
	for _, pw := range []string{"first", "second"} {
		if _, err := openWith(ctx, repo, pw); err != nil {
			t.Fatalf("after AddKey, %q: %v", pw, err)
		}
	}
	// Same key-derivation parameters as init (the salt aside).
	var a, b map[string]any
	ra, _ := os.ReadFile(filepath.Join(repo, "keys", first))
	rb, _ := os.ReadFile(filepath.Join(repo, "keys", second))
	json.Unmarshal(ra, &a)
	json.Unmarshal(rb, &b)
	pa, pb := a["params"].(map[string]any), b["params"].(map[string]any)
	for _, f := range []string{"time", "memory", "threads"} {
		if pa[f] != pb[f] {
			t.Errorf("param %s: init %v, add %v", f, pa[f], pb[f])
		}
	}

	// The session's own key cannot be removed, by whole name or prefix.
	for _, id := range []string{first, first[:8]} {
		if _, err := r.RemoveKey(ctx, id); !errors.Is(err, tib.ErrKeyInUse) {
			t.Fatalf("removing the key in use (%s): %v", id, err)
		}
	}
	// Junk is listed, not fatal, and can be removed.
	writeFile(t, filepath.Join(repo, "keys", "0"), []byte("junk"))
	keys, err := r.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var current, junk int
	for _, k := range keys {
		if k.Current {
			current++
			if k.ID != first {
				t.Errorf("current key %s, opened with %s", k.ID, first)
			}
		}
		if k.ID == "0" {
			junk++
			if k.Unusable == nil || !strings.Contains(k.Unusable.Error(), "not a key file") {
				t.Errorf("junk key file: %v", k.Unusable)
			}
		} else if k.Unusable != nil || k.Hostname == "" || k.Created.IsZero() {
			t.Errorf("key %s: %+v", k.ID, k)
		}
	}
	if len(keys) != 3 || current != 1 || junk != 1 {
		t.Fatalf("keys: %+v", keys)
	}
	if _, err := r.RemoveKey(ctx, "0"); err != nil {
		t.Fatalf("removing junk: %v", err)
	}

	// passwd: the session's key replaced by the new password's.
	r2, err := openWith(ctx, repo, "second")
	if err != nil {
		t.Fatal(err)
	}
	third, err := r2.ChangePassword(ctx, []byte("third"))
	if err != nil {
		t.Fatal(err)
	}
	if r2.KeyName() != third {
		t.Errorf("after passwd the session's key is %s, want %s", r2.KeyName(), third)
	}
	if _, err := openWith(ctx, repo, "second"); !errors.Is(err, tib.ErrWrongPassword) {
		t.Fatalf("the old password after passwd: %v", err)
	}
	for _, pw := range []string{"first", "third"} {
		if _, err := openWith(ctx, repo, pw); err != nil {
			t.Fatalf("after passwd, %q: %v", pw, err)
		}
	}
	// The other session may now remove the new key; then it holds the only one left.
	if _, err := r.RemoveKey(ctx, third); err != nil {
		t.Fatal(err)
	}
	if got := keyFiles(t, repo); len(got) != 1 || got[0] != first {
		t.Fatalf("key files left: %v", got)
	}
}

// The last usable key file is never removed, even by a session another (hostile) key file
// opened: one that holds the master key but whose parameters are now out of bounds cannot be
// the only one left.
func TestKeyRemoveLastUsable(t *testing.T) {
	dir := t.TempDir()
	r := newRepo(t, dir, "pw")
	repo := r.Location()
	first := r.KeyName()
	second, err := r.AddKey(ctx, []byte("pw2"))
	if err != nil {
		t.Fatal(err)
	}
	r2, err := openWith(ctx, repo, "pw2")
	if err != nil || r2.KeyName() != second {
		t.Fatalf("open with the second password: %v (key %s)", err, r2.KeyName())
	}
	// Make the second file unusable for later opens (this session is open already).
	b, _ := os.ReadFile(filepath.Join(repo, "keys", second))
	var kf map[string]any
	json.Unmarshal(b, &kf)
	kf["params"].(map[string]any)["time"] = float64(1 << 20)
	b, _ = json.Marshal(kf)
	writeFile(t, filepath.Join(repo, "keys", second), b)
	if _, err := r2.RemoveKey(ctx, first); err == nil || !strings.Contains(err.Error(), "no other usable key file would be left") {
		t.Fatalf("removing the last usable key: %v", err)
	}
	if _, err := openWith(ctx, repo, "pw"); err != nil {
		t.Fatal(err)
	}
}

// An unencrypted repository has no keys to manage: each key operation says so.
func TestKeysUnencrypted(t *testing.T) {
	r := newRepo(t, t.TempDir(), "")
	_, e1 := r.Keys(ctx)
	_, e2 := r.AddKey(ctx, []byte("pw"))
	_, e3 := r.RemoveKey(ctx, "x")
	_, e4 := r.ChangePassword(ctx, []byte("pw"))
	for i, err := range []error{e1, e2, e3, e4} {
		if !errors.Is(err, tib.ErrUnencrypted) {
			t.Errorf("operation %d: %v", i, err)
		}
	}
	if len(keyFiles(t, r.Location())) != 0 {
		t.Fatal("a key file was added to an unencrypted repository")
	}
}
