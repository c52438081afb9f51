package restore_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cauldron-dr/cauldron/restore"
	"github.com/cauldron-dr/cauldron/restore/archive"
	"github.com/cauldron-dr/cauldron/restore/kickstart"
	"github.com/cauldron-dr/cauldron/tib"
	"github.com/cauldron-dr/cauldron/tib/backend/local"
)

// kickstartRepo is an encrypted repository (password "right") with two generations of web01,
// taken a little apart.
func kickstartRepo(t *testing.T) (dir, repo string, gens []*tib.Generation) {
	t.Helper()
	ctx := context.Background()
	dir = t.TempDir()
	repo = filepath.Join(dir, "repo")
	r, err := tib.Init(ctx, local.New(repo), tib.InitOptions{Password: []byte("right"), ChunkSize: 64 << 10, PackSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "disk.img")
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(i*7 + i>>9)
	}
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		g, err := r.Capture(ctx, tib.CaptureOptions{Machine: "web01", Sources: []string{src}})
		if err != nil {
			t.Fatal(err)
		}
		gens = append(gens, g)
		time.Sleep(20 * time.Millisecond)
	}
	return dir, repo, gens
}

func fromKickstart(t *testing.T, text string) (*restore.Request, error) {
	t.Helper()
	ks, err := kickstart.Parse("t.ks", strings.NewReader(text))
	if err != nil {
		t.Fatalf("%s\n%v", text, err)
	}
	return restore.FromKickstart(context.Background(), ks, restore.KickstartOptions{Candidates: []string{}})
}

// TestFromKickstartErrorChain: a kickstart error names file:line:column and keeps its cause, so
// that callers can tell a wrong password from anything else.
func TestFromKickstartErrorChain(t *testing.T) {
	dir, repo, _ := kickstartRepo(t)
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv(archive.PasswordEnv, "")

	wrong := write("wrong", "wrong\n")
	_, err := fromKickstart(t, "repository "+repo+" --password-file "+wrong+"\nmachine web01\n")
	if !errors.Is(err, tib.ErrWrongPassword) || !strings.HasPrefix(err.Error(), "t.ks:1:1: repository "+repo+": ") {
		t.Errorf("wrong password: %v", err)
	}

	// An empty password file is refused as the command line refuses it, naming the file.
	empty := write("empty", "\n")
	_, err = fromKickstart(t, "repository "+repo+" --password-file "+empty+"\nmachine web01\n")
	if !errors.Is(err, archive.ErrEmptyPassword) || !strings.HasPrefix(err.Error(), "t.ks:1:1: ") ||
		!strings.Contains(err.Error(), "--password-file "+empty+" is empty") {
		t.Errorf("empty password file: %v", err)
	}

	_, err = fromKickstart(t, "# the key is in the environment\nrepository "+repo+" --password-env NO_SUCH_PW\nmachine web01\n")
	if err == nil || !strings.HasPrefix(err.Error(), "t.ks:2:1: ") || !strings.Contains(err.Error(), "$NO_SUCH_PW is not set") {
		t.Errorf("unset variable: %v", err)
	}

	// No password at all: the repository says it needs one.
	_, err = fromKickstart(t, "repository "+repo+"\nmachine web01\n")
	if !errors.Is(err, tib.ErrNeedPassword) || !strings.HasPrefix(err.Error(), "t.ks:1:1: ") {
		t.Errorf("no password: %v", err)
	}

	// A missing repository keeps its cause too.
	_, err = fromKickstart(t, "repository "+filepath.Join(dir, "gone")+"\nmachine web01\n")
	if !errors.Is(err, tib.ErrNoRepository) || !strings.HasPrefix(err.Error(), "t.ks:1:1: ") {
		t.Errorf("missing repository: %v", err)
	}

	right := write("right", "right\n")
	req, err := fromKickstart(t, "repository "+repo+" --password-file "+right+"\nmachine web01\n")
	if err != nil || req.RepoPath != repo {
		t.Fatalf("right password: %+v, %v", req, err)
	}
}

// TestFromKickstartGenerationTime: a time in the kickstart reaches the repository's one rule
// for resolving generations (the newest at or before it; no zone means UTC).
func TestFromKickstartGenerationTime(t *testing.T) {
	_, repo, gens := kickstartRepo(t)
	t.Setenv(archive.PasswordEnv, "right")
	between := gens[1].Time.Add(-time.Nanosecond).UTC().Format("2006-01-02T15:04:05.999999999")
	for ref, want := range map[string]*tib.Generation{
		"'" + strings.Replace(between, "T", " ", 1) + "'": gens[0],
		gens[1].Time.Format(time.RFC3339Nano):             gens[1],
		"latest":                                          gens[1],
		gens[0].ID.String()[:8]:                           gens[0],
	} {
		req, err := fromKickstart(t, "repository "+repo+"\nmachine web01 --generation "+ref+"\n")
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		g, err := req.Repo.FindGeneration(context.Background(), req.Machine, req.Generation)
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		if g.ID != want.ID {
			t.Errorf("--generation %s chose %s, want %s", ref, g.ID.Short(), want.ID.Short())
		}
	}
}
