package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// sgdiskClean fails the test unless sgdisk -v finds no problem in img.
func sgdiskClean(t *testing.T, img string) {
	t.Helper()
	out, err := exec.Command("sgdisk", "-v", img).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "No problems found") {
		t.Fatalf("sgdisk -v %s: %v\n%s", img, err, out)
	}
}

func sparse(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
}

// TestLayoutPlanAndApply plans a captured disk onto bigger and smaller targets from the
// repository (used bytes from the generation's used-block maps) and applies one, judged by sgdisk
// and sfdisk.
func TestLayoutPlanAndApply(t *testing.T) {
	dir := t.TempDir()
	img := makeDisk(t, dir, 64, 7) // 66 MiB: ext4 of 64 MiB, about 24 MiB of files
	repo := filepath.Join(dir, "repo")
	env := []string{"CAULDRON_PASSWORD=pw"}
	ok(t, env, "init", "--repo", repo)
	ok(t, env, "capture", "--repo", repo, "--machine", "web01", img)
	from := []string{"--repo", repo, "--machine", "web01", "--disk", "disk0"}

	bigger := filepath.Join(dir, "bigger.img")
	sparse(t, bigger, 128<<20)
	out := ok(t, env, append([]string{"layout", "plan", "--to", bigger}, from...)...)
	for _, want := range []string{"plan: disk0 of web01", "grow ext4", "ok   fits the target", "partition GUID 1"} {
		if !strings.Contains(out, want) {
			t.Errorf("layout plan output lacks %q:\n%s", want, out)
		}
	}

	// Smaller: 48 MiB holds the files once the filesystem is shrunk.
	smaller := filepath.Join(dir, "smaller.img")
	sparse(t, smaller, 48<<20)
	out = ok(t, env, append([]string{"layout", "plan", "--json", "--to", smaller}, from...)...)
	var plan struct {
		Moves []struct {
			Number            int
			NewStart, NewSize int64
			Used              int64
		}
		Filesystems []struct{ Action string }
	}
	if err := json.Unmarshal([]byte(out), &plan); err != nil {
		t.Fatalf("layout plan --json: %v\n%s", err, out)
	}
	if len(plan.Moves) != 1 || plan.Moves[0].Used < 20<<20 || plan.Moves[0].NewSize >= 48<<20 || len(plan.Filesystems) != 1 || plan.Filesystems[0].Action != "shrink" {
		t.Errorf("plan onto 48 MiB: %+v", plan)
	}

	// Too small: refused, naming the partition and the bytes it lacks; exit 1, nothing written.
	tiny := filepath.Join(dir, "tiny.img")
	sparse(t, tiny, 24<<20)
	out, errs, code := cauldron(t, env, append([]string{"layout", "plan", "--to", tiny}, from...)...)
	if code != 1 || !strings.Contains(errs, "partition 1 (ext4) holds") || !strings.Contains(errs, "more bytes") || !strings.Contains(out, "FAIL data fits") {
		t.Errorf("plan onto 24 MiB: exit %d\n%s\n%s", code, out, errs)
	}

	// Apply needs --yes; then it writes a table sgdisk and sfdisk agree with.
	if _, errs, code := cauldron(t, env, append([]string{"layout", "apply", "--to", smaller}, from...)...); code == 0 || !strings.Contains(errs, "--yes") {
		t.Errorf("layout apply without --yes: exit %d %s", code, errs)
	}
	if b, _ := os.ReadFile(smaller); strings.Trim(string(b), "\x00") != "" {
		t.Fatal("layout apply without --yes wrote to the target")
	}
	ok(t, env, append([]string{"layout", "apply", "--yes", "--to", smaller}, from...)...)
	sgdiskClean(t, smaller)
	var sf struct {
		PartitionTable struct {
			Partitions []struct{ Start, Size int64 }
		}
	}
	sfOut, err := exec.Command("sfdisk", "--json", smaller).Output()
	if err != nil || json.Unmarshal(sfOut, &sf) != nil || len(sf.PartitionTable.Partitions) != 1 {
		t.Fatalf("sfdisk --json: %v\n%s", err, sfOut)
	}
	if p := sf.PartitionTable.Partitions[0]; p.Start*512 != plan.Moves[0].NewStart || p.Size*512 != plan.Moves[0].NewSize {
		t.Errorf("sfdisk sees [%d,+%d) sectors, the plan said [%d,+%d) bytes", p.Start, p.Size, plan.Moves[0].NewStart, plan.Moves[0].NewSize)
	}

	// The repository's own disk (here: a file inside it) is never a target.
	inRepo := filepath.Join(repo, "target.img")
	sparse(t, inRepo, 128<<20)
	if _, errs, code := cauldron(t, env, append([]string{"layout", "apply", "--yes", "--to", inRepo}, from...)...); code == 0 || !strings.Contains(errs, "protected path") {
		t.Errorf("layout apply into the repository: exit %d %s", code, errs)
	}
	os.Remove(inRepo)

	// --from reads the source from a disk or image directly.
	out = ok(t, nil, "layout", "plan", "--from", img, "--to", bigger, "--resize", "grow-last", "--identity", "renew")
	if !strings.Contains(out, "(renewed)") || !strings.Contains(out, "grow ext4") {
		t.Errorf("layout plan --from:\n%s", out)
	}
	if _, errs, code := cauldron(t, nil, "layout", "plan", "--from", img, "--to", bigger, "--resize", "sideways"); code == 0 || !strings.Contains(errs, "unknown resize mode") {
		t.Errorf("bad --resize: exit %d %s", code, errs)
	}

	// A saved plan with renewed identities is applied as shown: the GUIDs sfdisk reads are the
	// plan's new ones, not those of a second planning.
	planFile := filepath.Join(dir, "plan.json")
	saved := ok(t, env, append([]string{"layout", "plan", "--json", "--identity", "renew", "--to", bigger}, from...)...)
	if err := os.WriteFile(planFile, []byte(saved), 0o644); err != nil {
		t.Fatal(err)
	}
	var ids struct {
		Identities []struct{ What, Old, New string }
	}
	if err := json.Unmarshal([]byte(saved), &ids); err != nil || len(ids.Identities) != 2 {
		t.Fatalf("plan --json identities: %v %+v", err, ids)
	}
	ok(t, nil, "layout", "apply", "--plan", planFile, "--to", bigger, "--yes")
	sgdiskClean(t, bigger)
	var got struct {
		PartitionTable struct {
			ID         string
			Partitions []struct{ UUID string }
		}
	}
	sfOut, err = exec.Command("sfdisk", "--json", bigger).Output()
	if err != nil || json.Unmarshal(sfOut, &got) != nil || len(got.PartitionTable.Partitions) != 1 {
		t.Fatalf("sfdisk --json: %v\n%s", err, sfOut)
	}
	if got.PartitionTable.ID != ids.Identities[0].New || got.PartitionTable.Partitions[0].UUID != ids.Identities[1].New ||
		ids.Identities[0].New == ids.Identities[0].Old {
		t.Errorf("applied identities %s %s, the saved plan renewed %+v", got.PartitionTable.ID, got.PartitionTable.Partitions[0].UUID, ids.Identities)
	}
	// The saved plan names its disk: another one is refused.
	other := filepath.Join(dir, "other.img")
	sparse(t, other, 100<<20)
	if _, errs, code := cauldron(t, nil, "layout", "apply", "--plan", planFile, "--to", other, "--yes"); code == 0 || !strings.Contains(errs, "the plan is for a disk of") {
		t.Errorf("saved plan onto another disk: exit %d %s", code, errs)
	}
}
